//! Cryptographic primitives and the key hierarchy of DESIGN.md section 3.
//!
//! Passphrase -> Argon2id -> KEK -> unwraps the master key (MK). MK unwraps tenant keys (TK); HKDF-SHA256
//! derives from each TK the `data`, `id` and `meta` keys. Packs and metadata objects get their own AEAD key
//! from HKDF(derived key, random 32-byte salt), which is why counter nonces are safe. All key material is
//! zeroized on drop.

use crate::error::{Error, Result};
use crate::ids::ChunkId;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const TAG_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;

pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    crate::random::fill_random(&mut b);
    b
}

/// 32 bytes of key material, wiped when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn random() -> Self {
        SecretKey(random32())
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// HKDF-SHA256 with this key as input key material.
    pub fn derive(&self, salt: &[u8], info: &str) -> SecretKey {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(&self.0);
        let info = [info.as_bytes()];
        let okm = prk.expand(&info, ring::hkdf::HKDF_SHA256).expect("HKDF output length is valid");
        let mut out = [0u8; 32];
        okm.fill(&mut out).expect("HKDF fill of 32 bytes");
        SecretKey(out)
    }

    pub fn aead(&self) -> AeadKey {
        AeadKey(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES key")))
    }
}

/// An AES-256-GCM key ready for use.
pub struct AeadKey(LessSafeKey);

impl AeadKey {
    pub fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        self.seal_append(nonce, aad, plaintext, &mut buf);
        buf
    }

    /// Append the ciphertext and tag of `plaintext` to `out`, encrypting where it lands (no staging buffer).
    pub fn seal_append(&self, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[start..])
            .expect("AES-GCM seal cannot fail for inputs under 64 GiB");
        out.extend_from_slice(tag.as_ref());
    }

    /// Decrypt and authenticate; `object` names what is being opened for the error message.
    /// Decrypt and authenticate; an owned ciphertext is decrypted in place, a borrowed one copied first.
    pub fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: impl Into<Vec<u8>>,
        object: &str,
    ) -> Result<Vec<u8>> {
        let mut buf = ciphertext.into();
        let n = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| Error::corrupt(object, "authentication failed (altered, truncated or moved ciphertext)"))?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

/// Nonce for blob `index` of a pack: the index as a little-endian u64, then four zero bytes.
pub fn counter_nonce(index: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(&index.to_le_bytes());
    n
}

/// Argon2id cost parameters, stored in each key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams { m_kib: 64 * 1024, t: 3, p: 4 }
    }
}

impl KdfParams {
    /// Bounds checked before any work, so a forged key file cannot exhaust memory or time.
    pub fn validate(&self) -> Result<()> {
        if self.m_kib < 8 || self.m_kib > 4 * 1024 * 1024 || self.t == 0 || self.t > 64 || self.p == 0 || self.p > 16 {
            return Err(Error::malformed("key file", format!("argon2 parameters out of range: {self:?}")));
        }
        Ok(())
    }

    /// Derive the key-encryption key from a passphrase.
    pub fn derive_kek(&self, passphrase: &[u8], salt: &[u8]) -> Result<SecretKey> {
        self.validate()?;
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| Error::malformed("key file", format!("argon2 parameters: {e}")))?;
        let count = params.block_count();
        let (mut blocks, start) = argon2_memory(count);
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        a.hash_password_into_with_memory(passphrase, salt, &mut out, &mut blocks[start..start + count])
            .map_err(|e| Error::malformed("key file", format!("argon2: {e}")))?;
        let k = SecretKey(out);
        out.zeroize();
        Ok(k)
    }
}

/// Argon2's working memory (64 MiB by default): `count` blocks from the returned index on, backed by 2 MiB
/// pages where the kernel allows and zeroed by every core at once. The crate's own allocation is zeroed on
/// one thread (an over-aligned `alloc_zeroed` is a memset) in 4 KiB pages, each first touch a trap into the
/// kernel (and, in a VM, the hypervisor): 16,384 of them took 50 of the 150 ms it took to open a vault on
/// two cores. Spread over both cores: 128 ms; in 32 huge pages: 97 ms (medians of 20, whole processes).
fn argon2_memory(count: usize) -> (Vec<argon2::Block>, usize) {
    use rayon::prelude::*;
    const HUGE_PAGE: usize = 2 << 20;
    let size = count * argon2::Block::SIZE;
    if size < 4 * HUGE_PAGE {
        let mut blocks = Vec::with_capacity(count);
        blocks.par_extend((0..count).into_par_iter().map(|_| argon2::Block::default()));
        return (blocks, 0);
    }
    // Room to start on a huge-page boundary and to end on one.
    let mut blocks = Vec::with_capacity(count + 2 * HUGE_PAGE / argon2::Block::SIZE);
    let addr = blocks.as_ptr() as usize;
    let aligned = addr.next_multiple_of(HUGE_PAGE);
    advise_huge_pages(aligned, size.next_multiple_of(HUGE_PAGE));
    let start = (aligned - addr).div_ceil(argon2::Block::SIZE);
    blocks.par_extend((0..start + count).into_par_iter().map(|_| argon2::Block::default()));
    (blocks, start)
}

/// Ask for `len` bytes at `addr` (huge-page aligned, inside an allocation not yet touched) to be backed by
/// transparent huge pages. Only advice: if the kernel has none to give, the memory works the same.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one of the workspace's named exceptions
fn advise_huge_pages(addr: usize, len: usize) {
    // SAFETY: MADV_HUGEPAGE changes neither the contents nor the mapping of the range, only how the kernel
    // backs it; the range lies inside a live allocation owned by the caller, so no other object is affected.
    let _ = unsafe { rustix::mm::madvise(addr as *mut std::ffi::c_void, len, rustix::mm::Advice::LinuxHugepage) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_addr: usize, _len: usize) {}

/// The keys of one tenant key version, derived from its TK.
#[derive(Clone)]
pub struct TenantKeys {
    pub version: u32,
    pub data: SecretKey,
    pub meta: SecretKey,
    id_key: SecretKey,
}

impl TenantKeys {
    /// Keys of one version: data and metadata keys from its TK, the ChunkId key from the tenant's id seed
    /// (the same in every version, so rekeying does not break deduplication).
    pub fn derive(version: u32, tk: &SecretKey, id_seed: &SecretKey) -> Self {
        TenantKeys {
            version,
            data: tk.derive(&[], "mvault/v1/data"),
            meta: tk.derive(&[], "mvault/v1/meta"),
            id_key: id_seed.derive(&[], "mvault/v1/id"),
        }
    }

    /// The key ChunkIds are made with. A server hands it to its tenant's clients so they can hash chunks
    /// locally and upload only what the server lacks; no data, metadata or wrapping key derives from it.
    pub fn id_key(&self) -> &SecretKey {
        &self.id_key
    }

    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(self.id_key.expose(), plaintext).as_bytes())
    }

    /// A hasher for ChunkIds over data that arrives in pieces (restore `--verify`).
    pub fn chunk_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.id_key.expose())
    }

    pub fn pack_key(&self, salt: &[u8; 32]) -> AeadKey {
        self.data.derive(salt, "mvault/v1/pack").aead()
    }

    pub fn object_key(&self, salt: &[u8; 32]) -> AeadKey {
        self.meta.derive(salt, "mvault/v1/object").aead()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let k = SecretKey::random().aead();
        let ct = k.seal(counter_nonce(7), b"aad", b"hello");
        assert_eq!(k.open(counter_nonce(7), b"aad", ct.as_slice(), "t").unwrap(), b"hello");
        assert!(k.open(counter_nonce(8), b"aad", ct.as_slice(), "t").is_err(), "other nonce must fail");
        assert!(k.open(counter_nonce(7), b"aae", ct.as_slice(), "t").is_err(), "other aad must fail");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(k.open(counter_nonce(7), b"aad", bad.as_slice(), "t").is_err(), "flipped byte must fail");
    }

    #[test]
    fn derived_keys_differ_and_are_deterministic() {
        let (tk, seed) = (SecretKey::random(), SecretKey::random());
        let a = TenantKeys::derive(1, &tk, &seed);
        let b = TenantKeys::derive(1, &tk, &seed);
        assert_eq!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_ne!(a.data, a.meta);
        let other = TenantKeys::derive(1, &SecretKey::random(), &SecretKey::random());
        assert_ne!(a.chunk_id(b"x"), other.chunk_id(b"x"), "ChunkIds are keyed per tenant");
        let v2 = TenantKeys::derive(2, &SecretKey::random(), &seed);
        assert_eq!(a.chunk_id(b"x"), v2.chunk_id(b"x"), "a new key version keeps the tenant's ChunkIds");
        assert_ne!(a.data, v2.data);
    }

    #[test]
    fn kdf_rejects_absurd_params() {
        assert!(KdfParams { m_kib: u32::MAX, t: 1, p: 1 }.validate().is_err());
        assert!(KdfParams { m_kib: 64, t: 0, p: 1 }.validate().is_err());
        let p = KdfParams { m_kib: 64, t: 1, p: 1 };
        assert_eq!(p.derive_kek(b"pw", &[1; 16]).unwrap(), p.derive_kek(b"pw", &[1; 16]).unwrap());
        assert_ne!(p.derive_kek(b"pw", &[1; 16]).unwrap(), p.derive_kek(b"pX", &[1; 16]).unwrap());
    }

    /// Key files name their Argon2id parameters, so a KDF that changes its output (a crate upgrade, the lanes now
    /// computed in parallel) would lock every vault out. Pinned to the reference C implementation (argon2-cffi's
    /// `hash_secret_raw`), for one lane (vaults made before the default became four) and four.
    #[test]
    fn kdf_matches_the_reference_implementation() {
        let salt: Vec<u8> = (0..32).collect();
        for (p, want) in [
            (1, "67600bcd19cdd7bdf9c96637946f7a4925c48ff490c63c660298a7c165cb74e7"),
            (4, "f9e11a93a2e07f0887e3e147d9dcadb8c8868d3f619dfb479757cc74cc0d5738"),
        ] {
            let kek = KdfParams { m_kib: 256, t: 3, p }.derive_kek(b"correct horse", &salt).unwrap();
            assert_eq!(hex::encode(kek.0), want, "argon2id with {p} lanes");
        }
        // Memory large enough to be placed on huge pages, of a size that is not a whole number of them.
        for (m_kib, want) in [
            (9000, "1571725ae350500cb75bee4d437e98e8d3e6263a3a37b965f98233b1eb9aabc3"),
            (64 * 1024, "b6ba50f2e224681c1ff9f79e960cae41c92be4055c22000c0094d133b1ce97d0"),
        ] {
            let kek = KdfParams { m_kib, t: 1, p: 4 }.derive_kek(b"correct horse", &salt).unwrap();
            assert_eq!(hex::encode(kek.0), want, "argon2id with {m_kib} KiB");
        }
    }

    #[test]
    fn argon2_memory_starts_on_a_huge_page_and_fits_its_allocation() {
        for count in [1usize, 100, 8192, 9000, 65536] {
            let (blocks, start) = argon2_memory(count);
            assert!(blocks.len() >= start + count && blocks.capacity() >= blocks.len());
            if count * argon2::Block::SIZE >= 8 << 20 {
                let first = blocks[start..].as_ptr() as usize;
                assert!(first % (2 << 20) < argon2::Block::SIZE, "{count} blocks start at {first:#x}");
            }
        }
    }
}

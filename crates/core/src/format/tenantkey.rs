//! Wrapped tenant keys `tenants/<t>/keys/<version>.<mk-id>` (MVTK): a tenant key version wrapped by the master
//! key. The wrapped secret is 64 bytes: the version's TK (data and metadata keys derive from it) and the
//! tenant's id seed (ChunkIds derive from it). The id seed is the same in every version of a tenant, so a
//! rekey keeps deduplication working; deleting every version shreds both.

use super::wire::{Reader, Writer};
use crate::crypto::{SecretKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::ids::VaultId;
use crate::random::fill_random;

const MAGIC: &[u8; 4] = b"MVTK";
pub const LEN: usize = 5 + 4 + NONCE_LEN + 64 + TAG_LEN;

fn aad(vault: &VaultId, tenant: &str, version: u32) -> Vec<u8> {
    let mut w = super::aad("mvault/v1/tenant-key", vault);
    w.bytes16(tenant.as_bytes()).u32(version);
    w.into_vec()
}

/// The secrets of one tenant key version.
pub struct TenantSecret {
    pub tk: SecretKey,
    pub id_seed: SecretKey,
}

pub fn wrap(vault: &VaultId, mk: &SecretKey, tenant: &str, version: u32, secret: &TenantSecret) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let mut plain = zeroize::Zeroizing::new([0u8; 64]);
    plain[..32].copy_from_slice(secret.tk.expose());
    plain[32..].copy_from_slice(secret.id_seed.expose());
    let sealed = mk.derive(&[], "mvault/v1/wrap").aead().seal(nonce, &aad(vault, tenant, version), &plain[..]);
    let mut w = Writer::with_header(MAGIC, 1);
    w.u32(version).bytes(&nonce).bytes(&sealed);
    w.into_vec()
}

/// Parse the container: (key version, nonce, wrapped bytes).
pub fn parse(bytes: &[u8]) -> Result<(u32, [u8; NONCE_LEN], Vec<u8>)> {
    let mut r = Reader::new(bytes, "tenant key");
    r.header(MAGIC, 1)?;
    let version = r.u32()?;
    let nonce = r.array::<NONCE_LEN>()?;
    let wrapped = r.take(64 + TAG_LEN)?.to_vec();
    r.finish()?;
    Ok((version, nonce, wrapped))
}

pub fn unwrap(
    vault: &VaultId,
    mk: &SecretKey,
    tenant: &str,
    expected_version: u32,
    bytes: &[u8],
    object: &str,
) -> Result<TenantSecret> {
    let (version, nonce, wrapped) = parse(bytes).map_err(|e| e.in_object(object))?;
    if version != expected_version {
        return Err(Error::corrupt(object, format!("holds key version {version}, expected {expected_version}")));
    }
    let plain = zeroize::Zeroizing::new(mk.derive(&[], "mvault/v1/wrap").aead().open(
        nonce,
        &aad(vault, tenant, version),
        wrapped.as_slice(),
        object,
    )?);
    let mut tk = zeroize::Zeroizing::new([0u8; 32]);
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    tk.copy_from_slice(&plain[..32]);
    seed.copy_from_slice(&plain[32..64]);
    Ok(TenantSecret { tk: SecretKey::from_bytes(*tk), id_seed: SecretKey::from_bytes(*seed) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let v = VaultId::random();
        let mk = SecretKey::random();
        let secret = TenantSecret { tk: SecretKey::random(), id_seed: SecretKey::random() };
        let b = wrap(&v, &mk, "default", 1, &secret);
        assert_eq!(b.len(), LEN);
        let back = unwrap(&v, &mk, "default", 1, &b, "x").unwrap();
        assert_eq!((back.tk, back.id_seed), (secret.tk.clone(), secret.id_seed.clone()));
        assert!(unwrap(&v, &mk, "other", 1, &b, "x").is_err());
        assert!(unwrap(&v, &SecretKey::random(), "default", 1, &b, "x").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = parse(&bytes);
        }
    }
}

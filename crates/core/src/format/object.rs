//! The MVOB envelope around encrypted metadata objects (index files, snapshots, the server's system records
//! and audit segments).

use super::wire::{Reader, Writer};
use crate::crypto::{random32, TenantKeys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::ids::VaultId;

const MAGIC: &[u8; 4] = b"MVOB";
const HEADER_LEN: usize = 5 + 1 + 4 + 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Index = 1,
    Snapshot = 2,
    /// The server's records under `system/` (tenant registry, tokens), sealed by the system tenant.
    System = 3,
    /// Audit log segments under `system/audit/`.
    Audit = 4,
    /// The S3 gateway's bucket log and checkpoints under `tenants/<t>/s3/` (`repo::buckets`).
    Bucket = 5,
}

fn aad(vault: &VaultId, tenant: &str, key_version: u32, kind: u8, path: &str) -> Vec<u8> {
    let mut w = super::aad("mvault/v1/object", vault);
    w.bytes16(tenant.as_bytes()).u32(key_version).u8(kind).bytes16(path.as_bytes());
    w.into_vec()
}

/// Compress and encrypt `plaintext` as the object stored at `path`.
pub fn seal(vault: &VaultId, tenant: &str, keys: &TenantKeys, kind: Kind, path: &str, plaintext: &[u8]) -> Vec<u8> {
    let salt = random32();
    let compressed = zstd::bulk::compress(plaintext, 3).expect("zstd compression of an in-memory buffer");
    let ct =
        keys.object_key(&salt).seal([0; NONCE_LEN], &aad(vault, tenant, keys.version, kind as u8, path), &compressed);
    let mut w = Writer::with_header(MAGIC, 1);
    w.u8(kind as u8).u32(keys.version).bytes(&salt).bytes(&ct);
    w.into_vec()
}

/// The envelope's header fields: (kind, key version, salt, ciphertext).
pub fn parse(bytes: &[u8]) -> Result<(u8, u32, [u8; 32], &[u8])> {
    let mut r = Reader::new(bytes, "object");
    r.header(MAGIC, 1)?;
    let kind = r.u8()?;
    if !(Kind::Index as u8..=Kind::Bucket as u8).contains(&kind) {
        return Err(r.err(format!("unknown object kind {kind}")));
    }
    let version = r.u32()?;
    let salt = r.array::<32>()?;
    if r.remaining() < crate::crypto::TAG_LEN {
        return Err(r.err("ciphertext shorter than its tag"));
    }
    let ct = r.take(r.remaining())?;
    Ok((kind, version, salt, ct))
}

/// Decrypt the object stored at `path`. `keys_for` returns the tenant keys of a key version.
pub fn open<'k>(
    vault: &VaultId,
    tenant: &str,
    keys_for: impl Fn(u32) -> Option<&'k TenantKeys>,
    kind: Kind,
    path: &str,
    bytes: &[u8],
    max_plain: usize,
) -> Result<Vec<u8>> {
    let (k, version, salt, ct) = parse(bytes).map_err(|e| e.in_object(path))?;
    if k != kind as u8 {
        return Err(Error::corrupt(path, format!("object kind {k}, expected {}", kind as u8)));
    }
    let keys = keys_for(version)
        .ok_or_else(|| Error::corrupt(path, format!("encrypted under unknown key version {version}")))?;
    let compressed = keys.object_key(&salt).open([0; NONCE_LEN], &aad(vault, tenant, version, k, path), ct, path)?;
    // Streamed rather than `bulk::decompress(max_plain)`, which reserves the whole bound (1 GiB) up front.
    let bad = |e: std::io::Error| Error::corrupt(path, format!("decompress: {e}"));
    let mut out = Vec::new();
    let dec = zstd::stream::read::Decoder::new(&compressed[..]).map_err(bad)?;
    std::io::Read::read_to_end(&mut std::io::Read::take(dec, max_plain as u64 + 1), &mut out).map_err(bad)?;
    if out.len() > max_plain {
        return Err(Error::corrupt(path, format!("more than {max_plain} bytes once decompressed")));
    }
    Ok(out)
}

pub const fn header_len() -> usize {
    HEADER_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn round_trip_and_path_binding() {
        let v = VaultId::random();
        let keys = TenantKeys::derive(1, &SecretKey::random(), &SecretKey::random());
        let b = seal(&v, "default", &keys, Kind::Snapshot, "tenants/default/snapshots/a", b"{}");
        let get = |ver: u32| (ver == 1).then_some(&keys);
        assert_eq!(
            open(&v, "default", get, Kind::Snapshot, "tenants/default/snapshots/a", &b, 1 << 20).unwrap(),
            b"{}"
        );
        assert!(open(&v, "default", get, Kind::Snapshot, "tenants/default/snapshots/b", &b, 1 << 20).is_err());
        assert!(open(&v, "default", get, Kind::Index, "tenants/default/snapshots/a", &b, 1 << 20).is_err());
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(
                open(&v, "default", get, Kind::Snapshot, "tenants/default/snapshots/a", &bad, 1 << 20).is_err(),
                "flip at {i}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = parse(&bytes);
        }
    }
}

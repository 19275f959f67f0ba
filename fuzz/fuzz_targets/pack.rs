//! Packs (MVPK), opened with `pack::open_pack` under fixed tenant keys, vault id and expected pack id.
//!
//! Every input is used twice:
//! 1. Raw: the input is a whole pack. `parse_header` must lay its fields out as FORMAT.md says, and
//!    `open_pack` must not panic. (A raw input cannot get past the AEAD tag of the blob table, so this only
//!    reaches the header, trailer and length checks.)
//! 2. Built: `u16 body_len | body | table plaintext`. The target seals the table itself with the fixed pack
//!    key and the AAD of FORMAT.md and assembles `header | body | sealed table | trailer`, which gets past
//!    the tag, so the fuzzer reaches `parse_table` and the bounds checks inside `open_pack`.
//!    Invariant (differential against FORMAT.md): `open_pack` succeeds exactly when the table plaintext
//!    parses and every blob lies in `[HEADER_LEN, table_start)`, and then returns exactly those entries.
//!
//! Blobs of an opened pack are passed to `open_blob` (and `decode` when one opens); they must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::crypto::{SecretKey, TenantKeys, NONCE_LEN, TAG_LEN};
use mvault_core::format::pack::{self, BlobContext, OpenedPack, HEADER_LEN, TRAILER_LEN};
use mvault_core::ids::{PackId, VaultId};
use std::sync::OnceLock;

const VAULT: VaultId = VaultId([0x5a; 16]);
const PACK: PackId = PackId([0xa5; 16]);
const TENANT: &str = "default";
const KEY_VERSION: u32 = 1;
const SALT: [u8; 32] = [0x33; 32];
const TABLE_NONCE: [u8; NONCE_LEN] = [0xff; NONCE_LEN];

fn keys() -> &'static TenantKeys {
    static KEYS: OnceLock<TenantKeys> = OnceLock::new();
    KEYS.get_or_init(|| TenantKeys::derive(KEY_VERSION, &SecretKey::from_bytes([7; 32]), &SecretKey::from_bytes([8; 32])))
}

fn bytes16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// `"mvault/v1/table" | vault_id | bytes16 tenant | u32 key_version | pack_id`, written from FORMAT.md.
fn table_aad() -> Vec<u8> {
    let mut a = Vec::new();
    bytes16(&mut a, b"mvault/v1/table");
    a.extend_from_slice(&VAULT.0);
    bytes16(&mut a, TENANT.as_bytes());
    a.extend_from_slice(&KEY_VERSION.to_le_bytes());
    a.extend_from_slice(&PACK.0);
    a
}

fn header(version: u32, id: &PackId, salt: &[u8; 32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(b"MVPK");
    h.push(1);
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&id.0);
    h.extend_from_slice(salt);
    h
}

fn open(bytes: &[u8]) -> mvault_core::Result<OpenedPack> {
    let keys = keys();
    pack::open_pack(&VAULT, TENANT, |v: u32| (v == keys.version).then_some(keys), &PACK, bytes, "fuzz pack")
}

/// What any opened pack must satisfy, and exercise `open_blob`/`decode` on its blobs.
fn check_opened(op: &OpenedPack, bytes: &[u8]) {
    assert_eq!(op.key_version, KEY_VERSION);
    let table_len = u32::from_le_bytes(bytes[bytes.len() - TRAILER_LEN..][..4].try_into().unwrap()) as usize;
    let table_start = bytes.len() - TRAILER_LEN - table_len;
    let ctx = BlobContext { vault: &VAULT, tenant: TENANT, key_version: op.key_version, pack: &PACK };
    for (i, e) in op.entries.iter().enumerate() {
        let end = e.offset as u64 + e.length as u64;
        assert!(e.offset as usize >= HEADER_LEN && end <= table_start as u64, "blob outside the body: {e:?}");
        assert!(e.length as usize >= TAG_LEN);
        let ct = &bytes[e.offset as usize..end as usize];
        if let Ok(enc) = pack::open_blob(&op.key, &ctx, i as u32, e, ct, "fuzz blob") {
            let _ = pack::decode(e.codec, enc, e.raw_length, "fuzz blob");
        }
    }
}

fn raw(data: &[u8]) {
    if let Ok((version, id, salt)) = pack::parse_header(data) {
        assert!(data.len() >= HEADER_LEN);
        assert_eq!(&header(version, &id, &salt)[..], &data[..HEADER_LEN], "pack header does not re-encode");
    }
    if let Ok(op) = open(data) {
        check_opened(&op, data);
    }
}

fn built(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let body_len = (u16::from_le_bytes(*len) as usize).min(rest.len());
    let (body, table_plain) = rest.split_at(body_len);

    let table_ct = keys().pack_key(&SALT).seal(TABLE_NONCE, &table_aad(), table_plain);
    let mut bytes = header(KEY_VERSION, &PACK, &SALT);
    bytes.extend_from_slice(body);
    let table_start = bytes.len();
    bytes.extend_from_slice(&table_ct);
    bytes.extend_from_slice(&(table_ct.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"MVPT");

    let expected = pack::parse_table(table_plain).ok().filter(|es| {
        es.iter().all(|e| e.offset as usize >= HEADER_LEN && e.offset as u64 + e.length as u64 <= table_start as u64)
    });
    match (open(&bytes), expected) {
        (Ok(op), Some(es)) => {
            assert_eq!(op.entries, es, "open_pack returned other entries than its table holds");
            check_opened(&op, &bytes);
        }
        (Err(_), None) => {}
        (Ok(op), None) => {
            panic!("open_pack accepted a pack whose table is malformed or points outside the body: {:?}", op.entries)
        }
        (Err(e), Some(_)) => panic!("open_pack rejected a well-formed pack: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    raw(data);
    built(data);
});

//! The MVOB envelope around index files and snapshots.
//! Invariant: the parsed header fields plus the ciphertext are the whole input, laid out as FORMAT.md says
//! (`"MVOB" | u8 1 | u8 kind | u32 key_version | u8[32] salt | ciphertext+tag`); kind is 1 or 2 and the
//! ciphertext holds at least a tag. `object::open` under fixed keys must fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::crypto::{SecretKey, TenantKeys, TAG_LEN};
use mvault_core::format::object::{self, Kind};
use mvault_core::ids::VaultId;

fuzz_target!(|data: &[u8]| {
    let Ok((kind, version, salt, ct)) = object::parse(data) else {
        return;
    };
    assert!(kind == Kind::Index as u8 || kind == Kind::Snapshot as u8, "kind {kind} accepted");
    assert!(ct.len() >= TAG_LEN, "ciphertext shorter than a tag accepted");
    assert_eq!(object::header_len() + ct.len(), data.len());

    let mut re = Vec::with_capacity(data.len());
    re.extend_from_slice(b"MVOB");
    re.push(1);
    re.push(kind);
    re.extend_from_slice(&version.to_le_bytes());
    re.extend_from_slice(&salt);
    re.extend_from_slice(ct);
    assert_eq!(re, data, "MVOB fields do not re-encode to the input");

    let keys = TenantKeys::derive(1, &SecretKey::from_bytes([7; 32]), &SecretKey::from_bytes([8; 32]));
    let vault = VaultId([1; 16]);
    for k in [Kind::Index, Kind::Snapshot] {
        let _ = object::open(
            &vault,
            "default",
            |v: u32| (v == keys.version).then_some(&keys),
            k,
            "tenants/default/snapshots/00",
            data,
            1 << 20,
        );
    }
});

//! Wrapped tenant keys `tenants/<t>/keys/<version>` (MVTK, fixed 69 bytes).
//! Invariant: the parsed fields are the whole object, so laying them out as FORMAT.md describes
//! (`"MVTK" | u8 1 | u32 key_version | u8[12] nonce | u8[48] wrapped`) gives back the input exactly.
//! Unwrapping under a fixed master key must fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::crypto::{SecretKey, TAG_LEN};
use mvault_core::format::tenantkey;
use mvault_core::ids::VaultId;

fuzz_target!(|data: &[u8]| {
    let Ok((version, nonce, wrapped)) = tenantkey::parse(data) else {
        return;
    };
    assert_eq!(data.len(), tenantkey::LEN);
    assert_eq!(wrapped.len(), 32 + TAG_LEN);

    let mut re = Vec::with_capacity(tenantkey::LEN);
    re.extend_from_slice(b"MVTK");
    re.push(1);
    re.extend_from_slice(&version.to_le_bytes());
    re.extend_from_slice(&nonce);
    re.extend_from_slice(&wrapped);
    assert_eq!(re, data, "MVTK fields do not re-encode to the input");

    let mk = SecretKey::from_bytes([7; 32]);
    let vault = VaultId([1; 16]);
    let _ = tenantkey::unwrap(&vault, &mk, "default", version, data, "fuzz tenant key");
    let _ = tenantkey::unwrap(&vault, &mk, "default", version.wrapping_add(1), data, "fuzz tenant key");
});

//! A pack's blob table (MVBT), as it is after decryption.
//! Invariant: the encoding is canonical, so `encode_table(parse_table(b)) == b` byte for byte, and the
//! re-encoded table parses to the same entries. Every accepted entry is at least a tag long.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::crypto::TAG_LEN;
use mvault_core::format::pack;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = pack::parse_table(data) else {
        return;
    };
    assert!(entries.iter().all(|e| e.length as usize >= TAG_LEN));
    let re = pack::encode_table(&entries);
    assert_eq!(re, data, "blob table does not re-encode to the input");
    let again = pack::parse_table(&re).expect("re-encoded blob table does not parse");
    assert_eq!(again, entries, "blob table changed in a parse/encode/parse round trip");
});

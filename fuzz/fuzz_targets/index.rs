//! Index files (MVIX), as they are after the MVOB envelope is opened.
//! Invariant: the encoding is canonical, so `encode(parse(b)) == b` byte for byte, and the re-encoded
//! index parses to the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::format::index;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = index::parse(data) else {
        return;
    };
    let re = index::encode(&entries);
    assert_eq!(re, data, "index does not re-encode to the input");
    let again = index::parse(&re).expect("re-encoded index does not parse");
    assert_eq!(again, entries, "index changed in a parse/encode/parse round trip");
});

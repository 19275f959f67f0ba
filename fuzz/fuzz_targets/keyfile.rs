//! Key files `keys/<id>` (JSON): read before any key is known.
//! Invariant: parse -> to_bytes -> parse gives the same key file, and the encoding is stable.
//! `KeyFile::unwrap` is deliberately not called: it runs Argon2id with the file's own parameters
//! (validated up to 4 GiB and t = 64), which is a time/memory cost by design, not a parser bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::format::keyfile::KeyFile;

fuzz_target!(|data: &[u8]| {
    let Ok(k) = KeyFile::parse(data) else {
        return;
    };
    let re = k.to_bytes();
    let k2 = KeyFile::parse(&re).expect("re-encoded key file does not parse");
    assert_eq!(k2, k, "key file changed in a parse/encode/parse round trip");
    assert_eq!(k2.to_bytes(), re, "key file encoding is not stable");
});

//! The byte-grouped float codec (and its rANS planes) on untrusted blob bytes. Invariants: decode returns an
//! error or exactly `raw_length` bytes; and encoding the input as floats of each kind decodes back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::format::grouped;
use mvault_core::format::FloatKind;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    if let Ok(out) = grouped::decode(rest, len as usize * 7, "fuzz") {
        assert_eq!(out.len(), len as usize * 7);
    }
    for kind in [FloatKind::Bf16, FloatKind::F16, FloatKind::F32] {
        let enc = grouped::encode(kind, rest);
        assert_eq!(grouped::decode(&enc, rest.len(), "fuzz").expect("own encoding decodes"), rest);
    }
});

//! Snapshots (JSON), as they are after the MVOB envelope is opened.
//! Invariant: parse -> to_bytes -> parse gives the same snapshot. One allowance: `summary.seconds` is an
//! f64, and serde_json (without its `float_roundtrip` feature) may parse a float a few ULPs away from the
//! value it printed; that is harmless timing data, so it is compared with a 4-ULP tolerance and
//! everything else exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::format::snapshot::Snapshot;

fn within_ulps(a: f64, b: f64, ulps: u64) -> bool {
    a == b || (a.is_sign_negative() == b.is_sign_negative() && a.to_bits().abs_diff(b.to_bits()) <= ulps)
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Snapshot::parse(data) else {
        return;
    };
    s.tree_id().expect("parse accepted a snapshot whose tree id does not decode");
    let _ = s.system_time();

    let re = s.to_bytes();
    let mut s2 = Snapshot::parse(&re).expect("re-encoded snapshot does not parse");
    assert!(
        within_ulps(s.summary.seconds, s2.summary.seconds, 4),
        "summary.seconds {} came back as {}",
        s.summary.seconds,
        s2.summary.seconds
    );
    s2.summary.seconds = s.summary.seconds;
    assert_eq!(s2, s, "snapshot changed in a parse/encode/parse round trip");
});

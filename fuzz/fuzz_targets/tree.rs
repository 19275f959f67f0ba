//! Trees (MVTR), as they are after a tree blob is decrypted.
//! Invariants: every accepted name is a valid single path component (restore can never be steered outside
//! its target), names are strictly sorted (so unique), nanoseconds are in range, the encoding is canonical
//! (`encode(parse(b)) == b`) and the re-encoded tree parses to the same nodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::format::tree;

fuzz_target!(|data: &[u8]| {
    let Ok(nodes) = tree::parse(data) else {
        return;
    };
    for n in &nodes {
        assert!(tree::valid_name(&n.name), "invalid name {:?} accepted", n.name);
        assert!(!n.name.is_empty() && n.name != b"." && n.name != b".." && !n.name.contains(&b'/'));
        assert!(n.mtime_nsec < 1_000_000_000);
    }
    assert!(nodes.windows(2).all(|w| w[0].name < w[1].name), "tree entries not strictly sorted");
    let re = tree::encode(&nodes);
    assert_eq!(re, data, "tree does not re-encode to the input");
    let again = tree::parse(&re).expect("re-encoded tree does not parse");
    assert_eq!(again, nodes, "tree changed in a parse/encode/parse round trip");
});

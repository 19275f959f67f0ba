//! PyTorch zip checkpoints from untrusted sources. Invariant: parse returns an error or stored-entry regions
//! that are sorted, non-overlapping and inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::model::ptzip;

fuzz_target!(|data: &[u8]| {
    let Ok(l) = ptzip::parse(data) else {
        return;
    };
    let mut pos = 0;
    for t in &l.tensors {
        assert!(t.start >= pos && t.end >= t.start && t.end <= data.len() as u64, "entry {} out of bounds", t.name);
        pos = t.end;
    }
});

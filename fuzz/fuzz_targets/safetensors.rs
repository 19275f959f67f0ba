//! safetensors headers from untrusted files. Invariant: parse returns an error or a layout whose tensors lie
//! in order inside the file, exactly tiling the data section after the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::model::safetensors;

fuzz_target!(|data: &[u8]| {
    let Ok(l) = safetensors::parse(data) else {
        return;
    };
    let mut pos = l.tensors.first().map_or(l.file_len, |t| t.start);
    for t in &l.tensors {
        assert_eq!(t.start, pos, "tensors do not tile the data section");
        assert!(t.end >= t.start && t.unit > 0);
        pos = t.end;
    }
    assert_eq!(pos, data.len() as u64, "bytes after the last tensor were accepted");
});

//! The XML request bodies the S3 gateway accepts (CompleteMultipartUpload, DeleteObjects, CreateBucket),
//! parsed as the gateway parses them: s3s's deserializer, then end of input. The first byte picks the body;
//! the rest is untrusted XML. Invariants: no panic, no hang; a CompleteMultipartUpload that parses names at
//! most as many parts as its text can hold, and a Delete at most as many objects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3s::dto::{CompletedMultipartUpload, CreateBucketConfiguration, Delete};
use s3s::xml::{Deserialize, Deserializer};

fn parse<T: for<'xml> Deserialize<'xml>>(xml: &[u8]) -> Option<T> {
    let mut d = Deserializer::new(xml);
    let value = T::deserialize(&mut d).ok()?;
    d.expect_eof().ok()?;
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((which, xml)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            if let Some(done) = parse::<CompletedMultipartUpload>(xml) {
                let parts = done.parts.map(|p| p.len()).unwrap_or(0);
                assert!(parts <= xml.len() / "<Part/>".len(), "{parts} parts from {} bytes", xml.len());
            }
        }
        1 => {
            if let Some(delete) = parse::<Delete>(xml) {
                let n = delete.objects.len();
                assert!(n <= xml.len() / "<Object/>".len(), "{n} objects from {} bytes", xml.len());
            }
        }
        _ => {
            let _ = parse::<CreateBucketConfiguration>(xml);
        }
    }
});

//! Flexible checksums (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256): a body's checksum, sent as a header or as an
//! aws-chunked trailer, is computed while the body streams in and compared before the object (or part) is
//! recorded; a mismatch is `BadDigest` and nothing becomes visible. The values are kept with the version and
//! returned with `ChecksumMode: ENABLED`.

use s3s::checksum::ChecksumHasher;
use s3s::dto::Checksum;
use s3s::{s3_error, S3Result};
use std::collections::BTreeMap;

/// The algorithms S3 names, with their header.
const ALGORITHMS: [(&str, &str); 5] = [
    ("CRC32", "x-amz-checksum-crc32"),
    ("CRC32C", "x-amz-checksum-crc32c"),
    ("CRC64NVME", "x-amz-checksum-crc64nvme"),
    ("SHA1", "x-amz-checksum-sha1"),
    ("SHA256", "x-amz-checksum-sha256"),
];

/// What a request asks to be checked: values from headers, and algorithms whose value comes in a trailer.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// Algorithm -> base64 value, from the request's headers.
    pub given: BTreeMap<&'static str, String>,
    /// Algorithms named by `x-amz-trailer` or `x-amz-sdk-checksum-algorithm` without a value yet.
    pub later: Vec<&'static str>,
}

impl Wanted {
    pub fn from_headers(headers: &http::HeaderMap) -> S3Result<Wanted> {
        let mut w = Wanted::default();
        for (alg, header) in ALGORITHMS {
            if let Some(v) = headers.get(header) {
                let v = v.to_str().map_err(|_| s3_error!(InvalidArgument, "{header} is not text"))?;
                w.given.insert(alg, v.to_string());
            }
        }
        let named = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
        if let Some(t) = named("x-amz-trailer") {
            for name in t.split(',').map(str::trim) {
                let (alg, _) = ALGORITHMS.iter().find(|(_, h)| *h == name).ok_or_else(|| {
                    s3_error!(InvalidArgument, "x-amz-trailer {name}: not a checksum this gateway knows")
                })?;
                w.later.push(alg);
            }
        }
        if let Some(a) = named("x-amz-sdk-checksum-algorithm") {
            let alg = ALGORITHMS
                .iter()
                .map(|(a, _)| *a)
                .find(|x| x.eq_ignore_ascii_case(&a))
                .ok_or_else(|| s3_error!(InvalidArgument, "x-amz-sdk-checksum-algorithm {a}: unknown"))?;
            if !w.given.contains_key(alg) && !w.later.contains(&alg) {
                w.later.push(alg);
            }
        }
        Ok(w)
    }

    pub fn is_empty(&self) -> bool {
        self.given.is_empty() && self.later.is_empty()
    }

    pub fn hasher(&self) -> ChecksumHasher {
        hasher_of(self.given.keys().copied().chain(self.later.iter().copied()))
    }

    /// Compare what the body hashed to with what was sent (headers, then trailers); returns the verified
    /// values by algorithm, to keep with the version.
    pub fn verify(&self, computed: Checksum, trailers: Option<&http::HeaderMap>) -> S3Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (alg, header) in ALGORITHMS {
            let Some(got) = value_of(&computed, alg) else { continue };
            let sent = match self.given.get(alg) {
                Some(v) => Some(v.clone()),
                None => trailers.and_then(|t| t.get(header)).and_then(|v| v.to_str().ok()).map(str::to_string),
            };
            match sent {
                Some(sent) if sent.trim() != got => {
                    return Err(s3_error!(
                        BadDigest,
                        "{header} {sent} does not match the body ({got}); nothing was stored"
                    ));
                }
                Some(_) => {
                    out.insert(alg.to_string(), got);
                }
                // Named for a trailer that never came (the algorithm was announced only): keep what it is.
                None if self.later.contains(&alg) && trailers.is_none() => {
                    out.insert(alg.to_string(), got);
                }
                None => {
                    return Err(s3_error!(InvalidRequest, "{header} was announced but not sent"));
                }
            }
        }
        Ok(out)
    }
}

fn hasher_of<'a>(algorithms: impl Iterator<Item = &'a str>) -> ChecksumHasher {
    let mut h = ChecksumHasher::default();
    for alg in algorithms {
        match alg {
            "CRC32" => h.crc32 = Some(Default::default()),
            "CRC32C" => h.crc32c = Some(Default::default()),
            "CRC64NVME" => h.crc64nvme = Some(Default::default()),
            "SHA1" => h.sha1 = Some(Default::default()),
            _ => h.sha256 = Some(Default::default()),
        }
    }
    h
}

/// The algorithm an S3 name gives (`sha256` or `SHA256`), if it is one this gateway computes.
pub(super) fn algorithm(name: &str) -> Option<&'static str> {
    ALGORITHMS.iter().map(|(a, _)| *a).find(|a| a.eq_ignore_ascii_case(name))
}

/// S3's composite checksum of a multipart object: the algorithm over the parts' raw digests in order, in
/// base64, then `-N` (N parts). CRC64NVME has only a full-object form, which would need the whole body.
pub(super) fn composite(alg: &str, parts: &[&str]) -> S3Result<String> {
    if alg == "CRC64NVME" {
        return Err(s3_error!(NotImplemented, "a CRC64NVME checksum of a multipart object (full-object type only)"));
    }
    let mut h = hasher_of(std::iter::once(alg));
    for p in parts {
        let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, p)
            .map_err(|_| s3_error!(InvalidArgument, "a part's {alg} checksum is not base64"))?;
        h.update(&raw);
    }
    let sum = value_of(&h.finalize(), alg).expect("the hasher computes the algorithm asked");
    Ok(format!("{sum}-{}", parts.len()))
}

fn value_of(c: &Checksum, alg: &str) -> Option<String> {
    match alg {
        "CRC32" => c.checksum_crc32.clone(),
        "CRC32C" => c.checksum_crc32c.clone(),
        "CRC64NVME" => c.checksum_crc64nvme.clone(),
        "SHA1" => c.checksum_sha1.clone(),
        _ => c.checksum_sha256.clone(),
    }
}

/// The type of stored checksums: COMPOSITE for a multipart object's (`...-N`), FULL_OBJECT for a body's.
pub(super) fn kind(stored: &BTreeMap<String, String>) -> Option<s3s::dto::ChecksumType> {
    use s3s::dto::ChecksumType;
    let composite = stored.values().next()?.rsplit_once('-').is_some_and(|(_, n)| n.parse::<u32>().is_ok());
    Some(ChecksumType::from_static(if composite { ChecksumType::COMPOSITE } else { ChecksumType::FULL_OBJECT }))
}

/// Stored checksums as the output fields of a GET, HEAD or PUT.
pub(super) fn as_output(stored: &BTreeMap<String, String>) -> Checksum {
    Checksum {
        checksum_type: kind(stored),
        checksum_crc32: stored.get("CRC32").cloned(),
        checksum_crc32c: stored.get("CRC32C").cloned(),
        checksum_crc64nvme: stored.get("CRC64NVME").cloned(),
        checksum_sha1: stored.get("SHA1").cloned(),
        checksum_sha256: stored.get("SHA256").cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_composite_checksum_is_the_digest_of_the_part_digests() {
        // ceph/s3-tests' value for one 1,024-byte part of 'A's
        let part = "arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=";
        assert_eq!(composite("SHA256", &[part]).unwrap(), "Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1");
        assert!(composite("SHA256", &["not base64!"]).is_err());
        assert!(composite("CRC64NVME", &[part]).is_err());
        assert_eq!(algorithm("sha256"), Some("SHA256"));
        assert_eq!(algorithm("md5"), None);
    }

    #[test]
    fn a_body_is_checked_against_its_header_or_trailer() {
        let body = b"hello world";
        // CRC32 of "hello world" is 0x0d4a1185; SHA-256 as base64
        let w = Wanted::from_headers(&headers(&[("x-amz-checksum-crc32", "DUoRhQ==")])).unwrap();
        let mut h = w.hasher();
        h.update(body);
        let ok = w.verify(h.finalize(), None).unwrap();
        assert_eq!(ok.get("CRC32").map(String::as_str), Some("DUoRhQ=="));

        let w = Wanted::from_headers(&headers(&[("x-amz-checksum-crc32", "AAAAAA==")])).unwrap();
        let mut h = w.hasher();
        h.update(body);
        assert_eq!(w.verify(h.finalize(), None).unwrap_err().code(), &s3s::S3ErrorCode::BadDigest);

        let w = Wanted::from_headers(&headers(&[("x-amz-trailer", "x-amz-checksum-sha256")])).unwrap();
        assert_eq!(w.later, ["SHA256"]);
        let sha = "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=";
        for (sent, good) in [(sha, true), ("uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzeK=", false)] {
            let mut h = w.hasher();
            h.update(body);
            let trailers = headers(&[("x-amz-checksum-sha256", sent)]);
            assert_eq!(w.verify(h.finalize(), Some(&trailers)).is_ok(), good, "{sent}");
        }
        assert!(Wanted::from_headers(&headers(&[("x-amz-trailer", "x-amz-checksum-md7")])).is_err());
        assert!(Wanted::from_headers(&http::HeaderMap::new()).unwrap().is_empty());
    }
}

//! Listings: keys of a bucket after a marker, rolled up at a delimiter, cut at a page size.

use super::{timestamp, DEFAULT_MAX_KEYS};
use mvault_core::buckets::{self, Version};
use s3s::dto::*;
use s3s::{s3_error, S3Result};

/// Objects of a listing: current versions whose key has `prefix`, after `after`, rolled up at `delimiter`.
/// Returns (objects, common prefixes, the last item returned if the listing was cut at `max`).
pub(super) fn list_keys<'a>(
    bucket: &'a buckets::Bucket,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> (Vec<(&'a String, &'a Version)>, Vec<String>, Option<String>) {
    let (mut objs, mut prefixes): (Vec<(&String, &Version)>, Vec<String>) = (Vec::new(), Vec::new());
    let start = match after {
        Some(a) => std::ops::Bound::Excluded(a.to_string()),
        None => std::ops::Bound::Included(prefix.to_string()),
    };
    for (key, vs) in bucket.objects.range::<String, _>((start, std::ops::Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            if key.as_str() > prefix {
                break;
            }
            continue;
        }
        let Some(v) = vs.last().filter(|v| !v.is_delete_marker()) else { continue };
        let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            let rest = &key[prefix.len()..];
            rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
        });
        // Keys under a common prefix already returned (resuming after it, or on this page) are skipped: they
        // are no new item, so they neither fill the page nor make it truncated.
        if let (Some(p), Some(a)) = (&rolled, after) {
            if a.starts_with(p.as_str()) {
                continue;
            }
        }
        if rolled.is_some() && prefixes.last() == rolled.as_ref() {
            continue;
        }
        if objs.len() + prefixes.len() >= max {
            let last = prefixes.last().cloned().into_iter().chain(objs.last().map(|(k, _)| (*k).clone()));
            return (objs, prefixes, last.max());
        }
        match rolled {
            Some(p) => {
                if prefixes.last() != Some(&p) {
                    prefixes.push(p);
                }
            }
            None => objs.push((key, v)),
        }
    }
    (objs, prefixes, None)
}

/// One page of ListObjectVersions: (key, version, is latest), newest version of each key first, and where the
/// next page starts (the last key and version returned) if this one was cut at `max`, in the middle of a key
/// if it must.
pub(super) struct VersionPage<'a> {
    pub items: Vec<(&'a String, &'a Version, bool)>,
    pub next: Option<(String, String)>,
}

pub(super) fn version_page<'a>(
    bucket: &'a buckets::Bucket,
    prefix: &str,
    key_marker: Option<&str>,
    version_marker: Option<&str>,
    max: usize,
) -> S3Result<VersionPage<'a>> {
    use std::ops::Bound;
    let from = match (key_marker, version_marker) {
        (Some(k), Some(_)) => Bound::Included(k.to_string()),
        (Some(k), None) => Bound::Excluded(k.to_string()),
        (None, _) => Bound::Unbounded,
    };
    let mut items: Vec<(&String, &Version, bool)> = Vec::new();
    for (key, vs) in bucket.objects.range::<String, _>((from, Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            if key.as_str() > prefix {
                break;
            }
            continue;
        }
        let mut skip = 0;
        if let (Some(k), Some(vm)) = (key_marker, version_marker) {
            if k == key {
                skip = vs
                    .iter()
                    .rev()
                    .position(|v| v.id == vm)
                    .map(|p| p + 1)
                    .ok_or_else(|| s3_error!(InvalidArgument, "version-id-marker {vm} is not a version of {k}"))?;
            }
        }
        for (n, v) in vs.iter().enumerate().rev().skip(skip) {
            if items.len() >= max {
                let next = items.last().map(|(k, v, _)| ((*k).clone(), v.id.clone()));
                return Ok(VersionPage { items, next });
            }
            items.push((key, v, n + 1 == vs.len()));
        }
    }
    Ok(VersionPage { items, next: None })
}

pub(super) fn hex_token(key: &str) -> String {
    hex::encode(key.as_bytes())
}

pub(super) fn unhex_token(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "malformed continuation token"))
}

/// The page size asked for, at most 1,000; 0 is a page of nothing (and not truncated), as S3 answers.
pub(super) fn max_keys(requested: Option<i32>) -> usize {
    requested.map(|requested| requested.clamp(0, DEFAULT_MAX_KEYS as i32) as usize).unwrap_or(DEFAULT_MAX_KEYS)
}

/// A name as a listing with `encoding-type=url` returns it, as S3 does: unreserved characters and `/` as they
/// are, every other byte as `%XX` (a space `%20`, `+` `%2B`, `%` `%25`), which SDKs and rclone decode.
pub(super) fn url_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// How a listing returns names: as they are, or URL-encoded when the request asked for `encoding-type=url`.
#[derive(Clone, Copy)]
pub(super) struct Names {
    url: bool,
}

impl Names {
    pub fn of(encoding: Option<&EncodingType>) -> S3Result<Names> {
        match encoding.map(|e| e.as_str()) {
            None => Ok(Names { url: false }),
            Some(e) if e.eq_ignore_ascii_case("url") => Ok(Names { url: true }),
            Some(e) => Err(s3_error!(InvalidArgument, "encoding-type {e}: only `url` is defined")),
        }
    }

    pub fn name(self, n: &str) -> String {
        if self.url {
            url_encode(n)
        } else {
            n.to_string()
        }
    }

    /// An optional name; an empty one (`delimiter=`) is left out of the answer, as S3 leaves it.
    pub fn opt(self, n: Option<&str>) -> Option<String> {
        n.filter(|n| !n.is_empty()).map(|n| self.name(n))
    }

    /// The `EncodingType` element of the answer.
    pub fn echo(self) -> Option<EncodingType> {
        self.url.then(|| EncodingType::from_static(EncodingType::URL))
    }
}

/// The owner listings name: the tenant (buckets and objects belong to it, not to a key).
pub(super) fn owner(tenant: &str) -> Owner {
    Owner { display_name: Some(tenant.to_string()), id: Some(tenant.to_string()) }
}

pub(super) fn object_entry(key: String, version: &Version, owner: Option<Owner>) -> Object {
    Object {
        key: Some(key),
        owner,
        size: Some(version.size as i64),
        e_tag: Some(ETag::Strong(version.etag.clone())),
        last_modified: Some(timestamp(version.time_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(deleted: bool) -> Version {
        Version {
            id: "v".into(),
            tree: (!deleted).then(|| "00".repeat(32)),
            size: 1,
            etag: "e".into(),
            time_ms: 0,
            ..Default::default()
        }
    }

    fn bucket(keys: &[&str]) -> buckets::Bucket {
        let mut b = buckets::Bucket::default();
        for k in keys {
            b.objects.insert(k.to_string(), vec![version(false)]);
        }
        b
    }

    fn names(listed: &[(&String, &Version)]) -> Vec<String> {
        listed.iter().map(|(k, _)| (*k).clone()).collect()
    }

    #[test]
    fn a_prefix_lists_only_its_keys_in_order() {
        let b = bucket(&["a/1", "a/2", "ab", "b/1", "0"]);
        let (objs, prefixes, next) = list_keys(&b, "a/", None, None, 100);
        assert_eq!(names(&objs), ["a/1", "a/2"]);
        assert!(prefixes.is_empty() && next.is_none());
    }

    #[test]
    fn a_delimiter_rolls_keys_up_into_common_prefixes_once_each() {
        let b = bucket(&["top", "dir/a", "dir/b", "dir/sub/c", "other/x"]);
        let (objs, prefixes, next) = list_keys(&b, "", Some("/"), None, 100);
        assert_eq!(names(&objs), ["top"]);
        assert_eq!(prefixes, ["dir/", "other/"]);
        assert!(next.is_none());
        let (objs, prefixes, _) = list_keys(&b, "dir/", Some("/"), None, 100);
        assert_eq!(names(&objs), ["dir/a", "dir/b"]);
        assert_eq!(prefixes, ["dir/sub/"]);
    }

    #[test]
    fn pages_resume_after_the_last_item_without_repeating_a_prefix() {
        let b = bucket(&["a", "d/1", "d/2", "d/3", "z"]);
        let (objs, prefixes, next) = list_keys(&b, "", Some("/"), None, 2);
        assert_eq!((names(&objs), prefixes.clone()), (vec!["a".to_string()], vec!["d/".to_string()]));
        let next = next.expect("a cut listing names where it stopped");
        assert_eq!(next, "d/");
        let (objs, prefixes, next) = list_keys(&b, "", Some("/"), Some(&next), 2);
        assert_eq!(names(&objs), ["z"]);
        assert!(prefixes.is_empty() && next.is_none());
    }

    #[test]
    fn deleted_keys_are_not_listed() {
        let mut b = bucket(&["kept", "gone"]);
        b.objects.get_mut("gone").unwrap().push(version(true));
        let (objs, _, _) = list_keys(&b, "", None, None, 100);
        assert_eq!(names(&objs), ["kept"]);
    }

    #[test]
    fn continuation_tokens_round_trip_and_garbage_is_refused() {
        for key in ["", "a b", "ünï/cødé%2F", "k\u{1}"] {
            assert_eq!(unhex_token(&hex_token(key)).unwrap(), key);
        }
        for bad in ["zz", "abc", "ff"] {
            let err = unhex_token(bad).unwrap_err();
            assert_eq!(err.code(), &s3s::S3ErrorCode::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn version_pages_cut_inside_a_key_and_resume_after_the_last_version_returned() {
        let mut b = buckets::Bucket::default();
        let v = |id: &str| Version { id: id.into(), tree: Some("00".repeat(32)), ..Default::default() };
        b.objects.insert("a".into(), vec![v("a1"), v("a2"), v("a3")]);
        b.objects.insert("b".into(), vec![v("b1")]);
        let mut seen = Vec::new();
        let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = version_page(&b, "", km.as_deref(), vm.as_deref(), 2).unwrap();
            seen.extend(page.items.iter().map(|(k, v, latest)| format!("{k}:{}:{latest}", v.id)));
            match page.next {
                Some((k, v)) => (km, vm) = (Some(k), Some(v)),
                None => break,
            }
        }
        assert_eq!(seen, ["a:a3:true", "a:a2:false", "a:a1:false", "b:b1:true"]);
        assert!(version_page(&b, "", None, None, 0).unwrap().next.is_none());
        assert!(version_page(&b, "", Some("a"), Some("zz"), 2).is_err());
    }

    #[test]
    fn url_encoding_keeps_slashes_and_encodes_what_a_decoder_would_misread() {
        assert_eq!(url_encode("a b+c%d/é"), "a%20b%2Bc%25d/%C3%A9");
        assert_eq!(url_encode("plain/key-1_2.~"), "plain/key-1_2.~");
    }

    #[test]
    fn a_full_page_whose_remaining_keys_roll_into_its_last_prefix_is_not_truncated() {
        let b = bucket(&["a/1", "a/2", "b/1", "b/2"]);
        let (o, p, next) = list_keys(&b, "", Some("/"), None, 2);
        assert!(o.is_empty() && p == ["a/", "b/"] && next.is_none(), "{p:?} {next:?}");
        let (_, p, next) = list_keys(&b, "", Some("/"), None, 1);
        assert_eq!((p, next.as_deref()), (vec!["a/".to_string()], Some("a/")));
        assert_eq!(list_keys(&b, "", None, None, 0).2, None, "MaxKeys=0: nothing, not truncated");
    }

    #[test]
    fn page_sizes_default_to_and_never_exceed_a_thousand() {
        assert_eq!(max_keys(None), DEFAULT_MAX_KEYS);
        assert_eq!(max_keys(Some(10)), 10);
        assert_eq!(max_keys(Some(1_000_000)), DEFAULT_MAX_KEYS);
    }
}

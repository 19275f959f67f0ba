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
        // Keys under a common prefix already returned (resuming after it) are skipped.
        if let (Some(p), Some(a)) = (&rolled, after) {
            if a.starts_with(p.as_str()) {
                continue;
            }
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

pub(super) fn hex_token(key: &str) -> String {
    hex::encode(key.as_bytes())
}

pub(super) fn unhex_token(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "malformed continuation token"))
}

pub(super) fn max_keys(requested: Option<i32>) -> usize {
    requested.map(|requested| requested.clamp(1, DEFAULT_MAX_KEYS as i32) as usize).unwrap_or(DEFAULT_MAX_KEYS)
}

pub(super) fn object_entry(key: &str, version: &Version) -> Object {
    Object {
        key: Some(key.to_string()),
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
    fn page_sizes_default_to_and_never_exceed_a_thousand() {
        assert_eq!(max_keys(None), DEFAULT_MAX_KEYS);
        assert_eq!(max_keys(Some(10)), 10);
        assert_eq!(max_keys(Some(1_000_000)), DEFAULT_MAX_KEYS);
    }
}

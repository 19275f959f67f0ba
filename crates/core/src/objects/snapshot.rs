//! `snapshot-bucket`: a bucket's current objects frozen as an ordinary snapshot (a file tree whose files are
//! the objects' chunk lists), so restore, diff, copy and retention treat it like any backup. The bucket log it
//! reads is `repo::buckets`.

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{self, Node, NodeKind};
use crate::ids::{ChunkId, SnapshotId};
use crate::repo::buckets::*;
use crate::repo::Repo;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// What `snapshot_bucket` made.
#[derive(Debug, Serialize)]
pub struct BucketSnapshot {
    pub id: String,
    pub bucket: String,
    pub objects: u64,
    pub bytes: u64,
    /// Keys that cannot be a path in a file tree (an empty, `.` or `..` segment, or a name that is both an
    /// object and a prefix): left out of the snapshot and named here.
    pub skipped: Vec<String>,
}

#[derive(Default)]
struct Dir {
    dirs: BTreeMap<Vec<u8>, Dir>,
    files: BTreeMap<Vec<u8>, Node>,
    mtime_ms: u64,
}

/// Freeze a bucket's current objects as a normal snapshot (host `s3`, path `s3://<bucket>`, tag
/// `bucket:<bucket>`): keys become paths, `/` separating directories. Only tree blobs are written; the
/// object chunks are shared. Returns the index entries to remember and what was made.
pub fn snapshot_bucket(
    repo: &Repo,
    state: &State,
    bucket: &str,
    tags: &[String],
) -> Result<(SnapshotId, BucketSnapshot, crate::objects::Entries)> {
    let b = state.buckets.get(bucket).ok_or_else(|| Error::not_found(format!("bucket {bucket}")))?;
    let mut root = Dir::default();
    let mut made = BucketSnapshot { id: String::new(), bucket: bucket.into(), objects: 0, bytes: 0, skipped: vec![] };
    let mut summary = Summary::default();
    for key in b.objects.keys() {
        let Some(v) = b.current(key) else { continue };
        let marker = key.ends_with('/') && v.size == 0;
        let segs: Vec<&str> = key.trim_end_matches('/').split('/').collect();
        if key.is_empty() || !segs.iter().all(|s| tree::valid_name(s.as_bytes())) {
            made.skipped.push(key.clone());
            continue;
        }
        let (dirs, name) = if marker { (&segs[..], None) } else { (&segs[..segs.len() - 1], segs.last()) };
        let mut d = &mut root;
        let mut clash = false;
        for s in dirs {
            if d.files.contains_key(s.as_bytes()) {
                clash = true;
                break;
            }
            d = d.dirs.entry(s.as_bytes().to_vec()).or_default();
            d.mtime_ms = d.mtime_ms.max(v.time_ms);
        }
        let Some(name) = name else { continue };
        if clash || d.dirs.contains_key(name.as_bytes()) {
            made.skipped.push(key.clone());
            continue;
        }
        let tree = v.tree_id()?.expect("not a delete marker");
        let chunks = crate::objects::chunks(repo, &tree)?;
        let node = Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File { chunks },
            mode: 0o100644,
            mtime_sec: (v.time_ms / 1000) as i64,
            mtime_nsec: ((v.time_ms % 1000) * 1_000_000) as u32,
            size: v.size,
            dev: 0,
            inode: 0,
        };
        d.files.insert(name.as_bytes().to_vec(), node);
        made.objects += 1;
        made.bytes += v.size;
    }
    // A later file may have clashed with a directory made for an earlier key: dirs win, files were skipped.
    summary.files = made.objects;
    summary.bytes = made.bytes;
    let mut packer = crate::objects::Packer::new(repo);
    let root_id = write_dir(repo, &root, &mut packer, &mut HashSet::new(), &mut summary)?;
    let (entries, stored) = packer.finish(&mut |_| Ok(()))?;
    summary.bytes_stored = stored;
    let mut all_tags = vec![format!("bucket:{bucket}")];
    all_tags.extend(tags.iter().cloned());
    let snap = Snapshot {
        version: 1,
        time: crate::repo::now_rfc3339(),
        host: "s3".into(),
        tags: all_tags,
        paths: vec![format!("s3://{bucket}")],
        tree: root_id.to_hex(),
        parent: None,
        locked_until: None,
        summary,
        original: None,
    };
    let id = repo.save_snapshot(&snap)?;
    made.id = id.to_hex();
    Ok((id, made, entries))
}

fn write_dir(
    repo: &Repo,
    dir: &Dir,
    packer: &mut crate::objects::Packer,
    seen: &mut HashSet<ChunkId>,
    summary: &mut Summary,
) -> Result<ChunkId> {
    let mut nodes: Vec<Node> = Vec::with_capacity(dir.dirs.len() + dir.files.len());
    for (name, sub) in &dir.dirs {
        let subtree = write_dir(repo, sub, packer, seen, summary)?;
        summary.dirs += 1;
        nodes.push(Node {
            name: name.clone(),
            kind: NodeKind::Dir { subtree },
            mode: 0o40755,
            mtime_sec: (sub.mtime_ms / 1000) as i64,
            mtime_nsec: 0,
            size: 0,
            dev: 0,
            inode: 0,
        });
    }
    nodes.extend(dir.files.values().cloned());
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let bytes = tree::encode(&nodes);
    let id = repo.current_keys().chunk_id(&bytes);
    if !repo.has_chunk(&id) && seen.insert(id) {
        packer.add_blob(crate::format::pack::BlobType::Tree, id, &bytes)?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, tree: Option<&str>, time_ms: u64) -> Version {
        Version {
            id: id.into(),
            tree: tree.map(String::from),
            size: 1,
            etag: "e".into(),
            time_ms,
            ..Default::default()
        }
    }

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-bucket.v2", "a1b"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in ["ab", "Abc", "-abc", "abc-", "a..b", "192.168.0.1", "a_b", &"a".repeat(64)] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn retention_expires_only_old_noncurrent_versions() {
        let t = "00".repeat(32);
        let mut s = State::default();
        s.apply(&Record::CreateBucket { bucket: "b".into(), time_ms: 0 });
        let put = |k: &str, ver: Version| Record::Put { bucket: "b".into(), key: k.into(), version: ver };
        s.apply(&put("k", v("1", Some(&t), 100)));
        s.apply(&put("k", v("2", Some(&t), 200)));
        s.apply(&put("k", v("3", Some(&t), 1000)));
        // deleted long ago, nothing behind the marker once its version expires
        s.apply(&put("gone", v("a", Some(&t), 100)));
        s.apply(&put("gone", v("m", None, 150)));
        let ex = s.expired(500, u64::MAX, 1200);
        // "1" became noncurrent at 200 (old), "2" at 1000 (recent); "gone"/"a" at 150 (old), then its marker.
        let ids: Vec<&str> = ex
            .iter()
            .map(|r| match r {
                Record::Expire { version, .. } => version.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(ids, ["a", "m", "1"]);
        for r in &ex {
            s.apply(r);
        }
        assert!(!s.buckets["b"].objects.contains_key("gone"));
        assert_eq!(s.buckets["b"].objects["k"].iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["2", "3"]);
        assert_eq!(s.buckets["b"].current("k").unwrap().id, "3");
        // Uploads never completed go on their own clock.
        let info = Upload { key: "u".into(), started_ms: 100, ..Default::default() };
        s.apply(&Record::StartUpload { bucket: "b".into(), upload: "up".into(), info });
        assert!(s.expired(u64::MAX, 2000, 1200).is_empty(), "a young upload stays");
        let ex = s.expired(u64::MAX, 500, 1200);
        assert_eq!(ex, [Record::EndUpload { bucket: "b".into(), upload: "up".into() }]);
    }

    #[test]
    fn delete_markers_hide_and_empty_buckets_know_it() {
        let t = "00".repeat(32);
        let mut s = State::default();
        s.apply(&Record::CreateBucket { bucket: "b".into(), time_ms: 0 });
        assert!(s.buckets["b"].is_empty());
        s.apply(&Record::Put { bucket: "b".into(), key: "k".into(), version: v("1", Some(&t), 1) });
        assert!(!s.buckets["b"].is_empty());
        s.apply(&Record::Put { bucket: "b".into(), key: "k".into(), version: v("2", None, 2) });
        assert!(s.buckets["b"].current("k").is_none());
        assert!(!s.buckets["b"].is_empty(), "kept versions keep a bucket from being deleted");
        assert_eq!(s.trees().unwrap().len(), 1, "the noncurrent version's data is still live");
    }

    fn vault(dir: &tempfile::TempDir) -> Repo {
        let opts =
            crate::repo::InitOptions { kdf: crate::crypto::KdfParams { m_kib: 64, t: 1, p: 1 }, ..Default::default() };
        Repo::init(dir.path().join("v").to_str().unwrap(), b"pw", &opts).unwrap()
    }

    /// A fresh vault whose state holds one empty bucket.
    fn vault_with_bucket(dir: &tempfile::TempDir, bucket: &str) -> (Repo, State) {
        let repo = vault(dir);
        let mut st = load(&repo).unwrap();
        append(&repo, &mut st, Record::CreateBucket { bucket: bucket.into(), time_ms: 1 }).unwrap();
        (repo, st)
    }

    /// A small safetensors file: one BF16 tensor of `len` elements.
    fn safetensors(len: usize, seed: u64) -> Vec<u8> {
        let data = crate::synth::bf16_bytes(&crate::synth::weights_f32(len, seed, 0.02));
        let header = format!(r#"{{"w":{{"dtype":"BF16","shape":[{len}],"data_offsets":[0,{}]}}}}"#, data.len());
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    use crate::objects::BodyOf::Object;

    /// Write an object and record it, as the gateway does.
    fn put_object(repo: &mut Repo, st: &mut State, key: &str, body: &[u8]) -> crate::objects::Written {
        let view = repo.view_without_index().unwrap();
        let known = |id: &ChunkId| repo.has_chunk(id);
        let (w, entries) =
            crate::objects::write(&view, &known, key, Some(body.len() as u64), body, Object, &mut |_| Ok(()), &|_| {})
                .unwrap();
        drop(entries);
        let version = Version {
            id: format!("v{}", st.seq),
            tree: Some(w.tree.to_hex()),
            size: w.size,
            etag: hex::encode(w.md5),
            time_ms: 1000 + st.seq,
            ..Default::default()
        };
        append(repo, st, Record::Put { bucket: "models".into(), key: key.into(), version }).unwrap();
        w
    }

    fn read_all(repo: &Repo, tree: &ChunkId, start: u64, end: u64) -> Vec<u8> {
        let chunks: Vec<(ChunkId, u64)> = crate::objects::chunks(repo, tree)
            .unwrap()
            .into_iter()
            .map(|c| (c, repo.lookup(&c).unwrap().unwrap().raw_length as u64))
            .collect();
        let mut out = Vec::new();
        crate::objects::read_range(&mut |id| repo.read_blob(id), &chunks, start, end, &mut |b| {
            out.extend(b);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn objects_are_chunked_by_tensor_replayed_snapshotted_and_kept_by_prune() {
        let d = tempfile::tempdir().unwrap();
        let (mut repo, mut st) = vault_with_bucket(&d, "models");
        let model = safetensors(600_000, 1);
        let w = put_object(&mut repo, &mut st, "ckpt/step-1/model.safetensors", &model);
        assert_eq!(w.model, Some("safetensors"), "the header at the body's start was recognised");
        assert_eq!(w.size, model.len() as u64);
        use md5::Digest;
        assert_eq!(w.md5, <[u8; 16]>::from(md5::Md5::digest(&model)));
        assert!(w.stored_bytes < model.len() as u64 * 80 / 100, "BF16 weights compress: {}", w.stored_bytes);
        // Ranges, including ones that start and end inside chunks.
        assert_eq!(read_all(&repo, &w.tree, 0, model.len() as u64), model);
        for (a, b) in [(0, 1), (7, 100_000), (500_000, 1_200_008), (model.len() as u64 - 3, model.len() as u64)] {
            assert_eq!(read_all(&repo, &w.tree, a, b), &model[a as usize..b as usize], "range {a}..{b}");
        }
        // The same bytes under another key store nothing new.
        let again = put_object(&mut repo, &mut st, "copy.safetensors", &model);
        assert_eq!(again.new_bytes, 0);
        // A body shorter than declared is refused.
        let short =
            crate::objects::write(&repo, &|_| false, "x", Some(10), &b"12345"[..], Object, &mut |_| Ok(()), &|_| {});
        assert!(short.unwrap_err().to_string().contains("declared"));
        // An overwrite keeps the old version; a replay from the stores gives the same state.
        put_object(&mut repo, &mut st, "ckpt/step-1/model.safetensors", &safetensors(1000, 2));
        let replayed = load(&repo).unwrap();
        assert_eq!(replayed, st);
        // A checkpoint covers the records: they are deleted, and the replay still agrees.
        checkpoint(&repo, &st).unwrap();
        assert!(numbered(&repo, &log_dir(&repo)).unwrap().is_empty());
        assert_eq!(load(&repo).unwrap(), st);
        put_object(&mut repo, &mut st, "notes/readme.txt", b"hello");
        assert_eq!(load(&repo).unwrap(), st);

        // Snapshot the bucket: keys become paths, and the bytes restore exactly.
        let (_, made, _) = snapshot_bucket(&repo, &st, "models", &[]).unwrap();
        assert_eq!((made.objects, made.skipped.len()), (3, 0));
        let out = d.path().join("restored");
        let (_, snap) = repo.find_snapshot(&made.id).unwrap();
        let opts = crate::ops::restore::RestoreOptions {
            target: out.clone(),
            include: vec![],
            verify: true,
            threads: 2,
            ..Default::default()
        };
        crate::ops::restore::restore(&repo, &snap.tree_id().unwrap(), &opts, &Default::default()).unwrap();
        assert_eq!(std::fs::read(out.join("copy.safetensors")).unwrap(), model);
        assert_eq!(std::fs::read(out.join("notes/readme.txt")).unwrap(), b"hello");

        // Prune keeps every version's chunks (no snapshot names the old version of step-1).
        crate::ops::prune::prune(&repo, &Default::default(), &|_| {}).unwrap();
        let repo = Repo::open(d.path().join("v").to_str().unwrap(), b"pw").unwrap();
        let old = &st.buckets["models"].objects["ckpt/step-1/model.safetensors"][0];
        assert_eq!(read_all(&repo, &old.tree_id().unwrap().unwrap(), 0, old.size), model);

        // Once retention expires the old version, prune frees its chunks.
        let before: u64 = repo.index_usage().unwrap().0;
        for r in st.expired(0, 0, u64::MAX) {
            append(&repo, &mut st, r).unwrap();
        }
        std::fs::remove_dir_all(&out).unwrap();
        for (id, _) in repo.snapshots().unwrap().0 {
            repo.delete_meta(&repo.snapshot_path(&id)).unwrap();
        }
        crate::ops::prune::prune(&repo, &Default::default(), &|_| {}).unwrap();
        let repo = Repo::open(d.path().join("v").to_str().unwrap(), b"pw").unwrap();
        let after: u64 = repo.index_usage().unwrap().0;
        assert!(after < before, "expired versions are freed: {before} -> {after}");
        let cur = st.buckets["models"].current("copy.safetensors").unwrap();
        assert_eq!(read_all(&repo, &cur.tree_id().unwrap().unwrap(), 0, cur.size), model);
    }

    #[test]
    fn a_model_uploaded_in_parts_is_cut_as_it_would_be_whole() {
        use crate::objects::{concat, write, BodyOf};
        let d = tempfile::tempdir().unwrap();
        let mut repo = vault(&d);
        let model = safetensors(700_000, 3);
        let (whole, e) = write(
            &repo,
            &|_| false,
            "m.safetensors",
            Some(model.len() as u64),
            &model[..],
            Object,
            &mut |_| Ok(()),
            &|_| {},
        )
        .unwrap();
        drop(e);
        assert_eq!(whole.model, Some("safetensors"));
        // The same file in parts of 500,000 bytes (not a multiple of anything in it), the way a client sends it.
        let part = 500_000;
        let slices: Vec<&[u8]> = model.chunks(part).collect();
        let mut layout = None;
        let put = |repo: &mut Repo, data: &[u8], of: BodyOf| {
            let known = |id: &ChunkId| repo.has_chunk(id);
            let (w, _) =
                write(repo, &known, "m.safetensors", Some(data.len() as u64), data, of, &mut |_| Ok(()), &|_| {})
                    .unwrap();
            w
        };
        let first = put(&mut repo, slices[0], BodyOf::FirstPart { on_layout: &mut |l| layout = l.cloned() });
        let layout = layout.expect("part 1's header gave the file's layout");
        let mut parts = vec![first];
        for (i, s) in slices.iter().enumerate().skip(1) {
            parts.push(put(&mut repo, s, BodyOf::Part { layout: &layout, offset: (i * part) as u64 }));
        }
        let new: u64 = parts.iter().map(|p| p.new_bytes).sum();
        let avg = repo.config.chunker.avg as u64;
        assert!(
            new <= (slices.len() as u64 - 1) * avg,
            "only the pieces cut by part boundaries are new: {new} bytes (average piece {avg})"
        );
        let trees: Vec<ChunkId> = parts.iter().map(|p| p.tree).collect();
        let (tree, _) = concat(&repo, &trees, model.len() as u64).unwrap();
        assert_eq!(read_all(&repo, &tree, 0, model.len() as u64), model);
        // A part cut by content (its file unknown) reads back too.
        let plain = put(&mut repo, slices[1], BodyOf::Plain);
        assert_eq!(read_all(&repo, &plain.tree, 0, slices[1].len() as u64), slices[1]);
    }

    #[test]
    fn check_follows_bucket_objects_and_names_a_broken_one() {
        let d = tempfile::tempdir().unwrap();
        let (mut repo, mut st) = vault_with_bucket(&d, "models");
        put_object(&mut repo, &mut st, "ok.bin", b"fine bytes");
        let progress = Default::default();
        let report = crate::ops::check::check(&repo, crate::ops::check::ReadData::None, &progress).unwrap();
        assert!(report.ok(), "{:?}", report.errors);
        assert!(report.chunks_referenced >= 2, "the object's tree and chunk are referenced");
        let lost = Version { id: "x".into(), tree: Some("ab".repeat(32)), ..v("x", None, 5) };
        append(&repo, &mut st, Record::Put { bucket: "models".into(), key: "lost.bin".into(), version: lost }).unwrap();
        let report = crate::ops::check::check(&repo, crate::ops::check::ReadData::None, &progress).unwrap();
        assert!(report.errors.iter().any(|e| e.contains("bucket models object \"lost.bin\"")), "{:?}", report.errors);
    }

    #[test]
    fn a_missing_record_is_reported_not_skipped() {
        let d = tempfile::tempdir().unwrap();
        let repo = vault(&d);
        let mut st = State::default();
        for b in ["aaa", "bbb", "ccc"] {
            append(&repo, &mut st, Record::CreateBucket { bucket: b.into(), time_ms: 1 }).unwrap();
        }
        repo.delete_meta(&format!("{}/{:020}", log_dir(&repo), 2)).unwrap();
        let e = load(&repo).unwrap_err().to_string();
        assert!(e.contains("record 2 is missing"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn records_round_trip_as_json(key in ".{0,40}", size in 0u64..u64::MAX, part in 1u32..10_000) {
            let recs = vec![
                Record::Put { bucket: "b".into(), key: key.clone(), version: Version {
                    id: "v".into(), tree: Some("ab".repeat(32)), size, etag: "x".into(), time_ms: 5,
                    content_type: Some("a/b".into()), metadata: [("k".to_string(), key.clone())].into(),
                    upload: Some("u".into()), parts: vec![size / 2, size - size / 2],
                    headers: [("cache-control".to_string(), key.clone())].into(),
                    checksums: [("CRC32".to_string(), "DUoRhQ==".to_string())].into(),
                }},
                Record::Part { bucket: "b".into(), upload: "u".into(), number: part,
                    part: Part { tree: "cd".repeat(32), size, etag: "y".into(), time_ms: 6, ..Default::default() } },
            ];
            for r in recs {
                let back: Record = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
                proptest::prop_assert_eq!(back, r);
            }
        }
    }
}

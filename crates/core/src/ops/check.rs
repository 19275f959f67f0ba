//! `check`: the vault's structure (every index file and snapshot decrypts, every tree parses, every chunk a
//! snapshot needs is indexed, every indexed pack exists) and, with `read_data`, every byte of every pack
//! (shard hash, blob table, each blob's AEAD tag and its ChunkId).

use crate::error::Result;
use crate::format::pack;
use crate::format::tree::NodeKind;
use crate::ids::{ChunkId, PackId};
use crate::repo::Repo;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug)]
pub enum ReadData {
    None,
    All,
    /// A random subset of packs, as a percentage.
    Subset(f64),
}

#[derive(Default)]
pub struct Progress {
    pub packs_done: AtomicU64,
    pub packs_total: AtomicU64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub trees: u64,
    pub chunks_referenced: u64,
    pub index_files: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub blobs_verified: u64,
    /// Blobs the packs read hold that no snapshot, S3 object or live delta needs, or that are not the copy
    /// the index uses: garbage that `prune` removes (all of it with `--repack-unused 0%`).
    pub blobs_unreferenced: u64,
    pub bytes_unreferenced: u64,
    /// Packs below full redundancy on the stores that are up: repairable damage.
    pub shortfall: crate::repo::heal::Shortfall,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// No error and no lost redundancy.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.shortfall.degraded_packs() == 0
    }
}

/// Key files on `fs:` stores that other local users can read: each holds the master key wrapped under the
/// passphrase, so a copy is a passphrase to guess offline. (Tenant keys are wrapped under the master key.)
fn exposed_key_files(repo: &Repo) -> Vec<String> {
    let mut out = Vec::new();
    for store in repo.stores() {
        let Some(root) = store.url().strip_prefix("fs:") else { continue };
        for name in store.list("keys").unwrap_or_default() {
            let path = std::path::Path::new(root).join(&name);
            if crate::private::readable_by_others(&path).unwrap_or(false) {
                out.push(format!(
                    "key file {} can be read by other users, who could guess the passphrase offline: \
                     run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ));
            }
        }
    }
    out
}

pub fn check(repo: &Repo, read: ReadData, progress: &Progress) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    // Every index file is read and authenticated again, whatever the catalog already holds (it may have
    // ingested a file before the file was damaged), and every entry must be in the catalog.
    let index_names = repo.index_names()?;
    r.index_files = index_names.len() as u64;
    for name in &index_names {
        match repo.read_index_file(name) {
            Ok(entries) => {
                let ids: Vec<ChunkId> = entries.iter().map(|(id, _)| *id).collect();
                let missing = repo.lookup_many(&ids)?.iter().filter(|l| l.is_none()).count();
                if missing > 0 {
                    r.errors.push(format!(
                        "{name}: {missing} of its chunks are not in the catalog ({}): run `mvault catalog rebuild`",
                        repo.catalog_name()
                    ));
                }
            }
            Err(e) => r.errors.push(e.to_string()),
        }
    }

    r.warnings.extend(exposed_key_files(repo));

    let (snaps, bad) = repo.snapshots()?;
    r.errors.extend(bad.iter().map(|e| e.to_string()));
    r.snapshots = snaps.len() as u64;

    // Trees and chunk references, from every snapshot and every S3 object version and upload part.
    let mut roots: Vec<(String, ChunkId)> = Vec::new();
    for (sid, s) in &snaps {
        match s.tree_id() {
            Ok(t) => roots.push((format!("snapshot {sid}"), t)),
            Err(e) => r.errors.push(format!("snapshot {sid}: {e}")),
        }
    }
    match crate::repo::buckets::load(repo) {
        Ok(state) => {
            for (name, b) in &state.buckets {
                for (key, v) in b.objects.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k, v))) {
                    match v.tree_id() {
                        Ok(Some(t)) => roots.push((format!("bucket {name} object {key:?} version {}", v.id), t)),
                        Ok(None) => {}
                        Err(e) => r.errors.push(format!("bucket {name} object {key:?}: {e}")),
                    }
                }
                for (id, u) in &b.uploads {
                    for (n, p) in &u.parts {
                        match ChunkId::from_hex(&p.tree) {
                            Ok(t) => roots.push((format!("bucket {name} upload {id} part {n}"), t)),
                            Err(e) => r.errors.push(format!("bucket {name} upload {id} part {n}: {e}")),
                        }
                    }
                }
            }
        }
        Err(e) => r.errors.push(format!("S3 bucket records: {e}")),
    }
    let mut seen_trees: HashSet<ChunkId> = HashSet::new();
    let mut referenced: HashSet<ChunkId> = HashSet::new();
    for (sid, root) in &roots {
        let root = *root;
        let mut stack = vec![(root, String::new())];
        while let Some((t, path)) = stack.pop() {
            if !seen_trees.insert(t) {
                continue;
            }
            referenced.insert(t);
            let nodes = match repo.load_tree(&t) {
                Ok(n) => n,
                Err(e) => {
                    r.errors.push(format!("{sid}: directory {}: {e}", if path.is_empty() { "/" } else { &path }));
                    continue;
                }
            };
            for n in nodes {
                let child = format!("{path}/{}", String::from_utf8_lossy(&n.name));
                match n.kind {
                    NodeKind::Dir { subtree } => stack.push((subtree, child)),
                    NodeKind::File { chunks } => {
                        // One batched lookup per file for the chunks not seen yet.
                        let fresh: Vec<ChunkId> = chunks.into_iter().filter(|c| referenced.insert(*c)).collect();
                        for (c, found) in fresh.iter().zip(repo.lookup_many(&fresh)?) {
                            if found.is_none() {
                                r.errors.push(format!("{sid}: file {child}: chunk {c} is in no index"));
                            }
                        }
                    }
                    NodeKind::Symlink { .. } => {}
                }
            }
        }
    }
    r.trees = seen_trees.len() as u64;
    r.chunks_referenced = referenced.len() as u64;
    let mut needed = referenced;

    // Every delta's base must be there too (prune keeps them; a missing one means lost data).
    // The same pass collects the packs the index names (a set of packs, not of chunks), and the bases of
    // referenced deltas, which are needed as much as the chunks themselves.
    let mut indexed: BTreeSet<PackId> = BTreeSet::new();
    let mut bases: Vec<(ChunkId, ChunkId)> = Vec::new();
    repo.scan_index(&mut |id, l| {
        indexed.insert(l.pack);
        if let Some(b) = l.base {
            bases.push((id, b));
            if repo.lookup(&b)?.is_none() {
                r.errors.push(format!("chunk {id}: a delta whose base {b} is in no index"));
            }
        }
        Ok(())
    })?;
    loop {
        let before = needed.len();
        for (id, b) in &bases {
            if needed.contains(id) {
                needed.insert(*b);
            }
        }
        if needed.len() == before {
            break;
        }
    }

    // Packs named by the index against packs on the stores (one listing of the stores serves this and the
    // redundancy count below).
    let inventory = repo.shard_inventory()?;
    let on_store: BTreeSet<PackId> = inventory.keys().copied().collect();
    for p in indexed.difference(&on_store) {
        r.errors.push(format!("pack {p}: named by the index but on no store"));
    }
    for p in on_store.difference(&indexed) {
        r.warnings.push(format!(
            "pack {p}: on a store but in no index (left by an interrupted backup, prune or repair; `mvault prune` \
             removes it)"
        ));
    }
    r.packs = on_store.len() as u64;
    for t in repo.temporaries()? {
        let age = t.age.map_or("of unknown age".to_string(), |a| format!("{} min old", a.as_secs() / 60));
        let what = if t.abandoned() {
            "left by an interrupted write; `mvault prune` or `mvault repair` removes it"
        } else {
            "a write in flight or just interrupted; `mvault prune` removes it once older than the lock expiry (15 min)"
        };
        r.warnings.push(format!(
            "{}/{}: temporary object ({age}, {} bytes), {what}",
            repo.stores()[t.store].url(),
            t.name,
            t.size
        ));
    }
    r.shortfall = repo.shortfall(&inventory)?;
    for p in &r.shortfall.unreadable {
        r.errors.push(format!(
            "pack {p}: fewer than {} shards on the stores that are up: unreadable",
            repo.config.redundancy.k
        ));
    }

    let to_read: Vec<PackId> = match read {
        ReadData::None => vec![],
        ReadData::All => on_store.iter().copied().collect(),
        ReadData::Subset(pct) => {
            // A fresh random choice each run, so repeated subset checks cover the whole vault over time.
            let salt = crate::crypto::random32();
            on_store
                .iter()
                .copied()
                .filter(|p| {
                    let h = blake3::keyed_hash(&salt, &p.0);
                    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
                    (x as f64 / u64::MAX as f64) * 100.0 < pct
                })
                .collect()
        }
    };
    progress.packs_total.store(to_read.len() as u64, Ordering::Relaxed);
    // One worker per core: decryption, decoding and hashing are CPU work, and a pack is at most ~20 MiB in
    // memory per worker. The outcomes come back in the packs' order.
    let outcomes = crate::parallel::map(&to_read, crate::parallel::cores(), |p| {
        let outcome = read_pack(repo, p, &needed);
        progress.packs_done.fetch_add(1, Ordering::Relaxed);
        outcome
    });
    for outcome in outcomes {
        match outcome {
            Ok(counts) => {
                r.blobs_verified += counts.verified;
                r.blobs_unreferenced += counts.unreferenced;
                r.bytes_unreferenced += counts.unreferenced_bytes;
            }
            Err(e) => r.errors.push(e.to_string()),
        }
        r.packs_read += 1;
    }
    if r.blobs_unreferenced > 0 {
        r.warnings.push(format!(
            "{} blobs ({} bytes) in the packs read are garbage nothing uses: `mvault prune` repacks the packs that \
             are mostly garbage, `mvault prune --repack-unused 0%` removes all of it",
            r.blobs_unreferenced, r.bytes_unreferenced
        ));
    }
    Ok(r)
}

#[derive(Default)]
struct PackCounts {
    verified: u64,
    unreferenced: u64,
    unreferenced_bytes: u64,
}

/// Read and verify every blob of one pack, counting those that are garbage: not `needed`, or not the copy
/// the index points at.
fn read_pack(repo: &Repo, id: &PackId, needed: &HashSet<ChunkId>) -> Result<PackCounts> {
    let bytes = repo.read_pack(id)?;
    let opened = repo.open_pack(id, &bytes)?;
    let ctx = repo.blob_context(id, opened.key_version);
    let mut counts = PackCounts::default();
    for (i, e) in opened.entries.iter().enumerate() {
        let name = format!("pack {id} blob {i} ({})", e.id);
        let ct = &bytes[e.offset as usize..(e.offset as usize + e.length as usize)];
        let enc = pack::open_blob(&opened.key, &ctx, i as u32, e, ct, &name)?;
        let indexed = repo.lookup(&e.id)?;
        let base = indexed.and_then(|l| l.base);
        let (plain, _) = repo.decode_blob(e.codec, enc, e.raw_length, base.as_ref(), &name, u8::MAX, None)?;
        repo.verify_chunk(&e.id, &plain, opened.key_version, &name)?;
        counts.verified += 1;
        let this_copy = indexed.is_some_and(|l| l.pack == *id && l.index == i as u32);
        if !this_copy || !needed.contains(&e.id) {
            counts.unreferenced += 1;
            counts.unreferenced_bytes += e.length as u64;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::format::index::Location;
    use crate::format::pack::{BlobType, Codec};
    use crate::repo::InitOptions;

    /// A delta whose base the index does not know is lost data, and check says which chunk; a delta whose base
    /// is there is not reported.
    #[test]
    fn a_delta_without_its_base_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, ..Default::default() };
        let repo = Repo::init(d.path().join("v").to_str().unwrap(), b"pw", &opts).unwrap();
        let loc = |codec, base| Location {
            pack: PackId([9; 16]),
            blob_type: BlobType::Data,
            codec,
            index: 0,
            offset: 0,
            length: 10,
            raw_length: 10,
            base,
        };
        let (whole, good, orphan, gone) = (ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32]), ChunkId([4; 32]));
        repo.write_index(vec![
            (whole, loc(Codec::Zstd, None)),
            (good, loc(Codec::Delta, Some(whole))),
            (orphan, loc(Codec::Delta, Some(gone))),
        ])
        .unwrap();
        let r = check(&repo, ReadData::None, &Progress::default()).unwrap();
        let about_bases: Vec<&String> = r.errors.iter().filter(|e| e.contains("a delta whose base")).collect();
        assert_eq!(about_bases.len(), 1, "{:?}", r.errors);
        assert!(about_bases[0].contains(&orphan.to_string()) && about_bases[0].contains(&gone.to_string()));
    }

    /// Packs are read in parallel, and every damaged one is still reported, in the packs' order, with the
    /// others' blobs counted.
    #[test]
    fn every_damaged_pack_is_reported_in_order() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, pack_size: 64 << 10, ..Default::default() };
        let mut repo = Repo::init(d.path().join("v").to_str().unwrap(), b"pw", &opts).unwrap();
        let src = d.path().join("data");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..12 {
            std::fs::write(src.join(format!("f{i}")), crate::synth::random_bytes(50_000, i)).unwrap();
        }
        let b = crate::ops::backup::BackupOptions { paths: vec![src], ..Default::default() };
        crate::ops::backup::backup(&mut repo, &b, &Default::default(), &|_| {}).unwrap();
        let packs: Vec<PackId> = repo.list_packs().unwrap().into_iter().collect();
        assert!(packs.len() >= 6, "{} packs", packs.len());
        let clean = check(&repo, ReadData::All, &Progress::default()).unwrap();
        assert!(clean.errors.is_empty(), "{:?}", clean.errors);
        let damaged = [packs[1], packs[packs.len() - 2]];
        for p in damaged {
            let h = p.to_hex();
            let path = d.path().join(format!("v/tenants/default/packs/{}/{h}.0", &h[..2]));
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[40] ^= 0x55;
            std::fs::write(&path, bytes).unwrap();
        }
        let r = check(&repo, ReadData::All, &Progress::default()).unwrap();
        assert_eq!(r.packs_read, packs.len() as u64);
        let named: Vec<PackId> = r
            .errors
            .iter()
            .map(|e| *damaged.iter().find(|p| e.contains(&p.to_hex())).expect("names a damaged pack"))
            .collect();
        assert_eq!(named, damaged, "{:?}", r.errors);
        assert!(r.blobs_verified > 0 && r.blobs_verified < clean.blobs_verified);
    }
}

//! `forget` (drop snapshots by retention policy or by id) and `prune` (reclaim the space nothing uses).
//!
//! Prune runs under an exclusive lock and in a crash-safe order:
//! 1. repack: the live blobs of mostly-garbage packs are re-encrypted into new packs (written durably);
//! 2. one new index file naming every live blob (in kept packs and in the new ones);
//! 3. the old index files are deleted;
//! 4. the packs nothing references any more are deleted;
//! 5. temporaries of interrupted writes older than the lock expiry, and stale locks, are removed.
//!
//! What is garbage is decided from each pack's own blob table, not from the index: the index names only the
//! blobs an earlier prune kept, while the table lists every blob the pack holds, so garbage left in a kept pack
//! is seen again by every later prune, and the bytes freed are the bytes that left the stores.
//!
//! Killed after 1, the new packs are unreferenced garbage for the next prune; after 2, two index files say the
//! same thing; after 3, the old packs are unreferenced. At no point does an index name a missing pack, so every
//! snapshot stays restorable, and a rerun finishes the job.

use crate::error::{Error, Result};
use crate::format::index::Location;
use crate::format::pack::{self, PackBuilder};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::ids::{ChunkId, PackId, SnapshotId};
use crate::ops::retention::{self, Decision, Policy};
use crate::repo::Repo;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

#[derive(Clone, Debug, Default)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    pub fn parse(text: &str) -> Result<GroupBy> {
        let mut g = GroupBy::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => return Err(Error::Usage(format!("--group-by: unknown key {other:?} (host, paths, tags)"))),
            }
        }
        Ok(g)
    }

    fn key(&self, snapshot: &Snapshot) -> String {
        let mut k = Vec::new();
        if self.host {
            k.push(format!("host={}", snapshot.host));
        }
        if self.paths {
            k.push(format!("paths={}", snapshot.paths.join(",")));
        }
        if self.tags {
            let mut t = snapshot.tags.clone();
            t.sort();
            k.push(format!("tags={}", t.join(",")));
        }
        k.join(" ")
    }
}

pub struct ForgetOptions {
    pub policy: Policy,
    pub ids: Vec<String>,
    pub group_by: GroupBy,
    pub dry_run: bool,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ForgetReport {
    pub decisions: Vec<Decision>,
    pub removed: Vec<String>,
    /// Snapshots asked for by id that are locked: never removed.
    pub refused_locked: Vec<String>,
    pub dry_run: bool,
}

fn locked_until(snapshot: &Snapshot) -> Option<SystemTime> {
    snapshot.locked_until.as_deref().and_then(|l| humantime::parse_rfc3339_weak(l).ok())
}

/// Forget snapshots: those named by id, and those the policy does not keep. Locked snapshots are never
/// removed, whoever asks.
pub fn forget(repo: &Repo, opts: &ForgetOptions) -> Result<ForgetReport> {
    if opts.policy.is_empty() && opts.ids.is_empty() {
        return Err(Error::Usage("forget needs snapshot ids or a policy (--keep-last N, --keep-daily N, ...)".into()));
    }
    if !opts.dry_run {
        repo.require_all_stores("forget")?;
    }
    let now = crate::repo::now();
    let (all, bad) = repo.snapshots()?;
    if let Some(e) = bad.first() {
        return Err(Error::Usage(format!(
            "a snapshot cannot be read ({e}); run `mvault check` before forgetting anything"
        )));
    }
    let mut report = ForgetReport { dry_run: opts.dry_run, ..Default::default() };
    let mut remove: BTreeSet<SnapshotId> = BTreeSet::new();
    for spec in &opts.ids {
        let (id, snap) = repo.find_snapshot(spec)?;
        if locked_until(&snap).is_some_and(|l| l > now) {
            report.refused_locked.push(format!("{id} (locked until {})", snap.locked_until.as_deref().unwrap_or("?")));
        } else {
            remove.insert(id);
        }
    }
    if !opts.policy.is_empty() {
        let items: Vec<retention::Item> = all
            .iter()
            .map(|(id, s)| retention::Item {
                id: id.to_hex(),
                time: s.system_time(),
                group: opts.group_by.key(s),
                tags: s.tags.clone(),
                locked_until: locked_until(s),
            })
            .collect();
        report.decisions = retention::apply(&opts.policy, &items, now);
        for d in report.decisions.iter().filter(|d| !d.keep) {
            remove.insert(SnapshotId::from_hex(&d.id)?);
        }
    }
    for id in &remove {
        if !opts.dry_run {
            repo.delete_meta(&repo.snapshot_path(id))?;
        }
        report.removed.push(id.to_hex());
    }
    Ok(report)
}

pub struct PruneOptions {
    pub dry_run: bool,
    /// Repack a pack when at least this fraction of its bytes is garbage (0.0 ..= 1.0).
    pub repack_unused: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { dry_run: false, repack_unused: 0.5 }
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct PrunePlan {
    pub snapshots: u64,
    pub live_blobs: u64,
    pub packs: u64,
    pub packs_to_delete: u64,
    pub packs_to_repack: u64,
    /// Packs on the stores that no index names (left by interrupted backups, prunes or repairs).
    pub packs_unindexed: u64,
    /// Blob bytes the kept packs and the new packs hold for live chunks, after the prune.
    pub live_bytes: u64,
    pub live_bytes_repacked: u64,
    /// Garbage left in kept packs (below the repack threshold): blob bytes their own tables list that no
    /// snapshot needs. The next prune sees them again, from the same tables.
    pub dead_bytes_kept: u64,
    /// Garbage blob bytes that leave the stores (before redundancy).
    pub bytes_freed: u64,
    /// Shard bytes that left the stores: those of the deleted packs, less what the repacked packs wrote
    /// (an estimate from the redundancy in a dry run).
    pub stored_bytes_freed: u64,
    pub index_files_replaced: u64,
    /// Temporary objects of interrupted writes, older than the lock expiry, removed from the stores.
    pub temporaries_removed: u64,
    pub temporary_bytes_removed: u64,
    /// Stale locks (of dead processes, or expired) removed.
    pub stale_locks_removed: u64,
    pub dry_run: bool,
    pub seconds: f64,
}

/// A live delta needs its base: add the base of every location of every live chunk (a chunk stored twice,
/// once whole and once as a delta, may keep either copy), and so on down the chain, which is bounded.
fn keep_delta_bases(live: &mut HashSet<ChunkId>, per_pack: &BTreeMap<PackId, Vec<(ChunkId, Location)>>) {
    let mut bases: HashMap<ChunkId, Vec<ChunkId>> = HashMap::new();
    for (id, loc) in per_pack.values().flatten() {
        if let Some(b) = loc.base {
            bases.entry(*id).or_default().push(b);
        }
    }
    let mut todo: Vec<ChunkId> = live.iter().filter(|id| bases.contains_key(id)).copied().collect();
    while let Some(id) = todo.pop() {
        for b in bases.get(&id).into_iter().flatten() {
            if live.insert(*b) {
                todo.push(*b);
            }
        }
    }
}

/// Every chunk and tree a snapshot, or an object or upload part in a bucket, can reach.
fn live_set(repo: &Repo, snaps: &[(SnapshotId, Snapshot)]) -> Result<HashSet<ChunkId>> {
    let mut live = HashSet::new();
    let mut stack: Vec<ChunkId> = snaps.iter().map(|(_, s)| s.tree_id()).collect::<Result<_>>()?;
    stack.extend(crate::repo::buckets::live_trees(repo)?);
    while let Some(t) = stack.pop() {
        if !live.insert(t) {
            continue;
        }
        for n in repo.load_tree(&t)? {
            match n.kind {
                NodeKind::Dir { subtree } => stack.push(subtree),
                NodeKind::File { chunks } => live.extend(chunks),
                NodeKind::Symlink { .. } => {}
            }
        }
    }
    Ok(live)
}

/// Re-encrypt, under the current tenant key version, every blob of `packs` that `keep` locates in one of
/// them, into new packs written durably; `keep` then points at the new locations.
/// Returns the shard bytes written.
pub(crate) fn repack_blobs(repo: &Repo, packs: &[PackId], keep: &mut HashMap<ChunkId, Location>) -> Result<u64> {
    let keys = repo.current_keys();
    let target = repo.config.pack_size as usize;
    let mut builder: Option<PackBuilder> = None;
    let mut written = 0;
    let flush = |b: PackBuilder, keep: &mut HashMap<ChunkId, Location>| -> Result<u64> {
        let (id, bytes, entries) = b.finish();
        let (stored, _) = repo.write_pack(&id, &bytes)?;
        for (i, e) in entries.iter().enumerate() {
            let base = keep.get(&e.id).and_then(|l| l.base);
            let loc = Location {
                base,
                pack: id,
                blob_type: e.blob_type,
                codec: e.codec,
                index: i as u32,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            };
            keep.insert(e.id, loc);
        }
        Ok(stored)
    };
    for pack_id in packs {
        let bytes = repo.read_pack(pack_id)?;
        let opened = repo.open_pack(pack_id, &bytes)?;
        let ctx = repo.blob_context(pack_id, opened.key_version);
        for (i, e) in opened.entries.iter().enumerate() {
            // move only the copies the new index keeps from this pack
            if keep.get(&e.id).is_none_or(|l| l.pack != *pack_id || l.index != i as u32) {
                continue;
            }
            let name = format!("pack {pack_id} blob {i}");
            let ct = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            let enc = pack::open_blob(&opened.key, &ctx, i as u32, e, ct, &name)?;
            let base = keep[&e.id].base;
            let (plain, _) =
                repo.decode_blob(e.codec, enc.clone(), e.raw_length, base.as_ref(), &name, u8::MAX, None)?;
            repo.verify_chunk(&e.id, &plain, opened.key_version, &name)?;
            let b =
                builder.get_or_insert_with(|| PackBuilder::new(&repo.vault_id, &repo.tenant, keys, target + (5 << 20)));
            b.add(e.blob_type, e.codec, e.id, &enc, e.raw_length);
            if b.len() >= target {
                written += flush(builder.take().expect("builder"), keep)?;
            }
        }
    }
    if let Some(b) = builder.take().filter(|b| !b.is_empty()) {
        written += flush(b, keep)?;
    }
    Ok(written)
}

/// What prune does with one indexed pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    Delete,
}

/// One indexed pack as its own blob table describes it.
struct PackView {
    pack: PackId,
    /// Blob bytes of every blob in the pack's table, live or not.
    total: u64,
    /// The index entries of live chunks that lie in this pack, each checked against the pack's table.
    live: Vec<(ChunkId, Location)>,
}

impl PackView {
    fn live_bytes(&self) -> u64 {
        self.live.iter().map(|(_, l)| l.length as u64).sum()
    }
}

/// Read the blob table of every indexed pack (a few at a time: each is one ranged read) and pair it with
/// the index entries of live chunks in that pack. A pack's table, not the index, says how big it is: the
/// index names only the blobs an earlier prune kept, while the table lists the garbage too.
fn pack_views(
    repo: &Repo,
    per_pack: &BTreeMap<PackId, Vec<(ChunkId, Location)>>,
    live: &HashSet<ChunkId>,
) -> Result<Vec<PackView>> {
    const READERS: usize = 8;
    let packs: Vec<(&PackId, &Vec<(ChunkId, Location)>)> = per_pack.iter().collect();
    let views = crate::parallel::map(&packs, READERS, |(pack, entries)| -> Result<PackView> {
        let live_entries: Vec<(ChunkId, Location)> =
            entries.iter().filter(|(id, _)| live.contains(id)).copied().collect();
        let table = match repo.pack_table(pack) {
            Ok(t) => t,
            // a pack nothing live needs goes whatever its state; its size is what the index knew
            Err(_) if live_entries.is_empty() => {
                let total = entries.iter().map(|(_, l)| l.length as u64).sum();
                return Ok(PackView { pack: **pack, total, live: live_entries });
            }
            Err(e) => return Err(e),
        };
        for (id, loc) in &live_entries {
            let agrees = table.get(loc.index as usize).is_some_and(|e| {
                e.id == *id && e.offset == loc.offset && e.length == loc.length && e.codec == loc.codec
            });
            if !agrees {
                return Err(Error::corrupt(
                    format!("pack {pack}"),
                    format!(
                        "its blob table does not hold chunk {id} at blob {} as the index says; run `mvault check --read-data`",
                        loc.index
                    ),
                ));
            }
        }
        Ok(PackView { pack: **pack, total: table.iter().map(|e| e.length as u64).sum(), live: live_entries })
    });
    views.into_iter().collect()
}

/// Decide every pack's fate and the one copy of each live chunk the new index keeps. Packs with more of
/// their bytes live choose first, so a chunk stored twice is kept where it leaves less garbage.
fn decide(
    mut views: Vec<PackView>,
    repack_unused: f64,
    plan: &mut PrunePlan,
) -> (HashMap<ChunkId, Location>, Vec<(PackId, Fate)>) {
    let fraction = |v: &PackView| if v.total == 0 { 0.0 } else { v.live_bytes() as f64 / v.total as f64 };
    views.sort_by(|a, b| fraction(b).total_cmp(&fraction(a)).then(a.pack.cmp(&b.pack)));
    let mut keep: HashMap<ChunkId, Location> = HashMap::new();
    let mut fates = Vec::with_capacity(views.len());
    for v in &views {
        let mut seen = HashSet::new();
        let kept: Vec<&(ChunkId, Location)> =
            v.live.iter().filter(|(id, _)| !keep.contains_key(id) && seen.insert(*id)).collect();
        let kept_bytes: u64 = kept.iter().map(|(_, l)| l.length as u64).sum();
        let dead = v.total.saturating_sub(kept_bytes);
        let fate = if kept.is_empty() {
            Fate::Delete
        } else if dead > 0 && dead as f64 >= repack_unused * v.total as f64 {
            Fate::Repack
        } else {
            Fate::Keep
        };
        match fate {
            Fate::Delete => plan.bytes_freed += v.total,
            Fate::Repack => {
                plan.live_bytes_repacked += kept_bytes;
                plan.bytes_freed += dead;
            }
            Fate::Keep => plan.dead_bytes_kept += dead,
        }
        plan.live_bytes += kept_bytes;
        // the ids are taken even when the pack is repacked, so no later pack keeps a second copy
        for (id, loc) in kept {
            keep.insert(*id, *loc);
        }
        fates.push((v.pack, fate));
    }
    (keep, fates)
}

pub fn prune(repo: &Repo, opts: &PruneOptions, report_stale: &dyn Fn(&str)) -> Result<PrunePlan> {
    let start = std::time::Instant::now();
    repo.require_bound_catalog()?;
    let _lock = repo.lock(true, "prune", report_stale)?;
    if !opts.dry_run {
        repo.require_all_stores("prune")?;
    }
    if let Some(e) = repo.index_errors.first() {
        return Err(Error::Usage(format!(
            "an index file cannot be read ({e}); run `mvault check` and repair it before pruning"
        )));
    }
    let (snaps, bad) = repo.snapshots()?;
    if let Some(e) = bad.first() {
        return Err(Error::Usage(format!("a snapshot cannot be read ({e}); prune would not know what is live")));
    }
    let mut live = live_set(repo, &snaps)?;

    // Every index entry, per pack, from the index files themselves (duplicates included).
    let index_names = repo.index_names()?;
    let mut per_pack: BTreeMap<PackId, Vec<(ChunkId, Location)>> = BTreeMap::new();
    for name in &index_names {
        for (id, loc) in repo.read_index_file(name)? {
            per_pack.entry(loc.pack).or_default().push((id, loc));
        }
    }
    keep_delta_bases(&mut live, &per_pack);
    let inventory = repo.shard_inventory()?;
    let mut plan = PrunePlan { snapshots: snaps.len() as u64, dry_run: opts.dry_run, ..Default::default() };
    plan.packs = inventory.len() as u64;
    plan.index_files_replaced = index_names.len() as u64;

    let views = pack_views(repo, &per_pack, &live)?;
    let (mut keep, fates) = decide(views, opts.repack_unused, &mut plan);
    let delete: Vec<PackId> = fates.iter().filter(|(_, f)| *f == Fate::Delete).map(|(p, _)| *p).collect();
    let repack: Vec<PackId> = fates.iter().filter(|(_, f)| *f == Fate::Repack).map(|(p, _)| *p).collect();
    let indexed: BTreeSet<PackId> = per_pack.keys().copied().collect();
    let unindexed: Vec<PackId> = inventory.keys().filter(|p| !indexed.contains(p)).copied().collect();
    plan.packs_unindexed = unindexed.len() as u64;
    plan.packs_to_delete = delete.len() as u64;
    plan.packs_to_repack = repack.len() as u64;
    let doomed: BTreeSet<PackId> = delete.iter().chain(repack.iter()).chain(unindexed.iter()).copied().collect();
    let doomed_stored: u64 = doomed.iter().filter_map(|p| inventory.get(p)).flatten().map(|c| c.size).sum();
    let r = &repo.config.redundancy;
    let repack_stored_estimate = plan.live_bytes_repacked * (r.k as u64 + r.m as u64) / r.k.max(1) as u64;
    plan.stored_bytes_freed = doomed_stored.saturating_sub(repack_stored_estimate);
    plan.live_blobs = keep.len() as u64;
    for id in &live {
        if !keep.contains_key(id) {
            return Err(Error::corrupt(
                format!("chunk {id}"),
                "a snapshot needs it but no index names it; run `mvault check`",
            ));
        }
    }
    if opts.dry_run {
        let now = SystemTime::now();
        let abandoned: Vec<_> = repo.temporaries()?.into_iter().filter(|t| t.abandoned()).collect();
        plan.temporaries_removed = abandoned.len() as u64;
        plan.temporary_bytes_removed = abandoned.iter().map(|t| t.size).sum();
        plan.stale_locks_removed = repo.locks()?.iter().filter(|(_, l)| l.stale(now)).count() as u64;
        plan.seconds = start.elapsed().as_secs_f64();
        return Ok(plan);
    }

    // 1. Repack the live blobs of mostly-garbage packs into new packs.
    let repack_stored = repack_blobs(repo, &repack, &mut keep)?;
    plan.stored_bytes_freed = doomed_stored.saturating_sub(repack_stored);
    crate::fault::point("prune-after-repack");
    // 2. One index file for everything live; 3. the old index files go.
    let entries: Vec<(ChunkId, Location)> = live.iter().map(|id| (*id, keep[id])).collect();
    let new_index = repo.write_index_file(&entries)?;
    crate::fault::point("prune-after-new-index");
    for name in index_names.iter().filter(|n| **n != new_index) {
        repo.delete_index_files(std::slice::from_ref(name))?;
        crate::fault::point("prune-mid-index-delete");
    }
    crate::fault::point("prune-after-index-delete");
    // 4. Packs nothing references.
    for pack in &doomed {
        repo.delete_pack(pack, inventory.get(pack).map(Vec::as_slice).unwrap_or(&[]))?;
        repo.clear_degraded(pack)?;
        crate::fault::point("prune-mid-pack-delete");
    }
    // 5. What killed writers left: their temporaries (once no writer can own them) and their locks.
    (plan.temporaries_removed, plan.temporary_bytes_removed) = repo.sweep_temporaries()?;
    plan.stale_locks_removed = repo.remove_stale_locks()?;
    plan.seconds = start.elapsed().as_secs_f64();
    Ok(plan)
}

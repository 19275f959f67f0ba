//! `copy`: send snapshots to another vault (offsite), re-encrypted under the target's keys.
//!
//! The two vaults have different keys, so a chunk's id differs between them: each chunk is read and decrypted
//! from the source, its target ChunkId computed, and only chunks the target lacks are encrypted and written
//! there. Trees are rewritten with the target's ids (a source tree seen before maps straight to its target
//! tree). Index files are written every few packs, so an interrupted copy resumes without resending what it
//! already stored; a copied snapshot records its origin and is not copied twice.

use crate::error::{Error, Result};
use crate::format::index::Location;
use crate::format::pack::{self, BlobType, Codec, PackBuilder};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{self, NodeKind};
use crate::format::FloatKind;
use crate::ids::{ChunkId, SnapshotId};
use crate::repo::Repo;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// Packs between index flushes: what an interrupted copy can lose and has to send again.
const PACKS_PER_INDEX: usize = 4;

#[derive(Default)]
pub struct Progress {
    pub snapshots_done: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_sent: AtomicU64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct CopyReport {
    /// (source snapshot, target snapshot)
    pub copied: Vec<(String, String)>,
    /// Source snapshots the target already has.
    pub already_there: Vec<String>,
    pub chunks_sent: u64,
    pub bytes_sent: u64,
    pub chunks_already_there: u64,
    pub seconds: f64,
}

struct Sender<'a> {
    dst: &'a mut Repo,
    builder: Option<PackBuilder>,
    entries: Vec<(ChunkId, Location)>,
    packs_since_index: usize,
    pending: HashSet<ChunkId>,
    report: CopyReport,
}

impl Sender<'_> {
    fn has(&self, id: &ChunkId) -> bool {
        self.pending.contains(id) || self.dst.has_chunk(id)
    }

    /// `grouped` says the source stored this chunk with the float codec: its element kind is not recorded
    /// outside the encoded bytes, so each kind is tried and the smallest encoding kept.
    fn add(&mut self, blob_type: BlobType, plain: &[u8], grouped: bool, progress: &Progress) -> Result<ChunkId> {
        let id = self.dst.current_keys().chunk_id(plain);
        if self.has(&id) {
            self.report.chunks_already_there += 1;
            return Ok(id);
        }
        let kinds: &[Option<FloatKind>] =
            if grouped { &[Some(FloatKind::Bf16), Some(FloatKind::F16), Some(FloatKind::F32)] } else { &[None] };
        let (codec, enc) = kinds
            .iter()
            .map(|k| pack::encode_as(plain, 3, *k))
            .min_by_key(|(_, e)| e.len())
            .expect("at least one kind");
        let target = self.dst.config.pack_size as usize;
        let dst: &Repo = self.dst;
        let b = self.builder.get_or_insert_with(|| {
            PackBuilder::new(&dst.vault_id, &dst.tenant, dst.current_keys(), target + (5 << 20))
        });
        let e = b.add(blob_type, codec, id, &enc, plain.len() as u32);
        let pack_id = b.id;
        self.entries.push((
            id,
            Location {
                pack: pack_id,
                blob_type,
                codec,
                index: b.blobs().len() as u32 - 1,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
                base: None,
            },
        ));
        self.pending.insert(id);
        self.report.chunks_sent += 1;
        self.report.bytes_sent += e.length as u64;
        progress.bytes_sent.fetch_add(e.length as u64, Ordering::Relaxed);
        if b.len() >= target {
            self.flush_pack(false)?;
        }
        Ok(id)
    }

    /// Write the open pack; every few packs (or when `index` is set) make them durable in an index file.
    fn flush_pack(&mut self, index: bool) -> Result<()> {
        if let Some(b) = self.builder.take().filter(|b| !b.is_empty()) {
            let (id, bytes, _) = b.finish();
            self.dst.write_pack(&id, &bytes)?;
            self.packs_since_index += 1;
        }
        if (index || self.packs_since_index >= PACKS_PER_INDEX) && !self.entries.is_empty() {
            let entries = std::mem::take(&mut self.entries);
            self.dst.write_index(entries)?;
            self.pending.clear();
            self.packs_since_index = 0;
        }
        Ok(())
    }
}

fn copy_tree(
    src: &Repo,
    tree_id: &ChunkId,
    out: &mut Sender,
    trees: &mut HashMap<ChunkId, ChunkId>,
    chunks: &mut HashMap<ChunkId, ChunkId>,
    progress: &Progress,
) -> Result<ChunkId> {
    if let Some(t) = trees.get(tree_id) {
        return Ok(*t);
    }
    let mut nodes = src.load_tree(tree_id)?;
    for n in &mut nodes {
        match &mut n.kind {
            NodeKind::Dir { subtree } => *subtree = copy_tree(src, subtree, out, trees, chunks, progress)?,
            NodeKind::File { chunks: ids } => {
                for c in ids.iter_mut() {
                    if let Some(t) = chunks.get(c) {
                        *c = *t;
                        continue;
                    }
                    let plain = src.read_blob(c)?;
                    progress.bytes_read.fetch_add(plain.len() as u64, Ordering::Relaxed);
                    // A delta's inner codec may be the grouped one too.
                    let grouped = src.lookup(c)?.is_some_and(|l| matches!(l.codec, Codec::Grouped | Codec::Delta));
                    let t = out.add(BlobType::Data, &plain, grouped, progress)?;
                    chunks.insert(*c, t);
                    *c = t;
                }
            }
            NodeKind::Symlink { .. } => {}
        }
    }
    let t = out.add(BlobType::Tree, &tree::encode(&nodes), false, progress)?;
    trees.insert(*tree_id, t);
    Ok(t)
}

/// Copy the snapshots named by `specs` (ids, prefixes or `latest`; all when empty) from `src` to `dst`.
pub fn copy(
    src: &Repo,
    dst: &mut Repo,
    specs: &[String],
    progress: &Progress,
    report_stale: &dyn Fn(&str),
) -> Result<CopyReport> {
    let start = std::time::Instant::now();
    if src.vault_id == dst.vault_id {
        return Err(Error::Usage("source and target are the same vault".into()));
    }
    let wanted: Vec<(SnapshotId, Snapshot)> = if specs.is_empty() {
        src.snapshots()?.0
    } else {
        specs.iter().map(|s| src.find_snapshot(s)).collect::<Result<_>>()?
    };
    let (existing, _) = dst.snapshots()?;
    let there: HashSet<String> = existing.iter().filter_map(|(_, s)| s.original.clone()).collect();
    let lock_holder = dst.lock(false, "copy", report_stale)?;
    let mut out = Sender {
        dst,
        builder: None,
        entries: vec![],
        packs_since_index: 0,
        pending: HashSet::new(),
        report: CopyReport::default(),
    };
    let (mut trees, mut chunks) = (HashMap::new(), HashMap::new());
    for (id, snap) in wanted {
        let origin = format!("{}/{}", src.vault_id, id);
        if there.contains(&origin) {
            out.report.already_there.push(id.to_hex());
            continue;
        }
        let root = copy_tree(src, &snap.tree_id()?, &mut out, &mut trees, &mut chunks, progress)?;
        out.flush_pack(true)?;
        let copy = Snapshot { tree: root.to_hex(), parent: None, original: Some(origin), ..snap.clone() };
        let new_id = out.dst.save_snapshot(&copy)?;
        out.report.copied.push((id.to_hex(), new_id.to_hex()));
        progress.snapshots_done.fetch_add(1, Ordering::Relaxed);
    }
    drop(lock_holder);
    let mut report = out.report;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

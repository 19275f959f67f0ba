//! Backup: walk -> chunk -> ChunkId -> dedup -> encode -> encrypt into packs -> write packs -> index ->
//! snapshot. The walker (this thread) reads and hashes; a pool of encoders compresses; one packer encrypts
//! and seals packs; `PACK_WRITERS` writers put them on the stores. Bounded channels between the stages keep
//! memory bounded whatever the input size (a few chunks per stage, and at most `PACK_WRITERS + 3` pack
//! buffers: the one filling, one queued, one per writer and one written, waiting to be reused).
//!
//! Crash safety comes from the order of writes: every pack before the index that names it, the index before
//! the snapshot. A process killed at any point leaves earlier snapshots untouched and at worst packs that
//! nothing references.

use crate::chunker::{plain_chunks, Piece, TensorChunker};
use crate::error::{Error, Result};
use crate::format::delta::{self, Combine};
use crate::format::index::Location;
use crate::format::pack::{self, BlobType, Codec, PackBuilder};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{self, Node, NodeKind};
use crate::format::FloatKind;
use crate::ids::{ChunkId, SnapshotId};
use crate::model::{self, Detected};
use crate::ops::delta_bases::{self, DeltaBases, TensorKey};
use crate::repo::Repo;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const ZSTD_LEVEL: i32 = 3;

pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub locked_until: Option<String>,
    /// Encoder threads; 0 means one per core.
    pub threads: usize,
    /// The snapshot's time (default: now). For importing history and for tests.
    pub time: Option<std::time::SystemTime>,
    /// Longest delta chain (`format::delta`): a tensor piece is stored as a delta against its previous version only
    /// if that version is less than this deep. 0 turns deltas off.
    pub delta_depth: u8,
    /// Take previous tensor versions from this snapshot only (default: the tenant's recent snapshots).
    pub base: Option<SnapshotId>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            paths: Vec::new(),
            tags: Vec::new(),
            host: None,
            locked_until: None,
            threads: 0,
            time: None,
            delta_depth: delta::DEFAULT_MAX_DEPTH,
            base: None,
        }
    }
}

/// Live counters for progress display, updated by the pipeline.
#[derive(Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub bytes_stored: AtomicU64,
    /// Packs written with some shards missing (a store was down); `repair` completes them.
    pub degraded_packs: AtomicU64,
}

pub struct BackupResult {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub parent: Option<SnapshotId>,
}

/// A blob on its way to a pack.
struct Encoded {
    id: ChunkId,
    blob_type: BlobType,
    codec: Codec,
    data: Vec<u8>,
    raw_length: u32,
    base: Option<ChunkId>,
}

/// What the walker hands to the encoders.
/// Bytes of new data the walker holds at most while it gathers lookups for the catalog.
const LOOKUP_BYTES: usize = 16 << 20;

struct Raw {
    id: ChunkId,
    blob_type: BlobType,
    data: Vec<u8>,
    /// Set for chunks of float tensors: the byte-grouped codec is tried too.
    float: Option<FloatKind>,
    /// The previous version of this piece, to try a delta against (read by the encoder, so that reading and
    /// decrypting previous versions runs on every core rather than in the walker).
    base: Option<(Base, Combine)>,
}

/// Where the encoder finds a previous version's bytes.
enum Base {
    /// In the vault (an earlier snapshot, or a pack this backup already indexed).
    Stored(ChunkId),
    /// In a file this backup has read before (step-1 for step-2 in one checkpoints folder): its pieces may
    /// still be on their way to a pack, so they are read back from the file, and used only if they still
    /// hash to their id.
    Fresh(FreshPiece),
}

/// A tensor piece sent to the pipeline earlier in this backup, where a later version may find it.
#[derive(Clone)]
struct FreshPiece {
    id: ChunkId,
    path: std::sync::Arc<Path>,
    offset: u64,
    len: usize,
    /// At most its delta chain's depth (the encoder may have stored it whole after all, which is shallower).
    depth: u8,
}

/// The absolute paths given to `backup`, arranged as the directory tree that holds them (the remote
/// client's walker uses it too, so local and remote snapshots have the same shape).
#[derive(Default)]
pub struct Virtual {
    pub children: BTreeMap<Vec<u8>, VEntry>,
}

pub enum VEntry {
    /// A path given to backup: backed up whole.
    Real(PathBuf),
    /// A directory above the given paths: only the given paths within it are backed up.
    Dir(PathBuf, Virtual),
}

pub fn build_virtual(paths: &[PathBuf]) -> Result<Virtual> {
    let mut root = Virtual::default();
    for p in paths {
        let abs = std::path::absolute(p).map_err(|e| Error::io("resolve", p, e))?;
        let comps: Vec<&OsStr> = abs
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        if comps.is_empty() {
            return Err(Error::Usage("backing up / as a whole is not supported; name the directories".into()));
        }
        let mut node = &mut root;
        let mut here = PathBuf::from("/");
        for (i, c) in comps.iter().enumerate() {
            here.push(c);
            let key = c.as_bytes().to_vec();
            if i + 1 == comps.len() {
                node.children.insert(key, VEntry::Real(here.clone()));
                break;
            }
            let e = node.children.entry(key).or_insert_with(|| VEntry::Dir(here.clone(), Virtual::default()));
            match e {
                VEntry::Dir(_, v) => node = v,
                // A parent of this path is itself backed up whole: nothing more to add.
                VEntry::Real(_) => break,
            }
        }
    }
    Ok(root)
}

/// A tree node for a file system entry, from its metadata.
pub fn node_from_meta(name: &[u8], md: &std::fs::Metadata, kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: md.mode(),
        mtime_sec: md.mtime(),
        mtime_nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
        size: if md.is_file() { md.size() } else { 0 },
        dev: md.dev(),
        inode: md.ino(),
    }
}

/// The pieces an open file is cut into: at tensor boundaries for a model file the parsers accept (its
/// layout is returned too), by content (FastCDC) otherwise. A file that claims a model format but fails
/// to parse is cut by content, with a warning.
pub fn pieces(
    path: &Path,
    file: std::fs::File,
    params: crate::format::config::ChunkerParams,
    warn: &dyn Fn(&Error),
) -> (Option<crate::model::Layout>, Box<dyn Iterator<Item = std::io::Result<Piece>>>) {
    match model::detect(path, &file) {
        Detected::Model(l) => {
            let chunker = TensorChunker::new(std::io::BufReader::with_capacity(1 << 20, file), &l, params);
            (Some(l), Box::new(chunker))
        }
        other => {
            if let Detected::Malformed(e) = other {
                warn(&Error::Usage(format!("{}: {e}; stored as a plain file", path.display())));
            }
            let plain = plain_chunks(file, params);
            (None, Box::new(plain.map(|c| c.map(|data| Piece { data, float: None, tensor: None }))))
        }
    }
}

struct Walker<'a> {
    repo: &'a Repo,
    raw_tx: Sender<Raw>,
    /// ChunkIds already sent to the pipeline (or queued for the lookup) in this session.
    pending: HashSet<ChunkId>,
    /// New chunks waiting for one batched lookup in the catalog (one round trip per batch on PostgreSQL):
    /// at most the catalog's `lookup_batch` of them (1 in process: sent at once) or LOOKUP_BYTES of data.
    /// Sending in bursts also changes which chunks share a pack (three packs are filled at once), and with it
    /// how much garbage prune's threshold leaves (see prune), so in-process catalogs keep the old order.
    queued: Vec<Raw>,
    queued_bytes: usize,
    lookup_batch: usize,
    summary: Summary,
    progress: &'a Progress,
    warn: &'a (dyn Fn(&Error) + Sync),
    /// Previous tensor versions, read on the first model file met (a backup without one never pays for it).
    bases: Option<DeltaBases>,
    bases_from: Option<SnapshotId>,
    delta_depth: u8,
    /// The newest version of each tensor read in this backup, piece by piece; these come before the
    /// search's (unless `--base` names the snapshot to use).
    fresh: HashMap<TensorKey, Vec<FreshPiece>>,
    /// The depth bound of each piece sent with a base in this backup.
    fresh_depth: HashMap<ChunkId, u8>,
}

/// The pipeline stopped downstream (its error is reported by the stage that failed).
struct Aborted;

impl Walker<'_> {
    fn submit(
        &mut self,
        id: ChunkId,
        blob_type: BlobType,
        data: Vec<u8>,
        float: Option<FloatKind>,
        previous: Option<(Base, u8, Combine)>,
    ) -> Result<(), Aborted> {
        if !self.pending.insert(id) {
            return Ok(());
        }
        if let Some((_, depth, _)) = &previous {
            self.fresh_depth.insert(id, *depth);
        }
        let base = previous.map(|(b, _, c)| (b, c));
        self.queued_bytes += data.len();
        self.queued.push(Raw { id, blob_type, data, float, base });
        if self.queued.len() >= self.lookup_batch || self.queued_bytes >= LOOKUP_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Look the queued chunks up at once and send the ones the vault does not store to the encoders. A
    /// catalog that cannot answer counts them as new: a duplicate blob, never a lost one.
    fn flush(&mut self) -> Result<(), Aborted> {
        let queued = std::mem::take(&mut self.queued);
        self.queued_bytes = 0;
        let ids: Vec<ChunkId> = queued.iter().map(|r| r.id).collect();
        let stored = self.repo.lookup_many(&ids).unwrap_or_else(|_| vec![None; ids.len()]);
        for (raw, stored) in queued.into_iter().zip(stored) {
            if stored.is_some() {
                self.fresh_depth.remove(&raw.id);
                continue;
            }
            self.summary.new_chunks += 1;
            self.summary.new_bytes += raw.data.len() as u64;
            self.raw_tx.send(raw).map_err(|_| Aborted)?;
        }
        Ok(())
    }

    /// Whether every chunk of a file is stored, asked in one batch.
    fn all_known(&self, chunks: &[ChunkId]) -> bool {
        let asked: Vec<ChunkId> = chunks.iter().filter(|c| !self.pending.contains(c)).copied().collect();
        self.repo.lookup_many(&asked).is_ok_and(|found| found.iter().all(Option::is_some))
    }

    /// The previous version of piece `piece` of tensor `key` (`len` bytes of `float` elements), how to predict
    /// the piece from it, and the depth the delta would have. Only a version the piece fits, and only one
    /// less deep than the bound (known without reading it, so a version past the bound is never read to be
    /// discarded). Without a version of the same dtype, an F32 tensor is predicted from its BF16 version.
    fn previous(
        &mut self,
        key: &TensorKey,
        piece: usize,
        len: usize,
        float: Option<FloatKind>,
    ) -> Option<(Base, u8, Combine)> {
        if self.delta_depth == 0 {
            return None;
        }
        let (found, combine) = match self.find(key, piece) {
            Some(c) => (c, Combine::for_kind(float)),
            None if key.dtype == "F32" => {
                // The BF16 piece holding this piece's first element: pieces are cut every `avg` bytes
                // rounded down to whole elements, counted from the tensor's start.
                let avg = u64::from(self.repo.config.chunker.avg);
                let (per32, per16) = ((avg / 4).max(1), (avg / 2).max(1));
                let first = piece as u64 * per32;
                let narrow = TensorKey { dtype: "BF16".into(), ..key.clone() };
                let c = self.find(&narrow, (first / per16) as usize)?;
                (c, Combine::WidenBf16 { offset: u32::try_from(first % per16).ok()? })
            }
            None => return None,
        };
        let (base, base_len, depth) = found;
        (delta::fits(combine, len, base_len) && depth < self.delta_depth).then_some((base, depth + 1, combine))
    }

    /// The newest version of a tensor piece: where it is, its length and its chain depth (bound).
    fn find(&mut self, key: &TensorKey, piece: usize) -> Option<(Base, usize, u8)> {
        if self.bases_from.is_none() {
            if let Some(f) = self.fresh.get(key) {
                // The newest version is this backup's, usable or not.
                let f = f.get(piece)?;
                let base = match self.repo.has_chunk(&f.id) {
                    true => Base::Stored(f.id),
                    false => Base::Fresh(f.clone()),
                };
                return Some((base, f.len, f.depth));
            }
        }
        let p = *self.bases().get(key).and_then(|c| c.get(piece))?;
        let len = self.repo.lookup(&p).ok().flatten()?.raw_length as usize;
        Some((Base::Stored(p), len, delta_bases::chain_depth(self.repo, &p)?))
    }

    /// The depth bound of a piece of this backup: its own if it went with a base, else its stored chain's.
    fn depth_of(&self, id: &ChunkId) -> u8 {
        match self.fresh_depth.get(id) {
            Some(&d) => d,
            None if self.repo.has_chunk(id) => delta_bases::chain_depth(self.repo, id).unwrap_or(u8::MAX),
            None => 0,
        }
    }

    fn bases(&mut self) -> &DeltaBases {
        if self.bases.is_none() {
            let built = match self.bases_from {
                Some(b) => DeltaBases::build(self.repo, &[b]),
                None => DeltaBases::recent(self.repo).and_then(|ids| DeltaBases::build(self.repo, &ids)),
            };
            self.bases = Some(built.unwrap_or_else(|e| {
                (self.warn)(&Error::Usage(format!(
                    "previous tensor versions unavailable ({e}); storing tensors whole"
                )));
                DeltaBases::default()
            }));
        }
        self.bases.as_ref().expect("just built")
    }

    fn unreadable(&mut self, err: Error, path: &Path) {
        (self.warn)(&err);
        self.summary.unreadable.push(path.display().to_string());
    }

    fn node_from_meta(name: &[u8], md: &std::fs::Metadata, kind: NodeKind) -> Node {
        node_from_meta(name, md, kind)
    }

    /// Back up one path into a node, or None if it could not be read (already reported).
    fn entry(&mut self, name: &[u8], path: &Path, parent: Option<&Node>) -> Result<Option<Node>, Aborted> {
        let md = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.unreadable(Error::io("stat", path, e), path);
                return Ok(None);
            }
        };
        let ft = md.file_type();
        if ft.is_symlink() {
            return match std::fs::read_link(path) {
                Ok(t) => {
                    self.summary.symlinks += 1;
                    Ok(Some(Self::node_from_meta(
                        name,
                        &md,
                        NodeKind::Symlink { target: t.as_os_str().as_bytes().to_vec() },
                    )))
                }
                Err(e) => {
                    self.unreadable(Error::io("read link", path, e), path);
                    Ok(None)
                }
            };
        }
        if ft.is_dir() {
            let parent_tree = parent.and_then(|p| match &p.kind {
                NodeKind::Dir { subtree } => self.repo.load_tree(subtree).ok(),
                _ => None,
            });
            return match self.dir(path, parent_tree) {
                Ok(Some(subtree)) => Ok(Some(Self::node_from_meta(name, &md, NodeKind::Dir { subtree }))),
                Ok(None) => Ok(None),
                Err(a) => Err(a),
            };
        }
        if ft.is_file() {
            self.summary.files += 1;
            self.summary.bytes += md.size();
            self.progress.files.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = parent {
                if let NodeKind::File { chunks } = &p.kind {
                    let unchanged = p.size == md.size()
                        && p.mtime_sec == md.mtime()
                        && p.mtime_nsec as i64 == md.mtime_nsec()
                        && p.inode == md.ino()
                        && self.all_known(chunks);
                    if unchanged {
                        self.progress.bytes.fetch_add(md.size(), Ordering::Relaxed);
                        return Ok(Some(Self::node_from_meta(name, &md, NodeKind::File { chunks: chunks.clone() })));
                    }
                }
            }
            return match self.file(path) {
                Ok(Some(chunks)) => Ok(Some(Self::node_from_meta(name, &md, NodeKind::File { chunks }))),
                Ok(None) => Ok(None),
                Err(a) => Err(a),
            };
        }
        // Sockets, FIFOs and devices carry no content to keep.
        (self.warn)(&Error::Usage(format!("skipping {}: not a file, directory or symlink", path.display())));
        Ok(None)
    }

    fn file(&mut self, path: &Path) -> Result<Option<Vec<ChunkId>>, Aborted> {
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.unreadable(Error::io("open", path, e), path);
                return Ok(None);
            }
        };
        self.summary.files_read += 1;
        let mut chunks = Vec::new();
        let keys = self.repo.current_keys();
        let params = self.repo.config.chunker;
        let (layout, pieces) = pieces(path, f, params, self.warn);
        let shared: std::sync::Arc<Path> = path.into();
        let mut this_file: HashMap<TensorKey, Vec<FreshPiece>> = HashMap::new();
        let mut offset = 0u64;
        for c in pieces {
            let Piece { data, float, tensor } = match c {
                Ok(d) => d,
                Err(e) => {
                    self.unreadable(Error::io("read", path, e), path);
                    return Ok(None);
                }
            };
            self.summary.bytes_read += data.len() as u64;
            self.progress.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            let id = keys.chunk_id(&data);
            chunks.push(id);
            let len = data.len();
            // The same piece of the newest version of this tensor (same name, dtype and shape).
            let key = match (tensor, &layout) {
                (Some((t, piece)), Some(l)) => {
                    let t = &l.tensors[t];
                    Some((TensorKey { name: t.name.clone(), dtype: t.dtype.clone(), shape: t.shape.clone() }, piece))
                }
                _ => None,
            };
            let previous = key.as_ref().and_then(|(k, piece)| self.previous(k, *piece, len, float));
            self.submit(id, BlobType::Data, data, float, previous)?;
            if let Some((k, piece)) = key {
                let depth = self.depth_of(&id);
                let pieces = this_file.entry(k).or_default();
                // Pieces of a tensor come in order; a gap would misplace them, so such a tensor is left out.
                if pieces.len() == piece {
                    pieces.push(FreshPiece { id, path: shared.clone(), offset, len, depth });
                }
            }
            offset += len as u64;
        }
        // Only now that the whole file was read: a later file finds these versions instead of older ones.
        self.fresh.extend(this_file);
        Ok(Some(chunks))
    }

    fn dir(&mut self, path: &Path, parent: Option<Vec<Node>>) -> Result<Option<ChunkId>, Aborted> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                self.unreadable(Error::io("read dir", path, e), path);
                return Ok(None);
            }
        };
        let mut names = Vec::new();
        for ent in rd {
            match ent {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.unreadable(Error::io("read dir", path, e), path),
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let parent: HashMap<&[u8], &Node> = parent.iter().flatten().map(|n| (n.name.as_slice(), n)).collect();
        let mut nodes = Vec::with_capacity(names.len());
        for n in &names {
            let name = n.as_bytes();
            if let Some(node) = self.entry(name, &path.join(n), parent.get(name).copied())? {
                nodes.push(node);
            }
        }
        self.summary.dirs += 1;
        self.tree(nodes).map(Some)
    }

    fn tree(&mut self, nodes: Vec<Node>) -> Result<ChunkId, Aborted> {
        let bytes = tree::encode(&nodes);
        let id = self.repo.current_keys().chunk_id(&bytes);
        self.submit(id, BlobType::Tree, bytes, None, None)?;
        Ok(id)
    }

    fn virtual_dir(&mut self, dir: &Virtual, parent: Option<Vec<Node>>) -> Result<ChunkId, Aborted> {
        let parent: HashMap<&[u8], &Node> = parent.iter().flatten().map(|n| (n.name.as_slice(), n)).collect();
        let mut nodes = Vec::new();
        for (name, e) in &dir.children {
            let p = parent.get(name.as_slice()).copied();
            let node = match e {
                VEntry::Real(path) => self.entry(name, path, p)?,
                VEntry::Dir(path, sub) => {
                    let ptree = p.and_then(|p| match &p.kind {
                        NodeKind::Dir { subtree } => self.repo.load_tree(subtree).ok(),
                        _ => None,
                    });
                    let subtree = self.virtual_dir(sub, ptree)?;
                    match std::fs::symlink_metadata(path) {
                        Ok(md) => Some(Self::node_from_meta(name, &md, NodeKind::Dir { subtree })),
                        Err(e) => {
                            self.unreadable(Error::io("stat", path, e), path);
                            None
                        }
                    }
                }
            };
            nodes.extend(node);
        }
        self.tree(nodes)
    }
}

/// A delta at most this share of its piece is kept without also encoding the piece whole: float weights
/// stored whole take at least 60% of their size (BF16 at the entropy bound 66%, FP32 82%), and the whole
/// encode was a sixth of a checkpoint series' backup user CPU (the same bytes are stored without it).
const DELTA_GOOD_ENOUGH: (usize, usize) = (3, 5);

fn encoder(repo: &Repo, max_depth: u8, warn: &(dyn Fn(&Error) + Sync), rx: Receiver<Raw>, tx: Sender<Encoded>) {
    for raw in rx {
        let raw_length = raw.data.len() as u32;
        let previous = match &raw.base {
            Some((Base::Stored(b), c)) => {
                Some(repo.read_chunk(b, u8::MAX).map(|(plain, depth)| (*b, plain, depth + 1, *c)))
            }
            Some((Base::Fresh(f), c)) => Some(read_fresh(repo, f).map(|plain| (f.id, plain, f.depth + 1, *c))),
            None => None,
        };
        let delta = match previous {
            // The walker checked the bound; the stored blob's own header has the last word. An unreadable
            // previous version just means storing whole.
            Some(Ok((b, plain, depth, combine)))
                if depth <= max_depth && delta::fits(combine, raw.data.len(), plain.len()) =>
            {
                Some((delta::encode(&raw.data, &b, &plain, combine, depth, ZSTD_LEVEL, raw.float), b))
            }
            Some(Ok(_)) | None => None,
            Some(Err(e)) => {
                warn(&Error::Usage(format!("previous version unreadable ({e}); stored whole")));
                None
            }
        };
        let (codec, data, base) = keep_delta_or_whole(&raw.data, raw.float, delta);
        if tx.send(Encoded { id: raw.id, blob_type: raw.blob_type, codec, data, raw_length, base }).is_err() {
            return;
        }
    }
}

/// What to store for a piece: a delta of at most `DELTA_GOOD_ENOUGH` of it as it is; otherwise the smaller of
/// the delta (if any) and the piece encoded whole.
fn keep_delta_or_whole(
    plain: &[u8],
    float: Option<FloatKind>,
    delta: Option<(Vec<u8>, ChunkId)>,
) -> (Codec, Vec<u8>, Option<ChunkId>) {
    match delta {
        Some((d, b)) if d.len() * DELTA_GOOD_ENOUGH.1 <= plain.len() * DELTA_GOOD_ENOUGH.0 => {
            (Codec::Delta, d, Some(b))
        }
        delta => {
            let (codec, whole) = pack::encode_as(plain, ZSTD_LEVEL, float);
            match delta {
                Some((d, b)) if d.len() < whole.len() => (Codec::Delta, d, Some(b)),
                _ => (codec, whole, None),
            }
        }
    }
}

/// A piece read earlier in this backup, read again from its file, if it still holds the same bytes.
fn read_fresh(repo: &Repo, piece: &FreshPiece) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut plain = vec![0u8; piece.len];
    std::fs::File::open(&piece.path)
        .and_then(|file| file.read_exact_at(&mut plain, piece.offset))
        .map_err(|e| Error::io("read", &*piece.path, e))?;
    if repo.current_keys().chunk_id(&plain) != piece.id {
        return Err(Error::Usage(format!("{} changed during the backup", piece.path.display())));
    }
    Ok(plain)
}

/// A pack being filled, with the index entry each blob will have: backup's packer thread and the server's
/// upload path both cut their blobs into packs with it.
pub(crate) struct Packing<'a> {
    repo: &'a Repo,
    target: usize,
    builder: PackBuilder,
    entries: Vec<(ChunkId, Location)>,
    /// Buffers of packs already written, handed back by the writer so that each pack does not fault in a
    /// fresh 20 MiB mapping.
    spare: Option<Receiver<Vec<u8>>>,
}

/// A full pack and the index entries of its blobs.
pub(crate) type FullPack = (PackBuilder, Vec<(ChunkId, Location)>);

impl<'a> Packing<'a> {
    pub(crate) fn new(repo: &'a Repo) -> Self {
        Self::reusing(repo, None)
    }

    /// Packing that takes its buffers from `spare` when one is there.
    pub(crate) fn reusing(repo: &'a Repo, spare: Option<Receiver<Vec<u8>>>) -> Self {
        let target = repo.config.pack_size as usize;
        let builder = PackBuilder::new(&repo.vault_id, &repo.tenant, repo.current_keys(), target + (5 << 20));
        Packing { repo, target, builder, entries: Vec::new(), spare }
    }

    fn next_builder(&self) -> PackBuilder {
        let (repo, keys) = (self.repo, self.repo.current_keys());
        match self.spare.as_ref().and_then(|r| r.try_recv().ok()) {
            Some(buf) => PackBuilder::in_buffer(&repo.vault_id, &repo.tenant, keys, buf),
            None => PackBuilder::new(&repo.vault_id, &repo.tenant, keys, self.target + (5 << 20)),
        }
    }

    /// Add an encoded blob; returns the pack once it has reached the target size.
    pub(crate) fn add(
        &mut self,
        blob_type: BlobType,
        codec: Codec,
        id: ChunkId,
        encoded: &[u8],
        raw_length: u32,
        base: Option<ChunkId>,
    ) -> Option<FullPack> {
        let be = self.builder.add(blob_type, codec, id, encoded, raw_length);
        let index = self.entries.len() as u32;
        self.entries.push((
            id,
            Location {
                pack: self.builder.id,
                blob_type,
                codec,
                index,
                offset: be.offset,
                length: be.length,
                raw_length: be.raw_length,
                base,
            },
        ));
        if self.builder.len() < self.target {
            return None;
        }
        let next = self.next_builder();
        let full = std::mem::replace(&mut self.builder, next);
        Some((full, std::mem::take(&mut self.entries)))
    }

    /// The last, partly filled pack, if any.
    pub(crate) fn finish(self) -> Option<FullPack> {
        (!self.builder.is_empty()).then_some((self.builder, self.entries))
    }
}

/// Packs written at once. A put is mostly waiting (an fsync, an S3 round trip, an HDFS NameNode's
/// `complete`, which hdfs-native polls from 500 ms), so a few in flight keep the packer busy; each one in
/// flight holds one pack buffer.
const PACK_WRITERS: usize = 3;

/// Encrypt blobs into packs; hand each full pack to a writer.
fn packer(repo: &Repo, rx: Receiver<Encoded>, tx: Sender<FullPack>, spare: Receiver<Vec<u8>>) -> Result<(), Aborted> {
    let mut packing = Packing::reusing(repo, Some(spare));
    for e in rx {
        if let Some(full) = packing.add(e.blob_type, e.codec, e.id, &e.data, e.raw_length, e.base) {
            tx.send(full).map_err(|_| Aborted)?;
        }
    }
    if let Some(last) = packing.finish() {
        tx.send(last).map_err(|_| Aborted)?;
    }
    Ok(())
}

fn writer(
    repo: &Repo,
    rx: Receiver<FullPack>,
    spare: Sender<Vec<u8>>,
    progress: &Progress,
) -> Result<Vec<(ChunkId, Location)>> {
    let mut all = Vec::new();
    for (builder, entries) in rx {
        let (id, bytes, _) = builder.finish();
        let (n, missing) = repo.write_pack(&id, &bytes)?;
        let _ = spare.try_send(bytes); // the packer may be done, or have one waiting already
        progress.bytes_stored.fetch_add(n, Ordering::Relaxed);
        if missing > 0 {
            progress.degraded_packs.fetch_add(1, Ordering::Relaxed);
        }
        all.extend(entries);
    }
    Ok(all)
}

/// The newest snapshot of the same host and paths, whose unchanged files need not be read again.
fn find_parent(repo: &Repo, host: &str, paths: &[String]) -> Result<Option<(SnapshotId, Snapshot)>> {
    let (all, _) = repo.snapshots()?;
    Ok(all.into_iter().rev().find(|(_, s)| s.host == host && s.paths == paths))
}

pub fn backup(
    repo: &mut Repo,
    opts: &BackupOptions,
    progress: &Progress,
    warn: &(dyn Fn(&Error) + Sync),
) -> Result<BackupResult> {
    let start = Instant::now();
    if opts.paths.is_empty() {
        return Err(Error::Usage("backup needs at least one path".into()));
    }
    let mut paths: Vec<String> = Vec::new();
    for p in &opts.paths {
        std::fs::symlink_metadata(p).map_err(|e| Error::io("stat", p, e))?;
        let abs = std::path::absolute(p).map_err(|e| Error::io("resolve", p, e))?;
        paths.push(abs.display().to_string());
    }
    paths.sort();
    paths.dedup();
    // Before any pack: a backup that could not record its index would only leave garbage.
    repo.require_bound_catalog()?;
    let _lock = repo.lock(false, "backup", &|m| warn(&Error::Usage(m.to_string())))?;
    let host = opts.host.clone().unwrap_or_else(crate::repo::hostname);
    let parent = find_parent(repo, &host, &paths)?;
    let parent_root = match &parent {
        Some((_, s)) => repo.load_tree(&s.tree_id()?).ok(),
        None => None,
    };
    let virt = build_virtual(&opts.paths)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    } else {
        opts.threads
    };

    let (raw_tx, raw_rx) = bounded::<Raw>(threads * 2);
    let (enc_tx, enc_rx) = bounded::<Encoded>(threads * 2);
    let (pack_tx, pack_rx) = bounded(1);
    let (spare_tx, spare_rx) = bounded(1);
    let repo_ref: &Repo = repo;
    let (walk, written) = std::thread::scope(|s| {
        for _ in 0..threads {
            let (rx, tx) = (raw_rx.clone(), enc_tx.clone());
            let depth = opts.delta_depth;
            s.spawn(move || encoder(repo_ref, depth, warn, rx, tx));
        }
        drop((raw_rx, enc_tx));
        s.spawn(move || packer(repo_ref, enc_rx, pack_tx, spare_rx));
        let writers: Vec<_> = (0..PACK_WRITERS)
            .map(|_| {
                let (rx, spare) = (pack_rx.clone(), spare_tx.clone());
                s.spawn(move || writer(repo_ref, rx, spare, progress))
            })
            .collect();
        drop((pack_rx, spare_tx));
        let mut w = Walker {
            repo: repo_ref,
            raw_tx,
            pending: HashSet::new(),
            queued: Vec::new(),
            queued_bytes: 0,
            lookup_batch: repo_ref.lookup_batch(),
            summary: Summary::default(),
            progress,
            warn,
            bases: None,
            bases_from: opts.base,
            delta_depth: opts.delta_depth,
            fresh: HashMap::new(),
            fresh_depth: HashMap::new(),
        };
        let root = w.virtual_dir(&virt, parent_root).and_then(|r| w.flush().map(|()| r));
        let summary = std::mem::take(&mut w.summary);
        drop(w);
        let mut written = Ok(Vec::new());
        for w in writers {
            match (w.join().expect("pack writer thread panicked"), &mut written) {
                (Ok(entries), Ok(all)) => all.extend(entries),
                (Err(e), Ok(_)) => written = Err(e),
                (_, Err(_)) => {}
            }
        }
        (root.map(|r| (r, summary)), written)
    });
    // The writer's error explains an aborted walk, so it takes precedence.
    let entries = written?;
    let (root, mut summary) = walk.map_err(|_| Error::Usage("backup pipeline stopped".into()))?;
    let index_bytes = repo.write_index(entries)?;
    crate::fault::point("backup-index-written");
    summary.bytes_stored = progress.bytes_stored.load(Ordering::Relaxed) + index_bytes;
    summary.degraded_packs = progress.degraded_packs.load(Ordering::Relaxed);
    summary.seconds = start.elapsed().as_secs_f64();
    let snapshot = Snapshot {
        version: 1,
        time: match opts.time {
            Some(t) => humantime::format_rfc3339_nanos(t).to_string(),
            None => crate::repo::now_rfc3339(),
        },
        host,
        tags: opts.tags.clone(),
        paths,
        tree: root.to_hex(),
        parent: parent.as_ref().map(|(id, _)| id.to_hex()),
        locked_until: opts.locked_until.clone(),
        summary,
        original: None,
    };
    let id = repo.save_snapshot(&snapshot)?;
    crate::fault::point("backup-snapshot-written");
    Ok(BackupResult { id, snapshot, parent: parent.map(|(id, _)| id) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::repo::InitOptions;

    /// A written pack's buffer comes back to the packer and the next pack is built in it, not in fresh memory.
    #[test]
    fn packs_are_built_in_the_buffers_of_written_ones() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, pack_size: 64 << 10, ..Default::default() };
        let repo = Repo::init(d.path().join("v").to_str().unwrap(), b"pw", &opts).unwrap();
        let (spare_tx, spare_rx) = bounded(1);
        let mut packing = Packing::reusing(&repo, Some(spare_rx));
        let mut fill = |seed: u64| loop {
            let blob = crate::synth::random_bytes(40 << 10, seed);
            let id = repo.current_keys().chunk_id(&blob);
            if let Some((builder, _)) = packing.add(BlobType::Data, Codec::None, id, &blob, blob.len() as u32, None) {
                return builder.finish();
            }
        };
        let (_, first, _) = fill(1);
        let first_at = first.as_ptr();
        spare_tx.send(first).unwrap();
        let (_, second, _) = fill(2); // was already open when the first came back
        assert_ne!(second.as_ptr(), first_at);
        let (id, third, entries) = fill(3);
        assert_eq!(third.as_ptr(), first_at, "the third pack reuses the first one's buffer");
        let opened = pack::open_pack(&repo.vault_id, &repo.tenant, |v| repo.keys_for(v), &id, &third, "third").unwrap();
        assert_eq!(opened.entries, entries);
    }

    /// A file read earlier in the backup serves as a delta base only while it holds the bytes it was read with.
    #[test]
    fn a_fresh_base_is_used_only_if_its_file_is_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, ..Default::default() };
        let repo = Repo::init(d.path().join("v").to_str().unwrap(), b"pw", &opts).unwrap();
        let file = d.path().join("step-1.safetensors");
        std::fs::write(&file, b"header|0123456789abcdef|tail").unwrap();
        let piece = b"0123456789abcdef";
        let f = FreshPiece {
            id: repo.current_keys().chunk_id(piece),
            path: file.as_path().into(),
            offset: 7,
            len: piece.len(),
            depth: 0,
        };
        assert_eq!(read_fresh(&repo, &f).unwrap(), piece);
        std::fs::write(&file, b"header|0123456789abcdeX|tail").unwrap();
        let err = read_fresh(&repo, &f).unwrap_err().to_string();
        assert!(err.contains("changed during the backup"), "{err}");
        std::fs::write(&file, b"header|").unwrap();
        let err = read_fresh(&repo, &f).unwrap_err().to_string();
        assert!(err.contains("step-1.safetensors"), "{err}");
    }

    /// A delta of at most 60% of its piece is kept without the piece being encoded whole; a larger one only if
    /// it is smaller than the whole encoding.
    #[test]
    fn a_small_delta_is_kept_and_a_large_one_must_beat_the_whole() {
        let base = ChunkId([7; 32]);
        let zeros = vec![0u8; 10_000]; // whole: a few dozen bytes of zstd
        let (codec, data, b) = keep_delta_or_whole(&zeros, None, Some((vec![1; 6_000], base)));
        assert_eq!((codec, data.len(), b), (Codec::Delta, 6_000, Some(base)), "60%: kept without the whole encode");
        let (codec, data, b) = keep_delta_or_whole(&zeros, None, Some((vec![1; 6_001], base)));
        assert_eq!((codec, b), (Codec::Zstd, None), "over 60%: the smaller whole encoding wins");
        assert!(data.len() < 100);
        let noise = crate::synth::random_bytes(10_000, 3); // whole: stored raw, 10,000 bytes
        let (codec, data, b) = keep_delta_or_whole(&noise, None, Some((vec![1; 9_000], base)));
        assert_eq!((codec, data.len(), b), (Codec::Delta, 9_000, Some(base)), "a larger delta smaller than the whole");
        let (codec, data, b) = keep_delta_or_whole(&noise, None, None);
        assert_eq!((codec, data, b), (Codec::None, noise, None));
    }
}

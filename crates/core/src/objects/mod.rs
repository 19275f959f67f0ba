//! Objects: a stream of bytes stored the way backups store files (model-aware chunking, the float codecs,
//! dedup within the tenant, encryption into packs, redundancy), named by one tree blob that holds a single
//! file node. The S3 gateway stores every object and every multipart part this way; the tree id is what its
//! bucket records keep (`repo::buckets`), and what `prune` follows to keep the chunks alive.
//!
//! A body arrives as a stream of unknown content, so the model parsers see its first bytes only: a
//! safetensors or GGUF header that fits in `HEAD_MAX` is parsed (the object key gives the file name), and
//! the rest is cut at tensor boundaries as a local backup would; anything else is cut by content.
//!
//! Writes are durable when `write` returns: packs first, then the index file naming them. Nothing refers
//! to the new blobs until the caller records the tree id, so a failure leaves only unreferenced packs that
//! `prune` removes. Memory stays at one pack plus one chunk whatever the object's size.

pub mod snapshot;

use crate::chunker::{plain_chunks, Piece, TensorChunker};
use crate::error::{Error, Result};
use crate::format::index::Location;
use crate::format::pack::{self, BlobType};
use crate::format::tree::{self, Node, NodeKind};
use crate::ids::ChunkId;
use crate::model::{self, Detected, Layout, Source};
use crate::ops::backup::{FullPack, Packing};
use crate::repo::BlobSource;
use crate::repo::Repo;
use crossbeam_channel::bounded;
use md5::{Digest, Md5};
use std::collections::HashSet;
use std::io::{Cursor, Read};
use std::path::Path;

const ZSTD_LEVEL: i32 = 3;
/// The most of a body's start that is held to look for a model header.
pub const HEAD_MAX: usize = 16 << 20;
/// The name of the single node in an object's tree.
const NODE_NAME: &[u8] = b"object";

/// Index entries written to the stores that the caller merges into its in-memory index.
pub type Entries = Vec<(ChunkId, Location)>;

/// An object as written: what its bucket record keeps.
#[derive(Clone, Debug)]
pub struct Written {
    /// The tree blob naming the object's chunks.
    pub tree: ChunkId,
    pub size: u64,
    pub md5: [u8; 16],
    pub chunks: u64,
    /// Plaintext bytes of chunks the tenant did not have.
    pub new_bytes: u64,
    /// Bytes written to the stores (packs and index, before redundancy).
    pub stored_bytes: u64,
    /// The model format the body was chunked as, if any.
    pub model: Option<&'static str>,
}

/// The first bytes of a body, as a parser source: reads past them fail, so a header that does not fit is
/// simply not recognised.
struct Head<'a> {
    bytes: &'a [u8],
    len: u64,
}

impl Source for Head<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.bytes.read_at(offset, len)
    }
}

/// Read up to `len` more bytes into `head` (fewer only at the end of the stream).
fn read_more(reader: &mut impl Read, head: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    reader.take(len as u64).read_to_end(head).map(|_| ())
}

/// The start of a body of `len` bytes that the model parsers need: a safetensors header (its length is in
/// the first 8 bytes) or a GGUF header (of unknown length: up to `HEAD_MAX`). Anything else needs only the
/// first 8 bytes, so a plain object (or a multipart part) holds no more than that.
fn read_model_head(reader: &mut impl Read, key: &str, len: u64) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    read_more(reader, &mut head, 8.min(len as usize))?;
    if head.len() < 8 {
        return Ok(head);
    }
    let want = if head[..4] == crate::model::gguf::MAGIC[..] {
        HEAD_MAX
    } else if key.to_ascii_lowercase().ends_with(".safetensors") {
        let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        usize::try_from(n).unwrap_or(usize::MAX).min(HEAD_MAX)
    } else {
        0
    };
    read_more(reader, &mut head, want.min((len - 8) as usize))?;
    Ok(head)
}

/// The head already read, then the rest of the body; the head's buffer is freed once it has been read.
struct HeadThen<R> {
    head: Option<Cursor<Vec<u8>>>,
    rest: R,
}

impl<R: Read> Read for HeadThen<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(h) = &mut self.head {
            let n = h.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.head = None;
        }
        self.rest.read(buf)
    }
}

/// Called before each pack is written with the bytes it will add; an error stops the write (quotas).
pub type Admit<'a> = dyn FnMut(u64) -> Result<()> + Send + 'a;

/// What a body is: a whole object, or a part of a multipart upload. Parts are slices of a file: the first
/// one carries a safetensors header (whose layout the later parts are cut by, at their offsets), so that an
/// object uploaded in parts is cut, encoded and deduped as it would be whole.
pub enum BodyOf<'a> {
    Object,
    /// Cut by content, whatever it looks like (a part whose file's layout is unknown).
    Plain,
    /// Part 1; the layout found in its header (or None) is told to `on_layout` as soon as it is parsed.
    FirstPart {
        on_layout: &'a mut dyn FnMut(Option<&Layout>),
    },
    /// A later part, at `offset` in the file that `layout` describes.
    Part {
        layout: &'a Layout,
        offset: u64,
    },
}

/// The total length a safetensors header implies: 8 + its length + the end of its last tensor.
fn safetensors_len(head: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(head.get(..8)?.try_into().ok()?);
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(head.get(8..8usize.checked_add(usize::try_from(n).ok()?)?)?).ok()?;
    let end = json.values().filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64()).max().unwrap_or(0);
    8u64.checked_add(n)?.checked_add(end)
}

/// Store a body of `len` bytes (when the sender declared it) read from `body`. `key` is the object's name,
/// for model detection by extension. `known` says whether the tenant already stores a blob (dedup); `warn`
/// hears about model files that fail to parse.
#[allow(clippy::too_many_arguments)]
pub fn write(
    repo: &Repo,
    known: &dyn Fn(&ChunkId) -> bool,
    key: &str,
    len: Option<u64>,
    mut body: impl Read,
    of: BodyOf,
    admit: &mut Admit,
    warn: &dyn Fn(&Error),
) -> Result<(Written, Entries)> {
    let io = |source: std::io::Error| Error::BodyRead { object: format!("object {key}"), source };
    let head = match (len, &of) {
        (Some(n), BodyOf::Object | BodyOf::FirstPart { .. }) => read_model_head(&mut body, key, n).map_err(io)?,
        _ => Vec::new(),
    };
    let params = repo.config.chunker;
    let (window, detected) = match (len, of) {
        (Some(n), BodyOf::Object) if head.len() > 8 => {
            (None, model::detect(Path::new(key), &Head { bytes: &head, len: n }))
        }
        (Some(n), BodyOf::FirstPart { on_layout }) => {
            // The part is the start of a file whose length its header gives.
            let whole = safetensors_len(&head).filter(|_| key.to_ascii_lowercase().ends_with(".safetensors"));
            let d = match whole {
                Some(w) => model::detect(Path::new(key), &Head { bytes: &head, len: w }),
                None => Detected::Plain,
            };
            on_layout(match &d {
                Detected::Model(l) => Some(l),
                _ => None,
            });
            (Some((0, n)), d)
        }
        (Some(n), BodyOf::Part { layout, offset }) => (Some((offset, n)), Detected::Model(layout.clone())),
        _ => (None, Detected::Plain),
    };
    let src = HeadThen { head: Some(Cursor::new(head)), rest: body };
    let (layout, pieces): (_, Box<dyn Iterator<Item = std::io::Result<Piece>> + '_>) = match detected {
        Detected::Model(l) => {
            let src = std::io::BufReader::with_capacity(1 << 20, src);
            let c = match window {
                Some((start, n)) => TensorChunker::window(src, &l, params, start, n),
                None => TensorChunker::new(src, &l, params),
            };
            (Some(l), Box::new(c))
        }
        other => {
            if let Detected::Malformed(e) = other {
                warn(&Error::Usage(format!("object {key}: {e}; stored as plain bytes")));
            }
            let c = plain_chunks(src, params);
            (None, Box::new(c.map(|c| c.map(|data| Piece { data, float: None, tensor: None }))))
        }
    };
    let mut out = Written {
        tree: ChunkId([0; 32]),
        size: 0,
        md5: [0; 16],
        chunks: 0,
        new_bytes: 0,
        stored_bytes: 0,
        model: layout.as_ref().map(|l| l.format.name()),
    };
    // This thread reads, hashes and dedups; ENCODERS threads encode; one packs and writes (as in backup).
    let (raw_tx, raw_rx) = bounded::<Raw>(2 * ENCODERS);
    let (enc_tx, enc_rx) = bounded::<Encoded>(2 * ENCODERS);
    let (read, packed) = std::thread::scope(|s| {
        for _ in 0..ENCODERS {
            let (rx, tx) = (raw_rx.clone(), enc_tx.clone());
            s.spawn(move || {
                for r in rx {
                    let (codec, encoded) = pack::encode_as(&r.data, ZSTD_LEVEL, r.float);
                    let e = Encoded { t: r.t, id: r.id, codec, encoded, raw_len: r.data.len() as u32 };
                    if tx.send(e).is_err() {
                        return; // the packer stopped; its error says why
                    }
                }
            });
        }
        drop((raw_rx, enc_tx));
        let packer = s.spawn(move || {
            let mut p = Packer::new(repo);
            for e in enc_rx {
                p.add(e, admit)?;
            }
            p.finish(admit)
        });
        let read = read_pieces(repo, known, key, len, pieces, &raw_tx, &mut out);
        drop(raw_tx);
        (read, packer.join().expect("object packer thread"))
    });
    // A packer that failed (a quota, a store) stopped the reader: its error comes first.
    let (entries, stored) = packed?;
    read?;
    out.stored_bytes = stored;
    Ok((out, entries))
}

/// Encoder threads per body: the float codecs run at a few hundred MB/s per core, so one upload needs more
/// than one to keep up with the network.
const ENCODERS: usize = 2;

/// A blob on its way to an encoder.
struct Raw {
    t: BlobType,
    id: ChunkId,
    data: Vec<u8>,
    float: Option<crate::format::FloatKind>,
}

/// A blob on its way to the packer.
struct Encoded {
    t: BlobType,
    id: ChunkId,
    codec: pack::Codec,
    encoded: Vec<u8>,
    raw_len: u32,
}

/// Read, hash and dedup the pieces, then the object's tree blob; new blobs go to the encoders.
fn read_pieces(
    repo: &Repo,
    known: &dyn Fn(&ChunkId) -> bool,
    key: &str,
    len: Option<u64>,
    pieces: Box<dyn Iterator<Item = std::io::Result<Piece>> + '_>,
    raw_tx: &crossbeam_channel::Sender<Raw>,
    out: &mut Written,
) -> Result<()> {
    let keys = repo.current_keys();
    let mut md5 = Md5::new();
    let mut chunks = Vec::new();
    let mut pending = HashSet::new();
    // Some(true) if sent, Some(false) if the tenant has it, None if the packer stopped.
    let mut send = |t: BlobType, id: ChunkId, data: Vec<u8>, float| -> Option<bool> {
        if known(&id) || !pending.insert(id) {
            return Some(false);
        }
        raw_tx.send(Raw { t, id, data, float }).ok().map(|_| true)
    };
    for p in pieces {
        let p = p.map_err(|source| Error::BodyRead { object: format!("object {key}"), source })?;
        md5.update(&p.data);
        let n = p.data.len() as u64;
        out.size += n;
        let id = keys.chunk_id(&p.data);
        chunks.push(id);
        match send(BlobType::Data, id, p.data, p.float) {
            Some(true) => out.new_bytes += n,
            Some(false) => {}
            None => return Ok(()), // the packer stopped; its error is the one to report
        }
    }
    if let Some(n) = len.filter(|n| *n != out.size) {
        return Err(Error::BodyMismatch { object: format!("object {key}"), declared: n, got: out.size });
    }
    out.md5 = md5.finalize().into();
    out.chunks = chunks.len() as u64;
    let node = Node {
        name: NODE_NAME.to_vec(),
        kind: NodeKind::File { chunks },
        mode: 0o100644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: out.size,
        dev: 0,
        inode: 0,
    };
    let bytes = tree::encode(&[node]);
    out.tree = keys.chunk_id(&bytes);
    send(BlobType::Tree, out.tree, bytes, None);
    Ok(())
}

/// Packs encoded blobs, writes each full pack, and the index file naming them last (object bodies, and the
/// trees of multipart completions and bucket snapshots).
pub(crate) struct Packer<'a> {
    repo: &'a Repo,
    packing: Packing<'a>,
    entries: Vec<(ChunkId, Location)>,
    stored: u64,
}

impl<'a> Packer<'a> {
    pub(crate) fn new(repo: &'a Repo) -> Self {
        Packer { repo, packing: Packing::new(repo), entries: Vec::new(), stored: 0 }
    }

    /// Encode a small blob here and add it (trees; bodies are encoded on their own threads). The caller
    /// has checked that the tenant lacks it.
    pub(crate) fn add_blob(&mut self, blob_type: BlobType, id: ChunkId, data: &[u8]) -> Result<()> {
        let (codec, encoded) = pack::encode_as(data, ZSTD_LEVEL, None);
        self.add(Encoded { t: blob_type, id, codec, encoded, raw_len: data.len() as u32 }, &mut |_| Ok(()))
    }

    fn add(&mut self, encoded: Encoded, admit: &mut Admit) -> Result<()> {
        if let Some(full) =
            self.packing.add(encoded.t, encoded.codec, encoded.id, &encoded.encoded, encoded.raw_len, None)
        {
            self.write(full, admit)?;
        }
        Ok(())
    }

    fn write(&mut self, (builder, mut pack_entries): FullPack, admit: &mut Admit) -> Result<()> {
        // One pack written at a time by all object writers of the process: a pack's shard copies are the
        // biggest buffers here, and many parallel uploads must not multiply them.
        static PACK_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let (id, bytes, _) = builder.finish();
        admit(bytes.len() as u64)?;
        let _one = PACK_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        self.stored += self.repo.write_pack(&id, &bytes)?.0;
        self.entries.append(&mut pack_entries);
        Ok(())
    }

    /// The last pack, then the index file naming every pack written.
    pub(crate) fn finish(mut self, admit: &mut Admit) -> Result<(Entries, u64)> {
        let packing = std::mem::replace(&mut self.packing, Packing::new(self.repo));
        if let Some(last) = packing.finish() {
            self.write(last, admit)?;
        }
        if !self.entries.is_empty() {
            self.repo.write_index_file(&self.entries)?;
        }
        Ok((self.entries, self.stored))
    }
}

/// The chunks of an object, from its tree blob.
pub fn chunks(src: &dyn BlobSource, tree: &ChunkId) -> Result<Vec<ChunkId>> {
    match src.load_tree(tree)?.into_iter().next() {
        Some(Node { kind: NodeKind::File { chunks }, .. }) => Ok(chunks),
        _ => Err(Error::corrupt(format!("object tree {tree}"), "it does not hold one file node")),
    }
}

/// An object made of other objects' chunks, in order (multipart completion, copies): only a new tree blob
/// is written. Returns its id and the index entries to remember.
pub fn concat(repo: &Repo, parts: &[ChunkId], size: u64) -> Result<(ChunkId, Entries)> {
    let mut all = Vec::new();
    for p in parts {
        all.extend(chunks(repo, p)?);
    }
    let node = Node {
        name: NODE_NAME.to_vec(),
        kind: NodeKind::File { chunks: all },
        mode: 0o100644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size,
        dev: 0,
        inode: 0,
    };
    let bytes = tree::encode(&[node]);
    let id = repo.current_keys().chunk_id(&bytes);
    let mut p = Packer::new(repo);
    if !repo.has_chunk(&id) {
        p.add_blob(BlobType::Tree, id, &bytes)?;
    }
    Ok((id, p.finish(&mut |_| Ok(()))?.0))
}

/// Send bytes `start..end` of an object to `sink`, chunk by chunk; only the chunks that overlap the range
/// are read. `read` is asked for each chunk separately, so a caller can take a lock per chunk.
pub fn read_range(
    read: &mut dyn FnMut(&ChunkId) -> Result<Vec<u8>>,
    chunks: &[(ChunkId, u64)],
    start: u64,
    end: u64,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut pos = 0u64;
    for (id, len) in chunks {
        let (c_start, c_end) = (pos, pos + len);
        pos = c_end;
        if c_end <= start {
            continue;
        }
        if c_start >= end {
            break;
        }
        let data = read(id)?;
        if data.len() as u64 != *len {
            return Err(Error::corrupt(format!("chunk {id}"), "its length differs from the index"));
        }
        let from = start.saturating_sub(c_start) as usize;
        let to = (end.min(c_end) - c_start) as usize;
        sink(if from == 0 && to == data.len() { data } else { data[from..to].to_vec() })?;
    }
    Ok(())
}

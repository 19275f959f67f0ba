//! Packs on stores: writing a pack as `k + m` shards in parallel with a write quorum, and reading blobs back.
//!
//! Healthy reads take the blob's byte range straight from the data shard(s) that hold it: no decoding, no
//! shard hash (the blob's AEAD tag and ChunkId check cover its bytes). A data shard that is missing is
//! decoded in 512 KiB cells, each from the same cell of `k` other shards; one decode restores that cell of
//! every missing data shard, kept in a small cache, so a degraded restore decodes each cell once and never
//! holds whole packs. When that fails too (a tag or
//! ChunkId does not verify: some shard is rotten) the reader fetches whole shards, keeps the ones whose
//! header and BLAKE3 hash verify, rebuilds the pack from any `k` of them and keeps it in a small cache.

use crate::crypto::AeadKey;
use crate::error::{Error, Result};
use crate::format::delta;
use crate::format::index::Location;
use crate::format::pack::{self, BlobContext, BlobEntry, Codec};
use crate::format::shard::{self, ShardHeader};
use crate::ids::{ChunkId, PackId};
use crate::redundancy;
use crate::repo::Repo;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// Rebuilt packs kept for degraded reads (each at most ~21 MiB).
const REBUILT_PACKS_KEPT: usize = 4;

/// What a reader needs to know about a pack once: its key and length.
pub(crate) struct PackInfo {
    key_version: u32,
    key: AeadKey,
    pack_len: u64,
}

/// Decoded cells kept for degraded reads (each holds that cell of every missing data shard: at most m x 512 KiB).
const DECODED_CELLS_KEPT: usize = 32;

/// One cell of each missing data shard of a pack, as decoded: (shard, bytes).
type DecodedCell = Vec<(usize, Vec<u8>)>;
type CellSlot = Arc<OnceLock<Option<Arc<DecodedCell>>>>;

#[derive(Default)]
pub(crate) struct PackCache {
    info: Mutex<HashMap<PackId, Arc<PackInfo>>>,
    rebuilt: Mutex<VecDeque<(PackId, Arc<Vec<u8>>)>>,
    cells: Mutex<VecDeque<((PackId, u64), CellSlot)>>,
}

/// A shard object whose header and hash verified; derefs to its payload, and `object()` gives the bytes
/// to write elsewhere as they are (moving a shard needs no re-encoding).
pub struct VerifiedShard(Vec<u8>);

/// Shard buffers kept for reuse: scrub and repair read thousands of multi-MiB shards, and a fresh buffer of
/// that size costs a page fault and a zeroed page per 4 KiB (a tenth of a repair's time before this pool).
static SHARD_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
const SHARD_BUFFERS_KEPT: usize = 16;

impl Drop for VerifiedShard {
    fn drop(&mut self) {
        let mut pool = SHARD_BUFFERS.lock().expect("buffers");
        if pool.len() < SHARD_BUFFERS_KEPT {
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

impl VerifiedShard {
    pub fn object(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for VerifiedShard {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0[shard::HEADER_LEN..]
    }
}

/// One shard object found on a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCopy {
    /// Which of the pack's `k + m` shards it is.
    pub shard: usize,
    /// The store it is on (an index into the vault's stores).
    pub store: usize,
    /// Its size in bytes, header included.
    pub size: u64,
}

/// A shard known to be on a store (found, or verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShardAt {
    pub shard: usize,
    pub store: usize,
}
/// Every shard object on the stores, by pack.
pub type Inventory = HashMap<PackId, Vec<ShardCopy>>;

/// Plaintexts a reader already holds, offered as delta bases before a base's own chain is read from the
/// vault: a restore offers the chunks it has written (step-1's tensors for step-2's deltas). What it offers
/// is used only if it hashes to the base's id.
pub type KnownBases<'a> = Option<&'a (dyn Fn(&ChunkId) -> Option<Vec<u8>> + Sync)>;

pub fn pack_path(tenant: &str, id: &PackId, shard: usize) -> String {
    let h = id.to_hex();
    format!("tenants/{tenant}/packs/{}/{h}.{shard}", &h[..2])
}

/// How one pack's shards stand, as found by reading them all.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ShardStatus {
    /// Shards whose header and hash verify, with the store each was found on.
    pub good: Vec<ShardAt>,
    /// Shards found nowhere (or only on stores that are down).
    pub missing: Vec<usize>,
    /// Shards that exist but fail their header or hash check: (shard, store, reason).
    pub corrupt: Vec<(usize, usize, String)>,
}

/// How many of a pack's `data_shards + parity_shards` shards must be stored for the write to count: `data_shards + 1` (one spare beyond what a
/// read needs) when there are two or more parity shards; with one parity shard, `data_shards`, so that a layout such as
/// 2+1 over three stores still takes backups while any one store is down (the pack is then degraded, with no
/// spare, until `repair`); with none, all `data_shards`. (Replicas are `data_shards = 1`: three copies need two, two need one.)
pub fn write_quorum(data_shards: u8, parity_shards: u8) -> usize {
    data_shards as usize + usize::from(parity_shards >= 2)
}

impl Repo {
    pub fn k(&self) -> u8 {
        self.config.redundancy.k
    }

    pub fn shard_count(&self) -> usize {
        self.config.redundancy.k as usize + self.config.redundancy.m as usize
    }

    /// The store each shard of a pack belongs on (shard i on the i-th).
    pub fn placement(&self, pack: &PackId) -> Vec<usize> {
        redundancy::place(pack, &self.config.stores, self.shard_count())
    }

    /// Stores to try for a shard: its placed store first, then the rest of the pack's placed set, then every
    /// other store that is up (rebalance and repair keep shards within the set but not always on their own
    /// placed store, and a store change may not have been followed yet).
    pub(crate) fn shard_candidates(&self, pack: &PackId, shard: usize) -> Vec<usize> {
        let placement = self.placement(pack);
        let mut out: Vec<usize> = placement.get(shard).copied().into_iter().collect();
        for i in placement.iter().copied().chain(0..self.stores.len()) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out.retain(|i| !self.is_down(*i));
        out
    }

    /// Shard and write a finished pack, all shards in parallel. Succeeds once `write_quorum` shards are
    /// durable; missing shards are recorded in the degraded log for `repair`.
    /// Returns the bytes written to stores and the number of shards that could not be written.
    pub fn write_pack(&self, id: &PackId, bytes: &[u8]) -> Result<(u64, usize)> {
        let r = &self.config.redundancy;
        let payloads = redundancy::split(bytes, r.k, r.m)?;
        let placement = self.placement(id);
        let results: Vec<Result<u64>> = std::thread::scope(|s| {
            let handles: Vec<_> = placement
                .iter()
                .enumerate()
                .map(|(shard, &store)| {
                    let payload = &payloads[shard];
                    s.spawn(move || {
                        if self.is_down(store) {
                            return Err(Error::Store {
                                store: self.stores[store].url().to_string(),
                                op: "put",
                                path: pack_path(&self.tenant, id, shard),
                                source: std::io::Error::other(format!("store is down: {}", self.down_reason(store))),
                            });
                        }
                        let header = ShardHeader::new(*id, shard as u8, r.k, r.m, bytes.len() as u64, payload);
                        self.put_shard(store, &header, payload)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("shard writer panicked")).collect()
        });
        let written: u64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let quorum = write_quorum(r.k, r.m);
        let missing: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
        if ok < quorum {
            let first = results.into_iter().find_map(|r| r.err()).expect("a failed shard");
            return Err(first);
        }
        if !missing.is_empty() {
            self.log_degraded(id, &missing)?;
        }
        crate::fault::point("pack-written");
        Ok((written, missing.len()))
    }

    /// Write one shard object (its header, then the payload, never joined in memory) to a store; returns the
    /// bytes written.
    pub(crate) fn put_shard(&self, store: usize, header: &ShardHeader, payload: &[u8]) -> Result<u64> {
        let head = header.to_bytes();
        self.stores[store]
            .put_parts(&pack_path(&self.tenant, &header.pack_id, header.index as usize), &[&head, payload])
            .inspect_err(|e| self.note_failure(store, e))?;
        Ok((head.len() + payload.len()) as u64)
    }

    fn degraded_path(&self, id: &PackId) -> String {
        format!("tenants/{}/degraded/{id}", self.tenant)
    }

    /// Record that a pack was written with shards missing (plaintext: it names only a pack and shard numbers,
    /// which the pack's file names already show).
    fn log_degraded(&self, id: &PackId, missing: &[usize]) -> Result<()> {
        let body = serde_json::to_vec(
            &serde_json::json!({ "pack": id.to_hex(), "missing_shards": missing, "time": crate::repo::now_rfc3339() }),
        )
        .expect("json");
        self.write_meta(&self.degraded_path(id), &body)
    }

    /// Packs with an entry in the degraded-write log.
    pub fn degraded_log(&self) -> Result<Vec<PackId>> {
        let names = self.list_meta(&format!("tenants/{}/degraded", self.tenant))?;
        Ok(names.iter().filter_map(|n| n.rsplit('/').next()).filter_map(|h| PackId::from_hex(h).ok()).collect())
    }

    pub(crate) fn clear_degraded(&self, id: &PackId) -> Result<()> {
        self.delete_meta(&self.degraded_path(id))
    }

    /// Read a whole shard object from one store and check its header and hash.
    pub fn read_shard(&self, pack: &PackId, shard: usize, store: usize) -> Result<(ShardHeader, VerifiedShard)> {
        let path = pack_path(&self.tenant, pack, shard);
        let name = format!("{}/{path}", self.stores[store].url());
        let mut obj = VerifiedShard(SHARD_BUFFERS.lock().expect("buffers").pop().unwrap_or_default());
        self.stores[store].get_into(&path, &mut obj.0).inspect_err(|e| self.note_failure(store, e))?;
        let (h, _) = ShardHeader::parse_verified(&obj.0).map_err(|e| e.in_object(&name))?;
        if h.pack_id != *pack || h.index as usize != shard || h.k != self.k() {
            return Err(Error::corrupt(&name, format!("holds shard {} of pack {} (k={})", h.index, h.pack_id, h.k)));
        }
        Ok((h, obj))
    }

    /// Find and verify every shard of a pack.
    pub fn shard_status(&self, pack: &PackId) -> ShardStatus {
        let mut st = ShardStatus::default();
        for shard in 0..self.shard_count() {
            let mut found = false;
            for store in self.shard_candidates(pack, shard) {
                match self.read_shard(pack, shard, store) {
                    Ok(_) => {
                        st.good.push(ShardAt { shard, store });
                        found = true;
                        break;
                    }
                    Err(Error::NotFound { .. }) | Err(Error::Store { .. }) => {}
                    Err(e) => st.corrupt.push((shard, store, e.to_string())),
                }
            }
            if !found {
                st.missing.push(shard);
            }
        }
        st
    }

    /// Any `k` shards of a pack whose header and hash verify, read data-first: (pack length, shards).
    fn read_good_shards(&self, pack: &PackId) -> Result<(u64, Vec<Option<VerifiedShard>>)> {
        let n = self.shard_count();
        let k = self.k() as usize;
        let mut shards: Vec<Option<VerifiedShard>> = (0..n).map(|_| None).collect();
        let mut pack_len = None;
        let mut good = 0;
        let mut first_err = None;
        for (shard, slot) in shards.iter_mut().enumerate() {
            if good == k {
                break;
            }
            for store in self.shard_candidates(pack, shard) {
                match self.read_shard(pack, shard, store) {
                    Ok((h, payload)) => {
                        pack_len = Some(h.pack_length);
                        *slot = Some(payload);
                        good += 1;
                        break;
                    }
                    Err(e) => {
                        if !matches!(e, Error::NotFound { .. }) {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        match pack_len.filter(|_| good >= k) {
            Some(len) => Ok((len, shards)),
            None => Err(first_err.unwrap_or_else(|| {
                Error::corrupt(format!("pack {pack}"), format!("only {good} of the {k} shards needed are readable"))
            })),
        }
    }

    /// Rebuild a whole pack from any `k` good shards.
    pub fn rebuild_pack(&self, pack: &PackId) -> Result<Vec<u8>> {
        let (pack_len, shards) = self.read_good_shards(pack)?;
        let views: Vec<Option<&[u8]>> = shards.iter().map(|s| s.as_deref()).collect();
        redundancy::join(self.k(), self.config.redundancy.m, pack_len as usize, &views)
            .map_err(|e| e.in_object(&format!("pack {pack}")))
    }

    /// Rebuild shards `want` of a pack from any `k` good shards: (pack length, rebuilt shard payloads).
    pub fn rebuild_shards(&self, pack: &PackId, want: &[usize]) -> Result<(u64, Vec<redundancy::Rebuilt>)> {
        let (pack_len, shards) = self.read_good_shards(pack)?;
        let views: Vec<Option<&[u8]>> = shards.iter().map(|s| s.as_deref()).collect();
        let rebuilt = redundancy::rebuild_shards(self.k(), self.config.redundancy.m, &views, want)
            .map_err(|e| e.in_object(&format!("pack {pack}")))?;
        Ok((pack_len, rebuilt))
    }

    /// The whole pack, verified shard by shard (for `check --read-data`, repair and rebalance).
    pub fn read_pack(&self, pack: &PackId) -> Result<Vec<u8>> {
        self.rebuild_pack(pack)
    }

    fn rebuilt(&self, pack: &PackId) -> Result<Arc<Vec<u8>>> {
        if let Some((_, b)) = self.packs.rebuilt.lock().expect("cache").iter().find(|(p, _)| p == pack) {
            return Ok(b.clone());
        }
        let bytes = Arc::new(self.rebuild_pack(pack)?);
        let mut cache = self.packs.rebuilt.lock().expect("cache");
        if cache.len() >= REBUILT_PACKS_KEPT {
            cache.pop_front();
        }
        cache.push_back((*pack, bytes.clone()));
        Ok(bytes)
    }

    /// Bytes `off..off+len` of one shard's payload, from the first store that has them.
    fn shard_range(&self, pack: &PackId, shard: usize, off: u64, len: u64) -> Result<Vec<u8>> {
        let path = pack_path(&self.tenant, pack, shard);
        let mut first_err = None;
        for store in self.shard_candidates(pack, shard) {
            match self.stores[store].get_range(&path, shard::HEADER_LEN as u64 + off, len) {
                Ok(b) if b.len() as u64 == len => return Ok(b),
                Ok(b) => {
                    first_err.get_or_insert(Error::corrupt(
                        format!("{}/{path}", self.stores[store].url()),
                        format!("{} bytes where {len} were asked for", b.len()),
                    ));
                }
                Err(e) => {
                    self.note_failure(store, &e);
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::not_found(format!("pack {pack} shard {shard}"))))
    }

    /// Pack bytes `offset..offset+len` read directly from the data shards that hold them. A data shard that
    /// no store yields is decoded, over just the blocks this range needs, from the same blocks of `k` other
    /// shards; the caller's AEAD check covers the result, and falls back to a verified whole-pack rebuild.
    fn read_direct(&self, pack: &PackId, pack_len: u64, offset: u64, len: u64) -> Result<Vec<u8>> {
        let k = self.k();
        let mut out = Vec::with_capacity(len as usize);
        for (shard, off, l) in redundancy::data_ranges(offset, len, pack_len, k) {
            // With replication every shard is a full copy, so any of them will do.
            let shards: Vec<usize> = if k == 1 { (0..self.shard_count()).collect() } else { vec![shard] };
            let mut got = Err(Error::not_found(format!("pack {pack} shard {shard}")));
            for s in shards {
                got = self.shard_range(pack, s, off, l);
                if got.is_ok() {
                    break;
                }
            }
            match got {
                Ok(b) if out.is_empty() && b.len() as u64 == len => return Ok(b), // the common case: no copy
                Ok(b) => out.extend_from_slice(&b),
                Err(e) if k > 1 && self.config.redundancy.m > 0 => {
                    self.decode_shard_range(pack, pack_len, shard, off, l, &mut out).map_err(|_| e)?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `off..off+len` of data shard `want`, taken from decoded cells and appended to `out`.
    fn decode_shard_range(
        &self,
        pack: &PackId,
        pack_len: u64,
        want: usize,
        off: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let sl = redundancy::shard_len(pack_len as usize, self.k()) as u64;
        let (mut pos, end) = (off, off + len);
        while pos < end {
            let cell = pos / redundancy::DECODE_CELL;
            let (start, cell_len) = redundancy::cell_range(cell, sl);
            let decoded = self.decoded_cell(pack, sl, cell)?;
            let bytes = decoded.iter().find(|d| d.0 == want).map(|d| &d.1).ok_or_else(|| {
                Error::corrupt(format!("pack {pack}"), format!("data shard {want} is readable after all"))
            })?;
            let n = end.min(start + cell_len) - pos;
            out.extend_from_slice(&bytes[(pos - start) as usize..(pos - start + n) as usize]);
            pos += n;
        }
        Ok(())
    }

    /// One cell of every missing data shard of a pack, decoded once from the same cell of `k` readable
    /// shards and kept in a small cache; concurrent readers of one cell wait for a single decode.
    fn decoded_cell(&self, pack: &PackId, shard_len: u64, cell: u64) -> Result<Arc<DecodedCell>> {
        let slot = {
            let mut cells = self.packs.cells.lock().expect("cache");
            match cells.iter().find(|(key, _)| *key == (*pack, cell)) {
                Some((_, slot)) => slot.clone(),
                None => {
                    if cells.len() >= DECODED_CELLS_KEPT {
                        cells.pop_front();
                    }
                    let slot = Arc::new(OnceLock::new());
                    cells.push_back(((*pack, cell), slot.clone()));
                    slot
                }
            }
        };
        let decoded = slot.get_or_init(|| {
            let (start, len) = redundancy::cell_range(cell, shard_len);
            let k = self.k() as usize;
            let mut have = Vec::with_capacity(k);
            for s in 0..self.shard_count() {
                if have.len() == k {
                    break;
                }
                if let Ok(b) = self.shard_range(pack, s, start, len) {
                    have.push((s, b));
                }
            }
            let views: Vec<(usize, &[u8])> = have.iter().map(|(s, b)| (*s, b.as_slice())).collect();
            redundancy::decode_cell(self.k(), self.config.redundancy.m, &views).ok().map(Arc::new)
        });
        decoded.clone().ok_or_else(|| {
            Error::corrupt(format!("pack {pack}"), format!("fewer than {} shards readable at cell {cell}", self.k()))
        })
    }

    /// Key and length of a pack, from any shard header and the pack header (cached per pack).
    fn pack_info(&self, pack: &PackId) -> Result<Arc<PackInfo>> {
        if let Some(i) = self.packs.info.lock().expect("cache").get(pack) {
            return Ok(i.clone());
        }
        let name = format!("pack {pack}");
        let mut pack_len = None;
        'find: for shard in 0..self.shard_count() {
            for store in self.shard_candidates(pack, shard) {
                let path = pack_path(&self.tenant, pack, shard);
                if let Ok(head) = self.stores[store].get_range(&path, 0, shard::HEADER_LEN as u64) {
                    if let Ok(h) = ShardHeader::parse(&head) {
                        if h.pack_id == *pack && h.k == self.k() {
                            pack_len = Some(h.pack_length);
                            break 'find;
                        }
                    }
                }
            }
        }
        let pack_len = pack_len.ok_or_else(|| Error::not_found(format!("{name}: no readable shard on any store")))?;
        let head = match self.read_direct(pack, pack_len, 0, pack::HEADER_LEN as u64) {
            Ok(h) if pack::parse_header(&h).is_ok_and(|(_, id, _)| id == *pack) => h,
            _ => self.rebuilt(pack)?[..pack::HEADER_LEN.min(pack_len as usize)].to_vec(),
        };
        let (key_version, id, salt) = pack::parse_header(&head).map_err(|e| e.in_object(&name))?;
        if id != *pack {
            return Err(Error::corrupt(&name, format!("holds pack {id}")));
        }
        let keys = self
            .keys
            .get(&key_version)
            .ok_or_else(|| Error::corrupt(&name, format!("unknown key version {key_version}")))?;
        let info = Arc::new(PackInfo { key_version, key: keys.pack_key(&salt), pack_len });
        self.packs.info.lock().expect("cache").insert(*pack, info.clone());
        Ok(info)
    }

    /// The tenant key version a pack is encrypted under (from its header).
    pub fn pack_key_version(&self, pack: &PackId) -> Result<u32> {
        Ok(self.pack_info(pack)?.key_version)
    }

    /// A pack's own blob table: every blob it holds, live or not, read from the end of the pack alone (one
    /// ranged read when the table fits in the last `TABLE_TAIL` bytes, as it does but for packs of tiny
    /// chunks). A range that does not authenticate (a rotten shard) is read again from a verified rebuild.
    pub fn pack_table(&self, pack: &PackId) -> Result<Vec<BlobEntry>> {
        const TABLE_TAIL: u64 = 64 << 10;
        let info = self.pack_info(pack)?;
        let name = format!("pack {pack}");
        let ctx = self.blob_context(pack, info.key_version);
        let direct = || -> Result<Vec<BlobEntry>> {
            let tail_len = info.pack_len.min(TABLE_TAIL);
            let tail_start = info.pack_len - tail_len;
            let tail = self.read_direct(pack, info.pack_len, tail_start, tail_len)?;
            let trailer = &tail[tail.len().saturating_sub(pack::TRAILER_LEN)..];
            let (start, len) = pack::table_range(trailer, info.pack_len, &name)?;
            let ct = if start >= tail_start {
                tail[(start - tail_start) as usize..][..len].to_vec()
            } else {
                self.read_direct(pack, info.pack_len, start, len as u64)?
            };
            pack::open_table(&info.key, &ctx, &ct, start, &name)
        };
        match direct() {
            Ok(entries) => Ok(entries),
            Err(first) => match self.rebuilt(pack) {
                Ok(bytes) => Ok(self.open_pack(pack, &bytes)?.entries),
                Err(_) => Err(first),
            },
        }
    }

    pub fn blob_context<'a>(&'a self, pack: &'a PackId, key_version: u32) -> BlobContext<'a> {
        BlobContext { vault: &self.vault_id, tenant: &self.tenant, key_version, pack }
    }

    fn decrypt_blob(
        &self,
        id: &ChunkId,
        loc: &Location,
        info: &PackInfo,
        ct: impl Into<Vec<u8>>,
        depth: u8,
        known: KnownBases,
    ) -> Result<(Vec<u8>, u8)> {
        let name = format!("pack {} blob {id}", loc.pack);
        let entry = BlobEntry {
            blob_type: loc.blob_type,
            codec: loc.codec,
            id: *id,
            offset: loc.offset,
            length: loc.length,
            raw_length: loc.raw_length,
        };
        let enc =
            pack::open_blob(&info.key, &self.blob_context(&loc.pack, info.key_version), loc.index, &entry, ct, &name)?;
        let (plain, d) = self.decode_blob(loc.codec, enc, loc.raw_length, loc.base.as_ref(), &name, depth, known)?;
        self.verify_chunk(id, &plain, info.key_version, &name)?;
        Ok((plain, d))
    }

    /// Undo a blob's codec. A delta (codec 3) reads its base first, which may itself be a delta at most
    /// `depth - 1` levels deep, so a corrupt chain cannot loop. `base` is what the index says the base is.
    /// A base that `known` offers and that hashes to its id is used as it is, without reading its chain.
    /// Returns the plaintext and the blob's depth (0 for a whole blob).
    #[allow(clippy::too_many_arguments)]
    pub fn decode_blob(
        &self,
        codec: Codec,
        enc: Vec<u8>,
        raw_length: u32,
        base: Option<&ChunkId>,
        name: &str,
        depth: u8,
        known: KnownBases,
    ) -> Result<(Vec<u8>, u8)> {
        if codec != Codec::Delta {
            return Ok((pack::decode(codec, enc, raw_length, name)?, 0));
        }
        let (h, body) = delta::parse_header(&enc, name)?;
        if h.depth > depth {
            return Err(Error::corrupt(name, format!("delta of depth {} where at most {depth} is allowed", h.depth)));
        }
        if base.is_some_and(|b| *b != h.base) {
            return Err(Error::corrupt(name, "delta base differs from the index's"));
        }
        // Any key version's ChunkIds are the tenant's (rotation keeps them), so the current one checks.
        let offered = known.and_then(|k| k(&h.base)).filter(|p| self.current_keys().chunk_id(p) == h.base);
        let base_plain = match offered {
            Some(plain) => plain,
            None => self.read_chunk(&h.base, h.depth - 1)?.0,
        };
        Ok((delta::decode(&h, body, &base_plain, raw_length, name)?, h.depth))
    }

    /// Read, decrypt, decode and verify one blob: the plaintext is exactly what was backed up, or an error.
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.read_blob_knowing(id, None)
    }

    /// `read_blob`, where a delta's base may come from `known` (see `decode_blob`).
    pub fn read_blob_knowing(&self, id: &ChunkId, known: KnownBases) -> Result<Vec<u8>> {
        self.read_chunk_knowing(id, u8::MAX, known).map(|(plain, _)| plain)
    }

    /// `read_blob`, allowing a delta chain at most `depth` deep, and also returning the blob's depth.
    pub fn read_chunk(&self, id: &ChunkId, depth: u8) -> Result<(Vec<u8>, u8)> {
        self.read_chunk_knowing(id, depth, None)
    }

    fn read_chunk_knowing(&self, id: &ChunkId, depth: u8, known: KnownBases) -> Result<(Vec<u8>, u8)> {
        let loc = self.lookup(id)?.ok_or_else(|| super::chunk_index::not_indexed(id))?;
        let info = self.pack_info(&loc.pack)?;
        let end = loc.offset as u64 + loc.length as u64;
        if end > info.pack_len {
            return Err(Error::corrupt(format!("pack {}", loc.pack), format!("blob {id} lies beyond the pack's end")));
        }
        let direct = self
            .read_direct(&loc.pack, info.pack_len, loc.offset as u64, loc.length as u64)
            .and_then(|ct| self.decrypt_blob(id, &loc, &info, ct, depth, known));
        match direct {
            Ok(r) => Ok(r),
            Err(direct_err) => {
                // Degraded: rebuild the pack from verified shards and take the blob from it.
                let pack = self.rebuilt(&loc.pack).map_err(|e| match e {
                    Error::NotFound { .. } => direct_err,
                    other => other,
                })?;
                self.decrypt_blob(id, &loc, &info, &pack[loc.offset as usize..end as usize], depth, known)
            }
        }
    }

    /// Open a pack's table from its bytes.
    pub fn open_pack(&self, id: &PackId, bytes: &[u8]) -> Result<pack::OpenedPack> {
        pack::open_pack(&self.vault_id, &self.tenant, |v| self.keys.get(&v), id, bytes, &format!("pack {id}"))
    }

    /// End-to-end check: the keyed hash of the plaintext must be the ChunkId.
    pub fn verify_chunk(&self, id: &ChunkId, plain: &[u8], version: u32, name: &str) -> Result<()> {
        let keys =
            self.keys.get(&version).ok_or_else(|| Error::corrupt(name, format!("unknown key version {version}")))?;
        if keys.chunk_id(plain) != *id {
            return Err(Error::corrupt(name, "plaintext does not hash to its ChunkId"));
        }
        Ok(())
    }

    /// Delete the shard objects of a pack nothing references (prune, rekey). Every deletion goes through the
    /// down-store set like any other store call: a store that is down, or fails now, is not written to again
    /// in this command, and the error says the pack is still there, so running the command again finishes it.
    pub(crate) fn delete_pack(&self, pack: &PackId, copies: &[ShardCopy]) -> Result<()> {
        for c in copies {
            if self.is_down(c.store) {
                return Err(Error::Unavailable {
                    what: format!("pack {pack}"),
                    reason: format!(
                        "shard {} is on store {}, which is down ({}); run the command again once it is back",
                        c.shard,
                        self.stores[c.store].url(),
                        self.down_reason(c.store)
                    ),
                });
            }
            self.stores[c.store]
                .delete(&pack_path(&self.tenant, pack, c.shard))
                .inspect_err(|e| self.note_failure(c.store, e))?;
        }
        Ok(())
    }

    /// Every shard object on the stores that are up, by pack.
    pub fn shard_inventory(&self) -> Result<Inventory> {
        let mut out: Inventory = HashMap::new();
        let prefix = format!("tenants/{}/packs", self.tenant);
        let mut listed = 0;
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            let names = match s.list_sized(&prefix) {
                Ok(n) => n,
                Err(e) => {
                    self.note_failure(i, &e);
                    continue;
                }
            };
            listed += 1;
            for (name, size) in names {
                let file = name.rsplit('/').next().unwrap_or("");
                if file.contains(".tmp-") {
                    continue;
                }
                if let Some((hexid, shard)) = file.split_once('.') {
                    if let (Ok(id), Ok(shard)) = (PackId::from_hex(hexid), shard.parse::<usize>()) {
                        out.entry(id).or_default().push(ShardCopy { shard, store: i, size });
                    }
                }
            }
        }
        if listed == 0 {
            return Err(Error::Unavailable { what: format!("listing {prefix}"), reason: "no store is up".into() });
        }
        Ok(out)
    }

    /// All pack ids present on the stores.
    pub fn list_packs(&self) -> Result<std::collections::BTreeSet<PackId>> {
        Ok(self.shard_inventory()?.into_keys().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::write_quorum;

    #[test]
    fn a_pack_write_keeps_a_spare_shard_when_parity_allows_and_survives_one_lost_store_always() {
        assert_eq!(write_quorum(4, 2), 5, "4+2: one spare beyond the four a read needs");
        assert_eq!(write_quorum(17, 3), 18);
        assert_eq!(write_quorum(2, 1), 2, "2+1 over three stores: a backup goes on with one store down");
        assert_eq!(write_quorum(1, 2), 2, "three replicas: two");
        assert_eq!(write_quorum(1, 1), 1, "two replicas: one");
        assert_eq!(write_quorum(1, 0), 1, "a single store");
        for k in 1..=20u8 {
            for m in 1..=4u8 {
                assert!(write_quorum(k, m) < (k + m) as usize, "{k}+{m}: one store may always be down");
                assert!(write_quorum(k, m) >= k as usize, "{k}+{m}: never fewer than a read needs");
            }
        }
    }
}

//! Packs: a header with a fresh salt, encrypted blobs, an encrypted blob table, and a trailer.

use super::wire::{Reader, Writer};
use crate::crypto::{counter_nonce, AeadKey, TenantKeys, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::format::FloatKind;
use crate::ids::{ChunkId, PackId, VaultId};

const MAGIC: &[u8; 4] = b"MVPK";
const TABLE_MAGIC: &[u8; 4] = b"MVBT";
const TRAILER_MAGIC: &[u8; 4] = b"MVPT";
pub const HEADER_LEN: usize = 5 + 4 + 16 + 32;
pub const TRAILER_LEN: usize = 8;
const TABLE_NONCE: [u8; NONCE_LEN] = [0xff; NONCE_LEN];
const ENTRY_LEN: usize = 1 + 1 + 32 + 4 + 4 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobType {
    Data = 0,
    Tree = 1,
}

impl BlobType {
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    None = 0,
    Zstd = 1,
    /// Byte-grouped floats (format/grouped.rs).
    Grouped = 2,
    /// XOR against a base chunk (`format::delta`); decoding needs the base, so it goes through the repository.
    Delta = 3,
}

impl Codec {
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Grouped),
            3 => Some(Codec::Delta),
            _ => None,
        }
    }
}

/// One row of a pack's blob table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub blob_type: BlobType,
    pub codec: Codec,
    pub id: ChunkId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// Everything a blob's AAD binds it to.
pub struct BlobContext<'a> {
    pub vault: &'a VaultId,
    pub tenant: &'a str,
    pub key_version: u32,
    pub pack: &'a PackId,
}

impl BlobContext<'_> {
    fn blob_aad(&self, index: u32, blob_type: BlobType, codec: Codec, id: &ChunkId) -> Vec<u8> {
        let mut w = super::aad("mvault/v1/blob", self.vault);
        w.bytes16(self.tenant.as_bytes())
            .u32(self.key_version)
            .bytes(&self.pack.0)
            .u32(index)
            .u8(blob_type as u8)
            .u8(codec as u8)
            .bytes(&id.0);
        w.into_vec()
    }
    fn table_aad(&self) -> Vec<u8> {
        let mut w = super::aad("mvault/v1/table", self.vault);
        w.bytes16(self.tenant.as_bytes()).u32(self.key_version).bytes(&self.pack.0);
        w.into_vec()
    }
}

/// Builds one pack in memory. Blobs arrive already encoded (compressed or not); the builder encrypts them.
pub struct PackBuilder {
    pub id: PackId,
    vault: VaultId,
    tenant: String,
    key_version: u32,
    key: AeadKey,
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackBuilder {
    pub fn new(vault: &VaultId, tenant: &str, keys: &TenantKeys, capacity: usize) -> Self {
        Self::in_buffer(vault, tenant, keys, Vec::with_capacity(capacity))
    }

    /// A builder that fills `buf` (cleared first): a finished pack's buffer reused for the next one, whose
    /// pages are already mapped (a fresh 20 MiB buffer costs 5,000 page faults as it fills).
    pub fn in_buffer(vault: &VaultId, tenant: &str, keys: &TenantKeys, mut buf: Vec<u8>) -> Self {
        let id = PackId::random();
        let salt = crate::crypto::random32();
        buf.clear();
        let mut w = Writer::with_header(MAGIC, 1);
        w.u32(keys.version).bytes(&id.0).bytes(&salt);
        buf.extend_from_slice(&w.into_vec());
        PackBuilder {
            id,
            vault: *vault,
            tenant: tenant.to_string(),
            key_version: keys.version,
            key: keys.pack_key(&salt),
            buf,
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn blobs(&self) -> &[BlobEntry] {
        &self.entries
    }

    /// Encrypt and append one encoded blob; returns its table entry.
    pub fn add(
        &mut self,
        blob_type: BlobType,
        codec: Codec,
        id: ChunkId,
        encoded: &[u8],
        raw_length: u32,
    ) -> BlobEntry {
        let index = self.entries.len() as u32;
        let ctx =
            BlobContext { vault: &self.vault, tenant: &self.tenant, key_version: self.key_version, pack: &self.id };
        let offset = self.buf.len();
        self.key.seal_append(
            counter_nonce(index as u64),
            &ctx.blob_aad(index, blob_type, codec, &id),
            encoded,
            &mut self.buf,
        );
        let length = (self.buf.len() - offset) as u32;
        let e = BlobEntry { blob_type, codec, id, offset: offset as u32, length, raw_length };
        self.entries.push(e);
        e
    }

    /// Append the encrypted table and the trailer; returns the finished pack bytes and its entries.
    pub fn finish(mut self) -> (PackId, Vec<u8>, Vec<BlobEntry>) {
        let ctx =
            BlobContext { vault: &self.vault, tenant: &self.tenant, key_version: self.key_version, pack: &self.id };
        let table = encode_table(&self.entries);
        let ct = self.key.seal(TABLE_NONCE, &ctx.table_aad(), &table);
        self.buf.extend_from_slice(&ct);
        self.buf.extend_from_slice(&(ct.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(TRAILER_MAGIC);
        (self.id, self.buf, self.entries)
    }
}

pub fn encode_table(entries: &[BlobEntry]) -> Vec<u8> {
    let mut w = Writer::with_header(TABLE_MAGIC, 1);
    w.u32(entries.len() as u32);
    for e in entries {
        w.u8(e.blob_type as u8).u8(e.codec as u8).bytes(&e.id.0).u32(e.offset).u32(e.length).u32(e.raw_length);
    }
    w.into_vec()
}

pub fn parse_table(bytes: &[u8]) -> Result<Vec<BlobEntry>> {
    let mut r = Reader::new(bytes, "blob table");
    r.header(TABLE_MAGIC, 1)?;
    let n = r.count(ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = r.u8()?;
        let c = r.u8()?;
        let e = BlobEntry {
            blob_type: BlobType::from_u8(t).ok_or_else(|| r.err(format!("unknown blob type {t}")))?,
            codec: Codec::from_u8(c).ok_or_else(|| r.err(format!("unknown codec {c}")))?,
            id: ChunkId(r.array()?),
            offset: r.u32()?,
            length: r.u32()?,
            raw_length: r.u32()?,
        };
        if (e.length as usize) < TAG_LEN {
            return Err(r.err("blob shorter than its tag"));
        }
        out.push(e);
    }
    r.finish()?;
    Ok(out)
}

/// The parsed header of a pack: (key version, pack id, salt).
pub fn parse_header(bytes: &[u8]) -> Result<(u32, PackId, [u8; 32])> {
    let mut r = Reader::new(bytes, "pack");
    r.header(MAGIC, 1)?;
    Ok((r.u32()?, PackId(r.array()?), r.array()?))
}

/// Open a whole pack: check header, trailer and table, and return the key and the table.
pub struct OpenedPack {
    pub key: AeadKey,
    pub key_version: u32,
    pub entries: Vec<BlobEntry>,
}

pub fn open_pack<'k>(
    vault: &VaultId,
    tenant: &str,
    keys_for: impl Fn(u32) -> Option<&'k TenantKeys>,
    expected: &PackId,
    pack: &[u8],
    object: &str,
) -> Result<OpenedPack> {
    let (key_version, id, salt) = parse_header(pack).map_err(|e| e.in_object(object))?;
    if id != *expected {
        return Err(Error::corrupt(object, format!("holds pack {id}, expected {expected}")));
    }
    if pack.len() < HEADER_LEN + TRAILER_LEN {
        return Err(Error::malformed(object, "too short for a pack"));
    }
    let (table_start, table_len) = table_range(&pack[pack.len() - TRAILER_LEN..], pack.len() as u64, object)?;
    let keys =
        keys_for(key_version).ok_or_else(|| Error::corrupt(object, format!("unknown key version {key_version}")))?;
    let key = keys.pack_key(&salt);
    let ctx = BlobContext { vault, tenant, key_version, pack: expected };
    let start = table_start as usize;
    let entries = open_table(&key, &ctx, &pack[start..start + table_len], table_start, object)?;
    Ok(OpenedPack { key, key_version, entries })
}

/// Where the blob table of a pack of `pack_len` bytes lies, from the pack's last `TRAILER_LEN` bytes:
/// (offset, length) of the encrypted table.
pub fn table_range(trailer: &[u8], pack_len: u64, object: &str) -> Result<(u64, usize)> {
    if trailer.len() != TRAILER_LEN || pack_len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(Error::malformed(object, "too short for a pack"));
    }
    if &trailer[4..] != TRAILER_MAGIC {
        return Err(Error::malformed(object, "bad pack trailer magic"));
    }
    let table_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as u64;
    if table_len > pack_len - (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(Error::malformed(object, format!("blob table length {table_len} exceeds pack")));
    }
    Ok((pack_len - TRAILER_LEN as u64 - table_len, table_len as usize))
}

/// Decrypt and parse a pack's blob table (the bytes `table_range` names), checking that every blob lies in
/// the pack's body, between the header and `table_start`. Prune reads just this part of a pack: it lists
/// every blob the pack holds, whatever the index says.
pub fn open_table(
    key: &AeadKey,
    ctx: &BlobContext,
    ciphertext: &[u8],
    table_start: u64,
    object: &str,
) -> Result<Vec<BlobEntry>> {
    let table = key.open(TABLE_NONCE, &ctx.table_aad(), ciphertext, &format!("{object} blob table"))?;
    let entries = parse_table(&table).map_err(|e| e.in_object(object))?;
    for e in &entries {
        let end = e.offset as u64 + e.length as u64;
        if (e.offset as usize) < HEADER_LEN || end > table_start {
            return Err(Error::malformed(object, format!("blob {} lies outside the pack body", e.id)));
        }
    }
    Ok(entries)
}

/// Decrypt one blob given its ciphertext and where it sits: returns the encoded (maybe compressed) bytes.
pub fn open_blob(
    key: &AeadKey,
    ctx: &BlobContext,
    index: u32,
    entry: &BlobEntry,
    ciphertext: impl Into<Vec<u8>>,
    object: &str,
) -> Result<Vec<u8>> {
    key.open(
        counter_nonce(index as u64),
        &ctx.blob_aad(index, entry.blob_type, entry.codec, &entry.id),
        ciphertext,
        object,
    )
}

/// zstd with one context per thread, kept: making a context for every blob (`zstd::bulk::compress` and
/// `decompress` do) was 2% of a restore's samples, and each new context's workspace is fresh memory to fault in.
fn zstd_compress(plain: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with_borrow_mut(|c| {
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        c.as_mut().expect("made above").1.compress(plain)
    })
}

fn zstd_decompress(encoded: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with_borrow_mut(|d| {
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("made above").decompress(encoded, capacity)
    })
}

/// Undo the codec; `raw_length` bounds the output.
pub fn decode(codec: Codec, encoded: Vec<u8>, raw_length: u32, object: &str) -> Result<Vec<u8>> {
    let out = match codec {
        Codec::None => encoded,
        Codec::Zstd => {
            zstd_decompress(&encoded, raw_length as usize).map_err(|e| Error::corrupt(object, format!("zstd: {e}")))?
        }
        Codec::Grouped => super::grouped::decode(&encoded, raw_length as usize, object)?,
        Codec::Delta => return Err(Error::corrupt(object, "a delta blob cannot be decoded without its base")),
    };
    if out.len() != raw_length as usize {
        return Err(Error::corrupt(object, format!("decoded {} bytes, expected {raw_length}", out.len())));
    }
    Ok(out)
}

/// Pick the smallest of raw and zstd for a chunk.
pub fn encode(plain: &[u8], level: i32) -> (Codec, Vec<u8>) {
    encode_as(plain, level, None)
}

/// Pick the smallest of raw, zstd and (for chunks of a float tensor) the byte-grouped codec.
pub fn encode_as(plain: &[u8], level: i32, float: Option<FloatKind>) -> (Codec, Vec<u8>) {
    let mut best = (Codec::None, None);
    let mut best_len = plain.len();
    if let Some(kind) = float {
        let g = super::grouped::encode(kind, plain);
        if g.len() < best_len {
            best_len = g.len();
            best = (Codec::Grouped, Some(g));
        }
    }
    // On float data plain zstd wins only where grouping barely works (a float tensor that holds text, say,
    // or repeated byte patterns); trying it on every chunk would double the CPU cost of the common case.
    if float.is_none() || best_len > plain.len() / 10 * 9 {
        if let Ok(c) = zstd_compress(plain, level) {
            if c.len() < best_len {
                best = (Codec::Zstd, Some(c));
            }
        }
    }
    match best {
        (codec, Some(data)) => (codec, data),
        (_, None) => (Codec::None, plain.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use proptest::prelude::*;

    #[test]
    fn a_thread_s_zstd_context_survives_bad_input() {
        let plain = b"model weights, model weights, model weights".repeat(100);
        let good = zstd_compress(&plain, 3).unwrap();
        assert_eq!(good, zstd::bulk::compress(&plain, 3).unwrap(), "same frame as a fresh context");
        let mut bad = good.clone();
        bad.truncate(good.len() / 2);
        assert!(decode(Codec::Zstd, bad, plain.len() as u32, "b").is_err());
        assert!(decode(Codec::Zstd, b"not zstd".to_vec(), plain.len() as u32, "b").is_err());
        assert_eq!(decode(Codec::Zstd, good.clone(), plain.len() as u32, "b").unwrap(), plain);
        // a frame larger than the blob's recorded length is refused, not truncated
        assert!(decode(Codec::Zstd, good, plain.len() as u32 - 1, "b").is_err());
        assert_eq!(zstd_compress(&plain, 19).unwrap(), zstd::bulk::compress(&plain, 19).unwrap(), "level follows");
    }

    proptest! {
        #[test]
        fn pack_round_trip(
            chunks in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3000), 0..8),
            stale in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let v = VaultId::random();
            let keys = TenantKeys::derive(1, &SecretKey::random(), &SecretKey::random());
            // built in a reused buffer that still holds an earlier pack's bytes
            let mut b = PackBuilder::in_buffer(&v, "t", &keys, stale);
            for c in &chunks {
                let (codec, enc) = encode(c, 3);
                b.add(BlobType::Data, codec, keys.chunk_id(c), &enc, c.len() as u32);
            }
            let (id, bytes, entries) = b.finish();
            let get = |ver: u32| (ver == 1).then_some(&keys);
            let op = open_pack(&v, "t", get, &id, &bytes, "p").unwrap();
            prop_assert_eq!(&op.entries, &entries);
            let ctx = BlobContext { vault: &v, tenant: "t", key_version: 1, pack: &id };
            for (i, (e, c)) in entries.iter().zip(&chunks).enumerate() {
                let ct = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                let enc = open_blob(&op.key, &ctx, i as u32, e, ct, "b").unwrap();
                let plain = decode(e.codec, enc, e.raw_length, "b").unwrap();
                prop_assert_eq!(&plain, c);
                prop_assert_eq!(keys.chunk_id(&plain), e.id);
                // the same ciphertext at another index does not open
                prop_assert!(open_blob(&op.key, &ctx, i as u32 + 1, e, ct, "b").is_err());
            }
        }

        #[test]
        fn table_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_table(&bytes);
        }

        #[test]
        fn open_pack_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let keys = TenantKeys::derive(1, &SecretKey::random(), &SecretKey::random());
            let _ = open_pack(&VaultId([0; 16]), "t", |_| Some(&keys), &PackId([0; 16]), &bytes, "p");
        }

        #[test]
        fn table_round_trip(n in 0usize..20) {
            let entries: Vec<BlobEntry> = (0..n).map(|i| BlobEntry {
                blob_type: if i % 2 == 0 { BlobType::Data } else { BlobType::Tree },
                codec: if i % 3 == 0 { Codec::Zstd } else { Codec::None },
                id: ChunkId([i as u8; 32]), offset: i as u32 * 7, length: 16 + i as u32, raw_length: i as u32,
            }).collect();
            prop_assert_eq!(parse_table(&encode_table(&entries)).unwrap(), entries);
        }
    }
}

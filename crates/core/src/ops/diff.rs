//! `mvault diff SNAP_A SNAP_B [--tensors]`: which files were added, removed or modified, what each snapshot
//! stores that the other does not, and with `--tensors`, tensor by tensor for model files: added, removed,
//! changed (largest absolute change and share of elements changed) or unchanged.
//!
//! A tensor whose chunks are the same in both snapshots is unchanged without reading a byte (tensor-aligned
//! chunking makes the tensor's chunk list its fingerprint); only changed tensors are read and compared.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::format::FloatKind;
use crate::ids::ChunkId;
use crate::model::{self, Detected, Layout, Source, TensorInfo};
use crate::ops::restore;
use crate::repo::BlobSource;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TensorStatus {
    Added,
    Removed,
    Changed,
    Unchanged,
}

#[derive(Debug, Serialize)]
pub struct TensorChange {
    pub file: String,
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub status: TensorStatus,
    /// Largest |b - a| over the elements (float tensors that changed).
    pub max_abs_change: Option<f64>,
    /// Share of elements whose bits differ (tensors that changed).
    pub changed_fraction: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct DiffReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
    pub unchanged_files: u64,
    /// Stored (encoded) bytes of chunks that only A, or only B, references.
    pub a_only_bytes: u64,
    pub b_only_bytes: u64,
    pub tensors: Vec<TensorChange>,
}

/// A file of a snapshot, readable at any offset: each read fetches only the chunks it overlaps.
pub(crate) struct VaultFile<'a> {
    repo: &'a dyn BlobSource,
    /// (offset in the file, chunk) in file order.
    chunks: Vec<(u64, ChunkId)>,
    len: u64,
    cache: RefCell<Option<(usize, Rc<Vec<u8>>)>>,
    /// The first vault error met while reading, reported instead of the parser's message.
    error: RefCell<Option<Error>>,
}

impl<'a> VaultFile<'a> {
    pub(crate) fn new(repo: &'a dyn BlobSource, ids: &[ChunkId]) -> Result<Self> {
        let mut chunks = Vec::with_capacity(ids.len());
        let mut len = 0;
        for id in ids {
            let n = repo.chunk_len(id).ok_or_else(|| Error::not_found(format!("chunk {id}: not in the index")))?;
            chunks.push((len, *id));
            len += n;
        }
        Ok(VaultFile { repo, chunks, len, cache: RefCell::new(None), error: RefCell::new(None) })
    }

    /// Chunk `index`, kept until another is read (consecutive reads mostly fall in the same chunk).
    fn chunk(&self, index: usize) -> Result<Rc<Vec<u8>>> {
        if let Some((j, data)) = &*self.cache.borrow() {
            if *j == index {
                return Ok(data.clone());
            }
        }
        let data = Rc::new(self.repo.read_blob(&self.chunks[index].1)?);
        *self.cache.borrow_mut() = Some((index, data.clone()));
        Ok(data)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset + len as u64;
        let mut out = Vec::with_capacity(len);
        let mut i = self.chunks.partition_point(|(o, _)| *o <= offset).saturating_sub(1);
        while out.len() < len && i < self.chunks.len() {
            let data = self.chunk(i)?;
            let c0 = self.chunks[i].0;
            let from = offset.max(c0) - c0;
            let to = (end.min(c0 + data.len() as u64) - c0) as usize;
            out.extend_from_slice(&data[from as usize..to.max(from as usize)]);
            i += 1;
        }
        Ok(out)
    }

    /// The chunks that cover exactly [start, end), if both ends fall on chunk boundaries.
    pub(crate) fn chunks_of(&self, start: u64, end: u64) -> Option<&[(u64, ChunkId)]> {
        let a = self.chunks.binary_search_by_key(&start, |(o, _)| *o).ok()?;
        let b = if end == self.len {
            self.chunks.len()
        } else {
            self.chunks.binary_search_by_key(&end, |(o, _)| *o).ok()?
        };
        Some(&self.chunks[a..b])
    }
}

impl Source for VaultFile<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.read(offset, len).map_err(|e| {
            let msg = e.to_string();
            self.error.borrow_mut().get_or_insert(e);
            std::io::Error::other(msg)
        })
    }
}

/// The files (and symlinks) of a snapshot by path, with `base` (if given) cut from the front of each path.
fn files(repo: &dyn BlobSource, root: &ChunkId, base: Option<&str>) -> Result<BTreeMap<String, Node>> {
    let base = base.map(|b| b.trim_end_matches('/'));
    Ok(restore::list(repo, root)?
        .into_iter()
        .filter(|(_, n)| !matches!(n.kind, NodeKind::Dir { .. }))
        .map(|(p, n)| {
            let p = String::from_utf8_lossy(&p).into_owned();
            let rel = base.and_then(|b| p.strip_prefix(b)).filter(|r| r.starts_with('/')).map(str::to_string);
            (rel.unwrap_or(p), n)
        })
        .collect())
}

fn same_content(left: &Node, right: &Node) -> bool {
    match (&left.kind, &right.kind) {
        (NodeKind::File { chunks: x }, NodeKind::File { chunks: y }) => x == y,
        (x, y) => x == y,
    }
}

fn layout_of(file: &VaultFile, path: &str) -> Result<Option<Layout>> {
    match model::detect(Path::new(path), file) {
        Detected::Model(l) => Ok(Some(l)),
        // A vault read error surfaces as such, not as a format complaint.
        _ if file.error.borrow().is_some() => Err(file.error.borrow_mut().take().expect("checked")),
        _ => Ok(None),
    }
}

fn to_f64(kind: FloatKind, bytes: &[u8]) -> f64 {
    match kind {
        FloatKind::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f64,
        FloatKind::Bf16 => f32::from_bits((u16::from_le_bytes([bytes[0], bytes[1]]) as u32) << 16) as f64,
        FloatKind::F16 => {
            let h = u16::from_le_bytes([bytes[0], bytes[1]]);
            let (s, e, m) = ((h >> 15) as i32, ((h >> 10) & 0x1f) as i32, (h & 0x3ff) as f64);
            let v = match e {
                0 => m * 2f64.powi(-24),
                31 => {
                    if m == 0.0 {
                        f64::INFINITY
                    } else {
                        f64::NAN
                    }
                }
                _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
            };
            if s == 1 {
                -v
            } else {
                v
            }
        }
    }
}

/// Compare one tensor present in both files: unchanged by chunk list when possible, else element by element.
fn compare(fa: &VaultFile, ta: &TensorInfo, fb: &VaultFile, tb: &TensorInfo) -> Result<(bool, Option<f64>, f64)> {
    if let (Some(ca), Some(cb)) = (fa.chunks_of(ta.start, ta.end), fb.chunks_of(tb.start, tb.end)) {
        if ca.iter().map(|c| c.1).eq(cb.iter().map(|c| c.1)) {
            return Ok((false, None, 0.0));
        }
    }
    let unit = ta.unit as usize;
    let step = ((1 << 20) / unit).max(1) * unit;
    let (mut changed, mut max_abs, mut total) = (0u64, 0f64, 0u64);
    let mut off = 0u64;
    while off < ta.len() {
        let n = (step as u64).min(ta.len() - off) as usize;
        let (a, b) = (fa.read(ta.start + off, n)?, fb.read(tb.start + off, n)?);
        if a.len() != n || b.len() != n {
            return Err(Error::corrupt(format!("tensor {}", ta.name), "shorter in the vault than its header says"));
        }
        for (x, y) in a.chunks_exact(unit).zip(b.chunks_exact(unit)) {
            total += 1;
            if x != y {
                changed += 1;
                if let Some(k) = ta.float {
                    let d = (to_f64(k, y) - to_f64(k, x)).abs();
                    if d > max_abs || d.is_nan() {
                        max_abs = d;
                    }
                }
            }
        }
        off += n as u64;
    }
    let fraction = if total == 0 { 0.0 } else { changed as f64 / total as f64 };
    Ok((changed > 0, ta.float.map(|_| max_abs).filter(|_| changed > 0), fraction))
}

fn tensor_diff(
    repo: &dyn BlobSource,
    path: &str,
    older: Option<&Node>,
    newer: Option<&Node>,
    out: &mut Vec<TensorChange>,
) -> Result<()> {
    let open = |n: Option<&Node>| -> Result<Option<VaultFile>> {
        match n.map(|n| &n.kind) {
            Some(NodeKind::File { chunks }) => VaultFile::new(repo, chunks).map(Some),
            _ => Ok(None),
        }
    };
    let (fa, fb) = (open(older)?, open(newer)?);
    let la = fa.as_ref().map(|f| layout_of(f, path)).transpose()?.flatten();
    let lb = fb.as_ref().map(|f| layout_of(f, path)).transpose()?.flatten();
    if la.is_none() && lb.is_none() {
        return Ok(());
    }
    let by_name = |l: &Option<Layout>| -> BTreeMap<String, TensorInfo> {
        l.iter().flat_map(|l| l.tensors.iter().map(|t| (t.name.clone(), t.clone()))).collect()
    };
    let (ma, mb) = (by_name(&la), by_name(&lb));
    let row = |t: &TensorInfo, status, max_abs_change, changed_fraction| TensorChange {
        file: path.to_string(),
        name: t.name.clone(),
        dtype: t.dtype.clone(),
        shape: t.shape.clone(),
        status,
        max_abs_change,
        changed_fraction,
    };
    for (name, ta) in &ma {
        match mb.get(name) {
            None => out.push(row(ta, TensorStatus::Removed, None, None)),
            Some(tb) if ta.dtype != tb.dtype || ta.shape != tb.shape => {
                out.push(row(tb, TensorStatus::Changed, None, Some(1.0)));
            }
            Some(tb) => {
                let (fa, fb) = (fa.as_ref().expect("layout A"), fb.as_ref().expect("layout B"));
                let (changed, max_abs, fraction) = compare(fa, ta, fb, tb)?;
                if changed {
                    out.push(row(tb, TensorStatus::Changed, max_abs, Some(fraction)));
                } else {
                    out.push(row(tb, TensorStatus::Unchanged, None, None));
                }
            }
        }
    }
    for (name, tb) in &mb {
        if !ma.contains_key(name) {
            out.push(row(tb, TensorStatus::Added, None, None));
        }
    }
    Ok(())
}

fn chunk_set(files: &BTreeMap<String, Node>) -> HashSet<ChunkId> {
    files
        .values()
        .flat_map(|n| match &n.kind {
            NodeKind::File { chunks } => chunks.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// Compare two snapshot trees. With `bases`, each side's paths are taken relative to its base (the one path
/// each snapshot was made of), so `step-1/` and `step-2/` checkpoints compare file by file.
pub fn diff(
    repo: &dyn BlobSource,
    older: &ChunkId,
    newer: &ChunkId,
    bases: Option<(&str, &str)>,
    tensors: bool,
) -> Result<DiffReport> {
    let (fa, fb) = (files(repo, older, bases.map(|x| x.0))?, files(repo, newer, bases.map(|x| x.1))?);
    let mut r = DiffReport::default();
    for (path, na) in &fa {
        match fb.get(path) {
            None => r.removed.push(path.clone()),
            Some(nb) if same_content(na, nb) && na.mode == nb.mode => r.unchanged_files += 1,
            Some(_) => r.modified.push(path.clone()),
        }
    }
    r.added = fb.keys().filter(|p| !fa.contains_key(*p)).cloned().collect();
    let (ca, cb) = (chunk_set(&fa), chunk_set(&fb));
    let stored = |ids: &mut dyn Iterator<Item = &ChunkId>| -> u64 { ids.filter_map(|id| repo.stored_len(id)).sum() };
    r.a_only_bytes = stored(&mut ca.difference(&cb));
    r.b_only_bytes = stored(&mut cb.difference(&ca));
    if tensors {
        for p in &r.modified {
            tensor_diff(repo, p, fa.get(p), fb.get(p), &mut r.tensors)?;
        }
        for p in &r.added {
            tensor_diff(repo, p, None, fb.get(p), &mut r.tensors)?;
        }
        for p in &r.removed {
            tensor_diff(repo, p, fa.get(p), None, &mut r.tensors)?;
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_decode() {
        assert_eq!(to_f64(FloatKind::F16, &0x3c00u16.to_le_bytes()), 1.0);
        assert_eq!(to_f64(FloatKind::F16, &0xc000u16.to_le_bytes()), -2.0);
        assert_eq!(to_f64(FloatKind::F16, &0x0001u16.to_le_bytes()), 2f64.powi(-24));
        assert_eq!(to_f64(FloatKind::Bf16, &0x3f80u16.to_le_bytes()), 1.0);
        assert_eq!(to_f64(FloatKind::F32, &1.5f32.to_le_bytes()), 1.5);
    }
}

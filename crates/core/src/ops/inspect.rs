//! `mvault inspect FILE`: what a model file is made of and how well ModelVault stores it, tensor by tensor.
//! Each tensor is cut and encoded exactly as backup would (tensor-aligned pieces, the smallest of raw, zstd
//! and byte-grouped), and set beside its entropy bound, so the user sees how close the codec comes to the
//! limit. Encoding and decoding are timed on one core, which gives the codec's per-core speed on real data.

use crate::chunker::TensorChunker;
use crate::error::{Error, Result};
use crate::format::config::ChunkerParams;
use crate::format::grouped;
use crate::format::pack::{self, Codec};
use crate::model::{self, Detected, Layout};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The zstd level backup uses.
pub const LEVEL: i32 = 3;

#[derive(Debug, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub bytes: u64,
    /// Bytes after encoding, as backup stores them (before encryption overhead).
    pub stored: u64,
    /// The entropy bound in bytes (float tensors only).
    pub bound: Option<f64>,
    /// Pieces stored with the byte-grouped codec, with zstd, and raw.
    pub grouped: u32,
    pub zstd: u32,
    pub raw: u32,
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub format: &'static str,
    pub file_bytes: u64,
    /// Bytes outside tensors (headers, padding) and what they store as.
    pub other_bytes: u64,
    pub other_stored: u64,
    pub tensors: Vec<TensorReport>,
    /// Totals over float tensors, where the bound is defined.
    pub float_bytes: u64,
    pub float_stored: u64,
    pub float_bound: f64,
    pub encode_seconds: f64,
    pub decode_seconds: f64,
}

impl Inspection {
    pub fn stored(&self) -> u64 {
        self.other_stored + self.tensors.iter().map(|t| t.stored).sum::<u64>()
    }
}

struct Meter {
    encode: f64,
    decode: f64,
}

impl Meter {
    /// Encode one piece as backup would, check it decodes to the same bytes, and count it.
    fn piece(
        &mut self,
        data: &[u8],
        float: Option<crate::format::FloatKind>,
        report: Option<&mut TensorReport>,
    ) -> Result<u64> {
        let start = Instant::now();
        let (codec, enc) = pack::encode_as(data, LEVEL, float);
        self.encode += start.elapsed().as_secs_f64();
        let stored = enc.len() as u64;
        let start = Instant::now();
        let back = pack::decode(codec, enc, data.len() as u32, "inspect")?;
        self.decode += start.elapsed().as_secs_f64();
        if back != data {
            return Err(Error::corrupt("inspect", "a piece did not decode to its own bytes"));
        }
        if let Some(report) = report {
            match codec {
                Codec::Grouped => report.grouped += 1,
                Codec::Zstd => report.zstd += 1,
                Codec::None | Codec::Delta => report.raw += 1,
            }
        }
        Ok(stored)
    }
}

/// Parse `path` as a model file and measure every tensor.
pub fn inspect(path: &Path, params: ChunkerParams) -> Result<Inspection> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let layout: Layout = match model::detect(path, &f) {
        Detected::Model(l) => l,
        Detected::Malformed(e) => return Err(e),
        Detected::Plain => {
            return Err(Error::Usage(format!(
                "{}: not a safetensors, GGUF or PyTorch zip file (by name or magic bytes)",
                path.display()
            )))
        }
    };
    let mut m = Meter { encode: 0.0, decode: 0.0 };
    let mut out = Inspection {
        format: layout.format.name(),
        file_bytes: layout.file_len,
        other_bytes: 0,
        other_stored: 0,
        tensors: Vec::new(),
        float_bytes: 0,
        float_stored: 0,
        float_bound: 0.0,
        encode_seconds: 0.0,
        decode_seconds: 0.0,
    };
    let mut reports: Vec<TensorReport> = layout
        .tensors
        .iter()
        .map(|t| TensorReport {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            bytes: t.len(),
            stored: 0,
            bound: None,
            grouped: 0,
            zstd: 0,
            raw: 0,
        })
        .collect();
    let mut hists: Vec<Vec<u64>> = vec![Vec::new(); layout.tensors.len()];
    // The very pieces backup would cut, with the tensor each belongs to.
    let reader = std::io::BufReader::with_capacity(1 << 20, &f);
    for piece in TensorChunker::new(reader, &layout, params) {
        let piece = piece.map_err(|e| Error::io("read", path, e))?;
        match piece.tensor {
            Some((i, _)) => {
                if let Some(k) = piece.float {
                    grouped::exponent_histogram(k, &piece.data, &mut hists[i]);
                }
                reports[i].stored += m.piece(&piece.data, piece.float, Some(&mut reports[i]))?;
            }
            None => {
                out.other_bytes += piece.data.len() as u64;
                out.other_stored += m.piece(&piece.data, None, None)?;
            }
        }
    }
    for ((r, t), hist) in reports.iter_mut().zip(&layout.tensors).zip(&hists) {
        if let Some(k) = t.float {
            let b = grouped::entropy_bound(k, hist);
            r.bound = Some(b);
            out.float_bytes += r.bytes;
            out.float_stored += r.stored;
            out.float_bound += b;
        }
    }
    out.tensors = reports;
    out.encode_seconds = m.encode;
    out.decode_seconds = m.decode;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::safetensors::{write_safetensors, Tensor};
    use crate::synth::{bf16_bytes, weights_f32};
    use std::collections::BTreeMap;

    #[test]
    fn reports_every_tensor_with_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let t = vec![
            Tensor {
                name: "w".into(),
                dtype: "BF16",
                shape: vec![512, 512],
                data: bf16_bytes(&weights_f32(1 << 18, 1, 0.05)),
            },
            Tensor {
                name: "ids".into(),
                dtype: "I64",
                shape: vec![64],
                data: (0..64u64).flat_map(|i| i.to_le_bytes()).collect(),
            },
        ];
        let mut f = std::fs::File::create(&path).unwrap();
        write_safetensors(&mut f, &t, &BTreeMap::new()).unwrap();
        drop(f);
        let r = inspect(&path, ChunkerParams::default()).unwrap();
        assert_eq!(r.format, "safetensors");
        assert_eq!(r.tensors.len(), 2);
        let w = &r.tensors[0];
        assert!(w.grouped > 0 && w.stored < w.bytes);
        let bound = w.bound.unwrap();
        assert!(w.stored as f64 >= bound * 0.99 && (w.stored as f64) < bound * 1.03, "{} vs {bound}", w.stored);
        assert!(r.tensors[1].bound.is_none());
        assert_eq!(r.other_bytes + r.tensors.iter().map(|t| t.bytes).sum::<u64>(), r.file_bytes);
        assert!(inspect(&dir.path().join("missing.safetensors"), ChunkerParams::default()).is_err());
        std::fs::write(dir.path().join("n.txt"), b"hello").unwrap();
        assert!(inspect(&dir.path().join("n.txt"), ChunkerParams::default()).is_err());
    }
}

//! Chunking. Plain files: content-defined chunking (FastCDC 2020) with the parameters stored in the vault
//! config. Model files: tensor-aligned chunking along the parsed layout. Both stream: at most one chunk-sized
//! buffer is held, whatever the file size.

use crate::format::config::ChunkerParams;
use crate::format::FloatKind;
use crate::model::Layout;
use std::io::Read;

pub struct Chunker<R: Read> {
    inner: fastcdc::v2020::StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    pub fn new(source: R, params: ChunkerParams) -> Self {
        Chunker { inner: fastcdc::v2020::StreamCDC::new(source, params.min, params.avg, params.max) }
    }
}

/// The content-defined chunks of a source. One that fits in a single chunk buffer (`max` bytes, as most files
/// do) is read whole and cut in place: the same FastCDC cuts over the same bytes, without the streaming
/// chunker's `max`-sized buffer, a fresh 4 MiB mapping that every small file would fault in page by page (a
/// backup of 1,000 files of 4 KiB spent 5 s in the kernel that way). Larger sources stream.
pub fn plain_chunks<'a, R: Read + 'a>(
    mut source: R,
    params: ChunkerParams,
) -> Box<dyn Iterator<Item = std::io::Result<Vec<u8>>> + 'a> {
    let mut head = Vec::new();
    let mut next = [0u8; 1];
    // Up to `max` bytes, then one more to learn whether the source ends there (reading `max + 1` at once
    // would grow the buffer to twice `max`).
    let read =
        (&mut source).take(u64::from(params.max)).read_to_end(&mut head).and_then(|n| match n < params.max as usize {
            true => Ok(0),
            false => source.read(&mut next),
        });
    match read {
        Err(e) => Box::new(std::iter::once(Err(e))),
        Ok(0) => Box::new(cut_in_place(head, params).into_iter().map(Ok)),
        Ok(_) => {
            Box::new(Chunker::new(std::io::Cursor::new(head).chain(std::io::Cursor::new(next)).chain(source), params))
        }
    }
}

fn cut_in_place(data: Vec<u8>, params: ChunkerParams) -> Vec<Vec<u8>> {
    let cuts: Vec<(usize, usize)> =
        fastcdc::v2020::FastCDC::new(&data, params.min, params.avg, params.max).map(|c| (c.offset, c.length)).collect();
    if cuts.len() == 1 {
        return vec![data];
    }
    cuts.iter().map(|&(at, len)| data[at..at + len].to_vec()).collect()
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| {
            r.map(|c| c.data).map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => io,
                other => std::io::Error::other(other.to_string()),
            })
        })
    }
}

/// One piece of a model file: its bytes and, inside a float tensor, the element kind (the codec's hint).
pub struct Piece {
    pub data: Vec<u8>,
    pub float: Option<FloatKind>,
    /// Inside a tensor: (the tensor's index in the layout, this piece's index within the tensor).
    pub tensor: Option<(usize, usize)>,
}

/// Tensor-aligned chunking: a boundary at every tensor's start and end, and inside a tensor every `avg` bytes
/// rounded down to its element (or quantization block) size, counted from the tensor's own start. So the same
/// tensor gives the same chunks wherever it sits, in whatever file, behind whatever header. Bytes outside
/// tensors (headers, padding) are cut every `avg` bytes; anything after the layout's end (a file that grew
/// while we read it) is read to the end the same way.
pub struct TensorChunker<R: Read> {
    src: R,
    /// Each region still to cut, in file order.
    regions: std::collections::VecDeque<Region>,
    avg: u64,
    tail: bool,
}

struct Region {
    left: u64,
    /// The first piece's length when the region is entered mid-way (a window), so later cuts stay on the
    /// grid counted from the tensor's start.
    first: Option<u64>,
    unit: u64,
    float: Option<FloatKind>,
    /// The tensor's index in the layout and the next piece's index within it.
    tensor: Option<(usize, usize)>,
}

impl<R: Read> TensorChunker<R> {
    pub fn new(src: R, layout: &Layout, params: ChunkerParams) -> Self {
        let mut regions = std::collections::VecDeque::new();
        let mut pos = 0;
        let other = |left| Region { left, first: None, unit: 1, float: None, tensor: None };
        for (i, t) in layout.tensors.iter().enumerate() {
            if t.start > pos {
                regions.push_back(other(t.start - pos));
            }
            if !t.is_empty() {
                regions.push_back(Region {
                    left: t.len(),
                    first: None,
                    unit: t.unit,
                    float: t.float,
                    tensor: Some((i, 0)),
                });
            }
            pos = t.end;
        }
        if layout.file_len > pos {
            regions.push_back(other(layout.file_len - pos));
        }
        TensorChunker { src, regions, avg: params.avg as u64, tail: false }
    }

    /// Cut `len` bytes read from `src` that are bytes `start..start + len` of a file with this layout (a
    /// multipart part): pieces fall on the same boundaries as when the whole file is cut, except at the
    /// window's two ends, so the pieces wholly inside the window are the whole file's.
    pub fn window(src: R, layout: &Layout, params: ChunkerParams, start: u64, len: u64) -> Self {
        let mut c = Self::new(src, layout, params);
        let mut skip = start;
        while let Some(r) = c.regions.front_mut() {
            if skip < r.left {
                if skip > 0 {
                    let step = (c.avg / r.unit).max(1) * r.unit;
                    r.left -= skip;
                    r.first = Some(step - skip % step).filter(|f| *f != step);
                    if let Some((_, piece)) = &mut r.tensor {
                        *piece = (skip / step) as usize;
                    }
                }
                break;
            }
            skip -= r.left;
            c.regions.pop_front();
        }
        // Keep exactly `len` bytes of regions; anything past the layout is read as its tail.
        let mut keep = len;
        let mut kept = std::collections::VecDeque::new();
        for mut r in c.regions.drain(..) {
            if keep == 0 {
                break;
            }
            r.left = r.left.min(keep);
            keep -= r.left;
            kept.push_back(r);
        }
        c.regions = kept;
        c
    }
}

impl<R: Read> Iterator for TensorChunker<R> {
    type Item = std::io::Result<Piece>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.tail {
            return None;
        }
        let Some(r) = self.regions.front_mut() else {
            // Past the layout: whatever the file still holds, in `avg` pieces, to its end.
            let mut data = Vec::new();
            return match (&mut self.src).take(self.avg).read_to_end(&mut data) {
                Ok(0) => {
                    self.tail = true;
                    None
                }
                Ok(_) => Some(Ok(Piece { data, float: None, tensor: None })),
                Err(e) => Some(Err(e)),
            };
        };
        let step = (self.avg / r.unit).max(1) * r.unit;
        let n = r.first.take().unwrap_or(step).min(r.left);
        let (float, tensor) = (r.float, r.tensor);
        r.left -= n;
        if let Some((_, piece)) = &mut r.tensor {
            *piece += 1;
        }
        if r.left == 0 {
            self.regions.pop_front();
        }
        Some(read_exactly(&mut self.src, n).map(|data| Piece { data, float, tensor }))
    }
}

/// `len` bytes of `src`, read into a buffer that is not zeroed first (`read_to_end` fills spare capacity
/// directly): zeroing every piece before the read overwrote it was a twentieth of a model backup's CPU.
fn read_exactly(src: &mut impl Read, len: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(len as usize);
    src.take(len).read_to_end(&mut data)?;
    if (data.len() as u64) < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than its layout"));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::safetensors::{parse, write_safetensors, Tensor};
    use std::collections::BTreeMap;

    fn model(tensors: &[(&str, Vec<u8>)], meta: &str) -> Vec<u8> {
        let t: Vec<Tensor> = tensors
            .iter()
            .map(|(n, d)| Tensor {
                name: n.to_string(),
                dtype: "BF16",
                shape: vec![d.len() as u64 / 2],
                data: d.clone(),
            })
            .collect();
        let mut out = Vec::new();
        write_safetensors(&mut out, &t, &BTreeMap::from([("note".to_string(), meta.to_string())])).unwrap();
        out
    }

    proptest::proptest! {
        /// Cutting in place and streaming find the same boundaries, on both sides of the in-place limit.
        #[test]
        fn small_sources_cut_in_place_as_the_stream_would(len in 0usize..10_000, seed in 0u32..1000) {
            let p = ChunkerParams { min: 64, avg: 256, max: 4096 };
            let data: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8).collect();
            let streamed: Vec<Vec<u8>> = Chunker::new(data.as_slice(), p).map(|c| c.unwrap()).collect();
            let cut: Vec<Vec<u8>> = plain_chunks(data.as_slice(), p).map(|c| c.unwrap()).collect();
            proptest::prop_assert_eq!(cut, streamed);
        }
    }

    #[test]
    fn sources_at_the_in_place_limit_cut_as_streamed() {
        let p = ChunkerParams { min: 64, avg: 256, max: 4096 };
        for len in [0, 1, 4095, 4096, 4097, 8192] {
            let data: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
            let streamed: Vec<Vec<u8>> = Chunker::new(data.as_slice(), p).map(|c| c.unwrap()).collect();
            let cut: Vec<Vec<u8>> = plain_chunks(data.as_slice(), p).map(|c| c.unwrap()).collect();
            assert_eq!(cut, streamed, "{len} bytes");
        }
    }

    #[test]
    fn the_same_tensor_gives_the_same_chunks_wherever_it_sits() {
        let p = ChunkerParams { min: 256, avg: 1000, max: 4096 };
        let a: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b: Vec<u8> = (0..3002u32).map(|i| (i * 13 % 241) as u8).collect();
        let f1 = model(&[("a", a.clone()), ("b", b.clone())], "one");
        let f2 = model(&[("zz", b.clone()), ("other", vec![1; 10]), ("a2", a.clone())], "a much longer header note");
        let chunks = |f: &Vec<u8>| -> Vec<Piece> {
            let l = parse(f.as_slice()).unwrap();
            TensorChunker::new(f.as_slice(), &l, p).map(|c| c.unwrap()).collect()
        };
        let (c1, c2) = (chunks(&f1), chunks(&f2));
        assert_eq!(c1.iter().flat_map(|c| c.data.clone()).collect::<Vec<_>>(), f1);
        assert_eq!(c2.iter().flat_map(|c| c.data.clone()).collect::<Vec<_>>(), f2);
        // Inside a BF16 tensor pieces are 1000 bytes (a multiple of 2), counted from the tensor start.
        let tensor_chunks = |c: &[Piece]| -> Vec<Vec<u8>> {
            c.iter().filter(|p| p.float == Some(FloatKind::Bf16)).map(|p| p.data.clone()).collect()
        };
        let (t1, t2) = (tensor_chunks(&c1), tensor_chunks(&c2));
        assert_eq!(t1.len(), 5 + 4);
        assert!(t1.iter().all(|c| t2.contains(c)), "every tensor chunk of file 1 is also in file 2");
        assert!(t1.iter().all(|c| c.len() % 2 == 0));
    }

    proptest::proptest! {
        #[test]
        fn windows_cut_like_the_whole_file_inside_and_reassemble(a_len in 1usize..6000, b_len in 1usize..4000,
                                                               cut in 0.0f64..1.0, part in 1u64..5000) {
            let p = ChunkerParams { min: 256, avg: 1000, max: 4096 };
            let a: Vec<u8> = (0..a_len as u32 * 2).map(|i| (i * 7 % 251) as u8).collect();
            let b: Vec<u8> = (0..b_len as u32 * 2).map(|i| (i * 13 % 241) as u8).collect();
            let f = model(&[("a", a), ("b", b)], "x");
            let l = parse(f.as_slice()).unwrap();
            let whole: Vec<Vec<u8>> = TensorChunker::new(f.as_slice(), &l, p).map(|c| c.unwrap().data).collect();
            // Boundaries of the whole file's pieces.
            let mut edges = std::collections::BTreeSet::new();
            let mut at = 0u64;
            for w in &whole {
                at += w.len() as u64;
                edges.insert(at);
            }
            let start = (cut * f.len() as f64) as u64;
            let len = part.min(f.len() as u64 - start);
            let src = &f[start as usize..(start + len) as usize];
            let pieces: Vec<Piece> = TensorChunker::window(src, &l, p, start, len).map(|c| c.unwrap()).collect();
            let joined: Vec<u8> = pieces.iter().flat_map(|c| c.data.clone()).collect();
            proptest::prop_assert_eq!(&joined[..], src);
            // Every cut inside the window is a cut of the whole file.
            let mut at = start;
            for c in &pieces[..pieces.len().saturating_sub(1)] {
                at += c.data.len() as u64;
                proptest::prop_assert!(edges.contains(&at), "cut at {} is not one of the whole file's", at);
            }
        }
    }

    #[test]
    fn bytes_past_the_layout_are_kept() {
        let f = model(&[("a", vec![3; 100])], "");
        let l = parse(f.as_slice()).unwrap();
        let mut grown = f.clone();
        grown.extend([9u8; 2500]);
        let p = ChunkerParams { min: 256, avg: 1000, max: 4096 };
        let out: Vec<u8> = TensorChunker::new(grown.as_slice(), &l, p).flat_map(|c| c.unwrap().data).collect();
        assert_eq!(out, grown);
        let short = &f[..f.len() - 1];
        assert!(TensorChunker::new(short, &l, p).any(|c| c.is_err()), "a file that shrank is an error");
    }

    #[test]
    fn chunks_reassemble_and_boundaries_resync_after_an_edit() {
        let p = ChunkerParams { min: 4096, avg: 16384, max: 65536 };
        let data = crate::synth::random_bytes(1 << 20, 12345);
        let a: Vec<Vec<u8>> = Chunker::new(&data[..], p).map(|c| c.unwrap()).collect();
        assert_eq!(a.concat(), data);
        assert!(a.iter().all(|c| c.len() <= 65536));
        let mut edited = data.clone();
        edited[500_000] ^= 0xff;
        let b: Vec<Vec<u8>> = Chunker::new(&edited[..], p).map(|c| c.unwrap()).collect();
        let same = b.iter().filter(|c| a.contains(c)).count();
        assert!(same + 3 >= b.len(), "an edit should change only the chunks around it: {same} of {} shared", b.len());
    }
}

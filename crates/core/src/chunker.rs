//! Content-defined chunking (FastCDC 2020) over any reader, with the parameters stored in the vault config.
//! Streaming: at most one `max`-sized buffer is held, whatever the file size.

use crate::format::config::ChunkerParams;
use std::io::Read;

pub struct Chunker<R: Read> {
    inner: fastcdc::v2020::StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    pub fn new(source: R, p: ChunkerParams) -> Self {
        Chunker { inner: fastcdc::v2020::StreamCDC::new(source, p.min, p.avg, p.max) }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_and_boundaries_resync_after_an_edit() {
        let p = ChunkerParams { min: 4096, avg: 16384, max: 65536 };
        let mut data = vec![0u8; 1 << 20];
        let mut x = 12345u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
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

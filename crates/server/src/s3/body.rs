//! Body adapters: a request body as a blocking reader for the core, a blocking reader as a response body.

use bytes::Bytes;
use s3s::stream::{ByteStream, RemainingLength};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The object length of an aws-chunked body (boto3 sends one by default), when s3s has not filled it in.
pub(super) fn decoded_length(headers: &http::HeaderMap) -> Option<i64> {
    headers.get("x-amz-decoded-content-length")?.to_str().ok()?.parse().ok()
}

pub(super) fn content_length(headers: &http::HeaderMap) -> u64 {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    get("x-amz-decoded-content-length").or_else(|| get("content-length")).unwrap_or(0)
}

/// A request body as a blocking reader, fed from the async side through a small channel.
pub(super) struct ChanReader {
    pub(super) rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    pub(super) cur: Bytes,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// A response body fed by a blocking reader, with its exact length (so hyper sends Content-Length and a
/// read that fails midway breaks the connection instead of ending the body early).
pub(super) struct ChanBody {
    pub(super) rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    pub(super) left: usize,
}

impl futures::Stream for ChanBody {
    type Item = Result<Bytes, s3s::StdError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.left = self.left.saturating_sub(b.len());
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ByteStream for ChanBody {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_body_reads_whole_across_its_chunks_and_a_broken_one_fails() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for part in ["ab", "", "cde"] {
            tx.try_send(Ok(Bytes::from(part))).unwrap();
        }
        drop(tx);
        let mut out = String::new();
        ChanReader { rx, cur: Bytes::new() }.read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcde");

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(Ok(Bytes::from("ab"))).unwrap();
        tx.try_send(Err("the client went away".to_string())).unwrap();
        let err = ChanReader { rx, cur: Bytes::new() }.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("went away"));
    }

    #[test]
    fn the_decoded_length_of_an_aws_chunked_body_wins_over_its_wire_length() {
        let mut h = http::HeaderMap::new();
        assert_eq!(content_length(&h), 0);
        h.insert("content-length", http::HeaderValue::from_static("120"));
        assert_eq!((content_length(&h), decoded_length(&h)), (120, None));
        h.insert("x-amz-decoded-content-length", http::HeaderValue::from_static("100"));
        assert_eq!((content_length(&h), decoded_length(&h)), (100, Some(100)));
    }
}

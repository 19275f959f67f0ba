//! The upload body: blobs one after another, each `type u8, float u8, id [32], length u32 LE, bytes`.
//! `type` is 0 (data) or 1 (tree); `float` is a dtype hint for the codec: 0 none, 1 BF16, 2 F16, 3 F32.
//! Client and server share this module, so the format has one definition.

use mvault_core::format::pack::BlobType;
use mvault_core::format::FloatKind;
use mvault_core::ids::ChunkId;
use mvault_core::ingest::Incoming;
use mvault_core::{Error, Result};

const FRAME_HEADER: usize = 1 + 1 + 32 + 4;
/// Largest blob accepted in one frame (chunks are at most a few MiB; tensors are cut below this).
pub const MAX_BLOB: usize = 64 << 20;

fn float_code(float: Option<FloatKind>) -> u8 {
    match float {
        None => 0,
        Some(FloatKind::Bf16) => 1,
        Some(FloatKind::F16) => 2,
        Some(FloatKind::F32) => 3,
    }
}

/// Append one blob to an upload body.
pub fn push(body: &mut Vec<u8>, blob_type: BlobType, float: Option<FloatKind>, id: &ChunkId, data: &[u8]) {
    body.push(blob_type as u8);
    body.push(float_code(float));
    body.extend_from_slice(&id.0);
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
}

/// Parse a whole upload body. Any malformation is an error naming the frame and the offset.
pub fn parse(body: &[u8]) -> Result<Vec<Incoming>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let at = |what: &str| Error::Usage(format!("upload body: frame {} at byte {pos}: {what}", out.len()));
        let h = body.get(pos..pos + FRAME_HEADER).ok_or_else(|| at("truncated header"))?;
        let blob_type = BlobType::from_u8(h[0]).ok_or_else(|| at("unknown blob type"))?;
        let float = match h[1] {
            0 => None,
            1 => Some(FloatKind::Bf16),
            2 => Some(FloatKind::F16),
            3 => Some(FloatKind::F32),
            _ => return Err(at("unknown float hint")),
        };
        let id = ChunkId(h[2..34].try_into().expect("32 bytes"));
        let len = u32::from_le_bytes(h[34..38].try_into().expect("4 bytes")) as usize;
        if len > MAX_BLOB {
            return Err(at("blob larger than 64 MiB"));
        }
        let data = body.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len).ok_or_else(|| at("truncated blob"))?;
        out.push(Incoming { blob_type, id, float, data: data.to_vec() });
        pos += FRAME_HEADER + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip() {
        let mut body = Vec::new();
        push(&mut body, BlobType::Data, Some(FloatKind::Bf16), &ChunkId([1; 32]), b"hello");
        push(&mut body, BlobType::Tree, None, &ChunkId([2; 32]), b"");
        let got = parse(&body).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].id, got[0].data.as_slice(), got[0].float),
            (ChunkId([1; 32]), &b"hello"[..], Some(FloatKind::Bf16))
        );
        assert_eq!((got[1].blob_type, got[1].data.len()), (BlobType::Tree, 0));
        for cut in 1..body.len() {
            assert!(parse(&body[..cut]).is_err() || cut == FRAME_HEADER + 5, "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_cleanly(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&body);
        }
    }
}

//! A minimal protobuf wire-format walker that lifts initializer weights out of
//! an ONNX file before the message is decoded, so that they stay in the memory
//! map instead of being copied (`ModelProto.graph.initializer[*].raw_data`).

use std::ops::Range;

/// The model bytes with every initializer's `raw_data` removed, and where each
/// removed payload lies in the original bytes (in initializer order; `None`
/// for initializers without `raw_data`).
pub struct Stripped {
    /// Re-encoded model without initializer payloads.
    pub bytes: Vec<u8>,
    /// Payload range of each initializer.
    pub raw_data: Vec<Option<Range<usize>>>,
}

const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_RAW_DATA: u64 = 9;

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One field: its number, wire type, the whole field's range and, for
/// length-delimited fields, the payload range.
struct Field {
    number: u64,
    whole: Range<usize>,
    payload: Option<Range<usize>>,
}

fn fields(b: &[u8], range: Range<usize>) -> Option<Vec<Field>> {
    let mut pos = range.start;
    let mut out = Vec::new();
    while pos < range.end {
        let start = pos;
        let key = varint(b, &mut pos)?;
        let payload = match key & 7 {
            0 => {
                varint(b, &mut pos)?;
                None
            }
            1 => {
                pos = pos.checked_add(8)?;
                None
            }
            5 => {
                pos = pos.checked_add(4)?;
                None
            }
            2 => {
                let len = usize::try_from(varint(b, &mut pos)?).ok()?;
                let p = pos..pos.checked_add(len)?;
                pos = p.end;
                Some(p)
            }
            _ => return None, // groups are not used by ONNX
        };
        if pos > range.end {
            return None;
        }
        out.push(Field { number: key >> 3, whole: start..pos, payload });
    }
    Some(out)
}

/// Re-encodes the message in `range`, replacing the payload of each child field
/// `number` by `rewrite(child_payload)`.
fn rewrite(
    b: &[u8],
    range: Range<usize>,
    number: u64,
    mut f: impl FnMut(Range<usize>) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(range.len().min(1 << 20));
    for field in fields(b, range)? {
        match (&field.payload, field.number == number) {
            (Some(p), true) => {
                let body = f(p.clone())?;
                put_varint(&mut out, (number << 3) | 2);
                put_varint(&mut out, body.len() as u64);
                out.extend_from_slice(&body);
            }
            _ => out.extend_from_slice(&b[field.whole.clone()]),
        }
    }
    Some(out)
}

/// Strips initializer payloads; `None` when the bytes are not well-formed
/// protobuf (the caller then decodes normally and reports the error).
pub fn strip_initializer_data(b: &[u8]) -> Option<Stripped> {
    let mut raw_data = Vec::new();
    let bytes = rewrite(b, 0..b.len(), MODEL_GRAPH, |graph| {
        rewrite(b, graph, GRAPH_INITIALIZER, |tensor| {
            let mut payload = None;
            let mut kept = Vec::new();
            for field in fields(b, tensor)? {
                if field.number == TENSOR_RAW_DATA && field.payload.is_some() {
                    payload = field.payload; // the last occurrence wins, as in protobuf
                } else {
                    kept.extend_from_slice(&b[field.whole]);
                }
            }
            raw_data.push(payload);
            Some(kept)
        })
    })?;
    Some(Stripped { bytes, raw_data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(varint(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn malformed_bytes_are_refused() {
        assert!(strip_initializer_data(&[0x3a, 0x05, 0x01]).is_none(), "length past the end");
        assert!(strip_initializer_data(&[0x0b]).is_none(), "group wire type");
    }
}

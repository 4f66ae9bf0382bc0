//! A minimal protobuf wire-format walker that lifts initializer weights out of
//! an ONNX file before the message is decoded, so that they stay in the memory
//! map instead of being copied (`ModelProto.graph.initializer[*].raw_data`).

use protobuf::{CodedInputStream, CodedOutputStream};
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

fn put_varint(out: &mut Vec<u8>, v: u64) {
    let mut os = CodedOutputStream::vec(out);
    // Writing to a Vec cannot fail.
    let _ = os.write_raw_varint64(v).and_then(|()| os.flush());
}

/// One field: its number, wire type, the whole field's range and, for
/// length-delimited fields, the payload range.
struct Field {
    number: u64,
    whole: Range<usize>,
    payload: Option<Range<usize>>,
}

fn fields(b: &[u8], range: Range<usize>) -> Option<Vec<Field>> {
    let base = range.start;
    let mut is = CodedInputStream::from_bytes(b.get(range)?);
    let at = |is: &CodedInputStream<'_>| usize::try_from(is.pos()).ok()?.checked_add(base);
    let mut out = Vec::new();
    loop {
        let start = at(&is)?;
        let Some(key) = is.read_raw_tag_or_eof().ok()? else { break };
        let payload = match key & 7 {
            0 => {
                is.read_raw_varint64().ok()?;
                None
            }
            1 => {
                is.skip_raw_bytes(8).ok()?;
                None
            }
            5 => {
                is.skip_raw_bytes(4).ok()?;
                None
            }
            2 => {
                let len = u32::try_from(is.read_raw_varint64().ok()?).ok()?;
                let from = at(&is)?;
                is.skip_raw_bytes(len).ok()?;
                Some(from..at(&is)?)
            }
            _ => return None, // groups are not used by ONNX
        };
        out.push(Field { number: u64::from(key >> 3), whole: start..at(&is)?, payload });
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
    fn payloads_are_found_and_removed() {
        use onnx_protobuf::{GraphProto, Message, ModelProto, TensorProto};
        let data: Vec<u8> = (0..=199).collect(); // a length of two varint bytes
        let mut t = TensorProto::new();
        t.name = "w".into();
        t.dims = vec![200];
        t.raw_data = data.clone();
        let mut g = GraphProto::new();
        g.initializer.push(t);
        let mut m = ModelProto::new();
        m.graph = Some(g).into();
        let b = m.write_to_bytes().expect("encode");
        let s = strip_initializer_data(&b).expect("well-formed");
        assert_eq!(s.raw_data.len(), 1);
        assert_eq!(&b[s.raw_data[0].clone().expect("a payload")], &data[..]);
        let back = ModelProto::parse_from_bytes(&s.bytes).expect("decode");
        let t = &back.graph.initializer[0];
        assert!(t.raw_data.is_empty());
        assert_eq!((t.name.as_str(), t.dims.as_slice()), ("w", &[200][..]));
    }

    #[test]
    fn malformed_bytes_are_refused() {
        assert!(strip_initializer_data(&[0x3a, 0x05, 0x01]).is_none(), "length past the end");
        assert!(strip_initializer_data(&[0x0b]).is_none(), "group wire type");
    }
}

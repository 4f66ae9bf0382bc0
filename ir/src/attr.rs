//! Generic attribute values: the exchange form between a frontend, the text form
//! and the typed op structs. Typed ops are built from these once, at import.

use crate::tensor::Tensor;

/// One attribute value.
#[derive(Clone, Debug)]
pub enum Attr {
    /// A 64-bit integer.
    Int(i64),
    /// A 32-bit float.
    Float(f32),
    /// A byte string (ONNX strings are bytes).
    Str(Vec<u8>),
    /// Integers.
    Ints(Vec<i64>),
    /// Floats.
    Floats(Vec<f32>),
    /// Strings.
    Strs(Vec<Vec<u8>>),
    /// A tensor.
    Tensor(Tensor),
    /// Anything else (graphs, sparse tensors, type protos), kept as the encoded
    /// source attribute so that it is written back byte for byte.
    Encoded(Vec<u8>),
}

impl PartialEq for Attr {
    fn eq(&self, other: &Attr) -> bool {
        match (self, other) {
            (Attr::Int(a), Attr::Int(b)) => a == b,
            (Attr::Float(a), Attr::Float(b)) => a.to_bits() == b.to_bits(),
            (Attr::Str(a), Attr::Str(b)) => a == b,
            (Attr::Ints(a), Attr::Ints(b)) => a == b,
            (Attr::Floats(a), Attr::Floats(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Attr::Strs(a), Attr::Strs(b)) => a == b,
            (Attr::Tensor(a), Attr::Tensor(b)) => a == b,
            (Attr::Encoded(a), Attr::Encoded(b)) => a == b,
            _ => false,
        }
    }
}

impl Attr {
    /// A short name of the kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Int(_) => "int",
            Attr::Float(_) => "float",
            Attr::Str(_) => "string",
            Attr::Ints(_) => "ints",
            Attr::Floats(_) => "floats",
            Attr::Strs(_) => "strings",
            Attr::Tensor(_) => "tensor",
            Attr::Encoded(_) => "encoded",
        }
    }
}

/// A named attribute list, in source order.
pub type Attrs = Vec<(String, Attr)>;

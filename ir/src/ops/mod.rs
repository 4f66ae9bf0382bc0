//! The ops of the closed set as the analyses see them: for each op, what its
//! outputs are (shape inference, [`crate::infer`]) and how its axes relate
//! (the coupling analysis, [`crate::axes`]), declared side by side in the
//! module of its family. Its attributes are in [`crate::op`], its other facts
//! (arity, zero law, the sizes it reads, its quantised inputs) in one table
//! each in `op/facts.rs`. Adding an op: its variant and attributes, its two
//! rules in its family's module, and one line in each dispatcher; no match
//! over ops has a wildcard, so the compiler names every place still missing.

pub(crate) mod attention;
pub(crate) mod constant;
pub(crate) mod elementwise;
pub(crate) mod linalg;
pub(crate) mod norm;
pub(crate) mod quant;
pub(crate) mod shape;

pub(crate) use crate::axes::{
    broadcast_rels, pin, pin_all, pin_out, same, shape as fact_shape, AxisRel, Part, PinReason, Port, Slot,
};
pub(crate) use crate::infer::{
    broadcast, err, infer, is_int, norm_axis, one, slice_bounds, ty, Cx, Fact, InferError, SymSource, MAX_TRACKED_INTS,
};
pub(crate) use crate::op::{
    BinaryOp, Cast, Conv, FusedAttention, Gemm, GroupQueryAttention, LayerNorm, MatMulNBits, MultiHeadAttention,
    QLinear, Quant, Reduce, RotaryEmbedding, SkipLayerNorm, Softmax, Split, UnaryOp,
};
pub(crate) use crate::tensor::Tensor;
pub(crate) use crate::ty::{DType, Dim, TensorTy};

/// A node's input and output facts, for its axis relations.
pub(crate) struct Io<'a> {
    /// Per input (`None`: omitted or unknown).
    pub ins: &'a [Option<Fact>],
    /// Per output.
    pub outs: &'a [Option<Fact>],
}

impl<'a> Io<'a> {
    /// Input `i`'s shape, when known.
    pub fn in_shape(&self, i: usize) -> Option<&'a [Dim]> {
        fact_shape(self.ins.get(i).and_then(Option::as_ref))
    }
    /// Output `i`'s shape, when known.
    pub fn out_shape(&self, i: usize) -> Option<&'a [Dim]> {
        fact_shape(self.outs.get(i).and_then(Option::as_ref))
    }
}

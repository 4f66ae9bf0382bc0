//! How each op relates the axes of its inputs to the axes of its outputs.
//!
//! This is the only source of dimension coupling: the coupling analysis builds
//! its groups from these relations and knows nothing about "attention" or "FFN".
//! Every op of the closed set declares its relations here (there is no default:
//! an op that cannot say pins every axis it touches).

use crate::infer::Fact;
use crate::op::Op;
use crate::ty::Dim;

/// One axis of one input or output of a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Which side.
    pub port: Port,
    /// The axis.
    pub axis: usize,
}

/// An input or output position of a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// The i-th input.
    In(usize),
    /// The i-th output.
    Out(usize),
    /// An index space inside the op that no tensor shows (a head of a fused
    /// attention's packed weight), declared by [`AxisRel::Inner`]; its axis is 0.
    Inner(usize),
}

/// A piece of a concatenated axis.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// An axis of an input or output.
    Slot(Slot),
    /// Indices no other slot sees (the parts a Slice drops), of this size.
    Gap(i64),
}

/// Why an axis may not change size.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// Normalised over (Softmax, LayerNorm).
    Normalised,
    /// Reduced over.
    Reduced,
    /// Indexed by data (Gather's data axis).
    Indexed,
    /// Reaches an op outside the closed set.
    Opaque,
    /// The op's shapes are not known.
    UnknownShape,
    /// A Slice with steps other than 1 or bounds not known.
    IrregularSlice,
    /// A Reshape whose axes do not group.
    UngroupedReshape,
    /// A graph input or output: its shape is part of the model's interface.
    Interface,
    /// Two relations disagree on how the axis is structured.
    Conflict,
    /// Read by a fused ONNX Runtime op whose inner structure is not sliced yet
    /// (`Attention`, `EmbedLayerNormalization`, `GroupQueryAttention`).
    Fused,
    /// Read by name inside a subgraph (`If`, `Loop`, `Scan`), which is not rewritten.
    Subgraph,
    /// Split into more pieces than the analysis follows (nested too deep, or a
    /// tensor of more index spaces than real models have).
    TooFragmented,
    /// Packed with its neighbours: codes within a quantisation block, or zero
    /// points of several blocks in one byte.
    Packed,
    /// Read by a dynamic quantisation, whose range covers the whole tensor,
    /// where the analysis cannot show that the removed elements are zero.
    DynamicRange,
}

impl PinReason {
    /// A phrase for reports.
    pub fn describe(self) -> &'static str {
        match self {
            PinReason::Normalised => "normalised over",
            PinReason::Reduced => "reduced over",
            PinReason::Indexed => "indexed by data",
            PinReason::Opaque => "reaches an op outside the closed set",
            PinReason::UnknownShape => "shape unknown",
            PinReason::IrregularSlice => "sliced with unknown bounds or a step",
            PinReason::UngroupedReshape => "reshaped in a way that does not group",
            PinReason::Interface => "a graph input or output",
            PinReason::Conflict => "structured differently by two ops",
            PinReason::Fused => "read by a fused ONNX Runtime op (not sliced yet)",
            PinReason::Subgraph => "read inside a subgraph",
            PinReason::TooFragmented => "split into more pieces than the analysis follows",
            PinReason::Packed => "packed with its neighbours (within a quantisation block)",
            PinReason::DynamicRange => "in a dynamic quantisation range, and not shown to be zero where cut",
        }
    }
}

/// A relation between axes of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum AxisRel {
    /// Index `i` of `a` is index `i` of `b` (elementwise, broadcast, transpose).
    Same(Slot, Slot),
    /// `a` and `b` are summed over together (a contraction): removing index `i`
    /// from both removes exactly one rank-one term.
    Contract(Slot, Slot),
    /// The flat (row-major) index spaces of two lists of axes are equal (reshape).
    Product(Vec<Slot>, Vec<Slot>),
    /// `whole` is the concatenation of `parts` (Concat, Split, Slice).
    Concat {
        /// The long axis.
        whole: Slot,
        /// Its pieces in order.
        parts: Vec<Part>,
    },
    /// `whole` is `blocks` blocks of `block` indices each (row-major), summed
    /// over like a contraction: whole blocks may go, never part of one
    /// (block-quantised weights).
    Blocks {
        /// The flat axis (a product's inner axis).
        whole: Slot,
        /// The axis that counts the blocks (of the packed weight).
        blocks: Slot,
        /// Indices per block.
        block: i64,
    },
    /// Declares the index space [`Port::Inner`]`(id)` of this node, of `size`.
    Inner {
        /// Its number.
        id: usize,
        /// Its size.
        size: i64,
    },
    /// The axis may not change size.
    Pin(Slot, PinReason),
}

pub(crate) fn rank(f: Option<&Fact>) -> Option<usize> {
    f?.ty.as_ref()?.shape.as_ref().map(Vec::len)
}

pub(crate) fn shape(f: Option<&Fact>) -> Option<&[Dim]> {
    f?.ty.as_ref()?.shape.as_deref()
}

pub(crate) fn pin_all(ins: &[Option<Fact>], outs: &[Option<Fact>], why: PinReason) -> Vec<AxisRel> {
    let mut r = Vec::new();
    for (i, f) in ins.iter().enumerate() {
        for axis in 0..rank(f.as_ref()).unwrap_or(0) {
            r.push(AxisRel::Pin(Slot { port: Port::In(i), axis }, why));
        }
    }
    for (i, f) in outs.iter().enumerate() {
        for axis in 0..rank(f.as_ref()).unwrap_or(0) {
            r.push(AxisRel::Pin(Slot { port: Port::Out(i), axis }, why));
        }
    }
    r
}

/// Right-aligned broadcast: input axes that match the output (not broadcast from 1).
pub(crate) fn broadcast_rels(input: usize, in_shape: &[Dim], out: usize, out_shape: &[Dim], r: &mut Vec<AxisRel>) {
    let off = out_shape.len().saturating_sub(in_shape.len());
    for (j, d) in in_shape.iter().enumerate() {
        let k = j + off;
        if k < out_shape.len() && (d == &out_shape[k] || d.as_known() != Some(1)) {
            r.push(AxisRel::Same(Slot { port: Port::In(input), axis: j }, Slot { port: Port::Out(out), axis: k }));
        }
    }
}

pub(crate) fn same(i: usize, a: usize, o: usize, b: usize) -> AxisRel {
    AxisRel::Same(Slot { port: Port::In(i), axis: a }, Slot { port: Port::Out(o), axis: b })
}

pub(crate) fn pin(i: usize, axis: usize, why: PinReason) -> AxisRel {
    AxisRel::Pin(Slot { port: Port::In(i), axis }, why)
}

pub(crate) fn pin_out(o: usize, axis: usize, why: PinReason) -> AxisRel {
    AxisRel::Pin(Slot { port: Port::Out(o), axis }, why)
}

pub use crate::ops::shape::reshape_groups;

/// The axis relations of one node, given what is known of its inputs and outputs.
pub fn axis_relations(op: &Op, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Vec<AxisRel> {
    use crate::ops::{attention as at, elementwise as e, linalg as l, norm as n, quant as q, shape as s, Io};
    let io = &Io { ins, outs };
    let Some(o0) = io.out_shape(0) else {
        return pin_all(
            ins,
            outs,
            if matches!(op, Op::Opaque(_)) { PinReason::Opaque } else { PinReason::UnknownShape },
        );
    };
    // Each op's relations are in the module of its family, beside its inference.
    match op {
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast(_) | Op::Gelu(_) | Op::ContribGelu(_) => {
            e::broadcasting(ins.len(), io, o0)
        }
        Op::Expand => e::broadcasting(1, io, o0),
        Op::MatMul => l::product_axes((false, false), false, io, o0),
        Op::Gemm(g) => l::product_axes((g.trans_a, g.trans_b), false, io, o0),
        Op::MatMulInteger => l::product_axes((false, false), true, io, o0),
        Op::Conv(c) => l::conv_axes(c, io, o0),
        Op::Softmax(x) => n::softmax_axes(x, io, o0),
        Op::LayerNorm(x) => n::layer_norm_axes(x, io, o0),
        Op::SkipLayerNorm(x) => n::skip_layer_norm_axes(x, io, o0),
        Op::ReduceMean(r) | Op::ReduceSum(r) => n::reduce_axes(r, io, o0),
        Op::Quantize(x) | Op::Dequantize(x) => q::quantize_axes(x, io, o0),
        Op::DynamicQuantize => q::dynamic_quantize_axes(io, o0),
        Op::MatMulNBits(m) => q::matmul_nbits_axes(m, io, o0),
        Op::QLinear(x) => q::qlinear_relations(x, ins, outs),
        Op::FusedAttention(f) => at::fused_attention_axes(f, io, o0),
        Op::MultiHeadAttention(m) => at::multi_head_attention_axes(m, io, o0),
        Op::EmbedLayerNorm(_) => at::embed_layer_norm_axes(io, o0),
        Op::GroupQueryAttention(g) => at::group_query_attention_axes(g, io, o0),
        Op::RotaryEmbedding(r) => at::rotary_embedding_axes(r, io, o0),
        Op::Transpose { perm } => s::transpose_axes(perm, io, o0),
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => s::reshape_axes(io, o0),
        Op::Split(sp) => s::split_axes(sp, io, o0),
        Op::Concat { axis } => s::concat_axes(axis, io, o0),
        Op::Slice => s::slice_axes(io, o0),
        Op::Gather { axis } => s::gather_axes(axis, io, o0),
        // Ops that make new data: their outputs relate to no input axis. Sizes they
        // take from inputs (Shape's input, targets) are checked by the slicer.
        Op::Shape { .. } | Op::Constant { .. } | Op::ConstantOfShape { .. } | Op::Range => Vec::new(),
        Op::Opaque(_) => pin_all(ins, outs, PinReason::Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(v: &[i64]) -> Vec<Dim> {
        v.iter().map(|&x| Dim::known(x)).collect()
    }

    #[test]
    fn reshape_groups_heads_and_merges() {
        let g = reshape_groups(&dims(&[2, 16, 768]), &dims(&[2, 16, 12, 64])).expect("groups");
        assert_eq!(g, vec![(vec![0], vec![0]), (vec![1], vec![1]), (vec![2], vec![2, 3])]);
        let g = reshape_groups(&dims(&[2, 12, 16, 64]), &dims(&[24, 16, 64])).expect("groups");
        assert_eq!(g, vec![(vec![0, 1], vec![0]), (vec![2], vec![1]), (vec![3], vec![2])]);
        let g = reshape_groups(&dims(&[4, 6]), &dims(&[3, 8])).expect("groups");
        assert_eq!(g, vec![(vec![0, 1], vec![0, 1])]);
        assert_eq!(reshape_groups(&dims(&[1, 8]), &dims(&[8, 1])), Some(vec![(vec![1], vec![0])]));
    }
}

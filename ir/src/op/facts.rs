//! What the passes need to know of each op besides its attributes: how sizes
//! flow through it, which inputs hold quantised weights, its arity, and how a
//! zero input reaches its output. Declared for every op of the closed set, with
//! no default: a new op must fill in each fact here.

use super::{BinaryOp, ContribGelu, Op, QLinear, SizeFacts, SizeFlow, SizeUse, UnaryOp};
use crate::ty::DType;

/// How zeros in an op's inputs reach its output, index by index along the
/// axes that the op's axis relations carry from those inputs to the output.
/// "Zero" is the value the data stands for: for quantised codes, their zero
/// point. The analysis uses it to prove that the channels a slice removes are
/// zero where an op that reads the whole tensor at once (a dynamic
/// quantisation range) sees them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ZeroLaw {
    /// The output is zero where some input of `any` that carries the axis is
    /// zero (products; empty: no such condition) and every input of `all` that
    /// is given carries the axis and is zero there (sums, copies, functions
    /// with f(0) = 0).
    Keeps {
        /// Inputs of which one zero suffices.
        any: &'static [usize],
        /// Inputs that must all be zero.
        all: &'static [usize],
    },
    /// Zero where every input is (Concat).
    EveryInput,
    /// Nothing is known (f(0) ≠ 0, normalisation, reductions, sizes).
    Unknown,
}

impl Op {
    /// How the op treats sizes held in integer tensors, for the passes that
    /// rewrite the sizes a slice changes. Declared for every op of the closed
    /// set (no default): a new op must say whether sizes flow through it and
    /// which of its inputs are sizes.
    pub fn size_facts(&self) -> SizeFacts {
        use UnaryOp::Identity;
        let (flows, uses) = match self {
            Op::Concat { .. } => (Some(SizeFlow::Concat), None),
            Op::Unsqueeze { .. } | Op::Squeeze { .. } | Op::Cast(_) | Op::Unary(Identity) => {
                (Some(SizeFlow::Same), None)
            }
            Op::Reshape { .. } => (Some(SizeFlow::Same), Some(SizeUse::Shape(1))),
            Op::Where => (Some(SizeFlow::Select), None),
            Op::Expand => (None, Some(SizeUse::Shape(1))),
            Op::ConstantOfShape { .. } => (None, Some(SizeUse::Shape(0))),
            Op::Slice => (None, Some(SizeUse::Bounds)),
            Op::Split(_) => (None, Some(SizeUse::SplitSizes)),
            // Elementwise arithmetic, products, normalisation and the rest compute
            // values, not sizes; ops whose output size depends on an input's
            // values (Range) have their axes pinned by the axis relations.
            Op::MatMul
            | Op::Gemm(_)
            | Op::Conv(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Softmax(_)
            | Op::LayerNorm(_)
            | Op::SkipLayerNorm(_)
            | Op::ReduceMean(_)
            | Op::ReduceSum(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::DynamicQuantize
            | Op::MatMulInteger
            | Op::QLinear(_)
            | Op::Gelu(_)
            | Op::ContribGelu(_)
            | Op::EmbedLayerNorm(_)
            // Its head count restates a size only of a [B, S, H] input, whose heads are pinned.
            | Op::RotaryEmbedding(_)
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Gather { .. }
            | Op::Shape { .. }
            | Op::Constant { .. }
            | Op::Range
            | Op::Opaque(_) => (None, None),
            // K and N, and the head count, are attributes: the slicer sets them
            // from the sliced weights ([`MatMulNBits::resized`], [`FusedAttention::resized`]).
            Op::MatMulNBits(_) => (None, Some(SizeUse::PackedShape)),
            Op::FusedAttention(_) | Op::MultiHeadAttention(_) | Op::GroupQueryAttention(_) => {
                (None, Some(SizeUse::AttentionHeads))
            }
        };
        SizeFacts { flows, uses }
    }

    /// True when input `input` holds weights stored as integers (quantised
    /// data and their zero points): constants there are parameters, sliced
    /// with the float weights, where other integer constants are sizes or indices.
    pub fn is_quantised_input(&self, input: usize) -> bool {
        let inputs: &[usize] = match self {
            Op::QLinear(q) => return q.is_quantised_input(input),
            Op::Dequantize(_) => &[0, 2],
            Op::Quantize(_) => &[2],
            Op::MatMulNBits(_) => &[1, 3],
            // Either side may be stored codes, each with its zero point.
            Op::MatMulInteger => &[0, 1, 2, 3],
            Op::MatMul
            | Op::Gemm(_)
            | Op::Conv(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Where
            | Op::Softmax(_)
            | Op::LayerNorm(_)
            | Op::ReduceMean(_)
            | Op::ReduceSum(_)
            | Op::Gelu(_)
            | Op::SkipLayerNorm(_)
            | Op::ContribGelu(_)
            | Op::FusedAttention(_)
            | Op::MultiHeadAttention(_)
            | Op::EmbedLayerNorm(_)
            | Op::GroupQueryAttention(_)
            | Op::RotaryEmbedding(_)
            | Op::DynamicQuantize
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Split(_)
            | Op::Slice
            | Op::Concat { .. }
            | Op::Gather { .. }
            | Op::Shape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Expand
            | Op::Cast(_)
            | Op::Constant { .. }
            | Op::ConstantOfShape { .. }
            | Op::Range => &[],
            // Quantised products outside the closed set: their weights still
            // count as parameters (and are reported as pinned by them).
            Op::Opaque(o) => match (o.domain.as_str(), o.op_type.as_str()) {
                ("" | "ai.onnx", "ConvInteger") => &[1, 3],
                ("" | "ai.onnx", "QLinearConv") => &[3, 5],
                ("" | "ai.onnx", "DequantizeLinear") => &[0, 2],
                ("com.microsoft", "DequantizeLinear") => &[0, 2],
                _ => &[],
            },
        };
        inputs.contains(&input)
    }

    /// How many quantised codes one stored element of input `input` holds
    /// (low-bit codes packed into bytes), for counting parameters.
    pub fn codes_per_element(&self, input: usize, dtype: DType) -> u32 {
        match self {
            Op::MatMulNBits(m) if input == 1 || (input == 3 && dtype == DType::U8) => 8 / m.bits.clamp(1, 8) as u32,
            // One code per element: the other inputs of MatMulNBits, and every
            // other op (QLinear and QDQ codes are whole bytes or wider).
            Op::MatMulNBits(_)
            | Op::QLinear(_)
            | Op::MatMul
            | Op::Gemm(_)
            | Op::Conv(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Where
            | Op::Softmax(_)
            | Op::LayerNorm(_)
            | Op::ReduceMean(_)
            | Op::ReduceSum(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::DynamicQuantize
            | Op::MatMulInteger
            | Op::Gelu(_)
            | Op::SkipLayerNorm(_)
            | Op::ContribGelu(_)
            | Op::FusedAttention(_)
            | Op::MultiHeadAttention(_)
            | Op::EmbedLayerNorm(_)
            | Op::GroupQueryAttention(_)
            | Op::RotaryEmbedding(_)
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Split(_)
            | Op::Slice
            | Op::Concat { .. }
            | Op::Gather { .. }
            | Op::Shape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Expand
            | Op::Cast(_)
            | Op::Constant { .. }
            | Op::ConstantOfShape { .. }
            | Op::Range
            | Op::Opaque(_) => 1,
        }
    }

    /// Inputs that hold tables computed from the op's hyperparameters, not
    /// learned weights (the cos/sin caches of rotary embeddings): constants
    /// read only there are not parameters ([`crate::Graph::weights`]),
    /// although a slice cuts them with what they are read with.
    pub fn table_inputs(&self) -> &'static [usize] {
        match self {
            Op::RotaryEmbedding(_) => &[2, 3],
            Op::GroupQueryAttention(_) => &[7, 8],
            Op::MatMulNBits(_)
            | Op::QLinear(_)
            | Op::MatMul
            | Op::Gemm(_)
            | Op::Conv(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Where
            | Op::Softmax(_)
            | Op::LayerNorm(_)
            | Op::ReduceMean(_)
            | Op::ReduceSum(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::DynamicQuantize
            | Op::MatMulInteger
            | Op::Gelu(_)
            | Op::SkipLayerNorm(_)
            | Op::ContribGelu(_)
            | Op::FusedAttention(_)
            | Op::MultiHeadAttention(_)
            | Op::EmbedLayerNorm(_)
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Split(_)
            | Op::Slice
            | Op::Concat { .. }
            | Op::Gather { .. }
            | Op::Shape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Expand
            | Op::Cast(_)
            | Op::Constant { .. }
            | Op::ConstantOfShape { .. }
            | Op::Range
            | Op::Opaque(_) => &[],
        }
    }

    /// Inputs and outputs the op accepts: `(min_in, max_in, min_out, max_out)`.
    pub fn arity(&self) -> (usize, usize, usize, usize) {
        const ANY: usize = usize::MAX;
        match self {
            Op::MatMul => (2, 2, 1, 1),
            Op::Gemm(_) | Op::Conv(_) => (2, 3, 1, 1),
            Op::Unary(_)
            | Op::Softmax(_)
            | Op::Gelu(_)
            | Op::Transpose { .. }
            | Op::Flatten { .. }
            | Op::Shape { .. }
            | Op::Cast(_) => (1, 1, 1, 1),
            Op::Binary(_) | Op::Gather { .. } | Op::Expand => (2, 2, 1, 1),
            Op::Where => (3, 3, 1, 1),
            Op::Quantize(_) | Op::Dequantize(_) => (2, 3, 1, 1),
            Op::DynamicQuantize => (1, 1, 3, 3),
            Op::MatMulInteger => (2, 4, 1, 1),
            Op::LayerNorm(l) if l.simplified => (2, 2, 1, 2),
            Op::LayerNorm(_) => (2, 3, 1, 3),
            Op::SkipLayerNorm(l) => (3, if l.simplified { 4 } else { 5 }, 1, 4),
            Op::ContribGelu(ContribGelu::BiasGelu) => (2, 2, 1, 1),
            Op::ContribGelu(ContribGelu::FastGelu) => (1, 2, 1, 1),
            Op::ContribGelu(_) => (1, 1, 1, 1),
            Op::FusedAttention(_) => (2, 7, 1, 2),
            Op::MultiHeadAttention(_) => (1, 10, 1, 4),
            Op::EmbedLayerNorm(_) => (7, 9, 2, 3),
            // seqlens_k and total_sequence_length (inputs 5 and 6) are required.
            Op::GroupQueryAttention(_) => (7, 16, 1, 4),
            // input, position_ids, cos_cache, sin_cache.
            Op::RotaryEmbedding(_) => (4, 4, 1, 1),
            Op::MatMulNBits(_) => (3, 6, 1, 1),
            Op::QLinear(q) => match q {
                QLinear::MatMul => (8, 8, 1, 1),
                QLinear::Gemm { .. } => (6, 9, 1, 1),
                QLinear::Add | QLinear::Mul => (7, 8, 1, 1),
                QLinear::Sigmoid | QLinear::Softmax { .. } => (4, 5, 1, 1),
                QLinear::Concat { .. } => (5, ANY, 1, 1),
                QLinear::Conv(_) => (8, 9, 1, 1),
            },
            Op::ReduceMean(r) | Op::ReduceSum(r) => (1, if r.axes.is_some() { 1 } else { 2 }, 1, 1),
            Op::Reshape { .. } => (2, 2, 1, 1),
            Op::Split(s) => (1, if s.split.is_some() { 1 } else { 2 }, 1, ANY),
            Op::Slice => (3, 5, 1, 1),
            Op::Concat { .. } => (1, ANY, 1, 1),
            Op::Squeeze { axes } | Op::Unsqueeze { axes } => (1, if axes.is_some() { 1 } else { 2 }, 1, 1),
            Op::Constant { .. } => (0, 0, 1, 1),
            Op::ConstantOfShape { .. } => (1, 1, 1, 1),
            Op::Range => (3, 3, 1, 1),
            Op::Opaque(_) => (0, ANY, 0, ANY),
        }
    }

    /// How zeros in the inputs reach the output ([`ZeroLaw`]).
    pub fn zero_law(&self) -> ZeroLaw {
        use ZeroLaw::{EveryInput, Keeps, Unknown};
        const FIRST: ZeroLaw = Keeps { any: &[], all: &[0] };
        match self {
            Op::MatMul | Op::MatMulInteger => Keeps { any: &[0, 1], all: &[] },
            // A product plus a bias (C, or MatMulNBits' input 5).
            Op::Gemm(_) | Op::Conv(_) => Keeps { any: &[0, 1], all: &[2] },
            Op::MatMulNBits(_) => Keeps { any: &[0, 1], all: &[5] },
            // Zero codes (at their zero points) requantise to the output's zero point.
            Op::QLinear(q) => match q {
                QLinear::MatMul | QLinear::Mul => Keeps { any: &[0, 3], all: &[] },
                QLinear::Gemm { .. } => Keeps { any: &[0, 3], all: &[6] },
                QLinear::Conv(_) => Keeps { any: &[0, 3], all: &[8] },
                QLinear::Add => Keeps { any: &[], all: &[0, 3] },
                // σ(0) = ½ and normalisation; a concatenation is left unproven.
                QLinear::Sigmoid | QLinear::Softmax { .. } | QLinear::Concat { .. } => Unknown,
            },
            Op::Unary(u) => match u {
                UnaryOp::Identity
                | UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Sqrt
                | UnaryOp::Tanh
                | UnaryOp::Erf
                | UnaryOp::Relu
                | UnaryOp::Sin
                | UnaryOp::Floor
                | UnaryOp::Ceil => FIRST,
                UnaryOp::Reciprocal
                | UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Sigmoid
                | UnaryOp::Cos
                | UnaryOp::Not
                | UnaryOp::IsNaN => Unknown,
            },
            Op::Binary(b) => match b {
                BinaryOp::Add | BinaryOp::Sub => Keeps { any: &[], all: &[0, 1] },
                BinaryOp::Mul => Keeps { any: &[0, 1], all: &[] },
                BinaryOp::Div => FIRST,
                BinaryOp::Pow
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
                | BinaryOp::And
                | BinaryOp::Or => Unknown,
            },
            Op::Where => Keeps { any: &[], all: &[1, 2] },
            // x·Φ(x) and x·σ(αx), plus the fused bias where there is one.
            Op::Gelu(_) | Op::ContribGelu(ContribGelu::Gelu | ContribGelu::QuickGelu { .. }) => FIRST,
            Op::ContribGelu(ContribGelu::BiasGelu | ContribGelu::FastGelu) => Keeps { any: &[], all: &[0, 1] },
            // Quantising zero gives the zero point, which dequantises to zero.
            Op::Quantize(_) | Op::Dequantize(_) | Op::DynamicQuantize | Op::Cast(_) => FIRST,
            // Moves and copies of the data.
            Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Expand
            | Op::Slice
            | Op::Split(_)
            | Op::Gather { .. } => FIRST,
            Op::Concat { .. } => EveryInput,
            Op::Softmax(_)
            | Op::LayerNorm(_)
            | Op::SkipLayerNorm(_)
            | Op::ReduceMean(_)
            | Op::ReduceSum(_)
            | Op::FusedAttention(_)
            | Op::MultiHeadAttention(_)
            | Op::EmbedLayerNorm(_)
            | Op::GroupQueryAttention(_)
            // Each output element mixes two input elements.
            | Op::RotaryEmbedding(_)
            | Op::Shape { .. }
            | Op::Constant { .. }
            | Op::ConstantOfShape { .. }
            | Op::Range
            | Op::Opaque(_) => Unknown,
        }
    }
}

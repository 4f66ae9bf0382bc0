//! Attributes of ONNX Runtime's `com.microsoft` ops of the closed set, and of
//! the quantisation ops that quantised graphs bring.

use super::{opaque, AttrError, Op, Reader};
use crate::attr::{Attr, Attrs};

/// ONNX Runtime's `com.microsoft` `SkipLayerNormalization` and
/// `SkipSimplifiedLayerNormalization`: the normalisation (LayerNorm, or RMS norm
/// when simplified) of `input + skip (+ bias)` over the last axis. Inputs:
/// input, skip, gamma, then beta and bias (`SkipLayerNormalization`) or bias
/// (simplified); outputs: the result, then optionally mean, inverse standard
/// deviation and the sum itself.
#[derive(Clone, Debug, PartialEq)]
pub struct SkipLayerNorm {
    /// Added to the variance.
    pub epsilon: Option<f32>,
    /// RMS norm (`SkipSimplifiedLayerNormalization`).
    pub simplified: bool,
}

/// ONNX Runtime's `com.microsoft` GELU family, elementwise on input 0 with an
/// optional bias (input 1) broadcast over the last axis.
#[derive(Clone, Debug, PartialEq)]
pub enum ContribGelu {
    /// `Gelu(x)` (erf).
    Gelu,
    /// `BiasGelu(x, bias)`: erf GELU of `x + bias`.
    BiasGelu,
    /// `FastGelu(x[, bias])`: the tanh approximation.
    FastGelu,
    /// `QuickGelu(x)`: `x · sigmoid(alpha · x)`.
    QuickGelu {
        /// The factor inside the sigmoid (ORT's default 1.702 when `None`).
        alpha: Option<f32>,
    },
}

/// ONNX Runtime's fused `com.microsoft` `Attention`: multi-head self-attention
/// of input 0 (`[B, S, H_in]`) with packed Q/K/V weights (input 1,
/// `[H_in, H_q + H_k + H_v]`) and bias (input 2); output `[B, S, H_v]`. Heads,
/// and dims inside them, are sliced through `num_heads`, `qkv_hidden_sizes`
/// and `scale` ([`FusedAttention::resized`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FusedAttention {
    /// Heads.
    pub num_heads: i64,
    /// `[H_q, H_k, H_v]` when they differ.
    pub qkv_hidden_sizes: Option<Vec<i64>>,
    /// Causal.
    pub unidirectional: Option<i64>,
    /// The value masked scores get.
    pub mask_filter_value: Option<f32>,
    /// Score scale (default `1/sqrt(head size)`).
    pub scale: Option<f32>,
}

impl FusedAttention {
    /// The op after slicing: of the Q, K and V parts (of widths `parts`),
    /// `heads` heads stay, each keeping `dims` indices of each part. The widths
    /// are written when they differ or were written; a head size that changes
    /// keeps the scores' scale (`1/sqrt` of the original head size).
    ///
    /// ```
    /// use ecospac_ir::op::FusedAttention;
    /// let a = FusedAttention { num_heads: 4, qkv_hidden_sizes: None, unidirectional: None, mask_filter_value: None, scale: None };
    /// let whole = a.resized([64; 3], 2, [16; 3]);
    /// assert_eq!((whole.num_heads, whole.qkv_hidden_sizes.clone(), whole.scale), (2, None, None));
    /// let dims = a.resized([64; 3], 4, [8, 8, 12]);
    /// assert_eq!((dims.num_heads, dims.qkv_hidden_sizes), (4, Some(vec![32, 32, 48])));
    /// assert_eq!(dims.scale, Some(0.25));
    /// ```
    pub fn resized(&self, parts: [i64; 3], heads: i64, dims: [i64; 3]) -> FusedAttention {
        let n = self.num_heads.max(1);
        let widths = dims.map(|d| d * heads);
        let equal = widths.iter().all(|&w| w == widths[0]);
        let head = parts[0] / n;
        FusedAttention {
            num_heads: heads,
            qkv_hidden_sizes: (self.qkv_hidden_sizes.is_some() || !equal).then(|| widths.to_vec()),
            scale: self.scale.or_else(|| (dims[0] != head).then(|| 1.0 / (head as f32).sqrt())),
            ..self.clone()
        }
    }
}

/// ONNX Runtime's `com.microsoft` `GroupQueryAttention` (what onnxruntime-genai's
/// model builder writes for decoders): attention of `num_heads` query heads
/// over `kv_num_heads` key/value heads, with the key/value cache as inputs
/// 3 and 4 (`past_key`, `past_value`, `[B, kv_num_heads, P, head_size]`) and
/// outputs 1 and 2. Query is `[B, S, num_heads · head_size]`, or Q, K and V
/// packed (`[B, S, (num_heads + 2 · kv_num_heads) · head_size]`) when key and
/// value are omitted. Its query heads are sliced a head of every group at a
/// time ([`GroupQueryAttention::resized`]); the head size stays, since the
/// rotary caches are sized by it, and the key/value heads stay wherever the
/// cache is the model's interface. Attributes other than the head counts are
/// kept as written (`None`: not written).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupQueryAttention {
    /// Query heads.
    pub num_heads: i64,
    /// Key/value heads (`num_heads` is a multiple).
    pub kv_num_heads: i64,
    /// Score scale (default `1/sqrt(head_size)`).
    pub scale: Option<f32>,
    /// Soft cap of the scores.
    pub softcap: Option<f32>,
    /// Causal window (-1: none).
    pub local_window_size: Option<i64>,
    /// Rotary embedding inside the op (from `cos_cache`, `sin_cache`).
    pub do_rotary: Option<i64>,
    /// Interleaved rotary pattern.
    pub rotary_interleaved: Option<i64>,
    /// Smooth softmax.
    pub smooth_softmax: Option<i64>,
    /// Causal mask.
    pub causal: Option<i64>,
    /// Window-sized cache buffers.
    pub sliding_window_cache: Option<i64>,
    /// The scores as output 3 (before 1 or after 2 the softmax).
    pub qk_output: Option<i64>,
    /// Bits of a quantised cache (8 or 4).
    pub kv_cache_bit_width: Option<i64>,
    /// Quantisation of the key cache.
    pub k_quant_type: Option<Vec<u8>>,
    /// Quantisation of the value cache.
    pub v_quant_type: Option<Vec<u8>>,
    /// Epsilon of the per-head Q/K norm.
    pub qk_norm_epsilon: Option<f32>,
}

impl GroupQueryAttention {
    /// The head size for a query of width `width` (`packed`: Q, K and V in
    /// one), when it divides evenly.
    ///
    /// ```
    /// use ecospac_ir::op::GroupQueryAttention;
    /// let g = GroupQueryAttention::new(4, 2);
    /// assert_eq!(g.head_size(128, true), Some(16));
    /// assert_eq!(g.head_size(64, false), Some(16));
    /// assert_eq!(g.head_size(100, true), None);
    /// ```
    pub fn head_size(&self, width: i64, packed: bool) -> Option<i64> {
        let heads =
            if packed { self.kv_num_heads.checked_mul(2)?.checked_add(self.num_heads)? } else { self.num_heads };
        (heads > 0 && width > 0 && width % heads == 0).then(|| width / heads)
    }

    /// The op after slicing: `num_heads` query heads over `kv_num_heads`
    /// key/value heads, the rest as it was.
    ///
    /// ```
    /// use ecospac_ir::op::GroupQueryAttention;
    /// let g = GroupQueryAttention::new(8, 2).resized(4, 2);
    /// assert_eq!((g.num_heads, g.kv_num_heads), (4, 2));
    /// ```
    pub fn resized(&self, num_heads: i64, kv_num_heads: i64) -> GroupQueryAttention {
        GroupQueryAttention { num_heads, kv_num_heads, ..self.clone() }
    }

    /// The op with these head counts and no other attribute written.
    pub fn new(num_heads: i64, kv_num_heads: i64) -> GroupQueryAttention {
        GroupQueryAttention {
            num_heads,
            kv_num_heads,
            scale: None,
            softcap: None,
            local_window_size: None,
            do_rotary: None,
            rotary_interleaved: None,
            smooth_softmax: None,
            causal: None,
            sliding_window_cache: None,
            qk_output: None,
            kv_cache_bit_width: None,
            k_quant_type: None,
            v_quant_type: None,
            qk_norm_epsilon: None,
        }
    }
}

/// ONNX Runtime's `com.microsoft` `MultiHeadAttention`: attention of `query`
/// (`[B, S, H_q]`) over `key` and `value` (`[B, L, H_k]`, `[B, L, H_v]`) in
/// `num_heads` heads, with an optional packed bias (input 3, `[H_q + H_k +
/// H_v]`) added to the three and a key padding mask (input 4); output `[B, S,
/// H_v]`. In that form heads, and the dims inside them, are sliced through
/// `num_heads` and `scale` ([`MultiHeadAttention::resized`]); packed inputs, a
/// past state or an attention bias keep every axis but batch and sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadAttention {
    /// Heads.
    pub num_heads: i64,
    /// Causal.
    pub unidirectional: Option<i64>,
    /// The value masked scores get.
    pub mask_filter_value: Option<f32>,
    /// Score scale (default `1/sqrt(head size)`).
    pub scale: Option<f32>,
}

impl MultiHeadAttention {
    /// The op after slicing: `heads` heads stay; a Q/K head size that changes
    /// from `head` (to `dims`) keeps the scores' scale (`1/sqrt(head)`).
    ///
    /// ```
    /// use ecospac_ir::op::MultiHeadAttention;
    /// let a = MultiHeadAttention { num_heads: 4, unidirectional: None, mask_filter_value: None, scale: None };
    /// assert_eq!(a.resized(2, 16, 16), MultiHeadAttention { num_heads: 2, ..a.clone() });
    /// assert_eq!(a.resized(4, 16, 8).scale, Some(0.25));
    /// ```
    pub fn resized(&self, heads: i64, head: i64, dims: i64) -> MultiHeadAttention {
        MultiHeadAttention {
            num_heads: heads,
            scale: self.scale.or_else(|| (dims != head).then(|| 1.0 / (head as f32).sqrt())),
            ..self.clone()
        }
    }
}

/// ONNX Runtime's fused `com.microsoft` `EmbedLayerNormalization`: word +
/// position (+ segment) embeddings, then LayerNorm; outputs `[B, S, H]`, the
/// mask index `[B]` and optionally the sum before the norm.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedLayerNorm {
    /// Added to the variance.
    pub epsilon: Option<f32>,
    /// Form of the mask index output.
    pub mask_index_type: Option<i64>,
}

/// ONNX Runtime's `com.microsoft` `RotaryEmbedding` (what its transformer
/// optimizer fuses LLaMA-style RoPE into): input 0 (`[B, N, S, D]`, or `[B, S,
/// H]`) rotated by position, the pair (`j`, `j + R/2`) of each head (or (`2j`,
/// `2j + 1`) when interleaved) turned by the angle whose cosine and sine are
/// column `j` of `cos_cache` and `sin_cache` (`[positions, R/2]`, input 2 and
/// 3) at row `position_ids` (input 1, `[B, S]`); `R` is `rotary_embedding_dim`,
/// else the head size. Attributes are kept as written (`None`: not written).
#[derive(Clone, Debug, PartialEq)]
pub struct RotaryEmbedding {
    /// Pairs are adjacent elements instead of the two halves.
    pub interleaved: Option<i64>,
    /// Sequences packed without padding.
    pub is_packed_batching: Option<i64>,
    /// Heads of a `[B, S, H]` input.
    pub num_heads: Option<i64>,
    /// Rotated dims of a head (0: all).
    pub rotary_embedding_dim: Option<i64>,
    /// Scale of the positions.
    pub scale: Option<f32>,
}

impl RotaryEmbedding {
    /// True when a head's dims pair as its two halves, all of them rotated,
    /// in a `[B, N, S, D]` input: the form whose head dims are sliced.
    ///
    /// ```
    /// use ecospac_ir::op::RotaryEmbedding;
    /// let r = RotaryEmbedding { interleaved: Some(0), is_packed_batching: None, num_heads: None, rotary_embedding_dim: None, scale: None };
    /// assert!(r.halves_all_dims());
    /// assert!(!RotaryEmbedding { interleaved: Some(1), ..r.clone() }.halves_all_dims());
    /// assert!(!RotaryEmbedding { rotary_embedding_dim: Some(8), ..r }.halves_all_dims());
    /// ```
    pub fn halves_all_dims(&self) -> bool {
        let off = |v: Option<i64>| v.unwrap_or(0) == 0;
        off(self.interleaved) && off(self.is_packed_batching) && off(self.rotary_embedding_dim)
    }

    /// Its attributes as written, each through `put`.
    pub(super) fn attrs(&self, put: &mut impl FnMut(&str, Attr)) {
        let ints = [
            ("interleaved", self.interleaved),
            ("is_packed_batching", self.is_packed_batching),
            ("num_heads", self.num_heads),
            ("rotary_embedding_dim", self.rotary_embedding_dim),
        ];
        for (name, v) in ints.into_iter().filter_map(|(n, v)| Some((n, v?))) {
            put(name, Attr::Int(v));
        }
        if let Some(sc) = self.scale {
            put("scale", Attr::Float(sc));
        }
    }
}

/// `QuantizeLinear` (`y = saturate(round(x / scale) + zero_point)`) and
/// `DequantizeLinear` (`y = (x - zero_point) · scale`), per tensor (a scale of
/// one element) or per axis (a 1-D scale along `axis`). Blocked quantisation
/// (`block_size` ≠ 0) is not modelled: such nodes stay [`Op::Opaque`](super::Op::Opaque).
#[derive(Clone, Debug, PartialEq)]
pub struct Quant {
    /// The per-axis axis as written (ONNX's default is 1).
    pub axis: Option<i64>,
    /// `saturate` (float8 targets), as written.
    pub saturate: Option<i64>,
    /// `output_dtype` (an ONNX type code), as written.
    pub output_dtype: Option<i64>,
    /// `block_size` when written as 0.
    pub block_size: Option<i64>,
}

impl Quant {
    /// The per-axis axis of an input of rank `rank`.
    pub fn axis(&self, rank: usize) -> Result<usize, crate::infer::InferError> {
        crate::infer::norm_axis(self.axis.unwrap_or(1), rank)
    }
}

/// ONNX Runtime's `com.microsoft` `MatMulNBits`: `A · dequant(B)ᵀ (+ bias)`,
/// with B quantised to `bits` along K in blocks of `block_size`. Inputs: A
/// `[.., K]`, B `[N, k_blocks, block_size · bits / 8]` (codes packed low bits
/// first), scales `[N, k_blocks]`, then optionally zero points (packed codes,
/// or the scales' type), `g_idx` and bias `[N]`; output `[.., N]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MatMulNBits {
    /// The inner size K (A's last axis).
    pub k: i64,
    /// The output size N.
    pub n: i64,
    /// Bits per code (2, 4 or 8).
    pub bits: i64,
    /// Codes per block along K (a power of two, at least 16).
    pub block_size: i64,
    /// `accuracy_level`, as written.
    pub accuracy_level: Option<i64>,
}

impl MatMulNBits {
    /// Blocks along K.
    pub fn k_blocks(&self) -> i64 {
        (self.k + self.block_size - 1) / self.block_size
    }
    /// Bytes per block of B.
    pub fn blob_size(&self) -> i64 {
        self.block_size * self.bits / 8
    }
    /// The op for B of `n` rows and `k_blocks` blocks: K loses the removed
    /// blocks (whole blocks only, so a short last block stays short).
    pub fn resized(&self, n: i64, k_blocks: i64) -> MatMulNBits {
        let k = self.k - (self.k_blocks() - k_blocks) * self.block_size;
        MatMulNBits { k, n, ..self.clone() }
    }
}

/// Ops of the quantised operator format (`QuantFormat.QOperator`): each
/// computes its float counterpart ([`QLinear::float_op`]) on dequantised data
/// inputs and quantises the result, with per-tensor scales and zero points
/// (or per column of B, for the products). Inputs: each
/// data input followed by its scale and zero point, then the output's scale
/// and zero point ([`QLinear::data_inputs`]); `QLinearConcat` puts the
/// output's first.
#[derive(Clone, Debug, PartialEq)]
pub enum QLinear {
    /// `QLinearMatMul` (ONNX): `a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp`.
    MatMul,
    /// `com.microsoft` `QGemm`: `A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale,
    /// y_zp`, with C an int32 bias of scale `a_scale · b_scale`; without
    /// `y_scale` the output is float.
    Gemm {
        /// Scales the product.
        alpha: Option<f32>,
        /// A is transposed.
        trans_a: bool,
        /// B is transposed.
        trans_b: bool,
    },
    /// `com.microsoft` `QLinearAdd`: `A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp`.
    Add,
    /// `com.microsoft` `QLinearMul`, laid out as `QLinearAdd`.
    Mul,
    /// `com.microsoft` `QLinearSigmoid`: `X, X_scale, X_zp, Y_scale, Y_zp`.
    Sigmoid,
    /// `com.microsoft` `QLinearSoftmax`, laid out as `QLinearSigmoid`.
    Softmax {
        /// The normalised axis as written (default -1).
        axis: Option<i64>,
        /// The opset of the `Softmax` it stands for (below 13: over the
        /// flattened trailing axes).
        opset: i64,
    },
    /// `com.microsoft` `QLinearConcat`: `Y_scale, Y_zp`, then `X, X_scale, X_zp` per part.
    Concat {
        /// The joined axis.
        axis: i64,
    },
    /// `QLinearConv` (ONNX): `x, x_scale, x_zp, w, w_scale, w_zp, y_scale,
    /// y_zp[, B]`, with B an int32 bias of scale `x_scale · w_scale`; the
    /// weight's scale and zero point may hold one element per output channel.
    Conv(super::Conv),
}

impl QLinear {
    /// The op type as ONNX spells it.
    pub fn op_type(&self) -> &'static str {
        match self {
            QLinear::MatMul => "QLinearMatMul",
            QLinear::Gemm { .. } => "QGemm",
            QLinear::Add => "QLinearAdd",
            QLinear::Mul => "QLinearMul",
            QLinear::Sigmoid => "QLinearSigmoid",
            QLinear::Softmax { .. } => "QLinearSoftmax",
            QLinear::Concat { .. } => "QLinearConcat",
            QLinear::Conv(_) => "QLinearConv",
        }
    }

    /// The float op it computes on the dequantised data inputs.
    pub fn float_op(&self) -> super::Op {
        use super::{BinaryOp, Gemm, Op, Softmax, UnaryOp};
        match self {
            QLinear::MatMul => Op::MatMul,
            QLinear::Gemm { alpha, trans_a, trans_b } => {
                Op::Gemm(Gemm { alpha: alpha.unwrap_or(1.0), beta: 1.0, trans_a: *trans_a, trans_b: *trans_b })
            }
            QLinear::Add => Op::Binary(BinaryOp::Add),
            QLinear::Mul => Op::Binary(BinaryOp::Mul),
            QLinear::Sigmoid => Op::Unary(UnaryOp::Sigmoid),
            QLinear::Softmax { axis, opset } => {
                Op::Softmax(Softmax { axis: axis.unwrap_or(-1), coerce_2d: *opset < 13 })
            }
            QLinear::Concat { axis } => Op::Concat { axis: *axis },
            QLinear::Conv(c) => Op::Conv(c.clone()),
        }
    }

    /// The positions of the data inputs among `num_inputs` (each followed by
    /// its scale and zero point, except the int32 biases: QGemm's C at 6,
    /// QLinearConv's B at 8).
    pub fn data_inputs(&self, num_inputs: usize) -> Vec<usize> {
        match self {
            QLinear::MatMul | QLinear::Add | QLinear::Mul => vec![0, 3],
            QLinear::Gemm { .. } => [0, 3, 6].into_iter().filter(|&i| i < num_inputs).collect(),
            QLinear::Conv(_) => [0, 3, 8].into_iter().filter(|&i| i < num_inputs).collect(),
            QLinear::Sigmoid | QLinear::Softmax { .. } => vec![0],
            QLinear::Concat { .. } => (2..num_inputs).step_by(3).collect(),
        }
    }

    /// The scale and zero point of data input `input`, when it is one that has them.
    pub fn params_of(&self, input: usize) -> Option<(usize, usize)> {
        let quantised = match self {
            QLinear::MatMul | QLinear::Gemm { .. } | QLinear::Add | QLinear::Mul | QLinear::Conv(_) => {
                matches!(input, 0 | 3)
            }
            QLinear::Sigmoid | QLinear::Softmax { .. } => input == 0,
            QLinear::Concat { .. } => input >= 2 && (input - 2).is_multiple_of(3),
        };
        quantised.then_some((input + 1, input + 2))
    }

    /// For the weight's scale and zero point (inputs 4 and 5 of the products
    /// and of QLinearConv), which may hold one element per column of B (per
    /// output channel of W): that axis of the weight, for a weight of rank `rank`.
    pub fn column_axis(&self, input: usize, rank: usize) -> Option<usize> {
        match (self, input) {
            (QLinear::MatMul, 4 | 5) => rank.checked_sub(1),
            (QLinear::Gemm { trans_b, .. }, 4 | 5) => Some(if *trans_b { 0 } else { 1 }),
            (QLinear::Conv(_), 4 | 5) => Some(0),
            _ => None,
        }
    }

    /// The output axis that per-column (per-channel) weight parameters
    /// follow, for an output of rank `rank`: the last for the products, the
    /// channels for QLinearConv.
    pub fn column_out_axis(&self, rank: usize) -> Option<usize> {
        match self {
            QLinear::Conv(_) => (rank > 1).then_some(1),
            _ => rank.checked_sub(1),
        }
    }

    /// The output's scale and zero point.
    pub fn output_params(&self) -> (usize, usize) {
        match self {
            QLinear::MatMul | QLinear::Add | QLinear::Mul | QLinear::Conv(_) => (6, 7),
            QLinear::Gemm { .. } => (7, 8),
            QLinear::Sigmoid | QLinear::Softmax { .. } => (3, 4),
            QLinear::Concat { .. } => (0, 1),
        }
    }

    /// True when input `i` holds quantised data or a zero point (so that a
    /// constant there is a parameter, not a size), or is an int32 bias.
    pub fn is_quantised_input(&self, i: usize) -> bool {
        let data = |d: usize| self.params_of(d).is_some();
        i == self.output_params().1
            || matches!(self, QLinear::Gemm { .. } if i == 6)
            || matches!(self, QLinear::Conv(_) if i == 8)
            || data(i)
            || i.checked_sub(2).is_some_and(data)
    }
}

/// Builds the typed op for a `com.microsoft` node (others stay opaque, as do
/// nodes with attributes ecospac does not know).
pub(super) fn from_parts(op_type: &str, attrs: &Attrs) -> Result<Op, AttrError> {
    let mut r = Reader::new(op_type, attrs);
    let op = match op_type {
            "SkipLayerNormalization" | "SkipSimplifiedLayerNormalization" => Op::SkipLayerNorm(SkipLayerNorm {
                epsilon: r.float("epsilon")?,
                simplified: op_type == "SkipSimplifiedLayerNormalization",
            }),
            "Gelu" => Op::ContribGelu(ContribGelu::Gelu),
            "BiasGelu" => Op::ContribGelu(ContribGelu::BiasGelu),
            "FastGelu" => Op::ContribGelu(ContribGelu::FastGelu),
            "QuickGelu" => Op::ContribGelu(ContribGelu::QuickGelu { alpha: r.float("alpha")? }),
            "Attention" => match r.int("num_heads")? {
                Some(num_heads) if num_heads > 0 => Op::FusedAttention(FusedAttention {
                    num_heads,
                    qkv_hidden_sizes: r.ints("qkv_hidden_sizes")?,
                    unidirectional: r.int("unidirectional")?,
                    mask_filter_value: r.float("mask_filter_value")?,
                    scale: r.float("scale")?,
                }),
                _ => return Err(r.err("num_heads", "a positive head count is required".into())),
            },
            "MatMulNBits" => {
                let (k, n) = (r.int("K")?, r.int("N")?);
                let (bits, block_size) = (r.int("bits")?.unwrap_or(4), r.int("block_size")?);
                let (Some(k), Some(n), Some(block_size)) = (k, n, block_size) else {
                    return Err(r.err("K", "K, N and block_size are required".into()));
                };
                // Sizes beyond any real weight are refused before arithmetic on them.
                let valid = (1..=1 << 40).contains(&k)
                    && (1..=1 << 40).contains(&n)
                    && matches!(bits, 2 | 4 | 8)
                    && (16..=1 << 16).contains(&block_size)
                    && (block_size as u64).is_power_of_two();
                if !valid {
                    return Err(r.err(
                        "block_size",
                        format!("K {k}, N {n}, {bits} bits, block {block_size}: not a valid quantisation"),
                    ));
                }
                Op::MatMulNBits(MatMulNBits { k, n, bits, block_size, accuracy_level: r.int("accuracy_level")? })
            }
            "QGemm" => Op::QLinear(QLinear::Gemm {
                alpha: r.float("alpha")?,
                trans_a: r.bool("transA", false)?,
                trans_b: r.bool("transB", false)?,
            }),
            "QLinearAdd" => Op::QLinear(QLinear::Add),
            "QLinearMul" => Op::QLinear(QLinear::Mul),
            "QLinearSigmoid" => Op::QLinear(QLinear::Sigmoid),
            "QLinearSoftmax" => match r.int("opset")? {
                Some(opset) => Op::QLinear(QLinear::Softmax { axis: r.int("axis")?, opset }),
                None => return Err(r.err("opset", "required".into())),
            },
            "QLinearConcat" => match r.int("axis")? {
                Some(axis) => Op::QLinear(QLinear::Concat { axis }),
                None => return Err(r.err("axis", "required".into())),
            },
            "EmbedLayerNormalization" => Op::EmbedLayerNorm(EmbedLayerNorm {
                epsilon: r.float("epsilon")?,
                mask_index_type: r.int("mask_index_type")?,
            }),
            "RotaryEmbedding" => Op::RotaryEmbedding(RotaryEmbedding {
                interleaved: r.int("interleaved")?,
                is_packed_batching: r.int("is_packed_batching")?,
                num_heads: r.int("num_heads")?,
                rotary_embedding_dim: r.int("rotary_embedding_dim")?,
                scale: r.float("scale")?,
            }),
            "MultiHeadAttention" => match r.int("num_heads")? {
                Some(num_heads) if (1..=1 << 20).contains(&num_heads) => Op::MultiHeadAttention(MultiHeadAttention {
                    num_heads,
                    unidirectional: r.int("unidirectional")?,
                    mask_filter_value: r.float("mask_filter_value")?,
                    scale: r.float("scale")?,
                }),
                _ => return Err(r.err("num_heads", "a positive head count is required".into())),
            },
            "GroupQueryAttention" => match (r.int("num_heads")?, r.int("kv_num_heads")?) {
                (Some(num_heads), Some(kv_num_heads))
                    if (1..=1 << 20).contains(&num_heads)
                        && (1..=num_heads).contains(&kv_num_heads)
                        && num_heads % kv_num_heads == 0 =>
                {
                    Op::GroupQueryAttention(GroupQueryAttention {
                        num_heads,
                        kv_num_heads,
                        scale: r.float("scale")?,
                        softcap: r.float("softcap")?,
                        local_window_size: r.int("local_window_size")?,
                        do_rotary: r.int("do_rotary")?,
                        rotary_interleaved: r.int("rotary_interleaved")?,
                        smooth_softmax: r.int("smooth_softmax")?,
                        causal: r.int("causal")?,
                        sliding_window_cache: r.int("sliding_window_cache")?,
                        qk_output: r.int("qk_output")?,
                        kv_cache_bit_width: r.int("kv_cache_bit_width")?,
                        k_quant_type: r.string("k_quant_type")?.map(<[u8]>::to_vec),
                        v_quant_type: r.string("v_quant_type")?.map(<[u8]>::to_vec),
                        qk_norm_epsilon: r.float("qk_norm_epsilon")?,
                    })
                }
                (h, kv) => {
                    return Err(r.err(
                        "kv_num_heads",
                        format!("{h:?} query heads over {kv:?} key/value heads: both are required, and the first a multiple of the second"),
                    ))
                }
            },
            _ => return Ok(opaque("com.microsoft", op_type, attrs)),
        };
    Ok(if r.all_used() { op } else { opaque("com.microsoft", op_type, attrs) })
}

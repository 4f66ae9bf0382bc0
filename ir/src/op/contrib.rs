//! Attributes of ONNX Runtime's `com.microsoft` ops of the closed set, and of
//! the quantisation ops that quantised graphs bring.

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
/// `[H_in, H_q + H_k + H_v]`) and bias (input 2); output `[B, S, H_v]`. Its
/// heads are not sliced yet: the analysis pins its weights.
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
    /// The op after slicing whole heads: the Q, K and V parts (of widths
    /// `parts`) keep `kept` indices each.
    pub fn resized(&self, parts: [i64; 3], kept: [i64; 3]) -> FusedAttention {
        let head = parts[0] / self.num_heads.max(1);
        FusedAttention {
            num_heads: kept[0] / head.max(1),
            qkv_hidden_sizes: self.qkv_hidden_sizes.as_ref().map(|_| kept.to_vec()),
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

//! The closed op set. Attributes are parsed into typed structs once, from the
//! generic [`Attr`] form, and turned back into it for writing.
//!
//! Anything outside the set, or a known op with an attribute this version does
//! not model, becomes [`Op::Opaque`]: kept as it came, and (for later passes)
//! every axis it touches is pinned.

use crate::attr::{Attr, Attrs};
use crate::tensor::Tensor;
use crate::ty::DType;

mod contrib;
mod facts;
pub use contrib::{
    ContribGelu, EmbedLayerNorm, FusedAttention, GroupQueryAttention, MatMulNBits, MultiHeadAttention, QLinear, Quant,
    RotaryEmbedding, SkipLayerNorm,
};
pub use facts::ZeroLaw;

/// Elementwise ops with one input.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `Identity`
    Identity,
    /// `Neg`
    Neg,
    /// `Abs`
    Abs,
    /// `Sqrt`
    Sqrt,
    /// `Reciprocal`
    Reciprocal,
    /// `Exp`
    Exp,
    /// `Log`
    Log,
    /// `Tanh`
    Tanh,
    /// `Erf`
    Erf,
    /// `Sigmoid`
    Sigmoid,
    /// `Relu`
    Relu,
    /// `Cos`
    Cos,
    /// `Sin`
    Sin,
    /// `Floor`
    Floor,
    /// `Ceil`
    Ceil,
    /// `Not` (bool)
    Not,
    /// `IsNaN` (to bool)
    IsNaN,
}

/// Elementwise ops with two broadcasting inputs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `Add`
    Add,
    /// `Sub`
    Sub,
    /// `Mul`
    Mul,
    /// `Div`
    Div,
    /// `Pow`
    Pow,
    /// `Max` with two inputs
    Max,
    /// `Min` with two inputs
    Min,
    /// `Equal` (to bool)
    Equal,
    /// `Less` (to bool)
    Less,
    /// `LessOrEqual` (to bool)
    LessOrEqual,
    /// `Greater` (to bool)
    Greater,
    /// `GreaterOrEqual` (to bool)
    GreaterOrEqual,
    /// `And` (bool)
    And,
    /// `Or` (bool)
    Or,
}

macro_rules! name_table {
    ($ty:ident { $($variant:ident),* $(,)? }) => {
        impl $ty {
            /// The ONNX op type.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => stringify!($variant)),* }
            }
            /// Looks up an ONNX op type.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $(stringify!($variant) => Some($ty::$variant),)* _ => None }
            }
        }
    };
}
name_table!(UnaryOp {
    Identity,
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Tanh,
    Erf,
    Sigmoid,
    Relu,
    Cos,
    Sin,
    Floor,
    Ceil,
    Not,
    IsNaN
});
name_table!(BinaryOp { Add, Sub, Mul, Div, Pow, Max, Min, Equal, Less, LessOrEqual, Greater, GreaterOrEqual, And, Or });

impl BinaryOp {
    /// True for comparisons and logic, whose output is bool.
    pub fn yields_bool(self) -> bool {
        use BinaryOp::*;
        matches!(self, Equal | Less | LessOrEqual | Greater | GreaterOrEqual | And | Or)
    }
}

/// `Gemm`: `alpha * A' B' + beta * C`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C.
    pub beta: f32,
    /// A is transposed.
    pub trans_a: bool,
    /// B is transposed.
    pub trans_b: bool,
}

/// `Softmax`.
#[derive(Clone, Debug, PartialEq)]
pub struct Softmax {
    /// The normalised axis.
    pub axis: i64,
    /// Opset < 13: the input is coerced to 2-D at `axis` and normalised over the tail.
    pub coerce_2d: bool,
}

/// `LayerNormalization` (opset 17).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    /// First normalised axis.
    pub axis: i64,
    /// Added to the variance.
    pub epsilon: f32,
    /// Type of the statistics.
    pub stash_type: i64,
    /// RMS norm without a mean or bias: ONNX Runtime's
    /// `SimplifiedLayerNormalization` (inputs X and scale; outputs Y and the
    /// inverse RMS).
    pub simplified: bool,
}

/// `ReduceMean` and `ReduceSum`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    /// Axes as an attribute (ReduceMean: opset < 18, ReduceSum: < 13); later
    /// opsets take them as an input.
    pub axes: Option<Vec<i64>>,
    /// Keep reduced axes with size 1.
    pub keepdims: bool,
    /// With no axes: identity instead of reducing everything.
    pub noop_with_empty_axes: bool,
}

/// `Gelu` (opset 20).
#[derive(Clone, Debug, PartialEq)]
pub struct Gelu {
    /// `tanh` approximation instead of the exact erf form.
    pub tanh: bool,
}

/// `Split`.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The split axis.
    pub axis: i64,
    /// Sizes as an attribute (opset < 13).
    pub split: Option<Vec<i64>>,
    /// Number of equal parts (opset 18).
    pub num_outputs: Option<i64>,
}

/// `Conv` (N-D, NCHW layout).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// `NOTSET`, `SAME_UPPER`, `SAME_LOWER` or `VALID`.
    pub auto_pad: Vec<u8>,
    /// Dilations, when given.
    pub dilations: Option<Vec<i64>>,
    /// Channel groups.
    pub group: i64,
    /// Kernel shape, when given (else taken from the weight).
    pub kernel_shape: Option<Vec<i64>>,
    /// Pads, begins then ends, when given.
    pub pads: Option<Vec<i64>>,
    /// Strides, when given.
    pub strides: Option<Vec<i64>>,
}

impl Conv {
    fn read(r: &mut Reader<'_>) -> Result<Conv, AttrError> {
        Ok(Conv {
            auto_pad: r.string("auto_pad")?.unwrap_or(b"NOTSET").to_vec(),
            dilations: r.ints("dilations")?,
            group: r.int("group")?.unwrap_or(1),
            kernel_shape: r.ints("kernel_shape")?,
            pads: r.ints("pads")?,
            strides: r.ints("strides")?,
        })
    }

    fn write(&self, put: &mut impl FnMut(&str, Attr)) {
        if self.auto_pad != b"NOTSET" {
            put("auto_pad", Attr::Str(self.auto_pad.clone()));
        }
        if let Some(d) = &self.dilations {
            put("dilations", Attr::Ints(d.clone()));
        }
        if self.group != 1 {
            put("group", Attr::Int(self.group));
        }
        if let Some(k) = &self.kernel_shape {
            put("kernel_shape", Attr::Ints(k.clone()));
        }
        if let Some(p) = &self.pads {
            put("pads", Attr::Ints(p.clone()));
        }
        if let Some(st) = &self.strides {
            put("strides", Attr::Ints(st.clone()));
        }
    }
}

/// `Cast`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    /// Target type.
    pub to: DType,
    /// `saturate` (float8 targets, opset 19).
    pub saturate: Option<i64>,
}

/// How a `Constant` spelled its value, so that it is written back the same way.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConstantForm {
    /// `value` (a tensor).
    Tensor,
    /// `value_float`.
    Float,
    /// `value_floats`.
    Floats,
    /// `value_int`.
    Int,
    /// `value_ints`.
    Ints,
}

/// An op of the closed set. Attribute-free ops are unit variants.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `MatMul` with numpy broadcasting.
    MatMul,
    /// `Gemm`.
    Gemm(Gemm),
    /// `Conv`.
    Conv(Conv),
    /// One-input elementwise op.
    Unary(UnaryOp),
    /// Two-input broadcasting elementwise op.
    Binary(BinaryOp),
    /// `Where(cond, x, y)`.
    Where,
    /// `Softmax`.
    Softmax(Softmax),
    /// `LayerNormalization`.
    LayerNorm(LayerNorm),
    /// `ReduceMean`.
    ReduceMean(Reduce),
    /// `ReduceSum`.
    ReduceSum(Reduce),
    /// `QuantizeLinear`.
    Quantize(Quant),
    /// `DequantizeLinear`.
    Dequantize(Quant),
    /// `DynamicQuantizeLinear`: uint8 codes, scale and zero point of a range
    /// (min and max over the whole input, widened to hold 0) that it measures
    /// at run time.
    DynamicQuantize,
    /// `MatMulInteger`: integer codes less their zero points, multiplied to int32.
    MatMulInteger,
    /// `Gelu`.
    Gelu(Gelu),
    /// `com.microsoft` `SkipLayerNormalization` / `SkipSimplifiedLayerNormalization`.
    SkipLayerNorm(SkipLayerNorm),
    /// `com.microsoft` `Gelu`, `BiasGelu`, `FastGelu`, `QuickGelu`.
    ContribGelu(ContribGelu),
    /// `com.microsoft` `Attention`.
    FusedAttention(FusedAttention),
    /// `com.microsoft` `MultiHeadAttention`.
    MultiHeadAttention(MultiHeadAttention),
    /// `com.microsoft` `EmbedLayerNormalization`.
    EmbedLayerNorm(EmbedLayerNorm),
    /// `com.microsoft` `GroupQueryAttention`.
    GroupQueryAttention(GroupQueryAttention),
    /// `com.microsoft` `RotaryEmbedding`.
    RotaryEmbedding(RotaryEmbedding),
    /// `com.microsoft` `MatMulNBits`.
    MatMulNBits(MatMulNBits),
    /// The quantised operator format: `QLinearMatMul`, `QGemm`, `QLinearAdd`…
    QLinear(QLinear),
    /// `Reshape`.
    Reshape {
        /// A 0 in the target is a real 0, not "copy the input dim".
        allowzero: bool,
    },
    /// `Flatten`: to 2-D at `axis`.
    Flatten {
        /// Dims before it form the rows.
        axis: i64,
    },
    /// `Transpose`.
    Transpose {
        /// Permutation; `None` reverses the axes.
        perm: Option<Vec<i64>>,
    },
    /// `Split`.
    Split(Split),
    /// `Slice` (opset ≥ 10: starts, ends, axes, steps are inputs).
    Slice,
    /// `Concat`.
    Concat {
        /// The joined axis.
        axis: i64,
    },
    /// `Gather`.
    Gather {
        /// The indexed axis.
        axis: i64,
    },
    /// `Shape`.
    Shape {
        /// First dimension taken.
        start: Option<i64>,
        /// One past the last dimension taken.
        end: Option<i64>,
    },
    /// `Squeeze`.
    Squeeze {
        /// Axes as an attribute (opset < 13).
        axes: Option<Vec<i64>>,
    },
    /// `Unsqueeze`.
    Unsqueeze {
        /// Axes as an attribute (opset < 13).
        axes: Option<Vec<i64>>,
    },
    /// `Expand`.
    Expand,
    /// `Cast`.
    Cast(Cast),
    /// `Constant`.
    Constant {
        /// The value.
        value: Tensor,
        /// How the source spelled it.
        form: ConstantForm,
    },
    /// `ConstantOfShape`.
    ConstantOfShape {
        /// The fill value (one element); `None` means float 0.
        value: Option<Tensor>,
    },
    /// `Range`.
    Range,
    /// Anything else, kept as it came.
    Opaque(Opaque),
}

/// How an op treats sizes held in integer tensors ([`Op::size_facts`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SizeFacts {
    /// Its output's elements are its inputs' elements (when its input is a
    /// shape vector): a size can be followed back through it.
    pub flows: Option<SizeFlow>,
    /// It reads sizes from some inputs: when a sliced axis changes size, they are rewritten.
    pub uses: Option<SizeUse>,
}

/// Where a size element comes from, through an op that passes sizes on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SizeFlow {
    /// The inputs' elements, concatenated in order (`Concat`).
    Concat,
    /// Input 0's elements in order (`Unsqueeze`, `Squeeze`, `Reshape`, `Cast`, `Identity`).
    Same,
    /// Input 1's or input 2's element, as the condition (input 0) chooses (`Where`).
    Select,
}

/// Which inputs of an op are sizes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SizeUse {
    /// This input's elements are the output's dims (`Reshape`, `Expand`: 1; `ConstantOfShape`: 0).
    Shape(usize),
    /// Slice bounds: starts (input 1) and ends (input 2).
    Bounds,
    /// Split sizes: input 1, or the `split` attribute.
    SplitSizes,
    /// A fused attention's head count and widths, which restate the layout of
    /// its packed weight or of its inputs ([`FusedAttention::resized`],
    /// [`MultiHeadAttention::resized`]).
    AttentionHeads,
    /// `MatMulNBits`' K and N, which restate its packed weight's shape
    /// ([`MatMulNBits::resized`]).
    PackedShape,
}

/// An op outside the closed set, or one this version does not model fully.
#[derive(Clone, Debug, PartialEq)]
pub struct Opaque {
    /// Domain ("" is the ONNX default domain).
    pub domain: String,
    /// Op type.
    pub op_type: String,
    /// Attributes as they came.
    pub attrs: Attrs,
}

/// A known op whose attributes are malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("attribute `{attr}` of {op_type}: {reason}")]
pub struct AttrError {
    /// The op type.
    pub op_type: String,
    /// The attribute.
    pub attr: String,
    /// What is wrong.
    pub reason: String,
}

/// Reads the attributes of one node, tracking which were consumed.
struct Reader<'a> {
    op_type: &'a str,
    attrs: &'a Attrs,
    used: Vec<bool>,
}

impl<'a> Reader<'a> {
    fn new(op_type: &'a str, attrs: &'a Attrs) -> Self {
        Reader { op_type, attrs, used: vec![false; attrs.len()] }
    }
    fn find(&mut self, name: &str) -> Option<&'a Attr> {
        let i = self.attrs.iter().position(|(n, _)| n == name)?;
        self.used[i] = true;
        Some(&self.attrs[i].1)
    }
    fn err(&self, attr: &str, reason: String) -> AttrError {
        AttrError { op_type: self.op_type.to_string(), attr: attr.to_string(), reason }
    }
    fn int(&mut self, name: &str) -> Result<Option<i64>, AttrError> {
        match self.find(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(self.err(name, format!("expected int, found {}", other.kind()))),
        }
    }
    fn float(&mut self, name: &str) -> Result<Option<f32>, AttrError> {
        match self.find(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(*v)),
            Some(other) => Err(self.err(name, format!("expected float, found {}", other.kind()))),
        }
    }
    fn ints(&mut self, name: &str) -> Result<Option<Vec<i64>>, AttrError> {
        match self.find(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(other) => Err(self.err(name, format!("expected ints, found {}", other.kind()))),
        }
    }
    fn string(&mut self, name: &str) -> Result<Option<&'a [u8]>, AttrError> {
        match self.find(name) {
            None => Ok(None),
            Some(Attr::Str(v)) => Ok(Some(v)),
            Some(other) => Err(self.err(name, format!("expected string, found {}", other.kind()))),
        }
    }
    fn tensor(&mut self, name: &str) -> Result<Option<&'a Tensor>, AttrError> {
        match self.find(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(self.err(name, format!("expected tensor, found {}", other.kind()))),
        }
    }
    fn bool(&mut self, name: &str, default: bool) -> Result<bool, AttrError> {
        Ok(self.int(name)?.map_or(default, |v| v != 0))
    }
    /// True when every attribute was understood.
    fn all_used(&self) -> bool {
        self.used.iter().all(|&u| u)
    }
}

fn opaque(domain: &str, op_type: &str, attrs: &Attrs) -> Op {
    Op::Opaque(Opaque { domain: domain.to_string(), op_type: op_type.to_string(), attrs: attrs.clone() })
}

impl Op {
    /// Builds the typed op for an ONNX node. `opset` is the version of the
    /// node's domain; `num_inputs` counts the inputs as written.
    pub fn from_parts(
        domain: &str,
        op_type: &str,
        attrs: &Attrs,
        opset: i64,
        num_inputs: usize,
    ) -> Result<Op, AttrError> {
        if domain == "com.microsoft" {
            return contrib::from_parts(op_type, attrs);
        }
        if !(domain.is_empty() || domain == "ai.onnx") {
            return Ok(opaque(domain, op_type, attrs));
        }
        let mut r = Reader::new(op_type, attrs);
        let op = match op_type {
            "MatMul" => Op::MatMul,
            "Gemm" => Op::Gemm(Gemm {
                alpha: r.float("alpha")?.unwrap_or(1.0),
                beta: r.float("beta")?.unwrap_or(1.0),
                trans_a: r.bool("transA", false)?,
                trans_b: r.bool("transB", false)?,
            }),
            "Where" => Op::Where,
            "Conv" => Op::Conv(Conv::read(&mut r)?),
            "QLinearConv" if opset >= 10 => Op::QLinear(QLinear::Conv(Conv::read(&mut r)?)),
            "Softmax" if opset >= 1 => Op::Softmax(Softmax {
                axis: r.int("axis")?.unwrap_or(if opset >= 13 { -1 } else { 1 }),
                coerce_2d: opset < 13,
            }),
            "LayerNormalization" | "SimplifiedLayerNormalization" => Op::LayerNorm(LayerNorm {
                axis: r.int("axis")?.unwrap_or(-1),
                epsilon: r.float("epsilon")?.unwrap_or(1e-5),
                stash_type: r.int("stash_type")?.unwrap_or(1),
                simplified: op_type == "SimplifiedLayerNormalization",
            }),
            "ReduceMean" | "ReduceSum" => {
                let reduce = Reduce {
                    axes: r.ints("axes")?,
                    keepdims: r.bool("keepdims", true)?,
                    noop_with_empty_axes: r.bool("noop_with_empty_axes", false)?,
                };
                if op_type == "ReduceSum" {
                    Op::ReduceSum(reduce)
                } else {
                    Op::ReduceMean(reduce)
                }
            }
            "QuantizeLinear" | "DequantizeLinear" if opset >= 10 => {
                let q = Quant {
                    axis: r.int("axis")?,
                    saturate: r.int("saturate")?,
                    output_dtype: r.int("output_dtype")?,
                    block_size: r.int("block_size")?,
                };
                if q.block_size.is_some_and(|b| b != 0) {
                    return Ok(opaque(domain, op_type, attrs));
                }
                if op_type == "QuantizeLinear" {
                    Op::Quantize(q)
                } else {
                    Op::Dequantize(q)
                }
            }
            "DynamicQuantizeLinear" if opset >= 11 => Op::DynamicQuantize,
            "MatMulInteger" if opset >= 10 => Op::MatMulInteger,
            "QLinearMatMul" if opset >= 10 => Op::QLinear(QLinear::MatMul),
            "Gelu" => {
                let approx = r.string("approximate")?.unwrap_or(b"none");
                match approx {
                    b"none" => Op::Gelu(Gelu { tanh: false }),
                    b"tanh" => Op::Gelu(Gelu { tanh: true }),
                    other => {
                        return Err(r.err("approximate", format!("unknown value {:?}", String::from_utf8_lossy(other))))
                    }
                }
            }
            "Reshape" if opset >= 5 => Op::Reshape { allowzero: r.bool("allowzero", false)? },
            "Transpose" => Op::Transpose { perm: r.ints("perm")? },
            "Flatten" => Op::Flatten { axis: r.int("axis")?.unwrap_or(1) },
            "Split" => Op::Split(Split {
                axis: r.int("axis")?.unwrap_or(0),
                split: r.ints("split")?,
                num_outputs: r.int("num_outputs")?,
            }),
            "Slice" if opset >= 10 => Op::Slice,
            "Concat" => match r.int("axis")? {
                Some(axis) => Op::Concat { axis },
                None => return Err(r.err("axis", "required".into())),
            },
            "Gather" => Op::Gather { axis: r.int("axis")?.unwrap_or(0) },
            "Shape" => Op::Shape { start: r.int("start")?, end: r.int("end")? },
            "Squeeze" => Op::Squeeze { axes: r.ints("axes")? },
            "Unsqueeze" => Op::Unsqueeze { axes: r.ints("axes")? },
            "Expand" => Op::Expand,
            "Cast" => match r.int("to")? {
                Some(code) => Op::Cast(Cast { to: DType::from_onnx(code as i32), saturate: r.int("saturate")? }),
                None => return Err(r.err("to", "required".into())),
            },
            "Constant" => {
                let (value, form) = if let Some(t) = r.tensor("value")? {
                    (t.clone(), ConstantForm::Tensor)
                } else if let Some(v) = r.float("value_float")? {
                    (Tensor::from_f32s(vec![], &[v]), ConstantForm::Float)
                } else if let Some(v) = r.int("value_int")? {
                    (Tensor::from_i64s(vec![], &[v]), ConstantForm::Int)
                } else if let Some(v) = r.ints("value_ints")? {
                    (Tensor::from_i64s(vec![v.len() as i64], &v), ConstantForm::Ints)
                } else if let Some(Attr::Floats(v)) = r.find("value_floats") {
                    (Tensor::from_f32s(vec![v.len() as i64], v), ConstantForm::Floats)
                } else {
                    return Ok(opaque(domain, op_type, attrs));
                };
                Op::Constant { value, form }
            }
            "ConstantOfShape" => Op::ConstantOfShape { value: r.tensor("value")?.cloned() },
            "Range" => Op::Range,
            "Max" | "Min" if num_inputs != 2 => return Ok(opaque(domain, op_type, attrs)),
            other => {
                if let Some(u) = UnaryOp::from_name(other) {
                    Op::Unary(u)
                } else if let Some(b) = BinaryOp::from_name(other) {
                    Op::Binary(b)
                } else {
                    return Ok(opaque(domain, op_type, attrs));
                }
            }
        };
        if !r.all_used() {
            // An attribute this version does not model: keep the node as it came.
            return Ok(opaque(domain, op_type, attrs));
        }
        Ok(op)
    }

    /// The ONNX op type.
    pub fn op_type(&self) -> &str {
        match self {
            Op::MatMul => "MatMul",
            Op::Gemm(_) => "Gemm",
            Op::Conv(_) => "Conv",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Where => "Where",
            Op::Softmax(_) => "Softmax",
            Op::LayerNorm(l) if l.simplified => "SimplifiedLayerNormalization",
            Op::LayerNorm(_) => "LayerNormalization",
            Op::ReduceMean(_) => "ReduceMean",
            Op::ReduceSum(_) => "ReduceSum",
            Op::Quantize(_) => "QuantizeLinear",
            Op::Dequantize(_) => "DequantizeLinear",
            Op::DynamicQuantize => "DynamicQuantizeLinear",
            Op::MatMulInteger => "MatMulInteger",
            Op::Gelu(_) => "Gelu",
            Op::SkipLayerNorm(l) if l.simplified => "SkipSimplifiedLayerNormalization",
            Op::SkipLayerNorm(_) => "SkipLayerNormalization",
            Op::ContribGelu(ContribGelu::Gelu) => "Gelu",
            Op::ContribGelu(ContribGelu::BiasGelu) => "BiasGelu",
            Op::ContribGelu(ContribGelu::FastGelu) => "FastGelu",
            Op::ContribGelu(ContribGelu::QuickGelu { .. }) => "QuickGelu",
            Op::FusedAttention(_) => "Attention",
            Op::MultiHeadAttention(_) => "MultiHeadAttention",
            Op::EmbedLayerNorm(_) => "EmbedLayerNormalization",
            Op::GroupQueryAttention(_) => "GroupQueryAttention",
            Op::RotaryEmbedding(_) => "RotaryEmbedding",
            Op::MatMulNBits(_) => "MatMulNBits",
            Op::QLinear(q) => q.op_type(),
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Flatten { .. } => "Flatten",
            Op::Split(_) => "Split",
            Op::Slice => "Slice",
            Op::Concat { .. } => "Concat",
            Op::Gather { .. } => "Gather",
            Op::Shape { .. } => "Shape",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Expand => "Expand",
            Op::Cast(_) => "Cast",
            Op::Constant { .. } => "Constant",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::Range => "Range",
            Op::Opaque(o) => &o.op_type,
        }
    }

    /// The domain ("" for ONNX's default).
    pub fn domain(&self) -> &str {
        match self {
            Op::Opaque(o) => &o.domain,
            Op::SkipLayerNorm(_)
            | Op::ContribGelu(_)
            | Op::FusedAttention(_)
            | Op::MultiHeadAttention(_)
            | Op::EmbedLayerNorm(_)
            | Op::GroupQueryAttention(_)
            | Op::RotaryEmbedding(_)
            | Op::MatMulNBits(_) => "com.microsoft",
            Op::QLinear(QLinear::MatMul | QLinear::Conv(_)) => "",
            Op::QLinear(_) => "com.microsoft",
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
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::DynamicQuantize
            | Op::MatMulInteger
            | Op::Gelu(_)
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
            | Op::Range => "",
        }
    }

    /// The attributes to write, omitting those at their default.
    pub fn to_attrs(&self) -> Attrs {
        let mut a: Attrs = Vec::new();
        let mut put = |name: &str, v: Attr| a.push((name.to_string(), v));
        match self {
            Op::Gemm(g) => {
                if g.alpha != 1.0 {
                    put("alpha", Attr::Float(g.alpha));
                }
                if g.beta != 1.0 {
                    put("beta", Attr::Float(g.beta));
                }
                if g.trans_a {
                    put("transA", Attr::Int(1));
                }
                if g.trans_b {
                    put("transB", Attr::Int(1));
                }
            }
            Op::Conv(c) | Op::QLinear(QLinear::Conv(c)) => c.write(&mut put),
            Op::Softmax(s) => put("axis", Attr::Int(s.axis)),
            Op::QLinear(q) => match q {
                QLinear::Gemm { alpha, trans_a, trans_b } => {
                    if let Some(alpha) = alpha {
                        put("alpha", Attr::Float(*alpha));
                    }
                    if *trans_a {
                        put("transA", Attr::Int(1));
                    }
                    if *trans_b {
                        put("transB", Attr::Int(1));
                    }
                }
                QLinear::Softmax { axis, opset } => {
                    if let Some(axis) = axis {
                        put("axis", Attr::Int(*axis));
                    }
                    put("opset", Attr::Int(*opset));
                }
                QLinear::Concat { axis } => put("axis", Attr::Int(*axis)),
                QLinear::MatMul | QLinear::Add | QLinear::Mul | QLinear::Sigmoid | QLinear::Conv(_) => {}
            },
            Op::LayerNorm(l) => {
                put("axis", Attr::Int(l.axis));
                put("epsilon", Attr::Float(l.epsilon));
                if l.stash_type != 1 {
                    put("stash_type", Attr::Int(l.stash_type));
                }
            }
            Op::ReduceMean(r) | Op::ReduceSum(r) => {
                if let Some(axes) = &r.axes {
                    put("axes", Attr::Ints(axes.clone()));
                }
                put("keepdims", Attr::Int(r.keepdims as i64));
                if r.noop_with_empty_axes {
                    put("noop_with_empty_axes", Attr::Int(1));
                }
            }
            Op::Quantize(q) | Op::Dequantize(q) => {
                for (name, v) in [
                    ("axis", q.axis),
                    ("saturate", q.saturate),
                    ("output_dtype", q.output_dtype),
                    ("block_size", q.block_size),
                ] {
                    if let Some(v) = v {
                        put(name, Attr::Int(v));
                    }
                }
            }
            Op::Gelu(g) => {
                if g.tanh {
                    put("approximate", Attr::Str(b"tanh".to_vec()));
                }
            }
            Op::SkipLayerNorm(l) => {
                if let Some(e) = l.epsilon {
                    put("epsilon", Attr::Float(e));
                }
            }
            Op::ContribGelu(g) => {
                if let ContribGelu::QuickGelu { alpha: Some(a) } = g {
                    put("alpha", Attr::Float(*a));
                }
            }
            Op::MultiHeadAttention(m) => {
                put("num_heads", Attr::Int(m.num_heads));
                if let Some(u) = m.unidirectional {
                    put("unidirectional", Attr::Int(u));
                }
                if let Some(v) = m.mask_filter_value {
                    put("mask_filter_value", Attr::Float(v));
                }
                if let Some(sc) = m.scale {
                    put("scale", Attr::Float(sc));
                }
            }
            Op::FusedAttention(f) => {
                put("num_heads", Attr::Int(f.num_heads));
                if let Some(q) = &f.qkv_hidden_sizes {
                    put("qkv_hidden_sizes", Attr::Ints(q.clone()));
                }
                if let Some(u) = f.unidirectional {
                    put("unidirectional", Attr::Int(u));
                }
                if let Some(m) = f.mask_filter_value {
                    put("mask_filter_value", Attr::Float(m));
                }
                if let Some(sc) = f.scale {
                    put("scale", Attr::Float(sc));
                }
            }
            Op::RotaryEmbedding(r) => r.attrs(&mut put),
            Op::EmbedLayerNorm(e) => {
                if let Some(eps) = e.epsilon {
                    put("epsilon", Attr::Float(eps));
                }
                if let Some(m) = e.mask_index_type {
                    put("mask_index_type", Attr::Int(m));
                }
            }
            Op::GroupQueryAttention(g) => {
                put("num_heads", Attr::Int(g.num_heads));
                put("kv_num_heads", Attr::Int(g.kv_num_heads));
                let floats = [("scale", g.scale), ("softcap", g.softcap), ("qk_norm_epsilon", g.qk_norm_epsilon)];
                for (name, v) in floats {
                    if let Some(v) = v {
                        put(name, Attr::Float(v));
                    }
                }
                let ints = [
                    ("local_window_size", g.local_window_size),
                    ("do_rotary", g.do_rotary),
                    ("rotary_interleaved", g.rotary_interleaved),
                    ("smooth_softmax", g.smooth_softmax),
                    ("causal", g.causal),
                    ("sliding_window_cache", g.sliding_window_cache),
                    ("qk_output", g.qk_output),
                    ("kv_cache_bit_width", g.kv_cache_bit_width),
                ];
                for (name, v) in ints {
                    if let Some(v) = v {
                        put(name, Attr::Int(v));
                    }
                }
                for (name, v) in [("k_quant_type", &g.k_quant_type), ("v_quant_type", &g.v_quant_type)] {
                    if let Some(v) = v {
                        put(name, Attr::Str(v.clone()));
                    }
                }
            }
            Op::MatMulNBits(m) => {
                put("K", Attr::Int(m.k));
                put("N", Attr::Int(m.n));
                put("bits", Attr::Int(m.bits));
                put("block_size", Attr::Int(m.block_size));
                if let Some(a) = m.accuracy_level {
                    put("accuracy_level", Attr::Int(a));
                }
            }
            Op::Reshape { allowzero } => {
                if *allowzero {
                    put("allowzero", Attr::Int(1));
                }
            }
            Op::Transpose { perm } => {
                if let Some(p) = perm {
                    put("perm", Attr::Ints(p.clone()));
                }
            }
            Op::Split(s) => {
                put("axis", Attr::Int(s.axis));
                if let Some(split) = &s.split {
                    put("split", Attr::Ints(split.clone()));
                }
                if let Some(n) = s.num_outputs {
                    put("num_outputs", Attr::Int(n));
                }
            }
            Op::Concat { axis } | Op::Gather { axis } | Op::Flatten { axis } => put("axis", Attr::Int(*axis)),
            Op::Shape { start, end } => {
                if let Some(s) = start {
                    put("start", Attr::Int(*s));
                }
                if let Some(e) = end {
                    put("end", Attr::Int(*e));
                }
            }
            Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
                if let Some(axes) = axes {
                    put("axes", Attr::Ints(axes.clone()));
                }
            }
            Op::Cast(c) => {
                put("to", Attr::Int(c.to.onnx_code() as i64));
                if let Some(s) = c.saturate {
                    put("saturate", Attr::Int(s));
                }
            }
            Op::Constant { value, form } => match form {
                ConstantForm::Tensor => put("value", Attr::Tensor(value.clone())),
                ConstantForm::Float => put("value_float", Attr::Float(value.to_f64s().unwrap_or_default()[0] as f32)),
                ConstantForm::Floats => put(
                    "value_floats",
                    Attr::Floats(value.to_f64s().unwrap_or_default().into_iter().map(|v| v as f32).collect()),
                ),
                ConstantForm::Int => put("value_int", Attr::Int(value.to_i64s().unwrap_or_default()[0])),
                ConstantForm::Ints => put("value_ints", Attr::Ints(value.to_i64s().unwrap_or_default())),
            },
            Op::ConstantOfShape { value } => {
                if let Some(v) = value {
                    put("value", Attr::Tensor(v.clone()));
                }
            }
            Op::Opaque(o) => return o.attrs.clone(),
            Op::MatMul
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Where
            | Op::Slice
            | Op::Expand
            | Op::Range
            | Op::DynamicQuantize
            | Op::MatMulInteger => {}
        }
        a
    }
}

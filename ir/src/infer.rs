//! Type and shape inference for the closed op set, with partial evaluation of
//! the small integer tensors that exporters compute shapes with
//! (`Shape → Gather → Concat → Reshape`). Those values are tracked as [`Dim`]s,
//! so a computed Reshape target such as `[batch, seq, 12, 32]` stays exact.

use crate::ids::{EntityId, SymId};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::ty::{DType, Dim, TensorTy};

/// What is known of a value: its type and, for small integer tensors, its elements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fact {
    /// The type, when known.
    pub ty: Option<TensorTy>,
    /// Elements of a rank-0/1 integer tensor, when known (possibly symbolic).
    pub ints: Option<Vec<Dim>>,
}

/// The most elements tracked in [`Fact::ints`].
pub const MAX_TRACKED_INTS: usize = 64;

/// The highest rank a shape tensor may give (a documented limit: the graphs
/// ecospac reads have rank ≤ 8; ONNX Runtime's kernels stop far below 64).
pub const MAX_RANK: usize = 64;

impl Fact {
    /// A fact with a type only.
    pub fn of_ty(ty: Option<TensorTy>) -> Fact {
        Fact { ty, ints: None }
    }
    /// The fact of a constant tensor.
    pub fn of_tensor(t: &Tensor) -> Fact {
        let ints = (t.dims.len() <= 1 && t.numel() <= MAX_TRACKED_INTS as u128)
            .then(|| t.to_i64s())
            .flatten()
            .map(|v| v.into_iter().map(Dim::known).collect());
        Fact { ty: Some(TensorTy::known(t.dtype, &t.dims)), ints }
    }
    fn shape(&self) -> Option<&[Dim]> {
        self.ty.as_ref()?.shape.as_deref()
    }
    fn dtype(&self) -> Option<DType> {
        self.ty.as_ref().map(|t| t.dtype)
    }
    /// The elements as plain integers, when all are known.
    pub fn known_ints(&self) -> Option<Vec<i64>> {
        self.ints.as_ref()?.iter().map(Dim::as_known).collect()
    }
}

/// Why an op's inputs do not type-check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InferError(pub String);

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, InferError> {
    Err(InferError(msg.into()))
}

/// Normalises a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, InferError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        err(format!("axis {axis} out of range for rank {rank}"))
    }
}

/// Numpy broadcasting of several shapes.
pub fn broadcast(shapes: &[&[Dim]]) -> Result<Vec<Dim>, InferError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut pick: Option<&Dim> = None;
        for s in shapes {
            let Some(d) = (i + s.len()).checked_sub(rank).map(|j| &s[j]) else {
                continue;
            };
            if d.as_known() == Some(1) {
                continue;
            }
            pick = match pick {
                None => Some(d),
                Some(p) if p == d => Some(p),
                Some(p) => match (p.as_known(), d.as_known()) {
                    (Some(a), Some(b)) => return err(format!("cannot broadcast {a} with {b}")),
                    (None, Some(_)) => Some(d),
                    _ => Some(p),
                },
            };
        }
        out.push(pick.cloned().unwrap_or(Dim::known(1)));
    }
    Ok(out)
}

/// Makes fresh symbols for dims that cannot be computed.
pub trait SymSource {
    /// A new, unconstrained dimension.
    fn fresh(&mut self) -> SymId;
}

/// What an op's rule reads: its input facts, how many outputs it has, and
/// where fresh dims come from.
pub(crate) struct Cx<'a> {
    pub(crate) inputs: &'a [Option<Fact>],
    pub(crate) syms: &'a mut dyn SymSource,
    pub(crate) num_outputs: usize,
}

impl<'a> Cx<'a> {
    pub(crate) fn input(&self, i: usize) -> Option<&'a Fact> {
        self.inputs.get(i).and_then(Option::as_ref)
    }
    pub(crate) fn shape(&self, i: usize) -> Option<&'a [Dim]> {
        self.input(i)?.shape()
    }
    pub(crate) fn dtype(&self, i: usize) -> Option<DType> {
        self.input(i)?.dtype()
    }
    pub(crate) fn ints(&self, i: usize) -> Option<&'a [Dim]> {
        self.input(i)?.ints.as_deref()
    }
    pub(crate) fn known_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.input(i)?.known_ints()
    }
    pub(crate) fn fresh(&mut self) -> Dim {
        Dim::sym(self.syms.fresh())
    }
    pub(crate) fn fresh_dims(&mut self, n: usize) -> Vec<Dim> {
        (0..n).map(|_| self.fresh()).collect()
    }
    /// Length of the 1-D input `i` (e.g. a shape tensor), when known; a
    /// length that is no rank (negative, or above [`MAX_RANK`]) is an error.
    pub(crate) fn len_1d(&self, i: usize) -> Result<Option<usize>, InferError> {
        let Some([d]) = self.shape(i) else { return Ok(None) };
        match d.as_known() {
            None => Ok(None),
            Some(n) => match usize::try_from(n) {
                Ok(n) if n <= MAX_RANK => Ok(Some(n)),
                _ => err(format!("a shape tensor of length {n}: ranks above {MAX_RANK} are not supported")),
            },
        }
    }
}

pub(crate) fn ty(dtype: Option<DType>, shape: Option<Vec<Dim>>) -> Option<TensorTy> {
    dtype.map(|dtype| TensorTy { dtype, shape })
}

pub(crate) fn is_int(d: Option<DType>) -> bool {
    matches!(
        d,
        Some(DType::I64 | DType::I32 | DType::I16 | DType::I8 | DType::U8 | DType::U32 | DType::U64 | DType::U16)
    )
}

/// Infers the output facts of one node from its input facts.
/// `inputs[i]` is `None` for an omitted optional input; `num_outputs` counts the
/// outputs as written.
pub fn infer(
    op: &Op,
    inputs: &[Option<Fact>],
    num_outputs: usize,
    syms: &mut dyn SymSource,
) -> Result<Vec<Fact>, InferError> {
    use crate::ops::{
        attention as at, constant as c, elementwise as e, linalg as l, norm as n, quant as q, shape as s,
    };
    let cx = &mut Cx { inputs, syms, num_outputs };
    // Each op's rule is in the module of its family, beside its axis relations.
    match op {
        Op::MatMul => l::matmul(cx),
        Op::Gemm(g) => l::gemm(g, cx),
        Op::Conv(x) => l::conv(x, cx),
        Op::MatMulInteger => l::matmul_integer(cx),
        Op::Unary(u) => e::unary(u, cx),
        Op::Binary(b) => e::binary(b, cx),
        Op::Where => e::where_(cx),
        Op::Cast(x) => e::cast(x, cx),
        Op::Gelu(_) | Op::ContribGelu(_) => e::gelu(cx),
        Op::Expand => e::expand(cx),
        Op::Softmax(_) => n::softmax(cx),
        Op::LayerNorm(x) => n::layer_norm(x, cx),
        Op::SkipLayerNorm(_) => n::skip_layer_norm(cx),
        Op::ReduceMean(r) | Op::ReduceSum(r) => n::reduce(r, cx),
        Op::Quantize(x) => q::quantize(x, false, cx),
        Op::Dequantize(x) => q::quantize(x, true, cx),
        Op::DynamicQuantize => q::dynamic_quantize(cx),
        Op::MatMulNBits(m) => q::matmul_nbits(m, cx),
        Op::QLinear(x) => q::qlinear(x, cx.inputs, &mut *cx.syms),
        Op::FusedAttention(f) => at::fused_attention(f, cx),
        Op::MultiHeadAttention(m) => at::multi_head_attention(m, cx),
        Op::EmbedLayerNorm(_) => at::embed_layer_norm(cx),
        Op::GroupQueryAttention(g) => at::group_query_attention(g, cx),
        Op::RotaryEmbedding(r) => at::rotary_embedding(r, cx),
        Op::Reshape { allowzero } => s::reshape(allowzero, cx),
        Op::Flatten { axis } => s::flatten(axis, cx),
        Op::Transpose { perm } => s::transpose(perm, cx),
        Op::Split(sp) => s::split(sp, cx),
        Op::Slice => s::slice(cx),
        Op::Concat { axis } => s::concat(axis, cx),
        Op::Gather { axis } => s::gather(axis, cx),
        Op::Squeeze { axes } => s::squeeze(axes, true, cx),
        Op::Unsqueeze { axes } => s::squeeze(axes, false, cx),
        Op::Shape { start, end } => c::shape(start, end, cx),
        Op::Constant { value, .. } => c::constant(value, cx),
        Op::ConstantOfShape { value } => c::constant_of_shape(value, cx),
        Op::Range => c::range(cx),
        Op::Opaque(_) => Ok(vec![Fact::default(); num_outputs]),
    }
}

/// One output of this type and these elements.
pub(crate) fn one(ty: Option<TensorTy>, ints: Option<Vec<Dim>>) -> Result<Vec<Fact>, InferError> {
    Ok(vec![Fact { ty, ints }])
}

/// The effective `[begin, end)` of a Slice on an axis of known size (ONNX clamping rules).
pub fn slice_bounds(start: i64, end: i64, step: i64, dim: i64) -> (i64, i64) {
    let dim = dim.max(0);
    let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    if step > 0 {
        (fix(start).clamp(0, dim), fix(end).clamp(0, dim))
    } else {
        (fix(start).min(dim - 1).max(-1), fix(end).clamp(-1, dim - 1))
    }
}

/// A dimension or type that contradicts what the model declared.
fn compatible(inferred: &TensorTy, declared: &TensorTy) -> bool {
    if inferred.dtype != declared.dtype {
        return false;
    }
    match (&inferred.shape, &declared.shape) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x.as_known(), y.as_known()) {
                    (Some(p), Some(q)) => p == q,
                    _ => true,
                })
        }
        _ => true,
    }
}

/// One problem found while propagating facts through a graph.
#[derive(Debug, Clone, PartialEq)]
pub enum PropagationIssue {
    /// The op rejected its input types.
    Node(crate::ids::NodeId, InferError),
    /// The inferred type contradicts the declared type of a value.
    Conflict {
        /// The value.
        value: crate::ids::ValueId,
        /// What inference found.
        inferred: TensorTy,
        /// What the model declared.
        declared: TensorTy,
    },
}

/// Fresh symbols that are only compared, never stored in the graph.
struct ScratchSymbols(usize);

impl SymSource for ScratchSymbols {
    fn fresh(&mut self) -> SymId {
        self.0 += 1;
        SymId::new(self.0)
    }
}

/// [`propagate`] with throwaway symbols, for analyses that do not store the types.
pub fn facts(g: &crate::Graph) -> (Vec<Option<Fact>>, Vec<PropagationIssue>) {
    propagate(g, &mut ScratchSymbols(g.symbols().count() + (1 << 20)))
}

/// Propagates facts through `g` in order. Returns the fact of every value
/// (indexed by value id) and every issue found. Values produced by opaque ops
/// take their declared types.
pub fn propagate(g: &crate::Graph, syms: &mut dyn SymSource) -> (Vec<Option<Fact>>, Vec<PropagationIssue>) {
    use crate::ids::EntityId;
    let mut facts: Vec<Option<Fact>> = vec![None; g.num_values()];
    let mut issues = Vec::new();
    for &v in &g.inputs {
        facts[v.index()] = Some(Fact::of_ty(g.value(v).declared.clone()));
    }
    for &v in &g.initializers {
        if let Some(t) = &g.value(v).constant {
            facts[v.index()] = Some(Fact::of_tensor(t));
        }
    }
    for (id, node) in g.nodes() {
        let ins: Vec<Option<Fact>> = node
            .inputs
            .iter()
            .map(|i| i.map(|v| facts[v.index()].clone().unwrap_or_else(|| Fact::of_ty(g.value(v).best_ty()))))
            .collect();
        let outs = match infer(&node.op, &ins, node.outputs.len(), syms) {
            Ok(o) => o,
            Err(e) => {
                issues.push(PropagationIssue::Node(id, e));
                vec![Fact::default(); node.outputs.len()]
            }
        };
        for (slot, mut fact) in node.outputs.iter().zip(outs) {
            let Some(v) = slot else { continue };
            let declared = &g.value(*v).declared;
            match (&fact.ty, declared) {
                (None, Some(d)) => fact.ty = Some(d.clone()),
                (Some(i), Some(d)) if !compatible(i, d) => {
                    issues.push(PropagationIssue::Conflict { value: *v, inferred: i.clone(), declared: d.clone() })
                }
                _ => {}
            }
            facts[v.index()] = Some(fact);
        }
    }
    (facts, issues)
}

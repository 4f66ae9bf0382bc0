//! Type and shape inference for the closed op set, with partial evaluation of
//! the small integer tensors that exporters compute shapes with
//! (`Shape → Gather → Concat → Reshape`). Those values are tracked as [`Dim`]s,
//! so a computed Reshape target such as `[batch, seq, 12, 32]` stays exact.

use crate::ids::{EntityId, SymId};
use crate::op::{BinaryOp, Op, UnaryOp};
use crate::tensor::Tensor;
use crate::ty::{DType, Dim, TensorTy};

mod qlinear;

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

fn err<T>(msg: impl Into<String>) -> Result<T, InferError> {
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

struct Cx<'a> {
    inputs: &'a [Option<Fact>],
    syms: &'a mut dyn SymSource,
}

impl<'a> Cx<'a> {
    fn input(&self, i: usize) -> Option<&'a Fact> {
        self.inputs.get(i).and_then(Option::as_ref)
    }
    fn shape(&self, i: usize) -> Option<&'a [Dim]> {
        self.input(i)?.shape()
    }
    fn dtype(&self, i: usize) -> Option<DType> {
        self.input(i)?.dtype()
    }
    fn ints(&self, i: usize) -> Option<&'a [Dim]> {
        self.input(i)?.ints.as_deref()
    }
    fn known_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.input(i)?.known_ints()
    }
    fn fresh(&mut self) -> Dim {
        Dim::sym(self.syms.fresh())
    }
    fn fresh_dims(&mut self, n: usize) -> Vec<Dim> {
        (0..n).map(|_| self.fresh()).collect()
    }
    /// Length of the 1-D input `i` (e.g. a shape tensor), when known; a
    /// length that is no rank (negative, or above [`MAX_RANK`]) is an error.
    fn len_1d(&self, i: usize) -> Result<Option<usize>, InferError> {
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

fn ty(dtype: Option<DType>, shape: Option<Vec<Dim>>) -> Option<TensorTy> {
    dtype.map(|dtype| TensorTy { dtype, shape })
}

fn is_int(d: Option<DType>) -> bool {
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
    let mut cx = Cx { inputs, syms };
    let one = |ty: Option<TensorTy>, ints: Option<Vec<Dim>>| Ok(vec![Fact { ty, ints }]);
    match op {
        Op::Unary(u) => {
            let dtype = match u {
                UnaryOp::IsNaN | UnaryOp::Not => Some(DType::Bool),
                _ => cx.dtype(0),
            };
            let ints = match u {
                UnaryOp::Identity => cx.ints(0).map(<[Dim]>::to_vec),
                UnaryOp::Neg => cx.known_ints(0).map(|v| v.into_iter().map(|x| Dim::known(-x)).collect()),
                _ => None,
            };
            one(ty(dtype, cx.shape(0).map(<[Dim]>::to_vec)), ints)
        }
        Op::Softmax(_) | Op::Gelu(_) | Op::ContribGelu(_) => one(cx.input(0).and_then(|f| f.ty.clone()), None),
        Op::Quantize(q) | Op::Dequantize(q) => {
            let name = op.op_type();
            // The scale (and zero point) is one element, or one per index of `axis`.
            for i in 1..inputs.len().min(3) {
                match (cx.shape(i), cx.shape(0)) {
                    (Some([]), _) | (None, _) => {}
                    (Some([n]), _) if n.as_known() == Some(1) => {}
                    (Some([n]), Some(x)) => {
                        let d = x.get(q.axis(x.len())?).and_then(Dim::as_known);
                        match (n.as_known(), d) {
                            (Some(n), Some(d)) if n != 1 && n != d => {
                                return err(format!("{name}: {n} scale elements for an axis of {d}"))
                            }
                            _ => {}
                        }
                    }
                    (Some([_]), None) => {}
                    (Some(s), _) => {
                        return err(format!("{name}: a scale of rank {} (blocked) is not modelled", s.len()))
                    }
                }
            }
            let dtype = match q.output_dtype {
                Some(code) if code != 0 => Some(DType::from_onnx(code as i32)),
                _ if matches!(op, Op::Dequantize(_)) => cx.dtype(1),
                _ => cx.dtype(2).or(Some(DType::U8)),
            };
            one(ty(dtype, cx.shape(0).map(<[Dim]>::to_vec)), None)
        }
        Op::DynamicQuantize => {
            if let Some(d) = cx.dtype(0).filter(|&d| d != DType::F32) {
                return err(format!("DynamicQuantizeLinear of {d}: the operator takes float32"));
            }
            Ok(vec![
                Fact::of_ty(ty(Some(DType::U8), cx.shape(0).map(<[Dim]>::to_vec))),
                Fact::of_ty(ty(Some(DType::F32), Some(vec![]))),
                Fact::of_ty(ty(Some(DType::U8), Some(vec![]))),
            ])
        }
        Op::MatMulInteger => {
            for i in 0..inputs.len().min(4) {
                if let Some(d) = cx.dtype(i).filter(|&d| !matches!(d, DType::U8 | DType::I8)) {
                    return err(format!("MatMulInteger: input {i} is {d}, not int8 or uint8"));
                }
            }
            let shape = match (cx.shape(0), cx.shape(1)) {
                (Some(a), Some(b)) if a.len() >= 2 && b.len() >= 2 => Some(matmul_shape(a, b)?),
                (Some(a), Some(b)) => {
                    return err(format!("MatMulInteger of ranks {} and {} (1-D is not modelled)", a.len(), b.len()))
                }
                _ => None,
            };
            // Zero points: one, or one per row of A / column of B.
            for (i, of, axis) in [(2, 0, 2), (3, 1, 1)] {
                let per = cx.shape(of).and_then(|s| s.len().checked_sub(axis)).and_then(|a| cx.shape(of)?.get(a));
                match cx.shape(i) {
                    None | Some([]) => {}
                    Some([n]) if n.as_known() == Some(1) => {}
                    Some([n]) if per.is_none_or(|p| p.as_known().is_none() || p == n) => {}
                    Some(z) => {
                        return err(format!(
                            "MatMulInteger: zero point {i} of shape {z:?} for an input of {:?}",
                            cx.shape(of)
                        ))
                    }
                }
            }
            one(ty(Some(DType::I32), shape), None)
        }
        Op::QLinear(q) => qlinear::qlinear(q, inputs, cx.syms),
        Op::MatMulNBits(m) => {
            let known = |i: usize| cx.shape(i).map(|s| s.iter().map(Dim::as_known).collect::<Vec<_>>());
            let want_b = [Some(m.n), Some(m.k_blocks()), Some(m.blob_size())];
            match known(1) {
                Some(b) if b.len() != 3 || b.iter().zip(&want_b).any(|(x, y)| x.is_some() && x != y) => {
                    return err(format!(
                        "MatMulNBits: B is {b:?}, not [N {}, k_blocks {}, blob {}] for K {} in blocks of {}",
                        m.n,
                        m.k_blocks(),
                        m.blob_size(),
                        m.k,
                        m.block_size
                    ))
                }
                _ => {}
            }
            match known(2) {
                Some(s)
                    if s.len() == 2 && (s[0].is_some_and(|x| x != m.n) || s[1].is_some_and(|x| x != m.k_blocks())) =>
                {
                    return err(format!("MatMulNBits: scales are {s:?}, not [N {}, k_blocks {}]", m.n, m.k_blocks()))
                }
                _ => {}
            }
            let shape = match cx.shape(0) {
                Some(a) if a.last().and_then(Dim::as_known).is_some_and(|k| k != m.k) => {
                    return err(format!("MatMulNBits: A's last axis is {:?}, K is {}", a.last(), m.k))
                }
                Some([]) => return err("MatMulNBits of a scalar"),
                Some(a) => {
                    let mut s = a.to_vec();
                    if let Some(last) = s.last_mut() {
                        *last = Dim::known(m.n);
                    }
                    Some(s)
                }
                None => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::FusedAttention(f) => {
            // Output [B, S, H_v]: H_v from qkv_hidden_sizes, else a third of the packed weight.
            let v_hidden = match &f.qkv_hidden_sizes {
                Some(q) if q.len() == 3 => Some(Dim::known(q[2])),
                Some(_) => return err("Attention: qkv_hidden_sizes needs 3 sizes"),
                None => match cx.shape(1).and_then(|w| w.get(1)).and_then(Dim::as_known) {
                    Some(n) if n % 3 == 0 => Some(Dim::known(n / 3)),
                    Some(n) => return err(format!("Attention: packed weight width {n} is not 3 equal parts")),
                    None => None,
                },
            };
            let shape = match (cx.shape(0), v_hidden) {
                (Some(x), Some(h)) if x.len() == 3 => Some(vec![x[0].clone(), x[1].clone(), h]),
                (Some(x), _) if x.len() != 3 => return err(format!("Attention of an input of rank {}", x.len())),
                _ => None,
            };
            let mut outs = vec![Fact::of_ty(ty(cx.dtype(0), shape))];
            for _ in 1..num_outputs {
                outs.push(Fact::of_ty(ty(cx.dtype(0), None)));
            }
            Ok(outs)
        }
        Op::EmbedLayerNorm(_) => {
            let hidden = cx.shape(2).and_then(|w| w.get(1).cloned());
            let shape = match (cx.shape(0), hidden) {
                (Some(ids), Some(h)) if ids.len() == 2 => Some(vec![ids[0].clone(), ids[1].clone(), h]),
                _ => None,
            };
            let dtype = cx.dtype(2);
            let batch = cx.shape(0).and_then(|ids| ids.first().cloned()).map(|b| vec![b]);
            Ok((0..num_outputs)
                .map(|o| match o {
                    1 => Fact::of_ty(ty(Some(DType::I32), batch.clone())),
                    _ => Fact::of_ty(ty(dtype, shape.clone())),
                })
                .collect())
        }
        Op::GroupQueryAttention(g) => {
            let packed = cx.input(1).is_none();
            let query = match cx.shape(0) {
                Some(q) if q.len() != 3 => return err(format!("GroupQueryAttention of a query of rank {}", q.len())),
                q => q,
            };
            let head = match query.and_then(|q| q[2].as_known()) {
                Some(w) => match g.head_size(w, packed) {
                    Some(h) => Some(h),
                    None => {
                        return err(format!(
                            "GroupQueryAttention: a query of width {w} is not {} heads of equal size",
                            if packed { "the packed Q, K and V" } else { "its" }
                        ))
                    }
                },
                None => None,
            };
            // The cache it reads is [B, kv_num_heads, P, head_size].
            for i in [3, 4] {
                match (cx.shape(i), head) {
                    (Some(p), _) if p.len() != 4 => {
                        return err(format!("GroupQueryAttention: cache input {i} of rank {}", p.len()))
                    }
                    (Some(p), h) => {
                        let wrong =
                            |d: &Dim, want: Option<i64>| matches!((d.as_known(), want), (Some(x), Some(y)) if x != y);
                        if wrong(&p[1], Some(g.kv_num_heads)) || wrong(&p[3], h) {
                            return err(format!(
                                "GroupQueryAttention: cache input {i} is {p:?}, not [batch, {}, past, {h:?}]",
                                g.kv_num_heads
                            ));
                        }
                    }
                    (None, _) => {}
                }
            }
            let width = match head.map(|h| h.checked_mul(g.num_heads)) {
                Some(None) => return err("GroupQueryAttention: the output width overflows"),
                Some(Some(w)) => Some(Dim::known(w)),
                None => None,
            };
            let dtype = cx.dtype(0);
            let batch = query.map(|q| q[0].clone());
            let mut outs =
                vec![Fact::of_ty(ty(dtype, query.zip(width).map(|(q, w)| vec![q[0].clone(), q[1].clone(), w])))];
            // A quantised cache has the type of the cache it reads; a float one the query's.
            let cache_dtype = cx.dtype(3).or(if g.kv_cache_bit_width.is_some() { None } else { dtype });
            for o in 1..num_outputs {
                let shape = match (o, &batch, head) {
                    (1 | 2, Some(b), Some(h)) => {
                        Some(vec![b.clone(), Dim::known(g.kv_num_heads), cx.fresh(), Dim::known(h)])
                    }
                    _ => None,
                };
                outs.push(Fact::of_ty(ty(if o < 3 { cache_dtype } else { dtype }, shape)));
            }
            Ok(outs)
        }
        Op::SkipLayerNorm(_) => {
            let x = cx.input(0).and_then(|f| f.ty.clone());
            let stat_shape = cx.shape(0).map(|s| {
                let n = s.len();
                s.iter().enumerate().map(|(i, d)| if i + 1 == n { Dim::known(1) } else { d.clone() }).collect()
            });
            Ok((0..num_outputs)
                .map(|o| match o {
                    1 | 2 => Fact::of_ty(ty(Some(DType::F32), stat_shape.clone())),
                    _ => Fact::of_ty(x.clone()),
                })
                .collect())
        }
        Op::Binary(b) => {
            let shape = match (cx.shape(0), cx.shape(1)) {
                (Some(a), Some(c)) => Some(broadcast(&[a, c])?),
                _ => None,
            };
            if let (Some(a), Some(c)) = (cx.dtype(0), cx.dtype(1)) {
                if a != c && *b != BinaryOp::Pow {
                    return err(format!("{} of {a} and {c}", b.name()));
                }
            }
            let dtype = if b.yields_bool() { Some(DType::Bool) } else { cx.dtype(0) };
            let ints = match (cx.ints(0), cx.ints(1)) {
                (Some(x), Some(y)) if is_int(cx.dtype(0)) => binary_ints(*b, x, y)?,
                _ => None,
            };
            one(ty(dtype, shape), ints)
        }
        Op::Where => {
            let shape = match (cx.shape(0), cx.shape(1), cx.shape(2)) {
                (Some(a), Some(b), Some(c)) => Some(broadcast(&[a, b, c])?),
                _ => None,
            };
            let ints = match (cx.known_ints(0), cx.ints(1), cx.ints(2)) {
                (Some(c), Some(x), Some(y)) => {
                    let n = c.len().max(x.len()).max(y.len());
                    let at = |v: &[Dim], i: usize| v.get(if v.len() == 1 { 0 } else { i }).cloned();
                    (0..n)
                        .map(|i| {
                            let ci = *c.get(if c.len() == 1 { 0 } else { i })?;
                            if ci != 0 {
                                at(x, i)
                            } else {
                                at(y, i)
                            }
                        })
                        .collect()
                }
                _ => None,
            };
            one(ty(cx.dtype(1), shape), ints)
        }
        Op::MatMul => {
            // ONNX defines MatMul on real numbers only (no complex, string or bool).
            for d in [cx.dtype(0), cx.dtype(1)].into_iter().flatten() {
                if !(d.is_float() || is_int(Some(d))) {
                    return err(format!("MatMul of {d}: the operator takes real numbers"));
                }
            }
            if let (Some(a), Some(b)) = (cx.dtype(0), cx.dtype(1)) {
                if a != b {
                    return err(format!("MatMul of {a} and {b}"));
                }
            }
            let shape = match (cx.shape(0), cx.shape(1)) {
                (Some(a), Some(b)) => Some(matmul_shape(a, b)?),
                _ => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::Gemm(g) => {
            let shape = match (cx.shape(0), cx.shape(1)) {
                (Some([a0, a1]), Some([b0, b1])) => {
                    let (m, k) = if g.trans_a { (a1, a0) } else { (a0, a1) };
                    let (k2, n) = if g.trans_b { (b1, b0) } else { (b0, b1) };
                    if let (Some(x), Some(y)) = (k.as_known(), k2.as_known()) {
                        if x != y {
                            return err(format!("Gemm contraction {x} vs {y}"));
                        }
                    }
                    Some(vec![m.clone(), n.clone()])
                }
                (Some(a), Some(b)) => {
                    return err(format!("Gemm needs 2-D inputs, got ranks {} and {}", a.len(), b.len()))
                }
                _ => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::Conv(c) => {
            let shape = match (cx.shape(0), cx.shape(1)) {
                (Some(x), Some(w)) if x.len() == w.len() && x.len() >= 3 => Some(conv_shape(c, x, w, &mut cx)?),
                (Some(x), Some(w)) => return err(format!("Conv of ranks {} and {}", x.len(), w.len())),
                _ => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::LayerNorm(l) => {
            let x = cx.input(0).and_then(|f| f.ty.clone());
            let mut outs = vec![Fact::of_ty(x.clone())];
            let stat_shape = match cx.shape(0) {
                Some(s) => {
                    let a = norm_axis(l.axis, s.len())?;
                    Some(s.iter().enumerate().map(|(i, d)| if i >= a { Dim::known(1) } else { d.clone() }).collect())
                }
                None => None,
            };
            let stat_dtype = if l.stash_type == 1 { Some(DType::F32) } else { x.as_ref().map(|t| t.dtype) };
            for _ in 1..num_outputs {
                outs.push(Fact::of_ty(ty(stat_dtype, stat_shape.clone())));
            }
            Ok(outs)
        }
        Op::ReduceMean(r) | Op::ReduceSum(r) => {
            let axes = match &r.axes {
                Some(a) => Some(a.clone()),
                None if cx.input(1).is_none() => Some(vec![]),
                None => cx.known_ints(1),
            };
            let shape = match (cx.shape(0), axes) {
                (Some(s), Some(axes)) => {
                    let axes: Vec<usize> = if axes.is_empty() {
                        if r.noop_with_empty_axes {
                            return one(cx.input(0).and_then(|f| f.ty.clone()), None);
                        }
                        (0..s.len()).collect()
                    } else {
                        axes.iter().map(|&a| norm_axis(a, s.len())).collect::<Result<_, _>>()?
                    };
                    let mut out = Vec::new();
                    for (i, d) in s.iter().enumerate() {
                        if !axes.contains(&i) {
                            out.push(d.clone());
                        } else if r.keepdims {
                            out.push(Dim::known(1));
                        }
                    }
                    Some(out)
                }
                (Some(s), None) if r.keepdims => Some(cx.fresh_dims(s.len())),
                _ => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::Reshape { allowzero } => {
            let shape = match (cx.shape(0), cx.ints(1)) {
                (Some(inp), Some(target)) => Some(reshape_shape(inp, target, *allowzero, &mut cx)?),
                (_, Some(target)) if !target.iter().any(|d| d.as_known().is_some_and(|v| v <= 0)) => {
                    Some(target.to_vec())
                }
                _ => cx.len_1d(1)?.map(|n| cx.fresh_dims(n)),
            };
            let ints = cx.ints(0).map(<[Dim]>::to_vec).filter(|_| shape.as_ref().is_some_and(|s| s.len() <= 1));
            one(ty(cx.dtype(0), shape), ints)
        }
        Op::Transpose { perm } => {
            let shape = match cx.shape(0) {
                Some(s) => {
                    let perm: Vec<i64> = perm.clone().unwrap_or_else(|| (0..s.len() as i64).rev().collect());
                    if perm.len() != s.len() {
                        return err(format!("perm {perm:?} for rank {}", s.len()));
                    }
                    let idx: Vec<usize> = perm.iter().map(|&p| norm_axis(p, s.len())).collect::<Result<_, _>>()?;
                    Some(idx.iter().map(|&i| s[i].clone()).collect())
                }
                None => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::Flatten { axis } => {
            let shape = match cx.shape(0) {
                Some(s) => {
                    let r = s.len() as i64;
                    let a = if *axis < 0 { axis + r } else { *axis };
                    if !(0..=r).contains(&a) {
                        return err(format!("Flatten axis {axis} for rank {r}"));
                    }
                    Some(vec![product(&s[..a as usize]), product(&s[a as usize..])])
                }
                None => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::Split(sp) => {
            let Some(s) = cx.shape(0).map(<[Dim]>::to_vec) else {
                return Ok(vec![Fact::of_ty(ty(cx.dtype(0), None)); num_outputs]);
            };
            let a = norm_axis(sp.axis, s.len())?;
            let sizes: Option<Vec<Dim>> = if let Some(split) = &sp.split {
                Some(split.iter().map(|&v| Dim::known(v)).collect())
            } else if cx.input(1).is_some() {
                cx.ints(1).map(<[Dim]>::to_vec)
            } else {
                let n = num_outputs as i64;
                match s[a].as_known() {
                    Some(d) => {
                        let chunk = (d + n - 1) / n.max(1);
                        Some((0..n).map(|i| Dim::known(chunk.min(d - chunk * i).max(0))).collect())
                    }
                    None => s[a].div_exact(&Dim::known(n)).map(|c| vec![c; num_outputs]),
                }
            };
            let sizes = match sizes {
                Some(v) if v.len() == num_outputs => v,
                Some(v) => return err(format!("Split into {} sizes but {num_outputs} outputs", v.len())),
                None => cx.fresh_dims(num_outputs),
            };
            if let (Some(total), Some(parts)) = (s[a].as_known(), sizes.iter().map(Dim::as_known).sum::<Option<i64>>())
            {
                if total != parts {
                    return err(format!("Split sizes sum to {parts}, axis has {total}"));
                }
            }
            // A shape vector split into pieces (ORT's Gather-Slice-to-Split fusion):
            // each piece holds its run of the elements.
            let mut start = Some(0usize);
            Ok(sizes
                .into_iter()
                .map(|d| {
                    let ints = match (cx.ints(0), start, d.as_known().and_then(|n| usize::try_from(n).ok())) {
                        (Some(v), Some(b), Some(n)) if s.len() == 1 => {
                            start = b.checked_add(n);
                            v.get(b..b + n).map(<[Dim]>::to_vec)
                        }
                        _ => {
                            start = None;
                            None
                        }
                    };
                    let mut o = s.clone();
                    o[a] = d;
                    Fact { ty: ty(cx.dtype(0), Some(o)), ints }
                })
                .collect())
        }
        Op::Slice => slice(&mut cx),
        Op::Concat { axis } => {
            let n = inputs.len();
            let shapes: Option<Vec<&[Dim]>> = (0..n).map(|i| cx.shape(i)).collect();
            let shape = match shapes {
                Some(shapes) if !shapes.is_empty() => {
                    let rank = shapes[0].len();
                    if shapes.iter().any(|s| s.len() != rank) {
                        return err("Concat of different ranks");
                    }
                    let a = norm_axis(*axis, rank)?;
                    let total = shapes.iter().try_fold(Dim::known(0), |acc, s| acc.add_known(&s[a]));
                    let mut out = shapes[0].to_vec();
                    out[a] = match total {
                        Some(t) => t,
                        None => {
                            let nonzero: Vec<&Dim> =
                                shapes.iter().map(|s| &s[a]).filter(|d| d.as_known() != Some(0)).collect();
                            match nonzero.as_slice() {
                                [only] => (*only).clone(),
                                _ => cx.fresh(),
                            }
                        }
                    };
                    Some(out)
                }
                _ => None,
            };
            let ints = (0..n).map(|i| cx.ints(i).map(<[Dim]>::to_vec)).collect::<Option<Vec<_>>>().map(|v| v.concat());
            one(ty(cx.dtype(0), shape), ints)
        }
        Op::Gather { axis } => {
            let shape = match (cx.shape(0), cx.shape(1)) {
                (Some(d), Some(i)) => {
                    let a = norm_axis(*axis, d.len())?;
                    let mut out = d[..a].to_vec();
                    out.extend_from_slice(i);
                    out.extend_from_slice(&d[a + 1..]);
                    Some(out)
                }
                _ => None,
            };
            let ints = match (cx.ints(0), cx.known_ints(1)) {
                (Some(data), Some(idx)) if cx.shape(0).is_some_and(|s| s.len() == 1) => idx
                    .iter()
                    .map(|&i| {
                        let i = if i < 0 { i.checked_add(data.len() as i64)? } else { i };
                        data.get(usize::try_from(i).ok()?).cloned()
                    })
                    .collect(),
                _ => None,
            };
            one(ty(cx.dtype(0), shape), ints)
        }
        Op::Shape { start, end } => {
            let (shape, ints) = match cx.shape(0) {
                Some(s) => {
                    let r = s.len() as i64;
                    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                    let (a, b) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(r)));
                    let dims = if a < b { s[a..b].to_vec() } else { vec![] };
                    (Some(vec![Dim::known(dims.len() as i64)]), Some(dims))
                }
                None => (None, None),
            };
            one(Some(TensorTy { dtype: DType::I64, shape }), ints)
        }
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
            let squeeze = matches!(op, Op::Squeeze { .. });
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None if cx.input(1).is_none() => None,
                None => match cx.known_ints(1) {
                    Some(a) => Some(a),
                    None => return one(ty(cx.dtype(0), None), None),
                },
            };
            let shape = match cx.shape(0) {
                Some(s) if squeeze => {
                    let axes: Vec<usize> = match &axes {
                        Some(a) => a.iter().map(|&x| norm_axis(x, s.len())).collect::<Result<_, _>>()?,
                        None => (0..s.len()).filter(|&i| s[i].as_known() == Some(1)).collect(),
                    };
                    Some(
                        s.iter()
                            .enumerate()
                            .filter(|(i, _)| !axes.contains(i))
                            .map(|(_, d)| d.clone())
                            .collect::<Vec<Dim>>(),
                    )
                }
                Some(s) => {
                    let Some(axes) = axes else {
                        return err("Unsqueeze needs axes");
                    };
                    let r = s.len() + axes.len();
                    let mut axes: Vec<usize> = axes.iter().map(|&x| norm_axis(x, r)).collect::<Result<_, _>>()?;
                    axes.sort_unstable();
                    let mut src = s.iter();
                    Some(
                        (0..r)
                            .map(|i| {
                                if axes.contains(&i) {
                                    Dim::known(1)
                                } else {
                                    src.next().cloned().unwrap_or(Dim::known(1))
                                }
                            })
                            .collect(),
                    )
                }
                None => None,
            };
            let ints = cx.ints(0).map(<[Dim]>::to_vec).filter(|_| shape.as_ref().is_some_and(|s| s.len() <= 1));
            one(ty(cx.dtype(0), shape), ints)
        }
        Op::Expand => {
            let shape = match (cx.shape(0), cx.ints(1)) {
                (Some(s), Some(t)) => Some(broadcast(&[s, t])?),
                (Some(s), None) => cx.len_1d(1)?.map(|n| n.max(s.len())).map(|n| cx.fresh_dims(n)),
                _ => None,
            };
            one(ty(cx.dtype(0), shape), None)
        }
        Op::Cast(c) => {
            let ints = if is_int(Some(c.to)) { cx.ints(0).map(<[Dim]>::to_vec) } else { None };
            one(ty(Some(c.to), cx.shape(0).map(<[Dim]>::to_vec)), ints)
        }
        Op::Constant { value, .. } => Ok(vec![Fact::of_tensor(value)]),
        Op::ConstantOfShape { value } => {
            let dtype = value.as_ref().map_or(DType::F32, |v| v.dtype);
            let shape = match cx.ints(0) {
                Some(t) => Some(t.to_vec()),
                None => cx.len_1d(0)?.map(|n| cx.fresh_dims(n)),
            };
            let ints = match (&shape, value.as_ref().and_then(|v| v.to_i64s())) {
                (Some(s), Some(v)) if s.len() == 1 && is_int(Some(dtype)) => s[0]
                    .as_known()
                    .filter(|&n| n as usize <= MAX_TRACKED_INTS)
                    .map(|n| vec![Dim::known(v[0]); n as usize]),
                _ => None,
            };
            one(Some(TensorTy { dtype, shape }), ints)
        }
        Op::Range => {
            let (len, ints) = match (cx.known_ints(0), cx.known_ints(1), cx.known_ints(2)) {
                (Some(s), Some(l), Some(d)) if s.len() == 1 && l.len() == 1 && d.len() == 1 && d[0] != 0 => {
                    let n = ((l[0] as f64 - s[0] as f64) / d[0] as f64).ceil().max(0.0) as i64;
                    let ints = (n as usize <= MAX_TRACKED_INTS)
                        .then(|| (0..n).map(|i| Some(Dim::known(s[0].checked_add(i.checked_mul(d[0])?)?))).collect())
                        .flatten();
                    (Dim::known(n), ints)
                }
                // `range(0, n, 1)` with a symbolic `n` has `n` elements.
                (Some(s), None, Some(d)) if s == [0] && d == [1] => match cx.ints(1) {
                    Some([n]) => (n.clone(), None),
                    _ => (cx.fresh(), None),
                },
                _ => (cx.fresh(), None),
            };
            one(ty(cx.dtype(0), Some(vec![len])), ints.filter(|_| is_int(cx.dtype(0))))
        }
        Op::Opaque(_) => Ok(vec![Fact::default(); num_outputs]),
    }
}

/// Folds a binary op over known integer elements; `None` when not decidable.
/// Known values that overflow `i64` are an error (the graph cannot run).
fn binary_ints(op: BinaryOp, x: &[Dim], y: &[Dim]) -> Result<Option<Vec<Dim>>, InferError> {
    let n = x.len().max(y.len());
    if !(x.len() == n || x.len() == 1) || !(y.len() == n || y.len() == 1) {
        return Ok(None);
    }
    let at = |v: &[Dim], i: usize| v[if v.len() == 1 { 0 } else { i }].clone();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (at(x, i), at(y, i));
        let (ka, kb) = (a.as_known(), b.as_known());
        // Only known values are folded with `checked`, so both are numbers here.
        let overflow = || {
            let (p, q) = (ka.unwrap_or_default(), kb.unwrap_or_default());
            InferError(format!("integer overflow folding {} of {p} and {q}", op.name()))
        };
        let checked = |r: Option<i64>| r.map(Dim::known).ok_or_else(overflow);
        let d = match (op, ka, kb) {
            (BinaryOp::Mul, Some(p), Some(q)) => checked(p.checked_mul(q))?,
            (BinaryOp::Mul, _, _) => a.mul(&b),
            (BinaryOp::Div, Some(_), Some(0)) => return Ok(None),
            (BinaryOp::Div, Some(p), Some(q)) => checked(p.checked_div(q))?,
            (BinaryOp::Div, _, _) => match a.div_exact(&b) {
                Some(d) => d,
                None => return Ok(None),
            },
            (BinaryOp::Add, Some(p), Some(q)) => checked(p.checked_add(q))?,
            (BinaryOp::Sub, Some(p), Some(q)) => checked(p.checked_sub(q))?,
            (BinaryOp::Max, Some(p), Some(q)) => Dim::known(p.max(q)),
            (BinaryOp::Min, Some(p), Some(q)) => Dim::known(p.min(q)),
            // A symbolic size is never negative: `Equal(shape, -1)` is decidable.
            (BinaryOp::Equal, ka, kb) => Dim::known(match (ka, kb) {
                _ if a == b => 1,
                (Some(_), Some(_)) => 0,
                (Some(k), None) | (None, Some(k)) if k < 0 => 0,
                _ => return Ok(None),
            }),
            (BinaryOp::Less, Some(p), Some(q)) => Dim::known((p < q) as i64),
            (BinaryOp::Greater, Some(p), Some(q)) => Dim::known((p > q) as i64),
            (BinaryOp::LessOrEqual, Some(p), Some(q)) => Dim::known((p <= q) as i64),
            (BinaryOp::GreaterOrEqual, Some(p), Some(q)) => Dim::known((p >= q) as i64),
            _ => return Ok(None),
        };
        out.push(d);
    }
    Ok(Some(out))
}

fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, InferError> {
    if a.is_empty() || b.is_empty() {
        return err("MatMul of a scalar");
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::known(1), a[0].clone()] } else { a.to_vec() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0].clone(), Dim::known(1)] } else { b.to_vec() };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Some(x), Some(y)) = (ka.as_known(), kb.as_known()) {
        if x != y {
            return err(format!("MatMul contraction {x} vs {y}"));
        }
    }
    let mut out = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(out)
}

fn conv_shape(c: &crate::op::Conv, x: &[Dim], w: &[Dim], cx: &mut Cx<'_>) -> Result<Vec<Dim>, InferError> {
    let n = x.len() - 2;
    let mut out = vec![x[0].clone(), w[0].clone()];
    for i in 0..n {
        let k = match &c.kernel_shape {
            Some(k) => k.get(i).copied(),
            None => w[i + 2].as_known(),
        };
        let (Some(d), Some(k)) = (x[i + 2].as_known(), k) else {
            out.push(cx.fresh());
            continue;
        };
        let stride = c.strides.as_ref().and_then(|s| s.get(i).copied()).unwrap_or(1).max(1);
        let dil = c.dilations.as_ref().and_then(|s| s.get(i).copied()).unwrap_or(1);
        let span = dil * (k - 1) + 1;
        let size = match c.auto_pad.as_slice() {
            b"SAME_UPPER" | b"SAME_LOWER" => (d + stride - 1) / stride,
            b"VALID" => (d - span) / stride + 1,
            _ => {
                let pads = c.pads.as_ref();
                let pad = pads.and_then(|p| Some(p.get(i)? + p.get(i + n)?)).unwrap_or(0);
                (d + pad - span) / stride + 1
            }
        };
        out.push(Dim::known(size));
    }
    Ok(out)
}

fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::known(1), |acc, d| acc.mul(d))
}

fn reshape_shape(inp: &[Dim], target: &[Dim], allowzero: bool, cx: &mut Cx<'_>) -> Result<Vec<Dim>, InferError> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        match t.as_known() {
            Some(-1) => {
                if infer_at.replace(i).is_some() {
                    return err("Reshape target has two -1");
                }
                out.push(None);
            }
            Some(0) if !allowzero => match inp.get(i) {
                Some(d) => out.push(Some(d.clone())),
                None => return err(format!("Reshape copies dim {i} of a rank-{} input", inp.len())),
            },
            Some(v) if v < 0 => return err(format!("Reshape target has {v}")),
            _ => out.push(Some(t.clone())),
        }
    }
    let total = product(inp);
    if let Some(i) = infer_at {
        let rest = product(&out.iter().flatten().cloned().collect::<Vec<_>>());
        out[i] = Some(match total.div_exact(&rest) {
            Some(d) => d,
            None if total.as_known().is_some() && rest.as_known().is_some() => {
                return err(format!("Reshape of {} elements into a multiple of {}", total.coeff(), rest.coeff()))
            }
            None => cx.fresh(),
        });
    }
    let out: Vec<Dim> = out.into_iter().flatten().collect();
    if let (Some(a), Some(b)) = (total.as_known(), product(&out).as_known()) {
        if a != b {
            return err(format!("Reshape of {a} elements into {b}"));
        }
    }
    Ok(out)
}

fn slice(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let dtype = cx.dtype(0);
    let Some(s) = cx.shape(0).map(<[Dim]>::to_vec) else {
        return Ok(vec![Fact::of_ty(ty(dtype, None))]);
    };
    let (starts, ends) = match (cx.known_ints(1), cx.known_ints(2)) {
        (Some(a), Some(b)) => (a, b),
        // `x[..., 0:n]` with a symbolic `n` (a sequence length): the result has `n`
        // elements, since a valid graph never asks for more than the axis holds.
        (Some(a), None)
            if a.iter().all(|&x| x == 0)
                && (cx.input(4).is_none() || cx.known_ints(4).is_some_and(|st| st.iter().all(|&x| x == 1)))
                && cx.ints(2).is_some_and(|e| e.len() == a.len()) =>
        {
            let ends = cx.ints(2).map(<[Dim]>::to_vec).unwrap_or_default();
            let axes = match cx.input(3) {
                Some(_) => cx.known_ints(3),
                None => Some((0..ends.len() as i64).collect()),
            };
            let mut out = s.clone();
            for (k, end) in ends.iter().enumerate() {
                let axis = axes.as_ref().and_then(|a| a.get(k)).map(|&a| norm_axis(a, s.len())).transpose()?;
                match axis {
                    Some(a) => out[a] = end.clone(),
                    None => return Ok(vec![Fact::of_ty(ty(dtype, Some(cx.fresh_dims(s.len()))))]),
                }
            }
            return Ok(vec![Fact::of_ty(ty(dtype, Some(out)))]);
        }
        _ => {
            // Unknown bounds: the sliced axes are unknown; which axes is known only from `axes`.
            let axes = cx.known_ints(3);
            let mut out = s.clone();
            for (i, d) in out.iter_mut().enumerate() {
                if axes.as_ref().is_none_or(|a| a.iter().any(|&x| norm_axis(x, s.len()).ok() == Some(i))) {
                    *d = Dim::sym(cx.syms.fresh());
                }
            }
            return Ok(vec![Fact::of_ty(ty(dtype, Some(out)))]);
        }
    };
    let axes = match cx.input(3) {
        Some(_) => match cx.known_ints(3) {
            Some(a) => a,
            None => return Ok(vec![Fact::of_ty(ty(dtype, Some(cx.fresh_dims(s.len()))))]),
        },
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match cx.input(4) {
        Some(_) => match cx.known_ints(4) {
            Some(a) => a,
            None => return Ok(vec![Fact::of_ty(ty(dtype, Some(cx.fresh_dims(s.len()))))]),
        },
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return err("Slice starts/ends/axes/steps differ in length");
    }
    let mut out = s.clone();
    let mut ranges = Vec::new();
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], s.len())?;
        let (st, en, step) = (starts[k], ends[k], steps[k]);
        if step == 0 {
            return err("Slice step 0");
        }
        out[a] = match s[a].as_known() {
            Some(d) => {
                let (b, e) = slice_bounds(st, en, step, d);
                ranges.push((a, b, e, step));
                let (b, e, st) = (b as i128, e as i128, step as i128);
                let n = if st > 0 { (e - b + st - 1) / st } else { (b - e - st - 1) / -st };
                Dim::known(n.clamp(0, i64::MAX as i128) as i64)
            }
            None if st == 0 && step == 1 && en >= i32::MAX as i64 => s[a].clone(),
            None => cx.fresh(),
        };
    }
    let ints = match cx.ints(0) {
        Some(v) if s.len() == 1 && ranges.len() == 1 => {
            let (_, b, e, step) = ranges[0];
            let mut r = Vec::new();
            let mut i = b;
            while (step > 0 && i < e) || (step < 0 && i > e) {
                r.push(usize::try_from(i).ok().and_then(|i| v.get(i)).cloned());
                let Some(next) = i.checked_add(step) else { break };
                i = next;
            }
            r.into_iter().collect()
        }
        _ => None,
    };
    Ok(vec![Fact { ty: ty(dtype, Some(out)), ints }])
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

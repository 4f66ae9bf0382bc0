//! The ONNX ops of the closed set on tch tensors, with ONNX's semantics
//! (broadcasting, clamped slices, `0` and `-1` in reshapes, truncating
//! integer division, ...). ONNX Runtime's contrib ops and the quantisation
//! ops are in [`super::contrib`].

use super::{contrib, Fail, R};
use ecospac_ir::op::{BinaryOp, Conv, Gemm, LayerNorm, Reduce, Softmax, Split, UnaryOp};
use ecospac_ir::Op;
use tch::{Device, Kind, Tensor};

/// What a node runs with besides its inputs.
pub(crate) struct Cx<'a> {
    /// Where new tensors go.
    pub device: Device,
    /// Which outputs are read.
    pub wants: &'a [bool],
    /// Float32 matrix products run in bfloat16 (mixed precision).
    pub bf16: bool,
}

pub(crate) type Outs = Vec<Option<Tensor>>;

pub(crate) fn one(t: Tensor) -> R<Outs> {
    Ok(vec![Some(t)])
}

/// Input `i`, which the op requires.
pub(crate) fn need<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> R<&'a Tensor> {
    inputs.get(i).copied().flatten().ok_or_else(|| Fail(format!("input {i} is missing")))
}

/// Optional input `i`.
pub(crate) fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// The values of an integer (or float) tensor, read on the CPU.
pub(crate) fn ints(t: &Tensor) -> R<Vec<i64>> {
    let c = t.f_to_dtype(Kind::Int64, false, false)?.f_to(Device::Cpu)?.f_contiguous()?.f_reshape([-1])?;
    let n = usize::try_from(c.size().first().copied().unwrap_or(0)).map_err(|_| Fail("negative size".into()))?;
    let mut v = vec![0i64; n];
    if n > 0 {
        c.f_copy_data(&mut v, n)?;
    }
    Ok(v)
}

/// A scalar's value as f64.
pub(crate) fn scalar(t: &Tensor) -> R<f64> {
    let c = t.f_to_dtype(Kind::Double, false, false)?.f_to(Device::Cpu)?.f_reshape([-1])?;
    if c.size() != [1] {
        return Err(Fail(format!("expected one element, got shape {:?}", t.size())));
    }
    let mut v = [0f64];
    c.f_copy_data(&mut v, 1)?;
    Ok(v[0])
}

/// `axis` of a rank-`rank` tensor, negative counting from the end (the IR's own rule).
pub(crate) fn norm_axis(axis: i64, rank: usize) -> R<i64> {
    ecospac_ir::infer::norm_axis(axis, rank).map(|a| a as i64).map_err(|e| Fail(e.to_string()))
}

/// The axes a reduction runs over: `axes` normalised, every axis when empty,
/// or `None` (the input as it is) when empty and `noop_with_empty_axes`.
pub(crate) fn reduce_axes(t: &Tensor, axes: Vec<i64>, noop_with_empty_axes: bool) -> R<Option<Vec<i64>>> {
    let rank = t.dim();
    Ok(match (axes.is_empty(), noop_with_empty_axes) {
        (true, true) => None,
        (true, false) => Some((0..rank as i64).collect()),
        (false, _) => Some(axes.iter().map(|&a| norm_axis(a, rank)).collect::<R<_>>()?),
    })
}

/// The most elements a tensor whose shape the graph computes may have (2^32).
pub(crate) const MAX_ELEMENTS: u64 = 1 << 32;

/// Refuses a computed shape that is negative or larger than [`MAX_ELEMENTS`],
/// before anything is allocated for it.
pub(crate) fn check_numel(shape: &[i64]) -> R<()> {
    let mut n: u64 = 1;
    for &d in shape {
        let d = u64::try_from(d).map_err(|_| Fail(format!("shape {shape:?} has a negative dim")))?;
        n = n.saturating_mul(d);
    }
    if n > MAX_ELEMENTS {
        return Err(Fail(format!("shape {shape:?} has more than {MAX_ELEMENTS} elements")));
    }
    Ok(())
}

fn is_int(k: Kind) -> bool {
    matches!(k, Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64)
}

/// Runs one op.
pub(crate) fn run(op: &Op, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    match op {
        Op::MatMul => one(matmul(need(x, 0)?, need(x, 1)?, cx.bf16)?),
        Op::Gemm(g) => gemm(g, x, cx.bf16),
        Op::Conv(c) => conv(c, x),
        Op::Unary(u) => one(unary(*u, need(x, 0)?)?),
        Op::Binary(b) => one(binary(*b, need(x, 0)?, need(x, 1)?)?),
        Op::Where => one(need(x, 1)?.f_where_self(need(x, 0)?, need(x, 2)?)?),
        Op::Softmax(s) => one(softmax(s, need(x, 0)?)?),
        Op::LayerNorm(l) => layer_norm(l, x, cx),
        Op::ReduceMean(r) => one(reduce(r, x, false)?),
        Op::ReduceSum(r) => one(reduce(r, x, true)?),
        Op::Gelu(g) => one(need(x, 0)?.f_gelu(if g.tanh { "tanh" } else { "none" })?),
        Op::Quantize(q) => contrib::quantize(q, x),
        Op::Dequantize(q) => contrib::dequantize(q, x),
        Op::DynamicQuantize => contrib::dynamic_quantize(x),
        Op::MatMulInteger => contrib::matmul_integer(x),
        Op::SkipLayerNorm(s) => contrib::skip_layer_norm(s, x, cx),
        Op::ContribGelu(g) => contrib::gelu(g, x),
        Op::FusedAttention(a) => contrib::attention(a, x, cx),
        Op::EmbedLayerNorm(e) => contrib::embed_layer_norm(e, x, cx),
        Op::MatMulNBits(m) => contrib::matmul_nbits(m, x),
        Op::RotaryEmbedding(r) => contrib::rotary_embedding(r, x),
        // Requantised integer products round as ONNX Runtime's kernels do;
        // that is not reproduced here yet.
        Op::QLinear(q) => Err(Fail(format!(
            "`{}` (the quantised operator format) is not run by the libtorch executor yet",
            q.op_type()
        ))),
        Op::MultiHeadAttention(m) => contrib::multi_head_attention(m, x, cx),
        Op::GroupQueryAttention(g) => contrib::group_query_attention(g, x, cx),
        Op::Reshape { allowzero } => one(reshape(need(x, 0)?, &ints(need(x, 1)?)?, *allowzero)?),
        Op::Flatten { axis } => {
            let t = need(x, 0)?;
            let dims = t.size();
            let a = if *axis < 0 { axis + dims.len() as i64 } else { *axis };
            if !(0..=dims.len() as i64).contains(&a) {
                return Err(Fail(format!("axis {axis} is out of range for rank {}", dims.len())));
            }
            let (rows, cols) = dims.split_at(a as usize);
            one(t.f_reshape([rows.iter().product::<i64>(), cols.iter().product::<i64>()])?)
        }
        Op::Transpose { perm } => {
            let t = need(x, 0)?;
            let rank = t.dim() as i64;
            let perm = perm.clone().unwrap_or_else(|| (0..rank).rev().collect());
            one(t.f_permute(perm.as_slice())?)
        }
        Op::Split(s) => split(s, x, cx),
        Op::Slice => one(slice(x)?),
        Op::Concat { axis } => {
            let parts: Vec<&Tensor> = x.iter().flatten().copied().collect();
            let rank = parts.first().map_or(0, |t| t.dim());
            one(Tensor::f_cat(&parts, norm_axis(*axis, rank)?)?)
        }
        Op::Gather { axis } => one(gather(need(x, 0)?, need(x, 1)?, *axis)?),
        Op::Shape { start, end } => {
            let dims = need(x, 0)?.size();
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(r)));
            let taken = if s < e { &dims[s..e] } else { &[][..] };
            one(Tensor::f_from_slice(taken)?.f_to(cx.device)?)
        }
        Op::Squeeze { axes } => {
            let t = need(x, 0)?;
            let axes = match (axes, opt(x, 1)) {
                (Some(a), _) => Some(a.clone()),
                (None, Some(a)) => Some(ints(a)?),
                (None, None) => None,
            };
            let dims = t.size();
            let drop: Vec<usize> = match axes {
                None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
                Some(a) => a.iter().map(|&a| norm_axis(a, dims.len()).map(|a| a as usize)).collect::<R<_>>()?,
            };
            if let Some(&bad) = drop.iter().find(|&&i| dims[i] != 1) {
                return Err(Fail(format!("axis {bad} has size {}, not 1", dims[bad])));
            }
            let kept: Vec<i64> = (0..dims.len()).filter(|i| !drop.contains(i)).map(|i| dims[i]).collect();
            one(t.f_reshape(kept.as_slice())?)
        }
        Op::Unsqueeze { axes } => {
            let t = need(x, 0)?;
            let axes = match (axes, opt(x, 1)) {
                (Some(a), _) => a.clone(),
                (None, Some(a)) => ints(a)?,
                (None, None) => return Err(Fail("no axes".into())),
            };
            let dims = t.size();
            let rank = dims.len() + axes.len();
            let mut new: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank).map(|a| a as usize)).collect::<R<_>>()?;
            new.sort_unstable();
            let mut it = dims.iter();
            let shape: Vec<i64> =
                (0..rank).map(|i| if new.contains(&i) { 1 } else { it.next().copied().unwrap_or(1) }).collect();
            one(t.f_reshape(shape.as_slice())?)
        }
        Op::Expand => {
            let t = need(x, 0)?;
            let shape = broadcast(&t.size(), &ints(need(x, 1)?)?)?;
            check_numel(&shape)?;
            one(t.f_expand(shape.as_slice(), false)?)
        }
        Op::Cast(c) => {
            let kind = super::kind_of(c.to).map_err(|e| Fail(e.0))?;
            one(need(x, 0)?.f_to_dtype(kind, false, false)?)
        }
        Op::Constant { value, .. } => one(super::to_tch(value, cx.device).map_err(|e| Fail(e.0))?),
        Op::ConstantOfShape { value } => {
            let shape = ints(need(x, 0)?)?;
            check_numel(&shape)?;
            let fill = match value {
                Some(v) => super::to_tch(v, cx.device).map_err(|e| Fail(e.0))?,
                None => Tensor::f_zeros([1], (Kind::Float, cx.device))?,
            };
            one(fill.f_reshape([-1])?.f_reshape([])?.f_expand(shape.as_slice(), false)?.f_contiguous()?)
        }
        Op::Range => one(range(need(x, 0)?, need(x, 1)?, need(x, 2)?, cx.device)?),
        Op::Opaque(o) => contrib::opaque(o, x),
    }
}

/// `a @ b`; float32 operands multiply in bfloat16 when `bf16` (the result stays float32).
pub(crate) fn matmul(a: &Tensor, b: &Tensor, bf16: bool) -> R<Tensor> {
    if bf16 && a.kind() == Kind::Float && b.kind() == Kind::Float {
        let (a, b) = (a.f_to_kind(Kind::BFloat16)?, b.f_to_kind(Kind::BFloat16)?);
        return Ok(a.f_matmul(&b)?.f_to_kind(Kind::Float)?);
    }
    Ok(a.f_matmul(b)?)
}

fn gemm(g: &Gemm, x: &[Option<&Tensor>], bf16: bool) -> R<Outs> {
    let a = need(x, 0)?;
    let b = need(x, 1)?;
    let a = if g.trans_a { a.f_tr()? } else { a.shallow_clone() };
    let b = if g.trans_b { b.f_tr()? } else { b.shallow_clone() };
    let mut y = matmul(&a, &b, bf16)?;
    if g.alpha != 1.0 {
        y = y.f_mul_scalar(f64::from(g.alpha))?;
    }
    if let Some(c) = opt(x, 2) {
        let c = if g.beta != 1.0 { c.f_mul_scalar(f64::from(g.beta))? } else { c.shallow_clone() };
        y = y.f_add(&c)?;
    }
    one(y)
}

fn conv(c: &Conv, x: &[Option<&Tensor>]) -> R<Outs> {
    let input = need(x, 0)?;
    let w = need(x, 1)?;
    let wd = w.size();
    let n = wd.len().checked_sub(2).ok_or_else(|| Fail("the weight has rank < 3".into()))?;
    let kernel = c.kernel_shape.clone().unwrap_or_else(|| wd[2..].to_vec());
    let strides = c.strides.clone().unwrap_or_else(|| vec![1; n]);
    let dil = c.dilations.clone().unwrap_or_else(|| vec![1; n]);
    let inp = input.size();
    if kernel.len() != n || strides.len() != n || dil.len() != n || inp.len() != n + 2 {
        return Err(Fail("kernel, strides, dilations and input disagree on the spatial rank".into()));
    }
    // Pads, begins then ends.
    let pads: Vec<i64> = match c.auto_pad.as_slice() {
        b"" | b"NOTSET" => c.pads.clone().unwrap_or_else(|| vec![0; 2 * n]),
        b"VALID" => vec![0; 2 * n],
        mode @ (b"SAME_UPPER" | b"SAME_LOWER") => {
            let mut p = vec![0; 2 * n];
            for i in 0..n {
                let out = (inp[i + 2] + strides[i] - 1) / strides[i].max(1);
                let total = ((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - inp[i + 2]).max(0);
                let small = total / 2;
                let (b, e) = if mode == b"SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                p[i] = b;
                p[i + n] = e;
            }
            p
        }
        other => return Err(Fail(format!("auto_pad {:?} is not an ONNX mode", String::from_utf8_lossy(other)))),
    };
    if pads.len() != 2 * n {
        return Err(Fail("pads do not match the spatial rank".into()));
    }
    let (begin, end) = pads.split_at(n);
    let (input, padding) = if begin == end {
        (input.shallow_clone(), begin.to_vec())
    } else {
        // torch pads symmetrically; pad the input first (last axis first).
        let torch_pads: Vec<i64> = (0..n).rev().flat_map(|i| [begin[i], end[i]]).collect();
        (input.f_constant_pad_nd(torch_pads.as_slice())?, vec![0; n])
    };
    let y = input.f_convolution(
        w,
        opt(x, 2),
        strides.as_slice(),
        padding.as_slice(),
        dil.as_slice(),
        false,
        vec![0; n].as_slice(),
        c.group,
    )?;
    one(y)
}

fn unary(u: UnaryOp, t: &Tensor) -> R<Tensor> {
    use UnaryOp::*;
    Ok(match u {
        Identity => t.shallow_clone(),
        Neg => t.f_neg()?,
        Abs => t.f_abs()?,
        Sqrt => t.f_sqrt()?,
        Reciprocal => t.f_reciprocal()?,
        Exp => t.f_exp()?,
        Log => t.f_log()?,
        Tanh => t.f_tanh()?,
        Erf => t.f_erf()?,
        Sigmoid => t.f_sigmoid()?,
        Relu => t.f_relu()?,
        Cos => t.f_cos()?,
        Sin => t.f_sin()?,
        Floor => t.f_floor()?,
        Ceil => t.f_ceil()?,
        Not => t.f_logical_not()?,
        IsNaN => t.f_isnan()?,
    })
}

fn binary(b: BinaryOp, a: &Tensor, c: &Tensor) -> R<Tensor> {
    use BinaryOp::*;
    let kind = a.f_kind()?;
    let y = match b {
        Add => a.f_add(c)?,
        Sub => a.f_sub(c)?,
        Mul => a.f_mul(c)?,
        Div if is_int(kind) => a.f_div_tensor_mode(c, "trunc")?,
        Div => a.f_div(c)?,
        Pow => a.f_pow(c)?,
        Max => a.f_maximum(c)?,
        Min => a.f_minimum(c)?,
        Equal => return Ok(a.f_eq_tensor(c)?),
        Less => return Ok(a.f_lt_tensor(c)?),
        LessOrEqual => return Ok(a.f_le_tensor(c)?),
        Greater => return Ok(a.f_gt_tensor(c)?),
        GreaterOrEqual => return Ok(a.f_ge_tensor(c)?),
        And => return Ok(a.f_logical_and(c)?),
        Or => return Ok(a.f_logical_or(c)?),
    };
    // ONNX keeps the first input's type (torch would promote, e.g. int ^ float).
    Ok(if y.f_kind()? == kind { y } else { y.f_to_dtype(kind, false, false)? })
}

fn softmax(s: &Softmax, t: &Tensor) -> R<Tensor> {
    let dims = t.size();
    let axis = norm_axis(s.axis, dims.len())?;
    if s.coerce_2d {
        let rows: i64 = dims[..axis as usize].iter().product();
        Ok(t.f_reshape([rows, -1])?.f_softmax(1, None::<Kind>)?.f_reshape(dims.as_slice())?)
    } else {
        Ok(t.f_softmax(axis, None::<Kind>)?)
    }
}

/// Normalises `t` over its last `k` axes; returns (normalised, mean, 1/std).
pub(crate) fn normalise(t: &Tensor, k: usize, eps: f64, rms: bool) -> R<(Tensor, Tensor, Tensor)> {
    let rank = t.dim() as i64;
    let axes: Vec<i64> = (rank - k as i64..rank).collect();
    let mean = if rms {
        Tensor::f_zeros([1], (t.f_kind()?, t.device()))?
    } else {
        t.f_mean_dim(axes.as_slice(), true, None::<Kind>)?
    };
    let d = if rms { t.shallow_clone() } else { t.f_sub(&mean)? };
    let var = d.f_mul(&d)?.f_mean_dim(axes.as_slice(), true, None::<Kind>)?;
    let inv = var.f_add_scalar(eps)?.f_rsqrt()?;
    Ok((d.f_mul(&inv)?, mean, inv))
}

fn layer_norm(l: &LayerNorm, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    let t = need(x, 0)?;
    let scale = need(x, 1)?;
    let rank = t.dim();
    let axis = norm_axis(l.axis, rank)? as usize;
    let kind = t.f_kind()?;
    let stats = if l.stash_type == 1 && kind != Kind::Double { Kind::Float } else { kind };
    let wants_stats = cx.wants.iter().skip(1).any(|&w| w);
    let dims = t.size();
    // The native kernel when the scale and bias span exactly the normalised axes.
    if !wants_stats
        && !l.simplified
        && stats == kind
        && scale.size() == dims[axis..]
        && opt(x, 2).is_none_or(|b| b.size() == dims[axis..])
    {
        return one(t.f_layer_norm(&dims[axis..], Some(scale), opt(x, 2), f64::from(l.epsilon), false)?);
    }
    let stat = t.f_to_dtype(stats, false, false)?;
    let (y, mean, inv) = normalise(&stat, rank - axis, f64::from(l.epsilon), l.simplified)?;
    let mut y = y.f_to_dtype(kind, false, false)?.f_mul(scale)?;
    if let Some(b) = opt(x, 2) {
        y = y.f_add(b)?;
    }
    // The simplified form's second output is the inverse RMS.
    Ok(if l.simplified { vec![Some(y), Some(inv)] } else { vec![Some(y), Some(mean), Some(inv)] })
}

/// `ReduceMean`, or `ReduceSum` when `sum`.
fn reduce(r: &Reduce, x: &[Option<&Tensor>], sum: bool) -> R<Tensor> {
    let t = need(x, 0)?;
    let axes = match (&r.axes, opt(x, 1)) {
        (Some(a), _) => a.clone(),
        (None, Some(a)) => ints(a)?,
        (None, None) => Vec::new(),
    };
    let Some(axes) = reduce_axes(t, axes, r.noop_with_empty_axes)? else { return Ok(t.shallow_clone()) };
    let kind = t.f_kind()?;
    if sum {
        return Ok(t.f_sum_dim_intlist(axes.as_slice(), r.keepdims, kind)?);
    }
    let y = t.f_mean_dim(axes.as_slice(), r.keepdims, if is_int(kind) { Some(Kind::Double) } else { None })?;
    Ok(if y.f_kind()? == kind { y } else { y.f_to_dtype(kind, false, false)? })
}

/// ONNX `Reshape`: `0` copies the input's dim (unless `allowzero`), `-1` is inferred.
fn reshape(t: &Tensor, target: &[i64], allowzero: bool) -> R<Tensor> {
    let dims = t.size();
    let shape: Vec<i64> = target
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 0 && !allowzero { dims.get(i).copied().ok_or(()) } else { Ok(d) })
        .collect::<Result<_, ()>>()
        .map_err(|()| Fail(format!("target {target:?} copies a dim the input {dims:?} does not have")))?;
    Ok(t.f_reshape(shape.as_slice())?)
}

/// Bidirectional broadcast of two shapes (ONNX `Expand`).
pub(crate) fn broadcast(a: &[i64], b: &[i64]) -> R<Vec<i64>> {
    let n = a.len().max(b.len());
    let at = |s: &[i64], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(Fail(format!("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})"))),
        })
        .collect()
}

fn split(s: &Split, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    let t = need(x, 0)?;
    let dims = t.size();
    let axis = norm_axis(s.axis, dims.len())?;
    let len = dims[axis as usize];
    let parts = cx.wants.len() as i64;
    let sizes: Vec<i64> = match (opt(x, 1), &s.split, s.num_outputs) {
        (Some(sz), _, _) => ints(sz)?,
        (None, Some(sz), _) => sz.clone(),
        (None, None, Some(k)) if k > 0 && k == parts => {
            let chunk = (len + k - 1) / k;
            (0..k).map(|i| (len - i * chunk).clamp(0, chunk)).collect()
        }
        (None, None, Some(k)) => return Err(Fail(format!("num_outputs {k} for {parts} outputs"))),
        _ if parts > 0 && len % parts == 0 => vec![len / parts; parts as usize],
        _ => return Err(Fail(format!("{len} does not split into {parts} equal parts"))),
    };
    if sizes.iter().sum::<i64>() != len || sizes.len() != cx.wants.len() {
        return Err(Fail(format!("split sizes {sizes:?} do not cover {len} in {} outputs", cx.wants.len())));
    }
    Ok(t.f_split_with_sizes(sizes.as_slice(), axis)?.into_iter().map(Some).collect())
}

/// ONNX `Slice` (opset ≥ 10): starts and ends clamped per the spec, any step.
fn slice(x: &[Option<&Tensor>]) -> R<Tensor> {
    let t = need(x, 0)?;
    let starts = ints(need(x, 1)?)?;
    let ends = ints(need(x, 2)?)?;
    let rank = t.dim();
    let axes = match opt(x, 3) {
        Some(a) => ints(a)?.iter().map(|&a| norm_axis(a, rank)).collect::<R<Vec<_>>>()?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match opt(x, 4) {
        Some(s) => ints(s)?,
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(Fail("starts, ends, axes and steps differ in length".into()));
    }
    let mut y = t.shallow_clone();
    for i in 0..starts.len() {
        let dim = y.size()[axes[i] as usize];
        let step = steps[i];
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (fix(starts[i]), fix(ends[i]));
        y = if step > 0 {
            let (s, e) = (s.clamp(0, dim), e.clamp(0, dim));
            y.f_slice(axes[i], s, e.max(s), step)?
        } else if step < 0 {
            let (s, e) = (s.clamp(0, dim - 1), e.clamp(-1, dim - 1));
            let back = step.checked_neg().ok_or_else(|| Fail(format!("step {step}")))?;
            let n = if s > e { (s - e).saturating_add(back - 1) / back } else { 0 };
            let idx = Tensor::f_arange(n, (Kind::Int64, y.device()))?.f_mul_scalar(step)?.f_add_scalar(s)?;
            y.f_index_select(axes[i], &idx)?
        } else {
            return Err(Fail("a step is 0".into()));
        };
    }
    Ok(y)
}

fn gather(data: &Tensor, idx: &Tensor, axis: i64) -> R<Tensor> {
    let dims = data.size();
    let axis = norm_axis(axis, dims.len())?;
    let len = dims[axis as usize];
    let idx = idx.f_to_dtype(Kind::Int64, false, false)?;
    let idx = idx.f_where_self(&idx.f_ge(0)?, &idx.f_add_scalar(len)?)?;
    let picked = data.f_index_select(axis, &idx.f_reshape([-1])?)?;
    let mut shape = dims[..axis as usize].to_vec();
    shape.extend(idx.size());
    shape.extend(&dims[axis as usize + 1..]);
    Ok(picked.f_reshape(shape.as_slice())?)
}

/// ONNX `Range`: `start + i · delta` for `i < max(ceil((limit - start) / delta), 0)`.
fn range(start: &Tensor, limit: &Tensor, delta: &Tensor, device: Device) -> R<Tensor> {
    let kind = start.f_kind()?;
    let (s, l, d) = (scalar(start)?, scalar(limit)?, scalar(delta)?);
    if d == 0.0 {
        return Err(Fail("delta is 0".into()));
    }
    let n = ((l - s) / d).ceil().max(0.0);
    if n.is_nan() || n > MAX_ELEMENTS as f64 {
        return Err(Fail(format!("{n} elements, over the {MAX_ELEMENTS} a computed shape may have")));
    }
    let i = Tensor::f_arange(n as i64, (kind, device))?;
    Ok(i.f_mul(&delta.f_to(device)?)?.f_add(&start.f_to(device)?)?.f_to_dtype(kind, false, false)?)
}

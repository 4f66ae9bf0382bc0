//! Elementwise ops (one input, two broadcast inputs, `Where`, `Cast`, the
//! GELU family, `Expand`): their output facts and axis relations.

use super::*;

/// A one-input elementwise op: the input's shape; `Identity` and `Neg` pass integer elements on.
pub(crate) fn unary(u: &UnaryOp, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// A broadcasting two-input op: the broadcast shape; integer elements are folded.
pub(crate) fn binary(b: &BinaryOp, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Where`: the broadcast shape; elements follow the branch the condition takes.
pub(crate) fn where_(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Cast`: the input's shape in the new type; integer elements pass on.
pub(crate) fn cast(c: &Cast, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let ints = if is_int(Some(c.to)) { cx.ints(0).map(<[Dim]>::to_vec) } else { None };
    one(ty(Some(c.to), cx.shape(0).map(<[Dim]>::to_vec)), ints)
}

/// `Expand`: the input broadcast to the target shape.
pub(crate) fn expand(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let shape = match (cx.shape(0), cx.ints(1)) {
        (Some(s), Some(t)) => Some(broadcast(&[s, t])?),
        (Some(s), None) => cx.len_1d(1)?.map(|n| n.max(s.len())).map(|n| cx.fresh_dims(n)),
        _ => None,
    };
    one(ty(cx.dtype(0), shape), None)
}

/// The GELU family: the input's type.
pub(crate) fn gelu(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    one(cx.input(0).and_then(|f| f.ty.clone()), None)
}

/// Elementwise ops (and `Expand`, of its data input): each input axis that is not broadcast from 1
/// is the output's.
pub(crate) fn broadcasting(data_inputs: usize, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    for i in 0..data_inputs {
        match io.in_shape(i) {
            Some(s) => broadcast_rels(i, s, 0, o0, &mut r),
            None => return pin_all(io.ins, io.outs, PinReason::UnknownShape),
        }
    }
    r
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

//! Ops that make new data (`Shape`, `Constant`, `ConstantOfShape`, `Range`):
//! their output facts. Their outputs relate to no input axis; sizes they take
//! from inputs are checked by the slicer.

use super::*;

/// `Shape`: a 1-D int64 of the dims taken, whose elements are those dims.
pub(crate) fn shape(start: &Option<i64>, end: &Option<i64>, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Constant`: its tensor.
pub(crate) fn constant(value: &Tensor, _: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    Ok(vec![Fact::of_tensor(value)])
}

/// `ConstantOfShape`: the shape its input holds, of its value's type.
pub(crate) fn constant_of_shape(value: &Option<Tensor>, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let dtype = value.as_ref().map_or(DType::F32, |v| v.dtype);
    let shape = match cx.ints(0) {
        Some(t) => Some(t.to_vec()),
        None => cx.len_1d(0)?.map(|n| cx.fresh_dims(n)),
    };
    let ints = match (&shape, value.as_ref().and_then(|v| v.to_i64s())) {
        (Some(s), Some(v)) if s.len() == 1 && is_int(Some(dtype)) => {
            s[0].as_known().filter(|&n| n as usize <= MAX_TRACKED_INTS).map(|n| vec![Dim::known(v[0]); n as usize])
        }
        _ => None,
    };
    one(Some(TensorTy { dtype, shape }), ints)
}

/// `Range`: one axis of the count the bounds give; known bounds give the elements.
pub(crate) fn range(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

//! Normalisations and reductions (`Softmax`, `LayerNormalization`,
//! `SkipLayerNormalization`, `ReduceMean`, `ReduceSum`): their output facts
//! and axis relations.

use super::*;

/// `Softmax`: the input's type.
pub(crate) fn softmax(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    one(cx.input(0).and_then(|f| f.ty.clone()), None)
}

/// `LayerNormalization`: the input's type; the mean and inverse deviation keep the axes before
/// `axis`.
pub(crate) fn layer_norm(l: &LayerNorm, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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
    for _ in 1..cx.num_outputs {
        outs.push(Fact::of_ty(ty(stat_dtype, stat_shape.clone())));
    }
    Ok(outs)
}

/// `SkipLayerNormalization`: the input's type; the statistics have 1 as their last axis.
pub(crate) fn skip_layer_norm(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let x = cx.input(0).and_then(|f| f.ty.clone());
    let stat_shape = cx.shape(0).map(|s| {
        let n = s.len();
        s.iter().enumerate().map(|(i, d)| if i + 1 == n { Dim::known(1) } else { d.clone() }).collect()
    });
    Ok((0..cx.num_outputs)
        .map(|o| match o {
            1 | 2 => Fact::of_ty(ty(Some(DType::F32), stat_shape.clone())),
            _ => Fact::of_ty(x.clone()),
        })
        .collect())
}

/// `ReduceMean` / `ReduceSum`: the input less (or with 1 at) the reduced axes.
pub(crate) fn reduce(r: &Reduce, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Softmax`: the normalised axis (and, coerced to 2-D, those after it) is pinned; the rest pass
/// on.
pub(crate) fn softmax_axes(s: &Softmax, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Ok(a) = norm_axis(s.axis, o0.len()) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    for k in 0..o0.len() {
        if k == a || (s.coerce_2d && k > a) {
            r.push(pin(0, k, PinReason::Normalised));
            r.push(pin_out(0, k, PinReason::Normalised));
        } else {
            r.push(same(0, k, 0, k));
        }
    }
    r
}

/// `LayerNormalization`: the normalised axes are pinned, the others pass to every output.
pub(crate) fn layer_norm_axes(l: &LayerNorm, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Ok(a) = norm_axis(l.axis, o0.len()) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    for k in 0..o0.len() {
        if k >= a {
            r.push(pin(0, k, PinReason::Normalised));
            r.push(pin_out(0, k, PinReason::Normalised));
        } else {
            r.push(same(0, k, 0, k));
            for o in 1..io.outs.len() {
                r.push(same(0, k, o, k));
            }
        }
    }
    for i in 1..io.ins.len() {
        for k in 0..io.in_shape(i).map_or(0, <[Dim]>::len) {
            r.push(pin(i, k, PinReason::Normalised));
        }
    }
    r
}

/// `SkipLayerNormalization`: input + skip (+ bias) broadcast to the sum's shape, normalised over
/// the last axis.
pub(crate) fn skip_layer_norm_axes(l: &SkipLayerNorm, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    // input + skip (+ bias) broadcast to the sum's shape, normalised over the last axis.
    let last = o0.len().saturating_sub(1);
    let sums: Vec<usize> = [0usize, 3].into_iter().filter(|&o| o < io.outs.len()).collect();
    for i in 0..io.ins.len() {
        if io.ins.get(i).is_some_and(Option::is_none) {
            continue; // an omitted optional input (beta before a bias)
        }
        let Some(s) = io.in_shape(i) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
        let summed = i < 2 || i == if l.simplified { 3 } else { 4 };
        for k in 0..s.len() {
            // Inputs are right-aligned with the output (numpy broadcasting).
            let ko = k + o0.len().saturating_sub(s.len());
            if ko == last || !summed {
                r.push(pin(i, k, PinReason::Normalised));
            } else if s[k] == o0[ko] {
                for &o in &sums {
                    r.push(same(i, k, o, ko));
                }
            } else {
                r.push(pin(i, k, PinReason::UnknownShape));
            }
        }
    }
    for o in 0..io.outs.len() {
        for k in 0..io.out_shape(o).map_or(0, <[Dim]>::len) {
            if k == last {
                r.push(pin_out(o, k, PinReason::Normalised));
            } else if o == 1 || o == 2 {
                r.push(same(0, k, o, k));
            }
        }
    }
    r
}

/// `ReduceMean` / `ReduceSum`: the reduced axes are pinned, the others pass on.
pub(crate) fn reduce_axes(red: &Reduce, io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Some(s) = io.in_shape(0) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    let axes = match &red.axes {
        Some(a) => Some(a.clone()),
        None => io.ins.get(1).and_then(Option::as_ref).and_then(Fact::known_ints),
    };
    let Some(axes) = axes else { return pin_all(io.ins, io.outs, PinReason::Reduced) };
    let axes: Vec<usize> = if axes.is_empty() {
        (0..s.len()).collect()
    } else {
        axes.iter().filter_map(|&a| norm_axis(a, s.len()).ok()).collect()
    };
    let mut k = 0;
    for j in 0..s.len() {
        if axes.contains(&j) {
            r.push(pin(0, j, PinReason::Reduced));
            if red.keepdims {
                k += 1;
            }
        } else {
            r.push(same(0, j, 0, k));
            k += 1;
        }
    }
    r
}

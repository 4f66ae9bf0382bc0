//! Ops that move data or shapes (`Reshape`, `Flatten`, `Transpose`, `Split`,
//! `Slice`, `Concat`, `Gather`, `Squeeze`, `Unsqueeze`): their output facts
//! and axis relations.

use super::*;

/// `Reshape`: the target, with 0 (unless `allowzero`) and -1 resolved.
pub(crate) fn reshape(allowzero: &bool, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let shape = match (cx.shape(0), cx.ints(1)) {
        (Some(inp), Some(target)) => Some(reshape_shape(inp, target, *allowzero, cx)?),
        (_, Some(target)) if !target.iter().any(|d| d.as_known().is_some_and(|v| v <= 0)) => Some(target.to_vec()),
        _ => cx.len_1d(1)?.map(|n| cx.fresh_dims(n)),
    };
    let ints = cx.ints(0).map(<[Dim]>::to_vec).filter(|_| shape.as_ref().is_some_and(|s| s.len() <= 1));
    one(ty(cx.dtype(0), shape), ints)
}

/// `Transpose`: the input's dims permuted.
pub(crate) fn transpose(perm: &Option<Vec<i64>>, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Flatten`: two dims, the products before and from `axis`.
pub(crate) fn flatten(axis: &i64, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Split`: the input with the split axis cut into the sizes given (or equal parts); a shape
/// vector's elements go to the pieces.
pub(crate) fn split(sp: &Split, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let Some(s) = cx.shape(0).map(<[Dim]>::to_vec) else {
        return Ok(vec![Fact::of_ty(ty(cx.dtype(0), None)); cx.num_outputs]);
    };
    let a = norm_axis(sp.axis, s.len())?;
    let sizes: Option<Vec<Dim>> = if let Some(split) = &sp.split {
        Some(split.iter().map(|&v| Dim::known(v)).collect())
    } else if cx.input(1).is_some() {
        cx.ints(1).map(<[Dim]>::to_vec)
    } else {
        let n = cx.num_outputs as i64;
        match s[a].as_known() {
            Some(d) => {
                let chunk = (d + n - 1) / n.max(1);
                Some((0..n).map(|i| Dim::known(chunk.min(d - chunk * i).max(0))).collect())
            }
            None => s[a].div_exact(&Dim::known(n)).map(|c| vec![c; cx.num_outputs]),
        }
    };
    let sizes = match sizes {
        Some(v) if v.len() == cx.num_outputs => v,
        Some(v) => return err(format!("Split into {} sizes but {} outputs", v.len(), cx.num_outputs)),
        None => cx.fresh_dims(cx.num_outputs),
    };
    if let (Some(total), Some(parts)) = (s[a].as_known(), sizes.iter().map(Dim::as_known).sum::<Option<i64>>()) {
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

/// `Concat`: the inputs joined along `axis`; shape vectors concatenate their elements.
pub(crate) fn concat(axis: &i64, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let n = cx.inputs.len();
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
                    let nonzero: Vec<&Dim> = shapes.iter().map(|s| &s[a]).filter(|d| d.as_known() != Some(0)).collect();
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

/// `Gather`: the data with its indexed axis replaced by the indices' dims; gathered shape elements
/// are known.
pub(crate) fn gather(axis: &i64, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Squeeze` (`squeeze`) / `Unsqueeze`: the input without / with the given axes of 1.
pub(crate) fn squeeze(axes: &Option<Vec<i64>>, squeeze: bool, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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
            Some(s.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect::<Vec<Dim>>())
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
                    .map(
                        |i| {
                            if axes.contains(&i) {
                                Dim::known(1)
                            } else {
                                src.next().cloned().unwrap_or(Dim::known(1))
                            }
                        },
                    )
                    .collect(),
            )
        }
        None => None,
    };
    let ints = cx.ints(0).map(<[Dim]>::to_vec).filter(|_| shape.as_ref().is_some_and(|s| s.len() <= 1));
    one(ty(cx.dtype(0), shape), ints)
}

/// `Transpose`: each output axis is the permuted input axis.
pub(crate) fn transpose_axes(perm: &Option<Vec<i64>>, _: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let n = o0.len();
    let perm: Vec<i64> = perm.clone().unwrap_or_else(|| (0..n as i64).rev().collect());
    for (k, &p) in perm.iter().enumerate() {
        r.push(same(0, p as usize, 0, k));
    }
    r
}

/// `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`: runs of axes with equal products relate (one to
/// one, or as a product); shapes that do not group pin every axis.
pub(crate) fn reshape_axes(io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Some(s) = io.in_shape(0) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    match reshape_groups(s, o0) {
        Some(groups) => {
            for (ga, gb) in groups {
                let sa: Vec<Slot> = ga.iter().map(|&axis| Slot { port: Port::In(0), axis }).collect();
                let sb: Vec<Slot> = gb.iter().map(|&axis| Slot { port: Port::Out(0), axis }).collect();
                if sa.len() == 1 && sb.len() == 1 {
                    r.push(AxisRel::Same(sa[0], sb[0]));
                } else {
                    r.push(AxisRel::Product(sa, sb));
                }
            }
        }
        None => {
            for j in 0..s.len() {
                r.push(pin(0, j, PinReason::UngroupedReshape));
            }
            for k in 0..o0.len() {
                r.push(pin_out(0, k, PinReason::UngroupedReshape));
            }
        }
    }
    r
}

/// `Split`: the split axis is the concatenation of the outputs' axes; the others pass to each
/// output.
pub(crate) fn split_axes(sp: &Split, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Ok(a) = norm_axis(sp.axis, o0.len()) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    let mut parts = Vec::new();
    for o in 0..io.outs.len() {
        if io.out_shape(o).is_none() {
            return pin_all(io.ins, io.outs, PinReason::UnknownShape);
        }
        parts.push(Part::Slot(Slot { port: Port::Out(o), axis: a }));
        for k in 0..o0.len() {
            if k != a {
                r.push(same(0, k, o, k));
            }
        }
    }
    r.push(AxisRel::Concat { whole: Slot { port: Port::In(0), axis: a }, parts });
    r
}

/// `Concat`: the output's axis is the concatenation of the inputs' (empty ones left out); the
/// others pass on.
pub(crate) fn concat_axes(axis: &i64, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Ok(a) = norm_axis(*axis, o0.len()) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    let mut parts = Vec::new();
    for i in 0..io.ins.len() {
        let Some(s) = io.in_shape(i) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
        if s.get(a).and_then(Dim::as_known) == Some(0) {
            continue;
        }
        parts.push(Part::Slot(Slot { port: Port::In(i), axis: a }));
        for k in 0..o0.len() {
            if k != a {
                r.push(same(i, k, 0, k));
            }
        }
    }
    r.push(AxisRel::Concat { whole: Slot { port: Port::Out(0), axis: a }, parts });
    r
}

/// `Slice` with known bounds and steps of 1: the kept run of each sliced axis, with gaps before and
/// after; other bounds pin the axis.
pub(crate) fn slice_axes(io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Some(s) = io.in_shape(0) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    let known = |i: usize| io.ins.get(i).and_then(Option::as_ref).and_then(Fact::known_ints);
    let (starts, ends) = (known(1), known(2));
    let axes = if io.ins.get(3).is_some_and(Option::is_some) {
        known(3)
    } else {
        starts.as_ref().map(|v| (0..v.len() as i64).collect())
    };
    let steps =
        if io.ins.get(4).is_some_and(Option::is_some) { known(4) } else { starts.as_ref().map(|v| vec![1; v.len()]) };
    let (Some(starts), Some(ends), Some(axes), Some(steps)) = (starts, ends, axes, steps) else {
        return pin_all(io.ins, io.outs, PinReason::IrregularSlice);
    };
    let mut sliced = vec![false; s.len()];
    for k in 0..starts.len().min(ends.len()).min(axes.len()).min(steps.len()) {
        let Ok(a) = norm_axis(axes[k], s.len()) else { return pin_all(io.ins, io.outs, PinReason::IrregularSlice) };
        sliced[a] = true;
        match (s[a].as_known(), steps[k]) {
            (Some(d), 1) => {
                let (b, e) = slice_bounds(starts[k], ends[k], 1, d);
                let e = e.max(b);
                let mut parts = Vec::new();
                if b > 0 {
                    parts.push(Part::Gap(b));
                }
                if e > b {
                    parts.push(Part::Slot(Slot { port: Port::Out(0), axis: a }));
                }
                if d > e {
                    parts.push(Part::Gap(d - e));
                }
                r.push(AxisRel::Concat { whole: Slot { port: Port::In(0), axis: a }, parts });
            }
            (None, 1) if starts[k] == 0 && ends[k] >= i32::MAX as i64 => r.push(same(0, a, 0, a)),
            _ => {
                r.push(pin(0, a, PinReason::IrregularSlice));
                r.push(pin_out(0, a, PinReason::IrregularSlice));
            }
        }
    }
    for (j, &was) in sliced.iter().enumerate() {
        if !was {
            r.push(same(0, j, 0, j));
        }
    }
    r
}

/// `Gather`: the indexed axis is pinned; the data's other axes and the indices' dims pass on.
pub(crate) fn gather_axes(axis: &i64, io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let (Some(d), Some(i)) = (io.in_shape(0), io.in_shape(1)) else {
        return pin_all(io.ins, io.outs, PinReason::UnknownShape);
    };
    let Ok(a) = norm_axis(*axis, d.len()) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    r.push(pin(0, a, PinReason::Indexed));
    for j in 0..a {
        r.push(same(0, j, 0, j));
    }
    for j in 0..i.len() {
        r.push(same(1, j, 0, a + j));
    }
    for j in a + 1..d.len() {
        r.push(same(0, j, 0, j - 1 + i.len()));
    }
    r
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

pub(crate) fn slice(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// Groups the dims of a reshape: runs of input axes and output axes with equal
/// products. Axes of size 1 are left out. `None` when the shapes do not group.
pub fn reshape_groups(a: &[Dim], b: &[Dim]) -> Option<Vec<(Vec<usize>, Vec<usize>)>> {
    let one = Dim::known(1);
    let ia: Vec<usize> = (0..a.len()).filter(|&i| a[i] != one).collect();
    let ib: Vec<usize> = (0..b.len()).filter(|&i| b[i] != one).collect();
    let (mut p, mut q) = (0, 0);
    let mut groups = Vec::new();
    while p < ia.len() || q < ib.len() {
        let (mut ga, mut gb) = (vec![], vec![]);
        let (mut pa, mut pb) = (Dim::known(1), Dim::known(1));
        loop {
            // Grow the side that must grow; when neither product divides the other, grow both.
            let (grow_a, grow_b) = if ga.is_empty() || gb.is_empty() {
                (ga.is_empty(), gb.is_empty())
            } else {
                match (grows(&pa, &pb), grows(&pb, &pa)) {
                    (false, false) => (true, true),
                    other => other,
                }
            };
            if grow_a {
                let i = *ia.get(p)?;
                pa = pa.mul(&a[i]);
                ga.push(i);
                p += 1;
            }
            if grow_b {
                let i = *ib.get(q)?;
                pb = pb.mul(&b[i]);
                gb.push(i);
                q += 1;
            }
            if pa == pb {
                break;
            }
        }
        groups.push((ga, gb));
    }
    Some(groups)
}

/// True when `small` must grow to reach `big` (it divides `big` and is smaller).
fn grows(small: &Dim, big: &Dim) -> bool {
    big.div_exact(small).is_some_and(|q| q != Dim::known(1))
}

//! Products (`MatMul`, `Gemm`, `MatMulInteger`) and `Conv`: their output
//! facts and axis relations.

use super::*;

/// `MatMul` of real numbers: numpy's matrix product shape.
pub(crate) fn matmul(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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

/// `Gemm`: `[M, N]` of 2-D inputs, transposed as the attributes say.
pub(crate) fn gemm(g: &Gemm, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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
        (Some(a), Some(b)) => return err(format!("Gemm needs 2-D inputs, got ranks {} and {}", a.len(), b.len())),
        _ => None,
    };
    one(ty(cx.dtype(0), shape), None)
}

/// `MatMulInteger`: int32 of the product's shape; zero points one, or one per row of A / column of
/// B.
pub(crate) fn matmul_integer(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    for i in 0..cx.inputs.len().min(4) {
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
                return err(format!("MatMulInteger: zero point {i} of shape {z:?} for an input of {:?}", cx.shape(of)))
            }
        }
    }
    one(ty(Some(DType::I32), shape), None)
}

/// `Conv`: batch, the weight's output channels, and the spatial sizes its attributes give.
pub(crate) fn conv(c: &Conv, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let shape = match (cx.shape(0), cx.shape(1)) {
        (Some(x), Some(w)) if x.len() == w.len() && x.len() >= 3 => Some(conv_shape(c, x, w, cx)?),
        (Some(x), Some(w)) => return err(format!("Conv of ranks {} and {}", x.len(), w.len())),
        _ => None,
    };
    one(ty(cx.dtype(0), shape), None)
}

/// `MatMul`, `Gemm` (`trans`posed as its attributes say) and `MatMulInteger` (`integer`: zero
/// points per row of A or column of B): batch axes broadcast, rows and columns pass on, the inner
/// axes contract.
pub(crate) fn product_axes(trans: (bool, bool), integer: bool, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let (Some(a), Some(b)) = (io.in_shape(0), io.in_shape(1)) else {
        return pin_all(io.ins, io.outs, PinReason::UnknownShape);
    };
    let (ta, tb) = trans;
    if a.len() < 2 || b.len() < 2 {
        return pin_all(io.ins, io.outs, PinReason::UnknownShape);
    }
    let (ra, rb, ro) = (a.len(), b.len(), o0.len());
    let (a_m, a_k) = if ta { (ra - 1, ra - 2) } else { (ra - 2, ra - 1) };
    let (b_k, b_n) = if tb { (rb - 1, rb - 2) } else { (rb - 2, rb - 1) };
    broadcast_rels(0, &a[..ra - 2], 0, &o0[..ro - 2], &mut r);
    broadcast_rels(1, &b[..rb - 2], 0, &o0[..ro - 2], &mut r);
    r.push(same(0, a_m, 0, ro - 2));
    r.push(same(1, b_n, 0, ro - 1));
    r.push(AxisRel::Contract(Slot { port: Port::In(0), axis: a_k }, Slot { port: Port::In(1), axis: b_k }));
    if integer {
        // Zero points: one per row of A, one per column of B, or one for all.
        for (i, axis) in [(2, ro - 2), (3, ro - 1)] {
            match io.in_shape(i) {
                Some([n]) if n.as_known() != Some(1) => r.push(same(i, 0, 0, axis)),
                Some([] | [_]) | None => {}
                Some(_) => return pin_all(io.ins, io.outs, PinReason::UnknownShape),
            }
        }
    } else if let Some(c) = io.in_shape(2) {
        broadcast_rels(2, c, 0, o0, &mut r);
    }
    r
}

/// `Conv`: batch passes on, output channels are the weight's rows, input channels contract (grouped
/// convolutions pin them), spatial axes are reduced over.
pub(crate) fn conv_axes(c: &Conv, io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let (Some(x), Some(w)) = (io.in_shape(0), io.in_shape(1)) else {
        return pin_all(io.ins, io.outs, PinReason::UnknownShape);
    };
    r.push(same(0, 0, 0, 0));
    r.push(AxisRel::Same(Slot { port: Port::In(1), axis: 0 }, Slot { port: Port::Out(0), axis: 1 }));
    if io.in_shape(2).is_some() {
        r.push(AxisRel::Same(Slot { port: Port::In(2), axis: 0 }, Slot { port: Port::Out(0), axis: 1 }));
    }
    if c.group == 1 {
        r.push(AxisRel::Contract(Slot { port: Port::In(0), axis: 1 }, Slot { port: Port::In(1), axis: 1 }));
    } else {
        r.push(pin(0, 1, PinReason::Indexed));
        r.push(pin(1, 1, PinReason::Indexed));
        r.push(pin_out(0, 1, PinReason::Indexed));
    }
    for k in 2..x.len() {
        r.push(pin(0, k, PinReason::Reduced));
        r.push(pin_out(0, k, PinReason::Reduced));
    }
    for k in 2..w.len() {
        r.push(pin(1, k, PinReason::Reduced));
    }
    r
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

//! Quantisation (`QuantizeLinear`, `DequantizeLinear`, `DynamicQuantizeLinear`,
//! `MatMulNBits`, the quantised operator format): their output facts and axis
//! relations.

use super::*;

/// `QuantizeLinear` / `DequantizeLinear`: the data's shape; a scale (and zero point) of one element
/// or one per index of `axis`.
pub(crate) fn quantize(q: &Quant, dequantize: bool, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let name = if dequantize { "DequantizeLinear" } else { "QuantizeLinear" };
    // The scale (and zero point) is one element, or one per index of `axis`.
    for i in 1..cx.inputs.len().min(3) {
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
            (Some(s), _) => return err(format!("{name}: a scale of rank {} (blocked) is not modelled", s.len())),
        }
    }
    let dtype = match q.output_dtype {
        Some(code) if code != 0 => Some(DType::from_onnx(code as i32)),
        _ if dequantize => cx.dtype(1),
        _ => cx.dtype(2).or(Some(DType::U8)),
    };
    one(ty(dtype, cx.shape(0).map(<[Dim]>::to_vec)), None)
}

/// `DynamicQuantizeLinear`: uint8 codes of the input's shape, a scale and a zero point.
pub(crate) fn dynamic_quantize(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    if let Some(d) = cx.dtype(0).filter(|&d| d != DType::F32) {
        return err(format!("DynamicQuantizeLinear of {d}: the operator takes float32"));
    }
    Ok(vec![
        Fact::of_ty(ty(Some(DType::U8), cx.shape(0).map(<[Dim]>::to_vec))),
        Fact::of_ty(ty(Some(DType::F32), Some(vec![]))),
        Fact::of_ty(ty(Some(DType::U8), Some(vec![]))),
    ])
}

/// `MatMulNBits`: A's shape with N as its last axis; B, its scales and A's K must agree with K, N
/// and the block size.
pub(crate) fn matmul_nbits(m: &MatMulNBits, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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
        Some(s) if s.len() == 2 && (s[0].is_some_and(|x| x != m.n) || s[1].is_some_and(|x| x != m.k_blocks())) => {
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

/// `QuantizeLinear` / `DequantizeLinear`: elementwise on the data; a per-axis scale and zero point
/// follow `axis`.
pub(crate) fn quantize_axes(q: &Quant, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    // Elementwise on the data; a per-axis scale and zero point follow `axis`.
    for k in 0..o0.len() {
        r.push(same(0, k, 0, k));
    }
    for i in 1..io.ins.len().min(3) {
        match io.in_shape(i) {
            Some([]) => {}
            Some([n]) if n.as_known() == Some(1) => {}
            Some([_]) => match q.axis(o0.len()) {
                Ok(a) => r.push(same(i, 0, 0, a)),
                Err(_) => return pin_all(io.ins, io.outs, PinReason::UnknownShape),
            },
            _ => return pin_all(io.ins, io.outs, PinReason::UnknownShape),
        }
    }
    r
}

/// `DynamicQuantizeLinear`: elementwise codes; the scale and zero point are of the whole tensor.
/// Removing elements that are zero leaves its range (which always holds zero) as it was; the
/// analysis pins the axes where it cannot show that the removed elements are zero.
pub(crate) fn dynamic_quantize_axes(_: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    for k in 0..o0.len() {
        r.push(same(0, k, 0, k));
    }
    r
}

/// `MatMulNBits`: N is B's rows (and the bias, scales and zero points); K goes in whole blocks.
pub(crate) fn matmul_nbits_axes(m: &MatMulNBits, io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let Some(a) = io.in_shape(0) else { return pin_all(io.ins, io.outs, PinReason::UnknownShape) };
    let last = a.len().saturating_sub(1);
    for k in 0..last {
        r.push(same(0, k, 0, k));
    }
    let given = |i: usize| io.ins.get(i).is_some_and(Option::is_some);
    let slot = |i: usize, axis: usize| Slot { port: Port::In(i), axis };
    // N: B's rows and the bias.
    r.push(same(1, 0, 0, last));
    if given(5) {
        r.push(same(5, 0, 0, last));
    }
    // Scales and zero points: one per row and block, `[N, k_blocks]` or
    // flat; zero points packed several blocks to a byte pin the blocks.
    let kb = m.k_blocks();
    let mut per_block = !given(4);
    for i in [2, 3] {
        if !given(i) {
            continue;
        }
        match io.in_shape(i) {
            Some([_, b]) if b.as_known() == Some(kb) => {
                r.push(same(i, 0, 0, last));
                r.push(AxisRel::Same(slot(1, 1), slot(i, 1)));
            }
            Some([_, _]) => {
                r.push(same(i, 0, 0, last));
                r.push(pin(i, 1, PinReason::Packed));
                per_block = false;
            }
            Some([f]) if m.n.checked_mul(kb).is_some_and(|nk| f.as_known() == Some(nk)) => {
                r.push(AxisRel::Product(vec![slot(i, 0)], vec![slot(1, 0), slot(1, 1)]));
            }
            _ => return pin_all(io.ins, io.outs, PinReason::Packed),
        }
    }
    // K: whole blocks, when K is a whole number of them and no g_idx reorders K.
    if m.k % m.block_size == 0 && per_block {
        r.push(AxisRel::Blocks { whole: slot(0, last), blocks: slot(1, 1), block: m.block_size });
    } else {
        r.push(pin(0, last, PinReason::Packed));
        r.push(pin(1, 1, PinReason::Packed));
        if given(4) {
            r.push(pin(4, 0, PinReason::Packed));
        }
    }
    r.push(pin(1, 2, PinReason::Packed));
    r
}

/// The output facts of a `QLinear` node.
pub(crate) fn qlinear(q: &QLinear, inputs: &[Option<Fact>], syms: &mut dyn SymSource) -> Result<Vec<Fact>, InferError> {
    let name = q.op_type();
    let at = |i: usize| inputs.get(i).and_then(Option::as_ref).and_then(|f| f.ty.as_ref());
    let data = q.data_inputs(inputs.len());
    if matches!(q, QLinear::Concat { .. }) && (inputs.len() < 5 || !(inputs.len() - 2).is_multiple_of(3)) {
        return err(format!("{name}: {} inputs are not the output's scale and zero point then triples", inputs.len()));
    }
    // The data as float, for the float op's shapes.
    let mut float = Vec::with_capacity(data.len());
    for &i in &data {
        let t = at(i);
        match (q.params_of(i), t.map(|t| t.dtype)) {
            (Some(_), Some(d)) if !matches!(d, DType::U8 | DType::I8) => {
                return err(format!("{name}: input {i} is {d}, not int8 or uint8"))
            }
            (None, Some(d)) if d != DType::I32 => {
                return err(format!("{name}: the bias (input {i}) is {d}, not int32"))
            }
            _ => {}
        }
        float.push(Some(Fact::of_ty(t.map(|t| TensorTy { dtype: DType::F32, shape: t.shape.clone() }))));
    }
    // Scales and zero points: one element, or one per column of B (the
    // products' weight).
    let (y_scale, y_zp) = q.output_params();
    let params = data.iter().filter_map(|&i| q.params_of(i)).flat_map(|(s, z)| [s, z]).chain([y_scale, y_zp]);
    let b = at(3).and_then(|t| t.shape.as_deref());
    for i in params {
        let Some(shape) = at(i).and_then(|t| t.shape.as_deref()) else { continue };
        let axis = q.column_axis(i, b.map_or(2, <[_]>::len));
        let columns = axis.and_then(|a| b?.get(a)?.as_known());
        match shape {
            [] => {}
            [n] if n.as_known() == Some(1) => {}
            [n] if axis.is_some() && columns.is_none_or(|c| n.as_known().is_none_or(|n| n == c)) => {}
            s => {
                return err(format!(
                    "{name}: scale or zero point {i} of shape {s:?} is neither per tensor nor per column of B"
                ))
            }
        }
    }
    let out = infer(&q.float_op(), &float, 1, syms)?;
    let shape = out.into_iter().next().and_then(|f| f.ty).and_then(|t| t.shape);
    // Omitted (not merely untyped) inputs: without an output scale QGemm's
    // output is float; without a zero point the codes are uint8.
    let given = |i: usize| inputs.get(i).is_some_and(Option::is_some);
    let dtype = match q {
        QLinear::Gemm { .. } if !given(y_scale) => Some(DType::F32),
        _ if !given(y_zp) => Some(DType::U8),
        _ => at(y_zp).map(|t| t.dtype),
    };
    Ok(vec![Fact::of_ty(dtype.map(|dtype| TensorTy { dtype, shape }))])
}

/// A quantised op relates its data inputs as its float op does; the weight's
/// scale and zero point, when one per column (channel), follow the output's
/// last axis (channels).
pub(crate) fn qlinear_relations(q: &crate::op::QLinear, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Vec<AxisRel> {
    let data = q.data_inputs(ins.len());
    let float: Vec<Option<Fact>> = data.iter().map(|&i| ins.get(i).cloned().flatten()).collect();
    let port = |p: Port| match p {
        Port::In(k) => Port::In(data.get(k).copied().unwrap_or(usize::MAX)),
        other => other,
    };
    let slot = |s: Slot| Slot { port: port(s.port), axis: s.axis };
    let part = |p: Part| match p {
        Part::Slot(s) => Part::Slot(slot(s)),
        gap => gap,
    };
    let mut r: Vec<AxisRel> = crate::axes::axis_relations(&q.float_op(), &float, outs)
        .into_iter()
        .map(|rel| match rel {
            AxisRel::Same(a, b) => AxisRel::Same(slot(a), slot(b)),
            AxisRel::Contract(a, b) => AxisRel::Contract(slot(a), slot(b)),
            AxisRel::Product(a, b) => {
                AxisRel::Product(a.into_iter().map(slot).collect(), b.into_iter().map(slot).collect())
            }
            AxisRel::Concat { whole, parts } => {
                AxisRel::Concat { whole: slot(whole), parts: parts.into_iter().map(part).collect() }
            }
            AxisRel::Blocks { whole, blocks, block } => {
                AxisRel::Blocks { whole: slot(whole), blocks: slot(blocks), block }
            }
            AxisRel::Pin(s, why) => AxisRel::Pin(slot(s), why),
            inner @ AxisRel::Inner { .. } => inner,
        })
        .collect();
    let out_rank = fact_shape(outs.first().and_then(Option::as_ref)).map_or(0, <[Dim]>::len);
    let b_rank = fact_shape(ins.get(3).and_then(Option::as_ref)).map_or(0, <[Dim]>::len);
    for (i, f) in ins.iter().enumerate() {
        match fact_shape(f.as_ref()) {
            Some([n]) if n.as_known() != Some(1) && !data.contains(&i) => {
                match (q.column_axis(i, b_rank), q.column_out_axis(out_rank)) {
                    (Some(_), Some(axis)) => r.push(same(i, 0, 0, axis)),
                    _ => return pin_all(ins, outs, PinReason::UnknownShape),
                }
            }
            _ => {}
        }
    }
    r
}

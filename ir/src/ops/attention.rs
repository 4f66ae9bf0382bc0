//! ONNX Runtime's fused attention ops (`Attention`, `EmbedLayerNormalization`,
//! `GroupQueryAttention`, `RotaryEmbedding`): their output facts and axis relations.

use super::*;

/// Fused `Attention`: `[B, S, H_v]`, H_v from `qkv_hidden_sizes`, else a third of the packed
/// weight.
pub(crate) fn fused_attention(f: &FusedAttention, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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
    for _ in 1..cx.num_outputs {
        outs.push(Fact::of_ty(ty(cx.dtype(0), None)));
    }
    Ok(outs)
}

/// `EmbedLayerNormalization`: `[B, S, H]`, the mask index `[B]`, the sum `[B, S, H]`.
pub(crate) fn embed_layer_norm(cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let hidden = cx.shape(2).and_then(|w| w.get(1).cloned());
    let shape = match (cx.shape(0), hidden) {
        (Some(ids), Some(h)) if ids.len() == 2 => Some(vec![ids[0].clone(), ids[1].clone(), h]),
        _ => None,
    };
    let dtype = cx.dtype(2);
    let batch = cx.shape(0).and_then(|ids| ids.first().cloned()).map(|b| vec![b]);
    Ok((0..cx.num_outputs)
        .map(|o| match o {
            1 => Fact::of_ty(ty(Some(DType::I32), batch.clone())),
            _ => Fact::of_ty(ty(dtype, shape.clone())),
        })
        .collect())
}

/// `MultiHeadAttention`: `[B, S, H_v]`, H_v the value's width (heads × head
/// size for packed inputs or a value given as past state).
pub(crate) fn multi_head_attention(m: &MultiHeadAttention, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let n = Dim::known(m.num_heads);
    let query = cx.shape(0);
    let v_hidden = match (query, cx.shape(1), cx.shape(2)) {
        (Some(q), _, _) if q.len() == 5 => Some(q[2].mul(&q[4])),
        (_, Some(k), _) if k.len() == 5 => Some(k[2].mul(&k[4])),
        (_, _, Some(v)) if v.len() == 3 => Some(v[2].clone()),
        (_, _, Some(v)) if v.len() == 4 => Some(n.mul(&v[3])),
        _ => None,
    };
    for i in 0..3 {
        if let Some([_, _, w]) = cx.shape(i) {
            if w.as_known().is_some_and(|w| w % m.num_heads != 0) {
                return err(format!("MultiHeadAttention: input {i} of width {w:?} is not {} heads", m.num_heads));
            }
        }
    }
    let shape = match (query, v_hidden) {
        (Some(q), _) if q.len() != 3 && q.len() != 5 => {
            return err(format!("MultiHeadAttention of a query of rank {}", q.len()))
        }
        (Some(q), Some(h)) => Some(vec![q[0].clone(), q[1].clone(), h]),
        _ => None,
    };
    let mut outs = vec![Fact::of_ty(ty(cx.dtype(0), shape))];
    for _ in 1..cx.num_outputs {
        outs.push(Fact::of_ty(ty(cx.dtype(0), None)));
    }
    Ok(outs)
}

/// `GroupQueryAttention`: `[B, S, num_heads · head]`; the present cache `[B, kv_num_heads, T,
/// head]`; the cache it reads must have its head counts.
pub(crate) fn group_query_attention(g: &GroupQueryAttention, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
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
                let wrong = |d: &Dim, want: Option<i64>| matches!((d.as_known(), want), (Some(x), Some(y)) if x != y);
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
    let mut outs = vec![Fact::of_ty(ty(dtype, query.zip(width).map(|(q, w)| vec![q[0].clone(), q[1].clone(), w])))];
    // A quantised cache has the type of the cache it reads; a float one the query's.
    let cache_dtype = cx.dtype(3).or(if g.kv_cache_bit_width.is_some() { None } else { dtype });
    for o in 1..cx.num_outputs {
        let shape = match (o, &batch, head) {
            (1 | 2, Some(b), Some(h)) => Some(vec![b.clone(), Dim::known(g.kv_num_heads), cx.fresh(), Dim::known(h)]),
            _ => None,
        };
        outs.push(Fact::of_ty(ty(if o < 3 { cache_dtype } else { dtype }, shape)));
    }
    Ok(outs)
}

/// Fused `Attention`: where its heads can be sliced ([`fused_heads`]), head h
/// is the h-th `head size` indices of each of the Q, K and V parts of the
/// packed weight and bias, and of the output. The Q and K dims of a head are
/// one index space (their product is summed over), the V dims another: heads
/// and dims may both go (the slicer sets the head count, the widths and the
/// score scale). Otherwise only batch and sequence pass on.
pub(crate) fn fused_attention_axes(f: &FusedAttention, io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let Some((n, parts)) = fused_heads(f, io.ins, io.outs) else {
        return batch_and_sequence(io, |o, k| o == 0 && k < 2);
    };
    let mut r = head_spaces(n, parts);
    let heads = inner(3);
    let qkv: Vec<Part> = (0..3).map(|p| Part::Slot(inner(p))).collect();
    r.push(AxisRel::Concat { whole: Slot { port: Port::In(1), axis: 1 }, parts: qkv.clone() });
    r.push(AxisRel::Concat { whole: Slot { port: Port::In(2), axis: 0 }, parts: qkv });
    r.push(AxisRel::Product(vec![Slot { port: Port::Out(0), axis: 2 }], vec![heads, inner(6)]));
    r.push(AxisRel::Contract(Slot { port: Port::In(0), axis: 2 }, Slot { port: Port::In(1), axis: 0 }));
    for k in 0..2 {
        r.push(same(0, k, 0, k));
    }
    // The mask index keeps its shape.
    for k in 0..io.in_shape(3).map_or(0, <[Dim]>::len) {
        r.push(pin(3, k, PinReason::Fused));
    }
    r
}

/// `MultiHeadAttention`: where its heads can be sliced ([`mha_heads`]),
/// head h is the h-th `head size` indices of the query's, the key's and the
/// value's last axis, and of the bias's three parts and the output; the Q and
/// K dims of a head are one index space, the V dims another. Otherwise only
/// batch and sequence pass on.
pub(crate) fn multi_head_attention_axes(m: &MultiHeadAttention, io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let Some((n, parts)) = mha_heads(m, io.ins, io.outs) else {
        return batch_and_sequence(io, |o, k| o == 0 && k < 2);
    };
    let mut r = head_spaces(n, parts);
    let slot = |port: Port, axis: usize| Slot { port, axis };
    let heads = inner(3);
    for p in 0..3 {
        r.push(AxisRel::Same(slot(Port::In(p), 2), inner(p)));
    }
    if io.ins.get(3).is_some_and(Option::is_some) {
        let qkv: Vec<Part> = (0..3).map(|p| Part::Slot(inner(p))).collect();
        r.push(AxisRel::Concat { whole: slot(Port::In(3), 0), parts: qkv });
    }
    r.push(AxisRel::Product(vec![slot(Port::Out(0), 2)], vec![heads, inner(6)]));
    // Batch and sequence pass on; key and value share the batch and their sequence.
    r.push(same(0, 0, 0, 0));
    r.push(same(0, 1, 0, 1));
    for i in [1, 2] {
        r.push(AxisRel::Same(slot(Port::In(i), 0), slot(Port::In(0), 0)));
    }
    r.push(AxisRel::Same(slot(Port::In(1), 1), slot(Port::In(2), 1)));
    for k in 0..io.in_shape(4).map_or(0, <[Dim]>::len) {
        r.push(pin(4, k, PinReason::Fused));
    }
    r
}

/// The head count and the Q, K, V widths of a `MultiHeadAttention` whose
/// heads can be sliced: query, key and value `[B, *, width]`, each width a
/// whole number of heads and Q's equal to K's, at most a packed bias of the
/// three widths and a key padding mask besides (no attention bias or past
/// state), one output.
fn mha_heads(m: &MultiHeadAttention, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Option<(i64, [i64; 3])> {
    let width = |i: usize| -> Option<i64> {
        match fact_shape(ins.get(i)?.as_ref())? {
            [_, _, w] => w.as_known(),
            _ => None,
        }
    };
    let parts = [width(0)?, width(1)?, width(2)?];
    let n = m.num_heads;
    let whole = parts.iter().all(|&p| p > 0 && p % n == 0) && parts[0] == parts[1];
    let total = parts.iter().try_fold(0i64, |t, &p| t.checked_add(p))?;
    let bias = match ins.get(3) {
        None | Some(None) => true,
        Some(Some(f)) => matches!(fact_shape(Some(f)), Some([b]) if b.as_known() == Some(total)),
    };
    (whole && bias && ins.len() <= 5 && outs.len() == 1).then_some((n, parts))
}

/// Inner index space `id` of a fused attention: 0, 1, 2 the Q, K and V
/// widths, 3 the heads, 4, 5, 6 the dims of a head in each part.
fn inner(id: usize) -> Slot {
    Slot { port: Port::Inner(id), axis: 0 }
}

/// The index spaces of attention in `n` heads over Q, K and V parts of
/// widths `parts`: each part is heads × its head dims, and the Q and K dims
/// are one space (their product is summed over).
fn head_spaces(n: i64, parts: [i64; 3]) -> Vec<AxisRel> {
    let mut r = vec![AxisRel::Inner { id: 3, size: n }];
    for (p, &width) in parts.iter().enumerate() {
        r.push(AxisRel::Inner { id: p, size: width });
        r.push(AxisRel::Inner { id: 4 + p, size: width / n });
        r.push(AxisRel::Product(vec![inner(p)], vec![inner(3), inner(4 + p)]));
    }
    r.push(AxisRel::Same(inner(4), inner(5)));
    r
}

/// `EmbedLayerNormalization`: batch and sequence pass to the output and the
/// sum, batch to the mask index; everything else is pinned.
pub(crate) fn embed_layer_norm_axes(io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    batch_and_sequence(io, |o, k| (o != 1 && k < 2) || (o == 1 && k == 0))
}

/// `GroupQueryAttention`: where its heads can be sliced ([`gqa_heads`]),
/// query head `h` reads key/value head `h / G` (`G` = `num_heads /
/// kv_num_heads`), so the query's width is key/value heads × `G` × head dims
/// and the key's and the value's are key/value heads × head dims, as are the
/// caches' axes 1 and 3 and the output's width. The `G` index space is a
/// query head of every group: removing it keeps the cache (the model's
/// interface) as it is. The head dims stay (one head size for Q, K and V,
/// and the rotary caches are sized by it); the slicer sets the head counts.
/// Otherwise only batch and sequence pass on.
pub(crate) fn group_query_attention_axes(g: &GroupQueryAttention, io: &Io<'_>, _: &[Dim]) -> Vec<AxisRel> {
    let Some((packed, head)) = gqa_heads(g, io.ins, io.outs) else {
        return batch_and_sequence(io, |o, k| o == 0 && k < 2);
    };
    let slot = |port: Port, axis: usize| Slot { port, axis };
    // Inner spaces: 0 key/value heads, 1 query heads per group, 2 head dims,
    // 3, 4, 5 the Q, K and V widths.
    let (kv, per, dims) = (inner(0), inner(1), inner(2));
    let group = g.num_heads / g.kv_num_heads;
    let mut r = vec![
        AxisRel::Inner { id: 0, size: g.kv_num_heads },
        AxisRel::Inner { id: 1, size: group },
        AxisRel::Inner { id: 2, size: head },
        AxisRel::Inner { id: 3, size: g.num_heads * head },
        AxisRel::Inner { id: 4, size: g.kv_num_heads * head },
        AxisRel::Inner { id: 5, size: g.kv_num_heads * head },
        AxisRel::Product(vec![inner(3)], vec![kv, per, dims]),
        AxisRel::Product(vec![inner(4)], vec![kv, dims]),
        AxisRel::Product(vec![inner(5)], vec![kv, dims]),
        AxisRel::Pin(dims, PinReason::Fused),
        AxisRel::Product(vec![slot(Port::Out(0), 2)], vec![kv, per, dims]),
        same(0, 0, 0, 0),
        same(0, 1, 0, 1),
    ];
    if packed {
        let parts = (3..6).map(|p| Part::Slot(inner(p))).collect();
        r.push(AxisRel::Concat { whole: slot(Port::In(0), 2), parts });
    } else {
        for i in 0..3 {
            r.push(AxisRel::Same(slot(Port::In(i), 2), inner(3 + i)));
        }
        for i in [1, 2] {
            r.push(AxisRel::Same(slot(Port::In(i), 0), slot(Port::In(0), 0)));
            r.push(AxisRel::Same(slot(Port::In(i), 1), slot(Port::In(0), 1)));
        }
    }
    // The caches read and written: [B, kv heads, time, head dims].
    let caches = [3, 4]
        .map(|i| (Port::In(i), io.in_shape(i)))
        .into_iter()
        .chain([1, 2].map(|o| (Port::Out(o), io.out_shape(o))));
    for (port, shape) in caches {
        if shape.is_some_and(|s| s.len() == 4) {
            r.push(AxisRel::Same(slot(port, 0), slot(Port::In(0), 0)));
            r.push(AxisRel::Same(slot(port, 1), kv));
            r.push(AxisRel::Pin(slot(port, 2), PinReason::Fused));
            r.push(AxisRel::Same(slot(port, 3), dims));
        }
    }
    // Sequence lengths, the rotary caches and position ids keep their shapes.
    for i in 5..io.ins.len() {
        for k in 0..io.in_shape(i).map_or(0, <[Dim]>::len) {
            r.push(pin(i, k, PinReason::Fused));
        }
    }
    r
}

/// Whether a `GroupQueryAttention`'s heads can be sliced, and then whether
/// Q, K and V come packed and the head size: query (and key and value)
/// `[B, S, width]` of known widths, whole groups of query heads, a float
/// cache of four-dimensional inputs and outputs; no attention bias, head
/// sinks or scores output (they are per query head).
fn gqa_heads(g: &GroupQueryAttention, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Option<(bool, i64)> {
    let width = |i: usize| -> Option<i64> {
        match fact_shape(ins.get(i)?.as_ref())? {
            [_, _, w] => w.as_known(),
            _ => None,
        }
    };
    let packed = ins.get(1).is_none_or(Option::is_none) && ins.get(2).is_none_or(Option::is_none);
    let head = g.head_size(width(0)?, packed)?;
    if !packed && (width(1)? != g.kv_num_heads.checked_mul(head)? || width(2)? != width(1)?) {
        return None;
    }
    let four = |f: Option<&Option<Fact>>| {
        f.is_none_or(|f| f.as_ref().is_none_or(|f| fact_shape(Some(f)).is_some_and(|s| s.len() == 4)))
    };
    let whole_groups = g.kv_num_heads > 0 && g.num_heads % g.kv_num_heads == 0;
    let per_head_extras = ins.iter().skip(10).any(Option::is_some) || outs.len() > 3;
    (whole_groups
        && !per_head_extras
        && g.kv_cache_bit_width.is_none()
        && [3, 4].iter().all(|&i| four(ins.get(i)))
        && [1, 2].iter().all(|&o| four(outs.get(o))))
    .then_some((packed, head))
}

/// Input 0's batch and sequence axes pass to the output axes `passes` names;
/// every other axis is pinned as read by a fused op.
fn batch_and_sequence(io: &Io<'_>, passes: impl Fn(usize, usize) -> bool) -> Vec<AxisRel> {
    let mut r = Vec::new();
    for o in 0..io.outs.len() {
        for k in 0..io.out_shape(o).map_or(0, <[Dim]>::len) {
            r.push(if passes(o, k) { same(0, k, o, k) } else { pin_out(o, k, PinReason::Fused) });
        }
    }
    for i in 0..io.ins.len() {
        for k in 0..io.in_shape(i).map_or(0, <[Dim]>::len) {
            if !(i == 0 && k < 2) {
                r.push(pin(i, k, PinReason::Fused));
            }
        }
    }
    r
}

/// The head count and the Q, K, V widths of a fused `Attention` whose heads
/// can be sliced: input `[B, S, H_in]`, packed weight `[H_in, Q + K + V]` and
/// bias, each width a whole number of heads, at most a mask index besides
/// (no past state, attention bias or rotary embedding), one output.
fn fused_heads(f: &crate::op::FusedAttention, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Option<(i64, [i64; 3])> {
    let known = |f: Option<&Fact>| -> Option<Vec<i64>> { fact_shape(f)?.iter().map(Dim::as_known).collect() };
    let x = fact_shape(ins.first()?.as_ref())?;
    let (w, b) = (known(ins.get(1)?.as_ref())?, known(ins.get(2)?.as_ref())?);
    if ins.len() > 4 || outs.len() != 1 || x.len() != 3 || w.len() != 2 || b.len() != 1 || x[2].as_known() != Some(w[0])
    {
        return None;
    }
    let parts = match &f.qkv_hidden_sizes {
        Some(q) => <[i64; 3]>::try_from(q.as_slice()).ok()?,
        None if w[1] % 3 == 0 => [w[1] / 3; 3],
        None => return None,
    };
    let n = f.num_heads;
    let whole = parts.iter().all(|&p| p > 0 && p % n == 0) && parts[0] == parts[1];
    let total = parts.iter().try_fold(0i64, |t, &p| t.checked_add(p))?;
    (whole && total == w[1] && b[0] == w[1]).then_some((n, parts))
}

/// `RotaryEmbedding`: the input's type; a `[B, N, S, D]` or `[B, S, H]`
/// input, two-dimensional caches of one shape whose columns are half the
/// rotated dims.
pub(crate) fn rotary_embedding(r: &RotaryEmbedding, cx: &mut Cx<'_>) -> Result<Vec<Fact>, InferError> {
    let x = cx.shape(0);
    if let Some(x) = x.filter(|x| !matches!(x.len(), 3 | 4)) {
        return err(format!("RotaryEmbedding of an input of rank {}, not 3 or 4", x.len()));
    }
    let (cos, sin) = (cx.shape(2), cx.shape(3));
    match (cos, sin) {
        (Some(c), _) | (_, Some(c)) if c.len() != 2 => {
            return err(format!("RotaryEmbedding: a cache of rank {}, not 2", c.len()))
        }
        (Some(c), Some(s))
            if c.iter().zip(s).any(|(a, b)| matches!((a.as_known(), b.as_known()), (Some(p), Some(q)) if p != q)) =>
        {
            return err(format!("RotaryEmbedding: caches {c:?} and {s:?} differ"))
        }
        _ => {}
    }
    if let (Some([.., d]), Some([_, half])) = (x.filter(|x| x.len() == 4), cos) {
        let rotated = r.rotary_embedding_dim.filter(|&n| n > 0).or(d.as_known());
        if let (Some(rot), Some(h)) = (rotated, half.as_known()) {
            if h.checked_mul(2) != Some(rot) || d.as_known().is_some_and(|d| rot > d) {
                return err(format!("RotaryEmbedding: caches of {h} columns rotate {rot} dims of a head of {d:?}"));
            }
        }
    }
    Ok(vec![Fact::of_ty(cx.input(0).and_then(|f| f.ty.clone()))])
}

/// `RotaryEmbedding`: every axis of the input is the output's. In a `[B, N,
/// S, D]` input whose pairs are the halves of every head ([`RotaryEmbedding::halves_all_dims`]),
/// dim `j` and dim `j + D/2` of a head are one index, column `j` of both
/// caches; otherwise the head dims (or the `[B, S, H]` width) are pinned.
/// Positions are read by data.
pub(crate) fn rotary_embedding_axes(r: &RotaryEmbedding, io: &Io<'_>, o0: &[Dim]) -> Vec<AxisRel> {
    let rank = o0.len();
    let mut rels: Vec<AxisRel> = (0..rank.saturating_sub(1)).map(|k| same(0, k, 0, k)).collect();
    for i in 1..4 {
        for k in 0..io.in_shape(i).map_or(0, <[Dim]>::len) {
            if !(i >= 2 && k == 1) {
                rels.push(pin(i, k, PinReason::Indexed));
            }
        }
    }
    let half = match (io.in_shape(0), io.in_shape(2), io.in_shape(3)) {
        (Some([_, _, _, d]), Some([_, c]), Some([_, s])) if r.halves_all_dims() => {
            d.as_known().filter(|&d| d > 0 && d % 2 == 0 && c.as_known() == Some(d / 2) && s.as_known() == Some(d / 2))
        }
        _ => None,
    };
    let Some(d) = half else {
        rels.push(pin(0, rank.saturating_sub(1), PinReason::Fused));
        rels.push(pin_out(0, rank.saturating_sub(1), PinReason::Fused));
        for i in 2..4 {
            if io.in_shape(i).is_some_and(|s| s.len() == 2) {
                rels.push(pin(i, 1, PinReason::Fused));
            }
        }
        return rels;
    };
    let halves = vec![Part::Slot(inner(0)), Part::Slot(inner(1))];
    rels.push(AxisRel::Inner { id: 0, size: d / 2 });
    rels.push(AxisRel::Inner { id: 1, size: d / 2 });
    rels.push(AxisRel::Same(inner(0), inner(1)));
    rels.push(AxisRel::Concat { whole: Slot { port: Port::In(0), axis: 3 }, parts: halves.clone() });
    rels.push(AxisRel::Concat { whole: Slot { port: Port::Out(0), axis: 3 }, parts: halves });
    for i in 2..4 {
        rels.push(AxisRel::Same(Slot { port: Port::In(i), axis: 1 }, inner(0)));
    }
    rels
}

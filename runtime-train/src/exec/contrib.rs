//! ONNX Runtime's `com.microsoft` ops of the closed set, the quantisation
//! ops, and the few ops outside the set that the executor knows by name
//! (those exporters write: `GatherND`, `ReduceSum`), with ONNX Runtime's
//! semantics.

use super::ops::{ints, need, normalise, one, opt, Cx, Outs};
use super::{Fail, R};
use ecospac_ir::attr::{Attr, Attrs};
use ecospac_ir::op::{
    ContribGelu, EmbedLayerNorm, FusedAttention, GroupQueryAttention, MatMulNBits, MultiHeadAttention, Opaque, Quant,
    RotaryEmbedding, SkipLayerNorm,
};
use ecospac_ir::DType;
use tch::{Kind, Tensor};

/// ONNX Runtime's default epsilon of its fused normalisations.
const FUSED_EPSILON: f64 = 1e-12;

/// A scale or zero point shaped to broadcast along `q`'s axis of a rank-`rank` input.
fn along(p: &Tensor, q: &Quant, rank: usize) -> R<Tensor> {
    if p.numel() <= 1 {
        return Ok(p.f_reshape([])?);
    }
    let axis = q.axis(rank).map_err(|e| Fail(e.to_string()))?;
    let mut shape = vec![1i64; rank];
    shape[axis] = -1;
    Ok(p.f_reshape(shape.as_slice())?)
}

/// The saturation range of an integer kind.
fn int_range(k: Kind) -> R<(f64, f64)> {
    Ok(match k {
        Kind::Uint8 => (0.0, 255.0),
        Kind::Int8 => (-128.0, 127.0),
        Kind::Int16 => (-32768.0, 32767.0),
        Kind::Int => (f64::from(i32::MIN), f64::from(i32::MAX)),
        other => return Err(Fail(format!("quantising to {other:?} is not supported"))),
    })
}

pub(crate) fn quantize(q: &Quant, x: &[Option<&Tensor>]) -> R<Outs> {
    let t = need(x, 0)?;
    let rank = t.dim();
    let scale = along(need(x, 1)?, q, rank)?.f_to_dtype(Kind::Float, false, false)?;
    let zero = opt(x, 2);
    let kind = match (zero, q.output_dtype) {
        (Some(z), _) => z.f_kind()?,
        (None, Some(code)) => {
            let d = i32::try_from(code).map(DType::from_onnx).map_err(|_| Fail(format!("output_dtype {code}")))?;
            super::kind_of(d).map_err(|e| Fail(e.0))?
        }
        (None, None) => Kind::Uint8,
    };
    let (lo, hi) = int_range(kind)?;
    let mut y = t.f_to_dtype(Kind::Float, false, false)?.f_div(&scale)?.f_round()?;
    if let Some(z) = zero {
        y = y.f_add(&along(z, q, rank)?.f_to_dtype(Kind::Float, false, false)?)?;
    }
    one(y.f_clamp(lo, hi)?.f_to_dtype(kind, false, false)?)
}

pub(crate) fn dequantize(q: &Quant, x: &[Option<&Tensor>]) -> R<Outs> {
    let t = need(x, 0)?;
    let rank = t.dim();
    let scale = need(x, 1)?;
    let mut v = t.f_to_dtype(Kind::Float, false, false)?;
    if let Some(z) = opt(x, 2) {
        v = v.f_sub(&along(z, q, rank)?.f_to_dtype(Kind::Float, false, false)?)?;
    }
    let y = v.f_mul(&along(scale, q, rank)?.f_to_dtype(Kind::Float, false, false)?)?;
    one(y.f_to_dtype(scale.f_kind()?, false, false)?)
}

pub(crate) fn skip_layer_norm(s: &SkipLayerNorm, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    let gamma = need(x, 2)?;
    let (beta, bias) = if s.simplified { (None, opt(x, 3)) } else { (opt(x, 3), opt(x, 4)) };
    let mut sum = need(x, 0)?.f_add(need(x, 1)?)?;
    if let Some(b) = bias {
        sum = sum.f_add(b)?;
    }
    let kind = sum.f_kind()?;
    let eps = s.epsilon.map_or(FUSED_EPSILON, f64::from);
    let (n, mean, inv) = normalise(&sum.f_to_dtype(Kind::Float, false, false)?, 1, eps, s.simplified)?;
    let mut y = n.f_to_dtype(kind, false, false)?.f_mul(gamma)?;
    if let Some(b) = beta {
        y = y.f_add(b)?;
    }
    let stats = |t: Tensor| if s.simplified { None } else { Some(t) };
    let mut out = vec![Some(y), stats(mean), Some(inv), Some(sum)];
    out.truncate(cx.wants.len().max(1));
    Ok(out)
}

pub(crate) fn gelu(g: &ContribGelu, x: &[Option<&Tensor>]) -> R<Outs> {
    let t = need(x, 0)?;
    let biased = || -> R<Tensor> { Ok(opt(x, 1).map_or_else(|| Ok(t.shallow_clone()), |b| t.f_add(b))?) };
    one(match g {
        ContribGelu::Gelu => t.f_gelu("none")?,
        ContribGelu::BiasGelu => biased()?.f_gelu("none")?,
        ContribGelu::FastGelu => biased()?.f_gelu("tanh")?,
        ContribGelu::QuickGelu { alpha } => {
            t.f_mul(&t.f_mul_scalar(f64::from(alpha.unwrap_or(1.702)))?.f_sigmoid()?)?
        }
    })
}

/// The additive mask of ONNX Runtime's `Attention` (`[B, 1, S or 1, T]`).
fn attention_mask(mask: &Tensor, b: i64, s: i64, t: i64, filter: f64) -> R<Tensor> {
    let dims = mask.size();
    let device = mask.device();
    let masked = match dims.as_slice() {
        // Raw 0/1 mask over the keys.
        [mb, mt] if *mb == b && *mt == t => mask.f_le(0)?.f_reshape([b, 1, 1, t])?,
        [mb, ms, mt] if *mb == b && *ms == s && *mt == t => mask.f_le(0)?.f_reshape([b, 1, s, t])?,
        // End position of each sequence.
        [mb] if *mb == b => {
            let keys = Tensor::f_arange(t, (Kind::Int64, device))?.f_reshape([1, t])?;
            let end = mask.f_to_dtype(Kind::Int64, false, false)?.f_reshape([b, 1])?;
            keys.f_ge_tensor(&end)?.f_reshape([b, 1, 1, t])?
        }
        other => return Err(Fail(format!("mask_index of shape {other:?} is not supported"))),
    };
    Ok(Tensor::f_zeros([1], (Kind::Float, device))?.f_masked_fill(&masked, filter)?)
}

pub(crate) fn attention(a: &FusedAttention, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    if opt(x, 4).is_some() || cx.wants.get(1) == Some(&true) {
        return Err(Fail("past and present key/value states are not supported".into()));
    }
    if x.len() > 6 && x[6..].iter().any(Option::is_some) {
        return Err(Fail("inputs after attention_bias are not supported".into()));
    }
    let input = need(x, 0)?;
    let [b, s, _] = input.size()[..] else { return Err(Fail("input is not [batch, sequence, hidden]".into())) };
    let mut qkv = input.f_matmul(need(x, 1)?)?;
    if let Some(bias) = opt(x, 2) {
        qkv = qkv.f_add(bias)?;
    }
    let total = qkv.size().last().copied().unwrap_or(0);
    let [hq, hk, hv] = match &a.qkv_hidden_sizes {
        Some(v) if v.len() == 3 => [v[0], v[1], v[2]],
        Some(v) => return Err(Fail(format!("qkv_hidden_sizes {v:?} is not three sizes"))),
        None => [total / 3; 3],
    };
    let n = a.num_heads;
    if n <= 0 || hq != hk || hq % n != 0 || hv % n != 0 || hq + hk + hv != total {
        return Err(Fail(format!("{n} heads do not divide the Q/K/V widths {hq}/{hk}/{hv} of {total}")));
    }
    let heads = |t: Tensor, w: i64| -> R<Tensor> { Ok(t.f_reshape([b, s, n, w / n])?.f_permute([0, 2, 1, 3])?) };
    let q = heads(qkv.f_narrow(-1, 0, hq)?, hq)?;
    let k = heads(qkv.f_narrow(-1, hq, hk)?, hk)?;
    let v = heads(qkv.f_narrow(-1, hq + hk, hv)?, hv)?;
    let scale = a.scale.map_or(1.0 / ((hq / n) as f64).sqrt(), f64::from);
    let mut scores = q.f_matmul(&k.f_transpose(-1, -2)?)?.f_mul_scalar(scale)?;
    let filter = f64::from(a.mask_filter_value.unwrap_or(-10000.0));
    if let Some(mask) = opt(x, 3) {
        scores = scores.f_add(&attention_mask(mask, b, s, s, filter)?.f_to_dtype(scores.f_kind()?, false, false)?)?;
    }
    if a.unidirectional.unwrap_or(0) != 0 {
        let future = Tensor::f_ones([s, s], (Kind::Bool, input.device()))?.f_triu(1)?;
        scores = scores.f_masked_fill(&future, filter)?;
    }
    if let Some(bias) = opt(x, 5) {
        scores = scores.f_add(bias)?;
    }
    let probs = scores.f_softmax(-1, None::<Kind>)?;
    one(probs.f_matmul(&v)?.f_permute([0, 2, 1, 3])?.f_reshape([b, s, hv])?)
}

/// `MultiHeadAttention` over separate `[B, S, W]` query, key and value
/// (their packed bias added), with a key padding mask (`[B]` lengths, `[B,
/// L]` or `[B, S, L]`), causal when `unidirectional`, and an attention bias;
/// packed inputs and past or present states are refused.
pub(crate) fn multi_head_attention(m: &MultiHeadAttention, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    if x.len() > 6 && x[6..].iter().any(Option::is_some) || cx.wants.len() > 1 {
        return Err(Fail(
            "MultiHeadAttention with past or present key/value states is not run by the libtorch executor yet".into(),
        ));
    }
    let (q, k, v) = (need(x, 0)?, need(x, 1)?, need(x, 2)?);
    let ([b, s, wq], [bk, l, wk], [_, lv, wv]) = (&q.size()[..], &k.size()[..], &v.size()[..]) else {
        return Err(Fail(
            "MultiHeadAttention over packed or 4-D inputs is not run by the libtorch executor yet".into(),
        ));
    };
    let (b, s, l, wq, wk, wv) = (*b, *s, *l, *wq, *wk, *wv);
    let n = m.num_heads;
    if n <= 0 || *bk != b || *lv != l || wq != wk || wq % n != 0 || wv % n != 0 {
        return Err(Fail(format!("{n} heads do not divide the Q/K/V widths {wq}/{wk}/{wv}")));
    }
    let (mut q, mut k, mut v) = (q.shallow_clone(), k.shallow_clone(), v.shallow_clone());
    if let Some(bias) = opt(x, 3) {
        q = q.f_add(&bias.f_narrow(0, 0, wq)?)?;
        k = k.f_add(&bias.f_narrow(0, wq, wk)?)?;
        v = v.f_add(&bias.f_narrow(0, wq + wk, wv)?)?;
    }
    let heads =
        |t: &Tensor, rows: i64, w: i64| -> R<Tensor> { Ok(t.f_reshape([b, rows, n, w / n])?.f_permute([0, 2, 1, 3])?) };
    let (q, k, v) = (heads(&q, s, wq)?, heads(&k, l, wk)?, heads(&v, l, wv)?);
    let scale = m.scale.map_or(1.0 / ((wq / n) as f64).sqrt(), f64::from);
    let mut scores = q.f_matmul(&k.f_transpose(-1, -2)?)?.f_mul_scalar(scale)?;
    let filter = f64::from(m.mask_filter_value.unwrap_or(-10000.0));
    if let Some(mask) = opt(x, 4) {
        scores = scores.f_add(&attention_mask(mask, b, s, l, filter)?.f_to_dtype(scores.f_kind()?, false, false)?)?;
    }
    if m.unidirectional.unwrap_or(0) != 0 {
        let future = Tensor::f_ones([s, l], (Kind::Bool, scores.device()))?.f_triu(1 + l - s)?;
        scores = scores.f_masked_fill(&future, filter)?;
    }
    if let Some(bias) = opt(x, 5) {
        scores = scores.f_add(bias)?;
    }
    let probs = scores.f_softmax(-1, None::<Kind>)?;
    one(probs.f_matmul(&v)?.f_permute([0, 2, 1, 3])?.f_reshape([b, s, wv])?)
}

pub(crate) fn embed_layer_norm(e: &EmbedLayerNorm, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    let ids = need(x, 0)?;
    let [b, s] = ids.size()[..] else { return Err(Fail("input_ids is not [batch, sequence]".into())) };
    let take = |table: &Tensor, idx: &Tensor| -> R<Tensor> {
        let rows = table.f_index_select(0, &idx.f_to_dtype(Kind::Int64, false, false)?.f_reshape([-1])?)?;
        Ok(rows.f_reshape([idx.size().first().copied().unwrap_or(1), s, -1])?)
    };
    let mut sum = take(need(x, 2)?, ids)?;
    let positions = match opt(x, 8) {
        Some(p) => p.shallow_clone(),
        None => Tensor::f_arange(s, (Kind::Int64, cx.device))?.f_reshape([1, s])?,
    };
    sum = sum.f_add(&take(need(x, 3)?, &positions)?)?;
    if let (Some(seg), Some(table)) = (opt(x, 1), opt(x, 4)) {
        sum = sum.f_add(&take(table, seg)?)?;
    }
    let eps = e.epsilon.map_or(FUSED_EPSILON, f64::from);
    let (n, _, _) = normalise(&sum, 1, eps, false)?;
    let y = n.f_mul(need(x, 5)?)?.f_add(need(x, 6)?)?;
    let mask_index = match opt(x, 7) {
        Some(m) => m.f_eq(1)?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Int)?,
        None => Tensor::f_zeros([b], (Kind::Int, cx.device))?,
    };
    let mut out = vec![Some(y), Some(mask_index), Some(sum)];
    out.truncate(cx.wants.len().max(1));
    Ok(out)
}

/// Unpacks `bits`-bit codes (low bits first) along the last axis of `packed` (u8).
fn unpack(packed: &Tensor, bits: i64) -> R<Tensor> {
    let per = 8 / bits;
    let wide = packed.f_to_dtype(Kind::Int64, false, false)?;
    let parts: Vec<Tensor> = (0..per)
        .map(|j| Ok(wide.f_bitwise_right_shift_tensor_scalar(j * bits)?.f_bitwise_and((1i64 << bits) - 1)?))
        .collect::<R<_>>()?;
    let mut dims = packed.size();
    let last = dims.pop().unwrap_or(1);
    dims.push(last * per);
    Ok(Tensor::f_stack(&parts, -1)?.f_reshape(dims.as_slice())?)
}

pub(crate) fn matmul_nbits(m: &MatMulNBits, x: &[Option<&Tensor>]) -> R<Outs> {
    if opt(x, 4).is_some() {
        return Err(Fail("g_idx is not supported".into()));
    }
    if ![2, 4, 8].contains(&m.bits) {
        return Err(Fail(format!("{} bits", m.bits)));
    }
    let a = need(x, 0)?;
    let kb = m.k_blocks();
    let codes = unpack(need(x, 1)?, m.bits)?.f_reshape([m.n, kb, -1])?;
    let scales = need(x, 2)?;
    let zero = match opt(x, 3) {
        None => Tensor::f_from_slice(&[(1i64 << (m.bits - 1)) as f32])?.f_to(a.device())?.f_reshape([])?,
        Some(z) if z.f_kind()? == Kind::Uint8 => {
            unpack(&z.f_reshape([m.n, -1])?, m.bits)?.f_narrow(1, 0, kb)?.f_reshape([m.n, kb, 1])?
        }
        Some(z) => z.f_reshape([m.n, kb, 1])?,
    };
    let w = codes
        .f_to_dtype(Kind::Float, false, false)?
        .f_sub(&zero.f_to_dtype(Kind::Float, false, false)?)?
        .f_mul(&scales.f_reshape([m.n, kb, 1])?.f_to_dtype(Kind::Float, false, false)?)?
        .f_reshape([m.n, -1])?
        .f_narrow(1, 0, m.k)?;
    let mut y = a.f_matmul(&w.f_to_dtype(a.f_kind()?, false, false)?.f_tr()?)?;
    if let Some(bias) = opt(x, 5) {
        y = y.f_add(bias)?;
    }
    one(y)
}

fn attr_int(attrs: &Attrs, name: &str) -> R<Option<i64>> {
    match attrs.iter().find(|(n, _)| n == name) {
        None => Ok(None),
        Some((_, Attr::Int(v))) => Ok(Some(*v)),
        Some((_, a)) => Err(Fail(format!("attribute `{name}` is {}, not an int", a.kind()))),
    }
}

fn only_attrs(o: &Opaque, known: &[&str]) -> R<()> {
    match o.attrs.iter().find(|(n, _)| !known.contains(&n.as_str())) {
        Some((n, _)) => Err(Fail(format!("attribute `{n}` is not supported"))),
        None => Ok(()),
    }
}

/// `RotaryEmbedding`: each head's rotated dims turned by the angles of its
/// positions (`cos_cache`/`sin_cache` rows at `position_ids`, or from a
/// start position when `position_ids` has one element); the rest pass.
pub(crate) fn rotary_embedding(r: &RotaryEmbedding, x: &[Option<&Tensor>]) -> R<Outs> {
    let (input, pos, cos, sin) = (need(x, 0)?, need(x, 1)?, need(x, 2)?, need(x, 3)?);
    if r.is_packed_batching.unwrap_or(0) != 0 || r.scale.is_some_and(|s| s != 1.0) {
        return Err(Fail(
            "RotaryEmbedding with packed batching or a scale is not run by the libtorch executor yet".into(),
        ));
    }
    let dims = input.size();
    let half = cos.size().get(1).copied().ok_or_else(|| Fail("RotaryEmbedding: a cache of rank < 2".into()))?;
    let rot = 2 * half;
    // As [B, S, N, D] (3-D input) or [B, N, S, D].
    let (heads, seq_axis) = match dims[..] {
        [b, s, h] => {
            let n = match r.num_heads.filter(|&n| n > 0) {
                Some(n) => n,
                None => h / r.rotary_embedding_dim.filter(|&d| d > 0).unwrap_or(rot).max(1),
            };
            if n <= 0 || h % n != 0 {
                return Err(Fail(format!("RotaryEmbedding: a width of {h} is not {n} heads")));
            }
            (input.f_reshape([b, s, n, h / n])?, 1)
        }
        [_, _, _, _] => (input.shallow_clone(), 2),
        _ => return Err(Fail(format!("RotaryEmbedding of an input of shape {dims:?}"))),
    };
    let (seq, head) = (heads.size()[seq_axis], heads.size()[3]);
    if rot > head {
        return Err(Fail(format!("RotaryEmbedding: caches of {half} columns for a head of {head}")));
    }
    let positions = if pos.numel() == 1 {
        (Tensor::f_arange(seq, (Kind::Int64, input.device()))? + pos.f_reshape([])?).f_unsqueeze(0)?
    } else {
        pos.f_to_kind(Kind::Int64)?
    };
    // [B or 1, S, half], with a heads axis of 1 where the input has one.
    let table = |t: &Tensor| -> R<Tensor> {
        let rows = t.f_index_select(0, &positions.f_reshape([-1])?)?.f_reshape([-1, seq, half])?;
        Ok(rows.f_unsqueeze(if seq_axis == 1 { 2 } else { 1 })?.f_to_kind(input.kind())?)
    };
    let (c, s) = (table(cos)?, table(sin)?);
    let rotated = heads.f_narrow(3, 0, rot)?;
    let out = if r.interleaved.unwrap_or(0) != 0 {
        let (a, b) = (rotated.f_slice(3, 0, rot, 2)?, rotated.f_slice(3, 1, rot, 2)?);
        let (p, q) = (&a * &c - &b * &s, &b * &c + &a * &s);
        Tensor::f_stack(&[p, q], -1)?.f_flatten(3, 4)?
    } else {
        let (a, b) = (rotated.f_narrow(3, 0, half)?, rotated.f_narrow(3, half, half)?);
        Tensor::f_cat(&[&a * &c - &b * &s, &b * &c + &a * &s], 3)?
    };
    let out = if rot < head { Tensor::f_cat(&[out, heads.f_narrow(3, rot, head - rot)?], 3)? } else { out };
    one(out.f_reshape(dims.as_slice())?)
}

/// Turns the first `2 · half` dims of `t` (`[.., S, D]`) by the angles of
/// `cos`/`sin` (`[.., S, half]`): the two halves, or (`interleaved`) the
/// even and odd dims, as pairs; the other dims pass.
fn rotate(t: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> R<Tensor> {
    let head = t.size().last().copied().unwrap_or(0);
    let half = cos.size().last().copied().unwrap_or(0);
    let rot = 2 * half;
    if rot > head || half <= 0 {
        return Err(Fail(format!("rotary caches of {half} columns for a head of {head}")));
    }
    let rotated = t.f_narrow(-1, 0, rot)?;
    let out = if interleaved {
        let (a, b) = (rotated.f_slice(-1, 0, rot, 2)?, rotated.f_slice(-1, 1, rot, 2)?);
        Tensor::f_stack(&[&a * cos - &b * sin, &b * cos + &a * sin], -1)?.f_flatten(-2, -1)?
    } else {
        let (a, b) = (rotated.f_narrow(-1, 0, half)?, rotated.f_narrow(-1, half, half)?);
        Tensor::f_cat(&[&a * cos - &b * sin, &b * cos + &a * sin], -1)?
    };
    Ok(if rot < head { Tensor::f_cat(&[out, t.f_narrow(-1, rot, head - rot)?], -1)? } else { out })
}

/// `GroupQueryAttention` as ONNX Runtime's CPU kernel computes it: query
/// head `h` attends with key/value head `h / (num_heads / kv_num_heads)`;
/// sample `b` holds `seqlens_k[b] + 1` tokens in all, of which the last `S`
/// are new (none are past in a first prompt, where `S` is
/// `total_sequence_length`); each new token attends causally to the past and
/// to the new tokens up to itself (within `local_window_size`), with the
/// rotary embedding at its position when `do_rotary`, the scores soft-capped
/// and the softmax smooth as the attributes say. The present cache is the
/// past's valid rows, then the new keys and values, then zeros, `max(total,
/// past)` rows long. Attention biases, head sinks, the scores output and
/// quantised caches are refused.
pub(crate) fn group_query_attention(g: &GroupQueryAttention, x: &[Option<&Tensor>], cx: &Cx) -> R<Outs> {
    if x.len() > 10 && x[10..].iter().any(Option::is_some) || cx.wants.len() > 3 || g.kv_cache_bit_width.is_some() {
        return Err(Fail(
            "GroupQueryAttention with an attention bias, head sinks, a scores output or a quantised cache is not run \
             by the libtorch executor yet"
                .into(),
        ));
    }
    let query = need(x, 0)?;
    let [b, s, width] = query.size()[..] else { return Err(Fail("query is not [batch, sequence, width]".into())) };
    let (n, kv) = (g.num_heads, g.kv_num_heads);
    let packed = opt(x, 1).is_none();
    let bad = || Fail(format!("{n} query heads over {kv} key/value heads do not divide a query of width {width}"));
    let d = g.head_size(width, packed).ok_or_else(bad)?;
    if kv <= 0 || n % kv != 0 {
        return Err(bad());
    }
    let heads = |t: &Tensor, h: i64| -> R<Tensor> { Ok(t.f_reshape([b, s, h, d])?.f_permute([0, 2, 1, 3])?) };
    let (mut q, mut k, v) = if packed {
        let part = |at: i64, h: i64| -> R<Tensor> { heads(&query.f_narrow(-1, at * d, h * d)?, h) };
        (part(0, n)?, part(n, kv)?, part(n + kv, kv)?)
    } else {
        (heads(query, n)?, heads(need(x, 1)?, kv)?, heads(need(x, 2)?, kv)?)
    };
    let total: Vec<i64> = ints(need(x, 5)?)?.iter().map(|&t| t.saturating_add(1)).collect();
    let total_len = ints(need(x, 6)?)?.first().copied().ok_or_else(|| Fail("total_sequence_length is empty".into()))?;
    let (past_k, past_v) = (opt(x, 3), opt(x, 4));
    let past_rows = past_k.map_or(0, |p| p.size().get(2).copied().unwrap_or(0));
    let first = s == total_len;
    let past: Vec<i64> = total.iter().map(|&t| if first { 0 } else { t.saturating_sub(s) }).collect();
    if total.len() != b as usize || past.iter().any(|&p| p < 0 || p > past_rows) {
        return Err(Fail(format!("seqlens_k {total:?} (+1) do not fit {s} new tokens after {past_rows} cached")));
    }
    // The present cache is sized by total_sequence_length: checked against
    // what it can hold before anything that size is made.
    if total_len < 1 || total_len > past_rows.saturating_add(s) {
        return Err(Fail(format!("total_sequence_length {total_len} with {s} new tokens after {past_rows} cached")));
    }
    let device = query.device();
    if g.do_rotary.unwrap_or(0) != 0 {
        let (cos, sin) = (need(x, 7)?, need(x, 8)?);
        let positions = match opt(x, 9) {
            Some(p) => p.f_to_kind(Kind::Int64)?.f_narrow(1, 0, s)?,
            None => {
                let start = Tensor::f_from_slice(&past)?.f_to(device)?.f_reshape([b, 1])?;
                Tensor::f_arange(s, (Kind::Int64, device))?.f_reshape([1, s])?.f_add(&start)?
            }
        };
        let table = |t: &Tensor| -> R<Tensor> {
            let half = t.size().get(1).copied().unwrap_or(0);
            Ok(t.f_index_select(0, &positions.f_reshape([-1])?)?.f_reshape([b, 1, s, half])?.f_to_kind(q.kind())?)
        };
        let (c, si) = (table(cos)?, table(sin)?);
        let interleaved = g.rotary_interleaved.unwrap_or(0) != 0;
        q = rotate(&q, &c, &si, interleaved)?;
        k = rotate(&k, &c, &si, interleaved)?;
    }
    let rows = total_len.max(past_rows);
    // The present cache of sample i: its valid past rows, the new ones, zeros.
    let present = |past_t: Option<&Tensor>, new: &Tensor, i: i64| -> R<Tensor> {
        let mut parts = Vec::new();
        let p = past[i as usize];
        if let (Some(t), true) = (past_t, p > 0) {
            parts.push(t.f_narrow(0, i, 1)?.f_narrow(2, 0, p)?);
        }
        parts.push(new.f_narrow(0, i, 1)?);
        let filled = p + s;
        if filled < rows {
            parts.push(Tensor::f_zeros([1, kv, rows - filled, d], (new.kind(), device))?);
        }
        Ok(Tensor::f_cat(&parts, 2)?)
    };
    let scale = g.scale.filter(|&x| x != 0.0).map_or(1.0 / (d as f64).sqrt(), f64::from);
    let softcap = f64::from(g.softcap.unwrap_or(0.0));
    let window = g.local_window_size.unwrap_or(-1);
    let (mut outs, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..b {
        let (pk, pv) = (present(past_k, &k, i)?, present(past_v, &v, i)?);
        let group = n / kv;
        let (ke, ve) =
            (pk.f_repeat_interleave_self_int(group, 1, None)?, pv.f_repeat_interleave_self_int(group, 1, None)?);
        let mut scores = q.f_narrow(0, i, 1)?.f_matmul(&ke.f_transpose(-1, -2)?)?.f_mul_scalar(scale)?;
        if softcap > 0.0 {
            scores = scores.f_div_scalar(softcap)?.f_tanh()?.f_mul_scalar(softcap)?;
        }
        // Query row r sees keys up to past + r (and, in a window, the last window + 1 of them).
        let last = Tensor::f_arange(s, (Kind::Int64, device))?.f_add_scalar(past[i as usize])?.f_reshape([s, 1])?;
        let key = Tensor::f_arange(rows, (Kind::Int64, device))?.f_reshape([1, rows])?;
        let mut hidden = key.f_gt_tensor(&last)?;
        if window > 0 {
            hidden = hidden.f_logical_or(&key.f_le_tensor(&last.f_sub_scalar(window.saturating_add(1))?)?)?;
        }
        scores = scores.f_masked_fill(&hidden, f64::NEG_INFINITY)?;
        let probs = if g.smooth_softmax.unwrap_or(0) != 0 {
            // A zero logit beside the scores takes part of the mass.
            let zero = Tensor::f_zeros([1, n, s, 1], (scores.kind(), device))?;
            Tensor::f_cat(&[scores, zero], -1)?.f_softmax(-1, None::<Kind>)?.f_narrow(-1, 0, rows)?
        } else {
            scores.f_softmax(-1, None::<Kind>)?
        };
        outs.push(probs.f_matmul(&ve)?.f_permute([0, 2, 1, 3])?.f_reshape([1, s, n * d])?);
        keys.push(pk);
        values.push(pv);
    }
    Ok(vec![Some(Tensor::f_cat(&outs, 0)?), Some(Tensor::f_cat(&keys, 0)?), Some(Tensor::f_cat(&values, 0)?)])
}

/// The ops outside the closed set that the executor runs by name.
pub(crate) fn opaque(o: &Opaque, x: &[Option<&Tensor>]) -> R<Outs> {
    match (o.domain.as_str(), o.op_type.as_str()) {
        ("" | "ai.onnx", "GatherND") => {
            only_attrs(o, &["batch_dims"])?;
            if attr_int(&o.attrs, "batch_dims")?.unwrap_or(0) != 0 {
                return Err(Fail("batch_dims ≠ 0 is not supported".into()));
            }
            one(gather_nd(need(x, 0)?, need(x, 1)?)?)
        }
        (d, t) => {
            let name = if d.is_empty() { t.to_string() } else { format!("{d}:{t}") };
            Err(Fail(format!("`{name}` is not run by the libtorch executor (an op outside ecospac's op set)")))
        }
    }
}

/// ONNX `MatMulInteger`: codes less their zero points (per row of A, per
/// column of B, or one), multiplied exactly and returned as int32.
pub(crate) fn matmul_integer(x: &[Option<&Tensor>]) -> R<Outs> {
    let wide = |i: usize| -> R<Tensor> { Ok(need(x, i)?.f_to_dtype(Kind::Double, false, false)?) };
    let (mut a, mut b) = (wide(0)?, wide(1)?);
    if let Some(z) = opt(x, 2) {
        let z = z.f_to_dtype(Kind::Double, false, false)?;
        // Per row of A ([M]) or per tensor.
        let z = if z.numel() > 1 { z.f_reshape([-1, 1])? } else { z.f_reshape([])? };
        a = a.f_sub(&z)?;
    }
    if let Some(z) = opt(x, 3) {
        b = b.f_sub(&z.f_to_dtype(Kind::Double, false, false)?)?;
    }
    one(a.f_matmul(&b)?.f_round()?.f_to_dtype(Kind::Int, false, false)?)
}

/// ONNX `DynamicQuantizeLinear`: uint8 codes of the range [min(x, 0), max(x, 0)].
pub(crate) fn dynamic_quantize(x: &[Option<&Tensor>]) -> R<Outs> {
    let t = need(x, 0)?.f_to_dtype(Kind::Float, false, false)?;
    let lo = t.f_min()?.f_clamp_max(0.0)?;
    let hi = t.f_max()?.f_clamp_min(0.0)?;
    let scale = hi.f_sub(&lo)?.f_div_scalar(255.0)?;
    let zero = lo.f_neg()?.f_div(&scale)?.f_round()?.f_clamp(0.0, 255.0)?;
    let y = t.f_div(&scale)?.f_round()?.f_add(&zero)?.f_clamp(0.0, 255.0)?;
    Ok(vec![
        Some(y.f_to_dtype(Kind::Uint8, false, false)?),
        Some(scale),
        Some(zero.f_to_dtype(Kind::Uint8, false, false)?),
    ])
}

/// ONNX `GatherND` with `batch_dims` 0.
fn gather_nd(data: &Tensor, idx: &Tensor) -> R<Tensor> {
    let dims = data.size();
    let idims = idx.size();
    let k = *idims.last().ok_or_else(|| Fail("indices are a scalar".into()))?;
    if k < 1 || k as usize > dims.len() {
        return Err(Fail(format!("index tuples of {k} into rank {}", dims.len())));
    }
    let k = k as usize;
    let lead = Tensor::f_from_slice(&dims[..k])?.f_to(data.device())?;
    let idx = idx.f_to_dtype(Kind::Int64, false, false)?.f_reshape([-1, k as i64])?;
    let idx = idx.f_where_self(&idx.f_ge(0)?, &idx.f_add(&lead)?)?;
    // Row-major strides of the leading k axes.
    let mut strides = vec![1i64; k];
    for i in (0..k.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    let strides = Tensor::f_from_slice(&strides)?.f_to(data.device())?;
    let flat = idx.f_mul(&strides)?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)?;
    let rows = data.f_reshape([dims[..k].iter().product::<i64>(), -1])?.f_index_select(0, &flat)?;
    let mut shape = idims[..idims.len() - 1].to_vec();
    shape.extend(&dims[k..]);
    Ok(rows.f_reshape(shape.as_slice())?)
}

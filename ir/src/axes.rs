//! How each op relates the axes of its inputs to the axes of its outputs.
//!
//! This is the only source of dimension coupling: the coupling analysis builds
//! its groups from these relations and knows nothing about "attention" or "FFN".
//! Every op of the closed set declares its relations here (there is no default:
//! an op that cannot say pins every axis it touches).

use crate::infer::{norm_axis, slice_bounds, Fact};
use crate::op::Op;
use crate::ty::Dim;

/// One axis of one input or output of a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Which side.
    pub port: Port,
    /// The axis.
    pub axis: usize,
}

/// An input or output position of a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// The i-th input.
    In(usize),
    /// The i-th output.
    Out(usize),
    /// An index space inside the op that no tensor shows (a head of a fused
    /// attention's packed weight), declared by [`AxisRel::Inner`]; its axis is 0.
    Inner(usize),
}

/// A piece of a concatenated axis.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// An axis of an input or output.
    Slot(Slot),
    /// Indices no other slot sees (the parts a Slice drops), of this size.
    Gap(i64),
}

/// Why an axis may not change size.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// Normalised over (Softmax, LayerNorm).
    Normalised,
    /// Reduced over.
    Reduced,
    /// Indexed by data (Gather's data axis).
    Indexed,
    /// Reaches an op outside the closed set.
    Opaque,
    /// The op's shapes are not known.
    UnknownShape,
    /// A Slice with steps other than 1 or bounds not known.
    IrregularSlice,
    /// A Reshape whose axes do not group.
    UngroupedReshape,
    /// A graph input or output: its shape is part of the model's interface.
    Interface,
    /// Two relations disagree on how the axis is structured.
    Conflict,
    /// Read by a fused ONNX Runtime op whose inner structure is not sliced yet
    /// (`Attention`, `EmbedLayerNormalization`, `GroupQueryAttention`).
    Fused,
    /// Read by name inside a subgraph (`If`, `Loop`, `Scan`), which is not rewritten.
    Subgraph,
    /// Split into more pieces than the analysis follows (nested too deep, or a
    /// tensor of more index spaces than real models have).
    TooFragmented,
    /// Packed with its neighbours: codes within a quantisation block, or zero
    /// points of several blocks in one byte.
    Packed,
    /// Read by a dynamic quantisation, whose range covers the whole tensor,
    /// where the analysis cannot show that the removed elements are zero.
    DynamicRange,
}

impl PinReason {
    /// A phrase for reports.
    pub fn describe(self) -> &'static str {
        match self {
            PinReason::Normalised => "normalised over",
            PinReason::Reduced => "reduced over",
            PinReason::Indexed => "indexed by data",
            PinReason::Opaque => "reaches an op outside the closed set",
            PinReason::UnknownShape => "shape unknown",
            PinReason::IrregularSlice => "sliced with unknown bounds or a step",
            PinReason::UngroupedReshape => "reshaped in a way that does not group",
            PinReason::Interface => "a graph input or output",
            PinReason::Conflict => "structured differently by two ops",
            PinReason::Fused => "read by a fused ONNX Runtime op (not sliced yet)",
            PinReason::Subgraph => "read inside a subgraph",
            PinReason::TooFragmented => "split into more pieces than the analysis follows",
            PinReason::Packed => "packed with its neighbours (within a quantisation block)",
            PinReason::DynamicRange => "in a dynamic quantisation range, and not shown to be zero where cut",
        }
    }
}

/// A relation between axes of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum AxisRel {
    /// Index `i` of `a` is index `i` of `b` (elementwise, broadcast, transpose).
    Same(Slot, Slot),
    /// `a` and `b` are summed over together (a contraction): removing index `i`
    /// from both removes exactly one rank-one term.
    Contract(Slot, Slot),
    /// The flat (row-major) index spaces of two lists of axes are equal (reshape).
    Product(Vec<Slot>, Vec<Slot>),
    /// `whole` is the concatenation of `parts` (Concat, Split, Slice).
    Concat {
        /// The long axis.
        whole: Slot,
        /// Its pieces in order.
        parts: Vec<Part>,
    },
    /// `whole` is `blocks` blocks of `block` indices each (row-major), summed
    /// over like a contraction: whole blocks may go, never part of one
    /// (block-quantised weights).
    Blocks {
        /// The flat axis (a product's inner axis).
        whole: Slot,
        /// The axis that counts the blocks (of the packed weight).
        blocks: Slot,
        /// Indices per block.
        block: i64,
    },
    /// Declares the index space [`Port::Inner`]`(id)` of this node, of `size`.
    Inner {
        /// Its number.
        id: usize,
        /// Its size.
        size: i64,
    },
    /// The axis may not change size.
    Pin(Slot, PinReason),
}

fn rank(f: Option<&Fact>) -> Option<usize> {
    f?.ty.as_ref()?.shape.as_ref().map(Vec::len)
}

fn shape(f: Option<&Fact>) -> Option<&[Dim]> {
    f?.ty.as_ref()?.shape.as_deref()
}

fn pin_all(ins: &[Option<Fact>], outs: &[Option<Fact>], why: PinReason) -> Vec<AxisRel> {
    let mut r = Vec::new();
    for (i, f) in ins.iter().enumerate() {
        for axis in 0..rank(f.as_ref()).unwrap_or(0) {
            r.push(AxisRel::Pin(Slot { port: Port::In(i), axis }, why));
        }
    }
    for (i, f) in outs.iter().enumerate() {
        for axis in 0..rank(f.as_ref()).unwrap_or(0) {
            r.push(AxisRel::Pin(Slot { port: Port::Out(i), axis }, why));
        }
    }
    r
}

/// Right-aligned broadcast: input axes that match the output (not broadcast from 1).
fn broadcast_rels(input: usize, in_shape: &[Dim], out: usize, out_shape: &[Dim], r: &mut Vec<AxisRel>) {
    let off = out_shape.len().saturating_sub(in_shape.len());
    for (j, d) in in_shape.iter().enumerate() {
        let k = j + off;
        if k < out_shape.len() && (d == &out_shape[k] || d.as_known() != Some(1)) {
            r.push(AxisRel::Same(Slot { port: Port::In(input), axis: j }, Slot { port: Port::Out(out), axis: k }));
        }
    }
}

fn same(i: usize, a: usize, o: usize, b: usize) -> AxisRel {
    AxisRel::Same(Slot { port: Port::In(i), axis: a }, Slot { port: Port::Out(o), axis: b })
}

fn pin(i: usize, axis: usize, why: PinReason) -> AxisRel {
    AxisRel::Pin(Slot { port: Port::In(i), axis }, why)
}

fn pin_out(o: usize, axis: usize, why: PinReason) -> AxisRel {
    AxisRel::Pin(Slot { port: Port::Out(o), axis }, why)
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

/// The head count and the Q, K, V widths of a fused `Attention` whose heads
/// can be sliced: input `[B, S, H_in]`, packed weight `[H_in, Q + K + V]` and
/// bias, each width a whole number of heads, at most a mask index besides
/// (no past state, attention bias or rotary embedding), one output.
fn fused_heads(f: &crate::op::FusedAttention, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Option<(i64, [i64; 3])> {
    let known = |f: Option<&Fact>| -> Option<Vec<i64>> { shape(f)?.iter().map(Dim::as_known).collect() };
    let x = shape(ins.first()?.as_ref())?;
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

/// True when `small` must grow to reach `big` (it divides `big` and is smaller).
fn grows(small: &Dim, big: &Dim) -> bool {
    big.div_exact(small).is_some_and(|q| q != Dim::known(1))
}

/// The axis relations of one node, given what is known of its inputs and outputs.
pub fn axis_relations(op: &Op, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Vec<AxisRel> {
    let mut r = Vec::new();
    let in_shape = |i: usize| shape(ins.get(i).and_then(Option::as_ref));
    let out_shape = |i: usize| shape(outs.get(i).and_then(Option::as_ref));
    let Some(o0) = out_shape(0) else {
        return pin_all(
            ins,
            outs,
            if matches!(op, Op::Opaque(_)) { PinReason::Opaque } else { PinReason::UnknownShape },
        );
    };
    match op {
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast(_) | Op::Gelu(_) | Op::ContribGelu(_) | Op::Expand => {
            let data_inputs = if matches!(op, Op::Expand) { 1 } else { ins.len() };
            for i in 0..data_inputs {
                match in_shape(i) {
                    Some(s) => broadcast_rels(i, s, 0, o0, &mut r),
                    None => return pin_all(ins, outs, PinReason::UnknownShape),
                }
            }
        }
        Op::Quantize(q) | Op::Dequantize(q) => {
            // Elementwise on the data; a per-axis scale and zero point follow `axis`.
            for k in 0..o0.len() {
                r.push(same(0, k, 0, k));
            }
            for i in 1..ins.len().min(3) {
                match in_shape(i) {
                    Some([]) => {}
                    Some([n]) if n.as_known() == Some(1) => {}
                    Some([_]) => match q.axis(o0.len()) {
                        Ok(a) => r.push(same(i, 0, 0, a)),
                        Err(_) => return pin_all(ins, outs, PinReason::UnknownShape),
                    },
                    _ => return pin_all(ins, outs, PinReason::UnknownShape),
                }
            }
        }
        // Elementwise codes; the scale and zero point are of the whole tensor.
        // Removing elements that are zero leaves its range (which always holds
        // zero) as it was; the analysis pins the axes where it cannot show that
        // the removed elements are zero.
        Op::DynamicQuantize => {
            for k in 0..o0.len() {
                r.push(same(0, k, 0, k));
            }
        }
        Op::Softmax(s) => {
            let Ok(a) = norm_axis(s.axis, o0.len()) else { return pin_all(ins, outs, PinReason::UnknownShape) };
            for k in 0..o0.len() {
                if k == a || (s.coerce_2d && k > a) {
                    r.push(pin(0, k, PinReason::Normalised));
                    r.push(pin_out(0, k, PinReason::Normalised));
                } else {
                    r.push(same(0, k, 0, k));
                }
            }
        }
        Op::LayerNorm(l) => {
            let Ok(a) = norm_axis(l.axis, o0.len()) else { return pin_all(ins, outs, PinReason::UnknownShape) };
            for k in 0..o0.len() {
                if k >= a {
                    r.push(pin(0, k, PinReason::Normalised));
                    r.push(pin_out(0, k, PinReason::Normalised));
                } else {
                    r.push(same(0, k, 0, k));
                    for o in 1..outs.len() {
                        r.push(same(0, k, o, k));
                    }
                }
            }
            for i in 1..ins.len() {
                for k in 0..in_shape(i).map_or(0, <[Dim]>::len) {
                    r.push(pin(i, k, PinReason::Normalised));
                }
            }
        }
        Op::SkipLayerNorm(l) => {
            // input + skip (+ bias) broadcast to the sum's shape, normalised over the last axis.
            let last = o0.len().saturating_sub(1);
            let sums: Vec<usize> = [0usize, 3].into_iter().filter(|&o| o < outs.len()).collect();
            for i in 0..ins.len() {
                if ins.get(i).is_some_and(Option::is_none) {
                    continue; // an omitted optional input (beta before a bias)
                }
                let Some(s) = in_shape(i) else { return pin_all(ins, outs, PinReason::UnknownShape) };
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
            for o in 0..outs.len() {
                for k in 0..out_shape(o).map_or(0, <[Dim]>::len) {
                    if k == last {
                        r.push(pin_out(o, k, PinReason::Normalised));
                    } else if o == 1 || o == 2 {
                        r.push(same(0, k, o, k));
                    }
                }
            }
        }
        Op::FusedAttention(f) if fused_heads(f, ins, outs).is_some() => {
            let Some((n, parts)) = fused_heads(f, ins, outs) else { return pin_all(ins, outs, PinReason::Fused) };
            // Head h is the h-th `head size` indices of each of the Q, K and V
            // parts of the packed weight and bias, and of the output. The Q and
            // K dims of a head are one index space (their product is summed
            // over), the V dims another: heads and dims may both go (the slicer
            // sets the head count, the widths and the score scale).
            let inner = |id: usize| Slot { port: Port::Inner(id), axis: 0 };
            let heads = inner(3);
            r.push(AxisRel::Inner { id: 3, size: n });
            for (p, &width) in parts.iter().enumerate() {
                r.push(AxisRel::Inner { id: p, size: width });
                r.push(AxisRel::Inner { id: 4 + p, size: width / n });
                r.push(AxisRel::Product(vec![inner(p)], vec![heads, inner(4 + p)]));
            }
            r.push(AxisRel::Same(inner(4), inner(5)));
            let qkv: Vec<Part> = (0..3).map(|p| Part::Slot(inner(p))).collect();
            r.push(AxisRel::Concat { whole: Slot { port: Port::In(1), axis: 1 }, parts: qkv.clone() });
            r.push(AxisRel::Concat { whole: Slot { port: Port::In(2), axis: 0 }, parts: qkv });
            r.push(AxisRel::Product(vec![Slot { port: Port::Out(0), axis: 2 }], vec![heads, inner(6)]));
            r.push(AxisRel::Contract(Slot { port: Port::In(0), axis: 2 }, Slot { port: Port::In(1), axis: 0 }));
            for k in 0..2 {
                r.push(same(0, k, 0, k));
            }
            // The mask index keeps its shape.
            for k in 0..in_shape(3).map_or(0, <[Dim]>::len) {
                r.push(pin(3, k, PinReason::Fused));
            }
        }
        Op::FusedAttention(_) | Op::EmbedLayerNorm(_) | Op::GroupQueryAttention(_) => {
            // Batch and sequence of input 0 pass to the outputs that carry them
            // (the attention output; EmbedLayerNorm's output, sum and the mask
            // index's batch); everything else is pinned. A GroupQueryAttention's
            // heads stay: its cache is the model's interface.
            let passes = |o: usize, k: usize| match op {
                Op::FusedAttention(_) | Op::GroupQueryAttention(_) => o == 0 && k < 2,
                _ => (o != 1 && k < 2) || (o == 1 && k == 0),
            };
            for o in 0..outs.len() {
                for k in 0..out_shape(o).map_or(0, <[Dim]>::len) {
                    r.push(if passes(o, k) { same(0, k, o, k) } else { pin_out(o, k, PinReason::Fused) });
                }
            }
            for i in 0..ins.len() {
                for k in 0..in_shape(i).map_or(0, <[Dim]>::len) {
                    if !(i == 0 && k < 2) {
                        r.push(pin(i, k, PinReason::Fused));
                    }
                }
            }
        }
        Op::MatMulNBits(m) => {
            let Some(a) = in_shape(0) else { return pin_all(ins, outs, PinReason::UnknownShape) };
            let last = a.len().saturating_sub(1);
            for k in 0..last {
                r.push(same(0, k, 0, k));
            }
            let given = |i: usize| ins.get(i).is_some_and(Option::is_some);
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
                match in_shape(i) {
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
                    _ => return pin_all(ins, outs, PinReason::Packed),
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
        }
        Op::ReduceMean(red) | Op::ReduceSum(red) => {
            let Some(s) = in_shape(0) else { return pin_all(ins, outs, PinReason::UnknownShape) };
            let axes = match &red.axes {
                Some(a) => Some(a.clone()),
                None => ins.get(1).and_then(Option::as_ref).and_then(Fact::known_ints),
            };
            let Some(axes) = axes else { return pin_all(ins, outs, PinReason::Reduced) };
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
        }
        Op::MatMul | Op::Gemm(_) | Op::MatMulInteger => {
            let (Some(a), Some(b)) = (in_shape(0), in_shape(1)) else {
                return pin_all(ins, outs, PinReason::UnknownShape);
            };
            let (ta, tb) = match op {
                Op::Gemm(g) => (g.trans_a, g.trans_b),
                _ => (false, false),
            };
            if a.len() < 2 || b.len() < 2 {
                return pin_all(ins, outs, PinReason::UnknownShape);
            }
            let (ra, rb, ro) = (a.len(), b.len(), o0.len());
            let (a_m, a_k) = if ta { (ra - 1, ra - 2) } else { (ra - 2, ra - 1) };
            let (b_k, b_n) = if tb { (rb - 1, rb - 2) } else { (rb - 2, rb - 1) };
            broadcast_rels(0, &a[..ra - 2], 0, &o0[..ro - 2], &mut r);
            broadcast_rels(1, &b[..rb - 2], 0, &o0[..ro - 2], &mut r);
            r.push(same(0, a_m, 0, ro - 2));
            r.push(same(1, b_n, 0, ro - 1));
            r.push(AxisRel::Contract(Slot { port: Port::In(0), axis: a_k }, Slot { port: Port::In(1), axis: b_k }));
            match op {
                // Zero points: one per row of A, one per column of B, or one for all.
                Op::MatMulInteger => {
                    for (i, axis) in [(2, ro - 2), (3, ro - 1)] {
                        match in_shape(i) {
                            Some([n]) if n.as_known() != Some(1) => r.push(same(i, 0, 0, axis)),
                            Some([] | [_]) | None => {}
                            Some(_) => return pin_all(ins, outs, PinReason::UnknownShape),
                        }
                    }
                }
                _ => {
                    if let Some(c) = in_shape(2) {
                        broadcast_rels(2, c, 0, o0, &mut r);
                    }
                }
            }
        }
        Op::Conv(c) => {
            let (Some(x), Some(w)) = (in_shape(0), in_shape(1)) else {
                return pin_all(ins, outs, PinReason::UnknownShape);
            };
            r.push(same(0, 0, 0, 0));
            r.push(AxisRel::Same(Slot { port: Port::In(1), axis: 0 }, Slot { port: Port::Out(0), axis: 1 }));
            if in_shape(2).is_some() {
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
        }
        Op::Transpose { perm } => {
            let n = o0.len();
            let perm: Vec<i64> = perm.clone().unwrap_or_else(|| (0..n as i64).rev().collect());
            for (k, &p) in perm.iter().enumerate() {
                r.push(same(0, p as usize, 0, k));
            }
        }
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            let Some(s) = in_shape(0) else { return pin_all(ins, outs, PinReason::UnknownShape) };
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
        }
        Op::Split(sp) => {
            let Ok(a) = norm_axis(sp.axis, o0.len()) else { return pin_all(ins, outs, PinReason::UnknownShape) };
            let mut parts = Vec::new();
            for o in 0..outs.len() {
                if out_shape(o).is_none() {
                    return pin_all(ins, outs, PinReason::UnknownShape);
                }
                parts.push(Part::Slot(Slot { port: Port::Out(o), axis: a }));
                for k in 0..o0.len() {
                    if k != a {
                        r.push(same(0, k, o, k));
                    }
                }
            }
            r.push(AxisRel::Concat { whole: Slot { port: Port::In(0), axis: a }, parts });
        }
        Op::Concat { axis } => {
            let Ok(a) = norm_axis(*axis, o0.len()) else { return pin_all(ins, outs, PinReason::UnknownShape) };
            let mut parts = Vec::new();
            for i in 0..ins.len() {
                let Some(s) = in_shape(i) else { return pin_all(ins, outs, PinReason::UnknownShape) };
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
        }
        Op::Slice => {
            let Some(s) = in_shape(0) else { return pin_all(ins, outs, PinReason::UnknownShape) };
            let known = |i: usize| ins.get(i).and_then(Option::as_ref).and_then(Fact::known_ints);
            let (starts, ends) = (known(1), known(2));
            let axes = if ins.get(3).is_some_and(Option::is_some) {
                known(3)
            } else {
                starts.as_ref().map(|v| (0..v.len() as i64).collect())
            };
            let steps = if ins.get(4).is_some_and(Option::is_some) {
                known(4)
            } else {
                starts.as_ref().map(|v| vec![1; v.len()])
            };
            let (Some(starts), Some(ends), Some(axes), Some(steps)) = (starts, ends, axes, steps) else {
                return pin_all(ins, outs, PinReason::IrregularSlice);
            };
            let mut sliced = vec![false; s.len()];
            for k in 0..starts.len().min(ends.len()).min(axes.len()).min(steps.len()) {
                let Ok(a) = norm_axis(axes[k], s.len()) else { return pin_all(ins, outs, PinReason::IrregularSlice) };
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
        }
        Op::Gather { axis } => {
            let (Some(d), Some(i)) = (in_shape(0), in_shape(1)) else {
                return pin_all(ins, outs, PinReason::UnknownShape);
            };
            let Ok(a) = norm_axis(*axis, d.len()) else { return pin_all(ins, outs, PinReason::UnknownShape) };
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
        }
        // Ops that make new data: their outputs relate to no input axis. Sizes they
        // take from inputs (Shape's input, targets) are checked by the slicer.
        Op::Shape { .. } | Op::Constant { .. } | Op::ConstantOfShape { .. } | Op::Range => {}
        Op::QLinear(q) => return qlinear_relations(q, ins, outs),
        Op::Opaque(_) => return pin_all(ins, outs, PinReason::Opaque),
    }
    r
}

/// A quantised op relates its data inputs as its float op does; B's scale
/// and zero point, when one per column, follow the output's last axis.
fn qlinear_relations(q: &crate::op::QLinear, ins: &[Option<Fact>], outs: &[Option<Fact>]) -> Vec<AxisRel> {
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
    let mut r: Vec<AxisRel> = axis_relations(&q.float_op(), &float, outs)
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
    let out_rank = shape(outs.first().and_then(Option::as_ref)).map_or(0, <[Dim]>::len);
    let b_rank = shape(ins.get(3).and_then(Option::as_ref)).map_or(0, <[Dim]>::len);
    for (i, f) in ins.iter().enumerate() {
        match shape(f.as_ref()) {
            Some([n]) if n.as_known() != Some(1) && !data.contains(&i) => match q.column_axis(i, b_rank) {
                Some(_) if out_rank > 0 => r.push(same(i, 0, 0, out_rank - 1)),
                _ => return pin_all(ins, outs, PinReason::UnknownShape),
            },
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(v: &[i64]) -> Vec<Dim> {
        v.iter().map(|&x| Dim::known(x)).collect()
    }

    #[test]
    fn reshape_groups_heads_and_merges() {
        let g = reshape_groups(&dims(&[2, 16, 768]), &dims(&[2, 16, 12, 64])).expect("groups");
        assert_eq!(g, vec![(vec![0], vec![0]), (vec![1], vec![1]), (vec![2], vec![2, 3])]);
        let g = reshape_groups(&dims(&[2, 12, 16, 64]), &dims(&[24, 16, 64])).expect("groups");
        assert_eq!(g, vec![(vec![0, 1], vec![0]), (vec![2], vec![1]), (vec![3], vec![2])]);
        let g = reshape_groups(&dims(&[4, 6]), &dims(&[3, 8])).expect("groups");
        assert_eq!(g, vec![(vec![0, 1], vec![0, 1])]);
        assert_eq!(reshape_groups(&dims(&[1, 8]), &dims(&[8, 1])), Some(vec![(vec![1], vec![0])]));
    }
}

//! Coupling analysis: which weight slices must be removed together.
//!
//! Every node's [`axis_relations`] are applied to index spaces ("atoms") of the
//! `(value, axis)` slots: identity and contraction unify, reshapes relate
//! products, split/concat/slice relate concatenations, and normalised, reduced,
//! indexed, opaque and interface axes are pinned. After all relations, each
//! leaf index space that some weight carries and nothing pins is a **coupling
//! group**: removing index `i` of the leaf from every slice that carries it is
//! exact. No architecture is named anywhere: GPT-2's fused `c_attn`, GQA's
//! repeated heads and RoPE's half rotation fall out of the op rules.

mod atoms;
mod zeros;

use atoms::{AtomId, Atoms, Refine};
use ecospac_ir::axes::{axis_relations, AxisRel, Part, PinReason, Port, Slot};
use ecospac_ir::infer::Fact;
use ecospac_ir::{EntityId, Model, NodeId, Op, ValueId, Verified};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How a weight slice takes part in a group.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The axis is an output of the product (columns of `x @ W`, a bias).
    Writer,
    /// The axis is contracted (rows of `x @ W`).
    Reader,
}

/// One weight axis in a group.
#[derive(Clone, Debug)]
pub struct Member {
    /// The initializer.
    pub value: ValueId,
    /// The node and input position reading it (constants are analysed per use).
    pub reader: Option<(NodeId, usize)>,
    /// This use gets its own copy when sliced: a constant whose elements are all
    /// equal, read by several nodes (exporters merge equal constants such as zero
    /// biases; a copy per use keeps unrelated layers apart). Any other constant
    /// with several readers is one tensor: all its uses share one index space and
    /// it is sliced once, in place.
    pub own_copy: bool,
    /// Its axis.
    pub axis: usize,
    /// Writer or reader.
    pub role: Role,
    /// For each index of the group, the positions along `axis` that carry it
    /// (one per copy, e.g. per attention head).
    pub positions: Vec<Vec<u32>>,
}

/// A set of weight slices whose aligned indices are removed together.
#[derive(Clone, Debug)]
pub struct Group {
    /// The leaf index space.
    pub(crate) leaf: AtomId,
    /// Outer index spaces (heads) along which the kept set may differ: group
    /// index `b * block + i` is index `i` of the leaf in block `b` (mixed radix
    /// over `context`, outer first).
    pub(crate) context: Vec<(AtomId, u32)>,
    /// Size of one block (the leaf's size).
    pub block: usize,
    /// Size of the group's index space (blocks × block).
    pub size: usize,
    /// The leaf is an outer factor of a reshaped axis (a head): each index
    /// spans the indices of the groups inside it.
    pub outer: bool,
    /// The slices.
    pub members: Vec<Member>,
}

impl Member {
    /// The tensor the slicer changes: `(value, Some(use))` for a use with its own
    /// copy, `(value, None)` for the stored tensor itself.
    pub fn storage(&self) -> (ValueId, Option<(NodeId, usize)>) {
        (self.value, if self.own_copy { self.reader } else { None })
    }
}

impl Group {
    /// Number of blocks (e.g. heads with their own kept sets); every block keeps the same count.
    pub fn blocks(&self) -> usize {
        self.size / self.block.max(1)
    }
    /// The group index of leaf index `i` in the element `e` (`None` when `e` lacks the leaf);
    /// context spaces `e` lacks count as block 0.
    pub(crate) fn index_in(&self, e: &[(AtomId, u32)], find: &mut impl FnMut(AtomId) -> AtomId) -> Option<usize> {
        let i = e.iter().find(|&&(l, _)| find(l) == self.leaf)?.1 as usize;
        let mut b = 0usize;
        for &(c, n) in &self.context {
            let k = e.iter().find(|&&(l, _)| find(l) == c).map_or(0, |&(_, k)| k as usize);
            b = b * n as usize + k;
        }
        Some(b * self.block + i)
    }
    /// Copies of the index space in the weights (heads × pairs), the largest over members.
    pub fn copies(&self) -> usize {
        self.members.iter().map(|m| m.positions.first().map_or(0, Vec::len)).max().unwrap_or(0)
    }
    /// Parameters one index of the group accounts for (elements of every slice
    /// through it; a tensor shared by several uses counts once).
    pub fn cost_per_index(&self, model: &Model) -> u64 {
        let mut seen = BTreeSet::new();
        let tables = model.graph.tables();
        self.members
            .iter()
            .filter(|m| !tables.get(m.value.index()).copied().unwrap_or(false))
            .filter(|m| seen.insert((m.storage(), m.axis)))
            .map(|m| {
                let t = model.graph.value(m.value).constant.as_ref().map_or(0, |t| {
                    let other: i64 = t.dims.iter().enumerate().filter(|&(k, _)| k != m.axis).map(|(_, &d)| d).product();
                    other as u64
                });
                t * m.positions.first().map_or(0, |p| p.len() as u64)
            })
            .sum()
    }
}

/// A weight axis that no group may change, and why.
#[derive(Clone, Debug)]
pub struct PinnedAxis {
    /// The initializer.
    pub value: ValueId,
    /// The node and input position reading it.
    pub reader: Option<(NodeId, usize)>,
    /// Its axis.
    pub axis: usize,
    /// Why (from every leaf of the axis).
    pub reasons: Vec<PinReason>,
}

/// The result of the analysis (the default: of an empty graph).
#[derive(Debug, Default)]
pub struct Coupling {
    /// Prunable groups, in the order their first weight appears.
    pub groups: Vec<Group>,
    /// Float weight axes that are pinned.
    pub pinned: Vec<PinnedAxis>,
    analysis: Analysis,
}

impl Coupling {
    /// The `config.json` key that sizes every weight axis of group `gi`, if one does
    /// (a group a standard checkpoint config can express, such as an FFN width).
    pub fn config_key(&self, model: &Model, sizes: &crate::pipeline::ConfigSizes, gi: usize) -> Option<String> {
        let g = self.groups.get(gi)?;
        if g.blocks() != 1 || g.outer {
            return None;
        }
        let mut key: Option<&String> = None;
        for m in &g.members {
            let name = &model.graph.value(m.value).name;
            let k = sizes.size_keys.get(&(name.clone(), m.axis))?;
            if key.is_some_and(|prev| prev != k) {
                return None;
            }
            key = Some(k);
        }
        let key = key?;
        (sizes.key_sizes.get(key) == Some(&g.size)).then(|| key.clone())
    }

    /// Which old positions of `value`'s `axis` survive when the groups drop the
    /// given indices (`removed[g]` for group `g`); `None` when nothing on the axis changes.
    /// `reader` names the node and input for constants, which are analysed per use.
    pub fn keep_mask(
        &mut self,
        value: ValueId,
        axis: usize,
        reader: Option<(NodeId, usize)>,
        removed: &[Vec<u32>],
    ) -> Option<Vec<bool>> {
        let slots = &self.analysis.slots;
        let atom = *slots.get(&(value, axis, reader)).or_else(|| slots.get(&(value, axis, None)))?;
        let gone: Vec<std::collections::HashSet<u32>> = removed.iter().map(|r| r.iter().copied().collect()).collect();
        let mut outer = BTreeSet::new();
        let elems = self.analysis.elements(atom, &mut outer)?;
        let mut changed = false;
        let atoms = &mut self.analysis.atoms;
        let mut find = |a: AtomId| atoms.find(a);
        let mask = elems
            .iter()
            .map(|e| {
                let keep = !self
                    .groups
                    .iter()
                    .zip(&gone)
                    .any(|(g, r)| g.index_in(e, &mut find).is_some_and(|idx| r.contains(&(idx as u32))));
                changed |= !keep;
                keep
            })
            .collect();
        changed.then_some(mask)
    }
}

/// Element `i` of an axis: the leaves and their indices that make it up.
type Element = Vec<(AtomId, u32)>;

/// The node and input position that reads a constant.
type Reader = Option<(NodeId, usize)>;

/// A slot: a value's axis, for constants one per use.
type SlotKey = (ValueId, usize, Option<(NodeId, usize)>);

#[derive(Debug, Default)]
struct Analysis {
    atoms: Atoms,
    slots: HashMap<SlotKey, AtomId>,
}

impl Analysis {
    fn slot(
        &mut self,
        facts: &[Option<Fact>],
        v: ValueId,
        axis: usize,
        reader: Option<(NodeId, usize)>,
    ) -> Option<AtomId> {
        if let Some(&a) = self.slots.get(&(v, axis, reader)) {
            return Some(a);
        }
        let dim = facts[v.index()].as_ref()?.ty.as_ref()?.shape.as_ref()?.get(axis)?.clone();
        let a = self.atoms.fresh(dim);
        self.slots.insert((v, axis, reader), a);
        Some(a)
    }

    /// Every element of an atom, when its size is known and at most
    /// [`MAX_AXIS_ELEMENTS`] (larger axes, e.g. of activations declared with
    /// huge sizes, are not enumerated: their weights stay as they are).
    fn elements(&mut self, a: AtomId, outer: &mut BTreeSet<AtomId>) -> Option<Vec<Element>> {
        self.elements_at(a, outer, 0)
    }

    fn elements_at(&mut self, a: AtomId, outer: &mut BTreeSet<AtomId>, depth: usize) -> Option<Vec<Element>> {
        if depth > atoms::MAX_DEPTH {
            self.atoms.pin(a, PinReason::TooFragmented);
            return None;
        }
        let n = self.atoms.size(a).as_known()?;
        if !(0..=MAX_AXIS_ELEMENTS as i64).contains(&n) {
            return None;
        }
        match self.atoms.refinement(a) {
            None => {
                let r = self.atoms.find(a);
                Some((0..n as u32).map(|i| vec![(r, i)]).collect())
            }
            Some(Refine::Concat(c)) => {
                let mut out = Vec::new();
                for x in c {
                    out.extend(self.elements_at(x, outer, depth + 1)?);
                    if out.len() > MAX_AXIS_ELEMENTS {
                        return None;
                    }
                }
                Some(out)
            }
            Some(Refine::Product(c)) => {
                let last_big = c.iter().rposition(|&x| self.atoms.size(x).as_known() != Some(1));
                let mut out: Vec<Element> = vec![vec![]];
                for (k, &x) in c.iter().enumerate() {
                    let inner = self.elements_at(x, outer, depth + 1)?;
                    if out.len().checked_mul(inner.len())? > MAX_AXIS_ELEMENTS {
                        return None;
                    }
                    if last_big.is_some_and(|l| k < l) {
                        for e in &inner {
                            outer.extend(e.iter().map(|&(leaf, _)| leaf));
                        }
                    }
                    out = out.iter().flat_map(|e| inner.iter().map(move |t| [e.as_slice(), t].concat())).collect();
                }
                Some(out)
            }
        }
    }
}

/// The most index spaces (leaves) one tensor may hold for the analysis to
/// follow them (transformer weights hold at most about eight).
pub const MAX_LEAVES_PER_TENSOR: usize = 64;

/// The largest axis the analysis enumerates element by element (2^24; the
/// largest weight axes of real models, vocabularies, are below 2^18).
pub const MAX_AXIS_ELEMENTS: usize = 1 << 24;

/// For values that are an initializer seen through layout-only ops, the
/// initializer and the map from the value's axes to its axes (its
/// dequantisation counts as a view: the same axes, scaled).
fn weight_views(g: &ecospac_ir::Graph) -> HashMap<ValueId, (ValueId, Vec<usize>)> {
    let mut views: HashMap<ValueId, (ValueId, Vec<usize>)> = HashMap::new();
    for &v in &g.initializers {
        if let Some(t) = &g.value(v).constant {
            views.insert(v, (v, (0..t.dims.len()).collect()));
        }
    }
    for (_, node) in g.nodes() {
        let (Some(Some(i)), Some(Some(o))) = (node.inputs.first(), node.outputs.first()) else { continue };
        let Some((w, map)) = views.get(i).cloned() else { continue };
        let mapped = match &node.op {
            Op::Transpose { perm } => {
                let perm: Vec<usize> = match perm {
                    Some(p) => p.iter().map(|&x| x as usize).collect(),
                    None => (0..map.len()).rev().collect(),
                };
                perm.iter().map(|&p| map.get(p).copied()).collect::<Option<Vec<_>>>()
            }
            Op::Cast(_) | Op::Unary(ecospac_ir::op::UnaryOp::Identity) | Op::Dequantize(_) => Some(map),
            _ => None,
        };
        if let Some(m) = mapped {
            views.insert(*o, (w, m));
        }
    }
    views
}

/// Settings of the analysis.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisOptions {
    /// Outer factors of reshaped axes (attention heads; with GQA, key/value
    /// heads and the query heads inside each) are groups of their own, so a
    /// plan may remove whole heads. Off, only the axes inside them are groups
    /// (for runtimes whose models have fixed head counts).
    pub heads: bool,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions { heads: true }
    }
}

/// Runs the analysis (whole heads included) on a graph that passed the
/// verifier (its witness) and whose shapes can be inferred.
pub fn analyze(graph: Verified<'_>) -> Coupling {
    analyze_with(graph, &AnalysisOptions::default())
}

/// Runs the analysis with `opts`.
pub fn analyze_with(graph: Verified<'_>, opts: &AnalysisOptions) -> Coupling {
    let g = graph.graph();
    let (facts, _) = ecospac_ir::infer::facts(g);
    let mut an = Analysis { atoms: Atoms::default(), slots: HashMap::new() };
    let views = weight_views(g);
    let mut readers: BTreeSet<(ValueId, usize)> = BTreeSet::new();
    // Products from reshapes (their outer factors are heads) and from
    // quantisation blocks (whose blocks are channels, however coarse).
    let (mut head_products, mut block_products) = (Vec::new(), Vec::new());

    for &v in g.inputs.iter().chain(&g.outputs) {
        let rank = facts[v.index()].as_ref().and_then(|f| f.ty.as_ref()).and_then(|t| t.rank()).unwrap_or(0);
        for axis in 0..rank {
            if let Some(a) = an.slot(&facts, v, axis, None) {
                an.atoms.pin(a, PinReason::Interface);
            }
        }
    }
    let is_const: Vec<bool> = (0..g.num_values()).map(|i| g.value(ValueId::new(i)).constant.is_some()).collect();
    let mut uses: Vec<(ValueId, NodeId, usize)> = Vec::new();
    for (id, node) in g.nodes() {
        let fact_of = |v: &Option<ValueId>| v.and_then(|v| facts[v.index()].clone());
        let ins: Vec<Option<Fact>> = node.inputs.iter().map(fact_of).collect();
        let outs: Vec<Option<Fact>> = node.outputs.iter().map(fact_of).collect();
        for (i, v) in node.inputs.iter().enumerate() {
            if let Some(v) = v.filter(|v| is_const[v.index()]) {
                uses.push((v, id, i));
            }
        }
        let value_of = |s: Slot| match s.port {
            Port::In(i) => node.inputs.get(i).copied().flatten(),
            Port::Out(o) => node.outputs.get(o).copied().flatten(),
            Port::Inner(_) => None,
        };
        let reader_of = |s: Slot| match s.port {
            Port::In(i) if node.inputs.get(i).copied().flatten().is_some_and(|v| is_const[v.index()]) => Some((id, i)),
            _ => None,
        };
        let rels = axis_relations(&node.op, &ins, &outs);
        // The node's own index spaces, which no tensor shows.
        let mut inner: HashMap<usize, AtomId> = HashMap::new();
        for rel in &rels {
            if let AxisRel::Inner { id, size } = rel {
                inner.insert(*id, an.atoms.fresh(ecospac_ir::Dim::known(*size)));
            }
        }
        for rel in rels {
            let atom = |an: &mut Analysis, s: Slot| match s.port {
                Port::Inner(k) => inner.get(&k).copied(),
                _ => value_of(s).and_then(|v| an.slot(&facts, v, s.axis, reader_of(s))),
            };
            match rel {
                AxisRel::Inner { .. } => {}
                AxisRel::Same(a, b) => {
                    if let (Some(x), Some(y)) = (atom(&mut an, a), atom(&mut an, b)) {
                        an.atoms.unify(x, y);
                    }
                }
                AxisRel::Contract(a, b) => {
                    for s in [a, b] {
                        if let Some((w, map)) = value_of(s).and_then(|v| views.get(&v)) {
                            if let Some(&wa) = map.get(s.axis) {
                                readers.insert((*w, wa));
                            }
                        }
                    }
                    if let (Some(x), Some(y)) = (atom(&mut an, a), atom(&mut an, b)) {
                        an.atoms.unify(x, y);
                    }
                }
                AxisRel::Product(xs, ys) => {
                    let xa: Option<Vec<AtomId>> = xs.iter().map(|&s| atom(&mut an, s)).collect();
                    let ya: Option<Vec<AtomId>> = ys.iter().map(|&s| atom(&mut an, s)).collect();
                    let (Some(xa), Some(ya)) = (xa, ya) else { continue };
                    let size = |an: &Analysis, l: &[AtomId]| {
                        l.iter().fold(ecospac_ir::Dim::known(1), |p, &a| p.mul(an.atoms.size(a)))
                    };
                    let (mx, my) = (an.atoms.fresh(size(&an, &xa)), an.atoms.fresh(size(&an, &ya)));
                    an.atoms.set_refine(mx, Refine::Product(xa));
                    an.atoms.set_refine(my, Refine::Product(ya));
                    an.atoms.unify(mx, my);
                    head_products.extend([mx, my]);
                }
                AxisRel::Concat { whole, parts } => {
                    let Some(w) = atom(&mut an, whole) else { continue };
                    let mut pa = Vec::new();
                    let mut total = Some(0i64);
                    for p in parts {
                        let a = match p {
                            Part::Slot(s) => atom(&mut an, s),
                            Part::Gap(n) => Some(an.atoms.fresh(ecospac_ir::Dim::known(n))),
                        };
                        let Some(a) = a else { break };
                        total = total.and_then(|t| t.checked_add(an.atoms.size(a).as_known()?));
                        pa.push(a);
                    }
                    match total {
                        Some(t) if pa.len() > 1 => {
                            let m = an.atoms.fresh(ecospac_ir::Dim::known(t));
                            an.atoms.set_refine(m, Refine::Concat(pa));
                            an.atoms.unify(m, w);
                        }
                        Some(_) if pa.len() == 1 => an.atoms.unify(pa[0], w),
                        _ => {
                            an.atoms.pin(w, PinReason::UnknownShape);
                            for a in pa {
                                an.atoms.pin(a, PinReason::UnknownShape);
                            }
                        }
                    }
                }
                AxisRel::Blocks { whole, blocks, block } => {
                    // The weight's block axis reads the whole axis, as in a contraction.
                    if let Some((w, map)) = value_of(blocks).and_then(|v| views.get(&v)) {
                        if let Some(&wa) = map.get(blocks.axis) {
                            readers.insert((*w, wa));
                        }
                    }
                    let (Some(w), Some(b)) = (atom(&mut an, whole), atom(&mut an, blocks)) else { continue };
                    let inner = an.atoms.fresh(ecospac_ir::Dim::known(block));
                    an.atoms.pin(inner, PinReason::Packed);
                    let size = an.atoms.size(b).mul(&ecospac_ir::Dim::known(block));
                    let (mw, mb) = (an.atoms.fresh(an.atoms.size(w).clone()), an.atoms.fresh(size));
                    an.atoms.set_refine(mw, Refine::Product(vec![w]));
                    an.atoms.set_refine(mb, Refine::Product(vec![b, inner]));
                    an.atoms.unify(mw, mb);
                    block_products.push(mb);
                }
                AxisRel::Pin(s, why) => {
                    if let Some(x) = atom(&mut an, s) {
                        an.atoms.pin(x, why);
                    }
                }
            }
        }
    }

    // A constant read by several nodes is one tensor: its uses share their index
    // spaces, unless all its elements are equal (then each use gets a copy).
    let mut readers_of: BTreeMap<ValueId, Vec<(NodeId, usize)>> = BTreeMap::new();
    for &(v, node, i) in &uses {
        readers_of.entry(v).or_default().push((node, i));
    }
    // Values a subgraph reads by name keep every axis (every use of a constant):
    // the body is not rewritten.
    for (_, node) in g.nodes() {
        for &v in &node.captures {
            let rank = facts[v.index()].as_ref().and_then(|f| f.ty.as_ref()).and_then(|t| t.rank()).unwrap_or(0);
            let uses_of: Vec<Reader> =
                std::iter::once(None).chain(readers_of.get(&v).into_iter().flatten().map(|&r| Some(r))).collect();
            for axis in 0..rank {
                for &r in &uses_of {
                    if let Some(a) = an.slot(&facts, v, axis, r) {
                        an.atoms.pin(a, PinReason::Subgraph);
                    }
                }
            }
        }
    }
    // A dynamic quantisation range reads its whole input: an axis may go
    // only where the removed elements are zero in the masked model.
    let mut zeros = zeros::Zeros::new(g, &facts);
    for (_, node) in g.nodes() {
        let (Op::DynamicQuantize, Some(Some(x))) = (&node.op, node.inputs.first()) else { continue };
        let rank = facts[x.index()].as_ref().and_then(|f| f.ty.as_ref()).and_then(|t| t.rank()).unwrap_or(0);
        for axis in 0..rank {
            if !zeros.where_cut(*x, axis) {
                if let Some(a) = an.slot(&facts, *x, axis, None) {
                    an.atoms.pin(a, PinReason::DynamicRange);
                }
            }
        }
    }
    let is_weight = g.weights();
    let mut own_copy: BTreeSet<ValueId> = BTreeSet::new();
    for (&v, rs) in &readers_of {
        let Some(t) = g.value(v).constant.as_ref().filter(|_| is_weight[v.index()]) else { continue };
        if rs.len() < 2 {
            continue;
        }
        if is_splat(t) {
            own_copy.insert(v);
            continue;
        }
        for axis in 0..t.dims.len() {
            let atoms: Vec<AtomId> = rs.iter().filter_map(|&r| an.slot(&facts, v, axis, Some(r))).collect();
            for w in atoms.windows(2) {
                an.atoms.unify(w[0], w[1]);
            }
        }
    }

    // Expand every weight axis (float, or quantised) into leaves.
    let mut outer = BTreeSet::new();
    let mut expansions: Vec<(ValueId, Reader, usize, Vec<Element>)> = Vec::new();
    for (v, node, i) in uses {
        let Some(t) = &g.value(v).constant else { continue };
        if !is_weight[v.index()] {
            continue;
        }
        for axis in 0..t.dims.len() {
            let Some(a) = an.slot(&facts, v, axis, Some((node, i))) else { continue };
            if let Some(e) = an.elements(a, &mut outer) {
                expansions.push((v, Some((node, i)), axis, e));
            }
        }
    }
    // Outer factors of any product (heads), for `opts.heads == false`.
    for id in 0..an.atoms_len() {
        if let Some(Refine::Product(_)) = an.atoms.refinement(id) {
            let _ = an.elements(id, &mut outer);
        }
    }
    // An outer factor that only quantisation blocks make is a channel axis in
    // coarse steps, not a head.
    let (mut head_outer, mut block_outer) = (BTreeSet::new(), BTreeSet::new());
    for &p in &head_products {
        let _ = an.elements(p, &mut head_outer);
    }
    for &p in &block_products {
        let _ = an.elements(p, &mut block_outer);
    }
    outer.retain(|leaf| head_outer.contains(leaf) || !block_outer.contains(leaf));
    // Leaves of every tensor (each constant per use): a head space may separate
    // the kept sets of a leaf only if every tensor holding the leaf holds it too,
    // and every weight holds it on the same axis (weights are sliced as stored).
    let keys: Vec<SlotKey> = an.slots.keys().copied().collect();
    // Real tensors hold a handful of index spaces (heads × head dim × …); one
    // of hundreds comes from a hostile or degenerate graph, whose contexts would
    // cost the cube of that: its index spaces are pinned instead.
    let mut tensors: BTreeMap<(ValueId, Reader), BTreeSet<AtomId>> = BTreeMap::new();
    let mut fragmented: BTreeSet<(ValueId, Reader)> = BTreeSet::new();
    let mut roots = Vec::new();
    for (v, axis, reader) in keys {
        let a = an.slots[&(v, axis, reader)];
        match an.leaves(a, MAX_LEAVES_PER_TENSOR) {
            Some(ls) => tensors.entry((v, reader)).or_default().extend(ls),
            None => {
                fragmented.insert((v, reader));
                roots.push(a);
            }
        }
    }
    for (key, leaves) in &tensors {
        if leaves.len() > MAX_LEAVES_PER_TENSOR || fragmented.contains(key) {
            fragmented.insert(*key);
            roots.extend(leaves.iter().copied());
        }
    }
    tensors.retain(|key, _| !fragmented.contains(key));
    an.atoms.pin_all(&roots, PinReason::TooFragmented);
    let mut context_of: BTreeMap<AtomId, BTreeSet<AtomId>> = BTreeMap::new();
    for leaves in tensors.values() {
        for &l in leaves {
            let others: BTreeSet<AtomId> = leaves.iter().copied().filter(|&x| x != l).collect();
            context_of.entry(l).and_modify(|c| c.retain(|x| others.contains(x))).or_insert(others);
        }
    }
    // A head space separates the kept sets of the leaves inside it, never of
    // those it lies inside: for query heads of a group ([kv, group, dims])
    // the key/value head may, a head dim may not.
    for (_, _, _, elems) in &expansions {
        let mut seen: BTreeSet<Vec<AtomId>> = BTreeSet::new();
        for e in elems {
            let order: Vec<AtomId> = e.iter().map(|&(l, _)| l).collect();
            if !seen.insert(order.clone()) {
                continue;
            }
            for (p, l) in order.iter().enumerate() {
                if let Some(c) = context_of.get_mut(l) {
                    for x in &order[p + 1..] {
                        c.remove(x);
                    }
                }
            }
        }
    }
    for (_, _, _, elems) in &expansions {
        let axis_leaves: BTreeSet<AtomId> =
            elems.first().map(|e| e.iter().map(|&(l, _)| l).collect()).unwrap_or_default();
        for &l in &axis_leaves {
            if let Some(c) = context_of.get_mut(&l) {
                c.retain(|x| axis_leaves.contains(x));
            }
        }
    }
    let mut groups: BTreeMap<AtomId, Group> = BTreeMap::new();
    let mut order: Vec<AtomId> = Vec::new();
    let mut pinned = Vec::new();
    for (v, reader, axis, elems) in expansions {
        let mut leaves: BTreeMap<AtomId, Vec<Vec<u32>>> = BTreeMap::new();
        let mut reasons: Vec<PinReason> = Vec::new();
        for (pos, e) in elems.iter().enumerate() {
            for &(leaf, _) in e {
                let pins = an.atoms.pins(leaf);
                let size = an.atoms.size(leaf).as_known().unwrap_or(0);
                if !pins.is_empty() || (!opts.heads && outer.contains(&leaf)) || size < 2 {
                    for p in pins {
                        if !reasons.contains(&p) {
                            reasons.push(p);
                        }
                    }
                    continue;
                }
                let group = groups.entry(leaf).or_insert_with(|| {
                    order.push(leaf);
                    let context: Vec<(AtomId, u32)> = context_of
                        .get(&leaf)
                        .map(|c| {
                            c.iter()
                                .filter_map(|&x| Some((x, u32::try_from(an.atoms.size(x).as_known()?).ok()?)))
                                .filter(|&(_, n)| n > 1)
                                .collect()
                        })
                        .unwrap_or_default();
                    let blocks: usize = context.iter().map(|&(_, n)| n as usize).product();
                    Group {
                        leaf,
                        context,
                        block: size as usize,
                        size: blocks * size as usize,
                        outer: outer.contains(&leaf),
                        members: Vec::new(),
                    }
                });
                let mut find = |a: AtomId| an.atoms.find(a);
                let Some(idx) = group.index_in(e, &mut find) else { continue };
                let slots = leaves.entry(leaf).or_insert_with(|| vec![Vec::new(); group.size]);
                slots[idx].push(pos as u32);
            }
        }
        if leaves.is_empty() {
            pinned.push(PinnedAxis { value: v, reader, axis, reasons });
            continue;
        }
        let role = if readers.contains(&(v, axis)) { Role::Reader } else { Role::Writer };
        for (leaf, positions) in leaves {
            if let Some(group) = groups.get_mut(&leaf) {
                let own_copy = own_copy.contains(&v);
                group.members.push(Member { value: v, reader, axis, role, positions, own_copy });
            }
        }
    }
    Coupling { groups: order.iter().filter_map(|l| groups.remove(l)).collect(), pinned, analysis: an }
}

/// Whether every element of `t` has the same bytes (a zero bias, a ones scale).
pub(super) fn is_splat(t: &ecospac_ir::Tensor) -> bool {
    let size = t.dtype.size().unwrap_or(0);
    let b = t.bytes();
    size > 0 && b.len() >= size && b.chunks_exact(size).all(|c| c == &b[..size])
}

impl Analysis {
    fn atoms_len(&self) -> AtomId {
        self.atoms.len()
    }
    /// The leaf classes under `a` (through every refinement), in order;
    /// `None` when there are more than `limit` (or refinements cycle).
    fn leaves(&mut self, a: AtomId, limit: usize) -> Option<Vec<AtomId>> {
        self.atoms.walk(a, None, limit)
    }
}

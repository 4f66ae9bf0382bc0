//! Which removed indices are zero in the masked model.
//!
//! Slicing a tensor is exact for an op that treats its elements one by one. A
//! dynamic quantisation (`DynamicQuantizeLinear`) measures the range of the
//! whole tensor at run time instead; that range always holds zero, so removing
//! elements that are zero leaves it as it was, and removing others may not.
//! This module proves, from each op's [`ZeroLaw`] and axis relations, that a
//! value is zero at the indices a cut removes: the cut zeroes the weights it
//! removes, and zeros travel through products, sums of zeros, copies and
//! functions with f(0) = 0. What it cannot prove it answers `false` (and the
//! analysis pins the axis).

use ecospac_ir::axes::{axis_relations, AxisRel, Part, Port, Slot};
use ecospac_ir::infer::Fact;
use ecospac_ir::op::ZeroLaw;
use ecospac_ir::{EntityId, Graph, NodeId, ValueId};
use std::collections::{BTreeMap, HashMap};

/// How far back a proof looks (a few ops separate a weight from the range
/// that reads it; the limit keeps hostile graphs from recursing deeply).
const MAX_DEPTH: usize = 64;

/// The prover, with what it has already shown.
pub(super) struct Zeros<'a> {
    g: &'a Graph,
    facts: &'a [Option<Fact>],
    producers: Vec<Option<NodeId>>,
    is_weight: Vec<bool>,
    memo: HashMap<(ValueId, usize), bool>,
}

impl<'a> Zeros<'a> {
    pub(super) fn new(g: &'a Graph, facts: &'a [Option<Fact>]) -> Zeros<'a> {
        Zeros { g, facts, producers: g.producers(), is_weight: g.weights(), memo: HashMap::new() }
    }

    /// True when `v` is zero, in the masked model, at every index of `axis`
    /// that a cut of that axis removes.
    pub(super) fn where_cut(&mut self, v: ValueId, axis: usize) -> bool {
        self.walk(v, axis, 0)
    }

    fn walk(&mut self, v: ValueId, axis: usize, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        if let Some(&known) = self.memo.get(&(v, axis)) {
            return known;
        }
        // Unproven while it is being proven (no cycle can prove itself).
        self.memo.insert((v, axis), false);
        let proven = self.prove(v, axis, depth);
        self.memo.insert((v, axis), proven);
        proven
    }

    fn prove(&mut self, v: ValueId, axis: usize, depth: usize) -> bool {
        let g = self.g;
        if let Some(t) = &g.value(v).constant {
            // A weight is zeroed where cut; a constant of equal elements (a
            // shared zero bias) gets a copy per use and is only sliced.
            return if super::is_splat(t) { t.bytes().iter().all(|&b| b == 0) } else { self.is_weight[v.index()] };
        }
        let Some(p) = self.producers[v.index()] else { return false };
        let node = g.node(p);
        let Some(o) = node.outputs.iter().position(|x| *x == Some(v)) else { return false };
        let fact = |x: &Option<ValueId>| x.and_then(|x| self.facts[x.index()].clone());
        let ins: Vec<Option<Fact>> = node.inputs.iter().map(fact).collect();
        let outs: Vec<Option<Fact>> = node.outputs.iter().map(fact).collect();
        let here = Slot { port: Port::Out(o), axis };
        // The input axes that carry this output axis, by input.
        let mut carried: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut carry = |s: &Slot| {
            if let Port::In(i) = s.port {
                carried.entry(i).or_default().push(s.axis);
            }
        };
        for rel in axis_relations(&node.op, &ins, &outs) {
            match &rel {
                AxisRel::Same(a, b) if *b == here => carry(a),
                AxisRel::Same(a, b) if *a == here => carry(b),
                AxisRel::Product(xs, ys) if xs.contains(&here) => ys.iter().for_each(&mut carry),
                AxisRel::Product(xs, ys) if ys.contains(&here) => xs.iter().for_each(&mut carry),
                AxisRel::Concat { whole, parts } if *whole == here => {
                    for part in parts {
                        if let Part::Slot(s) = part {
                            carry(s);
                        }
                    }
                }
                AxisRel::Concat { whole, parts } if parts.contains(&Part::Slot(here)) => carry(whole),
                _ => {}
            }
        }
        let given = |i: usize| node.inputs.get(i).copied().flatten();
        let mut zero = |i: usize| -> bool {
            match (given(i), carried.get(&i)) {
                (Some(x), Some(axes)) => axes.clone().into_iter().all(|a| self.walk(x, a, depth + 1)),
                _ => false,
            }
        };
        match node.op.zero_law() {
            ZeroLaw::Keeps { any, all } => {
                (any.is_empty() || any.iter().any(|&i| zero(i))) && all.iter().all(|&i| given(i).is_none() || zero(i))
            }
            ZeroLaw::EveryInput => (0..node.inputs.len()).all(|i| given(i).is_none() || zero(i)),
            ZeroLaw::Unknown => false,
        }
    }
}

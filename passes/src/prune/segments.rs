//! Running a model in pieces of its node order: a segment is the part of the
//! graph from one node position on that computes some values, with every value
//! it reads from before that position as a graph input. Passes that run a
//! model many times with weights changing from one point on (a refit layer by
//! layer, a group measured alone) run only what changed, fed with the values
//! a previous run left at the boundary.

use ecospac_ir::exec::{Batch, ExecError, Executor};
use ecospac_ir::{EntityId, Model, NodeId, Tensor, ValueId};
use std::collections::{BTreeSet, HashMap};

/// The position of every live node in the order.
pub fn node_positions(model: &Model) -> HashMap<NodeId, usize> {
    model.graph.order.iter().enumerate().map(|(i, &n)| (n, i)).collect()
}

/// The nodes from position `from` on that `outputs` need, as a model whose
/// inputs are the values those nodes read from before `from` (graph inputs or
/// earlier results; constants stay constants). Returns the model and its inputs.
pub fn segment(model: &Model, from: usize, outputs: &[ValueId]) -> Result<(Model, Vec<ValueId>), ExecError> {
    let mut m = model.clone();
    let g = &mut m.graph;
    let order: Vec<NodeId> = g.order.get(from..).unwrap_or_default().to_vec();
    g.order = order;
    g.outputs = outputs.to_vec();
    crate::fold::eliminate_dead(&mut m);
    let g = &mut m.graph;
    let mut produced = vec![false; g.num_values()];
    let mut read = vec![false; g.num_values()];
    for (_, n) in g.nodes() {
        for v in n.outputs.iter().flatten() {
            produced[v.index()] = true;
        }
        for v in n.inputs.iter().flatten().chain(&n.captures) {
            read[v.index()] = true;
        }
    }
    let is_const: BTreeSet<ValueId> = g.initializers.iter().copied().collect();
    let mut inputs: Vec<ValueId> = Vec::new();
    let mut seen = BTreeSet::new();
    let reads: Vec<ValueId> = g
        .nodes()
        .flat_map(|(_, n)| n.inputs.iter().flatten().chain(&n.captures).copied().collect::<Vec<_>>())
        .collect();
    for v in reads.into_iter().chain(outputs.iter().copied()) {
        if !produced[v.index()] && !is_const.contains(&v) && seen.insert(v) {
            inputs.push(v);
        }
    }
    for &v in &inputs {
        if outputs.contains(&v) {
            return Err(ExecError(format!("`{}` is computed before the segment starts", g.value(v).name)));
        }
        let value = g.value(v);
        if value.declared.is_none() {
            let ty = value.ty.clone().ok_or_else(|| ExecError(format!("`{}` has no known type", value.name)))?;
            g.value_mut(v).declared = Some(ty);
        }
    }
    g.inputs = inputs.clone();
    let unread: Vec<ValueId> = g.initializers.iter().copied().filter(|v| !read[v.index()]).collect();
    for &v in &unread {
        g.value_mut(v).constant = None;
    }
    g.initializers.retain(|v| read[v.index()]);
    g.value_info.retain(|v| read[v.index()] || produced[v.index()]);
    Ok((m, inputs))
}

/// Values kept between segment runs, per batch.
pub type State = Vec<HashMap<ValueId, Tensor>>;

/// Runs a segment (from [`segment`]) on every batch: its inputs come from the
/// batch (graph inputs, by name) or from `state`; returns its outputs per batch.
pub fn run_segment(
    exec: &dyn Executor,
    model: &Model,
    inputs: &[ValueId],
    batches: &[Batch],
    state: &State,
) -> Result<Vec<Vec<Tensor>>, ExecError> {
    let mut session = exec.load(model)?;
    let mut out = Vec::with_capacity(batches.len());
    for (bi, batch) in batches.iter().enumerate() {
        let mut feeds: Batch = Vec::with_capacity(inputs.len());
        for &v in inputs {
            let name = &model.graph.value(v).name;
            let t = match state.get(bi).and_then(|s| s.get(&v)) {
                Some(t) => t.clone(),
                None => batch
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.clone())
                    .ok_or_else(|| ExecError(format!("no value for `{name}` at the segment's start")))?,
            };
            feeds.push((name.clone(), t));
        }
        out.push(session.run(&feeds)?);
    }
    Ok(out)
}

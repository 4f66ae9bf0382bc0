//! The verifier: collects every located error instead of stopping at the first.
//!
//! Invariants checked:
//! 1. every id a node or the graph names exists;
//! 2. every value has at most one definition (graph input, initializer, node output)
//!    and constants are exactly the initializers;
//! 3. nodes are in topological order: each input is defined before it is read;
//! 4. every graph output is defined;
//! 5. each op has an arity it accepts;
//! 6. constant data matches its type and shape;
//! 7. types propagate without contradiction (inferred vs declared).

use crate::graph::Graph;
use crate::ids::{EntityId, NodeId, ValueId};
use crate::infer::{facts, PropagationIssue};
use crate::op::Op;
use std::fmt;

/// Where an error is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The graph as a whole.
    Graph,
    /// A node.
    Node(NodeId),
    /// A value.
    Value(ValueId),
}

/// One verifier finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierError {
    /// Where.
    pub location: Location,
    /// What, with names from the graph.
    pub message: String,
}

/// All verifier findings of one run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct VerifierErrors(pub Vec<VerifierError>);

impl fmt::Display for VerifierErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} verifier error(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {}", e.message)?;
        }
        Ok(())
    }
}

/// A witness that a graph passed the verifier; emitters require one.
#[derive(Clone, Copy, Debug)]
pub struct Verified<'g>(&'g Graph);

impl<'g> Verified<'g> {
    /// The verified graph.
    pub fn graph(&self) -> &'g Graph {
        self.0
    }
}

fn describe_node(g: &Graph, id: NodeId) -> String {
    let n = g.node(id);
    if n.name.is_empty() {
        format!("{id} ({})", n.op.op_type())
    } else {
        format!("{id} `{}` ({})", n.name, n.op.op_type())
    }
}

fn describe_value(g: &Graph, id: ValueId) -> String {
    format!("{id} `{}`", g.value(id).name)
}

/// Checks every invariant of `g` and returns all violations, located.
pub fn verify(g: &Graph) -> Result<Verified<'_>, VerifierErrors> {
    let mut errs = Vec::new();
    let mut push = |location, message: String| errs.push(VerifierError { location, message });
    let n = g.num_values();
    let mut defined = vec![false; n];
    let mut is_init = vec![false; n];

    for &v in g.inputs.iter().chain(&g.outputs).chain(&g.initializers) {
        if !g.has_value(v) {
            push(Location::Graph, format!("graph names {v}, which does not exist"));
        }
    }
    for &v in &g.initializers {
        if !g.has_value(v) {
            continue;
        }
        if is_init[v.index()] {
            push(Location::Value(v), format!("{} is listed twice as an initializer", describe_value(g, v)));
        }
        is_init[v.index()] = true;
        defined[v.index()] = true;
        match &g.value(v).constant {
            None => push(Location::Value(v), format!("initializer {} has no data", describe_value(g, v))),
            Some(t) => {
                if let Err(e) = t.check_size() {
                    push(Location::Value(v), format!("initializer {}: {e}", describe_value(g, v)));
                }
            }
        }
    }
    for (v, value) in g.values() {
        if value.constant.is_some() && !is_init[v.index()] {
            push(Location::Value(v), format!("{} carries data but is not an initializer", describe_value(g, v)));
        }
    }
    for &v in &g.inputs {
        if g.has_value(v) {
            if defined[v.index()] && !is_init[v.index()] {
                push(Location::Value(v), format!("graph input {} is listed twice", describe_value(g, v)));
            }
            defined[v.index()] = true;
        }
    }
    let mut structural_ok = true;
    for (id, node) in g.nodes() {
        let (min_in, max_in, min_out, max_out) = node.op.arity();
        if node.inputs.len() < min_in || node.inputs.len() > max_in {
            push(
                Location::Node(id),
                format!("{} takes {min_in}..{max_in} inputs, has {}", describe_node(g, id), node.inputs.len()),
            );
        }
        if node.outputs.len() < min_out || node.outputs.len() > max_out {
            push(
                Location::Node(id),
                format!("{} gives {min_out}..{max_out} outputs, has {}", describe_node(g, id), node.outputs.len()),
            );
        }
        if let Op::Constant { value, .. } = &node.op {
            if let Err(e) = value.check_size() {
                push(Location::Node(id), format!("{}: constant {e}", describe_node(g, id)));
            }
        }
        for v in node.inputs.iter().flatten().chain(&node.captures) {
            if !g.has_value(*v) {
                push(Location::Node(id), format!("{} reads {v}, which does not exist", describe_node(g, id)));
                structural_ok = false;
            } else if !defined[v.index()] {
                push(
                    Location::Node(id),
                    format!("{} reads {} before anything defines it", describe_node(g, id), describe_value(g, *v)),
                );
                structural_ok = false;
            }
        }
        for v in node.outputs.iter().flatten() {
            if !g.has_value(*v) {
                push(Location::Node(id), format!("{} writes {v}, which does not exist", describe_node(g, id)));
                structural_ok = false;
            } else if defined[v.index()] {
                push(
                    Location::Value(*v),
                    format!("{} is defined twice (again by {})", describe_value(g, *v), describe_node(g, id)),
                );
            } else {
                defined[v.index()] = true;
            }
        }
    }
    for &v in &g.outputs {
        if g.has_value(v) && !defined[v.index()] {
            push(Location::Value(v), format!("graph output {} is never defined", describe_value(g, v)));
        }
    }
    if structural_ok {
        let (_, issues) = facts(g);
        for issue in issues {
            let at = match issue {
                PropagationIssue::Node(id, _) => Location::Node(id),
                PropagationIssue::Conflict { value, .. } => Location::Value(value),
            };
            push(at, describe_issue(g, &issue));
        }
    }
    if errs.is_empty() {
        Ok(Verified(g))
    } else {
        Err(VerifierErrors(errs))
    }
}

/// A type inference issue in words, naming the node or value.
pub fn describe_issue(g: &Graph, issue: &PropagationIssue) -> String {
    match issue {
        PropagationIssue::Node(id, e) => format!("{}: {e}", describe_node(g, *id)),
        PropagationIssue::Conflict { value, inferred, declared } => format!(
            "{}: inferred {} but declared {}",
            describe_value(g, *value),
            crate::text::ty_string(g, inferred),
            crate::text::ty_string(g, declared)
        ),
    }
}

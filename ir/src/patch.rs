//! Rewrites as patches: edits decided against a graph that stays as it is
//! while they are made, then applied at once. A rewrite that fails half-way
//! drops its patch, and the graph is untouched; the code that decides cannot
//! read its own writes.
//!
//! ```
//! use ecospac_ir::{Graph, Node, Op, Patch, Tensor, Value};
//! let mut g = Graph::new("g");
//! let x = g.add_value(Value::named("x"));
//! let w = g.add_initializer("w", Tensor::from_f32s(vec![2], &[1.0, 2.0]));
//! let y = g.add_value(Value::named("y"));
//! let mul = g.add_node(Node {
//!     name: "mul".into(), op: Op::Binary(ecospac_ir::op::BinaryOp::Mul),
//!     inputs: vec![Some(x), Some(w)], outputs: vec![Some(y)], origin: None, captures: vec![],
//! });
//! let mut patch = Patch::new(&g);
//! let half = patch.add_initializer("w_half", Tensor::from_f32s(vec![1], &[1.0]), Some(w));
//! patch.set_input(mul, 1, Some(half));
//! patch.drop_initializer(w);
//! assert_eq!(g.node(mul).inputs[1], Some(w), "nothing changes before the patch is applied");
//! patch.apply(&mut g)?;
//! assert_eq!(g.node(mul).inputs[1], Some(half));
//! assert_eq!(g.initializers, vec![half]);
//! # Ok::<(), ecospac_ir::patch::StalePatch>(())
//! ```

use crate::graph::{Graph, Value};
use crate::ids::{EntityId, NodeId, ValueId};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::ty::TensorTy;

/// A patch applied to a graph other than the one it was built against (or
/// naming a value or node that graph does not have): nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the patch was built against another graph: {0}")]
pub struct StalePatch(pub String);

/// One recorded edit.
#[derive(Clone, Debug)]
enum Edit {
    Constant(ValueId, Option<Tensor>),
    Declared(ValueId, Option<TensorTy>),
    Input(NodeId, usize, Option<ValueId>),
    Inputs(NodeId, Vec<Option<ValueId>>),
    Op(NodeId, Op),
    DropInitializer(ValueId),
}

/// Edits to one graph, applied in the order they were recorded.
#[derive(Clone, Debug)]
pub struct Patch {
    /// Values and nodes of the graph it was begun on.
    values: usize,
    nodes: usize,
    /// New values (ids from `values` on), and whether each is an initializer.
    added: Vec<(Value, bool)>,
    edits: Vec<Edit>,
}

impl Patch {
    /// An empty patch for `g`.
    pub fn new(g: &Graph) -> Patch {
        Patch { values: g.num_values(), nodes: g.num_nodes(), added: Vec::new(), edits: Vec::new() }
    }

    /// The id the next new value gets.
    pub fn next_value(&self) -> ValueId {
        ValueId::new(self.values + self.added.len())
    }

    /// A new initializer (a copy of `copy_of`, when it is one); its id is valid once applied.
    pub fn add_initializer(&mut self, name: impl Into<String>, tensor: Tensor, copy_of: Option<ValueId>) -> ValueId {
        let mut v = Value::named(name);
        v.constant = Some(tensor);
        v.copy_of = copy_of;
        let id = ValueId::new(self.values + self.added.len());
        self.added.push((v, true));
        id
    }

    /// Replaces a value's constant.
    pub fn set_constant(&mut self, value: ValueId, tensor: Option<Tensor>) {
        self.edits.push(Edit::Constant(value, tensor));
    }

    /// The constant `value` has once the patch is applied to `g` (the graph
    /// it was begun on): the one it sets, else `g`'s.
    pub fn constant<'a>(&'a self, g: &'a Graph, value: ValueId) -> Option<&'a Tensor> {
        let pending = self.edits.iter().rev().find_map(|e| match e {
            Edit::Constant(v, t) if *v == value => Some(t.as_ref()),
            _ => None,
        });
        match (pending, value.index().checked_sub(self.values)) {
            (Some(t), _) => t,
            (None, Some(i)) => self.added.get(i)?.0.constant.as_ref(),
            (None, None) => g.has_value(value).then(|| g.value(value).constant.as_ref()).flatten(),
        }
    }

    /// Replaces a value's declared type.
    pub fn set_declared(&mut self, value: ValueId, ty: Option<TensorTy>) {
        self.edits.push(Edit::Declared(value, ty));
    }

    /// Makes input `input` of `node` read `value`.
    pub fn set_input(&mut self, node: NodeId, input: usize, value: Option<ValueId>) {
        self.edits.push(Edit::Input(node, input, value));
    }

    /// Replaces all inputs of `node`.
    pub fn set_inputs(&mut self, node: NodeId, inputs: Vec<Option<ValueId>>) {
        self.edits.push(Edit::Inputs(node, inputs));
    }

    /// Replaces the op of `node` (its source record goes).
    pub fn set_op(&mut self, node: NodeId, op: Op) {
        self.edits.push(Edit::Op(node, op));
    }

    /// Removes `value` from the initializers (its constant goes too).
    pub fn drop_initializer(&mut self, value: ValueId) {
        self.edits.push(Edit::DropInitializer(value));
    }

    /// Applies every edit, after checking that each names something `g` (with
    /// the new values) has; on an error `g` is unchanged.
    pub fn apply(self, g: &mut Graph) -> Result<(), StalePatch> {
        if (g.num_values(), g.num_nodes()) != (self.values, self.nodes) {
            return Err(StalePatch(format!(
                "it has {} values and {} nodes, the patch was begun on {} and {}",
                g.num_values(),
                g.num_nodes(),
                self.values,
                self.nodes
            )));
        }
        let values = self.values + self.added.len();
        let value_ok = |v: ValueId| v.index() < values;
        let node_ok = |n: NodeId| n.index() < self.nodes;
        for e in &self.edits {
            let ok = match e {
                Edit::Constant(v, _) | Edit::Declared(v, _) | Edit::DropInitializer(v) => value_ok(*v),
                Edit::Input(n, _, v) => node_ok(*n) && v.is_none_or(value_ok),
                Edit::Inputs(n, vs) => node_ok(*n) && vs.iter().flatten().all(|&v| value_ok(v)),
                Edit::Op(n, _) => node_ok(*n),
            };
            if !ok {
                return Err(StalePatch(format!("{e:?} names something the graph does not have")));
            }
        }
        for (v, initializer) in self.added {
            let id = g.add_value(v);
            if initializer {
                g.initializers.push(id);
            }
        }
        for e in self.edits {
            match e {
                Edit::Constant(v, t) => g.value_mut(v).constant = t,
                Edit::Declared(v, ty) => g.value_mut(v).declared = ty,
                Edit::Input(n, i, v) => {
                    let inputs = &mut g.node_mut(n).inputs;
                    if inputs.len() <= i {
                        inputs.resize(i + 1, None);
                    }
                    inputs[i] = v;
                }
                Edit::Inputs(n, vs) => g.node_mut(n).inputs = vs,
                Edit::Op(n, op) => g.node_mut(n).op = op,
                Edit::DropInitializer(v) => {
                    g.value_mut(v).constant = None;
                    g.initializers.retain(|&x| x != v);
                }
            }
        }
        Ok(())
    }
}

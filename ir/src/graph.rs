//! The graph: arenas of nodes and values, graph inputs/outputs, symbols.

use crate::ids::{Arena, EntityId, NodeId, SymId, ValueId};
use crate::op::Op;
use crate::tensor::{Origin, Tensor};
use crate::ty::TensorTy;

/// A tensor value: produced by one node, or a graph input, or a constant.
#[derive(Clone, Debug)]
pub struct Value {
    /// The name in the source model (unique within the graph).
    pub name: String,
    /// The type the source model declared (graph inputs/outputs, `value_info`).
    pub declared: Option<TensorTy>,
    /// The type computed by shape inference.
    pub ty: Option<TensorTy>,
    /// The data, for initializers and folded constants.
    pub constant: Option<Tensor>,
    /// The source `ValueInfoProto`, kept while the value's type is unchanged.
    pub origin: Option<Origin>,
    /// The value this one was copied from by a rewrite that gave one reader
    /// a copy of its own (the slicer does, for a constant or a shape chain
    /// that several readers shared); [`Graph::original`] follows the links.
    pub copy_of: Option<ValueId>,
}

impl Value {
    /// A value with a name and nothing else.
    pub fn named(name: impl Into<String>) -> Value {
        Value { name: name.into(), declared: None, ty: None, constant: None, origin: None, copy_of: None }
    }
    /// The best known type: inferred, else declared, else that of the constant.
    pub fn best_ty(&self) -> Option<TensorTy> {
        if let Some(t) = &self.ty {
            return Some(t.clone());
        }
        if let Some(t) = &self.declared {
            return Some(t.clone());
        }
        self.constant.as_ref().map(|c| TensorTy::known(c.dtype, &c.dims))
    }
}

/// One operator application.
#[derive(Clone, Debug)]
pub struct Node {
    /// Node name from the source (may be empty).
    pub name: String,
    /// The op and its typed attributes.
    pub op: Op,
    /// Inputs; `None` is an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs; `None` is an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    /// The source `NodeProto`, kept while the node is unchanged.
    pub origin: Option<Origin>,
    /// Values of this graph that a subgraph attribute (`If`, `Loop`, `Scan`
    /// bodies) reads by name: used by the node although not among its inputs.
    pub captures: Vec<ValueId>,
}

/// A cycle among a graph's nodes: no order computes them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the graph has a cycle through node `{node}`: no order of its nodes computes it")]
pub struct CycleError {
    /// A node on the cycle.
    pub node: String,
}

/// A model graph. Ids are never renumbered: removed nodes leave a hole.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Graph name.
    pub name: String,
    nodes: Arena<NodeId, Node>,
    values: Arena<ValueId, Value>,
    /// Live nodes in topological order.
    pub order: Vec<NodeId>,
    /// Graph inputs (not initializers).
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<ValueId>,
    /// Values carrying data, in the order they are written.
    pub initializers: Vec<ValueId>,
    /// Values whose declared type is written as `value_info`, in source order.
    pub value_info: Vec<ValueId>,
    symbols: Arena<SymId, String>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }
    /// Adds a value.
    pub fn add_value(&mut self, value: Value) -> ValueId {
        self.values.push(value)
    }
    /// Adds a node at the end of the order.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        let id = self.nodes.push(node);
        self.order.push(id);
        id
    }
    /// Adds a constant value and lists it as an initializer.
    pub fn add_initializer(&mut self, name: impl Into<String>, tensor: Tensor) -> ValueId {
        let mut v = Value::named(name);
        v.constant = Some(tensor);
        let id = self.add_value(v);
        self.initializers.push(id);
        id
    }
    /// The node behind `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }
    /// Mutable access to a node. Its source record is dropped, since the caller may change it.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        let n = &mut self.nodes[id];
        n.origin = None;
        n
    }
    /// The value behind `id`.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }
    /// Mutable access to a value. Its source record is dropped.
    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        let v = &mut self.values[id];
        v.origin = None;
        v
    }
    /// How many nodes were ever added (live or removed): node ids are below it.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }
    /// Sets the inferred type without touching anything else.
    pub fn set_inferred(&mut self, id: ValueId, ty: Option<TensorTy>) {
        self.values[id].ty = ty;
    }
    /// Checks that `id` belongs to this graph.
    pub fn has_value(&self, id: ValueId) -> bool {
        self.values.get(id).is_some()
    }
    /// Checks that `id` belongs to this graph.
    pub fn has_node(&self, id: NodeId) -> bool {
        self.nodes.get(id).is_some()
    }
    /// All values ever added, in id order.
    pub fn values(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values.iter()
    }
    /// Number of values ever added.
    pub fn num_values(&self) -> usize {
        self.values.len()
    }
    /// Live nodes in topological order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.order.iter().map(|&id| (id, &self.nodes[id]))
    }
    /// Adds a node placed just before `before` in the order.
    pub fn insert_node_before(&mut self, node: Node, before: NodeId) -> NodeId {
        let id = self.nodes.push(node);
        let at = self.order.iter().position(|&n| n == before).unwrap_or(self.order.len());
        self.order.insert(at, id);
        id
    }
    /// Puts the live nodes in a topological order (each after the producers
    /// of what it reads), leaving the order as it is where it already is one.
    /// ONNX requires sorted nodes, but ONNX Runtime sorts a graph itself, so
    /// files that are not sorted exist. Returns whether the order changed.
    ///
    /// ```
    /// use ecospac_ir::{Graph, Node, Op, Value};
    /// use ecospac_ir::op::UnaryOp;
    /// let mut g = Graph::new("g");
    /// let (x, y, z) = (g.add_value(Value::named("x")), g.add_value(Value::named("y")), g.add_value(Value::named("z")));
    /// let node = |name: &str, i, o| Node {
    ///     name: name.into(), op: Op::Unary(UnaryOp::Relu), inputs: vec![Some(i)], outputs: vec![Some(o)],
    ///     origin: None, captures: vec![],
    /// };
    /// let second = g.add_node(node("second", y, z));
    /// let first = g.add_node(node("first", x, y));
    /// assert_eq!(g.sort_topologically(), Ok(true));
    /// assert_eq!(g.order, vec![first, second]);
    /// assert_eq!(g.sort_topologically(), Ok(false));
    /// ```
    pub fn sort_topologically(&mut self) -> Result<bool, CycleError> {
        use petgraph::graph::{DiGraph, NodeIndex};
        let producers = self.producers();
        // Ids that name nothing are the verifier's to report; here they have no producer.
        let producer = |v: ValueId| producers.get(v.index()).copied().flatten();
        let reads = |n: &Node| n.inputs.iter().flatten().chain(&n.captures).copied().collect::<Vec<ValueId>>();
        let mut placed = vec![false; self.nodes.len()];
        let mut sorted = true;
        for &id in &self.order {
            sorted &= reads(&self.nodes[id]).iter().all(|&v| producer(v).is_none_or(|p| placed[p.index()]));
            placed[id.index()] = true;
        }
        if sorted {
            return Ok(false);
        }
        let mut dag: DiGraph<NodeId, ()> = DiGraph::with_capacity(self.order.len(), 0);
        let mut index: Vec<Option<NodeIndex>> = vec![None; self.nodes.len()];
        for &id in &self.order {
            index[id.index()] = Some(dag.add_node(id));
        }
        for &id in &self.order {
            for v in reads(&self.nodes[id]) {
                if let (Some(Some(from)), Some(to)) = (producer(v).map(|p| index[p.index()]), index[id.index()]) {
                    dag.add_edge(from, to, ());
                }
            }
        }
        let order = petgraph::algo::toposort(&dag, None)
            .map_err(|c| CycleError { node: self.nodes[dag[c.node_id()]].name.clone() })?;
        self.order = order.into_iter().map(|i| dag[i]).collect();
        Ok(true)
    }
    /// Removes nodes from the order (their ids stay unused).
    pub fn remove_nodes(&mut self, dead: &[NodeId]) {
        self.order.retain(|id| !dead.contains(id));
    }
    /// The symbol named `name`, created if new.
    pub fn symbol(&mut self, name: &str) -> SymId {
        let found = self.symbols.iter().find(|(_, n)| n.as_str() == name).map(|(id, _)| id);
        found.unwrap_or_else(|| self.symbols.push(name.to_string()))
    }
    /// A new symbol whose name starts with `prefix` and is not taken.
    pub fn fresh_symbol(&mut self, prefix: &str) -> SymId {
        let mut i = self.symbols.len();
        loop {
            let name = format!("{prefix}{i}");
            if !self.symbols.iter().any(|(_, n)| *n == name) {
                return self.symbols.push(name);
            }
            i += 1;
        }
    }
    /// The name of a symbol.
    pub fn symbol_name(&self, id: SymId) -> &str {
        self.symbols.get(id).map_or("?", String::as_str)
    }
    /// All symbols.
    pub fn symbols(&self) -> impl Iterator<Item = (SymId, &String)> {
        self.symbols.iter()
    }
    /// The value `v` is a copy of, through every [`Value::copy_of`] link
    /// (`v` itself when it is no copy).
    pub fn original(&self, v: ValueId) -> ValueId {
        let mut at = v;
        // Each link points to an older value, so the walk ends; the bound guards a hand-made cycle.
        for _ in 0..self.values.len() {
            match self.value(at).copy_of {
                Some(from) if self.has_value(from) => at = from,
                _ => break,
            }
        }
        at
    }

    /// For each value, the node producing it (`None` for inputs and constants).
    pub fn producers(&self) -> Vec<Option<NodeId>> {
        let mut p = vec![None; self.values.len()];
        for (id, node) in self.nodes() {
            for v in node.outputs.iter().flatten() {
                if let Some(slot) = p.get_mut(v.index()) {
                    *slot = Some(id);
                }
            }
        }
        p
    }
    /// Float parameters: the elements of every float initializer but the
    /// tables ([`Graph::tables`]), each counted once however many nodes read it.
    pub fn float_parameters(&self) -> u128 {
        let tables = self.tables();
        self.initializers
            .iter()
            .filter(|v| !tables.get(v.index()).copied().unwrap_or(false))
            .filter_map(|&v| self.value(v).constant.as_ref())
            .filter(|t| t.dtype.is_float())
            .map(|t| t.numel())
            .sum()
    }
    /// For each value: a float constant that nodes read only as tables
    /// ([`Op::table_inputs`](crate::Op::table_inputs): the cos/sin caches of
    /// rotary embeddings). A table is cut with the weights it is read with,
    /// but it is not a parameter.
    pub fn tables(&self) -> Vec<bool> {
        // Read somewhere other than at a table input (or a graph output).
        let mut other = vec![false; self.values.len()];
        let mut table = vec![false; self.values.len()];
        for &o in &self.outputs {
            if let Some(slot) = other.get_mut(o.index()) {
                *slot = true;
            }
        }
        for (_, node) in self.nodes() {
            for (i, v) in node.inputs.iter().enumerate() {
                let Some(v) = v else { continue };
                let slot = if node.op.table_inputs().contains(&i) { &mut table } else { &mut other };
                if let Some(s) = slot.get_mut(v.index()) {
                    *s = true;
                }
            }
            for c in &node.captures {
                if let Some(s) = other.get_mut(c.index()) {
                    *s = true;
                }
            }
        }
        table
            .iter()
            .zip(&other)
            .zip(self.values.iter())
            .map(|((&t, &o), (_, v))| t && !o && v.constant.as_ref().is_some_and(|c| c.dtype.is_float()))
            .collect()
    }
    /// For each value: a constant that holds weights, i.e. a float constant or
    /// one that some node reads at a quantised-data input
    /// ([`Op::is_quantised_input`](crate::Op::is_quantised_input)); other integer
    /// constants are sizes and indices.
    pub fn weights(&self) -> Vec<bool> {
        let mut w: Vec<bool> =
            self.values.iter().map(|(_, v)| v.constant.as_ref().is_some_and(|t| t.dtype.is_float())).collect();
        for (_, node) in self.nodes() {
            for (i, v) in node.inputs.iter().enumerate() {
                if let (true, Some(v)) = (node.op.is_quantised_input(i), v) {
                    if self.value(*v).constant.is_some() {
                        if let Some(slot) = w.get_mut(v.index()) {
                            *slot = true;
                        }
                    }
                }
            }
        }
        w
    }
    /// Parameters: the elements of every weight initializer ([`Graph::weights`]:
    /// float, or quantised data and zero points; packed low-bit codes count
    /// one each), each counted once however many nodes read it (what
    /// `ecospac inspect` reports).
    pub fn parameters(&self) -> u128 {
        let (w, tables) = (self.weights(), self.tables());
        let mut codes = vec![1u32; self.values.len()];
        for (_, node) in self.nodes() {
            for (i, v) in node.inputs.iter().enumerate() {
                let Some(v) = *v else { continue };
                let Some(t) = &self.value(v).constant else { continue };
                if let Some(c) = codes.get_mut(v.index()) {
                    *c = (*c).max(node.op.codes_per_element(i, t.dtype));
                }
            }
        }
        self.initializers
            .iter()
            .filter(|v| w.get(v.index()).copied().unwrap_or(false) && !tables.get(v.index()).copied().unwrap_or(false))
            .filter_map(|&v| {
                Some(self.value(v).constant.as_ref()?.numel().saturating_mul(u128::from(codes[v.index()])))
            })
            .fold(0u128, u128::saturating_add)
    }
    /// For each value, the nodes reading it (as an input or from a subgraph), in order.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut c = vec![Vec::new(); self.values.len()];
        for (id, node) in self.nodes() {
            for v in node.inputs.iter().flatten().chain(&node.captures) {
                if let Some(slot) = c.get_mut(v.index()) {
                    slot.push(id);
                }
            }
        }
        c
    }
}

/// An opset import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsetImport {
    /// Domain ("" for the ONNX default).
    pub domain: String,
    /// Version.
    pub version: i64,
}

/// A model: its graph plus what the file says about it as a whole.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// The main graph.
    pub graph: Graph,
    /// ONNX IR version.
    pub ir_version: i64,
    /// Opset imports.
    pub opsets: Vec<OpsetImport>,
    /// The source `ModelProto` without graph contents (metadata, functions, unknown fields).
    pub origin: Option<Origin>,
}

impl Model {
    /// The version of the default ONNX domain.
    pub fn default_opset(&self) -> i64 {
        self.opset("")
    }
    /// The version imported for `domain` (0 if absent).
    pub fn opset(&self, domain: &str) -> i64 {
        let domain = if domain == "ai.onnx" { "" } else { domain };
        self.opsets.iter().find(|o| o.domain == domain).map_or(0, |o| o.version)
    }
}

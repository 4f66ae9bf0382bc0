//! The IR executed on libtorch: every op of the closed set runs forward on
//! tch tensors, so autograd comes with it, and any graph the frontends read
//! (an ONNX file or a checkpoint's built graph) runs, trains and distils on
//! the CPU or CUDA with one model definition.
//!
//! A [`Program`] turns a model's initializers into tensors on its device once
//! (float ones become the trainable [`Program::parameters`]); each
//! [`Program::forward`] evaluates the nodes the wanted values need, in graph
//! order. Shape computations run eagerly on small integer tensors. An op the
//! executor cannot run (an [`Op::Opaque`] outside the few it knows by name,
//! a subgraph, an unsupported attribute value) is an error naming the node.
//! [`TchExecutor`] implements the passes' [`Executor`], so calibration and
//! refitting can run on libtorch as on ONNX Runtime.

mod contrib;
mod fuse;
mod ops;

use ecospac_ir::exec::{Batch, ExecError, Executor, Session};
use ecospac_ir::{verify, DType, EntityId, Graph, Model, NodeId, Op, Tensor as IrTensor, ValueId};
use tch::{Device, Kind, TchError, Tensor};

/// Why one node could not run (turned into an [`ExecError`] naming the node).
#[derive(Debug)]
pub(crate) struct Fail(pub String);

impl From<TchError> for Fail {
    /// The error's first line (libtorch appends a C++ backtrace).
    fn from(e: TchError) -> Fail {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        Fail(first.strip_prefix("Internal torch error: ").unwrap_or(first).to_string())
    }
}

impl From<String> for Fail {
    fn from(e: String) -> Fail {
        Fail(e)
    }
}

pub(crate) type R<T> = Result<T, Fail>;

/// The libtorch element type of an IR type.
pub fn kind_of(d: DType) -> Result<Kind, ExecError> {
    Ok(match d {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
        other => return Err(ExecError(format!("libtorch has no element type for {other}"))),
    })
}

/// The IR type of a libtorch element type.
pub fn dtype_of(k: Kind) -> Result<DType, ExecError> {
    Ok(match k {
        Kind::Float => DType::F32,
        Kind::Double => DType::F64,
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::BF16,
        Kind::Int8 => DType::I8,
        Kind::Int16 => DType::I16,
        Kind::Int => DType::I32,
        Kind::Int64 => DType::I64,
        Kind::Uint8 => DType::U8,
        Kind::Bool => DType::Bool,
        other => return Err(ExecError(format!("libtorch type {other:?} has no ONNX counterpart here"))),
    })
}

/// An IR tensor as a libtorch tensor on `device` (its size checked first).
pub fn to_tch(t: &IrTensor, device: Device) -> Result<Tensor, ExecError> {
    t.check_size().map_err(|e| ExecError(e.to_string()))?;
    let kind = kind_of(t.dtype)?;
    let bad = |e: TchError| ExecError(format!("{}{:?}: {e}", t.dtype, t.dims));
    let cpu = if t.numel() == 0 {
        Tensor::f_zeros(t.dims.as_slice(), (kind, Device::Cpu))
    } else {
        Tensor::f_from_data_size(t.bytes(), &t.dims, kind)
    }
    .map_err(bad)?;
    cpu.f_to(device).map_err(bad)
}

/// A libtorch tensor as an IR tensor (copied to the CPU).
pub fn to_ir(t: &Tensor) -> Result<IrTensor, ExecError> {
    let bad = |e: TchError| ExecError(format!("reading a result: {e}"));
    let dtype = dtype_of(t.f_kind().map_err(bad)?)?;
    let c = t.f_detach().map_err(bad)?.f_to(Device::Cpu).map_err(bad)?.f_contiguous().map_err(bad)?;
    let dims = c.size();
    let numel = usize::try_from(dims.iter().product::<i64>()).map_err(|_| ExecError("negative size".into()))?;
    let size = dtype.size().ok_or_else(|| ExecError(format!("{dtype} has no byte size")))?;
    let mut bytes = vec![0u8; numel.checked_mul(size).ok_or_else(|| ExecError("result too large".into()))?];
    if numel > 0 {
        c.f_copy_data_u8(&mut bytes, numel).map_err(bad)?;
    }
    Ok(IrTensor::from_bytes(dtype, dims, bytes))
}

/// The float initializers of `g` read as the data of a `Gather` (embedding tables).
pub fn embedding_tables(g: &Graph) -> Vec<&str> {
    let mut names: Vec<&str> = g
        .nodes()
        .filter(|(_, n)| matches!(n.op, Op::Gather { .. }))
        .filter_map(|(_, n)| n.inputs.first().copied().flatten())
        .filter(|&v| g.initializers.contains(&v) && g.value(v).constant.as_ref().is_some_and(|t| t.dtype.is_float()))
        .map(|v| g.value(v).name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `a @ b` as the executor's `MatMul` computes it (in bfloat16 when `bf16`,
/// the result in float32).
pub(crate) fn matmul(a: &Tensor, b: &Tensor, bf16: bool) -> Result<Tensor, ExecError> {
    ops::matmul(a, b, bf16).map_err(|Fail(e)| ExecError(format!("matrix product: {e}")))
}

/// A model ready to run on libtorch.
pub struct Program {
    graph: Graph,
    device: Device,
    /// Initializers and `Constant` outputs, by value index.
    consts: Vec<Option<Tensor>>,
    /// Producer of each value.
    producers: Vec<Option<NodeId>>,
    /// Float32 matrix products in bfloat16.
    bf16: bool,
    /// Per node: the activation function it ends, run as one kernel.
    fused: Vec<Option<fuse::Fused>>,
}

impl Program {
    /// Prepares `model` (which must verify) on `device`: every initializer
    /// and `Constant` becomes a tensor there.
    pub fn new(model: &Model, device: Device) -> Result<Program, ExecError> {
        verify(&model.graph).map_err(|e| ExecError(format!("the model to run does not verify: {e}")))?;
        let g = &model.graph;
        let mut consts: Vec<Option<Tensor>> = (0..g.num_values()).map(|_| None).collect();
        for &v in &g.initializers {
            let value = g.value(v);
            let Some(t) = &value.constant else { continue };
            let t = to_tch(t, device).map_err(|e| ExecError(format!("initializer `{}`: {e}", value.name)))?;
            consts[v.index()] = Some(t);
        }
        for &n in &g.order {
            let node = g.node(n);
            if let (Op::Constant { value, .. }, Some(Some(out))) = (&node.op, node.outputs.first()) {
                let t = to_tch(value, device).map_err(|e| ExecError(format!("Constant `{}`: {e}", node.name)))?;
                consts[out.index()] = Some(t);
            }
        }
        Ok(Program { graph: g.clone(), device, consts, producers: g.producers(), bf16: false, fused: fuse::find(g) })
    }

    /// Runs float32 matrix products (`MatMul`, `Gemm`) in bfloat16, the
    /// results kept in float32: mixed precision as on CUDA.
    pub fn set_bf16(&mut self, on: bool) {
        self.bf16 = on;
    }

    /// How many activation functions written out as op chains run as one
    /// kernel (tanh and erf GELU, SiLU).
    pub fn fused_activations(&self) -> usize {
        self.fused.iter().flatten().count()
    }

    /// The graph it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The float initializers (the trainable parameters), by name.
    pub fn parameters(&self) -> Vec<(&str, &Tensor)> {
        self.float_initializers()
            .filter_map(|v| Some((self.graph.value(v).name.as_str(), self.consts[v.index()].as_ref()?)))
            .collect()
    }

    /// Makes each float initializer a leaf that records gradients when
    /// `trainable(name)`, and one that does not otherwise.
    pub fn set_trainable(&mut self, trainable: impl Fn(&str) -> bool) -> Result<(), ExecError> {
        let ids: Vec<ValueId> = self.float_initializers().collect();
        for v in ids {
            let name = &self.graph.value(v).name;
            let slot = &mut self.consts[v.index()];
            if let Some(t) = slot.take() {
                let leaf = t.f_detach().and_then(|d| d.f_set_requires_grad(trainable(name)));
                *slot = Some(leaf.map_err(|e| ExecError(format!("parameter `{name}`: {e}")))?);
            }
        }
        Ok(())
    }

    /// `model` (the model this program was made from) with the float
    /// initializers' current values, in their own types.
    pub fn write_back(&self, model: &Model) -> Result<Model, ExecError> {
        let mut out = model.clone();
        self.write_into(&mut out)?;
        Ok(out)
    }

    /// Puts the float initializers' current values into `model` (the model
    /// this program was made from), in their own types.
    pub fn write_into(&self, out: &mut Model) -> Result<(), ExecError> {
        if out.graph.num_values() != self.graph.num_values() {
            return Err(ExecError("the model is not the one this program was made from".into()));
        }
        for v in self.float_initializers().collect::<Vec<_>>() {
            let Some(t) = &self.consts[v.index()] else { continue };
            let value = out.graph.value_mut(v);
            let new = to_ir(t)?;
            match &value.constant {
                Some(old) if old.dtype == new.dtype && old.dims == new.dims => value.constant = Some(new),
                _ => return Err(ExecError(format!("initializer `{}` does not belong to this model", value.name))),
            }
        }
        Ok(())
    }

    fn float_initializers(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.graph.initializers.iter().copied().filter(|&v| {
            self.consts[v.index()].is_some()
                && self.graph.value(v).constant.as_ref().is_some_and(|t| t.dtype.is_float())
        })
    }

    /// Runs the graph on `feeds` (graph inputs by name; others are ignored)
    /// and returns its outputs in order.
    pub fn forward(&self, feeds: &[(String, Tensor)]) -> Result<Vec<Tensor>, ExecError> {
        self.forward_values(feeds, &self.graph.outputs)
    }

    /// Runs what `wanted` needs and returns those values (any value of the
    /// graph: intermediate layer outputs for distillation, say).
    pub fn forward_values(&self, feeds: &[(String, Tensor)], wanted: &[ValueId]) -> Result<Vec<Tensor>, ExecError> {
        let g = &self.graph;
        let mut env: Vec<Option<Tensor>> = (0..g.num_values()).map(|_| None).collect();
        for &v in &g.inputs {
            let name = &g.value(v).name;
            if self.consts[v.index()].is_some() {
                continue;
            }
            let (_, t) = feeds
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| ExecError(format!("graph input `{name}` was not fed")))?;
            env[v.index()] = Some(t.shallow_clone());
        }
        let needed = self.needed(wanted)?;
        for &n in &g.order {
            if !needed[n.index()] {
                continue;
            }
            let node = g.node(n);
            if matches!(node.op, Op::Constant { .. }) {
                continue;
            }
            if let (Some(f), [Some(out)]) = (self.fused(n), node.outputs.as_slice()) {
                let x = env[f.input.index()]
                    .as_ref()
                    .or(self.consts[f.input.index()].as_ref())
                    .ok_or_else(|| ExecError(format!("node `{}`: its input has no value", node.name)))?;
                let y = f.apply(x).map_err(|Fail(e)| ExecError(format!("node `{}` (fused): {e}", node.name)))?;
                env[out.index()] = Some(y);
                continue;
            }
            let outs = {
                let inputs: Vec<Option<&Tensor>> = node
                    .inputs
                    .iter()
                    .map(|i| i.and_then(|v| env[v.index()].as_ref().or(self.consts[v.index()].as_ref())))
                    .collect();
                if let Some(pos) = node.inputs.iter().zip(&inputs).position(|(i, t)| i.is_some() && t.is_none()) {
                    return Err(ExecError(format!("node `{}`: input {pos} has no value", node.name)));
                }
                let wants: Vec<bool> = node.outputs.iter().map(Option::is_some).collect();
                let cx = ops::Cx { device: self.device, wants: &wants, bf16: self.bf16 };
                ops::run(&node.op, &inputs, &cx)
                    .map_err(|Fail(e)| ExecError(format!("node `{}` ({}): {e}", node.name, node.op.op_type())))?
            };
            for (slot, t) in node.outputs.iter().zip(outs) {
                if let (Some(v), Some(t)) = (slot, t) {
                    env[v.index()] = Some(t);
                }
            }
        }
        wanted
            .iter()
            .map(|&v| {
                env[v.index()]
                    .as_ref()
                    .or(self.consts[v.index()].as_ref())
                    .map(Tensor::shallow_clone)
                    .ok_or_else(|| ExecError(format!("value `{}` was not computed", g.value(v).name)))
            })
            .collect()
    }

    /// The nodes that `wanted` depends on.
    fn needed(&self, wanted: &[ValueId]) -> Result<Vec<bool>, ExecError> {
        let g = &self.graph;
        let mut needed = vec![false; g.order.iter().map(|n| n.index() + 1).max().unwrap_or(0)];
        let mut stack: Vec<ValueId> = wanted.to_vec();
        let mut seen = vec![false; g.num_values()];
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut seen[v.index()], true) {
                continue;
            }
            let Some(n) = self.producers[v.index()] else { continue };
            if let Some(slot) = needed.get_mut(n.index()) {
                *slot = true;
            }
            let node = g.node(n);
            if !node.captures.is_empty() {
                return Err(ExecError(format!(
                    "node `{}` ({}) has subgraphs, which the libtorch executor does not run yet",
                    node.name,
                    node.op.op_type()
                )));
            }
            match self.fused(n) {
                Some(f) => stack.push(f.input),
                None => stack.extend(node.inputs.iter().flatten().copied()),
            }
        }
        Ok(needed)
    }

    fn fused(&self, n: NodeId) -> Option<fuse::Fused> {
        self.fused.get(n.index()).copied().flatten()
    }
}

/// libtorch as an [`Executor`] (no gradients recorded).
pub struct TchExecutor {
    /// Where models run.
    pub device: Device,
}

impl Executor for TchExecutor {
    fn load(&self, model: &Model) -> Result<Box<dyn Session + '_>, ExecError> {
        Ok(Box::new(TchSession { program: Program::new(model, self.device)? }))
    }
}

struct TchSession {
    program: Program,
}

impl Session for TchSession {
    fn run(&mut self, feeds: &Batch) -> Result<Vec<IrTensor>, ExecError> {
        let device = self.program.device;
        let g = &self.program.graph;
        let feeds = feeds
            .iter()
            .filter(|(n, _)| g.inputs.iter().any(|&v| &g.value(v).name == n))
            .map(|(n, t)| Ok((n.clone(), to_tch(t, device).map_err(|e| ExecError(format!("input `{n}`: {e}")))?)))
            .collect::<Result<Vec<_>, ExecError>>()?;
        let outs = tch::no_grad(|| self.program.forward(&feeds))?;
        outs.iter().map(to_ir).collect()
    }
}

//! A trainable model: the IR graph of a config, a checkpoint or an ONNX file,
//! run by the libtorch executor ([`crate::exec`]), with its trainable
//! parameters by name and the language-model objective it trains on.
//!
//! The graph is the one model definition: a config is built by the hf
//! frontend's graph builders (freshly initialised), a checkpoint the same way
//! with its tensors, and an ONNX file as it is. The graph is prepared as the
//! compiler prepares it, so the compiler's analysis and slicer work on it;
//! after each shrink the program is rebuilt from the sliced graph.

use crate::exec::{to_tch, Program};
use crate::TrainError;
use ecospac_frontends::hf::{build_graph, init_graph, Weights};
use ecospac_ir::op::UnaryOp;
use ecospac_ir::{DType, EntityId, Model as IrModel, Op, Tensor as IrTensor, ValueId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// What a model learns from token ids.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Predict the next token from the `logits` output.
    Causal,
    /// Predict masked tokens (BERT-style): from `logits`, or through the
    /// token embedding tied as the output projection.
    Masked,
}

impl Objective {
    /// Parses `causal` or `masked`.
    pub fn parse(s: &str) -> Option<Objective> {
        match s {
            "causal" => Some(Objective::Causal),
            "masked" => Some(Objective::Masked),
            _ => None,
        }
    }
}

/// Where the logits come from.
#[derive(Clone, Debug)]
enum Head {
    /// A graph output.
    Output(ValueId),
    /// The hidden-state output times the transposed token embedding.
    Tied { hidden: ValueId, table: String },
}

/// A model being trained.
pub struct Net {
    /// The graph as trained: prepared, and sliced with each shrink. Its
    /// initializers hold the weights as of the last [`Net::sync`].
    pub ir: IrModel,
    program: Program,
    /// The trainable parameters by name (the program's own tensors, so an
    /// in-place optimizer update is what the next forward uses).
    pub params: BTreeMap<String, Tensor>,
    /// The config.json of a model built from a config or checkpoint.
    pub config: Option<serde_json::Value>,
    /// What it learns on its own (none for a student that learns from a teacher).
    pub objective: Option<Objective>,
    trainable: BTreeSet<String>,
    head: Option<Head>,
    device: Device,
    bf16: bool,
}

/// The most elements one freshly made tensor may have (2^32).
const MAX_FRESH: u64 = 1 << 32;

/// A freshly made tensor: N(0, 0.02²) for matrices and embeddings, ones for
/// 1-D `*.weight` (norm scales), zeros for biases, as `transformers` does.
/// Its size is checked before anything is allocated.
fn initial(name: &str, shape: &[i64]) -> Result<IrTensor, String> {
    let n = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?));
    if n.is_none_or(|n| n > MAX_FRESH) {
        return Err(format!("more than {MAX_FRESH} elements"));
    }
    let t = if name.ends_with("bias") {
        Tensor::f_zeros(shape, (Kind::Float, Device::Cpu))
    } else if shape.len() == 1 {
        Tensor::f_ones(shape, (Kind::Float, Device::Cpu))
    } else {
        Tensor::f_randn(shape, (Kind::Float, Device::Cpu)).and_then(|t| t.f_mul_scalar(0.02))
    }
    .map_err(|e| e.to_string())?;
    crate::exec::to_ir(&t).map_err(|e| e.to_string())
}

/// The objective a config's family trains on.
fn objective_of(json: &serde_json::Value) -> Result<Objective, TrainError> {
    match json.get("model_type").and_then(serde_json::Value::as_str).unwrap_or_default() {
        "bert" => Ok(Objective::Masked),
        "gpt2" | "llama" | "mistral" | "qwen2" | "qwen3" | "phi3" | "gemma2" | "gemma3_text" => Ok(Objective::Causal),
        "vit" => Err(TrainError::Config("a ViT reads images; the trainer trains on text".into())),
        other => Err(TrainError::Config(format!("model_type `{other}`: no language-model objective is known for it"))),
    }
}

impl Net {
    /// A freshly initialised model of `json` (seeded by `tch::manual_seed`).
    pub fn init(json: &serde_json::Value, device: Device) -> Result<Net, TrainError> {
        let objective = objective_of(json)?;
        let hf = init_graph(json.clone(), Box::new(initial))?;
        let names = hf.checkpoint.weights.order.iter().cloned().collect();
        Net::new(hf.model, names, Some(json.clone()), Some(objective), device)
    }

    /// A model of `json` with a checkpoint's tensors (trained in float32).
    pub fn load(json: &serde_json::Value, weights: &Weights, device: Device) -> Result<Net, TrainError> {
        let objective = objective_of(json)?;
        let mut w = Weights::default();
        for name in &weights.order {
            let Some(t) = weights.tensors.get(name) else { continue };
            let t = match t.dtype {
                DType::F16 | DType::BF16 => ecospac_ir::tensor::cast_float(t, DType::F32).unwrap_or_else(|| t.clone()),
                _ => t.clone(),
            };
            w.order.push(name.clone());
            w.tensors.insert(name.clone(), t);
        }
        let names = w.order.iter().cloned().collect();
        let hf = build_graph(Path::new("."), json.clone(), w)?;
        Net::new(hf.model, names, Some(json.clone()), Some(objective), device)
    }

    /// An ONNX model as it is: its [`weights`] are trained.
    pub fn from_onnx(model: IrModel, objective: Objective, device: Device) -> Result<Net, TrainError> {
        let names = weights(&model);
        Net::new(model, names, None, Some(objective), device)
    }

    /// Prepares `ir` and makes the program; `trainable` names the parameters.
    pub fn new(
        mut ir: IrModel,
        trainable: BTreeSet<String>,
        config: Option<serde_json::Value>,
        objective: Option<Objective>,
        device: Device,
    ) -> Result<Net, TrainError> {
        ecospac_passes::prepare(&mut ir)?;
        let head = objective.map(|o| head(&ir, o)).transpose()?;
        let program = Program::new(&ir, device)?;
        let mut net =
            Net { ir, program, params: BTreeMap::new(), config, objective, trainable, head, device, bf16: false };
        net.adopt()?;
        if net.params.is_empty() {
            return Err(TrainError::Config("the model has no float weights to train".into()));
        }
        Ok(net)
    }

    /// Makes the program's trainable tensors leaves that record gradients and lists them.
    fn adopt(&mut self) -> Result<(), TrainError> {
        let trainable = &self.trainable;
        self.program.set_trainable(|n| trainable.contains(n))?;
        self.program.set_bf16(self.bf16);
        self.params = self
            .program
            .parameters()
            .into_iter()
            .filter(|(n, _)| self.trainable.contains(*n))
            .map(|(n, t)| (n.to_string(), t.shallow_clone()))
            .collect();
        Ok(())
    }

    /// Makes trainable every float initializer that the slicer copied from a
    /// parameter in `before` (one copy per differently sliced use), and forgets
    /// the names the graph no longer has.
    pub(crate) fn adopt_copies(&mut self, before: &BTreeSet<String>) {
        let g = &self.ir.graph;
        let now: BTreeSet<String> = g.initializers.iter().map(|&v| g.value(v).name.clone()).collect();
        for &v in &g.initializers {
            if before.contains(crate::sparsity::sliced_from(g, v)) {
                self.trainable.insert(g.value(v).name.clone());
            }
        }
        self.trainable.retain(|n| now.contains(n));
    }

    /// Runs float32 matrix products in bfloat16 (mixed precision on CUDA).
    pub fn set_bf16(&mut self, on: bool) {
        self.bf16 = on;
        self.program.set_bf16(on);
    }

    /// The program the model runs as.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Puts the parameters' current values into the graph's initializers.
    pub fn sync(&mut self) -> Result<(), TrainError> {
        self.program.write_into(&mut self.ir)?;
        Ok(())
    }

    /// Remakes the program from the graph (after the graph was sliced or its
    /// initializers replaced); the parameters are the graph's values.
    pub fn rebuild(&mut self) -> Result<(), TrainError> {
        self.head = self.objective.map(|o| head(&self.ir, o)).transpose()?;
        self.program = Program::new(&self.ir, self.device)?;
        self.adopt()
    }

    /// Replaces initializers by name (a checkpoint's tensors), each checked
    /// against the graph's type and shape, then remakes the program.
    pub fn set_tensors(&mut self, tensors: &BTreeMap<String, IrTensor>) -> Result<(), TrainError> {
        let g = &mut self.ir.graph;
        let ids: Vec<ValueId> = g.initializers.clone();
        let mut found = 0;
        for v in ids {
            let value = g.value_mut(v);
            let Some(new) = tensors.get(&value.name) else { continue };
            match &value.constant {
                Some(old) if old.dims == new.dims => {
                    let new = match old.dtype == new.dtype {
                        true => new.clone(),
                        false => ecospac_ir::tensor::cast_float(new, old.dtype).ok_or_else(|| {
                            TrainError::Config(format!(
                                "tensor `{}` is {}, the model's is {}",
                                value.name, new.dtype, old.dtype
                            ))
                        })?,
                    };
                    value.constant = Some(new);
                    found += 1;
                }
                _ => {
                    return Err(TrainError::Config(format!(
                        "tensor `{}` ({:?}) does not fit the model",
                        value.name, new.dims
                    )))
                }
            }
        }
        if found != tensors.len() {
            return Err(TrainError::Config(format!(
                "{} of {} tensors name nothing in the model",
                tensors.len() - found,
                tensors.len()
            )));
        }
        self.rebuild()
    }

    /// The feeds for token ids `[B, S]`: ids, a full attention mask, token
    /// type 0 and positions `0..S`; any other graph input is an error.
    fn feeds(&self, ids: &Tensor) -> Result<Vec<(String, Tensor)>, TrainError> {
        let g = self.program.graph();
        let (b, s) = match ids.size()[..] {
            [b, s] => (b, s),
            _ => return Err(TrainError::Config(format!("token ids must be [batch, sequence], not {:?}", ids.size()))),
        };
        let mut feeds = Vec::new();
        for &v in &g.inputs {
            let value = g.value(v);
            if value.constant.is_some() {
                continue;
            }
            let t = match value.name.as_str() {
                "input_ids" => ids.shallow_clone(),
                "attention_mask" => Tensor::ones([b, s], (Kind::Int64, self.device)),
                "token_type_ids" => Tensor::zeros([b, s], (Kind::Int64, self.device)),
                "position_ids" => Tensor::arange(s, (Kind::Int64, self.device)).unsqueeze(0).expand([b, s], false),
                other => {
                    return Err(TrainError::Config(format!(
                        "graph input `{other}`: the trainer feeds input_ids, attention_mask, token_type_ids and position_ids only"
                    )))
                }
            };
            if let Some(shape) = value.declared.as_ref().and_then(|ty| ty.shape.as_ref()).filter(|s| s.len() == 2) {
                for ((d, n), what) in shape.iter().zip([b, s]).zip(["batch", "sequence length"]) {
                    if let Some(k) = d.as_known().filter(|&k| k != n) {
                        return Err(TrainError::Config(format!(
                            "graph input `{}` has a fixed {what} of {k}, and the data gives {n}",
                            value.name
                        )));
                    }
                }
            }
            let want = value.declared.as_ref().map(|ty| ty.dtype).unwrap_or(DType::I64);
            let kind = crate::exec::kind_of(want)?;
            feeds.push((value.name.clone(), t.to_kind(kind)));
        }
        Ok(feeds)
    }

    /// Token logits `[B, S, vocab]` for ids `[B, S]`.
    pub fn logits(&self, ids: &Tensor) -> Result<Tensor, TrainError> {
        let feeds = self.feeds(ids)?;
        let head = self.head.as_ref().ok_or_else(|| TrainError::Config("the model has no objective".into()))?;
        Ok(match head {
            Head::Output(v) => self.only(self.program.forward_values(&feeds, &[*v])?)?,
            Head::Tied { hidden, table } => {
                let h = self.only(self.program.forward_values(&feeds, &[*hidden])?)?;
                let w = self.params.get(table).or_else(|| self.constant(table)).ok_or_else(|| {
                    TrainError::Config(format!("the tied output projection `{table}` is not in the model"))
                })?;
                crate::exec::matmul(&h, &w.tr(), self.bf16)?
            }
        })
    }

    /// The graph output `name` for ids `[B, S]`.
    pub fn output(&self, ids: &Tensor, name: &str) -> Result<Tensor, TrainError> {
        let v = output_named(&self.program, name)?;
        self.only(self.program.forward_values(&self.feeds(ids)?, &[v])?)
    }

    /// The graph output `name` computed in float32 on the CPU from the
    /// graph's initializers as of the last [`Net::sync`] (what an export writes).
    pub fn reference_output(&self, ids: &Tensor, name: &str) -> Result<Tensor, TrainError> {
        let program = Program::new(&self.ir, Device::Cpu)?;
        let v = output_named(&program, name)?;
        let feeds: Vec<(String, Tensor)> =
            self.feeds(ids)?.into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
        self.only(program.forward_values(&feeds, &[v])?)
    }

    fn only(&self, mut v: Vec<Tensor>) -> Result<Tensor, TrainError> {
        v.pop().ok_or_else(|| TrainError::Config("the program returned nothing".into()))
    }

    fn constant(&self, name: &str) -> Option<&Tensor> {
        self.program.parameters().into_iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    /// Rows of the token embedding (the vocabulary).
    pub fn vocab(&self) -> Option<i64> {
        let table = token_table(&self.ir)?;
        let g = &self.ir.graph;
        g.value(table).constant.as_ref().and_then(|t| t.dims.first().copied())
    }

    /// Trainable parameters counted.
    pub fn num_params(&self) -> i64 {
        self.params.values().map(|t| t.numel() as i64).sum()
    }

    /// A checkpoint tensor on this model's device.
    pub fn to_device(&self, t: &IrTensor) -> Result<Tensor, TrainError> {
        Ok(to_tch(t, self.device)?)
    }
}

/// The graph output called `name`.
fn output_named(program: &Program, name: &str) -> Result<ValueId, TrainError> {
    let g = program.graph();
    g.outputs
        .iter()
        .copied()
        .find(|&v| g.value(v).name == name)
        .ok_or_else(|| TrainError::Config(format!("the model has no output `{name}`")))
}

/// The weights of `model`: its float initializers with more than one element
/// that reach a graph output other than through a `Cos` or `Sin` (what feeds
/// only those is a RoPE frequency table, not a weight), and are not tables
/// ([`ecospac_ir::Graph::tables`]: the cos/sin caches of a fused rotary
/// embedding). A cos/sin table that other ops read is indistinguishable from
/// a learned one, and is trained.
pub fn weights(model: &IrModel) -> BTreeSet<String> {
    let g = &model.graph;
    let tables = g.tables();
    let consumers = g.consumers();
    let outputs: BTreeSet<ValueId> = g.outputs.iter().copied().collect();
    let reaches_output = |start: ValueId| {
        let mut stack = vec![start];
        let mut seen = BTreeSet::new();
        while let Some(v) = stack.pop() {
            if outputs.contains(&v) {
                return true;
            }
            if !seen.insert(v) {
                continue;
            }
            for &n in consumers.get(v.index()).into_iter().flatten() {
                let node = g.node(n);
                if !matches!(node.op, Op::Unary(UnaryOp::Cos | UnaryOp::Sin)) {
                    stack.extend(node.outputs.iter().flatten().copied());
                }
            }
        }
        false
    };
    g.initializers
        .iter()
        .copied()
        .filter(|&v| g.value(v).constant.as_ref().is_some_and(|t| t.dtype.is_float() && t.numel() > 1))
        .filter(|&v| !tables.get(v.index()).copied().unwrap_or(false) && reaches_output(v))
        .map(|v| g.value(v).name.clone())
        .collect()
}

/// The float initializer `input_ids` is gathered from (directly, or through
/// ops that only reshape or cast the ids).
fn token_table(ir: &IrModel) -> Option<ValueId> {
    let g = &ir.graph;
    let mut ids = vec![g.inputs.iter().copied().find(|&v| g.value(v).name == "input_ids")?];
    let consumers = g.consumers();
    let mut seen = BTreeSet::new();
    while let Some(v) = ids.pop() {
        if !seen.insert(v) {
            continue;
        }
        for &n in consumers.get(v.index()).into_iter().flatten() {
            let node = g.node(n);
            let first = node.inputs.first().copied().flatten();
            match &node.op {
                Op::Gather { axis: 0 } if node.inputs.get(1).copied().flatten() == Some(v) => {
                    let table = first.filter(|&t| {
                        g.initializers.contains(&t) && g.value(t).constant.as_ref().is_some_and(|c| c.dtype.is_float())
                    });
                    if table.is_some() {
                        return table;
                    }
                }
                Op::Reshape { .. }
                | Op::Cast(_)
                | Op::Unsqueeze { .. }
                | Op::Squeeze { .. }
                | Op::Flatten { .. }
                | Op::Unary(UnaryOp::Identity)
                    if first == Some(v) =>
                {
                    ids.extend(node.outputs.iter().flatten().copied());
                }
                _ => {}
            }
        }
    }
    None
}

/// How `objective` gets its logits from the graph.
fn head(ir: &IrModel, objective: Objective) -> Result<Head, TrainError> {
    let g = &ir.graph;
    let find = |name: &str| g.outputs.iter().copied().find(|&v| g.value(v).name == name);
    if let Some(v) = find("logits") {
        return Ok(Head::Output(v));
    }
    if objective == Objective::Causal {
        return Err(TrainError::Config("causal LM training needs a `logits` output, and the model has none".into()));
    }
    let hidden = find("last_hidden_state").ok_or_else(|| {
        TrainError::Config("the model has neither a `logits` nor a `last_hidden_state` output".into())
    })?;
    let table = token_table(ir).ok_or_else(|| {
        TrainError::Config("no `logits` output, and no embedding table is gathered by `input_ids` to tie to".into())
    })?;
    Ok(Head::Tied { hidden, table: g.value(table).name.clone() })
}

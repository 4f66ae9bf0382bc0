//! A small graph builder: emits opset-17 nodes, reads checkpoint tensors by
//! name with shape checks, and records which config key sizes which axis.

use super::safetensors::Weights;
use super::HfError;
use ecospac_ir::op::{BinaryOp, Cast, LayerNorm, Reduce, Softmax, Split, UnaryOp};
use ecospac_ir::{DType, Dim, Graph, Model, Node, Op, OpsetImport, Tensor, TensorTy, Value, ValueId};
use std::collections::{BTreeMap, HashMap};

/// The ONNX opset the built graphs use.
pub const OPSET: i64 = 17;

/// `(tensor name, axis)` → the config key that sets that axis's length.
pub type SizeKeys = BTreeMap<(String, usize), String>;

/// Builds one graph from checkpoint tensors.
pub struct Builder<'w> {
    g: Graph,
    weights: &'w Weights,
    /// Set when building a freshly initialised model instead of a checkpoint's.
    fresh: Option<Fresh<'w>>,
    /// Prefix of node and value names (the layer being built).
    pub scope: String,
    counter: usize,
    /// Float view (`Cast` to f32 when stored narrower) of each weight read.
    read: HashMap<String, ValueId>,
    size_keys: SizeKeys,
    key_sizes: BTreeMap<String, usize>,
}

/// Makes a fresh model's tensor from its name and shape (or says why it cannot).
pub type InitFn<'f> = Box<dyn FnMut(&str, &[i64]) -> Result<Tensor, String> + 'f>;

/// What a builder of a fresh model needs.
struct Fresh<'f> {
    model_type: String,
    json: serde_json::Value,
    init: InitFn<'f>,
    made: Weights,
}

/// Activation functions of `hidden_act` / `activation_function`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Exact erf GELU.
    Gelu,
    /// tanh-approximated GELU.
    GeluTanh,
    /// `x * sigmoid(1.702 x)`.
    QuickGelu,
    /// `x * sigmoid(x)`.
    Silu,
    /// ReLU.
    Relu,
}

impl Act {
    /// Parses a `transformers` activation name.
    pub fn parse(key: &str, name: &str) -> Result<Act, HfError> {
        Ok(match name {
            "gelu" => Act::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "quick_gelu" => Act::QuickGelu,
            "silu" | "swish" => Act::Silu,
            "relu" => Act::Relu,
            other => {
                return Err(HfError::Config {
                    key: key.into(),
                    problem: format!(
                        "is `{other}`; ecospac builds gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, silu, relu"
                    ),
                })
            }
        })
    }
}

impl<'w> Builder<'w> {
    /// An empty graph named after the model type.
    pub fn new(weights: &'w Weights, name: &str) -> Builder<'w> {
        Builder {
            g: Graph::new(name),
            weights,
            fresh: None,
            scope: String::new(),
            counter: 0,
            read: HashMap::new(),
            size_keys: BTreeMap::new(),
            key_sizes: BTreeMap::new(),
        }
    }

    /// A builder whose tensors come from `init` (name, shape) instead of a
    /// checkpoint, with the tensors a fresh `transformers` model of this
    /// config has ([`super::init::fresh_has`]).
    pub fn new_fresh(weights: &'w Weights, name: &str, json: serde_json::Value, init: InitFn<'w>) -> Builder<'w> {
        let mut b = Builder::new(weights, name);
        b.fresh = Some(Fresh { model_type: name.to_string(), json, init, made: Weights::default() });
        b
    }

    /// The tensors a fresh builder made, in the order it made them.
    pub fn take_made(&mut self) -> Weights {
        self.fresh.as_mut().map(|f| std::mem::take(&mut f.made)).unwrap_or_default()
    }

    /// The finished model, the recorded size keys and the size each key stands for.
    pub fn finish(self) -> (Model, SizeKeys, BTreeMap<String, usize>) {
        let model = Model {
            graph: self.g,
            ir_version: 8,
            opsets: vec![OpsetImport { domain: String::new(), version: OPSET }],
            origin: None,
        };
        (model, self.size_keys, self.key_sizes)
    }

    /// A symbol for a dynamic dimension.
    pub fn sym(&mut self, name: &str) -> Dim {
        Dim::sym(self.g.symbol(name))
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: Vec<Dim>) -> ValueId {
        let mut v = Value::named(name);
        v.declared = Some(TensorTy::new(dtype, shape));
        let id = self.g.add_value(v);
        self.g.inputs.push(id);
        id
    }

    /// Makes `v` a graph output called `name`.
    pub fn output(&mut self, v: ValueId, name: &str) {
        let v = self.node(Op::Unary(UnaryOp::Identity), &[v]);
        self.g.value_mut(v).name = name.to_string();
        self.g.outputs.push(v);
    }

    /// True when the checkpoint stores `name` (for a fresh model: when a
    /// fresh `transformers` model of the config has it).
    pub fn has(&self, name: &str) -> bool {
        match &self.fresh {
            Some(f) => super::init::fresh_has(&f.model_type, &f.json, name),
            None => self.weights.tensors.contains_key(name),
        }
    }

    /// A checkpoint tensor as float32, checked against the shape the config implies.
    pub fn weight(&mut self, name: &str, expected: &[i64]) -> Result<ValueId, HfError> {
        if let Some(&v) = self.read.get(name) {
            return Ok(v);
        }
        if let Some(f) = self.fresh.as_mut().filter(|f| !f.made.tensors.contains_key(name)) {
            let t = (f.init)(name, expected).map_err(|reason| HfError::Init {
                name: name.into(),
                shape: expected.to_vec(),
                reason,
            })?;
            f.made.order.push(name.to_string());
            f.made.tensors.insert(name.to_string(), t);
        }
        let made = self.fresh.as_ref().and_then(|f| f.made.tensors.get(name));
        let t = made
            .or_else(|| self.weights.tensors.get(name))
            .ok_or_else(|| HfError::MissingTensor { name: name.into(), expected: expected.to_vec() })?;
        if t.dims != expected {
            return Err(HfError::ShapeMismatch {
                name: name.into(),
                expected: expected.to_vec(),
                actual: t.dims.clone(),
            });
        }
        if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(HfError::BadDType { name: name.into(), dtype: t.dtype });
        }
        let dtype = t.dtype;
        let stored = self.g.add_initializer(name, t.clone());
        let v = if dtype == DType::F32 {
            stored
        } else {
            self.node(Op::Cast(Cast { to: DType::F32, saturate: None }), &[stored])
        };
        self.read.insert(name.to_string(), v);
        Ok(v)
    }

    /// Records that axis `axis` of `tensor` has the length `size` that config key `key` sets.
    pub fn sized_by(&mut self, tensor: &str, axis: usize, key: &str, size: i64) {
        self.size_keys.insert((tensor.to_string(), axis), key.to_string());
        self.key_sizes.insert(key.to_string(), size as usize);
    }

    /// A float32 constant.
    pub fn f32s(&mut self, dims: &[i64], values: &[f32]) -> ValueId {
        let name = self.fresh("const");
        self.g.add_initializer(name, Tensor::from_f32s(dims.to_vec(), values))
    }

    /// A float32 constant with a name of its own (one that other tools look up).
    pub fn named_f32s(&mut self, name: &str, dims: &[i64], values: &[f32]) -> ValueId {
        self.g.add_initializer(name, Tensor::from_f32s(dims.to_vec(), values))
    }

    /// A float32 scalar constant.
    pub fn scalar(&mut self, x: f32) -> ValueId {
        self.f32s(&[], &[x])
    }

    /// An int64 constant.
    pub fn i64s(&mut self, dims: &[i64], values: &[i64]) -> ValueId {
        let name = self.fresh("const");
        self.g.add_initializer(name, Tensor::from_i64s(dims.to_vec(), values))
    }

    /// A 1-D int64 constant.
    pub fn ints(&mut self, values: &[i64]) -> ValueId {
        self.i64s(&[values.len() as i64], values)
    }

    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        if self.scope.is_empty() {
            format!("/{what}_{}", self.counter)
        } else {
            format!("/{}/{what}_{}", self.scope, self.counter)
        }
    }

    /// A node with `n` outputs.
    pub fn node_n(&mut self, op: Op, inputs: &[ValueId], n: usize) -> Vec<ValueId> {
        let name = self.fresh(op.op_type());
        let outputs: Vec<ValueId> =
            (0..n).map(|i| self.g.add_value(Value::named(format!("{name}_output_{i}")))).collect();
        self.g.add_node(Node {
            name,
            op,
            inputs: inputs.iter().map(|&v| Some(v)).collect(),
            outputs: outputs.iter().map(|&v| Some(v)).collect(),
            origin: None,
            captures: Vec::new(),
        });
        outputs
    }

    /// A node with one output.
    pub fn node(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        self.node_n(op, inputs, 1)[0]
    }

    /// An elementwise binary op.
    pub fn bin(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> ValueId {
        self.node(Op::Binary(op), &[a, b])
    }

    /// `a + b`.
    pub fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.bin(BinaryOp::Add, a, b)
    }

    /// `a * b`.
    pub fn mul(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.bin(BinaryOp::Mul, a, b)
    }

    /// An elementwise unary op.
    pub fn un(&mut self, op: UnaryOp, a: ValueId) -> ValueId {
        self.node(Op::Unary(op), &[a])
    }

    /// `Reshape` to constant dims (0 copies, -1 infers).
    pub fn reshape(&mut self, x: ValueId, dims: &[i64]) -> ValueId {
        let shape = self.ints(dims);
        self.node(Op::Reshape { allowzero: false }, &[x, shape])
    }

    /// `Transpose`.
    pub fn transpose(&mut self, x: ValueId, perm: &[i64]) -> ValueId {
        self.node(Op::Transpose { perm: Some(perm.to_vec()) }, &[x])
    }

    /// `Unsqueeze` at constant axes.
    pub fn unsqueeze(&mut self, x: ValueId, axes: &[i64]) -> ValueId {
        let axes = self.ints(axes);
        self.node(Op::Unsqueeze { axes: None }, &[x, axes])
    }

    /// `Split` into constant sizes along `axis`.
    pub fn split(&mut self, x: ValueId, axis: i64, sizes: &[i64]) -> Vec<ValueId> {
        let s = self.ints(sizes);
        self.node_n(Op::Split(Split { axis, split: None, num_outputs: None }), &[x, s], sizes.len())
    }

    /// `Concat`.
    pub fn concat(&mut self, xs: &[ValueId], axis: i64) -> ValueId {
        self.node(Op::Concat { axis }, xs)
    }

    /// `Cast`.
    pub fn cast(&mut self, x: ValueId, to: DType) -> ValueId {
        self.node(Op::Cast(Cast { to, saturate: None }), &[x])
    }

    /// `Softmax` over the last axis.
    pub fn softmax(&mut self, x: ValueId) -> ValueId {
        self.node(Op::Softmax(Softmax { axis: -1, coerce_2d: false }), &[x])
    }

    /// `x @ w` for a weight stored `[in, out]` (GPT-2's Conv1D), plus the bias.
    pub fn conv1d(&mut self, x: ValueId, prefix: &str, d_in: i64, d_out: i64) -> Result<ValueId, HfError> {
        let w = self.weight(&format!("{prefix}.weight"), &[d_in, d_out])?;
        let y = self.node(Op::MatMul, &[x, w]);
        let b = self.weight(&format!("{prefix}.bias"), &[d_out])?;
        Ok(self.add(y, b))
    }

    /// `x @ wᵀ (+ b)` for a `torch.nn.Linear` weight stored `[out, in]`; the bias is
    /// used when the checkpoint has one.
    pub fn linear(&mut self, x: ValueId, prefix: &str, d_in: i64, d_out: i64) -> Result<ValueId, HfError> {
        let w = self.weight(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let wt = self.transpose(w, &[1, 0]);
        let y = self.node(Op::MatMul, &[x, wt]);
        let bias = format!("{prefix}.bias");
        if self.has(&bias) {
            let b = self.weight(&bias, &[d_out])?;
            return Ok(self.add(y, b));
        }
        Ok(y)
    }

    /// `LayerNormalization` over the last axis with the checkpoint's scale and shift.
    pub fn layer_norm(&mut self, x: ValueId, prefix: &str, d: i64, eps: f64) -> Result<ValueId, HfError> {
        let w = self.weight(&format!("{prefix}.weight"), &[d])?;
        let b = self.weight(&format!("{prefix}.bias"), &[d])?;
        let op = Op::LayerNorm(LayerNorm { axis: -1, epsilon: eps as f32, stash_type: 1, simplified: false });
        Ok(self.node(op, &[x, w, b]))
    }

    /// RMS norm as `transformers` computes it: `w * x / sqrt(mean(x²) + eps)`.
    pub fn rms_norm(&mut self, x: ValueId, prefix: &str, d: i64, eps: f64) -> Result<ValueId, HfError> {
        self.rms_norm_with(x, prefix, d, eps, false)
    }

    /// RMS norm, scaled by `1 + w` when `plus_one` (Gemma's) and by `w` otherwise.
    pub fn rms_norm_with(
        &mut self,
        x: ValueId,
        prefix: &str,
        d: i64,
        eps: f64,
        plus_one: bool,
    ) -> Result<ValueId, HfError> {
        let mut w = self.weight(&format!("{prefix}.weight"), &[d])?;
        if plus_one {
            let one = self.scalar(1.0);
            w = self.add(w, one);
        }
        let sq = self.mul(x, x);
        let op = Op::ReduceMean(Reduce { axes: Some(vec![-1]), keepdims: true, noop_with_empty_axes: false });
        let mean = self.node(op, &[sq]);
        let e = self.scalar(eps as f32);
        let var = self.add(mean, e);
        let rms = self.un(UnaryOp::Sqrt, var);
        let inv = self.un(UnaryOp::Reciprocal, rms);
        let normed = self.mul(x, inv);
        Ok(self.mul(w, normed))
    }

    /// An activation function.
    pub fn act(&mut self, x: ValueId, act: Act) -> ValueId {
        match act {
            Act::Relu => self.un(UnaryOp::Relu, x),
            Act::Silu => {
                let s = self.un(UnaryOp::Sigmoid, x);
                self.mul(x, s)
            }
            Act::QuickGelu => {
                let k = self.scalar(1.702);
                let kx = self.mul(x, k);
                let s = self.un(UnaryOp::Sigmoid, kx);
                self.mul(x, s)
            }
            Act::Gelu => {
                // 0.5 x (1 + erf(x / sqrt 2))
                let r = self.scalar(std::f32::consts::FRAC_1_SQRT_2);
                let xr = self.mul(x, r);
                let e = self.un(UnaryOp::Erf, xr);
                self.gelu_tail(x, e)
            }
            Act::GeluTanh => {
                // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))
                let c = self.scalar(0.044715);
                let x2 = self.mul(x, x);
                let x3 = self.mul(x2, x);
                let cx3 = self.mul(x3, c);
                let inner = self.add(x, cx3);
                let k = self.scalar((2.0 / std::f64::consts::PI).sqrt() as f32);
                let scaled = self.mul(inner, k);
                let t = self.un(UnaryOp::Tanh, scaled);
                self.gelu_tail(x, t)
            }
        }
    }

    fn gelu_tail(&mut self, x: ValueId, t: ValueId) -> ValueId {
        let one = self.scalar(1.0);
        let half = self.scalar(0.5);
        let s = self.add(t, one);
        let hx = self.mul(x, half);
        self.mul(hx, s)
    }

    /// The size of axis `axis` of `x` as a 1-D int64 tensor of one element.
    pub fn dim_of(&mut self, x: ValueId, axis: i64) -> ValueId {
        self.node(Op::Shape { start: Some(axis), end: Some(axis + 1) }, &[x])
    }

    /// `0, 1, ..., len - 1` (int64) for a 1-element `len` from [`Builder::dim_of`].
    pub fn arange(&mut self, len: ValueId) -> ValueId {
        let zero = self.i64s(&[], &[0]);
        let one = self.i64s(&[], &[1]);
        let axes = self.ints(&[0]);
        let n = self.node(Op::Squeeze { axes: None }, &[len, axes]);
        self.node(Op::Range, &[zero, n, one])
    }
}

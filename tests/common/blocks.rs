//! Random small transformer block stacks in the text form (heads, head dims,
//! FFN width, gating, biases, activation, layers, shared weights), for the
//! exactness property test and the executor's comparison with ONNX Runtime.

/// The shape of a random block stack.
#[derive(Debug, Clone)]
pub struct Arch {
    /// Attention heads.
    pub heads: usize,
    /// Dims per head.
    pub head_dim: usize,
    /// FFN width.
    pub ffn: usize,
    /// A gate projection multiplies the activation.
    pub gated: bool,
    /// Projections have biases.
    pub bias: bool,
    /// The FFN activation op.
    pub act: &'static str,
    /// Blocks.
    pub layers: usize,
    /// Every layer reads layer 0's weights.
    pub shared: bool,
}

/// Writes the text form line by line.
struct Builder {
    text: String,
    values: usize,
    nodes: usize,
    bias: bool,
    inits: std::collections::HashMap<String, usize>,
}

impl Builder {
    fn value(&mut self) -> usize {
        self.values += 1;
        self.values
    }
    /// A named weight; a name seen before is the same weight (shared).
    fn init(&mut self, name: &str, dims: &[usize]) -> usize {
        if let Some(&v) = self.inits.get(name) {
            return v;
        }
        let v = self.value();
        self.inits.insert(name.to_string(), v);
        let d: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        let bytes = dims.iter().product::<usize>() * 4;
        self.text.push_str(&format!("init v{v} \"{name}\" = f32[{}] bytes {bytes}\n", d.join(", ")));
        v
    }
    /// One node with one output; returns the output.
    fn node(&mut self, op: &str, inputs: &[usize], name: &str) -> usize {
        let out = self.value();
        let ins: Vec<String> = inputs.iter().map(|i| format!("v{i}")).collect();
        self.text.push_str(&format!("node n{} \"\" {op} ({}) -> (v{out} \"{name}\")\n", self.nodes, ins.join(", ")));
        self.nodes += 1;
        out
    }
    /// `input @ w (+ b)`: weights named `{weights}.w`/`.b`, nodes `{name}`.
    fn proj(&mut self, name: &str, weights: &str, input: usize, rows: usize, cols: usize) -> usize {
        let w = self.init(&format!("{weights}.w"), &[rows, cols]);
        let mm = self.node("MatMul", &[input, w], &format!("{name}.mm"));
        if !self.bias {
            return mm;
        }
        let b = self.init(&format!("{weights}.b"), &[cols]);
        self.node("Add", &[mm, b], name)
    }
}

/// A pre-norm block stack in the text form; weights are filled in afterwards.
pub fn block_text(a: &Arch) -> String {
    let hidden = a.heads * a.head_dim;
    let mut b = Builder {
        text: format!("opset \"\" 17\ngraph \"random\"\ninput v0 \"x\": f32[batch, seq, {hidden}]\n"),
        values: 0,
        nodes: 0,
        bias: a.bias,
        inits: Default::default(),
    };
    let split = b.value();
    b.text.push_str(&format!("init v{split} \"split\" = i64[4] [0, 0, {}, {}]\n", a.heads, a.head_dim));
    let merge = b.value();
    b.text.push_str(&format!("init v{merge} \"merge\" = i64[3] [0, 0, {hidden}]\n"));
    let mut x = 0usize;
    for l in 0..a.layers {
        let w = if a.shared { 0 } else { l };
        let (s, bias) = (b.init(&format!("l{w}.ln.w"), &[hidden]), b.init(&format!("l{w}.ln.b"), &[hidden]));
        let ln = b.node("LayerNormalization {axis = -1, epsilon = 1e-5}", &[x, s, bias], &format!("l{l}.ln"));
        let q = b.proj(&format!("l{l}.q"), &format!("l{w}.q"), ln, hidden, hidden);
        let k = b.proj(&format!("l{l}.k"), &format!("l{w}.k"), ln, hidden, hidden);
        let v = b.proj(&format!("l{l}.v"), &format!("l{w}.v"), ln, hidden, hidden);
        let heads = |b: &mut Builder, src: usize, perm: &str, name: &str| {
            let r = b.node("Reshape", &[src, split], &format!("l{l}.{name}.r"));
            b.node(&format!("Transpose {{perm = ints[{perm}]}}"), &[r], &format!("l{l}.{name}.t"))
        };
        let (q4, k4, v4) = (
            heads(&mut b, q, "0, 2, 1, 3", "q"),
            heads(&mut b, k, "0, 2, 3, 1", "k"),
            heads(&mut b, v, "0, 2, 1, 3", "v"),
        );
        let scores = b.node("MatMul", &[q4, k4], &format!("l{l}.scores"));
        let probs = b.node("Softmax {axis = -1}", &[scores], &format!("l{l}.probs"));
        let ctx = b.node("MatMul", &[probs, v4], &format!("l{l}.ctx"));
        let ctx_t = b.node("Transpose {perm = ints[0, 2, 1, 3]}", &[ctx], &format!("l{l}.ctx.t"));
        let ctx_m = b.node("Reshape", &[ctx_t, merge], &format!("l{l}.ctx.m"));
        let o = b.proj(&format!("l{l}.o"), &format!("l{w}.o"), ctx_m, hidden, hidden);
        let r1 = b.node("Add", &[x, o], &format!("l{l}.res1"));
        let up = b.proj(&format!("l{l}.up"), &format!("l{w}.up"), r1, hidden, a.ffn);
        let act = b.node(a.act, &[up], &format!("l{l}.act"));
        let h = if a.gated {
            let gate = b.proj(&format!("l{l}.gate"), &format!("l{w}.gate"), r1, hidden, a.ffn);
            b.node("Mul", &[act, gate], &format!("l{l}.gated"))
        } else {
            act
        };
        let down = b.proj(&format!("l{l}.down"), &format!("l{w}.down"), h, a.ffn, hidden);
        x = b.node("Add", &[r1, down], &format!("l{l}.res2"));
    }
    b.text.push_str(&format!("output v{x}\n"));
    b.text
}

/// Fills every float initializer with seeded values in [-0.5, 0.5).
pub fn randomise(m: &mut ecospac_ir::Model, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ids: Vec<_> = m.graph.initializers.clone();
    for v in ids {
        let Some(t) = m.graph.value(v).constant.clone() else { continue };
        if t.dtype != ecospac_ir::DType::F32 {
            continue;
        }
        let vals: Vec<f32> = (0..t.numel()).map(|_| rng.random_range(-0.5f32..0.5)).collect();
        m.graph.value_mut(v).constant = Some(ecospac_ir::Tensor::from_f32s(t.dims.clone(), &vals));
    }
}

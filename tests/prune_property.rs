//! The exactness invariant as a property: random small transformer blocks
//! (heads, head dims, FFN width, gating, biases, activation) with random
//! plans (whole heads, dims inside heads and FFN channels, uneven per layer)
//! and random refit weights for the consumers; the sliced model must equal the
//! masked original (removed slices zeroed, refits substituted) in ONNX Runtime.
//! Some stacks share one set of layer weights across all layers (ALBERT-style):
//! the compact model must never have more parameters than the input.

mod common;

use ecospac_ir::text::parse;
use ecospac_passes::coupling::analyze;
use ecospac_passes::prune::{apply_plan, consumers, mask_plan, Refit, SlicePlan};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Arch {
    heads: usize,
    head_dim: usize,
    ffn: usize,
    gated: bool,
    bias: bool,
    act: &'static str,
    layers: usize,
    /// Every layer reads layer 0's weights.
    shared: bool,
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
fn block_text(a: &Arch) -> String {
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
fn randomise(m: &mut ecospac_ir::Model, seed: u64) {
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

fn arch() -> impl Strategy<Value = Arch> {
    (
        1usize..4,
        2usize..7,
        2usize..20,
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["Relu", "Sigmoid", "Tanh"]),
        1usize..4,
        any::<bool>(),
    )
        .prop_map(|(heads, head_dim, ffn, gated, bias, act, layers, shared)| Arch {
            heads,
            head_dim,
            ffn,
            gated,
            bias,
            act,
            layers,
            shared,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn sliced_equals_masked_on_random_blocks(a in arch(), seed in 1u64..1000, keep_seed in 1u64..1000) {
        let mut m = parse(&block_text(&a)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        m.ir_version = 8;
        randomise(&mut m, seed);
        ecospac_passes::run_passes(&mut m, &["infer-shapes"])
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", block_text(&a))))?;
        let mut coupling = analyze(&m);
        // Per layer: whole heads (with more than one head), Q/K dims, V/O dims, FFN;
        // shared weights make one set of groups for all layers.
        let per_layer = 3 + usize::from(a.heads > 1);
        let weight_sets = if a.shared { 1 } else { a.layers };
        prop_assert_eq!(coupling.groups.len(), per_layer * weight_sets, "{:?}", a);
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(keep_seed);
        let mut next = move || rng.random::<u32>() as usize;
        // Every block keeps the same number of indices, a different set per block.
        let kept: Vec<Vec<u32>> = coupling.groups.iter().map(|g| {
            let n = 1 + next() % g.block;
            (0..g.blocks()).flat_map(|b| {
                let mut idx: Vec<usize> = (0..g.block).collect();
                for i in (1..idx.len()).rev() {
                    idx.swap(i, next() % (i + 1));
                }
                idx[..n].iter().map(|&i| (b * g.block + i) as u32).collect::<Vec<_>>()
            }).collect()
        }).collect();
        let mut plan = SlicePlan::from_kept(&m, &coupling, kept);
        // Random refit weights for every consumer (and its bias), at the sliced shapes.
        let removed = plan.bind(&m, &coupling).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cuts = ecospac_passes::prune::cuts(&coupling, &removed);
        for c in consumers(&m, &coupling, &removed) {
            for v in std::iter::once(c.weight).chain(c.bias) {
                let t = m.graph.value(v).constant.clone().expect("constant");
                let gone = |axis: usize| cuts.iter().filter(|((w, _), _)| *w == v).filter_map(|(_, a)| a.get(&axis)).map(|s| s.len() as i64).sum::<i64>();
                let dims: Vec<i64> = t.dims.iter().enumerate().map(|(ax, &d)| d - gone(ax)).collect();
                let n: i64 = dims.iter().product();
                let vals: Vec<f32> = (0..n).map(|_| (next() % 2000) as f32 / 1000.0 - 1.0).collect();
                plan.refits.push(Refit { weight: m.graph.value(v).name.clone(), tensor: ecospac_ir::Tensor::from_f32s(dims, &vals) });
            }
        }
        let mut masked = m.clone();
        mask_plan(&mut masked, &coupling, &plan).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut sliced = m.clone();
        apply_plan(&mut sliced, &mut coupling, &plan).map_err(|e| TestCaseError::fail(format!("{e}\n{}", block_text(&a))))?;
        ecospac_passes::run_passes(&mut sliced, &["infer-shapes"]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = tempfile::tempdir().expect("tempdir");
        let (mp, sp) = (dir.path().join("m.onnx"), dir.path().join("s.onnx"));
        for (model, path) in [(&masked, &mp), (&sliced, &sp)] {
            let proof = ecospac_ir::verify(&model.graph).map_err(|e| TestCaseError::fail(e.to_string()))?;
            ecospac_backends::export_onnx(model, proof, path, &Default::default()).expect("export");
        }
        // Float parameters (what `inspect` counts; shape constants get per-use copies when rewritten).
        let (before, after) = (m.graph.parameters(), sliced.graph.parameters());
        prop_assert!(after <= before, "{:?}: {} parameters, more than the input's {}", a, after, before);
        let inputs = common::make_inputs(&m);
        let (x, y) = (common::run_model(&mp, &inputs), common::run_model(&sp, &inputs));
        let scale = x[0].2.iter().fold(1e-6f32, |acc, v| acc.max(v.abs()));
        let diff = x[0].2.iter().zip(&y[0].2).fold(0.0f32, |acc, (p, q)| acc.max((p - q).abs())) / scale;
        prop_assert!(diff < 1e-4, "{:?}: relative difference {}", a, diff);
    }
}

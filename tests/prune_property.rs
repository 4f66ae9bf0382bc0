//! The exactness invariant as a property: random small transformer blocks
//! (heads, head dims, FFN width, gating, biases, activation) with random
//! plans (whole heads, dims inside heads and FFN channels, uneven per layer)
//! and random refit weights for the consumers; the sliced model must equal the
//! masked original (removed slices zeroed, refits substituted) in ONNX Runtime.
//! Some stacks share one set of layer weights across all layers (ALBERT-style):
//! the compact model must never have more parameters than the input.

#[path = "common/blocks.rs"]
mod blocks;
mod common;

use blocks::{block_text, randomise, Arch};
use common::analyze;
use ecospac_ir::text::parse;
use ecospac_passes::prune::{apply_plan, consumers, mask_plan, Refit, SlicePlan};
use proptest::prelude::*;

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

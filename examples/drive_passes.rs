//! Another program driving ecospac's passes on a graph of its own: a
//! two-head attention block with an FFN, built in the IR's text form, is
//! analysed, planned from its weights, edited and sliced through the library's
//! pipeline, with no file format and no engine involved.
//!
//! ```sh
//! cargo run --example drive_passes
//! ```

use ecospac_ir::{verify, Tensor};
use ecospac_passes::pipeline::{Compilation, Env, Facts, Pipeline, Recipe};
use ecospac_passes::prune::SlicePlan;

/// Q, K, V and O projections over 2 heads of 4 dims, then a ReLU FFN of width 16.
const BLOCK: &str = r#"opset "" 17
graph "block"
input v0 "x": f32[batch, seq, 8]
init v1 "split" = i64[4] [0, 0, 2, 4]
init v2 "merge" = i64[3] [0, 0, 8]
init v3 "q.weight" = f32[8, 8] bytes 256
init v4 "k.weight" = f32[8, 8] bytes 256
init v5 "v.weight" = f32[8, 8] bytes 256
init v6 "o.weight" = f32[8, 8] bytes 256
init v7 "up.weight" = f32[8, 16] bytes 512
init v8 "down.weight" = f32[16, 8] bytes 512
node n0 "q" MatMul (v0, v3) -> (v9 "q")
node n1 "k" MatMul (v0, v4) -> (v10 "k")
node n2 "v" MatMul (v0, v5) -> (v11 "v")
node n3 "q.heads" Reshape (v9, v1) -> (v12 "qh")
node n4 "k.heads" Reshape (v10, v1) -> (v13 "kh")
node n5 "v.heads" Reshape (v11, v1) -> (v14 "vh")
node n6 "q.t" Transpose {perm = ints[0, 2, 1, 3]} (v12) -> (v15 "qt")
node n7 "k.t" Transpose {perm = ints[0, 2, 3, 1]} (v13) -> (v16 "kt")
node n8 "v.t" Transpose {perm = ints[0, 2, 1, 3]} (v14) -> (v17 "vt")
node n9 "scores" MatMul (v15, v16) -> (v18 "scores")
node n10 "probs" Softmax {axis = -1} (v18) -> (v19 "probs")
node n11 "context" MatMul (v19, v17) -> (v20 "ctx")
node n12 "context.t" Transpose {perm = ints[0, 2, 1, 3]} (v20) -> (v21 "ctx_t")
node n13 "context.merge" Reshape (v21, v2) -> (v22 "ctx_m")
node n14 "o" MatMul (v22, v6) -> (v23 "attn")
node n15 "residual" Add (v0, v23) -> (v24 "h")
node n16 "up" MatMul (v24, v7) -> (v25 "up")
node n17 "act" Relu (v25) -> (v26 "a")
node n18 "down" MatMul (v26, v8) -> (v27 "ffn")
node n19 "out" Add (v24, v27) -> (v28 "y")
output v28
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The program's own graph, with weights of its own.
    use rand::{Rng, SeedableRng};
    let mut model = ecospac_ir::text::parse(BLOCK)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for v in model.graph.initializers.clone() {
        let Some(t) = model.graph.value(v).constant.clone() else { continue };
        if t.dtype.is_float() {
            let vals: Vec<f32> = (0..t.numel()).map(|_| rng.random_range(-0.5f32..0.5)).collect();
            model.graph.value_mut(v).constant = Some(Tensor::from_f32s(t.dims.clone(), &vals));
        }
    }
    let before = model.graph.parameters();

    // Analyse and plan from the weights alone (no engine in this program).
    let env = Env::default();
    let recipe = Recipe::parse_toml(
        r#"
        [[step]]
        pass = "prepare"
        [[step]]
        pass = "analyse-coupling"
        [[step]]
        pass = "score"
        criterion = "coupled"
        [[step]]
        pass = "allocate"
        budget = 0.5
        allocation = "global"
        "#,
    )?;
    let mut cx = Compilation::new(model);
    Pipeline::new(&recipe, &env)?.run(&mut cx, &env)?;
    let coupling = cx.coupling()?;
    for (g, gp) in coupling.groups.iter().zip(&cx.plan.as_ref().ok_or("no plan")?.groups) {
        let weights: Vec<&str> = gp.cuts.iter().map(|c| c.weight.as_str()).collect();
        let kind = if g.outer { "heads" } else { "indices" };
        println!("group: {} {kind}, keeps {} — cuts {}", g.size, gp.kept.len(), weights.join(", "));
    }

    // The plan is plain data: keep one more FFN channel, then slice by the edited plan.
    let mut plan: SlicePlan = cx.plan.take().ok_or("no plan")?;
    if let Some(ffn) = plan.groups.iter_mut().find(|g| g.cuts.iter().any(|c| c.weight == "up.weight")) {
        if let Some(extra) = (0..ffn.size as u32).find(|i| !ffn.kept.contains(i)) {
            ffn.kept.push(extra);
            ffn.kept.sort_unstable();
        }
    }
    cx.plan = Some(plan);
    let mut slice = Pipeline::starting_from(&Recipe::of(&["slice"]), &env, cx.facts.with(Facts::PLAN))?;
    slice.run(&mut cx, &env)?;
    verify(&cx.model.graph).map_err(|e| e.to_string())?;
    println!("parameters: {before} before, {} after slicing", cx.model.graph.parameters());
    assert!(cx.model.graph.parameters() < before);
    Ok(())
}

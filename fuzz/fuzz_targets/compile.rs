//! The whole compile on small graphs in the IR's text form: parse, prepare,
//! analyse, plan from the weights at half the budget, slice, verify, export.
#![no_main]

use ecospac_passes::pipeline::{Compilation, Env, Pipeline, Recipe};
use libfuzzer_sys::fuzz_target;

const RECIPE: &str = r#"
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
[[step]]
pass = "slice"
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(model) = ecospac_ir::text::parse(text) else { return };
    let before = model.graph.float_parameters();
    let env = Env::default();
    let Ok(recipe) = Recipe::parse_toml(RECIPE) else { return };
    let Ok(mut pipeline) = Pipeline::new(&recipe, &env) else { return };
    let mut cx = Compilation::new(model);
    if pipeline.run(&mut cx, &env).is_err() {
        return;
    }
    assert!(cx.model.graph.float_parameters() <= before, "the compact model grew");
    let Ok(proof) = ecospac_ir::verify(&cx.model.graph) else { panic!("a sliced graph does not verify") };
    let out = std::env::temp_dir().join(format!("ecospac-fuzz-{}.onnx", std::process::id()));
    let opts = ecospac_backends::ExportOptions::default();
    if ecospac_backends::export_onnx(&cx.model, proof, &out, &opts).is_ok() {
        let _ = ecospac_frontends::import_file(&out);
    }
});

//! The recipe loader (TOML and JSON, validated against the pass registry) and
//! the slice-plan loader, whose plan is then bound to a small real graph.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A two-head attention block with an FFN, prepared and analysed once.
fn block() -> &'static (ecospac_ir::Model, ecospac_passes::coupling::Coupling) {
    static BLOCK: OnceLock<(ecospac_ir::Model, ecospac_passes::coupling::Coupling)> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut m = ecospac_ir::text::parse(include_str!("../seeds/block.ir")).expect("the block parses");
        ecospac_passes::prepare(&mut m).expect("the block prepares");
        let c = ecospac_passes::coupling::analyze(&m);
        (m, c)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = ecospac_passes::pipeline::Env::default();
    for recipe in [ecospac_passes::pipeline::Recipe::parse_toml(text), ecospac_passes::pipeline::Recipe::parse_json(text)]
        .into_iter()
        .flatten()
    {
        if let Ok(r) = recipe.normalized() {
            let _ = ecospac_passes::pipeline::Pipeline::new(&r, &env);
            let _ = r.to_toml();
        }
    }
    let path = std::env::temp_dir().join(format!("ecospac-fuzz-plan-{}.json", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(plan) = ecospac_passes::prune::SlicePlan::load(&path) {
        let (model, coupling) = block();
        let _ = plan.bind(model, coupling);
    }
});

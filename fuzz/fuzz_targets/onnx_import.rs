//! The ONNX frontend on arbitrary bytes: decode, import, infer shapes, verify.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut model) = ecospac_frontends::import_bytes(data, None, "fuzz input") else { return };
    let _ = ecospac_ir::verify(&model.graph);
    let _ = ecospac_passes::infer_shapes(&mut model);
    let _ = ecospac_ir::text::print(&model);
});

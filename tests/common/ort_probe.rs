//! Whether ONNX Runtime's integer products are exact on this CPU (shared by
//! the workspace's tests and the training runtime's).

use ecospac_backends::ort::OrtExecutor;
use ecospac_ir::exec::Executor;
use ecospac_ir::{DType, Tensor};

/// True when ONNX Runtime's `MatMulInteger` of uint8 by int8 saturates on
/// this CPU (x86 without VNNI sums pairs of products in int16): 64 × 255 ×
/// 127 comes back short of 2,072,640. Integer products then depend on which
/// elements pair up.
pub fn ort_saturates_u8s8(ort: &OrtExecutor) -> bool {
    let codes = vec!["127"; 64].join(", ");
    let mut m = ecospac_ir::text::parse(&format!(
        "opset \"\" 17\ngraph \"g\"\ninput v0 \"a\": u8[1, 64]\ninit v1 \"b\" = i8[64, 1] [{codes}]\n\
         node n0 \"mm\" MatMulInteger (v0, v1) -> (v2 \"y\": i32[1, 1])\noutput v2\n"
    ))
    .expect("parse");
    m.ir_version = 8;
    let a = Tensor::from_bytes(DType::U8, vec![1, 64], vec![255; 64]);
    let y = ort.load(&m).expect("ORT loads").run(&vec![("a".to_string(), a)]).expect("ORT runs");
    y[0].bytes() != 2_072_640i32.to_le_bytes()
}

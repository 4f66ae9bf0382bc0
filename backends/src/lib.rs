//! Model writers of ecospac. [`onnx`] writes a verified model back to ONNX,
//! keeping everything the pipeline did not change; [`safetensors`] writes a
//! compact Hugging Face checkpoint folder; [`ort`] runs models in ONNX Runtime
//! for the passes that need activations.
//!
//! ```
//! use ecospac_backends::{export_onnx, ExportOptions};
//! let m = ecospac_ir::text::parse(r#"opset "" 17
//! graph "g"
//! input v0 "x": f32[2, 4]
//! init v1 "w" = f32[4, 3] bytes 48
//! node n0 "mm" MatMul (v0, v1) -> (v2 "y": f32[2, 3])
//! output v2
//! "#).unwrap();
//! let proof = ecospac_ir::verify(&m.graph).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let written = export_onnx(&m, proof, &dir.path().join("m.onnx"), &ExportOptions::default()).unwrap();
//! assert!(written.model_bytes > 48 && written.data_path.is_none());
//! ```

pub mod onnx;
pub mod ort;
pub mod safetensors;

pub use onnx::{export_onnx, ExportError, ExportOptions, ExportReport, ExternalData};
pub use safetensors::{export_checkpoint, write_safetensors, CheckpointReport, CheckpointSource, Resized};

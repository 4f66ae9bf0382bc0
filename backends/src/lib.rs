//! Model writers of ecospac. [`onnx`] writes a verified model back to ONNX,
//! keeping everything the pipeline did not change; [`safetensors`] writes a
//! compact Hugging Face checkpoint folder.

pub mod onnx;
pub mod ort;
pub mod safetensors;

pub use onnx::{export_onnx, ExportError, ExportOptions, ExportReport, ExternalData};
pub use safetensors::{export_checkpoint, write_safetensors, CheckpointReport};

//! Model writers of ecospac. [`onnx`] writes a verified model back to ONNX,
//! keeping everything the pipeline did not change.

pub mod onnx;

pub use onnx::{export_onnx, ExportError, ExportOptions, ExportReport, ExternalData};

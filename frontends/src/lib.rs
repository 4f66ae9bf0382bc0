//! Model readers of ecospac. [`onnx`] reads ONNX models (inline or external data)
//! into the IR, keeping what the IR does not model as opaque source records;
//! [`hf`] reads Hugging Face checkpoints (`config.json` + safetensors) and builds
//! their graphs.

pub mod data;
pub mod hf;
pub mod onnx;
mod onnx_attr;
mod wire;

pub use hf::{import_checkpoint, is_checkpoint, HfError, HfModel};
pub use onnx::{import_bytes, import_file, import_file_with_data, IgnoredDeclaration, ImportError, Imported};
pub use onnx_attr::{attr_from_proto, tensor_from_proto};

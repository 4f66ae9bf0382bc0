//! Hugging Face checkpoints: `config.json` + safetensors → the model's graph in
//! the IR, written with ordinary ONNX ops (opset 17) so that it exports and runs
//! in ONNX Runtime, computing what the `transformers` implementation computes.
//!
//! Weights keep their checkpoint names and layout (`[out, in]` linear weights
//! are read through a `Transpose`, half-precision ones through a `Cast`), so
//! a sliced graph maps back onto the checkpoint tensor by tensor.

mod build;
mod config;
mod decoder;
mod encoder;
mod init;
mod keys;
mod rope;
pub mod safetensors;

pub use build::InitFn;
pub use config::{Config, MAX_SIZE};
pub use init::{fresh_has, init_graph};
pub use safetensors::Weights;

use ecospac_ir::Model;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is malformed.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error("{dir} holds neither model.safetensors nor model.safetensors.index.json")]
    NoWeights {
        /// The folder.
        dir: PathBuf,
    },
    /// A `model_type` with no graph builder.
    #[error(
        "config.json has model_type `{0}`; ecospac builds bert, gpt2, llama, mistral, qwen2, qwen3, phi3, gemma2, \
         gemma3_text and vit"
    )]
    UnknownModelType(String),
    /// A config key is missing or has the wrong type.
    #[error("config.json: `{key}` {problem}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A tensor the architecture needs is absent.
    #[error(
        "the checkpoint has no tensor `{name}` (expected shape {expected:?}); is config.json the one of these weights?"
    )]
    MissingTensor {
        /// Its name.
        name: String,
        /// The shape the config implies.
        expected: Vec<i64>,
    },
    /// A tensor has another shape than the config implies.
    #[error("tensor `{name}` has shape {actual:?}, but config.json implies {expected:?}")]
    ShapeMismatch {
        /// Its name.
        name: String,
        /// The shape the config implies.
        expected: Vec<i64>,
        /// The stored shape.
        actual: Vec<i64>,
    },
    /// A fresh model's tensor could not be made.
    #[error("cannot make tensor `{name}` of shape {shape:?}: {reason}")]
    Init {
        /// Its name.
        name: String,
        /// The shape the config implies.
        shape: Vec<i64>,
        /// Why.
        reason: String,
    },
    /// A tensor has a type the graph cannot compute with.
    #[error("tensor `{name}` is {dtype}; ecospac reads float32, float16 and bfloat16 weights")]
    BadDType {
        /// Its name.
        name: String,
        /// Its type.
        dtype: ecospac_ir::DType,
    },
}

/// A checkpoint folder and what the built graph makes of it.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The folder.
    pub dir: PathBuf,
    /// `config.json` as read.
    pub config: serde_json::Value,
    /// Every stored tensor (also those the graph does not read, such as a pooler).
    pub weights: Weights,
    /// For weight axes whose length is one config key (the FFN width), that key:
    /// `(tensor name, axis) → key`. Slicing only such axes, uniformly, keeps
    /// the standard config valid.
    pub size_keys: BTreeMap<(String, usize), String>,
    /// The length each size key stands for (its default where config.json leaves it null).
    pub key_sizes: BTreeMap<String, usize>,
}

/// A checkpoint's graph plus the checkpoint itself.
#[derive(Debug)]
pub struct HfModel {
    /// The graph (opset 17), with the checkpoint's tensors as initializers under their names.
    pub model: Model,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// `config.json` keys ecospac does not know (assumed not to change the
    /// computation; callers should show them once). Keys known to change it
    /// in ways ecospac does not build are an error instead.
    pub unknown_keys: Vec<String>,
}

/// True when `path` is a folder with a `config.json`.
pub fn is_checkpoint(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// Reads a checkpoint folder and builds its graph.
pub fn import_checkpoint(dir: &Path) -> Result<HfModel, HfError> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|source| HfError::Io { path: config_path.clone(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| HfError::BadFile { path: config_path.clone(), reason: format!("not JSON: {e}") })?;
    if json.get("ecospac").is_some() {
        return Err(HfError::Config {
            key: "ecospac".into(),
            problem: "is set: ecospac wrote these weights with sizes a standard config cannot express, \
                      and does not read such checkpoints back yet"
                .into(),
        });
    }
    let weights = Weights::open(dir)?;
    build_graph(dir, json, weights)
}

/// Builds the graph of the family `model_type` into `b`.
fn build_family(b: &mut build::Builder, config: &Config, model_type: &str) -> Result<(), HfError> {
    match model_type {
        "bert" => encoder::bert(b, config),
        "vit" => encoder::vit(b, config),
        "gpt2" => decoder::gpt2(b, config),
        "llama" | "mistral" | "qwen2" | "qwen3" | "phi3" | "gemma2" | "gemma3_text" => {
            decoder::llama(b, config, model_type)
        }
        other => Err(HfError::UnknownModelType(other.to_string())),
    }
}

/// Builds the graph of a config and its tensors (for checkpoints assembled in
/// memory, such as a training runtime's); `dir` is recorded as the checkpoint's
/// folder (its side files are what a compact checkpoint copies).
pub fn build_graph(dir: &Path, json: serde_json::Value, weights: Weights) -> Result<HfModel, HfError> {
    let config = Config::new(json.clone());
    let model_type = config.str("model_type")?;
    let mut b = build::Builder::new(&weights, &model_type);
    build_family(&mut b, &config, &model_type)?;
    let unknown_keys = keys::check_unread(&config, &model_type)?;
    let (model, size_keys, key_sizes) = b.finish();
    Ok(HfModel {
        model,
        checkpoint: Checkpoint { dir: dir.to_path_buf(), config: json, weights, size_keys, key_sizes },
        unknown_keys,
    })
}

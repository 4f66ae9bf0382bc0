//! EcoSpa sparse training on libtorch (tch), behind the `torch` feature so that
//! the compiler builds without libtorch.
//!
//! A model is its IR graph ([`net`]): built from a Hugging Face-style config
//! or checkpoint by the hf frontend, or read from an ONNX file, and run on
//! libtorch by the IR executor ([`exec`]) with its parameters under their
//! names; AdamW keeps its moments by the same names ([`optim`]); on the EcoSpa
//! schedule the coupled importance collected while training chooses what to
//! remove, and the graph with its weights and the moments are sliced by the
//! compiler's own analysis and plans ([`sparsity`]); [`trainer`] runs it all
//! with checkpoints that resume exactly; [`distil`] repairs a compact model
//! against its original.

#[cfg(feature = "torch")]
pub mod checkpoint;
#[cfg(feature = "torch")]
pub mod data;
#[cfg(feature = "torch")]
pub mod distil;
#[cfg(feature = "torch")]
pub mod exec;
#[cfg(feature = "torch")]
pub mod net;
#[cfg(feature = "torch")]
pub mod optim;
#[cfg(feature = "torch")]
pub mod sparsity;
#[cfg(feature = "torch")]
pub mod trainer;

#[cfg(feature = "torch")]
pub use tch;

use std::path::PathBuf;

/// Why training could not go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting or config value is unusable.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The checkpoint reader failed.
    #[error(transparent)]
    Checkpoint(#[from] ecospac_frontends::HfError),
    /// A pass failed.
    #[error(transparent)]
    Pass(#[from] ecospac_passes::PassError),
    /// Scoring or planning failed.
    #[error(transparent)]
    Score(#[from] ecospac_passes::prune::ScoreError),
    /// Slicing failed.
    #[error(transparent)]
    Slice(#[from] ecospac_passes::prune::SliceError),
    /// Writing failed.
    #[error(transparent)]
    Export(#[from] ecospac_backends::ExportError),
    /// Running a graph failed.
    #[error(transparent)]
    Exec(#[from] ecospac_ir::exec::ExecError),
}

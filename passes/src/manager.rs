//! The pass trait, the registry and the manager.

use ecospac_ir::{verify, Model, VerifierErrors};
use std::time::{Duration, Instant};

/// Whether a pass changed the model.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Something changed.
    Yes,
    /// Nothing changed.
    No,
}

/// A named transformation or analysis of a model.
pub trait Pass {
    /// The registered name (kebab-case), used in recipes and `--dump-after`.
    fn name(&self) -> &'static str;
    /// One line on what the pass does.
    fn doc(&self) -> &'static str;
    /// Runs the pass.
    fn run(&self, model: &mut Model) -> Result<Changed, PassError>;
}

/// Why a pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A name not in the registry.
    #[error("unknown pass `{0}`; known passes: {known}", known = PASS_NAMES.join(", "))]
    Unknown(String),
    /// The graph was already broken before the first pass.
    #[error("the input graph does not verify: {0}")]
    InputInvalid(VerifierErrors),
    /// A pass left the graph broken.
    #[error("after pass `{pass}`: {errors}")]
    Verify {
        /// The pass that ran last.
        pass: &'static str,
        /// What the verifier found.
        errors: VerifierErrors,
    },
    /// A pass failed.
    #[error("pass `{pass}` failed: {message}")]
    Failed {
        /// The pass.
        pass: &'static str,
        /// Why.
        message: String,
    },
}

/// Every registered pass, in the order a default pipeline would run them.
pub const PASS_NAMES: &[&str] = &["infer-shapes", "fold-shape-constants", "hoist-constants", "eliminate-dead-nodes"];

/// The passes that bring an imported model to the form the coupling analysis and
/// the slicer expect (shape chains folded, float constants as initializers).
/// The compiler and `verify --masked` must prepare a model the same way, or the
/// groups of a plan would not match.
pub const PRUNE_PREPARATION: &[&str] =
    &["infer-shapes", "fold-shape-constants", "hoist-constants", "eliminate-dead-nodes", "infer-shapes"];

/// Looks a pass up by its registered name.
pub fn pass_by_name(name: &str) -> Result<Box<dyn Pass>, PassError> {
    Ok(match name {
        "infer-shapes" => Box::new(crate::InferShapes),
        "fold-shape-constants" => Box::new(crate::FoldShapeConstants),
        "eliminate-dead-nodes" => Box::new(crate::EliminateDeadNodes),
        "hoist-constants" => Box::new(crate::HoistConstants),
        other => return Err(PassError::Unknown(other.to_string())),
    })
}

/// How long one pass took and whether it changed anything.
#[derive(Clone, Debug)]
pub struct PassTiming {
    /// The pass.
    pub name: &'static str,
    /// Wall time, verification excluded.
    pub elapsed: Duration,
    /// Whether it changed the model.
    pub changed: Changed,
}

/// Runs a list of passes in order.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    verify_each: bool,
    dump_after: Vec<String>,
    dumps: Vec<(String, String)>,
}

impl PassManager {
    /// A manager for the named passes; every name is checked before anything runs.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<PassManager, PassError> {
        let passes = names.iter().map(|n| pass_by_name(n.as_ref())).collect::<Result<_, _>>()?;
        Ok(PassManager { passes, verify_each: cfg!(debug_assertions), dump_after: Vec::new(), dumps: Vec::new() })
    }
    /// Verify after every pass (on by default in debug builds and tests).
    pub fn verify_each(mut self, on: bool) -> Self {
        self.verify_each = on;
        self
    }
    /// Records the text form of the model after the named pass.
    pub fn dump_after(mut self, pass: &str) -> Result<Self, PassError> {
        pass_by_name(pass)?;
        self.dump_after.push(pass.to_string());
        Ok(self)
    }
    /// The dumps recorded by [`PassManager::dump_after`], as `(pass, text)`.
    pub fn dumps(&self) -> &[(String, String)] {
        &self.dumps
    }
    /// The pass names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }
    /// Runs the pipeline. The input must verify; with `verify_each`, so must
    /// the model after every pass.
    pub fn run(&mut self, model: &mut Model) -> Result<Vec<PassTiming>, PassError> {
        verify(&model.graph).map_err(PassError::InputInvalid)?;
        let mut timings = Vec::with_capacity(self.passes.len());
        for pass in &self.passes {
            let start = Instant::now();
            let changed = pass.run(model)?;
            let elapsed = start.elapsed();
            if self.verify_each {
                verify(&model.graph).map_err(|errors| PassError::Verify { pass: pass.name(), errors })?;
            }
            if self.dump_after.iter().any(|d| d == pass.name()) {
                self.dumps.push((pass.name().to_string(), ecospac_ir::text::print(model)));
            }
            timings.push(PassTiming { name: pass.name(), elapsed, changed });
        }
        Ok(timings)
    }
}

//! The compile pipeline as a library: a [`Recipe`] (an ordered list of named
//! passes with typed parameters) is validated against the registry into a
//! [`Pipeline`], which runs on a [`Compilation`] (the model and what the
//! passes established about it) in an [`Env`] (an engine to run the model,
//! calibration data).
//!
//! Every pass declares the [`Facts`] it requires and ensures and those it
//! invalidates; validation checks the whole recipe before anything runs (an
//! unknown pass or parameter, a requirement no earlier pass ensures, a pass
//! that needs an engine or data the environment lacks: an error naming it),
//! and the manager checks again as it runs, verifies the graph after each pass
//! when asked, and restores the model if a pass fails. Other crates add
//! passes of their own through a [`Registry`].
//!
//! ```
//! use ecospac_passes::pipeline::{Recipe, Pipeline, Env};
//! let recipe = Recipe::parse_toml(r#"
//!     [[step]]
//!     pass = "prepare"
//!     [[step]]
//!     pass = "analyse-coupling"
//! "#).unwrap();
//! let pipeline = Pipeline::new(&recipe, &Env::default()).unwrap();
//! assert_eq!(pipeline.names(), ["prepare", "analyse-coupling"]);
//! // A requirement that no earlier pass ensures is refused before anything runs:
//! let bad = Recipe::parse_toml("[[step]]\npass = \"slice\"").unwrap();
//! let err = Pipeline::new(&bad, &Env::default()).err().unwrap();
//! assert!(err.to_string().contains("slice plan"));
//! ```

mod recipe;
mod registry;
mod steps;

pub use recipe::{Recipe, RecipeError, Step};
pub use registry::{PassConstructor, Registry};
pub use steps::{
    pass_doc, AllocateParams, AnalyseParams, CalibrateParams, LoadPlanParams, RefitMethod, RefitParams, Scope,
    ScoreParams, PASS_NAMES,
};

use crate::coupling::Coupling;
use crate::prune::{CalibrationStats, SlicePlan};
use ecospac_ir::exec::{Batch, Executor};
use ecospac_ir::{verify, Model, VerifierErrors};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the passes have established about a compilation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Facts(u32);

impl Facts {
    /// Nothing.
    pub const NONE: Facts = Facts(0);
    /// The model is in the form the analysis expects (shape chains folded, float constants as initializers).
    pub const PREPARED: Facts = Facts(1);
    /// A coupling analysis of the current model.
    pub const COUPLING: Facts = Facts(2);
    /// Calibration statistics of the current model.
    pub const STATS: Facts = Facts(4);
    /// Scores of every group's indices.
    pub const SCORES: Facts = Facts(8);
    /// A slice plan bound to the current analysis.
    pub const PLAN: Facts = Facts(16);
    /// The model has been sliced.
    pub const SLICED: Facts = Facts(32);
    /// Everything derived from the model (what a pass that changes the graph invalidates).
    pub const DERIVED: Facts = Facts(2 | 4 | 8 | 16);
    const NAMES: [(Facts, &'static str, &'static str); 6] = [
        (Facts::PREPARED, "prepared model", "prepare"),
        (Facts::COUPLING, "coupling analysis", "analyse-coupling"),
        (Facts::STATS, "calibration statistics", "calibrate"),
        (Facts::SCORES, "scores", "score"),
        (Facts::PLAN, "slice plan", "allocate"),
        (Facts::SLICED, "sliced model", "slice"),
    ];

    /// Both.
    pub const fn with(self, other: Facts) -> Facts {
        Facts(self.0 | other.0)
    }
    /// Whether every fact of `other` holds.
    pub fn contains(self, other: Facts) -> bool {
        self.0 & other.0 == other.0
    }
    fn without(self, other: Facts) -> Facts {
        Facts(self.0 & !other.0)
    }
    /// The first fact of `self` missing from `have`: its name and the pass that ensures it.
    fn first_missing(self, have: Facts) -> Option<(&'static str, &'static str)> {
        Facts::NAMES.iter().find(|(f, _, _)| self.contains(*f) && !have.contains(*f)).map(|&(_, n, p)| (n, p))
    }
}

/// What a pass needs, changes and is.
#[derive(Clone, Debug)]
pub struct PassInfo {
    /// The registered name (kebab-case).
    pub name: &'static str,
    /// One line on what it does.
    pub doc: &'static str,
    /// Facts that must hold before it runs.
    pub requires: Facts,
    /// Facts that hold after it ran.
    pub ensures: Facts,
    /// Facts it makes stale.
    pub invalidates: Facts,
    /// Whether it changes the model (the manager restores the model when it fails).
    pub writes_model: bool,
    /// Whether it runs the model (needs [`Env::executor`] and [`Env::data`]).
    pub runs_model: bool,
}

impl PassInfo {
    /// A pass that needs, ensures and changes nothing (set the fields that differ).
    pub fn new(name: &'static str, doc: &'static str) -> PassInfo {
        PassInfo {
            name,
            doc,
            requires: Facts::NONE,
            ensures: Facts::NONE,
            invalidates: Facts::NONE,
            writes_model: false,
            runs_model: false,
        }
    }
}

/// Whether a pass changed the model.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Something changed.
    Yes,
    /// Nothing changed.
    No,
}

/// A named step of a pipeline.
pub trait Pass {
    /// What it is, needs and ensures. With parameters, the facts may depend on them.
    fn info(&self) -> PassInfo;
    /// Runs it.
    fn run(&self, cx: &mut Compilation, env: &Env<'_>) -> Result<Changed, PassError>;
}

/// Calibration data: batches of model inputs and where they came from.
#[derive(Clone, Debug, Default)]
pub struct CalibrationData {
    /// The batches.
    pub batches: Vec<Batch>,
    /// A phrase for reports ("the built-in English corpus, 128 texts").
    pub source: String,
}

impl CalibrationData {
    /// The first batches holding at least `samples` samples (all of them for 0).
    pub fn first(&self, samples: usize) -> &[Batch] {
        if samples == 0 {
            return &self.batches;
        }
        let mut seen = 0;
        for (i, b) in self.batches.iter().enumerate() {
            seen += ecospac_ir::exec::batch_rows(b);
            if seen >= samples {
                return &self.batches[..=i];
            }
        }
        &self.batches
    }
    /// Samples in all batches.
    pub fn samples(&self) -> usize {
        self.batches.iter().map(ecospac_ir::exec::batch_rows).sum()
    }
}

/// Which weight axes a checkpoint's `config.json` sizes (for `scope = "config"`).
#[derive(Clone, Debug, Default)]
pub struct ConfigSizes {
    /// `(tensor, axis)` → the config key that sizes it.
    pub size_keys: BTreeMap<(String, usize), String>,
    /// Config key → its value.
    pub key_sizes: BTreeMap<String, usize>,
}

/// A listener told a stage's name and how many of how many steps are done.
pub type Progress<'a> = dyn Fn(&str, usize, usize) + 'a;

/// What passes may use besides the compilation.
#[derive(Default)]
pub struct Env<'a> {
    /// An engine that runs models (calibration, measured allocation, refit).
    pub executor: Option<&'a dyn Executor>,
    /// Calibration data.
    pub data: Option<&'a CalibrationData>,
    /// The checkpoint's config sizes, for `scope = "config"`.
    pub config_sizes: Option<&'a ConfigSizes>,
    /// Told what a long pass is doing.
    pub progress: Option<&'a Progress<'a>>,
}

impl Env<'_> {
    /// Reports progress, when someone listens.
    pub fn progress(&self, stage: &str, done: usize, total: usize) {
        if let Some(p) = self.progress {
            p(stage, done, total);
        }
    }
}

/// The model being compiled and what the passes established about it.
pub struct Compilation {
    /// The model.
    pub model: Model,
    /// What holds.
    pub facts: Facts,
    /// The coupling analysis ([`Facts::COUPLING`]).
    pub coupling: Option<Coupling>,
    /// Which groups a plan may cut (all, unless the scope says otherwise).
    pub in_scope: Vec<bool>,
    /// Calibration statistics ([`Facts::STATS`]).
    pub stats: Option<CalibrationStats>,
    /// Scores per group and index ([`Facts::SCORES`]).
    pub scores: Option<Vec<Vec<f64>>>,
    /// The plan ([`Facts::PLAN`]).
    pub plan: Option<SlicePlan>,
    /// What each pass reports, by section.
    pub report: serde_json::Map<String, serde_json::Value>,
    /// The model as it came in, kept for passes that compare against it
    /// (recovery by distillation); see [`Compilation::keeping_original`].
    pub original: Option<Model>,
}

impl Compilation {
    /// A compilation of an imported model.
    pub fn new(model: Model) -> Compilation {
        Compilation {
            original: None,
            model,
            facts: Facts::NONE,
            coupling: None,
            in_scope: Vec::new(),
            stats: None,
            scores: None,
            plan: None,
            report: serde_json::Map::new(),
        }
    }

    /// Keeps a copy of the input model as [`Compilation::original`] (weights
    /// are shared, not copied).
    pub fn keeping_original(mut self) -> Compilation {
        self.original = Some(self.model.clone());
        self
    }

    /// The analysis, or an error naming the pass that makes it.
    pub fn coupling(&self) -> Result<&Coupling, PassError> {
        self.coupling.as_ref().ok_or(PassError::Missing { what: "coupling analysis", pass: "analyse-coupling" })
    }
}

/// Why a pipeline could not be built or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A recipe that does not parse or names unknown passes or parameters.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A step whose requirement no earlier step ensures.
    #[error("step {step} (`{pass}`) needs the {what}, which no earlier step makes (add `{by}` before it)")]
    Unmet {
        /// Position in the recipe (1-based).
        step: usize,
        /// The pass.
        pass: &'static str,
        /// What is missing.
        what: &'static str,
        /// The pass that would make it.
        by: &'static str,
    },
    /// A step that runs the model, in an environment without an engine or data.
    #[error("step {step} (`{pass}`) runs the model, which needs {what}")]
    NoEngine {
        /// Position in the recipe (1-based).
        step: usize,
        /// The pass.
        pass: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// Something a pass needs is not there (a library caller skipped a step).
    #[error("the {what} is missing (run `{pass}` first)")]
    Missing {
        /// What.
        what: &'static str,
        /// The pass that makes it.
        pass: &'static str,
    },
    /// The graph was already broken before the first pass.
    #[error("the input graph does not verify: {0}")]
    InputInvalid(VerifierErrors),
    /// A pass left the graph broken (the model was restored).
    #[error("after pass `{pass}`: {errors}")]
    Verify {
        /// The pass that ran last.
        pass: &'static str,
        /// What the verifier found.
        errors: VerifierErrors,
    },
    /// A pass failed (the model was restored).
    #[error("pass `{pass}` failed: {message}")]
    Failed {
        /// The pass.
        pass: &'static str,
        /// Why.
        message: String,
    },
}

impl PassError {
    /// A failure of `pass` with `e`'s message.
    pub fn failed(pass: &'static str, e: impl std::fmt::Display) -> PassError {
        PassError::Failed { pass, message: e.to_string() }
    }
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

/// A validated recipe, ready to run.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
    verify_each: bool,
    dump_after: Vec<String>,
    dumps: Vec<(String, String)>,
}

impl Pipeline {
    /// Builds the passes of `recipe` and checks every requirement in order,
    /// starting from an imported model, against what `env` offers.
    pub fn new(recipe: &Recipe, env: &Env<'_>) -> Result<Pipeline, PassError> {
        Pipeline::starting_from(recipe, env, Facts::NONE)
    }

    /// Like [`Pipeline::new`], for a compilation where `facts` already hold.
    pub fn starting_from(recipe: &Recipe, env: &Env<'_>, facts: Facts) -> Result<Pipeline, PassError> {
        Pipeline::with_registry(&Registry::builtin(), recipe, env, facts)
    }

    /// Like [`Pipeline::starting_from`], with the passes of `registry`
    /// (ecospac's own and those another crate added).
    pub fn with_registry(
        registry: &Registry,
        recipe: &Recipe,
        env: &Env<'_>,
        facts: Facts,
    ) -> Result<Pipeline, PassError> {
        let passes: Vec<Box<dyn Pass>> =
            recipe.steps.iter().enumerate().map(|(i, s)| registry.build(i + 1, s)).collect::<Result<_, _>>()?;
        let mut have = facts;
        for (i, p) in passes.iter().enumerate() {
            let info = p.info();
            if let Some((what, by)) = info.requires.first_missing(have) {
                return Err(PassError::Unmet { step: i + 1, pass: info.name, what, by });
            }
            if info.runs_model {
                let missing = match (env.executor.is_some(), env.data.is_some()) {
                    (false, _) => Some("an engine (ONNX Runtime)"),
                    (_, false) => Some("calibration data"),
                    _ => None,
                };
                if let Some(what) = missing {
                    return Err(PassError::NoEngine { step: i + 1, pass: info.name, what });
                }
            }
            have = have.without(info.invalidates).with(info.ensures);
        }
        Ok(Pipeline { passes, verify_each: cfg!(debug_assertions), dump_after: Vec::new(), dumps: Vec::new() })
    }

    /// Verify the graph after every pass (on by default in debug builds and tests).
    pub fn verify_each(mut self, on: bool) -> Self {
        self.verify_each = on;
        self
    }

    /// Records the text form of the model after the named pass, which must be in the pipeline.
    pub fn dump_after(mut self, pass: &str) -> Result<Self, PassError> {
        if !self.passes.iter().any(|p| p.info().name == pass) {
            return Err(RecipeError::NotInRecipe(pass.to_string()).into());
        }
        self.dump_after.push(pass.to_string());
        Ok(self)
    }

    /// The dumps recorded by [`Pipeline::dump_after`], as `(pass, text)`.
    pub fn dumps(&self) -> &[(String, String)] {
        &self.dumps
    }

    /// The pass names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.info().name).collect()
    }

    /// Runs every pass in order. The input must verify; with `verify_each`,
    /// so must the model after every pass. A failing pass leaves the model as
    /// it was before that pass.
    pub fn run(&mut self, cx: &mut Compilation, env: &Env<'_>) -> Result<Vec<PassTiming>, PassError> {
        verify(&cx.model.graph).map_err(PassError::InputInvalid)?;
        let mut timings = Vec::with_capacity(self.passes.len());
        for pass in &self.passes {
            let info = pass.info();
            if let Some((what, by)) = info.requires.first_missing(cx.facts) {
                return Err(PassError::Missing { what, pass: by });
            }
            let snapshot = info.writes_model.then(|| cx.model.clone());
            let start = Instant::now();
            let result = pass.run(cx, env);
            let elapsed = start.elapsed();
            let result = result.and_then(|changed| {
                if self.verify_each && info.writes_model {
                    verify(&cx.model.graph).map_err(|errors| PassError::Verify { pass: info.name, errors })?;
                }
                Ok(changed)
            });
            let changed = match result {
                Ok(c) => c,
                Err(e) => {
                    if let Some(m) = snapshot {
                        cx.model = m;
                    }
                    return Err(e);
                }
            };
            // Stale results stay readable (the CLI writes a checkpoint from the
            // analysis and plan that sliced the model); the facts say they are stale.
            if changed == Changed::Yes {
                cx.facts = cx.facts.without(info.invalidates);
            }
            cx.facts = cx.facts.with(info.ensures);
            if self.dump_after.iter().any(|d| d == info.name) {
                self.dumps.push((info.name.to_string(), ecospac_ir::text::print(&cx.model)));
            }
            timings.push(PassTiming { name: info.name, elapsed, changed });
        }
        Ok(timings)
    }
}

/// Runs passes that need nothing but the model, by name, verifying the graph
/// after each: the short way for callers with a model in hand.
///
/// ```
/// let mut m = ecospac_ir::Model::default();
/// let timings = ecospac_passes::pipeline::run_passes(&mut m, &["infer-shapes"]).unwrap();
/// assert_eq!(timings[0].name, "infer-shapes");
/// ```
pub fn run_passes<S: AsRef<str>>(model: &mut Model, names: &[S]) -> Result<Vec<PassTiming>, PassError> {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    let recipe = Recipe::of(&names);
    let env = Env::default();
    let mut pipeline = Pipeline::new(&recipe, &env)?.verify_each(true);
    let mut cx = Compilation::new(std::mem::take(model));
    let result = pipeline.run(&mut cx, &env);
    *model = cx.model;
    result
}

/// Brings a model to the prepared form (the `prepare` pass on its own), for
/// callers that analyse or mask it directly.
///
/// ```
/// let mut m = ecospac_ir::Model::default();
/// ecospac_passes::pipeline::prepare(&mut m).unwrap();
/// ```
pub fn prepare(model: &mut Model) -> Result<(), PassError> {
    let recipe = Recipe::of(&["prepare"]);
    let mut cx = Compilation::new(std::mem::take(model));
    let result = Pipeline::new(&recipe, &Env::default()).and_then(|mut p| p.run(&mut cx, &Env::default()));
    *model = cx.model;
    result.map(|_| ())
}

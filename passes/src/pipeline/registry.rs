//! The passes a recipe may name: ecospac's own ([`PASS_NAMES`]) and those
//! another crate registers. A registered pass is validated and run like a
//! built-in one: its requirements are checked before anything runs, and the
//! manager verifies the graph after it and restores the model if it fails.
//!
//! ```
//! use ecospac_passes::pipeline::{
//!     Changed, Compilation, Env, Facts, Pass, PassError, PassInfo, Pipeline, Recipe, Registry,
//! };
//!
//! /// Counts the nodes of the analysed model (another crate's pass).
//! struct CountNodes;
//! impl Pass for CountNodes {
//!     fn info(&self) -> PassInfo {
//!         PassInfo { requires: Facts::COUPLING, ..PassInfo::new("count-nodes", "reports the node count") }
//!     }
//!     fn run(&self, cx: &mut Compilation, _: &Env<'_>) -> Result<Changed, PassError> {
//!         let n = cx.model.graph.nodes().count();
//!         cx.report.insert("nodes".into(), n.into());
//!         Ok(Changed::No)
//!     }
//! }
//!
//! let registry = Registry::builtin().with("count-nodes", "reports the node count", |_| Ok(Box::new(CountNodes)))?;
//! assert!(registry.clone().with("slice", "", |_| Ok(Box::new(CountNodes))).is_err(), "a taken name");
//! let env = Env::default();
//! // Its requirement is checked like a built-in pass's...
//! let early = Recipe::of(&["count-nodes"]);
//! assert!(Pipeline::with_registry(&registry, &early, &env, Facts::NONE).is_err());
//! // ... and it runs where the analysis precedes it.
//! let recipe = Recipe::of(&["prepare", "analyse-coupling", "count-nodes"]);
//! let mut pipeline = Pipeline::with_registry(&registry, &recipe, &env, Facts::NONE)?;
//! let model = ecospac_ir::text::parse(
//!     "opset \"\" 17\ngraph \"g\"\ninput v0 \"x\": f32[2, 4]\ninit v1 \"w\" = f32[4, 3] bytes 48\n\
//!      init v2 \"u\" = f32[3, 4] bytes 48\nnode n0 \"a\" MatMul (v0, v1) -> (v3 \"h\")\n\
//!      node n1 \"b\" MatMul (v3, v2) -> (v4 \"y\")\noutput v4\n",
//! )?;
//! let mut cx = Compilation::new(model);
//! pipeline.run(&mut cx, &env)?;
//! assert_eq!(cx.report["nodes"], 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::recipe::{Recipe, RecipeError, Step};
use super::steps::{self, PASS_NAMES};
use super::{Pass, PassError};

/// Builds a pass from a recipe step's parameters; an error says what is wrong with them.
pub type PassConstructor = fn(&serde_json::Map<String, serde_json::Value>) -> Result<Box<dyn Pass>, String>;

/// The passes a recipe may name.
#[derive(Clone, Default)]
pub struct Registry {
    extra: Vec<(&'static str, &'static str, PassConstructor)>,
}

impl Registry {
    /// ecospac's own passes.
    pub fn builtin() -> Registry {
        Registry::default()
    }

    /// Adds a pass under `name` (the name its [`PassInfo`](super::PassInfo)
    /// gives), with one line on what it does; a name already taken is refused.
    pub fn with(
        mut self,
        name: &'static str,
        doc: &'static str,
        make: PassConstructor,
    ) -> Result<Registry, RecipeError> {
        if self.names().contains(&name) {
            return Err(RecipeError::Duplicate(name.to_string()));
        }
        self.extra.push((name, doc, make));
        Ok(self)
    }

    /// Every name a recipe may use: the built-in passes, then the added ones.
    pub fn names(&self) -> Vec<&'static str> {
        PASS_NAMES.iter().copied().chain(self.extra.iter().map(|e| e.0)).collect()
    }

    /// One line on what the named pass does.
    pub fn doc(&self, name: &str) -> Option<&'static str> {
        steps::pass_doc(name).or_else(|| self.extra.iter().find(|e| e.0 == name).map(|e| e.1))
    }

    /// The recipe with every parameter of ecospac's own passes spelled out
    /// (defaults included); a registered pass's step is checked by building
    /// it, and kept as written.
    pub fn normalized(&self, recipe: &Recipe) -> Result<Recipe, PassError> {
        let mut steps = Vec::with_capacity(recipe.steps.len());
        for (i, s) in recipe.steps.iter().enumerate() {
            if self.extra.iter().any(|e| e.0 == s.pass) {
                self.build(i + 1, s)?;
                steps.push(s.clone());
            } else {
                steps.push(steps::normalize(i + 1, s)?);
            }
        }
        Ok(Recipe { steps })
    }

    /// Builds the pass of one recipe step (1-based `step` for messages).
    pub(super) fn build(&self, step: usize, s: &Step) -> Result<Box<dyn Pass>, PassError> {
        let Some(&(name, _, make)) = self.extra.iter().find(|e| e.0 == s.pass) else {
            if !PASS_NAMES.contains(&s.pass.as_str()) {
                let known = self.names().join(", ");
                return Err(RecipeError::UnknownPass { step, name: s.pass.clone(), known }.into());
            }
            return steps::build(step, s);
        };
        let bad = |message: String| RecipeError::BadParam { step, pass: s.pass.clone(), message };
        let pass = make(&s.params).map_err(bad)?;
        let made = pass.info().name;
        if made != name {
            return Err(bad(format!("the constructor registered as `{name}` made a pass named `{made}`")).into());
        }
        Ok(pass)
    }
}

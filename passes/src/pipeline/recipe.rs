//! Recipes: an ordered list of named passes with parameters, in TOML or JSON.
//!
//! ```toml
//! [[step]]
//! pass = "prepare"
//!
//! [[step]]
//! pass = "allocate"
//! budget = 0.5
//! ```

use std::path::Path;

/// One step: a pass name and its parameters (an object; absent keys take the pass's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The registered pass name.
    pub pass: String,
    /// Its parameters.
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// An ordered list of steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recipe {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Why a recipe was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// Not TOML or JSON of the recipe's form.
    #[error("not a recipe: {0}")]
    Parse(String),
    /// A pass name the registry does not know.
    #[error("step {step}: unknown pass `{name}`; known passes: {known}")]
    UnknownPass {
        /// Position (1-based).
        step: usize,
        /// The name.
        name: String,
        /// The registered names.
        known: String,
    },
    /// A parameter that is unknown or of the wrong type.
    #[error("step {step} (`{pass}`): {message}")]
    BadParam {
        /// Position (1-based).
        step: usize,
        /// The pass.
        pass: String,
        /// What is wrong, from the parameter's type.
        message: String,
    },
    /// A pass registered under a name already taken.
    #[error("a pass named `{0}` is already registered")]
    Duplicate(String),
    /// A name (e.g. for `--dump-after`) that is not a step of the recipe.
    #[error("`{0}` is not a step of this pipeline")]
    NotInRecipe(String),
    /// The recipe file could not be read.
    #[error("cannot read the recipe {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

impl Recipe {
    /// A recipe of passes without parameters.
    pub fn of(names: &[&str]) -> Recipe {
        Recipe { steps: names.iter().map(|n| Step { pass: n.to_string(), params: Default::default() }).collect() }
    }

    /// Appends a step.
    pub fn push(&mut self, pass: &str, params: serde_json::Value) {
        let params = match params {
            serde_json::Value::Object(m) => m,
            _ => Default::default(),
        };
        self.steps.push(Step { pass: pass.to_string(), params });
    }

    fn from_value(v: serde_json::Value) -> Result<Recipe, RecipeError> {
        let serde_json::Value::Object(mut top) = v else {
            return Err(RecipeError::Parse("expected a table with `step` entries".into()));
        };
        let steps = top.remove("step").unwrap_or(serde_json::Value::Array(Vec::new()));
        if let Some(k) = top.keys().next() {
            return Err(RecipeError::Parse(format!("unknown top-level key `{k}` (a recipe has only `step` entries)")));
        }
        let serde_json::Value::Array(steps) = steps else {
            return Err(RecipeError::Parse("`step` must be an array of tables ([[step]])".into()));
        };
        let mut out = Vec::new();
        for (i, s) in steps.into_iter().enumerate() {
            let serde_json::Value::Object(mut params) = s else {
                return Err(RecipeError::Parse(format!("step {} is not a table", i + 1)));
            };
            let pass = match params.remove("pass") {
                Some(serde_json::Value::String(p)) => p,
                _ => return Err(RecipeError::Parse(format!("step {} has no `pass = \"name\"`", i + 1))),
            };
            out.push(Step { pass, params });
        }
        Ok(Recipe { steps: out })
    }

    /// Parses TOML.
    pub fn parse_toml(text: &str) -> Result<Recipe, RecipeError> {
        let v: serde_json::Value = toml::from_str(text).map_err(|e| RecipeError::Parse(e.to_string()))?;
        Recipe::from_value(v)
    }

    /// Parses JSON.
    pub fn parse_json(text: &str) -> Result<Recipe, RecipeError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| RecipeError::Parse(e.to_string()))?;
        Recipe::from_value(v)
    }

    /// Reads a recipe file: JSON when it ends in `.json`, else TOML.
    pub fn read(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RecipeError::Io { path: path.display().to_string(), message: e.to_string() })?;
        if path.extension().is_some_and(|e| e == "json") {
            Recipe::parse_json(&text)
        } else {
            Recipe::parse_toml(&text)
        }
    }

    /// The same recipe with every parameter written out (defaults filled in),
    /// checked against the registry.
    pub fn normalized(&self) -> Result<Recipe, RecipeError> {
        let steps =
            self.steps.iter().enumerate().map(|(i, s)| super::steps::normalize(i + 1, s)).collect::<Result<_, _>>()?;
        Ok(Recipe { steps })
    }

    fn to_value(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut m = serde_json::Map::new();
                m.insert("pass".into(), serde_json::Value::String(s.pass.clone()));
                m.extend(s.params.clone());
                serde_json::Value::Object(m)
            })
            .collect();
        serde_json::json!({ "step": steps })
    }

    /// As TOML: one `[[step]]` table per step, its `pass` first.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str("[[step]]\n");
            out.push_str(&format!("pass = {}\n", toml::Value::String(s.pass.clone())));
            out.push_str(&toml::to_string(&serde_json::Value::Object(s.params.clone())).unwrap_or_default());
        }
        out
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }
}

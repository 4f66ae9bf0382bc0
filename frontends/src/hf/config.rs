//! `config.json` access with errors that name the key.

use super::HfError;
use serde_json::Value;

/// A checkpoint's `config.json`.
#[derive(Clone, Debug)]
pub struct Config(pub Value);

impl Config {
    /// Wraps parsed JSON.
    pub fn new(json: Value) -> Config {
        Config(json)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn missing(key: &str) -> HfError {
        HfError::Config { key: key.into(), problem: "is missing".into() }
    }

    fn wrong(key: &str, want: &str, v: &Value) -> HfError {
        HfError::Config { key: key.into(), problem: format!("should be {want}, found {v}") }
    }

    /// A required positive integer.
    pub fn usize(&self, key: &str) -> Result<usize, HfError> {
        let v = self.get(key).ok_or_else(|| Self::missing(key))?;
        v.as_u64().filter(|&n| n > 0).map(|n| n as usize).ok_or_else(|| Self::wrong(key, "a positive integer", v))
    }

    /// An optional positive integer.
    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    /// An optional number, or `default`.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| Self::wrong(key, "a number", v)),
        }
    }

    /// An optional boolean, or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| Self::wrong(key, "true or false", v)),
        }
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<String, HfError> {
        let v = self.get(key).ok_or_else(|| Self::missing(key))?;
        v.as_str().map(str::to_string).ok_or_else(|| Self::wrong(key, "a string", v))
    }

    /// An optional string, or `default`.
    pub fn str_or(&self, key: &str, default: &str) -> Result<String, HfError> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(_) => self.str(key),
        }
    }

    /// A nested object as a config of its own (`rope_scaling`), if present.
    pub fn object(&self, key: &str) -> Result<Option<Config>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_object() => Ok(Some(Config(v.clone()))),
            Some(v) => Err(Self::wrong(key, "an object", v)),
        }
    }

    /// An optional list of numbers.
    pub fn f64s(&self, key: &str) -> Result<Option<Vec<f64>>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
                .map(Some)
                .ok_or_else(|| Self::wrong(key, "a list of numbers", v)),
        }
    }
}

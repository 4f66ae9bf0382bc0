//! `config.json` access with errors that name the key.

use super::HfError;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

/// The largest size a config key may give (2^24: every real vocabulary,
/// width, layer count and context length is below it).
pub const MAX_SIZE: usize = 1 << 24;

/// A checkpoint's `config.json` (or an object inside it); remembers which keys
/// the builders read, so that keys nobody read can be checked afterwards
/// ([`Config::unread`]).
#[derive(Clone, Debug)]
pub struct Config {
    /// The JSON object.
    pub json: Value,
    /// Dotted paths of the keys read, shared with the objects inside.
    read: Rc<RefCell<BTreeSet<String>>>,
    /// This object's path (`rope_parameters.`), empty at the top.
    prefix: String,
}

impl Config {
    /// Wraps parsed JSON.
    pub fn new(json: Value) -> Config {
        Config { json, read: Rc::default(), prefix: String::new() }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.read.borrow_mut().insert(format!("{}{key}", self.prefix));
        self.json.get(key).filter(|v| !v.is_null())
    }

    /// The dotted path of `key` in this object, for messages (`rope_parameters.factor`).
    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Keys present (not null) that no builder read, as dotted paths, sorted;
    /// inside objects that were read as configs, their unread keys.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.borrow();
        let mut out = Vec::new();
        fn walk(v: &Value, prefix: &str, read: &BTreeSet<String>, out: &mut Vec<String>) {
            let Some(o) = v.as_object() else { return };
            for (k, v) in o {
                let path = format!("{prefix}{k}");
                if v.is_null() {
                    continue;
                }
                if !read.contains(&path) {
                    out.push(path);
                } else if v.is_object() && read.iter().any(|r| r.starts_with(&format!("{path}."))) {
                    walk(v, &format!("{path}."), read, out);
                }
            }
        }
        walk(&self.json, &self.prefix, &read, &mut out);
        out.sort();
        out
    }

    /// Whether the key is present with a value other than null (counts as read).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The raw value of a key, if present and not null (counts as read).
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }

    fn missing(&self, key: &str) -> HfError {
        HfError::Config { key: self.path(key), problem: "is missing".into() }
    }

    fn wrong(&self, key: &str, want: &str, v: &Value) -> HfError {
        HfError::Config { key: self.path(key), problem: format!("should be {want}, found {v}") }
    }

    /// A required positive integer, at most [`MAX_SIZE`].
    pub fn usize(&self, key: &str) -> Result<usize, HfError> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        let n = v.as_u64().filter(|&n| n > 0).ok_or_else(|| self.wrong(key, "a positive integer", v))?;
        if n > MAX_SIZE as u64 {
            return Err(HfError::Config {
                key: self.path(key),
                problem: format!("is {n}; ecospac reads sizes up to {MAX_SIZE}"),
            });
        }
        Ok(n as usize)
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
            Some(v) => v.as_f64().ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    /// An optional boolean, or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, HfError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.wrong(key, "true or false", v)),
        }
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<String, HfError> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        v.as_str().map(str::to_string).ok_or_else(|| self.wrong(key, "a string", v))
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
            Some(v) if v.is_object() => Ok(Some(Config {
                json: v.clone(),
                read: Rc::clone(&self.read),
                prefix: format!("{}{key}.", self.prefix),
            })),
            Some(v) => Err(self.wrong(key, "an object", v)),
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
                .ok_or_else(|| self.wrong(key, "a list of numbers", v)),
        }
    }
}

//! `config.json` (and other JSON files) with accessors whose errors name the file and the field.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct JsonConfig {
    path: PathBuf,
    /// dotted prefix of this sub-object inside the file ("" at the top), for error messages
    prefix: String,
    value: Value,
}

impl JsonConfig {
    pub fn read(path: &Path) -> Result<JsonConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::Field {
            path: path.to_path_buf(),
            field: format!("line {} column {}", e.line(), e.column()),
            reason: format!("invalid JSON: {e}"),
        })?;
        if !value.is_object() {
            return Err(Error::field(path, "<top level>", "expected a JSON object"));
        }
        Ok(JsonConfig { path: path.to_path_buf(), prefix: String::new(), value })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::field(&self.path, self.full(key), reason)
    }

    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.raw(key).ok_or_else(|| self.err(key, "missing"))?;
        v.as_u64().map(|x| x as usize).ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {v}")))
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.has(key) {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        let v = self.raw(key).ok_or_else(|| self.err(key, "missing"))?;
        v.as_f64().ok_or_else(|| self.err(key, format!("expected a number, got {v}")))
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        if self.has(key) {
            self.f64(key)
        } else {
            Ok(default)
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(key, format!("expected true or false, got {v}"))),
        }
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        let v = self.raw(key).ok_or_else(|| self.err(key, "missing"))?;
        v.as_str().ok_or_else(|| self.err(key, format!("expected a string, got {v}")))
    }

    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str> {
        if self.has(key) {
            self.str(key)
        } else {
            Ok(default)
        }
    }

    /// First string of the list `key` (e.g. `architectures`), if any.
    pub fn first_str(&self, key: &str) -> Option<&str> {
        self.raw(key)?.as_array()?.first()?.as_str()
    }

    pub fn object(&self, key: &str) -> Result<&Map<String, Value>> {
        let v = self.raw(key).ok_or_else(|| self.err(key, "missing"))?;
        v.as_object().ok_or_else(|| self.err(key, "expected an object"))
    }

    /// The sub-object `key` as its own config (e.g. `vision_config` of a CLIP checkpoint).
    pub fn sub(&self, key: &str) -> Result<JsonConfig> {
        let obj = self.object(key)?;
        Ok(JsonConfig { path: self.path.clone(), prefix: self.full(key), value: Value::Object(obj.clone()) })
    }

    /// A config built in memory (tests, converted checkpoints).
    pub fn from_value(path: &Path, value: Value) -> JsonConfig {
        JsonConfig { path: path.to_path_buf(), prefix: String::new(), value }
    }
}

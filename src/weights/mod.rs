//! Reading Hugging Face checkpoints: `config.json` and `model.safetensors` (or a sharded
//! `model.safetensors.index.json`), memory-mapped.
//!
//! f32 tensors whose data is 4-byte aligned are zero-copy views into the map; f16/bf16 (and unaligned f32) are
//! converted once into owned f32. No weight is ever copied twice.

mod config;
mod safetensors_file;
mod var_builder;

pub use config::JsonConfig;
pub use safetensors_file::{save_safetensors, SafetensorsFile};
pub use var_builder::VarBuilder;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// All tensors of a checkpoint directory, possibly spread over several shards.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<SafetensorsFile>,
    /// tensor name -> index into `shards`
    location: HashMap<String, usize>,
    /// Tensors that replace (or join) the stored ones: an adapter merged into its weights.
    overrides: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Open `dir/model.safetensors`, or the shards listed by `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let shard_paths = if single.exists() {
            vec![single]
        } else if index.exists() {
            shard_paths_from_index(&index)?
        } else {
            return Err(Error::io(
                &single,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json",
                ),
            ));
        };
        let mut shards = Vec::with_capacity(shard_paths.len());
        let mut location = HashMap::new();
        for (i, path) in shard_paths.iter().enumerate() {
            let file = SafetensorsFile::open(path)?;
            for name in file.names() {
                location.insert(name.to_string(), i);
            }
            shards.push(file);
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), shards, location, overrides: HashMap::new() })
    }

    /// The checkpoint with `tensors` in place of the stored tensors of the same names (or beside them).
    pub fn with_overrides(mut self, tensors: Vec<(String, Tensor)>) -> Checkpoint {
        self.overrides.extend(tensors);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name) || self.overrides.contains_key(name)
    }

    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(t) = self.overrides.get(name) {
            return Some(t.shape().to_vec());
        }
        let shard = self.location.get(name)?;
        self.shards[*shard].info(name).map(|i| i.shape.clone())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        let added = self.overrides.keys().filter(|n| !self.location.contains_key(*n));
        self.location.keys().chain(added).map(String::as_str)
    }

    pub fn shards(&self) -> &[SafetensorsFile] {
        &self.shards
    }

    /// The tensor `name` as f32, checked against `expected` shape when given.
    pub fn get(&self, name: &str, expected: Option<&[usize]>) -> Result<Tensor> {
        if let Some(t) = self.overrides.get(name) {
            if expected.is_some_and(|e| e != t.shape()) {
                let why = format!("merged tensor has shape {:?}, expected {expected:?}", t.shape());
                return Err(Error::tensor(&self.dir, name, why));
            }
            return Ok(t.clone());
        }
        let shard = self.location.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.shards.first().map(|s| s.path().to_path_buf()).unwrap_or_else(|| self.dir.clone()),
            tensor: name.to_string(),
        })?;
        self.shards[*shard].get(name, expected)
    }

    /// Total parameter count and the dtypes present, e.g. `(86_567_656, ["F32"])`.
    pub fn summary(&self) -> (usize, Vec<String>) {
        let mut params = 0;
        let mut dtypes: Vec<String> = Vec::new();
        for shard in &self.shards {
            for name in shard.names() {
                let info = shard.info(name).expect("name listed by the shard");
                params += info.shape.iter().product::<usize>();
                let dtype = format!("{:?}", info.dtype);
                if !dtypes.contains(&dtype) {
                    dtypes.push(dtype);
                }
            }
        }
        (params, dtypes)
    }

    /// Tensors of this checkpoint on the CPU.
    pub fn var_builder(&self) -> VarBuilder<'_> {
        VarBuilder::new(self, crate::Device::Cpu)
    }

    /// Tensors of this checkpoint uploaded to `device` as they are read.
    pub fn var_builder_on(&self, device: &crate::Device) -> VarBuilder<'_> {
        VarBuilder::new(self, device.clone())
    }
}

fn shard_paths_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    let cfg = JsonConfig::read(index)?;
    let map = cfg.object("weight_map")?;
    let mut files: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file =
            file.as_str().ok_or_else(|| Error::field(index, format!("weight_map.{tensor}"), "expected a file name"))?;
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    files.sort();
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Fills a fresh staging directory beside `dir` with `fill`, then puts it in `dir`'s place: a failed or
/// interrupted write leaves what `dir` held whole (a checkpoint or adapter is never half-written).
pub fn replace_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staging = dir.with_extension("saving");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    fill(&staging)?;
    let previous = dir.with_extension("previous");
    if dir.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
        }
        std::fs::rename(dir, &previous).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| Error::io(dir, e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
    }
    Ok(())
}

/// `value` as pretty-printed JSON with a final newline.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over `path`: a reader,
/// or a run resumed after a kill, sees the old content or the new, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let temp = path.with_file_name(name);
    let mut file = std::fs::File::create(&temp).map_err(|e| Error::io(&temp, e))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| Error::io(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))
}

//! Prefix-scoped access to a checkpoint, so that model structs mirror the checkpoint's key tree
//! (`vb.pp("encoder").pp("layer").pp(i)`).

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

use super::Checkpoint;

/// Tensors come out on `device` in its storage dtype (bf16 on a GPU), uploaded once at load.
#[derive(Clone)]
pub struct VarBuilder<'a> {
    checkpoint: &'a Checkpoint,
    prefix: String,
    device: Device,
}

impl<'a> VarBuilder<'a> {
    pub(super) fn new(checkpoint: &'a Checkpoint, device: Device) -> Self {
        VarBuilder { checkpoint, prefix: String::new(), device }
    }

    /// Push a path component (`pp` = "push prefix").
    pub fn pp(&self, name: impl std::fmt::Display) -> VarBuilder<'a> {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        VarBuilder { checkpoint: self.checkpoint, prefix, device: self.device.clone() }
    }

    /// The same scope reading onto the CPU (for weights that are combined before they are uploaded).
    pub fn on_cpu(&self) -> VarBuilder<'a> {
        VarBuilder { checkpoint: self.checkpoint, prefix: self.prefix.clone(), device: Device::Cpu }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.checkpoint.contains(&self.path(name))
    }

    /// Shape of `prefix.name` as stored, if present.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.checkpoint.shape_of(&self.path(name))
    }

    /// The tensor `prefix.name` with exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.checkpoint.get(&self.path(name), Some(shape))?;
        t.to_device_as(&self.device, self.device.storage_dtype())
    }

    /// The first of several spellings that exists (checkpoints on disk and newer in-memory names differ,
    /// e.g. `attention.attention.query` vs `attention.q_proj`). The error names the first spelling.
    pub fn get_any(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        for name in names {
            if self.contains(name) {
                return self.get(name, shape);
            }
        }
        Err(Error::MissingTensor {
            path: self.checkpoint.shards().first().map(|s| s.path().to_path_buf()).unwrap_or_default(),
            tensor: names.iter().map(|n| self.path(n)).collect::<Vec<_>>().join("` or `"),
        })
    }

    /// Like `get` but `None` when absent (optional biases, poolers).
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

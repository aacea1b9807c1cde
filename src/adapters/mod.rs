//! Adapters: the few parameters that are trained while the backbone stays frozen. `peft` reads and places
//! LoRA adapters (and the heads saved beside them) in peft's own format, so Python users can share them;
//! `coop` keeps CoOp's learned prompt context.

pub mod coop;
pub mod init;
pub mod peft;

use std::path::Path;

pub use coop::CoopAdapter;
pub use init::{fresh_classifier, fresh_lora};
pub use peft::{LoraAdapter, LoraConfig, PEFT_PREFIX};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Writes `adapter_model.safetensors` (f32) and the config file `config_name` into `dir`, replacing what was
/// there only once both are complete: a failed or interrupted save leaves the previous adapter whole.
pub(crate) fn write_adapter_dir(
    dir: &Path,
    tensors: &[(String, Tensor)],
    config_name: &str,
    config: &serde_json::Value,
) -> Result<()> {
    let staging = dir.with_extension("saving");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    crate::weights::save_safetensors(&staging.join("adapter_model.safetensors"), &named, None)?;
    let config_path = staging.join(config_name);
    let text = serde_json::to_string_pretty(config).expect("JSON values serialise") + "\n";
    std::fs::write(&config_path, text).map_err(|e| Error::io(&config_path, e))?;
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

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

use crate::error::Result;
use crate::tensor::Tensor;

/// Writes `adapter_model.safetensors` (f32) and the config file `config_name` into `dir`, replacing what was
/// there only once both are complete: a failed or interrupted save leaves the previous adapter whole.
pub(crate) fn write_adapter_dir(
    dir: &Path,
    tensors: &[(String, Tensor)],
    config_name: &str,
    config: &serde_json::Value,
) -> Result<()> {
    crate::weights::replace_dir(dir, |staging| {
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::weights::save_safetensors(&staging.join("adapter_model.safetensors"), &named, None)?;
        crate::weights::write_json(&staging.join(config_name), config)
    })
}

//! A CoOp adapter on disk: the context `prompt_learner.ctx` (`[C, n_ctx, D]` class-specific, or `[n_ctx, D]`
//! shared) in `adapter_model.safetensors`, and `coop_config.json` with the class names and prompt layout.

use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::{JsonConfig, SafetensorsFile};

/// The tensor's name, as CoOp's reference code names the parameter.
pub const CONTEXT: &str = "prompt_learner.ctx";
const CONFIG: &str = "coop_config.json";

#[derive(Clone, Debug)]
pub struct CoopAdapter {
    pub classnames: Vec<String>,
    pub n_ctx: usize,
    pub class_specific: bool,
    pub ctx: Tensor,
}

impl CoopAdapter {
    pub fn load(dir: &Path) -> Result<CoopAdapter> {
        let config_path = dir.join(CONFIG);
        let cfg = JsonConfig::read(&config_path)?;
        let classnames: Vec<String> = match cfg.raw("classnames").and_then(|v| v.as_array()) {
            Some(items) => items.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
            None => return Err(Error::field(&config_path, "classnames", "expected a list of class names")),
        };
        let (n_ctx, class_specific) = (cfg.usize("n_ctx")?, cfg.bool_or("class_specific", false)?);
        let file = dir.join("adapter_model.safetensors");
        let ctx = SafetensorsFile::open(&file)?.get(CONTEXT, None)?;
        let want: Vec<usize> = if class_specific { vec![classnames.len(), n_ctx] } else { vec![n_ctx] };
        if ctx.rank() != want.len() + 1 || ctx.shape()[..want.len()] != want[..] {
            let why = format!(
                "shape {:?} for {} classes and n_ctx {n_ctx} (class_specific {class_specific})",
                ctx.shape(),
                classnames.len()
            );
            return Err(Error::tensor(&file, CONTEXT, why));
        }
        Ok(CoopAdapter { classnames, n_ctx, class_specific, ctx })
    }

    /// Writes the adapter into `dir`, replacing the previous one only when complete.
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        let config = serde_json::json!({
            "method": "coop",
            "base_model_name_or_path": base_model,
            "n_ctx": self.n_ctx,
            "class_specific": self.class_specific,
            "class_token_position": "end",
            "classnames": self.classnames,
        });
        super::write_adapter_dir(dir, &[(CONTEXT.to_string(), self.ctx.clone())], CONFIG, &config)
    }
}

//! LoRA adapters in peft's format: `adapter_config.json` (r, lora_alpha, target_modules, use_rslora,
//! lora_dropout, modules_to_save) and `adapter_model.safetensors`, whose keys are
//! `base_model.model.<module path>.lora_A.weight` / `.lora_B.weight` and, for a head kept whole,
//! `base_model.model.classifier.weight` / `.bias`. peft's in-memory spellings (`.lora_A.default.weight`,
//! `classifier.modules_to_save.default.weight`) are read too.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::models::{Model, Tower};
use crate::nn::LoraSite;
use crate::ops::{LoraDropout, LoraTerm};
use crate::tensor::Tensor;
use crate::weights::{JsonConfig, SafetensorsFile};

/// What peft puts before every module path.
pub const PEFT_PREFIX: &str = "base_model.model.";

#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f32,
    pub target_modules: Vec<String>,
    pub rslora: bool,
    pub dropout: f32,
    pub modules_to_save: Vec<String>,
}

impl LoraConfig {
    /// `adapter_config.json`; a field that is missing or of the wrong type is an error naming it.
    pub fn read(path: &Path) -> Result<LoraConfig> {
        let cfg = JsonConfig::read(path)?;
        let peft_type = cfg.str_or("peft_type", "LORA")?;
        if peft_type != "LORA" {
            return Err(Error::field(path, "peft_type", format!("{peft_type}: only LORA adapters are read")));
        }
        let r = cfg.usize("r")?;
        if r == 0 {
            return Err(Error::field(path, "r", "the rank must be at least 1"));
        }
        Ok(LoraConfig {
            r,
            alpha: cfg.f64("lora_alpha")? as f32,
            target_modules: string_list(&cfg, path, "target_modules")?,
            rslora: cfg.bool_or("use_rslora", false)?,
            dropout: cfg.f64_or("lora_dropout", 0.0)? as f32,
            modules_to_save: string_list(&cfg, path, "modules_to_save")?,
        })
    }

    /// The fields peft reads (the ones it writes for a plain LoRA adapter).
    pub fn to_json(&self, base_model: &str) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": null,
            "base_model_name_or_path": base_model,
            "r": self.r,
            "lora_alpha": self.alpha,
            "target_modules": self.target_modules,
            "lora_dropout": self.dropout,
            "use_rslora": self.rslora,
            "modules_to_save": if self.modules_to_save.is_empty() { serde_json::Value::Null } else { self.modules_to_save.clone().into() },
            "bias": "none",
            "fan_in_fan_out": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "use_dora": false,
        })
    }

    /// The factor of B·A: α/r, or α/√r with rsLoRA.
    pub fn scale(&self) -> f32 {
        if self.rslora {
            self.alpha / (self.r as f32).sqrt()
        } else {
            self.alpha / self.r as f32
        }
    }
}

/// A list of strings, a single string (peft allows one), or null/absent (empty).
fn string_list(cfg: &JsonConfig, path: &Path, field: &str) -> Result<Vec<String>> {
    match cfg.raw(field) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| Error::field(path, field, "expected strings")))
            .collect(),
        Some(_) => Err(Error::field(path, field, "expected a list of module names")),
    }
}

/// An adapter: its config and every tensor under its on-disk name, sorted by name as peft's files are.
pub struct LoraAdapter {
    /// Where the tensors came from, for errors (a file, or a description of a fresh adapter).
    pub source: PathBuf,
    pub config: LoraConfig,
    pub tensors: Vec<(String, Tensor)>,
}

/// Where one adapter tensor goes.
#[derive(Debug, PartialEq)]
enum Place {
    Lora { tower: Tower, layer: usize, site: LoraSite, factor: Factor },
    Classifier { bias: bool },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Factor {
    A,
    B,
}

impl LoraAdapter {
    pub fn load(dir: &Path) -> Result<LoraAdapter> {
        let config = LoraConfig::read(&dir.join("adapter_config.json"))?;
        let file = SafetensorsFile::open(&dir.join("adapter_model.safetensors"))?;
        let mut names: Vec<&str> = file.names().collect();
        names.sort();
        let tensors = names.into_iter().map(|n| Ok((n.to_string(), file.get(n, None)?))).collect::<Result<_>>()?;
        Ok(LoraAdapter { source: dir.join("adapter_model.safetensors"), config, tensors })
    }

    /// A new adapter for `model` (`adapters::fresh_lora`), plus a new head for `labels` classes when given.
    pub fn fresh(model: &mut Model, config: LoraConfig, labels: Option<usize>, seed: u64) -> Result<LoraAdapter> {
        let mut tensors = super::init::fresh_lora(model, &config, labels.is_some(), seed)?;
        if let Some(labels) = labels {
            tensors.extend(super::init::fresh_classifier(model.pooled_features()?, labels, seed)?);
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(LoraAdapter { source: PathBuf::from("(new adapter)"), config, tensors })
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (f32) into `dir`, replacing what was there
    /// only once both are complete: a failed or interrupted save leaves the previous adapter whole.
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        super::write_adapter_dir(dir, &self.tensors, "adapter_config.json", &self.config.to_json(base_model))
    }

    /// Puts every tensor into `model`: LoRA factors onto their encoder linears, a saved classifier as the head.
    /// With `trainable` each becomes a variable. Returns the placed tensors by on-disk name, in this adapter's
    /// order (what an optimiser updates and `backward` gives gradients for).
    pub fn attach(&self, model: &mut Model, trainable: bool) -> Result<Vec<(String, Tensor)>> {
        let placed: Vec<(String, Tensor)> =
            self.tensors.iter().map(|(n, t)| (n.clone(), if trainable { t.variable() } else { t.clone() })).collect();
        self.place(model, &placed, None)?;
        Ok(placed)
    }

    /// Puts `placed` (this adapter's tensors by name, e.g. variables for a training step) into `model`; with
    /// `dropout_seed`, the config's LoRA dropout is on, with masks drawn from that seed.
    pub fn place(&self, model: &mut Model, placed: &[(String, Tensor)], dropout_seed: Option<u64>) -> Result<()> {
        let file = &self.source;
        let get = |name: &str| placed.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
        let mut classifier = (None, None);
        for (index, (name, tensor)) in placed.iter().enumerate() {
            let dropout = dropout_seed.filter(|_| self.config.dropout > 0.0).map(|seed| LoraDropout {
                p: self.config.dropout,
                seed: seed.wrapping_mul(0x100_0000_01B3).wrapping_add(index as u64),
            });
            match place(name).map_err(|why| Error::tensor(file, name, why))? {
                Place::Lora { factor: Factor::B, .. } => {} // placed with its A
                Place::Lora { tower, layer, site, factor: Factor::A } => {
                    let b_name = name.replacen("lora_A", "lora_B", 1);
                    let b = get(&b_name).ok_or_else(|| Error::tensor(file, &b_name, "lora_A without its lora_B"))?;
                    let encoder = model
                        .encoder_mut(tower)
                        .ok_or_else(|| Error::tensor(file, name, format!("the model has no {tower:?} tower")))?;
                    let term = LoraTerm { start: 0, a: tensor.clone(), b, scale: self.config.scale(), dropout };
                    encoder.add_lora(layer, site, term).map_err(|e| Error::tensor(file, name, e.to_string()))?;
                }
                Place::Classifier { bias: false } => classifier.0 = Some(tensor.clone()),
                Place::Classifier { bias: true } => classifier.1 = Some(tensor.clone()),
            }
        }
        if let (Some(weight), bias) = classifier {
            model.set_classifier(weight, bias).map_err(|e| Error::tensor(file, "classifier.weight", e.to_string()))?;
        }
        Ok(())
    }
}

/// The place of an adapter tensor named as peft saves it (or holds it in memory).
fn place(name: &str) -> std::result::Result<Place, String> {
    let path = name.strip_prefix(PEFT_PREFIX).ok_or_else(|| format!("expected a name starting with {PEFT_PREFIX}"))?;
    let path = path.replace(".default.", ".").replace(".modules_to_save.", ".");
    for (suffix, factor) in [(".lora_A.weight", Factor::A), (".lora_B.weight", Factor::B)] {
        if let Some(module) = path.strip_suffix(suffix) {
            let (tower, layer, site) = module_site(module)?;
            return Ok(Place::Lora { tower, layer, site, factor });
        }
    }
    match path.as_str() {
        "classifier.weight" => Ok(Place::Classifier { bias: false }),
        "classifier.bias" => Ok(Place::Classifier { bias: true }),
        _ => Err("not a LoRA factor or a saved classifier".to_string()),
    }
}

/// (tower, block, linear) of a module path such as `dinov2.encoder.layer.3.attention.q_proj` or
/// `text_model.encoder.layers.0.self_attn.v_proj`.
fn module_site(module: &str) -> std::result::Result<(Tower, usize, LoraSite), String> {
    let parts: Vec<&str> = module.split('.').collect();
    let at = parts
        .iter()
        .position(|p| *p == "layer" || *p == "layers")
        .ok_or_else(|| format!("no encoder layer in module {module}"))?;
    let layer = parts.get(at + 1).and_then(|p| p.parse().ok()).ok_or_else(|| format!("no layer number in {module}"))?;
    let tower = if parts[..at].contains(&"text_model") { Tower::Text } else { Tower::Vision };
    let within = parts[at + 2..].join(".");
    let site = match within.as_str() {
        s if s.ends_with("q_proj") || s.ends_with("attention.query") => LoraSite::Query,
        s if s.ends_with("k_proj") || s.ends_with("attention.key") => LoraSite::Key,
        s if s.ends_with("v_proj") || s.ends_with("attention.value") => LoraSite::Value,
        s if s.ends_with("out_proj") || s.ends_with("o_proj") || s == "attention.output.dense" => LoraSite::Out,
        s if s.ends_with("fc1") || s == "intermediate.dense" => LoraSite::Fc1,
        s if s.ends_with("fc2") || s == "output.dense" => LoraSite::Fc2,
        _ => return Err(format!("no LoRA site for module {module}")),
    };
    Ok((tower, layer, site))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_their_places() {
        let lora = |tower, layer, site, factor| Ok(Place::Lora { tower, layer, site, factor });
        let cases = [
            (
                "base_model.model.dinov2.encoder.layer.1.attention.k_proj.lora_A.weight",
                lora(Tower::Vision, 1, LoraSite::Key, Factor::A),
            ),
            (
                "base_model.model.vit.encoder.layer.0.attention.attention.query.lora_B.weight",
                lora(Tower::Vision, 0, LoraSite::Query, Factor::B),
            ),
            (
                "base_model.model.text_model.encoder.layers.11.self_attn.v_proj.lora_A.default.weight",
                lora(Tower::Text, 11, LoraSite::Value, Factor::A),
            ),
            (
                "base_model.model.vision_model.encoder.layers.2.mlp.fc2.lora_B.weight",
                lora(Tower::Vision, 2, LoraSite::Fc2, Factor::B),
            ),
            (
                "base_model.model.vit.encoder.layer.4.attention.output.dense.lora_A.weight",
                lora(Tower::Vision, 4, LoraSite::Out, Factor::A),
            ),
            (
                "base_model.model.vit.encoder.layer.4.output.dense.lora_A.weight",
                lora(Tower::Vision, 4, LoraSite::Fc2, Factor::A),
            ),
            ("base_model.model.classifier.modules_to_save.default.bias", Ok(Place::Classifier { bias: true })),
            ("base_model.model.classifier.weight", Ok(Place::Classifier { bias: false })),
        ];
        for (name, want) in cases {
            assert_eq!(place(name), want, "{name}");
        }
        for bad in ["classifier.weight", "base_model.model.vit.pooler.dense.lora_A.weight", "base_model.model.x.y"] {
            assert!(place(bad).is_err(), "{bad}");
        }
    }
}

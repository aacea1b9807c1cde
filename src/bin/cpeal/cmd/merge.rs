//! `cpeal merge`: a peft adapter merged into its checkpoint, written as a plain Hugging Face checkpoint
//! (W + scale·B·A for every adapted weight, the saved head as the classifier), which cpeal, transformers or any
//! other reader loads without peft, on any device.

use std::path::{Path, PathBuf};

use cpeal::adapters::LoraAdapter;
use cpeal::models::Model;
use cpeal::weights::{replace_dir, save_safetensors, write_json, Checkpoint};
use cpeal::{Error, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// the checkpoint the adapter was trained on
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub adapter: PathBuf,
    /// the merged checkpoint's directory (config.json, model.safetensors and the preprocessing files)
    #[arg(long)]
    pub out: PathBuf,
}

/// The model class with a head, and the prefix its backbone's tensors take, for a base class.
const WITH_HEAD: [(&str, &str, &str); 3] = [
    ("ViTModel", "ViTForImageClassification", "vit"),
    ("Dinov2Model", "Dinov2ForImageClassification", "dinov2"),
    ("Dinov2WithRegistersModel", "Dinov2WithRegistersForImageClassification", "dinov2_with_registers"),
];

pub fn run(args: &Args) -> cpeal::Result<()> {
    let adapter = LoraAdapter::load(&args.adapter)?;
    let mut model = Model::load(&args.model)?;
    adapter.attach(&mut model, false)?;
    let merged = model.merged_weights()?;
    let config_path = args.model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?)
            .map_err(|e| Error::field(&config_path, "(file)", e.to_string()))?;
    let classes = merged.iter().find(|(n, _)| n == "classifier.weight").map(|(_, w)| w.shape()[0]);
    let prefix = match classes {
        Some(classes) => with_head(&mut config, classes),
        None => None,
    };
    let ckpt = Checkpoint::open(&args.model)?;
    replace_dir(&args.out, |staging| {
        write_tensors(&ckpt, merged, prefix.as_deref(), &staging.join("model.safetensors"))?;
        write_json(&staging.join("config.json"), &config)?;
        for extra in ["preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"]
        {
            if args.model.join(extra).exists() {
                std::fs::copy(args.model.join(extra), staging.join(extra))
                    .map_err(|e| Error::io(args.model.join(extra), e))?;
            }
        }
        Ok(())
    })?;
    eprintln!("merged checkpoint written to {}", args.out.display());
    Ok(())
}

/// Turns a base model's config into its image-classification class with `classes` labels; returns the prefix
/// the backbone's tensors take in that class (none when the checkpoint already was one).
fn with_head(config: &mut serde_json::Value, classes: usize) -> Option<String> {
    let arch = config["architectures"][0].as_str().unwrap_or_default().to_string();
    let (mut id2label, mut label2id) = (serde_json::Map::new(), serde_json::Map::new());
    for i in 0..classes {
        id2label.insert(i.to_string(), format!("LABEL_{i}").into());
        label2id.insert(format!("LABEL_{i}"), i.into());
    }
    config["id2label"] = id2label.into();
    config["label2id"] = label2id.into();
    let (_, class, prefix) = WITH_HEAD.iter().find(|(base, _, _)| *base == arch)?;
    config["architectures"] = serde_json::json!([class]);
    Some(prefix.to_string())
}

/// Every tensor of `ckpt`, the merged ones in place of theirs; the backbone's under `prefix` when given.
fn write_tensors(
    ckpt: &Checkpoint,
    merged: Vec<(String, Tensor)>,
    prefix: Option<&str>,
    path: &Path,
) -> cpeal::Result<()> {
    let mut names: Vec<String> = ckpt.names().map(String::from).collect();
    names.sort();
    let overrides: std::collections::HashMap<String, Tensor> = merged.into_iter().collect();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for name in names.iter().filter(|n| !n.starts_with("classifier.")) {
        let t = match overrides.get(name) {
            Some(t) => t.clone(),
            None => ckpt.get(name, None)?,
        };
        tensors.push((prefix.map_or_else(|| name.clone(), |p| format!("{p}.{name}")), t));
    }
    for (name, t) in overrides.iter().filter(|(n, _)| n.starts_with("classifier.")) {
        tensors.push((name.clone(), t.clone()));
    }
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    save_safetensors(path, &named, None)
}

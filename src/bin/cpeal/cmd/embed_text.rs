//! `cpeal embed-text`: CLIP text embeddings (`text_embeds` [N, P]) for strings or a file of lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cpeal::models::Model;
use cpeal::tokenizer::ClipTokenizer;
use cpeal::weights::save_safetensors;
use cpeal::{Device, DeviceKind, Error, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// CLIP checkpoint directory with tokenizer.json
    #[arg(long)]
    pub model: PathBuf,
    /// texts to embed
    #[arg(long, num_args = 1.., required_unless_present = "text_file", conflicts_with = "text_file")]
    pub text: Vec<String>,
    /// a file with one text per line (empty lines skipped)
    #[arg(long)]
    pub text_file: Option<PathBuf>,
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let texts = match &args.text_file {
        Some(file) => read_lines(file)?,
        None => args.text.clone(),
    };
    let device = Device::open(args.device)?;
    let model = Model::load_on(&args.model, &device)?;
    let embeds = embed_texts(&model, &args.model, &texts)?;
    let meta = HashMap::from([("texts".to_string(), serde_json::to_string(&texts).unwrap_or_default())]);
    save_safetensors(&args.output, &[("text_embeds", &embeds)], Some(meta))?;
    eprintln!("wrote {} ({} texts)", args.output.display(), texts.len());
    Ok(())
}

/// Projected text embeddings of `texts` (unit-norm for a full CLIPModel).
pub fn embed_texts(model: &Model, model_dir: &Path, texts: &[String]) -> cpeal::Result<Tensor> {
    let clip = model
        .clip()
        .ok_or_else(|| Error::invalid(model_dir.display().to_string(), "not a CLIP checkpoint: no text tower"))?;
    let tokenizer = ClipTokenizer::from_dir(model_dir)?;
    let ids = tokenizer.encode_batch(texts)?;
    clip.forward_texts(&ids)?
        .text_embeds
        .ok_or_else(|| Error::invalid(model_dir.display().to_string(), "checkpoint has no text_projection"))
}

pub fn read_lines(file: &Path) -> cpeal::Result<Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if lines.is_empty() {
        return Err(Error::invalid(file.display().to_string(), "no non-empty lines"));
    }
    Ok(lines)
}

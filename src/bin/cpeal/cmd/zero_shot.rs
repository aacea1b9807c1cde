//! `cpeal zero-shot`: CLIP zero-shot classification. Each class name fills the prompt template; each image
//! gets the class with the highest softmax(exp(logit_scale)·cos) probability. CSV: path,class,probability.

use std::io::Write;
use std::path::PathBuf;

use cpeal::models::Model;
use cpeal::{Device, DeviceKind, Error};

use super::{embed_images, embed_text};

#[derive(clap::Args)]
pub struct Args {
    /// CLIPModel checkpoint directory (both towers, tokenizer.json)
    #[arg(long)]
    pub model: PathBuf,
    /// image files or folders
    #[arg(long, num_args = 1.., required = true)]
    pub images: Vec<PathBuf>,
    /// one class name per line
    #[arg(long)]
    pub classnames: PathBuf,
    #[arg(long, default_value = "a photo of a {}.")]
    pub template: String,
    /// write the CSV here instead of standard output
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    if !args.template.contains("{}") {
        return Err(Error::invalid("--template", format!("`{}` has no {{}} for the class name", args.template)));
    }
    let classes = embed_text::read_lines(&args.classnames)?;
    let device = Device::open(args.device)?;
    let model = Model::load_on(&args.model, &device)?;
    let clip = model.clip().ok_or_else(|| Error::invalid(args.model.display().to_string(), "not a CLIP checkpoint"))?;
    let prompts: Vec<String> = classes.iter().map(|c| args.template.replace("{}", c)).collect();
    let text = embed_text::embed_texts(&model, &args.model, &prompts)?;
    let (files, images) = embed_images::embed_paths(&model, &args.model, &device, &args.images, args.batch_size)?;
    let logits = clip.logits_per_image(&images, &text)?.to_vec()?;
    let mut csv = String::from("path,class,probability\n");
    for (file, row) in files.iter().zip(logits.chunks(classes.len())) {
        let (best, prob) = argmax_softmax(row);
        csv.push_str(&format!("{},{},{prob:.6}\n", csv_field(&file.display().to_string()), csv_field(&classes[best])));
    }
    match &args.output {
        Some(path) => std::fs::write(path, csv).map_err(|e| Error::io(path, e)),
        None => std::io::stdout().write_all(csv.as_bytes()).map_err(|e| Error::io("<stdout>", e)),
    }
}

/// Index of the largest logit and its softmax probability.
fn argmax_softmax(row: &[f32]) -> (usize, f32) {
    let (best, max) =
        row.iter().enumerate().fold((0, f32::NEG_INFINITY), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
    let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    (best, (1.0 / sum) as f32)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

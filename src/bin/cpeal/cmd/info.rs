//! `cpeal info --model DIR`: architecture, sizes, parameter count and dtype of a checkpoint.

use std::path::PathBuf;

use cpeal::models::{architecture, Model};
use cpeal::nn::EncoderConfig;
use cpeal::weights::{Checkpoint, JsonConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face checkpoint directory (config.json + model.safetensors)
    #[arg(long)]
    pub model: PathBuf,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let config = JsonConfig::read(&args.model.join("config.json"))?;
    let (params, dtypes) = Checkpoint::open(&args.model)?.summary();
    let model = Model::load(&args.model)?;
    println!("architecture: {}", architecture(&config)?);
    println!("model_type:   {}", config.str_or("model_type", "?")?);
    match &model {
        Model::Vit(m) => tower("vision", &m.encoder_config, Some(m.image_size)),
        Model::Dinov2(m) => tower("vision", &m.encoder_config, Some(m.image_size)),
        Model::Clip(c) => {
            if let Some(v) = &c.vision {
                tower("vision", &v.encoder_config, Some(v.image_size));
            }
            if let Some(t) = &c.text {
                tower("text", &t.encoder_config, None);
            }
        }
    }
    println!("parameters:   {params} ({:.1} M)", params as f64 / 1e6);
    println!("dtype:        {}", dtypes.join(", "));
    Ok(())
}

fn tower(name: &str, c: &EncoderConfig, image_size: Option<usize>) {
    let image = image_size.map(|s| format!(", image {s}px")).unwrap_or_default();
    println!(
        "{name:<6} tower: hidden {}, layers {}, heads {}, mlp {}, {:?}{image}",
        c.hidden, c.layers, c.heads, c.intermediate, c.activation
    );
}

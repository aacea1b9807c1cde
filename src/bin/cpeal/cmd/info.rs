//! `cpeal info --model DIR`: what a checkpoint holds.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face checkpoint directory (config.json + model.safetensors)
    #[arg(long)]
    pub model: PathBuf,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let ckpt = cpeal::weights::Checkpoint::open(&args.model)?;
    println!("tensors: {}", ckpt.names().count());
    Ok(())
}

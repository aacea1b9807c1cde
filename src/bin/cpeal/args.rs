//! The clap types of every subcommand, gathered in one enum. Each subcommand's own flags live beside its code
//! in `cmd/<name>.rs`.

use clap::{Parser, Subcommand};

use crate::cmd;

#[derive(Parser)]
#[command(name = "cpeal", version, about = "Parameter-efficient active learning with uncertainty calibration")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Architecture, sizes, parameter count and dtype of a Hugging Face checkpoint.
    Info(cmd::info::Args),
    /// Choose the next samples to label from a pool's logits and/or features.
    Select(cmd::select::Args),
}

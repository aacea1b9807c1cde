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
    /// Compile every GPU kernel with NVRTC (sm_80, sm_90); fail on compile errors or register spills.
    NvrtcCheck(cmd::nvrtc_check::Args),
    /// Run every GPU kernel against its CPU reference on random inputs.
    Selftest(cmd::selftest::Args),
    /// Time the GPU kernels on ViT-B shapes.
    BenchKernels(cmd::bench_kernels::Args),
}

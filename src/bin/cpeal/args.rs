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
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Architecture, sizes, parameter count and dtype of a Hugging Face checkpoint.
    Info(cmd::info::Args),
    /// Image features (`last_hidden_state`, `pooler_output`, `image_embeds`) from a checkpoint.
    Embed(cmd::embed::Args),
    /// CLIP text embeddings (`text_embeds`).
    EmbedText(cmd::embed_text::Args),
    /// CLIP zero-shot classification of images as CSV (path, class, probability).
    ZeroShot(cmd::zero_shot::Args),
    /// Time whole-model forwards.
    Bench(cmd::bench::Args),
    /// Convert an exported DINOv2 ONNX graph into a Hugging Face Dinov2Model checkpoint.
    ConvertOnnxDinov2(cmd::convert::Args),
    /// Compile every GPU kernel with NVRTC (sm_80, sm_90); fail on compile errors or register spills.
    NvrtcCheck(cmd::nvrtc_check::Args),
    /// Run every GPU kernel against its CPU reference on random inputs.
    Selftest(cmd::selftest::Args),
    /// Time the GPU kernels on ViT-B shapes.
    BenchKernels(cmd::bench_kernels::Args),
    /// Choose the next samples to label from a pool's logits and/or features.
    Select(cmd::select::Args),
    /// Train a LoRA adapter and classification head with the calibration loss; writes it in peft's format.
    Train(cmd::train::Args),
    /// Run (or resume) an active-learning experiment from a TOML config: arms × seeds × rounds, with reports.
    Run(cmd::run::Args),
    /// Accuracy and calibration (ECE, NLL, Brier, error AUROC of the entropy) of a classifier on a batch file.
    Eval(cmd::eval::Args),
    /// Merge a peft adapter into its checkpoint, giving a plain Hugging Face checkpoint.
    Merge(cmd::merge::Args),
}

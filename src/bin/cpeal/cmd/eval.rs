//! `cpeal eval`: accuracy and calibration (ECE over 15 bins, NLL, Brier, AUROC of the entropy at telling wrong
//! predictions from right ones) of an image classifier, optionally with a peft adapter, or of CLIP with a CoOp
//! adapter's prompts, on labelled images.

use std::path::PathBuf;

use cpeal::adapters::{CoopAdapter, LoraAdapter};
use cpeal::metrics;
use cpeal::models::Model;
use cpeal::progress::Progress;
use cpeal::tokenizer::ClipTokenizer;
use cpeal::train::coop;
use cpeal::{Device, DeviceKind, Error, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// ViT or DINOv2 checkpoint directory (with a classification head, or an adapter that brings one)
    #[arg(long)]
    pub model: PathBuf,
    /// a peft adapter to merge into the model (LoRA factors and the saved classifier)
    #[arg(long, conflicts_with = "coop")]
    pub adapter: Option<PathBuf>,
    /// a CoOp adapter (`cpeal train --method coop`) for a CLIP checkpoint: its classes and learned prompts
    #[arg(long)]
    pub coop: Option<PathBuf>,
    #[command(flatten)]
    pub data: super::labelled::Source,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// print the metrics as one JSON object
    #[arg(long)]
    pub json: bool,
    /// the adapter is merged into the weights first, so it runs on any device
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceKind,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let device = Device::open(args.device)?;
    if let Some(dir) = &args.coop {
        return eval_coop(args, dir, &device);
    }
    let model = match &args.adapter {
        Some(dir) => Model::load_merged(&args.model, &device, &LoraAdapter::load(dir)?)?,
        None => Model::load_on(&args.model, &device)?,
    };
    let (images, labels) = args.data.read(&model, &args.model)?;
    report(&model, &device, &images, &labels, args.batch_size, args.data.path(), args.json)
}

/// Evaluates `model` on `images` and `labels` (read from `data`) and prints the metrics: one JSON object on
/// standard output, or a line.
pub fn report(
    model: &Model,
    device: &Device,
    images: &Tensor,
    labels: &[usize],
    batch_size: usize,
    data: &std::path::Path,
    json: bool,
) -> cpeal::Result<()> {
    let logits = classify(model, images, batch_size.max(1), device)?;
    print_metrics(&logits, labels, data, json)
}

/// CLIP with a CoOp adapter: the class prompts' embeddings with the learned context (on the CPU: C prompts),
/// the images' on `device`, and exp(logit_scale)·cos between them.
fn eval_coop(args: &Args, dir: &std::path::Path, device: &Device) -> cpeal::Result<()> {
    let adapter = CoopAdapter::load(dir)?;
    let cpu = Model::load(&args.model)?;
    let not_clip = || Error::invalid(args.model.display().to_string(), "--coop needs a CLIP checkpoint");
    let clip = cpu.clip().ok_or_else(not_clip)?;
    let prompts = coop::prompt_ids(&ClipTokenizer::from_dir(&args.model)?, &adapter.classnames, adapter.n_ctx)?;
    let no_projection = || Error::invalid("eval", "the CLIP checkpoint lacks a projection");
    let text = clip.forward_prompts(&prompts, &adapter.ctx, 1)?.text_embeds.ok_or_else(no_projection)?;
    let on_device = match device {
        Device::Cpu => None,
        _ => Some(Model::load_on(&args.model, device)?),
    };
    let model = on_device.as_ref().unwrap_or(&cpu);
    let (images, labels) = args.data.read(model, &args.model)?;
    let embeds = coop::encode_images(model.clip().ok_or_else(not_clip)?, &images, args.batch_size, device)?;
    let logits = clip.logits_per_image(&embeds, &text)?.to_vec()?;
    print_metrics(&logits, &labels, args.data.path(), args.json)
}

fn print_metrics(logits: &[f32], labels: &[usize], data: &std::path::Path, json: bool) -> cpeal::Result<()> {
    let classes = logits.len() / labels.len().max(1);
    let m = metrics::evaluate(logits, classes, labels).map_err(|e| Error::tensor(data, "labels", e.to_string()))?;
    if json {
        println!("{}", m.json());
    } else {
        let auroc = m.error_auroc.map_or("n/a".to_string(), |a| format!("{a:.4}"));
        println!(
            "samples {}  accuracy {:.4}  ECE {:.4}  NLL {:.4}  Brier {:.4}  error AUROC {auroc}",
            m.samples, m.accuracy, m.ece, m.nll, m.brier
        );
    }
    Ok(())
}

/// The model's logits for every image, batch by batch, as host values `[N · classes]`.
fn classify(model: &Model, images: &Tensor, batch_size: usize, device: &Device) -> cpeal::Result<Vec<f32>> {
    let mut progress = Progress::new(images.shape()[0], "eval");
    let mut logits = Vec::new();
    for batch in batches(images, batch_size, device) {
        let batch = batch?;
        let rows = batch.shape()[0];
        let out = model.forward_images(&batch)?;
        let no_head = || Error::invalid("eval", "the model has no classification head (give --adapter)");
        logits.extend(out.logits.ok_or_else(no_head)?.to_vec()?);
        progress.inc(rows);
    }
    progress.finish();
    Ok(logits)
}

/// `images` `[N, …]` (on the CPU) in consecutive batches of `batch_size` rows, each copied to `device`.
fn batches<'a>(
    images: &'a Tensor,
    batch_size: usize,
    device: &'a Device,
) -> impl Iterator<Item = cpeal::Result<Tensor>> + 'a {
    let n = images.shape()[0];
    let per_image = images.numel() / n.max(1);
    (0..n).step_by(batch_size.max(1)).map(move |start| {
        let rows = batch_size.max(1).min(n - start);
        let mut shape = images.shape().to_vec();
        shape[0] = rows;
        let batch = images
            .cpu_slice()
            .and_then(|all| Tensor::from_vec(all[start * per_image..][..rows * per_image].to_vec(), &shape))
            .and_then(|t| t.to_device(device));
        batch
    })
}

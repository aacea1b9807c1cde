//! `cpeal eval`: accuracy and calibration (ECE over 15 bins, NLL, Brier, AUROC of the entropy at telling wrong
//! predictions from right ones) of an image classifier, optionally with a peft adapter, on a batch file.

use std::path::PathBuf;

use cpeal::adapters::LoraAdapter;
use cpeal::metrics;
use cpeal::models::Model;
use cpeal::progress::Progress;
use cpeal::{Device, DeviceKind, Error, Tensor};

#[derive(clap::Args)]
pub struct Args {
    /// ViT or DINOv2 checkpoint directory (with a classification head, or an adapter that brings one)
    #[arg(long)]
    pub model: PathBuf,
    /// a peft adapter to merge into the model (LoRA factors and the saved classifier)
    #[arg(long)]
    pub adapter: Option<PathBuf>,
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
    let classes = logits.len() / labels.len().max(1);
    let m = metrics::evaluate(&logits, classes, labels).map_err(|e| Error::tensor(data, "labels", e.to_string()))?;
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
    let n = images.shape()[0];
    let per_image = images.numel() / n.max(1);
    let all = images.cpu_slice()?;
    let mut progress = Progress::new(n, "eval");
    let mut logits = Vec::new();
    for start in (0..n).step_by(batch_size) {
        let rows = batch_size.min(n - start);
        let mut shape = images.shape().to_vec();
        shape[0] = rows;
        let batch =
            Tensor::from_vec(all[start * per_image..][..rows * per_image].to_vec(), &shape)?.to_device(device)?;
        let out = model.forward_images(&batch)?;
        let z = out
            .logits
            .ok_or_else(|| Error::invalid("eval", "the model has no classification head (give --adapter)"))?;
        logits.extend(z.to_vec()?);
        progress.inc(rows);
    }
    progress.finish();
    Ok(logits)
}

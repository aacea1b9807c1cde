//! `cpeal bench train`: seconds per adapter training step (forward with the tape, the calibration loss,
//! backward to the adapters, SGD) of LoRA on q, k, v plus a head, on a preset architecture with random weights
//! or a checkpoint. The forward alone (no variables, so nothing recorded) is timed in the same run.

use std::time::Instant;

use cpeal::adapters::{LoraAdapter, LoraConfig};
use cpeal::models::Model;
use cpeal::train::{self, Schedule, TrainOptions};
use cpeal::{Error, Tensor};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// a ViT or DINOv2 preset (vit-b16, dinov2-s14) or checkpoint
    #[command(flatten)]
    pub subject: super::bench::Subject,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 4)]
    pub lora_r: usize,
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// print one JSON object instead of a sentence
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TrainArgs) -> cpeal::Result<()> {
    if args.batch_size == 0 || args.iters == 0 {
        return Err(Error::invalid("bench", "--batch-size and --iters must be at least 1"));
    }
    let (dir, label, _tmp) = super::bench::model_dir(&args.subject)?;
    let mut model = Model::load(&dir)?;
    let config = LoraConfig {
        r: args.lora_r,
        alpha: args.lora_r as f32,
        target_modules: ["q_proj", "k_proj", "v_proj"].map(String::from).to_vec(),
        rslora: true,
        dropout: 0.0,
        modules_to_save: vec!["classifier".into()],
    };
    let mut adapter = LoraAdapter::fresh(&mut model, config, Some(args.classes), 0)?;
    let (b, s) = (args.batch_size, args.subject.image_size);
    let data: Vec<f32> = (0..b * 3 * s * s).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
    let pixels = Tensor::from_vec(data, &[b, 3, s, s])?;
    let labels: Vec<usize> = (0..b).map(|i| i % args.classes).collect();
    let forward_s = time_forward(&mut model, &adapter, &pixels, args.warmup + args.iters)?;
    let epochs = args.warmup + args.iters;
    let opts = TrainOptions {
        schedule: Schedule { epochs, lr: 1e-3, warmup_epochs: 0, warmup_lr: 0.0, calib_weight: 1.0, anneal: false },
        batch_size: b,
        optimizer: cpeal::optim::OptimizerKind::Sgd { momentum: 0.9, weight_decay: 0.0 },
        clip_grad_norm: None,
        weighting: cpeal::ops::CalibWeighting::Inter,
        seed: 0,
    };
    let mut stamps = vec![Instant::now()];
    train::train_image_classifier(&mut model, &mut adapter, &pixels, &labels, &opts, |_| stamps.push(Instant::now()))?;
    let steps: Vec<f64> = stamps.windows(2).skip(args.warmup).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let step_s = super::bench::median_of(steps);
    let threads = rayon::current_num_threads();
    if args.json {
        println!(
            "{{\"arch\":\"{label}\",\"batch\":{b},\"image_size\":{s},\"lora_r\":{},\"threads\":{threads},\"step_s\":{step_s:.4},\"forward_s\":{forward_s:.4},\"images_per_s\":{:.3}}}",
            args.lora_r,
            b as f64 / step_s
        );
    } else {
        println!(
            "{label} on the CPU ({threads} threads), LoRA r={} on q,k,v + head, batch {b} at {s}px: {step_s:.3} s per training step ({:.2} images/s); the forward alone {forward_s:.3} s (median of {} runs)",
            args.lora_r,
            b as f64 / step_s,
            args.iters
        );
    }
    Ok(())
}

/// Median seconds of an inference forward (adapter placed, nothing tracked).
fn time_forward(model: &mut Model, adapter: &LoraAdapter, pixels: &Tensor, runs: usize) -> cpeal::Result<f64> {
    adapter.attach(model, false)?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        model.forward_images(pixels)?;
        times.push(start.elapsed().as_secs_f64());
    }
    model.clear_adapters();
    Ok(super::bench::median_of(times))
}

//! `cpeal bench forward`: images/s of a whole-model forward at a batch size, on a checkpoint or on a preset
//! architecture with random weights. Validation lives in the tests; this only times. A batch is timed as the
//! forward and a device synchronize, like the PyTorch anchors; the download of the result is reported apart
//! (`download_s`).
//! `cpeal bench cpu-peak`: the measured f32 FMA peak of the CPU threads, the ceiling for the CPU numbers.

use std::path::PathBuf;
use std::time::Instant;

use cpeal::models::{presets, Model};
use cpeal::{Device, DeviceKind, Error, StorageDtype, Tensor};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand)]
pub enum What {
    /// Time image forwards (images/s).
    Forward(ForwardArgs),
    /// Measure the f32 FMA peak of the CPU threads (GFLOP/s).
    CpuPeak(PeakArgs),
    /// Time adapter training steps (LoRA on q, k, v + head) on the CPU.
    Train(super::bench_train::TrainArgs),
}

#[derive(clap::Args)]
pub struct PeakArgs {
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// print one JSON object instead of a sentence
    #[arg(long)]
    pub json: bool,
}

/// What is timed: a preset architecture with random weights, or a checkpoint, at an input size.
#[derive(clap::Args)]
pub struct Subject {
    /// preset with random weights: vit-b16, dinov2-s14, clip-b16-vision
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    pub arch: Option<String>,
    /// a checkpoint directory instead of a preset
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub subject: Subject,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// GPU storage of weights and activations (f32 math either way; the CPU is always f32)
    #[arg(long, value_enum, default_value = "bf16")]
    pub dtype: StorageDtype,
    /// print one JSON object instead of a sentence
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    match &args.what {
        What::Forward(a) => forward(a),
        What::CpuPeak(a) => cpu_peak(a),
        What::Train(a) => super::bench_train::run(a),
    }
}

fn cpu_peak(args: &PeakArgs) -> cpeal::Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        return Err(Error::invalid("bench", "--seconds must be a positive number"));
    }
    let threads = rayon::current_num_threads();
    let Some(gflops) = cpeal::ops::sgemm::fma_peak_gflops(args.seconds) else {
        return Err(Error::invalid("bench", "cpu-peak needs AVX2 and FMA (or CPEAL_SGEMM is off)"));
    };
    if args.json {
        println!("{{\"threads\":{threads},\"gflops\":{gflops:.1}}}");
    } else {
        println!("f32 FMA peak of {threads} threads: {gflops:.1} GFLOP/s");
    }
    Ok(())
}

fn forward(args: &ForwardArgs) -> cpeal::Result<()> {
    if args.batch_size == 0 || args.iters == 0 {
        return Err(Error::invalid("bench", "--batch-size and --iters must be at least 1"));
    }
    let device = Device::open_with(args.device, args.dtype)?;
    let (dir, label, _tmp) = model_dir(&args.subject)?;
    let model = Model::load_on(&dir, &device)?;
    let s = args.subject.image_size;
    let gflop = cpeal::models::flops::image_gflop(&cpeal::weights::JsonConfig::read(&dir.join("config.json"))?, s)?;
    let data: Vec<f32> = (0..args.batch_size * 3 * s * s).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
    let pixels = Tensor::from_vec(data, &[args.batch_size, 3, s, s])?.to_device(&device)?;
    // Warm-up runs download too, so that pinned staging is allocated before timing.
    for _ in 0..args.warmup {
        model.forward_images(&pixels)?.last_hidden_state.to_vec()?;
    }
    // As PyTorch's anchor (bench/gpu_forward.py): the forward and a device synchronize. The device → host copy
    // of the result is timed on its own.
    let (mut times, mut downloads) = (Vec::with_capacity(args.iters), Vec::with_capacity(args.iters));
    for _ in 0..args.iters {
        let start = Instant::now();
        let out = model.forward_images(&pixels)?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        out.last_hidden_state.to_vec()?;
        downloads.push(start.elapsed().as_secs_f64());
    }
    let (median, download) = (median_of(times), median_of(downloads));
    let ips = args.batch_size as f64 / median;
    let tflops = ips * gflop / 1e3;
    let threads = rayon::current_num_threads();
    if args.json {
        println!(
            "{{\"arch\":\"{label}\",\"device\":\"{}\",\"batch\":{},\"image_size\":{s},\"threads\":{threads},\"median_s\":{median:.4},\"download_s\":{download:.4},\"images_per_s\":{ips:.3},\"gflop_per_image\":{gflop:.3},\"tflop_per_s\":{tflops:.3},\"ln_fold\":{},\"kernels\":{}}}",
            device.name(),
            args.batch_size,
            model.folds_layer_norms(),
            serde_json::to_string(&launched_kernels(&device)).unwrap_or_default()
        );
    } else {
        println!(
            "{label} on {} ({threads} threads), batch {} at {s}px: {ips:.2} images/s, {tflops:.2} TFLOP/s at {gflop:.2} GFLOP/image (median of {} runs, {median:.3} s/batch for forward + synchronize; copying the last hidden state to the host takes {download:.3} s more){}",
            device.name(),
            args.batch_size,
            args.iters,
            if model.folds_layer_norms() { "; LayerNorms folded into the GEMMs" } else { "" }
        );
    }
    Ok(())
}

/// The GPU kernels the runs launched (none on the CPU).
fn launched_kernels(device: &Device) -> Vec<String> {
    match device {
        Device::Gpu(gpu) => gpu.launched_kernels(),
        _ => Vec::new(),
    }
}

/// The checkpoint to time: `model`, or a random one of preset `arch` written to a directory removed on drop.
pub fn model_dir(subject: &Subject) -> cpeal::Result<(PathBuf, String, Option<TempDir>)> {
    Ok(match (&subject.model, &subject.arch) {
        (Some(dir), _) => (dir.clone(), dir.display().to_string(), None),
        (None, Some(arch)) => {
            let tmp = std::env::temp_dir().join(format!("cpeal-bench-{arch}-{}", std::process::id()));
            presets::write_random_checkpoint(arch, &tmp, 0)?;
            (tmp.clone(), arch.clone(), Some(TempDir(tmp)))
        }
        (None, None) => return Err(Error::invalid("bench", "give --arch or --model")),
    })
}

pub fn median_of(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

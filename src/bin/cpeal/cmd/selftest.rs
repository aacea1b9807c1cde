//! `cpeal selftest --device cuda|cuda-emu`: every kernel against its CPU reference on random inputs; prints
//! a table (kernel, shape, relative error, max abs, pass/fail) and exits non-zero on any failure.

use cpeal::gpu::{selftest, GpuDevice};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GpuKind {
    Cuda,
    CudaEmu,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "cuda")]
    pub device: GpuKind,
    /// Only this kernel family (elementwise, layernorm, softmax, gemm, …)
    #[arg(long)]
    pub family: Option<String>,
    /// Seed of the random inputs
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only kernels whose names start with one of these prefixes (comma-separated); skips the whole models
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Leave out kernels whose names start with one of these prefixes (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
}

pub fn open(kind: GpuKind) -> cpeal::Result<GpuDevice> {
    match kind {
        GpuKind::Cuda => GpuDevice::cuda(0),
        GpuKind::CudaEmu => GpuDevice::emu(),
    }
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let dev = open(args.device)?;
    let cases = match &args.family {
        Some(f) => selftest::family(&dev, f),
        None => selftest::cases(&dev),
    };
    let starts = |name: &str, prefixes: &[String]| prefixes.iter().any(|p| name.starts_with(p.as_str()));
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|c| (args.only.is_empty() || starts(&c.kernel, &args.only)) && !starts(&c.kernel, &args.exclude))
        .collect();
    if cases.is_empty() {
        return Err(cpeal::Error::invalid("selftest", "no cases match --family / --only / --exclude"));
    }
    println!("device: {}", dev.name());
    // A cold kernel cache compiles on every core, not file after file as the cases reach them. A file that fails
    // here fails again in its own cases, which name it: the other cases still run.
    if let Err(e) = dev.precompile() {
        eprintln!("warning: compiling the kernels ahead: {e}");
    }
    print!("{}", selftest::table_header());
    let results = selftest::run_each(&dev, &cases, args.seed, |r| {
        use std::io::Write;
        print!("{}", selftest::table_row(r));
        let _ = std::io::stdout().flush();
    });
    let mut failed = results.iter().filter(|r| !r.pass).count();
    let mut total = results.len();
    if args.family.is_none() && args.only.is_empty() {
        println!("\n| model (random weights) | last_hidden_state rel. error vs cpu | pass |\n|---|---|---|");
        for (name, rel, pass) in models(&dev)? {
            println!("| {name} | {rel:.2e} | {} |", if pass { "ok" } else { "FAIL" });
            failed += usize::from(!pass);
            total += 1;
        }
    }
    if failed > 0 {
        return Err(cpeal::Error::invalid("selftest", format!("{failed} of {total} cases failed")));
    }
    println!("ok: {total} cases passed");
    Ok(())
}

/// Whole-model forwards of the tiny presets (random weights; ViT, DINOv2 with interpolated positions, CLIP)
/// on `dev` against the CPU path: (model, relative error of `last_hidden_state`, pass).
pub fn models(dev: &GpuDevice) -> cpeal::Result<Vec<(String, f64, bool)>> {
    use cpeal::models::{presets, Model};
    use cpeal::{Device, Tensor};
    let mut rows = Vec::new();
    for name in ["vit-tiny", "dinov2-tiny", "clip-tiny-vision"] {
        let dir = std::env::temp_dir().join(format!("cpeal-selftest-{name}-{}", std::process::id()));
        presets::write_random_checkpoint(name, &dir, 1)?;
        let side = if name.starts_with("dinov2") { 40 } else { 32 };
        let data: Vec<f32> = (0..2 * 3 * side * side).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let pixels = Tensor::from_vec(data, &[2, 3, side, side])?;
        let cpu = Model::load(&dir)?.forward_images(&pixels)?.last_hidden_state.to_vec()?;
        let gpu_device = Device::Gpu(dev.clone());
        let model = Model::load_on(&dir, &gpu_device)?;
        let got = model.forward_images(&pixels.to_device(&gpu_device)?)?.last_hidden_state.to_vec()?;
        std::fs::remove_dir_all(&dir).ok();
        let num: f64 = got.iter().zip(&cpu).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let den: f64 = cpu.iter().map(|b| (*b as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        rows.push((name.to_string(), rel, rel <= 1e-2));
    }
    Ok(rows)
}

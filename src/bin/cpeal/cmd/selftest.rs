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
        Some(f) => selftest::family(f),
        None => selftest::cases(),
    };
    if cases.is_empty() {
        return Err(cpeal::Error::invalid("selftest", "no cases match --family"));
    }
    println!("device: {}", dev.name());
    let results = selftest::run(&dev, &cases, args.seed);
    print!("{}", selftest::table(&results));
    let failed = results.iter().filter(|r| !r.pass).count();
    if failed > 0 {
        return Err(cpeal::Error::invalid("selftest", format!("{failed} of {} cases failed", results.len())));
    }
    println!("ok: {} cases passed", results.len());
    Ok(())
}

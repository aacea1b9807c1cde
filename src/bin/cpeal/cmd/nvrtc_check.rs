//! `cpeal nvrtc-check [--arch sm_80,sm_90] [--kernels DIR]`: compile every kernel with NVRTC for each arch
//! (ptxas `-v`), print registers and spills per kernel, fail on a compile error, any spill, or wgmma that ptxas
//! serialised in a kernel that is timed.

use std::path::PathBuf;

use cpeal::gpu::nvrtc_check;

#[derive(clap::Args)]
pub struct Args {
    /// Target architectures (real `sm_XY`, so ptxas runs), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "sm_80,sm_90")]
    pub arch: Vec<String>,
    /// Check the `.cu` files of this folder instead of the kernels built into this binary
    #[arg(long)]
    pub kernels: Option<PathBuf>,
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let (major, minor) = cpeal::gpu::nvrtc::load()?;
    let set = nvrtc_check::load_sources(args.kernels.as_deref())?;
    println!("NVRTC {major}.{minor}, {} files, archs {}", set.files.len(), args.arch.join(","));
    let reports = nvrtc_check::check_all(&set, &args.arch)?;
    print!("{}", nvrtc_check::table(&reports));
    let spills: Vec<_> = reports.iter().filter(|r| r.spills()).map(|r| format!("{}@{}", r.kernel, r.arch)).collect();
    if !spills.is_empty() {
        return Err(cpeal::Error::invalid("nvrtc-check", format!("register spills in {}", spills.join(", "))));
    }
    let serialized: Vec<_> = reports
        .iter()
        .filter(|r| r.slow_wgmma())
        .map(|r| format!("{}@{} ({})", r.kernel, r.arch, r.wgmma_serialized.as_deref().unwrap_or_default()))
        .collect();
    if !serialized.is_empty() {
        let msg = format!("ptxas serialised the wgmma instructions of {}", serialized.join(", "));
        return Err(cpeal::Error::invalid("nvrtc-check", msg));
    }
    println!("ok: {} kernel builds, no spills, no serialised wgmma", reports.len());
    Ok(())
}

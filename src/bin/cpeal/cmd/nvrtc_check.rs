//! `cpeal nvrtc-check [--arch sm_80,sm_90] [--kernels DIR]`: compile every kernel with NVRTC for each arch
//! (ptxas `-v`), print registers and spills per kernel, fail on a compile error or any spill.

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
    println!("ok: {} kernel builds, no spills", reports.len());
    Ok(())
}

//! The NVRTC compile check: every kernel file compiled for each target arch with the ptxas report on; one row
//! per kernel (registers, spill bytes, stack, wgmma serialised). `cpeal nvrtc-check` prints the table and fails
//! on a compile error, any spill, or wgmma serialised by ptxas in a kernel that is timed (not a `probe_`).

use std::path::Path;

use super::{nvrtc, scan, sources};
use crate::error::{Error, Result};

/// ptxas' report for one kernel at one arch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelReport {
    pub file: String,
    pub kernel: String,
    pub arch: String,
    pub registers: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub stack_bytes: u32,
    pub shared_bytes: u32,
    /// Why ptxas serialised this kernel's wgmma instructions (its "Potential Performance Loss" advisory), if it did:
    /// each wgmma then waits for the one before, which costs a Hopper GEMM much of its speed and shows nowhere else.
    pub wgmma_serialized: Option<String>,
}

impl KernelReport {
    pub fn spills(&self) -> bool {
        self.spill_stores > 0 || self.spill_loads > 0
    }

    /// Serialised wgmma in a kernel whose speed matters. The emulator's probes (`probe_*`) break pipelines on
    /// purpose and are never timed.
    pub fn slow_wgmma(&self) -> bool {
        self.wgmma_serialized.is_some() && !self.kernel.starts_with("probe_")
    }
}

/// What `check_all` compiles: kernel files (name, source) and the headers they may include (name, text).
pub struct CheckSet {
    pub files: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

/// Kernel files to check, from `dir` when given (its headers too, where present), else the sources embedded in
/// this binary.
pub fn load_sources(dir: Option<&Path>) -> Result<CheckSet> {
    let embedded = || sources::HEADERS.iter().map(|(n, t)| (n.to_string(), t.to_string()));
    let Some(dir) = dir else {
        let files = sources::SOURCES.iter().map(|s| (s.file.to_string(), s.text.to_string())).collect();
        return Ok(CheckSet { files, headers: embedded().collect() });
    };
    let headers = embedded().map(|(n, t)| (n.clone(), std::fs::read_to_string(dir.join(&n)).unwrap_or(t))).collect();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    paths.sort();
    let files = paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            Ok((p.file_name().unwrap_or_default().to_string_lossy().to_string(), text))
        })
        .collect::<Result<_>>()?;
    Ok(CheckSet { files, headers })
}

/// Compile one file for `arch` and return one report per kernel; a compile error is `Error::Nvrtc` with the log.
pub fn check_file(file: &str, text: &str, headers: &[(&str, &str)], arch: &str) -> Result<Vec<KernelReport>> {
    let src = sources::expand(file, text, headers);
    let mut opts = nvrtc::base_options(arch);
    opts.push("--ptxas-options=-v".into());
    let compiled = nvrtc::compile_cubin(file, &src, &opts)?;
    let reports = parse_ptxas(file, arch, &compiled.log);
    // ptxas advisories are echoed as they come; a serialised wgmma is also in the report, where the caller gates it.
    for line in compiled.log.lines().filter(|l| l.contains("warning") || l.contains("Performance")) {
        eprintln!("{file} ({arch}): {line}");
    }
    for name in scan::kernel_names(text) {
        if !reports.iter().any(|r| r.kernel == name) {
            return Err(Error::Nvrtc {
                kernel: format!("{file}:{name}"),
                log: format!("no ptxas report\n{}", compiled.log),
            });
        }
    }
    Ok(reports)
}

/// Parse ptxas `-v` lines: "Compiling entry function 'k' for 'sm_80'", "N bytes stack frame, N bytes spill
/// stores, N bytes spill loads", "Used N registers, … N bytes smem …".
pub fn parse_ptxas(file: &str, arch: &str, log: &str) -> Vec<KernelReport> {
    let mut out: Vec<KernelReport> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or("").to_string();
            out.push(KernelReport {
                file: file.into(),
                kernel,
                arch: arch.into(),
                registers: 0,
                spill_stores: 0,
                spill_loads: 0,
                stack_bytes: 0,
                shared_bytes: 0,
                wgmma_serialized: None,
            });
        } else if let Some(r) = out.last_mut() {
            if line.contains("bytes stack frame") {
                r.stack_bytes = number_before(line, "bytes stack frame");
                r.spill_stores = number_before(line, "bytes spill stores");
                r.spill_loads = number_before(line, "bytes spill loads");
            } else if line.contains("Used") && line.contains("registers") {
                r.registers = number_before(line, "registers");
                r.shared_bytes = number_before(line, "bytes smem");
            }
        }
    }
    for (kernel, why) in log.lines().filter_map(wgmma_serialization) {
        if let Some(r) = out.iter_mut().find(|r| r.kernel == kernel) {
            r.wgmma_serialized = Some(why);
        }
    }
    out
}

/// "(C7518) Potential Performance Loss: wgmma.mma_async instructions are serialized due to WHY in the function
/// 'K'" → (K, WHY). ptxas prints it apart from the kernel's own lines (before them), so it is matched by name.
fn wgmma_serialization(line: &str) -> Option<(String, String)> {
    let rest = line.split("wgmma.mma_async instructions are serialized").nth(1)?;
    let (why, kernel) = rest.rsplit_once("in the function '")?;
    let why = why.trim().trim_start_matches("due to").trim();
    Some((kernel.trim_end_matches(['\'', '.', ' ']).to_string(), why.to_string()))
}

fn number_before(line: &str, marker: &str) -> u32 {
    let Some(pos) = line.find(marker) else {
        return 0;
    };
    line[..pos].split_whitespace().last().and_then(|w| w.parse().ok()).unwrap_or(0)
}

/// Check every file for every arch (in parallel: NVRTC compiles independent programs concurrently); Ok(reports)
/// when all compiled (spills are reported, not errors here), else the first error in file order.
pub fn check_all(set: &CheckSet, archs: &[String]) -> Result<Vec<KernelReport>> {
    let headers: Vec<(&str, &str)> = set.headers.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let jobs: Vec<(&(String, String), String)> = set
        .files
        .iter()
        .flat_map(|f| archs.iter().filter_map(move |a| scan::nvrtc_target(&f.0, a).map(|t| (f, t))))
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Vec<KernelReport>>>> = (0..jobs.len()).map(|_| None).collect();
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(((file, text), arch)) = jobs.get(i) else { break };
                let r = check_file(file, text, &headers, arch);
                slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    let mut all = Vec::new();
    for r in results.into_iter().flatten() {
        all.extend(r?);
    }
    Ok(all)
}

/// The report as a table.
pub fn table(reports: &[KernelReport]) -> String {
    let mut s = format!(
        "{:<18} {:<28} {:<6} {:>5} {:>6} {:>6} {:>6}\n",
        "file", "kernel", "arch", "regs", "spill", "stack", "smem"
    );
    for r in reports {
        s.push_str(&format!(
            "{:<18} {:<28} {:<6} {:>5} {:>6} {:>6} {:>6}{}\n",
            r.file,
            r.kernel,
            r.arch,
            r.registers,
            r.spill_stores + r.spill_loads,
            r.stack_bytes,
            r.shared_bytes,
            if r.spills() {
                "  SPILL"
            } else if r.slow_wgmma() {
                "  WGMMA SERIALIZED"
            } else {
                ""
            }
        ));
    }
    s
}

//! Occupancy as designed. A kernel whose `__launch_bounds__(threads, blocks)` names its blocks per SM is built
//! around that many running at once: ptxas caps its registers for them, and one block's epilogue or softmax
//! hides under another's tensor-core work only if both are resident. Registers cannot break that promise
//! (ptxas spills instead, and the NVRTC check fails a spill); shared memory can, since the launcher sizes it: a
//! block that asks for more than its share of the SM silently runs alone, correct and slower, which no test of
//! results sees. So each launch of such a kernel is checked, once per block size and shared memory: the
//! emulator fails the launch (against an sm_90 SM's limits, and an sm_80 SM's for kernels that also run there,
//! each with the block count compiled for that arch), a GPU (the driver's count) warns once.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use super::{scan, sources, LaunchConfig, Runtime};
use crate::{Error, Result};

/// What bounds the blocks resident on one SM, registers aside (CUDA C++ Programming Guide, table of technical
/// specifications per compute capability).
#[derive(Debug, Clone, Copy)]
pub struct SmLimits {
    pub arch: &'static str,
    /// Shared memory the SM can give its blocks (its largest carveout).
    pub shared_per_sm: u32,
    /// Shared memory the system keeps per resident block.
    pub reserved_per_block: u32,
    pub max_threads: u32,
    pub max_blocks: u32,
}

/// Hopper (H100, H200): 228 KiB of shared memory per SM.
pub const SM90: SmLimits =
    SmLimits { arch: "sm_90", shared_per_sm: 228 * 1024, reserved_per_block: 1024, max_threads: 2048, max_blocks: 32 };
/// Ampere A100: 164 KiB of shared memory per SM.
pub const SM80: SmLimits =
    SmLimits { arch: "sm_80", shared_per_sm: 164 * 1024, reserved_per_block: 1024, max_threads: 2048, max_blocks: 32 };

impl SmLimits {
    /// Blocks of `threads` threads with `shared_bytes` of dynamic shared memory each that fit on one SM,
    /// registers aside.
    pub fn resident_blocks(&self, threads: u32, shared_bytes: u32) -> u32 {
        let by_threads = self.max_threads / (threads.div_ceil(32).max(1) * 32);
        let by_shared = self.shared_per_sm / (shared_bytes + self.reserved_per_block);
        by_threads.min(by_shared).min(self.max_blocks)
    }
}

/// The blocks per SM that `kernel`'s launch bounds are built for when compiled for `cuda_arch` (`__CUDA_ARCH__`,
/// e.g. 800; None for the emulator), when they name more than one.
pub fn designed_blocks(kernel: &str, cuda_arch: Option<u32>) -> Option<u32> {
    let (source, token) = bounded_kernels().get(kernel)?;
    scan::blocks_per_sm(source.text, token, cuda_arch).filter(|&b| b > 1)
}

/// Per kernel that names its blocks per SM: its source file and the token naming them (a number or a macro).
fn bounded_kernels() -> &'static HashMap<String, (sources::KernelSource, String)> {
    static BOUNDED: OnceLock<HashMap<String, (sources::KernelSource, String)>> = OnceLock::new();
    BOUNDED.get_or_init(|| {
        sources::SOURCES
            .iter()
            .flat_map(|s| scan::kernels(s.text).into_iter().map(move |k| (*s, k)))
            .filter_map(|(source, k)| Some((k.name, (source, k.min_blocks?))))
            .collect()
    })
}

/// The SMs the emulator holds `kernel` to, each with the `__CUDA_ARCH__` its block count is compiled for: an
/// sm_90 one (the emulator's own build, without `__CUDA_ARCH__`), and an sm_80 one unless the kernel is
/// Hopper-only.
fn emulated_sms(kernel: &str) -> Vec<(SmLimits, Option<u32>)> {
    let hopper_only = bounded_kernels().get(kernel).is_some_and(|(s, _)| scan::is_hopper_only(s.file));
    let mut sms = vec![(SM90, None)];
    if !hopper_only {
        sms.push((SM80, Some(800)));
    }
    sms
}

/// `__CUDA_ARCH__` for an arch name: `sm_80` → 800, `sm_90a` → 900.
pub fn cuda_arch(arch: &str) -> Option<u32> {
    arch.strip_prefix("sm_")?.trim_end_matches('a').parse::<u32>().ok().map(|n| n * 10)
}

/// The launches already checked: per kernel, (threads per block, dynamic shared bytes). Looked up by the
/// kernel's name, so a launch already checked allocates nothing.
#[derive(Default)]
pub(crate) struct Checked(Mutex<HashMap<String, HashSet<(u32, u32)>>>);

impl Checked {
    fn contains(&self, kernel: &str, shape: (u32, u32)) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(kernel).is_some_and(|s| s.contains(&shape))
    }

    fn insert(&self, kernel: &str, shape: (u32, u32)) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(kernel.to_string()).or_default().insert(shape);
    }
}

/// Checks that `designed_blocks(kernel)` blocks of `cfg` fit on one of `rt`'s SMs: an error under emulation, a
/// warning on a GPU, where the kernel still runs correctly and a failed query must not stop it.
pub(crate) fn check(rt: &dyn Runtime, kernel: &str, cfg: &LaunchConfig, checked: &Checked) -> Result<()> {
    if !bounded_kernels().contains_key(kernel) {
        return Ok(());
    }
    let threads = cfg.block.0 * cfg.block.1 * cfg.block.2;
    let shape = (threads, cfg.shared_bytes);
    if checked.contains(kernel, shape) {
        return Ok(());
    }
    if rt.is_emu() {
        for (sm, arch) in emulated_sms(kernel) {
            let Some(designed) = designed_blocks(kernel, arch) else { continue };
            let resident = sm.resident_blocks(threads, cfg.shared_bytes);
            if resident < designed {
                // Not recorded: every such launch fails.
                let why = shortfall(designed, resident, &format!("an {} SM", sm.arch), cfg);
                let limits =
                    format!(" ({} bytes of shared memory, {} kept a block)", sm.shared_per_sm, sm.reserved_per_block);
                return Err(Error::kernel(kernel, why + &limits));
            }
        }
    } else if let Some(designed) = designed_blocks(kernel, rt.arch().as_deref().and_then(cuda_arch)) {
        match rt.resident_blocks(kernel, cfg) {
            Ok(resident) if resident < designed => {
                let why = shortfall(designed, resident, &rt.name(), cfg);
                eprintln!("warning: kernel {kernel}: {why}; it runs, slower than designed")
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: occupancy of kernel {kernel} unknown: {e}"),
        }
    }
    checked.insert(kernel, shape);
    Ok(())
}

/// The message for `resident` blocks of a kernel built for `designed` fitting on `sm` under `cfg`.
fn shortfall(designed: u32, resident: u32, sm: &str, cfg: &LaunchConfig) -> String {
    format!(
        "its __launch_bounds__ are built for {designed} blocks per SM, but {resident} fit on {sm} with {} threads \
         and {} bytes of dynamic shared memory a block",
        cfg.block.0 * cfg.block.1 * cfg.block.2,
        cfg.shared_bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_memory_bounds_the_blocks_of_an_sm() {
        // 228 KiB an SM, 1 KiB kept a block: two blocks of 113 KiB fit, two of 113 KiB + 1 byte do not.
        assert_eq!(SM90.resident_blocks(256, 113 * 1024), 2);
        assert_eq!(SM90.resident_blocks(256, 113 * 1024 + 1), 1);
        // Threads: 2048 an SM, counted in whole warps.
        assert_eq!(SM90.resident_blocks(1024, 0), 2);
        assert_eq!(SM90.resident_blocks(1000, 0), 2);
        assert_eq!(SM90.resident_blocks(33, 0), 32);
    }

    #[test]
    fn the_kernels_that_name_their_blocks_per_sm_are_found() {
        let emu = None;
        assert_eq!(designed_blocks("attention_fwd_wgmma_d64_bf16", emu), Some(2));
        assert_eq!(designed_blocks("gemm_sm90_tmaw_n128s3_f16", emu), Some(2));
        // Built for 4 on Hopper and in the emulator, 3 on an A100 (its 164 KiB of shared memory).
        assert_eq!(designed_blocks("attention_fwd_tail16x4_d64_bf16", emu), Some(4));
        assert_eq!(designed_blocks("attention_fwd_tail16x4_d64_bf16", cuda_arch("sm_90")), Some(4));
        assert_eq!(designed_blocks("attention_fwd_tail16x4_d64_bf16", cuda_arch("sm_80")), Some(3));
        // One block per SM, or none named: nothing to check.
        assert_eq!(designed_blocks("gemm_sm90_coop_n128s4_bf16", emu), None);
        assert_eq!(designed_blocks("gemm_bf16", emu), None);
    }

    #[test]
    fn arch_names_become_cuda_arch_numbers() {
        assert_eq!([cuda_arch("sm_80"), cuda_arch("sm_86"), cuda_arch("sm_90a")], [Some(800), Some(860), Some(900)]);
        assert_eq!(cuda_arch("gfx90a"), None);
    }
}

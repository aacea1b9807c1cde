//! Occupancy as designed. A kernel whose `__launch_bounds__(threads, blocks)` names its blocks per SM is built
//! around that many running at once: ptxas caps its registers for them, and one block's epilogue or softmax
//! hides under another's tensor-core work only if both are resident. Registers cannot break that promise
//! (ptxas spills instead, and the NVRTC check fails a spill); shared memory can, since the launcher sizes it: a
//! block that asks for more than its share of the SM silently runs alone, correct and slower, which no test of
//! results sees. So each launch of such a kernel is checked, once per block size and shared memory: the
//! emulator (an sm_90 SM's limits) fails the launch, a GPU (the driver's count) warns once.

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
    // Per kernel naming its blocks: its file's text and the token naming them (a number or a macro).
    static DESIGNED: OnceLock<HashMap<String, (&'static str, String)>> = OnceLock::new();
    let designed = DESIGNED.get_or_init(|| {
        sources::SOURCES
            .iter()
            .flat_map(|s| scan::kernels(s.text).into_iter().map(move |k| (s.text, k)))
            .filter_map(|(text, k)| Some((k.name, (text, k.min_blocks?))))
            .collect()
    });
    let (text, token) = designed.get(kernel)?;
    scan::blocks_per_sm(text, token, cuda_arch).filter(|&b| b > 1)
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
    let Some(designed) = designed_blocks(kernel, rt.arch().as_deref().and_then(cuda_arch)) else {
        return Ok(());
    };
    let shape = (cfg.block.0 * cfg.block.1 * cfg.block.2, cfg.shared_bytes);
    if checked.contains(kernel, shape) {
        return Ok(());
    }
    match shortfall(rt, kernel, cfg, designed) {
        // Not recorded: every such launch fails.
        Ok(Some(why)) if rt.is_emu() => return Err(Error::kernel(kernel, why)),
        Err(e) if rt.is_emu() => return Err(e),
        Ok(Some(why)) => eprintln!("warning: kernel {kernel}: {why}; it runs, slower than designed"),
        Err(e) => eprintln!("warning: occupancy of kernel {kernel} unknown: {e}"),
        Ok(None) => {}
    }
    checked.insert(kernel, shape);
    Ok(())
}

/// Why fewer than `designed` blocks of `kernel` under `cfg` fit on one of `rt`'s SMs, if they do.
fn shortfall(rt: &dyn Runtime, kernel: &str, cfg: &LaunchConfig, designed: u32) -> Result<Option<String>> {
    let resident = rt.resident_blocks(kernel, cfg)?;
    if resident >= designed {
        return Ok(None);
    }
    let threads = cfg.block.0 * cfg.block.1 * cfg.block.2;
    let mut why = format!(
        "its __launch_bounds__ are built for {designed} blocks per SM, but {resident} fit on {} with {threads} \
         threads and {} bytes of dynamic shared memory a block",
        rt.name(),
        cfg.shared_bytes
    );
    if rt.is_emu() {
        let sm = SM90;
        why += &format!(
            " (an {} SM: {} bytes of shared memory, {} kept a block)",
            sm.arch, sm.shared_per_sm, sm.reserved_per_block
        );
    }
    Ok(Some(why))
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

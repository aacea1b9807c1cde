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

/// The blocks per SM that `kernel`'s launch bounds are built for, when they name more than one.
pub fn designed_blocks(kernel: &str) -> Option<u32> {
    static DESIGNED: OnceLock<HashMap<String, u32>> = OnceLock::new();
    let designed = DESIGNED.get_or_init(|| {
        sources::SOURCES
            .iter()
            .flat_map(|s| scan::kernels(s.text))
            .filter_map(|k| Some((k.name, k.min_blocks.filter(|&b| b > 1)?)))
            .collect()
    });
    designed.get(kernel).copied()
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
    let Some(designed) = designed_blocks(kernel) else {
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
        assert_eq!(designed_blocks("attention_fwd_wgmma_d64_bf16"), Some(2));
        assert_eq!(designed_blocks("gemm_sm90_tmaw_n128s3_f16"), Some(2));
        assert_eq!(designed_blocks("attention_fwd_tail16x4_d64_bf16"), Some(4));
        // One block per SM, or none named: nothing to check.
        assert_eq!(designed_blocks("gemm_sm90_coop_n128s4_bf16"), None);
        assert_eq!(designed_blocks("gemm_bf16"), None);
    }
}

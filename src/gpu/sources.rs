//! The kernel sources, embedded in the binary, and the helpers that prepare them for NVRTC.

use super::scan;

/// One `kernels/*.cu` file.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    pub file: &'static str,
    pub text: &'static str,
}

/// `kernels/common.cuh`, spliced into each file in place of its `#include "common.cuh"`.
pub const COMMON: &str = include_str!("../../kernels/common.cuh");
/// `kernels/hopper.cuh` (wgmma, TMA, mbarriers), included by the `*_sm90.cu` files after `common.cuh`.
pub const HOPPER: &str = include_str!("../../kernels/hopper.cuh");
/// `kernels/attention.cuh` (the online-softmax steps), included by `attention.cu` and `attention_sm90.cu`.
pub const ATTENTION: &str = include_str!("../../kernels/attention.cuh");
/// `kernels/gemm_sm90.cuh` (epilogue and TMA producer), included by the Hopper GEMM files after `hopper.cuh`.
pub const GEMM_SM90: &str = include_str!("../../kernels/gemm_sm90.cuh");
/// The headers a kernel file may `#include`, by name. NVRTC gets no include path: `expand` splices them in.
pub const HEADERS: &[(&str, &str)] =
    &[("common.cuh", COMMON), ("hopper.cuh", HOPPER), ("attention.cuh", ATTENTION), ("gemm_sm90.cuh", GEMM_SM90)];

macro_rules! kernel_sources {
    ($($file:literal),* $(,)?) => {
        &[$(KernelSource { file: $file, text: include_str!(concat!("../../kernels/", $file)) }),*]
    };
}

/// Every kernel file. Adding a file to `kernels/` means adding it here too (a test checks the two agree).
#[rustfmt::skip]
pub const SOURCES: &[KernelSource] = kernel_sources![
    "attention.cu",
    "attention_sm90.cu",
    "badge.cu",
    "bank_probe.cu",
    "coreset.cu",
    "elementwise.cu",
    "gemm.cu",
    "gemm_persistent_sm90.cu",
    "gemm_sm90.cu",
    "interp.cu",
    "layernorm.cu",
    "patch_embed.cu",
    "pool.cu",
    "select.cu",
    "softmax.cu",
    "sync_probe.cu",
    "sync_probe_sm90.cu",
    "tokens.cu",
    "topk.cu",
];

/// The source with each `#include "<name>"` of `headers` (name, text) replaced by the header's text, keeping
/// line numbers in NVRTC logs right.
pub fn expand(file: &str, text: &str, headers: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len() + headers.iter().map(|h| h.1.len()).sum::<usize>() + 256);
    for (i, line) in text.lines().enumerate() {
        let included = line.trim().strip_prefix("#include \"").and_then(|r| r.strip_suffix('"'));
        if let Some((name, header)) = included.and_then(|n| headers.iter().find(|h| h.0 == n)) {
            out.push_str(&format!("#line 1 \"{name}\"\n"));
            out.push_str(header);
            out.push_str(&format!("\n#line {} \"{file}\"\n", i + 2));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The file that defines `kernel`.
pub fn file_of(kernel: &str) -> Option<&'static KernelSource> {
    SOURCES.iter().find(|s| scan::kernel_names(s.text).iter().any(|n| n == kernel))
}

/// Stable 64-bit FNV-1a hash (cache keys must not change between Rust versions).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_include_of_a_kernel_file_is_spliced_in() {
        for src in SOURCES {
            let text = expand(src.file, src.text, HEADERS);
            let left: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("#include")).collect();
            assert!(left.is_empty(), "{}: {left:?} not expanded", src.file);
        }
    }
}

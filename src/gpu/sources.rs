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

macro_rules! kernel_sources {
    ($($file:literal),* $(,)?) => {
        &[$(KernelSource { file: $file, text: include_str!(concat!("../../kernels/", $file)) }),*]
    };
}

/// Every kernel file. Adding a file to `kernels/` means adding it here too (a test checks the two agree).
#[rustfmt::skip]
pub const SOURCES: &[KernelSource] = kernel_sources![
    "attention.cu",
    "elementwise.cu",
    "gemm.cu",
    "gemm_sm90.cu",
    "interp.cu",
    "layernorm.cu",
    "patch_embed.cu",
    "pool.cu",
    "select.cu",
    "softmax.cu",
    "sync_probe.cu",
    "tokens.cu",
];

/// The source with `#include "common.cuh"` replaced by `common`, keeping line numbers in NVRTC logs right.
pub fn expand(file: &str, text: &str, common: &str) -> String {
    let mut out = String::with_capacity(text.len() + common.len() + 128);
    for (i, line) in text.lines().enumerate() {
        if line.trim() == "#include \"common.cuh\"" {
            out.push_str("#line 1 \"common.cuh\"\n");
            out.push_str(common);
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

//! Finds the `extern "C" __global__` entry points of a kernel source. Shared by `build.rs` (emulator registry)
//! and the runtime (which file holds which kernel), so both agree on the list.

/// Names of the kernels defined in `src`, in order. A kernel is `extern "C" __global__ void [__launch_bounds__(…)]
/// [__maxnreg__(…)] [__cluster_dims__(…)] name(`; lines that start with `//` are skipped.
pub fn kernel_names(src: &str) -> Vec<String> {
    kernels(src).into_iter().map(|k| k.name).collect()
}

/// One entry point and what its qualifiers declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDecl {
    pub name: String,
    /// Blocks in a cluster along the grid's x: the first of a `__cluster_dims__(x, 1, 1)` qualifier, else 1.
    pub cluster: u32,
    /// The blocks per SM its `__launch_bounds__(threads, blocks)` is built for, when it names them: a number, or
    /// a macro given by a `#define NAME number` line of the file (the last one: what sm_90 and the emulator
    /// compile).
    #[allow(dead_code)] // build.rs shares this file and reads only the name and cluster
    pub min_blocks: Option<u32>,
}

/// The kernels defined in `src`, in order.
pub fn kernels(src: &str) -> Vec<KernelDecl> {
    let mut found = Vec::new();
    'lines: for line in src.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let Some(pos) = line.find("__global__") else {
            continue;
        };
        if !line[..pos].contains("extern \"C\"") {
            continue;
        }
        let rest = line[pos + "__global__".len()..].trim_start();
        let Some(rest) = rest.strip_prefix("void") else {
            continue;
        };
        let mut rest = rest.trim_start();
        let (mut cluster, mut min_blocks) = (1, None);
        for qualifier in ["__launch_bounds__", "__maxnreg__", "__cluster_dims__"] {
            if let Some(after) = rest.strip_prefix(qualifier) {
                let Some(close) = after.find(')') else {
                    continue 'lines;
                };
                let mut args = after[..close].trim_start_matches([' ', '(']).split(',').map(str::trim);
                match qualifier {
                    "__cluster_dims__" => cluster = args.next().and_then(|x| x.parse().ok()).unwrap_or(1),
                    "__launch_bounds__" => min_blocks = args.nth(1).and_then(|b| number_or_define(src, b)),
                    _ => {}
                }
                rest = after[close + 1..].trim_start();
            }
        }
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && rest[name.len()..].trim_start().starts_with('(') {
            found.push(KernelDecl { name, cluster, min_blocks });
        }
    }
    found
}

/// `token` as a number, or the number of the last `#define token number` line of `src`.
fn number_or_define(src: &str, token: &str) -> Option<u32> {
    token.parse().ok().or_else(|| {
        src.lines()
            .filter_map(|l| l.trim_start().strip_prefix("#define")?.trim_start().strip_prefix(token))
            .filter_map(|value| value.trim().parse().ok())
            .next_back()
    })
}

/// Files of Hopper-only kernels (wgmma, TMA): named `*_sm90.cu`. NVRTC builds them for sm_90a only; the
/// emulator runs them through its model of those instructions (`kernels/emu_sm90.h`).
pub fn is_hopper_only(file_name: &str) -> bool {
    file_name.ends_with("_sm90.cu")
}

/// The NVRTC target for compiling `file_name` on a device of `arch` (e.g. `sm_90`), or None when the file has no
/// code for that device: Hopper-only files compile for `sm_90a` (wgmma needs the arch-specific target) and only
/// on sm_90; every other file compiles for the device's own arch.
pub fn nvrtc_target(file_name: &str, arch: &str) -> Option<String> {
    match (is_hopper_only(file_name), arch) {
        (false, _) => Some(arch.to_string()),
        (true, "sm_90" | "sm_90a") => Some("sm_90a".to_string()),
        (true, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifiers_before_the_name_are_skipped_and_comments_ignored() {
        let src = "extern \"C\" __global__ void plain_f32(int n) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(128, 3) bounded_bf16(int n) {}\n\
                   extern \"C\" __global__ void __maxnreg__(152) capped_f16(int n) {}\n\
                   // extern \"C\" __global__ void commented_out(int n) {}\n\
                   __global__ void not_extern_c(int n) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(128 unclosed_f32(int n) {}\n";
        assert_eq!(kernel_names(src), ["plain_f32", "bounded_bf16", "capped_f16"]);
    }

    #[test]
    fn cluster_dims_give_the_cluster_size_along_x() {
        let src =
            "extern \"C\" __global__ void __launch_bounds__(384, 1) __cluster_dims__(2, 1, 1) pair_bf16(int n) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(384, 1) single_bf16(int n) {}\n";
        let found: Vec<_> = kernels(src).into_iter().map(|k| (k.name, k.cluster)).collect();
        assert_eq!(found, [("pair_bf16".to_string(), 2), ("single_bf16".to_string(), 1)]);
    }

    #[test]
    fn launch_bounds_give_the_blocks_per_sm_built_for() {
        let src =
            "#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900\n#define BLOCKS 3\n#else\n#define BLOCKS 4\n#endif\n\
                   extern \"C\" __global__ void __launch_bounds__(128, 3) three_bf16(int n) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(256) unstated_bf16(int n) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(128, BLOCKS) by_macro_bf16(int n) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(128, UNKNOWN) unknown_bf16(int n) {}\n\
                   extern \"C\" __global__ void plain_f32(int n) {}\n";
        let found: Vec<_> = kernels(src).into_iter().map(|k| (k.name, k.min_blocks)).collect();
        let want = [
            ("three_bf16", Some(3)),
            ("unstated_bf16", None),
            ("by_macro_bf16", Some(4)),
            ("unknown_bf16", None),
            ("plain_f32", None),
        ];
        assert_eq!(found, want.map(|(n, b)| (n.to_string(), b)));
    }
}

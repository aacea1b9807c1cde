//! Finds the `extern "C" __global__` entry points of a kernel source. Shared by `build.rs` (emulator registry)
//! and the runtime (which file holds which kernel), so both agree on the list.

/// Names of the kernels defined in `src`, in order. A kernel is `extern "C" __global__ void [__launch_bounds__(…)]
/// [__maxnreg__(…)] [__cluster_dims__(…)] name(`; lines that start with `//` are skipped.
pub fn kernel_names(src: &str) -> Vec<String> {
    kernels(src).into_iter().map(|k| k.0).collect()
}

/// (name, cluster size along x) of the kernels defined in `src`, in order: the cluster size is the first of a
/// `__cluster_dims__(x, 1, 1)` qualifier (a cluster of x blocks along the grid's x), else 1.
pub fn kernels(src: &str) -> Vec<(String, u32)> {
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
        let mut cluster = 1;
        for qualifier in ["__launch_bounds__", "__maxnreg__", "__cluster_dims__"] {
            if let Some(after) = rest.strip_prefix(qualifier) {
                let Some(close) = after.find(')') else {
                    continue 'lines;
                };
                if qualifier == "__cluster_dims__" {
                    let first = after[..close].trim_start_matches([' ', '(']).split(',').next().unwrap_or("");
                    cluster = first.trim().parse().unwrap_or(1);
                }
                rest = after[close + 1..].trim_start();
            }
        }
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && rest[name.len()..].trim_start().starts_with('(') {
            found.push((name, cluster));
        }
    }
    found
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
        assert_eq!(kernels(src), [("pair_bf16".to_string(), 2), ("single_bf16".to_string(), 1)]);
    }
}

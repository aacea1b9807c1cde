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
    /// The second argument of its `__launch_bounds__(threads, blocks)`, when it names one: the blocks per SM it
    /// is built for, as a number or a macro (`blocks_per_sm` resolves it for an arch).
    #[allow(dead_code)] // build.rs shares this file and reads only the name and cluster
    pub min_blocks: Option<String>,
}

/// The kernels defined in `src`, in order.
pub fn kernels(src: &str) -> Vec<KernelDecl> {
    src.lines().filter_map(declaration).flatten().collect()
}

/// Lines (1-based) of `src` that open an `extern "C" __global__` declaration this scanner cannot read (its name
/// not on the same line, an unclosed qualifier): such a kernel would be missing from the emulator's registry and
/// from the NVRTC check, so `build.rs` refuses the file.
pub fn unreadable_declarations(src: &str) -> Vec<usize> {
    src.lines().enumerate().filter(|(_, line)| matches!(declaration(line), Some(None))).map(|(i, _)| i + 1).collect()
}

/// None when `line` declares no kernel; Some(None) when it opens an `extern "C" __global__` declaration that
/// cannot be read; else the kernel.
fn declaration(line: &str) -> Option<Option<KernelDecl>> {
    let line = line.trim_start();
    if line.starts_with("//") {
        return None;
    }
    let pos = line.find("__global__")?;
    if !line[..pos].contains("extern \"C\"") {
        return None;
    }
    let Some(rest) = line[pos + "__global__".len()..].trim_start().strip_prefix("void") else {
        return Some(None);
    };
    let mut rest = rest.trim_start();
    let (mut cluster, mut min_blocks) = (1, None);
    for qualifier in ["__launch_bounds__", "__maxnreg__", "__cluster_dims__"] {
        if let Some(after) = rest.strip_prefix(qualifier) {
            let Some(close) = after.find(')') else {
                return Some(None);
            };
            let mut args = after[..close].trim_start_matches([' ', '(']).split(',').map(str::trim);
            match qualifier {
                "__cluster_dims__" => cluster = args.next().and_then(|x| x.parse().ok()).unwrap_or(1),
                "__launch_bounds__" => min_blocks = args.nth(1).map(str::to_string),
                _ => {}
            }
            rest = after[close + 1..].trim_start();
        }
    }
    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let opens = !name.is_empty() && rest[name.len()..].trim_start().starts_with('(');
    Some(opens.then_some(KernelDecl { name, cluster, min_blocks }))
}

/// A `__launch_bounds__` block count (`token`: a number or a macro of `src`) as compiled for `cuda_arch` (the
/// value of `__CUDA_ARCH__`, e.g. 800 or 900; None for the emulator, which has none): the macro's last
/// `#define token number` line that the file's `#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < N` (or `>= N`),
/// `#if defined(__CUDA_ARCH__)`, `#ifdef CPEAL_EMU` and their `#else` branches keep for that arch. A condition
/// of another form counts as true.
pub fn blocks_per_sm(src: &str, token: &str, cuda_arch: Option<u32>) -> Option<u32> {
    if let Ok(n) = token.parse() {
        return Some(n);
    }
    let mut open: Vec<Option<bool>> = Vec::new(); // each enclosing condition: true, false or unknown
    let mut value = None;
    for line in src.lines().map(str::trim) {
        let directive = line.strip_prefix('#').map(str::trim_start).unwrap_or("");
        if let Some(cond) = directive.strip_prefix("if ") {
            open.push(arch_condition(cond.trim(), cuda_arch));
        } else if let Some(name) = directive.strip_prefix("ifdef ") {
            open.push((name.trim() == "CPEAL_EMU").then_some(cuda_arch.is_none()));
        } else if let Some(name) = directive.strip_prefix("ifndef ") {
            open.push((name.trim() == "CPEAL_EMU").then_some(cuda_arch.is_some()));
        } else if directive.starts_with("else") {
            if let Some(c) = open.last_mut() {
                *c = c.map(|b| !b);
            }
        } else if directive.starts_with("elif") {
            if let Some(c) = open.last_mut() {
                *c = None;
            }
        } else if directive.starts_with("endif") {
            open.pop();
        } else if let Some(rest) = directive.strip_prefix("define") {
            let defined = rest.trim_start().strip_prefix(token).filter(|r| r.starts_with([' ', '\t']));
            if let (Some(v), true) =
                (defined.and_then(|r| r.trim().parse().ok()), open.iter().all(|c| *c != Some(false)))
            {
                value = Some(v);
            }
        }
    }
    value
}

/// `defined(__CUDA_ARCH__)`, alone or `&& __CUDA_ARCH__ < N` / `>= N`, for `cuda_arch`; None for another form.
fn arch_condition(cond: &str, cuda_arch: Option<u32>) -> Option<bool> {
    let rest = cond.strip_prefix("defined(__CUDA_ARCH__)")?.trim();
    if rest.is_empty() {
        return Some(cuda_arch.is_some());
    }
    let test = rest.strip_prefix("&&")?.trim().strip_prefix("__CUDA_ARCH__")?.trim();
    let (below, n) = match test.strip_prefix(">=") {
        Some(n) => (false, n),
        None => (true, test.strip_prefix('<')?),
    };
    let n: u32 = n.trim().parse().ok()?;
    Some(cuda_arch.is_some_and(|a| (a < n) == below))
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
        assert_eq!(unreadable_declarations(src), [6], "the unclosed qualifier");
    }

    /// A declaration whose name is on the next line is reported (the emulator and the NVRTC check would miss
    /// it), and every kernel file of the project has none.
    #[test]
    fn declarations_split_over_lines_are_reported() {
        let src = "extern \"C\" __global__ void __launch_bounds__(256)\n    split_f32(int n) {}\n\
                   extern \"C\" __global__ void whole_f32(int n) {}\n";
        assert_eq!(unreadable_declarations(src), [1]);
        assert_eq!(kernel_names(src), ["whole_f32"]);
        for file in crate::gpu::sources::SOURCES {
            assert_eq!(unreadable_declarations(file.text), Vec::<usize>::new(), "{}", file.file);
        }
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
        // Per arch: sm_80, sm_90, the emulator (no __CUDA_ARCH__).
        let found: Vec<_> = kernels(src)
            .into_iter()
            .map(|k| {
                let per_arch = [Some(800), Some(900), None]
                    .map(|arch| k.min_blocks.as_deref().and_then(|t| blocks_per_sm(src, t, arch)));
                (k.name, per_arch)
            })
            .collect();
        let want = [
            ("three_bf16", [Some(3); 3]),
            ("unstated_bf16", [None; 3]),
            ("by_macro_bf16", [Some(3), Some(4), Some(4)]),
            ("unknown_bf16", [None; 3]),
            ("plain_f32", [None; 3]),
        ];
        assert_eq!(found, want.map(|(n, b)| (n.to_string(), b)));
    }

    #[test]
    fn block_counts_follow_the_arch_conditions_they_sit_in() {
        let src = "#ifdef CPEAL_EMU
#define B 1
#else
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
                   #define B 2
#endif
#endif
#if defined(__CUDA_ARCH__)
#define C 5
#endif
                   #if SOMETHING_ELSE
#define D 6
#else
#define D 7
#endif
#define BB 9
";
        let at = |token: &str, arch| blocks_per_sm(src, token, arch);
        assert_eq!([at("B", None), at("B", Some(800)), at("B", Some(900))], [Some(1), None, Some(2)]);
        assert_eq!([at("C", None), at("C", Some(800))], [None, Some(5)]);
        assert_eq!(at("D", Some(900)), Some(7), "an unknown condition counts as true: the last define");
        assert_eq!(at("BB", None), Some(9), "B's value is not BB's");
        assert_eq!(at("12", None), Some(12));
    }
}

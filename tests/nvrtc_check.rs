//! The NVRTC compile check against the real CUDA 13 NVRTC (found through `CPEAL_NVRTC_LIB` or Python's
//! `nvidia/cu13/lib`; `scripts/ci-gpu-checks.sh` installs it): a real kernel file compiles with its ptxas
//! report parsed, and a deliberately broken kernel makes the checker — library and CLI — fail with the log.

use cpeal::gpu::{nvrtc_check, sources};

const BROKEN: &str = r#"#include "common.cuh"
extern "C" __global__ void broken_f32(int n, const float* x, float* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = undefined_helper(x[i]);
}
"#;

/// Two wgmma on one accumulator with a plain add to it between them: ptxas serialises them (a kernel no one
/// should ship; the check must refuse it).
const SERIALISED: &str = r#"#include "common.cuh"
#include "hopper.cuh"
extern "C" __global__ void __launch_bounds__(128) slow_wgmma_bf16(const bf16_t* P, float* out, float s) {
    char* raw = DYN_SMEM(char);
    char* smem = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    u32 a[4];
    UNROLL for (int j = 0; j < 4; ++j) a[j] = pack2<bf16_t>(to_f32(P[threadIdx.x * 4 + j]), 1.0f);
    float acc[32];
    UNROLL for (int e = 0; e < 32; ++e) acc[e] = 0.0f;
    wgmma_fence();
    wgmma_m64n64k16_rs_mn<bf16_t>(acc, a, wgmma_desc_sw128(smem));
    acc[0] += s;
    wgmma_m64n64k16_rs_mn<bf16_t>(acc, a, wgmma_desc_sw128(smem));
    wgmma_commit();
    wgmma_wait<0>();
    UNROLL for (int e = 0; e < 32; ++e) out[threadIdx.x * 32 + e] = acc[e];
}
"#;

fn archs() -> Vec<String> {
    vec!["sm_80".into(), "sm_90".into()]
}

/// A real kernel file through the whole pipeline (every kernel of every file at sm_80 and sm_90 is checked by
/// `cpeal nvrtc-check` in `scripts/ci-gpu-checks.sh`; this keeps `cargo test` fast).
#[test]
fn a_real_kernel_file_compiles_and_reports_registers() {
    let src = sources::SOURCES.iter().find(|s| s.file == "softmax.cu").unwrap();
    for arch in archs() {
        let reports = nvrtc_check::check_file(src.file, src.text, sources::HEADERS, &arch).unwrap();
        let names = cpeal::gpu::scan::kernel_names(src.text);
        assert_eq!(reports.len(), names.len(), "{}", nvrtc_check::table(&reports));
        for r in &reports {
            assert!(names.contains(&r.kernel) && r.arch == arch);
            assert!(r.registers > 0 && r.registers <= 255 && !r.spills(), "{}", nvrtc_check::table(&reports));
        }
    }
}

/// (name, threads) of the kernels of `src` declared `__launch_bounds__(threads, 1)`.
fn one_block_per_sm_kernels(src: &str) -> Vec<(String, u32)> {
    src.lines()
        .filter_map(|line| {
            let (threads, blocks) = line.split_once("__launch_bounds__(")?.1.split_once(')')?.0.split_once(',')?;
            let name = cpeal::gpu::scan::kernel_names(line).pop()?;
            (blocks.trim() == "1").then_some((name, threads.trim().parse().ok()?))
        })
        .collect()
}

/// The emulator's setmaxnreg model (kernels/emu.h, `regs_at_launch`) starts a block of n threads with
/// 65 536 / n registers a thread, rounded down to a multiple of 8, all allocated: the pool the warpgroups' .dec
/// and .inc move registers through. This holds ptxas to it for every kernel that reallocates registers; fewer
/// at launch would make a pool the emulator's balance overstates (a hang on the GPU it could not show).
#[test]
fn kernels_that_reallocate_registers_start_with_the_whole_register_file() {
    for src in sources::SOURCES.iter().filter(|s| s.text.contains("setmaxnreg_")) {
        let arch = cpeal::gpu::scan::nvrtc_target(src.file, "sm_90").unwrap();
        let reports = nvrtc_check::check_file(src.file, src.text, sources::HEADERS, &arch).unwrap();
        let kernels = one_block_per_sm_kernels(src.text);
        assert!(!kernels.is_empty(), "{}: no __launch_bounds__(n, 1) kernel", src.file);
        for (name, threads) in kernels {
            let r = reports.iter().find(|r| r.kernel == name).unwrap_or_else(|| panic!("{name}: no ptxas report"));
            let whole = (65536 / threads).min(255) & !7;
            assert_eq!(r.registers, whole, "{}: {name} ({threads} threads)", src.file);
        }
    }
}

#[test]
fn broken_kernel_fails_with_the_log() {
    let err = nvrtc_check::check_file("broken.cu", BROKEN, sources::HEADERS, "sm_80").unwrap_err().to_string();
    assert!(err.contains("broken.cu") && err.contains("undefined_helper"), "{err}");
    assert!(err.contains("broken.cu(4)"), "the log points at the line of the error: {err}");
}

/// `cpeal nvrtc-check --arch ARCH` over a folder holding only `file` with `text`: (success, stderr).
fn cli_check_one_file(file: &str, text: &str, arch: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cpeal"))
        .args(["nvrtc-check", "--arch", arch, "--kernels"])
        .arg(dir.path())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cli_exits_non_zero_on_a_broken_kernel() {
    let (ok, stderr) = cli_check_one_file("broken.cu", BROKEN, "sm_80");
    assert!(!ok, "nvrtc-check passed a broken kernel");
    assert!(stderr.contains("undefined_helper"), "{stderr}");
}

#[test]
fn serialised_wgmma_is_reported_for_its_kernel() {
    let reports = nvrtc_check::check_file("slow_sm90.cu", SERIALISED, sources::HEADERS, "sm_90a").unwrap();
    let r = reports.iter().find(|r| r.kernel == "slow_wgmma_bf16").unwrap();
    assert!(r.slow_wgmma(), "{r:?}");
    assert!(nvrtc_check::table(&reports).contains("WGMMA SERIALIZED"));
}

#[test]
fn cli_exits_non_zero_on_serialised_wgmma() {
    let (ok, stderr) = cli_check_one_file("slow_sm90.cu", SERIALISED, "sm_90");
    assert!(!ok, "nvrtc-check passed serialised wgmma");
    assert!(stderr.contains("serialised the wgmma instructions of slow_wgmma_bf16@sm_90a"), "{stderr}");
}

/// ptxas prints the advisory apart from the kernel's own lines: it is matched by name, wherever it stands.
/// A probe (`probe_*`, never timed) may carry it.
#[test]
fn the_serialisation_advisory_is_matched_to_its_kernel_by_name() {
    let log = "ptxas info    : Compiling entry function 'gemm_bf16' for 'sm_90a'\n\
               ptxas info    : Used 168 registers\n\
               ptxas info    : Compiling entry function 'probe_ring_bf16' for 'sm_90a'\n\
               ptxas info    : Used 90 registers\n\
               ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized due to \
               insufficient register resources for the wgmma pipeline in the function 'gemm_bf16'\n\
               ptxas info    : (C7518) Potential Performance Loss: wgmma.mma_async instructions are serialized due to \
               program dependence on compiler-inserted WG.DP in divergent path in the function 'probe_ring_bf16'\n";
    let reports = nvrtc_check::parse_ptxas("g.cu", "sm_90a", log);
    assert_eq!(reports[0].wgmma_serialized.as_deref(), Some("insufficient register resources for the wgmma pipeline"));
    assert!(reports[0].slow_wgmma());
    assert!(reports[1].wgmma_serialized.is_some() && !reports[1].slow_wgmma());
}

#[test]
fn spills_are_detected_in_the_ptxas_report() {
    let log = "ptxas info    : Compiling entry function 'k_f32' for 'sm_80'\n\
               ptxas info    : Function properties for k_f32\n\
               \x20   48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads\n\
               ptxas info    : Used 255 registers, used 1 barriers, 4096 bytes smem, 380 bytes cmem[0]\n";
    let r = &nvrtc_check::parse_ptxas("k.cu", "sm_80", log)[0];
    assert_eq!(
        (r.kernel.as_str(), r.registers, r.spill_stores, r.spill_loads, r.stack_bytes),
        ("k_f32", 255, 40, 36, 48)
    );
    assert_eq!(r.shared_bytes, 4096);
    assert!(r.spills());
}

#[test]
fn embedded_sources_list_every_kernel_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cu"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = sources::SOURCES.iter().map(|s| s.file.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "add new kernels/*.cu files to sources::SOURCES");
}

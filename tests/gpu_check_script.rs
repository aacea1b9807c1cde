//! A rehearsal of `scripts/gpu-check.sh`, the one call a lent GPU session makes: the script runs here against a
//! stub `cpeal` (answers like the real subcommands; images/s tell which settings reached it) and a stub
//! `nvidia-smi`, with no PyTorch. It must deliver its report to `$OUT`, time every candidate setting with the
//! environment it names, leave out settings whose kernels failed the selftest, and keep within its budget.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// images/s = 1000 + 1 (LN fold) + 50 (forced GEMM; 60 per role) + 100 (forced attention); the candidates'
/// selftest fails when `FAIL_CANDIDATES` is set (on `FAIL_KERNEL`, in the group of candidates that holds it; with
/// `CRASH`, by a crash without a verdict). bench-kernels echoes its arguments, and its summary names each shape's
/// fastest kernel.
const STUB_CPEAL: &str = r#"#!/usr/bin/env bash
case "$1" in
  --version) echo "cpeal 0.0.0-stub" ;;
  selftest)
    kernel=${FAIL_KERNEL:-lnfold_gemm_sm90_tmaw-n128s3_bf16}
    if [[ "$*" == *--only* && -n "${FAIL_CANDIDATES:-}" ]]; then
      for prefix in $(tr , ' ' <<<"${@: -1}"); do
        [[ $kernel == "$prefix"* ]] || continue
        [[ -n "${CRASH:-}" ]] && exit 139
        echo "$kernel  37x53x40 norm  1e-1  1e-1  1e-2  FAIL"; echo "1 of 9 cases failed"; exit 1
      done
    fi
    echo "ok: 9 cases passed" ;;
  bench-kernels)
    echo "bench-kernels args: $*"
    echo "| gemm_bf16 qkv | 50432 x 2304 x 768 | 370.0 | 480.0 |"
    echo "| GEMM | default TFLOP/s | fastest kernel | its TFLOP/s | default / cuBLAS | fastest / cuBLAS |"
    echo "| qkv | 480.0 | gemm_sm90_ppo-n128s5_bf16 | 560.0 | 72% | 84% |"
    echo "| proj | 350.0 | gemm_sm80_bf16 | 360.0 | 62% | 64% |"
    echo "| fc1+gelu | 400.0 | gemm_sm90_ppomc-n128s5_bf16 | 520.0 | 60% | 78% |"
    echo "| fc2 | 500.0 | gemm_bf16 | 500.0 | 70% | 70% |" ;;
  bench)
    [[ "$*" == *--help* ]] && exit 0
    ips=1000
    [[ "${CPEAL_LN_FOLD:-}" == on ]] && ips=$((ips + 1))
    [[ -n "${CPEAL_GEMM_SM90:-}" ]] && ips=$((ips + 50))
    [[ "${CPEAL_GEMM_SM90:-}" == *:* ]] && ips=$((ips + 10))
    [[ -n "${CPEAL_ATTENTION:-}" ]] && ips=$((ips + 100))
    if [[ "${CPEAL_PROFILE:-}" == 1 ]]; then
      printf 'CPEAL_PROFILE: 9.00 ms on the device in all\n| kernel | calls | total ms | share |\n| gemm_%s | 48 | 6.0 | 66.7%% |\n' "$ips" >&2
    fi
    echo "{\"images_per_s\":$ips,\"tflop_per_s\":1.5,\"kernels\":[\"gemm_${CPEAL_GEMM_SM90:-auto}\",\"attention_${CPEAL_ATTENTION:-auto}\"]}" ;;
  *) exit 2 ;;
esac
"#;

const STUB_NVIDIA_SMI: &str = "#!/usr/bin/env bash\necho 'NVIDIA Stub GPU'\n";

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the script with the stubs; returns (exit ok, stdout + stderr, the report delivered to $OUT).
fn rehearse(env: &[(&str, &str)]) -> (bool, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let cpeal = bin.join("cpeal");
    write_executable(&cpeal, STUB_CPEAL);
    write_executable(&bin.join("nvidia-smi"), STUB_NVIDIA_SMI);
    let (out, results) = (tmp.path().join("out"), tmp.path().join("results"));
    std::fs::create_dir(&out).unwrap();
    for lib in ["libcuda.so.1", "libnvrtc.so.13"] {
        std::fs::write(tmp.path().join(lib), b"").unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-check.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&cpeal)
        .arg("2")
        .env("PATH", path)
        .env("OUT", &out)
        .env("GPU_CHECK_OUTDIR", &results)
        .env("LIBCUDA", tmp.path().join("libcuda.so.1"))
        .env("CPEAL_NVRTC_LIB", tmp.path().join("libnvrtc.so.13"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let delivered: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(delivered.len(), 1, "one report in $OUT, got {delivered:?}\n{log}");
    let report = std::fs::read_to_string(&delivered[0]).unwrap();
    (output.status.success(), log, report)
}

#[test]
fn every_candidate_setting_reaches_the_binary_and_the_report_comes_back() {
    let (ok, log, report) = rehearse(&[]);
    assert!(ok, "{log}");
    for row in [
        "| default | 1000 |",
        "| CPEAL_GEMM_SM90=ppo-n128s5 | 1050 |",
        "| CPEAL_ATTENTION=tail16 | 1100 |",
        "| CPEAL_LN_FOLD=on | 1001 |",
        "| CPEAL_ATTENTION=wgmma | 1100 |",
        "| CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=ppo-n128s5+CPEAL_ATTENTION=tail16 | 1151 |",
        "| CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=ppo-n128s5+CPEAL_ATTENTION=wgmma | 1151 |",
        // Each GEMM shape on its fastest kernel in bench-kernels (gemm.cu as `off`; a default left out), alone
        // and with the fold and the wgmma attention.
        "| CPEAL_GEMM_SM90=qkv:ppo-n128s5,proj:off,fc1:ppomc-n128s5 | 1060 |",
        "| CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=qkv:ppo-n128s5,proj:off,fc1:ppomc-n128s5+CPEAL_ATTENTION=wgmma | 1161 |",
        // Per switch the setting more than 3% above the default (ties to the first name), all at once; the
        // fold's +0.1% is not a win.
        "| winners combined: CPEAL_ATTENTION=tail16+CPEAL_GEMM_SM90=qkv:ppo-n128s5,proj:off,fc1:ppomc-n128s5 | 1160 |",
        // The fastest setting measured (here a combination beats the winners) is what the defaults become: it
        // is profiled, and every model is timed under it.
        "Fastest setting measured: `CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=qkv:ppo-n128s5,proj:off,fc1:ppomc-n128s5+CPEAL_ATTENTION=wgmma` (1161 images/s).",
        "Every model under the setting `CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=qkv:ppo-n128s5,proj:off,fc1:ppomc-n128s5+CPEAL_ATTENTION=wgmma`:",
        "| vit-b16 | 256 | 1161 |",
        "| dinov2-s14 | 512 | 1161 |",
        // The profiles of the default and of the fastest setting, each run with its own environment.
        "| gemm_1000 | 48 | 6.0 | 66.7% |",
        "| gemm_1161 | 48 | 6.0 | 66.7% |",
    ] {
        assert!(report.contains(row), "missing `{row}` in the report:\n{report}");
    }
    assert!(report.contains("## Selftest (passed)"), "{report}");
    // The PyTorch anchor comes before the settings (here without PyTorch, so unknown, and no ratio).
    assert!(report.contains("ViT-B/16 at batch 256 in this run: n/a images/s"), "{report}");
    assert!(report.contains("| default | 1000 | - |"), "{report}");
    assert!(report.contains("| gemm_bf16 qkv |"), "bench-kernels output is in the report:\n{report}");
    // What each setting ran, as the binary reports it.
    assert!(report.contains("- `default`: gemm_auto, attention_auto"), "{report}");
    assert!(report.contains("- `CPEAL_ATTENTION=wgmma`: gemm_auto, attention_wgmma"), "{report}");
    // PyTorch's own kernels beside ours (no PyTorch here, so the script says it could not profile).
    assert!(report.contains("PyTorch eager (the anchor), per forward:\n\n(no profile"), "{report}");
    // The selection comparison runs last, and its failure (no PyTorch here) leaves the report whole.
    assert!(report.contains("(no selection comparison: bench/torch_select.py failed)"), "{report}");
}

#[test]
fn settings_whose_kernels_failed_the_selftest_are_not_timed() {
    let (ok, log, report) = rehearse(&[("FAIL_CANDIDATES", "1")]);
    assert!(ok, "a failed candidate must not stop the defaults' benchmarks:\n{log}");
    assert!(report.contains("| default | 1000 |"), "{report}");
    assert!(report.contains("| CPEAL_LN_FOLD=on | not run: failed the selftest |"), "{report}");
    assert!(report.contains("FAILED for candidates: lnfold_gemm_sm90_tmaw-n128s3_bf16"), "{report}");
    // Only the failed kernel's group is left out of bench-kernels.
    assert!(report.contains("--skip lnfold_\n"), "{report}");
    assert!(report.contains("| CPEAL_GEMM_SM90=ppo-n128s5 | 1050 |"), "{report}");
    // The combinations hold the failed fold, so the fastest setting is the winners combined.
    let winners = "CPEAL_ATTENTION=tail16+CPEAL_GEMM_SM90=qkv:ppo-n128s5,proj:off,fc1:ppomc-n128s5";
    assert!(report.contains(&format!("Every model under the setting `{winners}`")), "{report}");
    assert!(report.contains("| vit-b16 | 256 | 1160 |"), "{report}");
}

#[test]
fn a_per_role_setting_naming_a_failed_kernel_is_not_timed() {
    let (ok, log, report) = rehearse(&[("FAIL_CANDIDATES", "1"), ("FAIL_KERNEL", "gemm_sm90_ppomc-n128s5_bf16")]);
    assert!(ok, "{log}");
    assert!(
        report.contains("| CPEAL_GEMM_SM90=qkv:ppo-n128s5,proj:off,fc1:ppomc-n128s5 | not run: failed the selftest |"),
        "{report}"
    );
    assert!(report.contains("| CPEAL_GEMM_SM90=ppo-n128s5 | 1050 |"), "{report}");
}

/// The selection kernels new on 2026-12-07 are checked as a group of their own: their failure is reported and
/// the model rows, which never run them, are all timed.
#[test]
fn a_failed_selection_kernel_does_not_stop_the_model_rows() {
    let (ok, log, report) = rehearse(&[("FAIL_CANDIDATES", "1"), ("FAIL_KERNEL", "topk_radix_f32")]);
    assert!(ok, "{log}");
    assert!(report.contains("FAILED for candidates: topk_radix_f32"), "{report}");
    assert!(report.contains("| default | 1000 |"), "{report}");
    assert!(report.contains("| CPEAL_LN_FOLD=on | 1001 |"), "{report}");
    assert!(report.contains("| vit-b16 | 256 | 1161 |"), "{report}");
}

#[test]
fn a_candidate_group_that_crashes_is_left_out_alone() {
    let (ok, log, report) =
        rehearse(&[("FAIL_CANDIDATES", "1"), ("CRASH", "1"), ("FAIL_KERNEL", "attention_fwd_wgmma_d64_bf16")]);
    assert!(ok, "{log}");
    assert!(report.contains("(no verdict: attention_fwd_wgmma)"), "{report}");
    assert!(
        report.contains("bench-kernels args: bench-kernels --device cuda --batch 2 --skip attention_fwd_wgmma\n"),
        "{report}"
    );
    assert!(report.contains("| CPEAL_ATTENTION=wgmma | not run: failed the selftest |"), "{report}");
    // The other candidates, the tail16 attention among them, are still timed.
    assert!(report.contains("| CPEAL_ATTENTION=tail16 | 1100 |"), "{report}");
    assert!(report.contains("| CPEAL_GEMM_SM90=coopmc-n128s4 | 1050 |"), "{report}");
    assert!(
        report.contains("| CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=ppo-n128s5+CPEAL_ATTENTION=tail16 | 1151 |"),
        "{report}"
    );
}

#[test]
fn benchmarks_past_the_budget_are_listed_as_not_run() {
    let (ok, log, report) = rehearse(&[("GPU_CHECK_BUDGET", "0")]);
    assert!(ok, "{log}");
    assert!(report.contains("| default | not run: past the 0 s budget |"), "{report}");
    assert!(report.contains("| vit-b16 | | not run: past the 0 s budget |"), "{report}");
    assert!(report.contains("Every model under the setting `default`"), "nothing measured, nothing wins:\n{report}");
}

/// `bench/torch_profile.py`'s table logic on a stand-in for torch.profiler's averages: only CUDA kernels, per
/// forward, longest first (PyTorch is not needed; the script imports it in `main`).
#[test]
fn the_torch_profile_lists_cuda_kernels_per_forward_longest_first() {
    let code = r#"
import sys
sys.path.insert(0, sys.argv[1])
from torch_profile import kernel_rows
class E:
    def __init__(s, key, dev, count, us): s.key, s.device_type, s.count, s.self_device_time_total = key, dev, count, us
class P:
    def key_averages(s):
        return [E("sm90_xmma_gemm_128x256", "DeviceType.CUDA", 144, 30000.0), E("cudaLaunchKernel", "DeviceType.CPU", 900, 5000.0),
                E("flash_fwd_kernel", "DeviceType.CUDA", 36, 9000.0), E("layer_norm", "DeviceType.CUDA", 75, 600.0)]
print([(k, c, round(ms, 9)) for k, c, ms in kernel_rows(P(), 3)])
"#;
    let rows = run_bench_python(code);
    assert_eq!(
        rows,
        "[('sm90_xmma_gemm_128x256', 48.0, 10.0), ('flash_fwd_kernel', 12.0, 3.0), ('layer_norm', 25.0, 0.2)]"
    );
}

/// `bench/torch_select.py` pairs cpeal's selection rows with PyTorch's by step and dtype: the rows over 1000
/// classes only, each top-k and k-th score row (by k) with the scores row before it, and the lane-count comparison
/// left out.
#[test]
fn the_selection_anchor_reads_the_bench_kernels_rows() {
    let code = r#"
import sys
sys.path.insert(0, sys.argv[1])
from torch_select import our_rows
text = """| selection kernel | shape | time (us) | GB/s read |
|---|---|---|---|
| uncertainty_scores_f32 | 1000000 x 1000 | 1443.0 | 2772 |
| uncertainty_scores_f32 at 32 lanes a row (before) | 1000000 x 1000 | 1500.0 | 2666 |
| top-1000 (radix select + gather + sort + download) | 1000000 | 51.5 | |
| k-th score of top-1000 (radix select + state download) | 1000000 | 30.5 | |
| top-10000 (radix select + gather + tile sort + merges + download) | 1000000 | 480.0 | |
| scores + top-1000 (f32) | 1000000 x 1000 | 1494.5 | 2676 |
| uncertainty_scores_bf16 | 1000000 x 1000 | 750.0 | 2666 |
| top-1000 (radix select + gather + sort + download) | 1000000 | 52.5 | |
| scores + top-1000 (bf16) | 1000000 x 1000 | 802.5 | 2492 |
| uncertainty_scores_f32 | 10000000 x 10 | 242.6 | 1649 |
"""
print(sorted(our_rows(text).items()))
"#;
    let rows = run_bench_python(code);
    assert_eq!(
        rows,
        "[(('kth-1000', 'f32'), ('1000000', 30.5)), (('scores', 'bf16'), ('1000000 x 1000', 750.0)), \
         (('scores', 'f32'), ('1000000 x 1000', 1443.0)), (('scores + top-1000', 'bf16'), ('1000000 x 1000', 802.5)), \
         (('scores + top-1000', 'f32'), ('1000000 x 1000', 1494.5)), (('top-1000', 'bf16'), ('1000000', 52.5)), \
         (('top-1000', 'f32'), ('1000000', 51.5)), (('top-10000', 'f32'), ('1000000', 480.0))]"
    );
}

/// Runs `code` with python3, `bench/` as its first argument; its standard output, trimmed.
fn run_bench_python(code: &str) -> String {
    let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench");
    let out = Command::new("python3").arg("-c").arg(code).arg(&bench).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

//! The emulator's model of Hopper (wgmma, TMA, mbarriers; `kernels/emu_sm90.h`) through
//! `kernels/sync_probe_sm90.cu`: a correct TMA → wgmma ring reproduces A·Wᵀ, and each way of breaking the ring
//! (no wait on the full barrier, a stage released before its wgmma retired, accumulators read without
//! wgmma.wait_group, barriers never initialised) fails the launch with a message naming the fault. Likewise for
//! thread block clusters: a multicast ring over two blocks, and the three ways it breaks. And register
//! reallocation (setmaxnreg): within the block's pool it runs, beyond it (a hang on a GPU) it is a deadlock. And
//! the fences wgmma needs (wgmma.fence, fence.proxy.async after cp.async): without either the launch fails; and
//! a register A fragment written while its wgmma is in flight fails it too.
#![cfg(feature = "cuda-emu")]

use cpeal::gpu::{selftest, DType, GpuDevice, KernelArgs, LaunchConfig};
use rand::{Rng, SeedableRng};

const K: usize = 512;

enum Mode {
    Correct = 0,
    NoFullWait = 1,
    EarlyRelease = 2,
    NoWgmmaWait = 3,
    NoBarrierInit = 4,
}

/// Runs the probe; Ok(out, reference) or the launch's error message.
fn probe(mode: Mode) -> Result<(Vec<f32>, Vec<f64>), String> {
    run_probe("probe_wgmma_ring_bf16", 1, mode as i32)
}

/// Runs `kernel` over `blocks` blocks (one cluster when 2), block r computing A[64 x K] · W[128r .. 128r+127]ᵀ
/// into out[r] with A's TMA boxes 64 / blocks rows; Ok(out, reference) or the launch's error message.
fn run_probe(kernel: &str, blocks: usize, mode: i32) -> Result<(Vec<f32>, Vec<f64>), String> {
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (a, w) = (random_bf16(&mut rng, 64 * K), random_bf16(&mut rng, 128 * blocks * K));
    let want: Vec<f64> = (0..blocks * 64 * 128)
        .map(|i| {
            let (r, row, col) = (i / (64 * 128), (i / 128) % 64, i % 128);
            (0..K).map(|k| a[row * K + k] as f64 * w[(128 * r + col) * K + k] as f64).sum()
        })
        .collect();
    let ab = dev.upload(&a, DType::Bf16).unwrap();
    let wb = dev.upload(&w, DType::Bf16).unwrap();
    let out = selftest::poisoned(&dev, DType::F32, blocks * 64 * 128).unwrap();
    let amap = dev.tensor_map_2d(&ab, 64, K, K, 64 / blocks).unwrap();
    let wmap = dev.tensor_map_2d(&wb, 128 * blocks, K, K, 128).unwrap();
    let mut args = KernelArgs::new();
    args.i32(K as i32) // int K
        .tensor_map(&amap) // TmaMap amap
        .tensor_map(&wmap) // TmaMap wmap
        .buf(&out) //         float* out
        .i32(mode); //        int mode
    let cfg = LaunchConfig { grid: (blocks as u32, 1, 1), block: (160, 1, 1), shared_bytes: 2 * 24576 + 1024 + 32 };
    // SAFETY: (int K, TmaMap amap, TmaMap wmap, float* out, int mode): the maps describe a [64, K] and a
    // [128·blocks, K] bf16 matrix that live until the launch returns; out holds blocks x 64 x 128 floats.
    unsafe { dev.launch(kernel, cfg, &mut args) }.map_err(|e| e.to_string())?;
    Ok((dev.download(&out).unwrap(), want))
}

fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

#[test]
fn a_correct_tma_wgmma_ring_computes_a_times_w_transposed() {
    let (got, want) = probe(Mode::Correct).unwrap();
    let e = rel_err(&got, &want);
    assert!(e < 1e-5, "rel. error {e:.2e}");
}

/// The race detector's message: a copy landed on the operands of a wgmma in flight.
const RACE: &str = "still reads";

#[test]
fn reading_a_stage_before_its_full_barrier_fails_the_launch() {
    let msg = probe(Mode::NoFullWait).unwrap_err();
    assert!(msg.contains(RACE), "{msg}");
}

#[test]
fn releasing_a_stage_before_its_wgmma_retired_fails_the_launch() {
    let msg = probe(Mode::EarlyRelease).unwrap_err();
    assert!(msg.contains(RACE), "{msg}");
}

#[test]
fn storing_accumulators_without_wgmma_wait_fails_the_launch() {
    let msg = probe(Mode::NoWgmmaWait).unwrap_err();
    assert!(msg.contains("wgmma in flight"), "{msg}");
}

#[test]
fn an_uninitialised_mbarrier_fails_the_launch() {
    let msg = probe(Mode::NoBarrierInit).unwrap_err();
    assert!(msg.contains("no initialised mbarrier"), "{msg}");
}

/// The cluster model (`probe_cluster_multicast_bf16`): two blocks share each A tile by multicast.
#[test]
fn a_cluster_sharing_its_a_tiles_by_multicast_computes_both_products() {
    let (got, want) = run_probe("probe_cluster_multicast_bf16", 2, 0).unwrap();
    let e = rel_err(&got, &want);
    assert!(e < 1e-5, "rel. error {e:.2e}");
}

#[test]
fn arriving_at_the_other_block_before_a_cluster_barrier_fails_the_launch() {
    let msg = run_probe("probe_cluster_multicast_bf16", 2, 1).unwrap_err();
    assert!(msg.contains("initialised after the last cluster barrier"), "{msg}");
}

#[test]
fn a_multicast_stage_released_by_one_block_only_fails_the_launch() {
    match run_probe("probe_cluster_multicast_bf16", 2, 2) {
        Ok((got, want)) => panic!("mode 2 ran, rel. error {:.2e}", rel_err(&got, &want)),
        Err(msg) => assert!(msg.contains(RACE), "{msg}"),
    }
}

#[test]
fn leaving_without_a_final_cluster_barrier_fails_the_launch() {
    let msg = run_probe("probe_cluster_multicast_bf16", 2, 3).unwrap_err();
    assert!(msg.contains("has exited"), "{msg}");
}

/// Runs one of the `probe_setmaxnreg_*` kernels (384 threads; warpgroup 0 gives registers back, 1 and 2 ask for
/// more, then thread t writes 3t + 1): Ok(out) or the launch's error message.
fn run_setmaxnreg_probe(kernel: &str) -> Result<Vec<i32>, String> {
    run_setmaxnreg_probe_with(kernel, 0)
}

fn run_setmaxnreg_probe_with(kernel: &str, shared_bytes: u32) -> Result<Vec<i32>, String> {
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let out = selftest::poisoned(&dev, DType::I32, 384).unwrap();
    let mut args = KernelArgs::new();
    args.buf(&out); // int* out
    let cfg = LaunchConfig { grid: (1, 1, 1), block: (384, 1, 1), shared_bytes };
    // SAFETY: (int* out): out holds 384 ints.
    unsafe { dev.launch(kernel, cfg, &mut args) }.map_err(|e| e.to_string())?;
    Ok(dev.download_i32(&out).unwrap())
}

#[test]
fn registers_moved_between_warpgroups_within_the_pool_run_through() {
    let out = run_setmaxnreg_probe("probe_setmaxnreg_balanced_i32").unwrap();
    let want: Vec<i32> = (0..384).map(|t| 3 * t + 1).collect();
    assert_eq!(out, want);
}

#[test]
fn asking_for_more_registers_than_the_pool_holds_is_a_deadlock_naming_setmaxnreg() {
    // 40·128 + 240·256 = 66 560 > 168·384 = 64 512: the second consumer's inc can never be met.
    let msg = run_setmaxnreg_probe("probe_setmaxnreg_overdrawn_i32").unwrap_err();
    assert!(msg.contains("deadlock") && msg.contains("setmaxnreg.inc 240"), "{msg}");
}

#[test]
fn asking_for_registers_nobody_gave_back_is_a_deadlock_naming_setmaxnreg() {
    let msg = run_setmaxnreg_probe("probe_setmaxnreg_no_dec_i32").unwrap_err();
    assert!(msg.contains("deadlock") && msg.contains("setmaxnreg.inc 232") && msg.contains("the pool has 0"), "{msg}");
}

/// bf16-rounded uniform [-1, 1) values, `n` of them.
fn random_bf16(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f32> {
    DType::Bf16.round(&(0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>())
}

/// Launches a one-warpgroup probe `(const bf16* x, const bf16* y, float* out, int mode)` with a 64 x 64 f32 output:
/// Ok(rel. error against `want`) or the launch's error message.
fn run_wgmma_probe(
    name: &str,
    x: &[f32],
    y: &[f32],
    want: &[f64],
    shared_bytes: u32,
    mode: i32,
) -> Result<f64, String> {
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let (xb, yb) = (dev.upload(x, DType::Bf16).unwrap(), dev.upload(y, DType::Bf16).unwrap());
    let out = selftest::poisoned(&dev, DType::F32, 64 * 64).unwrap();
    let mut args = KernelArgs::new();
    args.buf(&xb).buf(&yb).buf(&out).i32(mode); // const bf16* x, const bf16* y, float* out, int mode
    let cfg = LaunchConfig { grid: (1, 1, 1), block: (128, 1, 1), shared_bytes };
    // SAFETY: every such probe takes (const bf16*, const bf16*, float* out, int mode); the callers size x and y
    // as the probe reads them, and out holds 64 x 64 f32.
    unsafe { dev.launch(name, cfg, &mut args) }.map_err(|e| e.to_string())?;
    Ok(rel_err(&dev.download(&out).unwrap(), want))
}

/// Runs `probe_wgmma_cp_async_bf16` (one warpgroup, operands by cp.async): Ok(rel. error of A·Wᵀ) or the
/// launch's error message.
fn run_fence_probe(mode: i32) -> Result<f64, String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (a, w) = (random_bf16(&mut rng, 64 * 64), random_bf16(&mut rng, 64 * 64));
    let want: Vec<f64> =
        (0..64 * 64).map(|i| (0..64).map(|k| a[i / 64 * 64 + k] as f64 * w[i % 64 * 64 + k] as f64).sum()).collect();
    run_wgmma_probe("probe_wgmma_cp_async_bf16", &a, &w, &want, 16 * 1024 + 1024, mode)
}

#[test]
fn operands_copied_by_cp_async_and_fenced_reach_the_wgmma() {
    let e = run_fence_probe(0).unwrap();
    assert!(e < 1e-5, "rel. error {e:.2e}");
}

#[test]
fn a_wgmma_reading_cp_async_bytes_before_fence_proxy_async_fails_the_launch() {
    let msg = run_fence_probe(1).unwrap_err();
    assert!(msg.contains("no fence.proxy.async"), "{msg}");
}

#[test]
fn a_wgmma_without_wgmma_fence_fails_the_launch() {
    let msg = run_fence_probe(2).unwrap_err();
    assert!(msg.contains("no wgmma.fence"), "{msg}");
}

/// Runs `probe_wgmma_regs_bf16` (P from registers, V MN-major in shared memory): Ok(rel. error of P·V) or the
/// launch's error message.
fn run_register_a_probe(mode: i32) -> Result<f64, String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let (p, v) = (random_bf16(&mut rng, 64 * 16), random_bf16(&mut rng, 16 * 64));
    let want: Vec<f64> =
        (0..64 * 64).map(|i| (0..16).map(|k| p[i / 64 * 16 + k] as f64 * v[k * 64 + i % 64] as f64).sum()).collect();
    run_wgmma_probe("probe_wgmma_regs_bf16", &p, &v, &want, 2048 + 1024, mode)
}

#[test]
fn a_wgmma_with_a_from_registers_computes_p_times_v() {
    let e = run_register_a_probe(0).unwrap();
    assert!(e < 1e-5, "rel. error {e:.2e}");
}

#[test]
fn writing_the_register_a_fragment_of_a_wgmma_in_flight_fails_the_launch() {
    let msg = run_register_a_probe(1).unwrap_err();
    assert!(msg.contains("wrote the register A fragment of its wgmma in flight"), "{msg}");
}

/// An H100's and H200's limit, 227 KiB: at it a launch runs, past it the launch fails as cuLaunchKernel would.
#[test]
fn a_launch_past_the_shared_memory_a_block_may_have_fails() {
    let limit = 227 * 1024;
    run_setmaxnreg_probe_with("probe_setmaxnreg_balanced_i32", limit).unwrap();
    let msg = run_setmaxnreg_probe_with("probe_setmaxnreg_balanced_i32", limit + 16).unwrap_err();
    assert!(msg.contains(&format!("the device allows {limit}")), "{msg}");
}

/// cuTensorMapEncodeTiled's rules hold under the emulator too: a base or row stride off 16 bytes, an empty
/// matrix, a box of 0 or more than 256 rows.
#[test]
fn tensor_maps_the_driver_would_refuse_are_refused() {
    let dev = GpuDevice::emu().expect("the cuda-emu feature is on");
    let buf = dev.upload(&(0..64 * 80).map(|i| (i % 7) as f32).collect::<Vec<_>>(), DType::Bf16).unwrap();
    dev.tensor_map_2d(&buf, 64, 64, 80, 64).unwrap();
    let refused = |b: &cpeal::gpu::GpuBuffer, rows, cols, ld, box_rows| {
        dev.tensor_map_2d(b, rows, cols, ld, box_rows).unwrap_err().to_string()
    };
    let shifted = buf.slice(1, 63 * 80 + 64).unwrap();
    assert!(refused(&shifted, 63, 64, 80, 64).contains("16-byte aligned"));
    assert!(refused(&buf, 64, 64, 76, 64).contains("multiple of 16"));
    for box_rows in [0, 257] {
        assert!(refused(&buf, 64, 64, 80, box_rows).contains("1 to 256 rows"));
    }
    assert!(refused(&buf, 0, 64, 80, 64).contains("empty matrix"));
}

/// `cpeal selftest --only/--exclude`: how gpu-check.sh checks the candidate kernels apart from the defaults.
#[test]
fn selftest_filters_kernels_by_name_prefix() {
    let run = |filter: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cpeal"))
            .args(["selftest", "--device", "cuda-emu", "--family", "gemm"])
            .args(filter)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let kernels: Vec<String> = stdout
            .lines()
            .filter(|l| l.ends_with("  pass"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        kernels
    };
    let only = run(&["--only", "gemm_sm90_pp-,gemm_sm90_ppo-"]);
    assert!(!only.is_empty() && only.iter().all(|k| k.starts_with("gemm_sm90_pp")), "{only:?}");
    assert!(only.iter().any(|k| k.starts_with("gemm_sm90_ppo-")), "{only:?}");
    let rest = run(&["--exclude", "gemm_sm90_pp-,gemm_sm90_ppo-"]);
    let excluded = |k: &String| k.starts_with("gemm_sm90_pp-") || k.starts_with("gemm_sm90_ppo-");
    assert!(rest.iter().any(|k| k == "gemm_bf16") && !rest.iter().any(excluded), "{rest:?}");
    assert!(rest.iter().any(|k| k.starts_with("gemm_sm90_ppomc-")), "a prefix takes only what it names: {rest:?}");
}

//! The kernels under the `cuda-emu` device: every selftest case against its CPU reference, and the
//! emulator's own semantics (a missing barrier is caught, shuffles, votes, atomics, dynamic shared memory,
//! cp.async). Run with `cargo test --features cuda-emu --test gpu_emu`.
#![cfg(feature = "cuda-emu")]

use cpeal::gpu::{selftest, DType, GpuDevice, KernelArgs, LaunchConfig};

fn dev() -> GpuDevice {
    GpuDevice::emu().expect("the cuda-emu feature is on")
}

fn assert_family(name: &str, seed: u64) {
    let dev = dev();
    let cases = selftest::family(&dev, name);
    assert!(!cases.is_empty(), "no cases for {name}");
    let results = selftest::run(&dev, &cases, seed);
    let table = selftest::table(&results);
    for r in &results {
        assert!(
            r.pass,
            "{} {} failed (rel {:.3e} > {:.0e}, error {:?}):\n{table}",
            r.kernel, r.shape, r.rel_err, r.tol, r.error
        );
    }
}

#[test]
fn elementwise_matches_reference() {
    assert_family("elementwise", 1);
}

/// The activations' own accuracy, finer than the selftest's norm tolerance can see: the largest error over a
/// dense grid of f32 inputs, beyond the f32 rounding of the result (2 ulps), is within the approximation's
/// bound (a wrong digit in gelu_erf's fitted polynomial shows here first).
#[test]
fn activations_are_accurate_everywhere() {
    let dev = dev();
    let x: Vec<f32> = (0..=160_000).map(|i| i as f32 * 1e-4 - 8.0).collect();
    let xb = dev.upload(&x, DType::F32).unwrap();
    let y = selftest::poisoned(&dev, DType::F32, x.len()).unwrap();
    type Unary = fn(&GpuDevice, &cpeal::gpu::GpuBuffer, &cpeal::gpu::GpuBuffer) -> cpeal::Result<()>;
    type Case = (&'static str, Unary, fn(f64) -> f64, f64); // name, kernel, exact value, bound
    let cases: [Case; 2] = [
        ("gelu", cpeal::gpu::ops::elementwise::gelu, cpeal::gpu::reference::gelu1, 2e-7),
        ("quick_gelu", cpeal::gpu::ops::elementwise::quick_gelu, cpeal::gpu::reference::quick_gelu1, 2e-7),
    ];
    for (name, launch, exact, bound) in cases {
        launch(&dev, &xb, &y).unwrap();
        let got = dev.download(&y).unwrap();
        let (worst, at) = x
            .iter()
            .zip(&got)
            .map(|(&v, &g)| {
                let want = exact(v as f64);
                ((g as f64 - want).abs() - 2.0 * f32::EPSILON as f64 * want.abs(), v)
            })
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 || b.0.is_nan() { b } else { a });
        assert!(worst <= bound, "{name}: |error| {worst:.2e} at x = {at} (bound {bound:.0e}, beyond 2 ulps)");
    }
}

#[test]
fn layernorm_matches_reference() {
    assert_family("layernorm", 2);
}

#[test]
fn softmax_matches_reference() {
    assert_family("softmax", 3);
}

#[test]
fn gemm_matches_reference() {
    assert_family("gemm", 4);
}

#[test]
fn attention_matches_reference() {
    assert_family("attention", 5);
}

#[test]
fn patch_embed_matches_reference() {
    assert_family("patch_embed", 6);
}

#[test]
fn interp_matches_reference() {
    assert_family("interp", 7);
}

#[test]
fn pool_matches_reference() {
    assert_family("pool", 8);
}

#[test]
fn tokens_matches_reference() {
    assert_family("tokens", 9);
}

#[test]
fn select_matches_reference() {
    assert_family("select", 10);
}

fn reverse(kernel: &str, n: usize) -> (Vec<f32>, Vec<f32>) {
    let dev = dev();
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 + 1.0).collect();
    let xb = dev.upload(&x, DType::F32).unwrap();
    let yb = selftest::poisoned(&dev, DType::F32, n).unwrap();
    let mut args = KernelArgs::new();
    args.i32(n as i32).buf(&xb).buf(&yb);
    // SAFETY: probe_reverse_*(int n, const float* x, float* y) with n elements in x and y, one block of n threads.
    unsafe { dev.launch(kernel, LaunchConfig::linear(1, n as u32), &mut args) }.unwrap();
    (dev.download(&yb).unwrap(), x.into_iter().rev().collect())
}

#[test]
fn barrier_makes_shared_memory_exchange_correct() {
    for n in [64, 100, 256] {
        let (got, want) = reverse("probe_reverse_f32", n);
        assert_eq!(got, want, "n = {n}");
    }
}

#[test]
fn missing_barrier_gives_wrong_result_under_emu() {
    let (got, want) = reverse("probe_reverse_nosync_f32", 128);
    assert_ne!(got, want, "a kernel without its barrier must not pass under emulation");
}

/// A kernel reading past its buffer stops at the guard page after it, and the report names the kernel: the
/// test runs itself again as a child process that launches `probe_reverse_f32` over 256 threads with a
/// 4-value input, and reads the child's stderr.
#[cfg(unix)]
#[test]
fn a_kernel_reading_past_its_buffer_faults_and_is_named() {
    const CHILD: &str = "CPEAL_TEST_FAULT_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let dev = dev();
        let (x, y) = (dev.upload(&[1.0; 4], DType::F32).unwrap(), dev.alloc(DType::F32, 256).unwrap());
        let mut args = KernelArgs::new();
        args.i32(256).buf(&x).buf(&y);
        // SAFETY: deliberately wrong: x holds 4 values and the kernel reads 256; the child must die here.
        let _ = unsafe { dev.launch("probe_reverse_f32", LaunchConfig::linear(1, 256), &mut args) };
        std::process::exit(0); // not reached when the guard page works
    }
    let me = std::env::current_exe().unwrap();
    let name = "a_kernel_reading_past_its_buffer_faults_and_is_named";
    let out = std::process::Command::new(me)
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert!(out.status.signal().is_some(), "the child was not stopped by a fault: {:?}\n{stderr}", out.status);
    assert!(stderr.contains("cuda-emu: kernel probe_reverse_f32 touched memory outside its buffers"), "{stderr}");
}

/// A kernel that reads what a lower block of the same launch wrote fails under emulation: the blocks run last
/// first, so no block sees its predecessor's flag.
#[test]
fn blocks_run_in_an_order_a_kernel_cannot_rely_on() {
    let dev = dev();
    let blocks = 6;
    let (flags, seen) = (dev.alloc(DType::I32, blocks).unwrap(), dev.alloc(DType::I32, blocks).unwrap());
    let mut args = KernelArgs::new();
    args.buf(&flags).buf(&seen);
    // SAFETY: signature (int* flags, int* seen); both hold one word per block.
    unsafe { dev.launch("probe_block_order_f32", LaunchConfig::linear(blocks as u32, 32), &mut args) }.unwrap();
    let seen = dev.download_i32(&seen).unwrap();
    let in_order: Vec<i32> = (0..blocks as i32).collect(); // what index order would give
    assert_ne!(seen, in_order);
    assert!(seen[1..].iter().all(|&s| s == -1), "each block read its predecessor before it ran: {seen:?}");
}

#[test]
fn warp_shuffles_and_votes() {
    let dev = dev();
    let n = 80; // 3 warps of a 96-thread block; lanes past n read 0
    let x: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.5).collect();
    let xb = dev.upload(&x, DType::F32).unwrap();
    let out = selftest::poisoned(&dev, DType::F32, 6 * n).unwrap();
    let mut args = KernelArgs::new();
    args.i32(n as i32).buf(&xb).buf(&out);
    // SAFETY: probe_warp_f32(int n, const float* x, float* out) with 6·n outputs.
    unsafe { dev.launch("probe_warp_f32", LaunchConfig::linear(1, 96), &mut args) }.unwrap();
    let got = dev.download(&out).unwrap();
    let v = |i: usize| if i < n { x[i] } else { 0.0 };
    for i in 0..n {
        let (w, lane) = (i / 32 * 32, i % 32);
        let sum: f32 = (w..w + 32).map(v).sum();
        let ballot: u32 = (0..32).filter(|&l| v(w + l) > 0.0).map(|l| 1u32 << l).sum();
        let any = (w..w + 32).any(|j| v(j) > 2.0) as i32;
        let all = (w..w + 32).all(|j| v(j) > -2.0) as i32;
        let o = &got[6 * i..6 * i + 6];
        assert!((o[0] - sum).abs() < 1e-4, "sum lane {i}");
        assert_eq!(o[1], if lane < 31 { v(i + 1) } else { v(i) }, "down {i}");
        assert_eq!(o[2], if lane >= 3 { v(i - 3) } else { v(i) }, "up {i}");
        assert_eq!(o[3], v(w + 5), "broadcast {i}");
        assert_eq!(o[4], ballot as f32, "ballot {i}");
        assert_eq!(o[5], (any + 2 * all) as f32, "any/all {i}");
    }
}

#[test]
fn dynamic_shared_memory_reduction_and_atomics() {
    let dev = dev();
    let (n, block) = (1000usize, 128u32);
    let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 8.0).collect();
    let xb = dev.upload(&x, DType::F32).unwrap();
    let total = dev.upload(&[0.0], DType::F32).unwrap();
    let imax = dev.upload(&[-1e9], DType::I32).unwrap();
    let grid = n.div_ceil(block as usize) as u32;
    let mut args = KernelArgs::new();
    args.i32(n as i32).buf(&xb).buf(&total).buf(&imax);
    let cfg = LaunchConfig { grid: (grid, 1, 1), block: (block, 1, 1), shared_bytes: block * 4 };
    // SAFETY: probe_reduce_f32(int n, const float* x, float* total, int* imax), blockDim floats of dynamic smem.
    unsafe { dev.launch("probe_reduce_f32", cfg, &mut args) }.unwrap();
    let want_total: f64 = x.iter().map(|&v| v as f64).sum();
    let want_max = x.iter().map(|&v| (v * 1000.0) as i32).max().unwrap();
    assert!((dev.download(&total).unwrap()[0] as f64 - want_total).abs() < 1e-2);
    assert_eq!(dev.download(&imax).unwrap()[0], want_max as f32);
}

#[test]
fn cp_async_pipeline_copies() {
    let dev = dev();
    for n in [4usize, 2048, 5000] {
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 3.0).collect();
        let xb = dev.upload(&x, DType::F32).unwrap();
        let yb = selftest::poisoned(&dev, DType::F32, n).unwrap();
        let mut args = KernelArgs::new();
        args.i32(n as i32).buf(&xb).buf(&yb);
        // SAFETY: probe_cp_async_f32(int n, const float* x, float* y), n a multiple of 4, 2048 values a block.
        unsafe { dev.launch("probe_cp_async_f32", LaunchConfig::linear(n.div_ceil(2048) as u32, 256), &mut args) }
            .unwrap();
        assert_eq!(dev.download(&yb).unwrap(), x, "n = {n}");
    }
}

#[test]
fn missing_cp_async_wait_gives_wrong_result_under_emu() {
    let dev = dev();
    let n = 2048;
    let x: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
    let xb = dev.upload(&x, DType::F32).unwrap();
    let yb = selftest::poisoned(&dev, DType::F32, n).unwrap();
    let mut args = KernelArgs::new();
    args.i32(n as i32).buf(&xb).buf(&yb);
    // SAFETY: probe_cp_async_nowait_f32(int n, const float* x, float* y), 1024 values a block.
    unsafe { dev.launch("probe_cp_async_nowait_f32", LaunchConfig::linear(2, 256), &mut args) }.unwrap();
    assert_ne!(dev.download(&yb).unwrap(), x, "reads before cp.async.wait_group must not see the data");
}

/// A kernel built for 4 blocks per SM (on sm_80 and sm_90 alike) runs with the shared memory of a quarter of an
/// A100's SM (164 KiB, less 1 KiB kept per block), and fails to launch with 16 bytes more, naming the kernel, the
/// blocks it was built for and the SM; past a quarter of a Hopper SM (228 KiB) the message names sm_90.
#[test]
fn launch_bounds_blocks_per_sm_are_held_to_the_shared_memory() {
    let dev = dev();
    let n = 100usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
    let xb = dev.upload(&x, DType::F32).unwrap();
    let launch = |shared_bytes: u32| {
        let yb = selftest::poisoned(&dev, DType::F32, n).unwrap();
        let mut args = KernelArgs::new();
        args.i32(n as i32).buf(&xb).buf(&yb);
        let cfg = LaunchConfig { grid: (2, 1, 1), block: (64, 1, 1), shared_bytes };
        // SAFETY: probe_occupancy_f32(int n, const float* x, float* y), 64 values a block, 256 bytes of shared
        // memory used.
        unsafe { dev.launch("probe_occupancy_f32", cfg, &mut args) }.map(|()| dev.download(&yb).unwrap())
    };
    let quarter = |kib: u32| kib * 1024 / 4 - 1024;
    assert_eq!(launch(quarter(164)).unwrap(), x);
    for (shared, sm) in
        [(quarter(164) + 16, "an sm_80 SM"), (quarter(164) + 16, "an sm_80 SM"), (quarter(228) + 16, "an sm_90 SM")]
    {
        let err = launch(shared).unwrap_err().to_string();
        assert!(err.contains("probe_occupancy_f32") && err.contains("built for 4 blocks per SM"), "{err}");
        assert!(err.contains(sm), "{err}");
    }
}

#[test]
fn bad_input_is_an_error_naming_the_kernel() {
    let dev = dev();
    let x = dev.upload(&[1.0; 10], DType::Bf16).unwrap();
    let y = dev.alloc(DType::Bf16, 5).unwrap();
    let err = cpeal::gpu::ops::elementwise::gelu(&dev, &x, &y).unwrap_err().to_string();
    assert!(err.contains("gelu_bf16") && err.contains("`y`"), "{err}");
    let mut args = KernelArgs::new();
    // SAFETY: the kernel does not exist, so nothing runs.
    let err = unsafe { dev.launch("no_such_kernel", LaunchConfig::linear(1, 32), &mut args) }.unwrap_err();
    assert!(err.to_string().contains("no_such_kernel"), "{err}");
}

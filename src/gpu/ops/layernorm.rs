//! Launcher for `kernels/layernorm.cu`.

use super::{check, int, row_grid};
use crate::error::Result;
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// The kernel `layernorm` launches for these operands: the warp-per-row kernel for 16-bit rows of at most 1024
/// columns, a multiple of 8, on 16-byte aligned buffers; else the general one. An f32 `x` with 16-bit
/// parameters (an f32 residual stream) takes `layernorm_fwd_f32_<dtype>`.
pub fn kernel_for(cols: usize, x: &GpuBuffer, gamma: &GpuBuffer, beta: &GpuBuffer, y: &GpuBuffer) -> String {
    let dt = x.dtype();
    if gamma.dtype() != dt {
        return format!("layernorm_fwd_{}_{}", dt.suffix(), gamma.dtype().suffix());
    }
    let warp = warp_per_row(dt, cols, &[x, gamma, beta, y]);
    format!("{}_{}", if warp { "layernorm_warp" } else { "layernorm_fwd" }, dt.suffix())
}

/// y = LayerNorm(x)·gamma + beta over rows of `cols`; x, y: [rows, cols], gamma, beta: [cols]; gamma, beta and
/// y share a dtype, x has it too or is f32.
#[allow(clippy::too_many_arguments)]
pub fn layernorm(
    dev: &GpuDevice,
    rows: usize,
    cols: usize,
    x: &GpuBuffer,
    gamma: &GpuBuffer,
    beta: &GpuBuffer,
    y: &GpuBuffer,
    eps: f32,
) -> Result<()> {
    let dt = gamma.dtype();
    let kernel = kernel_for(cols, x, gamma, beta, y);
    check(&kernel, "x", x, x.dtype(), rows * cols)?;
    check(&kernel, "gamma", gamma, dt, cols)?;
    check(&kernel, "beta", beta, dt, cols)?;
    check(&kernel, "y", y, dt, rows * cols)?;
    let cfg = row_config(&kernel, kernel.starts_with("layernorm_warp"), rows, cols)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) // int rows
        .i32(int(&kernel, "cols", cols)?) // int cols
        .buf(x) //                           const T* x
        .buf(gamma) //                       const T* gamma
        .buf(beta) //                        const T* beta
        .buf(y) //                           T* y
        .f32(eps); //                        float eps
                   // SAFETY: sizes checked above; signature (int, int, const T*, const T*, const T*, T*, float).
    unsafe { dev.launch(&kernel, cfg, &mut args) }
}

/// stats[2r], stats[2r + 1] = the mean and 1/sqrt(var + eps) of row r of x [rows, cols] (16-bit), as f32: the
/// LayerNorm a GEMM folds into its epilogue (`Gemm::row_norm`). The same kernels as `layernorm`, by the same
/// rule (`layernorm_stats_warp_*` for rows of at most 1024 columns, a multiple of 8, on an aligned buffer).
pub fn row_stats(dev: &GpuDevice, rows: usize, cols: usize, x: &GpuBuffer, stats: &GpuBuffer, eps: f32) -> Result<()> {
    let dt = x.dtype();
    let warp = warp_per_row(dt, cols, &[x]);
    let kernel = format!("layernorm_stats_{}_{}", if warp { "warp" } else { "fwd" }, dt.suffix());
    if !matches!(dt, DType::Bf16 | DType::F16) {
        return Err(crate::error::Error::kernel(&kernel, format!("{dt:?} input; row statistics take bf16 or f16")));
    }
    check(&kernel, "x", x, dt, rows * cols)?;
    check(&kernel, "stats", stats, DType::F32, 2 * rows)?;
    let cfg = row_config(&kernel, warp, rows, cols)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) // int rows
        .i32(int(&kernel, "cols", cols)?) // int cols
        .buf(x) //                           const T* x
        .buf(stats) //                       float* stats
        .f32(eps); //                        float eps
                   // SAFETY: sizes checked above; signature (int, int, const T*, float*, float).
    unsafe { dev.launch(&kernel, cfg, &mut args) }
}

/// Whether the warp-per-row kernels apply: 16-bit rows of at most 1024 columns, a multiple of 8, on 16-byte
/// aligned buffers (the row is held in registers and moved in 16-byte vectors).
fn warp_per_row(dt: DType, cols: usize, buffers: &[&GpuBuffer]) -> bool {
    matches!(dt, DType::Bf16 | DType::F16) && cols % 8 == 0 && cols <= 1024 && buffers.iter().all(|b| b.ptr() % 16 == 0)
}

/// A warp per row in blocks of 4 rows, or a block per row (128 threads, 256 past 1024 columns).
fn row_config(kernel: &str, warp: bool, rows: usize, cols: usize) -> Result<LaunchConfig> {
    Ok(if warp {
        LaunchConfig::linear(row_grid(kernel, rows.div_ceil(4))?, 128)
    } else {
        LaunchConfig::linear(row_grid(kernel, rows)?, if cols <= 1024 { 128 } else { 256 })
    })
}

/// stats[2r], stats[2r + 1] = the mean and 1/sqrt(var + eps) of row r of a [rows, cols] matrix, from the partial
/// statistics a GEMM wrote for it (`Gemm::row_partials`, windows of `width` columns).
pub fn merge_partials(
    dev: &GpuDevice,
    rows: usize,
    cols: usize,
    width: usize,
    partials: &GpuBuffer,
    stats: &GpuBuffer,
    eps: f32,
) -> Result<()> {
    let kernel = "layernorm_stats_merge_f32";
    if width == 0 {
        return Err(crate::error::Error::kernel(kernel, "partial width 0"));
    }
    check(kernel, "partials", partials, DType::F32, 2 * rows * cols.div_ceil(width))?;
    check(kernel, "stats", stats, DType::F32, 2 * rows)?;
    let cfg = LaunchConfig::linear(row_grid(kernel, rows.div_ceil(128))?, 128);
    let mut args = KernelArgs::new();
    args.i32(int(kernel, "rows", rows)?) //   int rows
        .i32(int(kernel, "cols", cols)?) //   int cols
        .i32(int(kernel, "width", width)?) // int width
        .buf(partials) //                      const float* partials
        .buf(stats) //                         float* stats
        .f32(eps); //                          float eps
                   // SAFETY: sizes checked above; signature (int, int, int, const float*, float*, float).
    unsafe { dev.launch(kernel, cfg, &mut args) }
}

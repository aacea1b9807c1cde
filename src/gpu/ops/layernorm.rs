//! Launcher for `kernels/layernorm.cu`.

use super::{check, int, row_grid};
use crate::error::Result;
use crate::gpu::{GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// y = LayerNorm(x)·gamma + beta over rows of `cols`; x, y: [rows, cols], gamma, beta: [cols], one dtype.
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
    let dt = x.dtype();
    let kernel = format!("layernorm_fwd_{}", dt.suffix());
    check(&kernel, "x", x, dt, rows * cols)?;
    check(&kernel, "gamma", gamma, dt, cols)?;
    check(&kernel, "beta", beta, dt, cols)?;
    check(&kernel, "y", y, dt, rows * cols)?;
    let block = if cols <= 1024 { 128 } else { 256 };
    let cfg = LaunchConfig::linear(row_grid(&kernel, rows)?, block);
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

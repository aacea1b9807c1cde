//! Launchers for `kernels/softmax.cu`: row softmax (optionally causal) and row argmax.

use super::{check, int, row_grid};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// y[r,:] = softmax(scale·x[r,:]) for x, y: [rows, cols]. With `causal`, rows are [.., q_len, cols] score rows
/// and query q keeps keys j <= q + cols − q_len (masked entries are 0). `rows` must be a multiple of q_len.
#[allow(clippy::too_many_arguments)]
pub fn softmax(
    dev: &GpuDevice,
    rows: usize,
    cols: usize,
    q_len: usize,
    x: &GpuBuffer,
    y: &GpuBuffer,
    scale: f32,
    causal: bool,
) -> Result<()> {
    let dt = x.dtype();
    let kernel = format!("softmax_{}", dt.suffix());
    check(&kernel, "x", x, dt, rows * cols)?;
    check(&kernel, "y", y, dt, rows * cols)?;
    if q_len == 0 || rows % q_len != 0 || q_len > cols {
        return Err(Error::kernel(&kernel, format!("q_len {q_len} must divide rows {rows} and be <= cols {cols}")));
    }
    let cfg = LaunchConfig::linear(row_grid(&kernel, rows)?, 128);
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) // int rows
        .i32(int(&kernel, "cols", cols)?) // int cols
        .i32(int(&kernel, "q_len", q_len)?) // int q_len
        .buf(x) //                           const T* x
        .buf(y) //                           T* y
        .f32(scale) //                       float scale
        .i32(causal as i32); //              int causal
                             // SAFETY: sizes checked; signature (int, int, int, const T*, T*, float, int).
    unsafe { dev.launch(&kernel, cfg, &mut args) }
}

/// idx[r] = argmax_j x[r, j] (first on ties); x: [rows, cols] f32, idx: [rows] i32.
pub fn argmax(dev: &GpuDevice, rows: usize, cols: usize, x: &GpuBuffer, idx: &GpuBuffer) -> Result<()> {
    let kernel = "argmax_f32";
    check(kernel, "x", x, DType::F32, rows * cols)?;
    check(kernel, "idx", idx, DType::I32, rows)?;
    let cfg = LaunchConfig::linear(row_grid(kernel, rows)?, 32);
    let mut args = KernelArgs::new();
    args.i32(int(kernel, "rows", rows)?) // int rows
        .i32(int(kernel, "cols", cols)?) // int cols
        .buf(x) //                          const float* x
        .buf(idx); //                       int* idx
                   // SAFETY: sizes checked; signature (int, int, const float*, int*).
    unsafe { dev.launch(kernel, cfg, &mut args) }
}

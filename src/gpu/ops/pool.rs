//! Launchers for `kernels/pool.cu`: gather one token per batch item, mean over a token range.

use super::{check, int, stride_grid};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// y[b, :] = x[b, idx[b], :] for x [b, t, d], idx [b] (i32, clamped to 0 … t−1), y [b, d].
pub fn gather_rows(
    dev: &GpuDevice,
    b: usize,
    t: usize,
    d: usize,
    x: &GpuBuffer,
    idx: &GpuBuffer,
    y: &GpuBuffer,
) -> Result<()> {
    let dt = x.dtype();
    let kernel = format!("gather_rows_{}", dt.suffix());
    check(&kernel, "x", x, dt, b * t * d)?;
    check(&kernel, "idx", idx, DType::I32, b)?;
    check(&kernel, "y", y, dt, b * d)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "B", b)?) //  int B
        .i32(int(&kernel, "Tn", t)?) // int Tn
        .i32(int(&kernel, "D", d)?) //  int D
        .buf(x) //                      const T* x
        .buf(idx) //                    const int* idx
        .buf(y); //                     T* y
                 // SAFETY: sizes checked; signature (3 × int, const T*, const int*, T*).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(b * d), 256), &mut args) }
}

/// y[b, :] = mean of x[b, start..end, :] for x [b, t, d], y [b, d].
#[allow(clippy::too_many_arguments)]
pub fn mean_tokens(
    dev: &GpuDevice,
    b: usize,
    t: usize,
    d: usize,
    (start, end): (usize, usize),
    x: &GpuBuffer,
    y: &GpuBuffer,
) -> Result<()> {
    let dt = x.dtype();
    let kernel = format!("mean_tokens_{}", dt.suffix());
    if start >= end || end > t {
        return Err(Error::kernel(&kernel, format!("token range {start}..{end} outside 0..{t} or empty")));
    }
    check(&kernel, "x", x, dt, b * t * d)?;
    check(&kernel, "y", y, dt, b * d)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "B", b)?) //        int B
        .i32(int(&kernel, "Tn", t)?) //       int Tn
        .i32(int(&kernel, "D", d)?) //        int D
        .i32(int(&kernel, "start", start)?) // int start
        .i32(int(&kernel, "end", end)?) //    int end
        .buf(x) //                            const T* x
        .buf(y); //                           T* y
                 // SAFETY: sizes checked; signature (5 × int, const T*, T*).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(b * d), 256), &mut args) }
}

//! Launchers for `kernels/select.cu`: uncertainty scores from logits and coreset's per-centre distance update
//! of before `ops::coreset` (the top-k of a score column: `ops::topk`; BADGE: `ops::badge`).

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Columns of the `uncertainty_scores_*` output: entropy, least confidence, margin.
pub const SCORE_COLS: usize = 3;
/// Values a lane of `uncertainty_scores_*` folds in at once (the kernel's `UNC_CHUNK`).
pub const UNC_CHUNK: usize = 16;
/// Threads in a block of `uncertainty_scores_*`.
const UNC_BLOCK: usize = 128;

/// Blocks for one warp per row with `warps` warps a block.
fn warp_grid(kernel: &str, rows: usize, warps: usize) -> Result<u32> {
    if rows == 0 || rows > i32::MAX as usize {
        return Err(Error::kernel(kernel, format!("{rows} rows")));
    }
    Ok(rows.div_ceil(warps) as u32)
}

/// Values a lane of `uncertainty_scores_*` is given, about (`uncertainty_lanes`).
pub const UNC_LANE_VALUES: usize = 128;

/// Lanes of `uncertainty_scores_*` that share one row of `c` logits: about `UNC_LANE_VALUES` values a lane, a
/// power of two from 1 to 32 (for small `c` a warp scores several rows, so no lane idles). A row's fixed cost
/// (index math, the shuffle tree, the scores) is some 300 warp instructions: at 16 values a lane, as until
/// 2026-12-07, it was most of the issue time of a 1000-class row (1.1 instructions a value, which matches the
/// 1.2 ms measured for 10⁶ bf16 rows on an H100); at 128, about 0.6.
pub fn uncertainty_lanes(c: usize) -> usize {
    c.div_ceil(UNC_LANE_VALUES).next_power_of_two().min(32)
}

/// out[r] = (entropy −Σp ln p, least confidence 1 − max p, margin −(p₁ − p₂)) of p = softmax(logits[r, :]),
/// in f32; NaN in all three for a row holding NaN or ±Inf. logits: [rows, c] (bf16/f16/f32), out: [rows, 3] f32.
pub fn uncertainty_scores(dev: &GpuDevice, rows: usize, c: usize, logits: &GpuBuffer, out: &GpuBuffer) -> Result<()> {
    uncertainty_scores_in_lanes(dev, rows, c, logits, out, uncertainty_lanes(c))
}

/// `uncertainty_scores` with `lanes` lanes a row (a power of two from 1 to 32), for benchmarks that compare
/// lane counts; [`device_score_error`](crate::select::gpu::device_score_error) assumes `uncertainty_lanes`.
pub fn uncertainty_scores_in_lanes(
    dev: &GpuDevice,
    rows: usize,
    c: usize,
    logits: &GpuBuffer,
    out: &GpuBuffer,
    lanes: usize,
) -> Result<()> {
    let dt = logits.dtype();
    let kernel = format!("uncertainty_scores_{}", dt.suffix());
    if c == 0 {
        return Err(Error::kernel(&kernel, "`logits` has 0 classes"));
    }
    if !lanes.is_power_of_two() || lanes > 32 {
        return Err(Error::kernel(&kernel, format!("{lanes} lanes a row; a power of two from 1 to 32")));
    }
    check(&kernel, "logits", logits, dt, rows * c)?;
    check(&kernel, "out", out, DType::F32, rows * SCORE_COLS)?;
    let cfg = LaunchConfig::linear(warp_grid(&kernel, rows, UNC_BLOCK / lanes)?, UNC_BLOCK as u32);
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) // int rows
        .i32(int(&kernel, "C", c)?) //       int C
        .buf(logits) //                      const T* logits
        .buf(out) //                         float* out
        .i32(lanes as i32); //               int lanes
                            // SAFETY: sizes checked; signature (int, int, const T*, float*, int).
    unsafe { dev.launch(&kernel, cfg, &mut args) }
}

/// mindist[i] = min(mindist[i], ‖x_i − x_centre‖²) in f32, and mindist[centre] = −1 (a chosen centre: negative
/// entries never change, so `argmax` never picks them). features: [n, d], mindist: [n] f32.
pub fn mindist_update(
    dev: &GpuDevice,
    n: usize,
    d: usize,
    features: &GpuBuffer,
    mindist: &GpuBuffer,
    centre: usize,
) -> Result<()> {
    let dt = features.dtype();
    let kernel = format!("mindist_update_{}", dt.suffix());
    if centre >= n {
        return Err(Error::kernel(&kernel, format!("centre {centre} outside 0..{n}")));
    }
    check(&kernel, "features", features, dt, n * d)?;
    check(&kernel, "mindist", mindist, DType::F32, n)?;
    let cfg = LaunchConfig::linear(warp_grid(&kernel, n, 8)?, 256);
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "N", n)?) //            int N
        .i32(int(&kernel, "D", d)?) //            int D
        .buf(features) //                         const T* features
        .buf(mindist) //                          float* mindist
        .i32(int(&kernel, "centre", centre)?); // int centre
                                               // SAFETY: sizes checked; signature (int, int, const T*, float*, int).
    unsafe { dev.launch(&kernel, cfg, &mut args) }
}

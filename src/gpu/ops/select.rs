//! Launchers for `kernels/select.cu`: uncertainty scores from logits, an exact top-k (per-slice candidates
//! merged on the device), and the per-centre distance updates of coreset and BADGE.

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Rows ranked by one block of `topk_partial_f32`, and candidates merged by one block of `topk_merge_f32` (the
/// kernels' `TOPK_SLICE`).
pub const TOPK_SLICE: usize = 2048;
/// Largest k the top-k kernels take; a caller wanting more ranks the downloaded scores on the host.
pub const TOPK_MAX: usize = 1024;
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

/// Where `topk` reads its scores: row i's score is `scores[i·stride + col]`.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub stride: usize,
    pub col: usize,
}

/// k outside 1..=TOPK_MAX is an error naming `kernel`.
fn check_k(kernel: &str, k: usize) -> Result<()> {
    if k == 0 || k > TOPK_MAX {
        return Err(Error::kernel(kernel, format!("k = {k} outside 1..={TOPK_MAX}")));
    }
    Ok(())
}

/// Per-block candidates: block b writes the top min(k, its rows) of rows [b·TOPK_SLICE, …) best first (ties
/// to the lower index; index −1 marks an unused slot) to out_idx/out_val[b·k …]. Rows with skip[i] ≠ 0 take
/// no part; NaN ranks as −∞. out_idx (i32) and out_val (f32) hold `topk_blocks(n)·k` elements.
#[allow(clippy::too_many_arguments)]
pub fn topk_partial(
    dev: &GpuDevice,
    n: usize,
    k: usize,
    column: Column,
    scores: &GpuBuffer,
    skip: Option<&GpuBuffer>,
    out_idx: &GpuBuffer,
    out_val: &GpuBuffer,
) -> Result<()> {
    let kernel = "topk_partial_f32";
    check_k(kernel, k)?;
    if column.col >= column.stride.max(1) {
        return Err(Error::kernel(kernel, format!("column {} of stride {}", column.col, column.stride)));
    }
    let blocks = topk_blocks(n);
    if n == 0 {
        return Err(Error::kernel(kernel, "0 rows"));
    }
    check(kernel, "scores", scores, DType::F32, (n - 1) * column.stride + column.col + 1)?;
    if let Some(s) = skip {
        check(kernel, "skip", s, DType::I32, n)?;
    }
    check(kernel, "out_idx", out_idx, DType::I32, blocks * k)?;
    check(kernel, "out_val", out_val, DType::F32, blocks * k)?;
    let mut args = KernelArgs::new();
    args.i32(int(kernel, "n", n)?) //                    int n
        .i32(int(kernel, "k", k)?) //                    int k
        .i32(int(kernel, "stride", column.stride)?) //   int stride
        .i32(int(kernel, "col", column.col)?) //         int col
        .buf(scores) //                                  const float* scores
        .opt_buf(skip) //                                const int* skip (nullable)
        .buf(out_idx) //                                 int* out_idx
        .buf(out_val); //                                float* out_val
                       // SAFETY: sizes checked; signature (4 × int, const float*, const int*, int*, float*).
    unsafe { dev.launch(kernel, LaunchConfig::linear(blocks as u32, 256), &mut args) }
}

/// Blocks of `topk_partial_f32` for n rows.
pub fn topk_blocks(n: usize) -> usize {
    n.div_ceil(TOPK_SLICE).max(1)
}

/// Runs of k candidates one block of `topk_merge_f32` merges.
pub fn topk_merge_fan_in(k: usize) -> usize {
    TOPK_SLICE / k.next_power_of_two()
}

/// Merge `runs` runs of k candidates (each best first, index −1 = unused) in groups of `topk_merge_fan_in(k)`:
/// run b of out_idx/out_val gets the best k of group b, best first, ties to the lower index. The outputs hold
/// `runs.div_ceil(fan_in)·k` elements.
pub fn topk_merge(
    dev: &GpuDevice,
    runs: usize,
    k: usize,
    in_idx: &GpuBuffer,
    in_val: &GpuBuffer,
    out_idx: &GpuBuffer,
    out_val: &GpuBuffer,
) -> Result<()> {
    let kernel = "topk_merge_f32";
    check_k(kernel, k)?;
    if runs == 0 {
        return Err(Error::kernel(kernel, "0 runs"));
    }
    let blocks = runs.div_ceil(topk_merge_fan_in(k));
    check(kernel, "in_idx", in_idx, DType::I32, runs * k)?;
    check(kernel, "in_val", in_val, DType::F32, runs * k)?;
    check(kernel, "out_idx", out_idx, DType::I32, blocks * k)?;
    check(kernel, "out_val", out_val, DType::F32, blocks * k)?;
    let mut args = KernelArgs::new();
    args.i32(int(kernel, "runs", runs)?) // int runs
        .i32(int(kernel, "k", k)?) //       int k
        .buf(in_idx) //                     const int* in_idx
        .buf(in_val) //                     const float* in_val
        .buf(out_idx) //                    int* out_idx
        .buf(out_val); //                   float* out_val
                       // SAFETY: sizes checked; signature (int, int, const int*, const float*, int*, float*).
    unsafe { dev.launch(kernel, LaunchConfig::linear(blocks as u32, 256), &mut args) }
}

/// The top-k rows by score, best first, ties to the lower index, skipped rows left out (fewer than k when
/// fewer rows take part): `topk_partial_f32` ranks each slice, `topk_merge_f32` merges the slices' candidates
/// on the device until one run is left, and only those k pairs are downloaded.
pub fn topk(
    dev: &GpuDevice,
    n: usize,
    k: usize,
    column: Column,
    scores: &GpuBuffer,
    skip: Option<&GpuBuffer>,
) -> Result<Vec<(usize, f32)>> {
    check_k("topk_partial_f32", k)?;
    let mut runs = topk_blocks(n);
    let (mut idx, mut val) = (dev.alloc(DType::I32, runs * k)?, dev.alloc(DType::F32, runs * k)?);
    topk_partial(dev, n, k, column, scores, skip, &idx, &val)?;
    if runs > 1 {
        let fan_in = topk_merge_fan_in(k);
        let size = runs.div_ceil(fan_in) * k;
        let (mut idx2, mut val2) = (dev.alloc(DType::I32, size)?, dev.alloc(DType::F32, size)?);
        while runs > 1 {
            topk_merge(dev, runs, k, &idx, &val, &idx2, &val2)?;
            runs = runs.div_ceil(fan_in);
            std::mem::swap(&mut idx, &mut idx2);
            std::mem::swap(&mut val, &mut val2);
        }
    }
    let (idx, val) = (dev.download_i32(&idx.slice(0, k)?)?, dev.download(&val.slice(0, k)?)?);
    Ok(idx.into_iter().zip(val).take_while(|&(i, _)| i >= 0).map(|(i, v)| (i as usize, v)).collect())
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

/// The inputs of `badge_d2_update_*`: q [n, c] f32 (p − onehot(argmax p)), its row norms², the features h
/// [n, d] and their row norms² (f32).
pub struct BadgeInputs<'a> {
    pub n: usize,
    pub c: usize,
    pub d: usize,
    pub q: &'a GpuBuffer,
    pub qnorm2: &'a GpuBuffer,
    pub h: &'a GpuBuffer,
    pub hnorm2: &'a GpuBuffer,
}

/// d2[i] = min(d2[i], max(0, ‖q_i‖²‖h_i‖² + ‖q_c‖²‖h_c‖² − 2⟨q_i, q_c⟩⟨h_i, h_c⟩)) for c = `centre`, and
/// d2[centre] = −1 (BADGE's squared gradient-embedding distance, never forming q ⊗ h). d2: [n] f32.
pub fn badge_d2_update(dev: &GpuDevice, x: &BadgeInputs, d2: &GpuBuffer, centre: usize) -> Result<()> {
    let dt = x.h.dtype();
    let kernel = format!("badge_d2_update_{}", dt.suffix());
    if centre >= x.n {
        return Err(Error::kernel(&kernel, format!("centre {centre} outside 0..{}", x.n)));
    }
    check(&kernel, "q", x.q, DType::F32, x.n * x.c)?;
    check(&kernel, "qnorm2", x.qnorm2, DType::F32, x.n)?;
    check(&kernel, "h", x.h, dt, x.n * x.d)?;
    check(&kernel, "hnorm2", x.hnorm2, DType::F32, x.n)?;
    check(&kernel, "d2", d2, DType::F32, x.n)?;
    let cfg = LaunchConfig::linear(warp_grid(&kernel, x.n, 8)?, 256);
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "N", x.n)?) //          int N
        .i32(int(&kernel, "C", x.c)?) //          int C
        .i32(int(&kernel, "D", x.d)?) //          int D
        .buf(x.q) //                              const float* q
        .buf(x.qnorm2) //                         const float* qnorm2
        .buf(x.h) //                              const T* h
        .buf(x.hnorm2) //                         const float* hnorm2
        .buf(d2) //                               float* d2
        .i32(int(&kernel, "centre", centre)?); // int centre
                                               // SAFETY: sizes checked; signature (3 × int, 2 × const float*, const T*, const float*, float*, int).
    unsafe { dev.launch(&kernel, cfg, &mut args) }
}

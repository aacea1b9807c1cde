//! Launchers for `kernels/select.cu`: uncertainty scores from logits, per-block top-k (merged on the host),
//! and the per-centre distance updates of coreset and BADGE.

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Rows ranked by one block of `topk_partial_f32` (the kernel's `TOPK_SLICE`).
pub const TOPK_SLICE: usize = 2048;
/// Largest k `topk_partial_f32` takes; a caller wanting more ranks the downloaded scores on the host.
pub const TOPK_MAX: usize = 1024;
/// Columns of the `uncertainty_scores_*` output: entropy, least confidence, margin.
pub const SCORE_COLS: usize = 3;

/// Blocks for one warp per row with `warps` warps a block.
fn warp_grid(kernel: &str, rows: usize, warps: usize) -> Result<u32> {
    if rows == 0 || rows > i32::MAX as usize {
        return Err(Error::kernel(kernel, format!("{rows} rows")));
    }
    Ok(rows.div_ceil(warps) as u32)
}

/// out[r] = (entropy −Σp ln p, least confidence 1 − max p, margin −(p₁ − p₂)) of p = softmax(logits[r, :]),
/// in f32; NaN in all three for a row holding NaN or ±Inf. logits: [rows, c] (bf16/f16/f32), out: [rows, 3] f32.
pub fn uncertainty_scores(dev: &GpuDevice, rows: usize, c: usize, logits: &GpuBuffer, out: &GpuBuffer) -> Result<()> {
    let dt = logits.dtype();
    let kernel = format!("uncertainty_scores_{}", dt.suffix());
    if c == 0 {
        return Err(Error::kernel(&kernel, "`logits` has 0 classes"));
    }
    check(&kernel, "logits", logits, dt, rows * c)?;
    check(&kernel, "out", out, DType::F32, rows * SCORE_COLS)?;
    let cfg = LaunchConfig::linear(warp_grid(&kernel, rows, 4)?, 128);
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) // int rows
        .i32(int(&kernel, "C", c)?) //       int C
        .buf(logits) //                      const T* logits
        .buf(out); //                        float* out
                   // SAFETY: sizes checked; signature (int, int, const T*, float*).
    unsafe { dev.launch(&kernel, cfg, &mut args) }
}

/// Where `topk` reads its scores: row i's score is `scores[i·stride + col]`.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub stride: usize,
    pub col: usize,
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
    if k == 0 || k > TOPK_MAX {
        return Err(Error::kernel(kernel, format!("k = {k} outside 1..={TOPK_MAX}")));
    }
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

/// The top-k rows by score, best first, ties to the lower index, skipped rows left out (fewer than k when
/// fewer rows take part): `topk_partial_f32` ranks each block's slice on the device, then the host merges the
/// blocks' k candidates each (a k-way merge of best-first runs; only `blocks·k` pairs are downloaded).
pub fn topk(
    dev: &GpuDevice,
    n: usize,
    k: usize,
    column: Column,
    scores: &GpuBuffer,
    skip: Option<&GpuBuffer>,
) -> Result<Vec<(usize, f32)>> {
    let blocks = topk_blocks(n);
    let (idx, val) = (dev.alloc(DType::I32, blocks * k)?, dev.alloc(DType::F32, blocks * k)?);
    topk_partial(dev, n, k, column, scores, skip, &idx, &val)?;
    let (idx, val) = (dev.download(&idx)?, dev.download(&val)?);
    let mut heads = vec![0usize; blocks]; // next unread candidate of each block
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let mut best: Option<(f32, i64, usize)> = None;
        for (b, &h) in heads.iter().enumerate() {
            if h >= k || idx[b * k + h] < 0.0 {
                continue;
            }
            let (v, i) = (val[b * k + h], idx[b * k + h] as i64);
            if best.is_none_or(|(bv, bi, _)| v > bv || (v == bv && i < bi)) {
                best = Some((v, i, b));
            }
        }
        let Some((v, i, b)) = best else { break };
        heads[b] += 1;
        out.push((i as usize, v));
    }
    Ok(out)
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

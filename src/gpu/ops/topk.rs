//! Launchers for `kernels/topk.cu`: the exact top-k of one score column on the device, best first, ties to the
//! lower index. Up to `TOPK_SLICE` rows, one block sorts them (`topk_block_f32`). Beyond, a radix select finds
//! the k-th largest score in three histogram passes of 11 bits, the k rows are gathered and one block sorts
//! them: seven launches whatever n and k (until 2026-12-07: a bitonic sort of every 2048-row slice, then
//! log₂ of the slices' merges), and only the k results go to the host.

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Rows one block of `topk_block_f32` sorts, and rows a block of the radix passes reads (`TOPK_SLICE`).
pub const TOPK_SLICE: usize = 2048;
/// Largest k the top-k kernels take; a caller wanting more ranks the downloaded scores on the host.
pub const TOPK_MAX: usize = 1024;
/// Threads in a block of every top-k kernel (`TOPK_THREADS`).
const THREADS: u32 = 256;
/// Words of the radix select's state (`RADIX_STATE`) and of its histogram (`RADIX_BINS`).
const RADIX_STATE: usize = 8;
const RADIX_BINS: usize = 2048;

/// Where `topk` reads its scores: row i's score is `scores[i·stride + col]`.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub stride: usize,
    pub col: usize,
}

/// What every kernel that reads the column is given first: (int n, int k, int stride, int col,
/// const float* scores, const int* skip).
struct Rows<'a> {
    n: usize,
    k: usize,
    column: Column,
    scores: &'a GpuBuffer,
    skip: Option<&'a GpuBuffer>,
}

impl<'a> Rows<'a> {
    /// Checked: k in 1..=TOPK_MAX, the column inside its stride, and buffers long enough for n rows.
    fn new(n: usize, k: usize, column: Column, scores: &'a GpuBuffer, skip: Option<&'a GpuBuffer>) -> Result<Self> {
        let kernel = "topk";
        if k == 0 || k > TOPK_MAX {
            return Err(Error::kernel(kernel, format!("k = {k} outside 1..={TOPK_MAX}")));
        }
        if column.col >= column.stride.max(1) {
            return Err(Error::kernel(kernel, format!("column {} of stride {}", column.col, column.stride)));
        }
        if n == 0 || n > i32::MAX as usize {
            return Err(Error::kernel(kernel, format!("{n} rows")));
        }
        check(kernel, "scores", scores, DType::F32, (n - 1) * column.stride + column.col + 1)?;
        if let Some(s) = skip {
            check(kernel, "skip", s, DType::I32, n)?;
        }
        Ok(Rows { n, k, column, scores, skip })
    }

    /// Blocks of the kernels that read the column: one a slice.
    fn blocks(&self) -> usize {
        self.n.div_ceil(TOPK_SLICE)
    }

    /// `kernel` over the column's slices (`grid` blocks), with `rest` packed after the column's arguments.
    fn launch(&self, dev: &GpuDevice, kernel: &str, grid: usize, rest: &[&GpuBuffer], pass: Option<i32>) -> Result<()> {
        let mut args = KernelArgs::new();
        args.i32(int(kernel, "n", self.n)?)
            .i32(int(kernel, "k", self.k)?)
            .i32(int(kernel, "stride", self.column.stride)?)
            .i32(int(kernel, "col", self.column.col)?)
            .buf(self.scores)
            .opt_buf(self.skip);
        rest.iter().for_each(|b| {
            args.buf(b);
        });
        if let Some(p) = pass {
            args.i32(p);
        }
        // SAFETY: Rows::new checked the column's buffers; callers size `rest` as the kernel's contract says, in
        // the order of its C signature (after the six column arguments).
        unsafe { dev.launch(kernel, LaunchConfig::linear(grid as u32, THREADS), &mut args) }
    }
}

/// The top-k rows by score, best first, ties to the lower index, skipped rows (skip[i] ≠ 0) left out (fewer
/// than k when fewer rows take part). NaN ranks as −∞ (and is reported as −∞), −0 as +0.
pub fn topk(
    dev: &GpuDevice,
    n: usize,
    k: usize,
    column: Column,
    scores: &GpuBuffer,
    skip: Option<&GpuBuffer>,
) -> Result<Vec<(usize, f32)>> {
    let rows = Rows::new(n, k, column, scores, skip)?;
    let (idx, val) = if n <= TOPK_SLICE { sort_one_block(dev, &rows)? } else { radix_select(dev, &rows)? };
    let (idx, val) = (dev.download_i32(&idx)?, dev.download(&val)?);
    Ok(idx.into_iter().zip(val).take_while(|&(i, _)| i >= 0).map(|(i, v)| (i as usize, v)).collect())
}

/// `topk_block_f32`: the k best of n ≤ TOPK_SLICE rows (index −1 in unused slots).
fn sort_one_block(dev: &GpuDevice, rows: &Rows) -> Result<(GpuBuffer, GpuBuffer)> {
    let (idx, val) = (dev.alloc(DType::I32, rows.k)?, dev.alloc(DType::F32, rows.k)?);
    rows.launch(dev, "topk_block_f32", 1, &[&idx, &val], None)?;
    Ok((idx, val))
}

/// The radix select: init, three passes, tie counts, gather, sort; one I32 and one F32 workspace hold the
/// state, the histogram, each block's tie count, the candidates and the result.
fn radix_select(dev: &GpuDevice, rows: &Rows) -> Result<(GpuBuffer, GpuBuffer)> {
    let (k, blocks) = (rows.k, rows.blocks());
    let words = dev.alloc(DType::I32, RADIX_STATE + RADIX_BINS + blocks + 2 * k)?;
    let values = dev.alloc(DType::F32, 2 * k)?;
    let state = words.slice(0, RADIX_STATE)?;
    let hist = words.slice(RADIX_STATE, RADIX_BINS)?;
    let ties = words.slice(RADIX_STATE + RADIX_BINS, blocks)?;
    let (cand_idx, out_idx) = (words.slice(words.len() - 2 * k, k)?, words.slice(words.len() - k, k)?);
    let (cand_val, out_val) = (values.slice(0, k)?, values.slice(k, k)?);
    let mut args = KernelArgs::new();
    args.buf(&state).buf(&hist);
    // SAFETY: signature (unsigned* state, unsigned* hist); both as long as RADIX_STATE and RADIX_BINS.
    unsafe { dev.launch("topk_radix_init_f32", LaunchConfig::linear(1, THREADS), &mut args)? };
    for pass in 0..3 {
        rows.launch(dev, "topk_radix_pass_f32", blocks, &[&state, &hist], Some(pass))?;
    }
    rows.launch(dev, "topk_radix_ties_f32", blocks, &[&state, &ties], None)?;
    rows.launch(dev, "topk_radix_gather_f32", blocks, &[&state, &ties, &cand_idx, &cand_val], None)?;
    let mut args = KernelArgs::new();
    args.i32(int("topk_radix_sort_f32", "k", k)?).buf(&state).buf(&cand_idx).buf(&cand_val).buf(&out_idx).buf(&out_val);
    // SAFETY: signature (int k, const unsigned* state, const int* cand_idx, const float* cand_val, int* out_idx,
    // float* out_val); the candidates and outputs hold k each, and the gather took at most k.
    unsafe { dev.launch("topk_radix_sort_f32", LaunchConfig::linear(1, THREADS), &mut args)? };
    Ok((out_idx, out_val))
}

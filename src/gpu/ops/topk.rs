//! Launchers for `kernels/topk.cu`: the exact top-k of one score column on the device, best first, ties to the
//! lower index. Up to `TOPK_SLICE` rows and k ≤ `DEVICE_SORT_MAX`, one block sorts them (`topk_block_f32`).
//! Otherwise a radix select finds the k-th largest score in three histogram passes of 11 bits and the k rows
//! are gathered: six launches whatever n and k (until 2026-12-07: a bitonic sort of every 2048-row slice, then
//! log₂ of the slices' merges, for k ≤ 1024 only). A seventh, one block, sorts up to `DEVICE_SORT_MAX` of them;
//! a larger k's candidates are sorted by tiles of `TOPK_SLICE` and ⌈log₂ tiles⌉ merges (until 2026-12-07, on
//! the host). Only the k results go to the host either way.
//! [`kth_score`] stops after the passes: the k-th best score alone, for any k, in four launches.

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Rows one block of `topk_block_f32` sorts, and rows a block of the radix passes reads (`TOPK_SLICE`).
pub const TOPK_SLICE: usize = 2048;
/// Largest k whose results one block sorts on the device (`topk_block_f32`, `topk_radix_sort_f32`).
pub const DEVICE_SORT_MAX: usize = 1024;
/// Words of the radix state: the threshold key after the last pass (`ST_PREFIX`), and 1 once no more than k
/// rows take part (`ST_SETTLED`).
const ST_PREFIX: usize = 0;
const ST_SETTLED: usize = 5;
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
    /// Checked: k ≥ 1, the column inside its stride, and buffers long enough for n rows (k above n is cut to n).
    fn new(n: usize, k: usize, column: Column, scores: &'a GpuBuffer, skip: Option<&'a GpuBuffer>) -> Result<Self> {
        let kernel = "topk";
        if k == 0 {
            return Err(Error::kernel(kernel, "k = 0"));
        }
        let k = k.min(n);
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
    if n <= TOPK_SLICE && rows.k <= DEVICE_SORT_MAX {
        let (idx, val) = (dev.alloc(DType::I32, rows.k)?, dev.alloc(DType::F32, rows.k)?);
        rows.launch(dev, "topk_block_f32", 1, &[&idx, &val], None)?;
        return download_sorted(dev, &idx, &val);
    }
    let work = radix_select(dev, &rows)?;
    if rows.k <= DEVICE_SORT_MAX {
        sort_on_device(dev, &work, rows.k)
    } else {
        sort_by_merges(dev, &work, rows.k)
    }
}

/// `topk_tile_sort_f32` and `topk_merge_f32`: the candidates of a k past one block's sort, sorted on the device
/// (tiles of `TOPK_SLICE`, then ⌈log₂ tiles⌉ merges of pairs of runs), then the download of the k best.
fn sort_by_merges(dev: &GpuDevice, work: &RadixWork, k: usize) -> Result<Vec<(usize, f32)>> {
    let len = k.div_ceil(TOPK_SLICE) * TOPK_SLICE;
    let runs = [
        (dev.alloc(DType::I32, len)?, dev.alloc(DType::F32, len)?),
        (dev.alloc(DType::I32, len)?, dev.alloc(DType::F32, len)?),
    ];
    let mut args = KernelArgs::new();
    args.i32(int("topk_tile_sort_f32", "k", k)?)
        .buf(&work.state)
        .buf(&work.cand_idx)
        .buf(&work.cand_val)
        .buf(&runs[0].0)
        .buf(&runs[0].1);
    let tiles = (len / TOPK_SLICE) as u32;
    // SAFETY: signature (int k, const unsigned* state, const int* cand_idx, const float* cand_val, int* out_idx,
    // float* out_val); the candidates hold k, the outputs `tiles` · TOPK_SLICE, and the gather took at most k.
    unsafe { dev.launch("topk_tile_sort_f32", LaunchConfig::linear(tiles, THREADS), &mut args)? };
    let (mut from, mut width) = (0, TOPK_SLICE);
    while width < len {
        let ((in_idx, in_val), (out_idx, out_val)) = (&runs[from], &runs[1 - from]);
        let mut args = KernelArgs::new();
        args.i32(int("topk_merge_f32", "len", len)?)
            .i32(width as i32)
            .buf(in_idx)
            .buf(in_val)
            .buf(out_idx)
            .buf(out_val);
        // SAFETY: signature (int len, int width, const int* in_idx, const float* in_val, int* out_idx,
        // float* out_val); all four hold len, and width < len.
        unsafe {
            dev.launch(
                "topk_merge_f32",
                LaunchConfig::linear(len.div_ceil(THREADS as usize) as u32, THREADS),
                &mut args,
            )?
        };
        (from, width) = (1 - from, 2 * width);
    }
    download_sorted(dev, &runs[from].0.slice(0, k)?, &runs[from].1.slice(0, k)?)
}

/// k sorted results as (row, score) pairs, up to the first unused slot (index −1, or `i32::MAX` from the
/// merges' padding).
fn download_sorted(dev: &GpuDevice, idx: &GpuBuffer, val: &GpuBuffer) -> Result<Vec<(usize, f32)>> {
    let (idx, val) = (dev.download_i32(idx)?, dev.download(val)?);
    let used = |i: i32| i >= 0 && i != i32::MAX;
    Ok(idx.into_iter().zip(val).take_while(|&(i, _)| used(i)).map(|(i, v)| (i as usize, v)).collect())
}

/// The radix select's device memory the sorts read: its state and the k candidates' indices (views of one I32
/// workspace that also holds the histogram and each block's tie count), and the candidates' scores.
struct RadixWork {
    state: GpuBuffer,
    cand_idx: GpuBuffer,
    cand_val: GpuBuffer,
}

/// `topk_radix_sort_f32`: one block sorts the k ≤ DEVICE_SORT_MAX candidates, then the download.
fn sort_on_device(dev: &GpuDevice, work: &RadixWork, k: usize) -> Result<Vec<(usize, f32)>> {
    let (out_idx, out_val) = (dev.alloc(DType::I32, k)?, dev.alloc(DType::F32, k)?);
    let mut args = KernelArgs::new();
    args.i32(int("topk_radix_sort_f32", "k", k)?)
        .buf(&work.state)
        .buf(&work.cand_idx)
        .buf(&work.cand_val)
        .buf(&out_idx)
        .buf(&out_val);
    // SAFETY: signature (int k, const unsigned* state, const int* cand_idx, const float* cand_val, int* out_idx,
    // float* out_val); the candidates and outputs hold k ≤ DEVICE_SORT_MAX each, and the gather took at most k.
    unsafe { dev.launch("topk_radix_sort_f32", LaunchConfig::linear(1, THREADS), &mut args)? };
    download_sorted(dev, &out_idx, &out_val)
}

/// The k-th best score of the column among the rows taking part (NaN ranked as −∞, −0 as +0), or None when no
/// more than k rows take part (each of them is then among the best k). Nothing is gathered or sorted: the radix
/// select's init and three passes, then one download of its 8-word state. This is what the exact device path
/// of `cpeal select` needs (it rescores every row near the k-th score on the host).
pub fn kth_score(
    dev: &GpuDevice,
    n: usize,
    k: usize,
    column: Column,
    scores: &GpuBuffer,
    skip: Option<&GpuBuffer>,
) -> Result<Option<f32>> {
    let rows = Rows::new(n, k, column, scores, skip)?;
    let words = dev.alloc(DType::I32, RADIX_STATE + RADIX_BINS)?;
    let state = words.slice(0, RADIX_STATE)?;
    radix_passes(dev, &rows, &state, &words.slice(RADIX_STATE, RADIX_BINS)?)?;
    let state = dev.download_i32(&state)?;
    Ok((state[ST_SETTLED] == 0).then(|| score_of_key(state[ST_PREFIX] as u32)))
}

/// The score whose `order_key` (kernels/topk.cu) is `key`: the inverse of the key's sign flip.
fn score_of_key(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 { key & 0x7fff_ffff } else { !key })
}

/// The radix select's init and its three histogram passes: afterwards the state holds the k-th best key
/// (ST_PREFIX) and how many rows equal to it are taken (ST_NEED) of how many (ST_TIES), or ST_SETTLED.
fn radix_passes(dev: &GpuDevice, rows: &Rows, state: &GpuBuffer, hist: &GpuBuffer) -> Result<()> {
    let mut args = KernelArgs::new();
    args.buf(state).buf(hist);
    // SAFETY: signature (unsigned* state, unsigned* hist); both as long as RADIX_STATE and RADIX_BINS.
    unsafe { dev.launch("topk_radix_init_f32", LaunchConfig::linear(1, THREADS), &mut args)? };
    for pass in 0..3 {
        rows.launch(dev, "topk_radix_pass_f32", rows.blocks(), &[state, hist], Some(pass))?;
    }
    Ok(())
}

/// The radix select up to the gather: init, three passes, tie counts, gather. ST_TAKEN of the state counts the
/// candidates (min(k, rows taking part)), in any order.
fn radix_select(dev: &GpuDevice, rows: &Rows) -> Result<RadixWork> {
    let (k, blocks) = (rows.k, rows.blocks());
    let words = dev.alloc(DType::I32, RADIX_STATE + k + RADIX_BINS + blocks)?;
    let cand_val = dev.alloc(DType::F32, k)?;
    let state = words.slice(0, RADIX_STATE)?;
    let cand_idx = words.slice(RADIX_STATE, k)?;
    let hist = words.slice(RADIX_STATE + k, RADIX_BINS)?;
    let ties = words.slice(RADIX_STATE + k + RADIX_BINS, blocks)?;
    radix_passes(dev, rows, &state, &hist)?;
    rows.launch(dev, "topk_radix_ties_f32", blocks, &[&state, &ties], None)?;
    rows.launch(dev, "topk_radix_gather_f32", blocks, &[&state, &ties, &cand_idx, &cand_val], None)?;
    Ok(RadixWork { state, cand_idx, cand_val })
}

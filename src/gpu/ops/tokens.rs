//! Launchers for `kernels/tokens.cu`: CLS + position assembly, token embedding lookup, row L2 normalisation
//! and column copies (feature concatenation).

use super::{check, int, row_grid, stride_grid};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// y[b] = [cls + pos[0]; registers (r rows, no position); patches[b] + pos[1..]] for patches [b, n, d],
/// cls [d], pos [n+1, d], registers [r, d] (DINOv2 with registers; None when r = 0), y [b, 1+r+n, d].
#[allow(clippy::too_many_arguments)]
pub fn assemble_tokens(
    dev: &GpuDevice,
    b: usize,
    n: usize,
    d: usize,
    patches: &GpuBuffer,
    cls: &GpuBuffer,
    pos: &GpuBuffer,
    registers: Option<(usize, &GpuBuffer)>,
    y: &GpuBuffer,
) -> Result<()> {
    let dt = patches.dtype();
    let kernel = format!("assemble_tokens_{}", dt.suffix());
    let r = registers.map_or(0, |(r, _)| r);
    let len = b * (1 + r + n) * d;
    check(&kernel, "patches", patches, dt, b * n * d)?;
    check(&kernel, "cls", cls, dt, d)?;
    check(&kernel, "pos", pos, dt, (n + 1) * d)?;
    if let Some((r, reg)) = registers {
        check(&kernel, "registers", reg, dt, r * d)?;
    }
    check(&kernel, "y", y, dt, len)?;
    int(&kernel, "b·(1+r+n)·d", len)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "B", b)?) //      int B
        .i32(int(&kernel, "N", n)?) //      int N
        .i32(int(&kernel, "R", r)?) //      int R
        .i32(int(&kernel, "D", d)?) //      int D
        .buf(patches) //                    const T* patches
        .buf(cls) //                        const T* cls
        .buf(pos) //                        const T* pos
        .opt_buf(registers.map(|(_, g)| g)) // const T* reg (null when R = 0)
        .buf(y); //                         T* y
                 // SAFETY: sizes checked; signature (4 × int, 4 × const T*, T*).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(len), 256), &mut args) }
}

/// y[r, :] = table[ids[r], :] + pos[r % t, :] for ids [rows] (i32), table [vocab, d], pos [>= t, d],
/// y [rows, d] in the table's dtype or f32 (`embedding_<table>_f32`: the start of an f32 residual stream). An id
/// outside 0 … vocab−1 writes NaN in its row (the table is never read out of bounds).
#[allow(clippy::too_many_arguments)]
pub fn embedding(
    dev: &GpuDevice,
    rows: usize,
    t: usize,
    d: usize,
    ids: &GpuBuffer,
    table: &GpuBuffer,
    vocab: usize,
    pos: &GpuBuffer,
    y: &GpuBuffer,
) -> Result<()> {
    let dt = table.dtype();
    let kernel = match y.dtype() {
        dy if dy == dt => format!("embedding_{}", dt.suffix()),
        dy => format!("embedding_{}_{}", dt.suffix(), dy.suffix()),
    };
    if t == 0 {
        return Err(Error::kernel(&kernel, "sequence length t = 0"));
    }
    check(&kernel, "ids", ids, DType::I32, rows)?;
    check(&kernel, "table", table, dt, vocab * d)?;
    check(&kernel, "pos", pos, dt, t * d)?;
    check(&kernel, "y", y, y.dtype(), rows * d)?;
    int(&kernel, "rows·d", rows * d)?;
    int(&kernel, "vocab·d", vocab * d)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) //   int rows
        .i32(int(&kernel, "Tn", t)?) //        int Tn
        .i32(int(&kernel, "D", d)?) //         int D
        .i32(int(&kernel, "vocab", vocab)?) // int vocab
        .buf(ids) //                           const int* ids
        .buf(table) //                         const T* table
        .buf(pos) //                           const T* pos
        .buf(y); //                            Y* y
                 // SAFETY: sizes checked (ids outside the table are not read); signature (4 × int, const int*,
                 // 2 × const T*, Y*). A dtype pair with no kernel is a lookup error.
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(rows * d), 256), &mut args) }
}

/// y[r, :] = x[r, :] / max(‖x[r, :]‖₂, FLT_MIN) for x, y [rows, d] (may be the same buffer).
pub fn l2_normalize(dev: &GpuDevice, rows: usize, d: usize, x: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    let dt = x.dtype();
    let kernel = format!("l2_normalize_{}", dt.suffix());
    check(&kernel, "x", x, dt, rows * d)?;
    check(&kernel, "y", y, dt, rows * d)?;
    int(&kernel, "rows·d", rows * d)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) // int rows
        .i32(int(&kernel, "D", d)?) //        int D
        .buf(x) //                            const T* x
        .buf(y); //                           T* y
                 // SAFETY: sizes checked; one block of 128 threads per row; signature (2 × int, const T*, T*).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(row_grid(&kernel, rows)?, 128), &mut args) }
}

/// y[r, offset + j] = x[r, j] for j < d_src: x [rows, d_src] into columns offset … offset+d_src−1 of
/// y [rows, d_dst].
pub fn copy_cols(
    dev: &GpuDevice,
    rows: usize,
    d_src: usize,
    x: &GpuBuffer,
    d_dst: usize,
    offset: usize,
    y: &GpuBuffer,
) -> Result<()> {
    let dt = x.dtype();
    let kernel = format!("copy_cols_{}", dt.suffix());
    if offset + d_src > d_dst {
        return Err(Error::kernel(&kernel, format!("columns {offset}..{} outside 0..{d_dst}", offset + d_src)));
    }
    check(&kernel, "x", x, dt, rows * d_src)?;
    check(&kernel, "y", y, dt, rows * d_dst)?;
    int(&kernel, "rows·d_dst", rows * d_dst)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "rows", rows)?) //     int rows
        .i32(int(&kernel, "d_src", d_src)?) //   int d_src
        .i32(int(&kernel, "d_dst", d_dst)?) //   int d_dst
        .i32(int(&kernel, "offset", offset)?) // int offset
        .buf(x) //                               const T* x
        .buf(y); //                              T* y
                 // SAFETY: sizes and the column range checked; signature (4 × int, const T*, T*).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(rows * d_src), 256), &mut args) }
}

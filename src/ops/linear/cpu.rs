//! CPU reference for `linear`. With AVX2/FMA: the `sgemm` kernel over Wᵀ packed into panels (once per weight
//! when the caller keeps the packing, else per call), the epilogue applied to each tile in registers (a tanh
//! epilogue, the pooler's, in a pass after). Otherwise: one gemm-crate call per rayon row block reading W through
//! transposed strides, then one parallel epilogue pass.

use crate::error::Result;

use super::{Epilogue, LoraTerm};
use crate::ops::matmul::{matmul, Layout};
use crate::ops::par_rows;
use crate::ops::sgemm::{self, Fused, PackedB};

pub(super) fn linear(
    x: &[f32],
    w: &[f32],
    packed: Option<&PackedB>,
    (m, n, k): (usize, usize, usize),
    e: &Epilogue,
) -> Result<Vec<f32>> {
    let bias = e.bias.map(|t| t.cpu_slice()).transpose()?;
    let scale = e.layer_scale.map(|t| t.cpu_slice()).transpose()?;
    let residual = e.residual.map(|t| t.cpu_slice()).transpose()?;
    let fused = Fused { bias, activation: e.activation, scale, residual };
    let mut out = if sgemm::available() {
        let local;
        let b = match packed {
            Some(p) if p.n() == n && p.k() == k => p,
            _ => {
                local = PackedB::from_weight_t(w, n, k);
                &local
            }
        };
        if fused.supported() && e.row_norm.is_none() && e.lora.is_empty() {
            return Ok(sgemm::matmul_new(x, m, b, &fused));
        }
        sgemm::matmul_new(x, m, b, &Fused::NONE)
    } else {
        let mut out = vec![0f32; m * n];
        matmul_xwt(&mut out, x, w, m, n, k);
        out
    };
    for term in e.lora {
        add_lora(&mut out, x, term, m, n, k)?;
    }
    let row_norm = e.row_norm.map(|r| Ok::<_, crate::error::Error>((r.stats.cpu_slice()?, r.col_sum.cpu_slice()?)));
    let row_norm = row_norm.transpose()?;
    par_rows(&mut out, n, |r, row| {
        if let Some((stats, col_sum)) = row_norm {
            let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
            row.iter_mut().zip(col_sum).for_each(|(v, c)| *v = rstd * (*v - mean * c));
        }
        if let Some(b) = bias {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
        e.activation.apply_slice(row);
        if let Some(s) = scale {
            row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
        }
        if let Some(res) = residual {
            row.iter_mut().zip(&res[r * n..][..n]).for_each(|(v, x)| *v += x);
        }
    });
    Ok(out)
}

/// out[:, start..start+len] += scale·(x·Aᵀ)·Bᵀ.
fn add_lora(out: &mut [f32], x: &[f32], term: &LoraTerm, m: usize, n: usize, k: usize) -> Result<()> {
    let (r, len) = (term.a.shape()[0], term.b.shape()[0]);
    let x = &term.input(x);
    let u = matmul(x, Layout::RowMajor, term.a.cpu_slice()?, Layout::Transposed, (m, k, r));
    let delta = matmul(&u, Layout::RowMajor, term.b.cpu_slice()?, Layout::Transposed, (m, r, len));
    par_rows(out, n, |i, row| {
        let d = &delta[i * len..][..len];
        row[term.start..][..len].iter_mut().zip(d).for_each(|(o, d)| *o += term.scale * d);
    });
    Ok(())
}

/// out[M,N] = x[M,K] · w[N,K]ᵀ, split into one row block per rayon thread. (The gemm crate's own threading
/// was measured slower with 2 threads than its single-threaded kernel on a 2-core machine; each block here
/// runs that single-threaded kernel, at the cost of packing W once per block.)
fn matmul_xwt(out: &mut [f32], x: &[f32], w: &[f32], m: usize, n: usize, k: usize) {
    use rayon::prelude::*;
    assert!(out.len() == m * n && x.len() == m * k && w.len() == n * k);
    let blocks = rayon::current_num_threads().max(1);
    let rows_per_block = m.div_ceil(blocks).max(if m * n * k < 1 << 18 { m } else { 16 });
    out.par_chunks_mut(rows_per_block * n.max(1))
        .zip(x.par_chunks(rows_per_block * k.max(1)))
        .for_each(|(o, xs)| matmul_xwt_serial(o, xs, w, o.len() / n.max(1), n, k));
}
fn matmul_xwt_serial(out: &mut [f32], x: &[f32], w: &[f32], m: usize, n: usize, k: usize) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    // SAFETY: the caller's slices hold [M,N], [M,K] and [N,K] row-major; the strides below describe exactly
    // those (W read as its transpose) and stay within them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,          // dst column stride
            n as isize, // dst row stride
            false,      // do not read dst
            x.as_ptr(),
            1,          // lhs column stride
            k as isize, // lhs row stride
            w.as_ptr(),
            k as isize, // rhs column stride: column j of Wᵀ is row j of W
            1,          // rhs row stride
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

//! CPU reference for `linear`: one gemm call (rayon-parallel, SIMD micro-kernels from the `gemm` crate) reading
//! W `[N, K]` through transposed strides, then one parallel epilogue pass.

use crate::error::Result;

use super::Epilogue;
use crate::ops::par_rows;

pub(super) fn linear(
    x: &[f32],
    w: &[f32],
    m: usize,
    n: usize,
    k: usize,
    e: &Epilogue,
) -> Result<Vec<f32>> {
    let mut out = vec![0f32; m * n];
    matmul_xwt(&mut out, x, w, m, n, k);
    let bias = e.bias.map(|t| t.cpu_slice()).transpose()?;
    let scale = e.layer_scale.map(|t| t.cpu_slice()).transpose()?;
    let residual = e.residual.map(|t| t.cpu_slice()).transpose()?;
    par_rows(&mut out, n, |r, row| {
        if let Some(b) = bias {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
        e.activation.apply_slice(row);
        if let Some(s) = scale {
            row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
        }
        if let Some(res) = residual {
            row.iter_mut()
                .zip(&res[r * n..][..n])
                .for_each(|(v, x)| *v += x);
        }
    });
    Ok(out)
}

/// out[M,N] = x[M,K] · w[N,K]ᵀ.
pub(crate) fn matmul_xwt(out: &mut [f32], x: &[f32], w: &[f32], m: usize, n: usize, k: usize) {
    assert!(out.len() == m * n && x.len() == m * k && w.len() == n * k);
    let threads = rayon::current_num_threads();
    let parallelism = if m * n * k < 64 * 64 * 64 || threads == 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    // SAFETY: the lengths are checked above; dst/lhs/rhs describe row-major [M,N], [M,K] and the transpose of
    // row-major [N,K] with the strides given, all within their slices.
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
            parallelism,
        );
    }
}

//! A plain matrix product over the gemm crate, reading either operand as stored or as its transpose (no copy):
//! the products of the backward passes, whose shapes and layouts vary too much for one packed kernel.

use std::borrow::Cow;

use super::sgemm::{self, Fused, PackedB};

/// How a matrix operand is stored: as its own row-major values, or as the row-major values of its transpose.
#[derive(Clone, Copy)]
pub enum Layout {
    RowMajor,
    Transposed,
}

/// a·b with a `[m, k]` and b `[k, n]` each read through `Layout`, giving `[m, n]`. Large products run on
/// `ops::sgemm` (b packed for the call; a transposed a copied first); small ones, or where that kernel is not
/// available, on the gemm crate reading both through strides.
pub fn matmul(a: &[f32], a_layout: Layout, b: &[f32], b_layout: Layout, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    assert!(a.len() == m * k && b.len() == k * n);
    // The packed kernel's tiles are 6 rows by 16 columns: skinny products (a LoRA rank) stay on the gemm crate.
    if sgemm::available() && m * n * k >= 1 << 18 && m.min(n).min(k) >= 16 {
        return with_sgemm(a, a_layout, b, b_layout, (m, k, n));
    }
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    // (row stride, column stride) of each operand as the logical [rows, cols] matrix.
    let strides = |layout, rows: usize, cols: usize| match layout {
        Layout::RowMajor => (cols as isize, 1),
        Layout::Transposed => (1, rows as isize),
    };
    let ((a_rs, a_cs), (b_rs, b_cs)) = (strides(a_layout, m, k), strides(b_layout, k, n));
    // SAFETY: out is [m, n] row-major; a and b hold m·k and k·n values, and the strides above address each
    // logical element exactly once within them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            if m * n * k < 1 << 18 {
                gemm::Parallelism::None
            } else {
                gemm::Parallelism::Rayon(rayon::current_num_threads())
            },
        );
    }
    out
}

fn with_sgemm(a: &[f32], a_layout: Layout, b: &[f32], b_layout: Layout, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let a_rows = match a_layout {
        Layout::RowMajor => Cow::Borrowed(a),
        Layout::Transposed => Cow::Owned(transpose(a, k, m)),
    };
    // B[p, j] = b[p·rs_k + j·rs_n].
    let (rs_k, rs_n) = match b_layout {
        Layout::RowMajor => (n, 1),
        Layout::Transposed => (1, k),
    };
    let mut packed = PackedB::default();
    // SAFETY: with these strides every B[p, j] (p < k, j < n) lies inside b's k·n values.
    unsafe { packed.pack(b.as_ptr(), k, n, rs_k, rs_n) };
    sgemm::matmul_new(&a_rows, m, &packed, &Fused::NONE)
}

/// The `[cols, rows]` transpose of a row-major `[rows, cols]` matrix, in tiles that stay in cache.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0f32; x.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..rows.min(r0 + TILE) {
                for c in c0..cols.min(c0 + TILE) {
                    out[c * rows + r] = x[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{rand_vec, rel_err};

    #[test]
    fn every_layout_matches_float64_on_both_paths() {
        // The first shape takes the gemm crate, the others ops::sgemm (where available).
        for (m, k, n, seed) in [(5, 7, 3, 1), (70, 65, 129, 2), (257, 64, 257, 3)] {
            let (a, b) = (rand_vec(m * k, seed, 1.0), rand_vec(k * n, seed + 1, 1.0));
            let at = transpose(&a, m, k);
            let bt = transpose(&b, k, n);
            let want: Vec<f64> =
                (0..m * n).map(|e| (0..k).map(|p| a[e / n * k + p] as f64 * b[p * n + e % n] as f64).sum()).collect();
            for (al, a_values) in [(Layout::RowMajor, &a), (Layout::Transposed, &at)] {
                for (bl, b_values) in [(Layout::RowMajor, &b), (Layout::Transposed, &bt)] {
                    let err = rel_err(&matmul(a_values, al, b_values, bl, (m, k, n)), &want);
                    assert!(err < 1e-6, "m={m} k={k} n={n}: {err}");
                }
            }
        }
    }
}

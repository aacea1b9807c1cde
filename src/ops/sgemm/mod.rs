//! f32 GEMM for the CPU backend: C[M, N] = A[M, K] · B[K, N] with B packed ahead of time into 16-column panels
//! (`PackedB`), an AVX2 + FMA 6 × 16 micro-kernel (`avx2.rs`), cache blocking (blocks of `MC` rows of A read in
//! place from L2, each B panel slice reused by all their micro-tiles) and rows split over rayon's threads. An
//! optional epilogue runs on each finished tile while it is still in L1.
//!
//! Weights are packed once (`nn::Linear` keeps the packed copy next to the tensor); attention packs its K and V
//! per head. On CPUs without AVX2/FMA (or with `CPEAL_SGEMM=off`) `available()` is false and callers use the
//! `gemm` crate instead.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod pack;
#[cfg(test)]
mod tests;

pub use pack::PackedB;

/// Rows of a micro-tile.
pub(crate) const MR: usize = 6;
/// Columns of a micro-tile, and of a packed B panel (one 64-byte line per k).
pub(crate) const NR: usize = 16;
/// Longest pass over K. A K up to this is done in one pass (C written once); a longer one in equal passes of at
/// most `KC_SPLIT`. Measured on Zen 3 (32 KiB L1, 512 KiB L2): one long pass beats 256-deep ones, which reload
/// and store C tiles once per pass.
const KC_MAX: usize = 1024;
const KC_SPLIT: usize = 768;
/// Rows of A per block: with `KC_SPLIT`, 72 rows × 768 × 4 bytes = 221 KiB stay in L2 while each B panel slice
/// is reused by 12 micro-tiles.
const MC: usize = 72;

/// Depth of each pass over K.
fn k_pass(k: usize) -> usize {
    if k <= KC_MAX {
        k
    } else {
        k.div_ceil(k.div_ceil(KC_SPLIT))
    }
}

/// Whether the AVX2 kernel runs on this CPU (and is not switched off with `CPEAL_SGEMM=off`).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let off = std::env::var("CPEAL_SGEMM").is_ok_and(|v| v == "off" || v == "0");
        #[cfg(target_arch = "x86_64")]
        let cpu = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let cpu = false;
        cpu && !off
    })
}

/// Called once per finished tile row: `(row, first column, values)`; the values are final and may be changed.
pub(crate) type Epilogue<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

/// A raw pointer that rayon tasks share; each task touches a disjoint set of rows.
#[derive(Clone, Copy)]
struct Shared<T>(T);
// SAFETY: used only for pointers into buffers whose rows are split between tasks without overlap.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

/// out[M, N] = x[M, K] · B, rows split over rayon's threads; `epilogue` (if any) sees row indices of `out`.
/// Requires `available()`.
pub fn matmul(out: &mut [f32], x: &[f32], m: usize, b: &PackedB, epilogue: Option<Epilogue>) {
    use rayon::prelude::*;
    let (n, k) = (b.n(), b.k());
    assert!(available() && out.len() == m * n && x.len() == m * k, "sgemm::matmul: bad sizes or no AVX2");
    if m == 0 || n == 0 {
        return;
    }
    let tasks = if m * n * k < 1 << 18 { 1 } else { rayon::current_num_threads().clamp(1, m.div_ceil(MR)) };
    let rows = m.div_ceil(tasks).next_multiple_of(MR);
    let (o, a) = (Shared(out.as_mut_ptr()), Shared(x.as_ptr()));
    (0..m.div_ceil(rows)).into_par_iter().for_each(|t| {
        let (o, a) = (o, a);
        let (r0, r1) = (t * rows, ((t + 1) * rows).min(m));
        // SAFETY: rows r0..r1 of x and out lie inside the slices checked above; tasks own disjoint rows.
        unsafe { gemm_rows(r1 - r0, a.0.add(r0 * k), k, b, o.0.add(r0 * n), n, r0, epilogue) }
    });
}

/// C[m, N] (row stride `ldc`) = A[m, K] (row stride `lda`, unit column stride) · B on the calling thread. A is
/// read in place (only a ragged last group of rows is copied). The epilogue sees row indices offset by `row0`.
///
/// # Safety
/// `available()` must be true; `a` must be readable for `m` rows of K values `lda` apart and `c` writable for
/// `m` rows of N values `ldc` apart, not overlapping `a`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_rows(
    m: usize,
    a: *const f32,
    lda: usize,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    row0: usize,
    epilogue: Option<Epilogue>,
) {
    #[cfg(target_arch = "x86_64")]
    gemm_rows_x86(m, a, lda, b, c, ldc, row0, epilogue);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, a, lda, b, c, ldc, row0, epilogue);
        unreachable!("sgemm::available() is false off x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_rows_x86(
    m: usize,
    a: *const f32,
    lda: usize,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    row0: usize,
    epilogue: Option<Epilogue>,
) {
    use avx2::{kernel_6x16, ASource};
    let (n, k) = (b.n(), b.k());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            let row = std::slice::from_raw_parts_mut(c.add(i * ldc), n);
            row.fill(0.0);
            if let Some(e) = epilogue {
                e(row0 + i, 0, row);
            }
        }
        return;
    }
    let kc_max = k_pass(k);
    // The last m % 6 rows, packed into one zero-padded panel per pass (6 rows read in place would run past A).
    let full = m - m % MR;
    let mut tail = vec![0f32; if full < m { MR * kc_max } else { 0 }];
    let mut tile = [0f32; MR * NR];
    for pc in (0..k).step_by(kc_max) {
        let kc = kc_max.min(k - pc);
        let (first, last) = (pc == 0, pc + kc == k);
        if full < m {
            pack::pack_a_panel(&mut tail[..MR * kc], a.add(full * lda + pc), lda, m - full, kc);
        }
        for ic in (0..m).step_by(MC) {
            let mc = MC.min(m - ic);
            for jr in 0..n.div_ceil(NR) {
                let (j0, nr) = (jr * NR, NR.min(n - jr * NR));
                let bp = b.panel(jr).add(pc * NR);
                for ir in (ic..ic + mc).step_by(MR) {
                    let mr = MR.min(m - ir);
                    let (ap, src) = if ir < full {
                        (a.add(ir * lda + pc), ASource::Rows(lda))
                    } else {
                        (tail.as_ptr(), ASource::Packed)
                    };
                    let cp = c.add(ir * ldc + j0);
                    if mr == MR && nr == NR {
                        kernel_6x16(kc, ap, src, bp, cp, ldc, !first);
                    } else {
                        // Edge tile: compute all 6 × 16 into `tile`, then store or add the valid part.
                        kernel_6x16(kc, ap, src, bp, tile.as_mut_ptr(), NR, false);
                        for r in 0..mr {
                            let dst = std::slice::from_raw_parts_mut(cp.add(r * ldc), nr);
                            let t = &tile[r * NR..][..nr];
                            if first {
                                dst.copy_from_slice(t);
                            } else {
                                dst.iter_mut().zip(t).for_each(|(d, t)| *d += t);
                            }
                        }
                    }
                    if let (true, Some(e)) = (last, epilogue) {
                        for r in 0..mr {
                            e(row0 + ir + r, j0, std::slice::from_raw_parts_mut(cp.add(r * ldc), nr));
                        }
                    }
                }
            }
        }
    }
}

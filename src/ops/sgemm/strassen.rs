//! One level of Strassen's algorithm over the 6 × 16 kernel: C = A · B as seven half-size products instead of
//! eight, for the big GEMMs of a batch (the kernel already runs at the FMA peak, so only fewer multiplications
//! make it faster). B is a weight: its seven quadrant sums are packed once (`PackedB::strassen_parts`); the sums
//! of A's quadrants are made per block of rows (`block_rows`), each just before its product; each product goes
//! straight into its one or two blocks of C (`Output::second`), and each block of C gets the epilogue with its
//! last product.
//!
//! With A = [A11 A12; A21 A22] (rows halved, K halved), B likewise (K halved, N halved):
//! M1 = (A11+A22)(B11+B22), M2 = (A21+A22)B11, M3 = A11(B12−B22), M4 = A22(B21−B11), M5 = (A11+A12)B22,
//! M6 = (A21−A11)(B11+B12), M7 = (A12−A22)(B21+B22); C11 = M1+M4−M5+M7, C12 = M3+M5, C21 = M2+M4,
//! C22 = M1−M2+M3+M6. An odd last row of A is done by the ordinary kernel.

use rayon::prelude::*;

use super::{gemm_rows, gemm_rows_to, m_block, Epilogue, Output, PackedB, SecondMode, Shared, KC_MAX, MR, NR};

/// The B side of M1..M7 as (row half, column half, sign) terms over B's quadrants.
pub(super) const B_TERMS: [&[(usize, usize, f32)]; 7] = [
    &[(0, 0, 1.0), (1, 1, 1.0)],
    &[(0, 0, 1.0)],
    &[(0, 1, 1.0), (1, 1, -1.0)],
    &[(1, 0, 1.0), (0, 0, -1.0)],
    &[(1, 1, 1.0)],
    &[(0, 0, 1.0), (0, 1, 1.0)],
    &[(1, 0, 1.0), (1, 1, 1.0)],
];

/// Smallest M, N and K for which Strassen is used by default: below these the extra passes over A and C cost
/// more than the eighth of the multiplications saved (measured on the ViT-B/16 and DINOv2-S/14 shapes at batch
/// 1–8 on Zen 3; `cargo bench --bench ops` times batch 8 with and without `CPEAL_STRASSEN=off`).
const MIN_M: usize = 384;
const MIN_NK: usize = 256;

/// Rows of each half of C per block (`block_rows`) when one of B's quadrant sums is over `LARGE_PART` bytes
/// (more than an L2 holds next to the block's A operands): then each sum is streamed from L3 once per block and
/// product, and blocks of up to `LARGE_PART_ROWS` rows, instead of the kernel's `m_block`, make that up to 5
/// times rarer. Measured on Zen 4 (1 MiB L2), ViT-B/16's qkv, fc1 and fc2 at batch 8 (sums of 1.8–2.4 MB):
/// 72-row blocks 190–204 GFLOP/s-equivalent on two threads, 200-row blocks 199–216, 400-row blocks 207–229;
/// single-thread, 800 rows gained nothing over 400. DINOv2-S/14's sums (0.4–0.6 MB) measured the same or
/// slower with long blocks (single-thread, quiet), so they keep `m_block`.
pub(super) const LARGE_PART: usize = 1 << 20;
pub(super) const LARGE_PART_ROWS: usize = 400;

/// Rows per block for a task of `rows` rows whose B quadrant sums are `k2` deep and `part_bytes` each:
/// `m_block(k2)`, or for large sums equal blocks of at most `LARGE_PART_ROWS` (whole tiles).
pub(super) fn block_rows(rows: usize, k2: usize, part_bytes: usize) -> usize {
    if part_bytes <= LARGE_PART {
        return m_block(k2);
    }
    rows.div_ceil(rows.div_ceil(LARGE_PART_ROWS)).next_multiple_of(MR).max(MR)
}

/// Whether `super::matmul` takes the Strassen path for this shape. `CPEAL_STRASSEN=off` never does; `=on` does
/// whenever the shape splits (tests and benchmarks).
pub(super) fn chosen(m: usize, n: usize, k: usize) -> bool {
    static MODE: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    let forced = *MODE.get_or_init(|| match std::env::var("CPEAL_STRASSEN").as_deref() {
        Ok("off" | "0") => Some(false),
        Ok("on" | "1") => Some(true),
        _ => None,
    });
    splits(m, n, k) && forced.unwrap_or(m >= MIN_M && n >= MIN_NK && k >= MIN_NK)
}

/// Whether the shape has quadrants the kernel can use: N halves into whole 16-column panels, K halves and each
/// half fits one pass.
pub(super) fn splits(m: usize, n: usize, k: usize) -> bool {
    m >= 2 && n % (2 * NR) == 0 && k % 2 == 0 && k > 0 && k / 2 <= KC_MAX
}

/// out[M, N] = x[M, K] · B, then `e`, by one level of Strassen. Requires `splits(m, b.n(), b.k())`.
///
/// # Safety
/// As `super::matmul_to`: `out` writable for M × N values (written before read), `e`'s pointers covering N
/// columns and M rows.
pub(super) unsafe fn matmul_to(out: *mut f32, x: &[f32], m: usize, b: &PackedB, e: &Epilogue) {
    let (n, k) = (b.n(), b.k());
    assert!(splits(m, n, k) && x.len() == m * k, "strassen: shape {m} x {n} x {k} does not split");
    let parts = b.strassen_parts();
    if m % 2 == 1 {
        let row = m - 1;
        gemm_rows(1, x.as_ptr().add(row * k), k, b, out.add(row * n), n, &e.at(row, 0));
    }
    let half = m / 2;
    let tasks = rayon::current_num_threads().clamp(1, half.div_ceil(MR));
    let rows = half.div_ceil(tasks).next_multiple_of(MR);
    let (o, a, e) = (Shared(out), Shared(x.as_ptr()), Shared(*e));
    (0..half.div_ceil(rows)).into_par_iter().for_each(|t| {
        let (o, a, e) = (o, a, e);
        let quads = Quadrants { a: a.0, c: o.0, half, n, k, e: e.0 };
        // SAFETY: tasks own disjoint rows of each half of C.
        unsafe { quads.rows(t * rows, ((t + 1) * rows).min(half), parts) };
    });
}

/// A, C and the epilogue seen as 2 × 2 blocks: rows `half` apart, columns N/2 (C) and K/2 (A) apart.
struct Quadrants {
    a: *const f32,
    c: *mut f32,
    half: usize,
    n: usize,
    k: usize,
    e: Epilogue,
}

impl Quadrants {
    /// Rows r0..r1 of each half of C, in blocks (`block_rows`).
    unsafe fn rows(&self, r0: usize, r1: usize, parts: &[PackedB; 7]) {
        let k2 = self.k / 2;
        let block = block_rows(r1 - r0, k2, parts[0].size_bytes());
        let mut sum = vec![0f32; block * k2];
        for i in (r0..r1).step_by(block) {
            self.block(i, block.min(r1 - i), parts, &mut sum);
        }
    }

    /// A's quadrant (qi, qk) at row i of the half.
    fn a(&self, qi: usize, qk: usize, i: usize) -> *const f32 {
        // SAFETY (of the offset): i < half, so the row lies inside A.
        unsafe { self.a.add((qi * self.half + i) * self.k + qk * (self.k / 2)) }
    }

    /// C's quadrant (qi, qj) at row i of the half.
    fn c(&self, qi: usize, qj: usize, i: usize) -> *mut f32 {
        // SAFETY (of the offset): as in `a`.
        unsafe { self.c.add((qi * self.half + i) * self.n + qj * (self.n / 2)) }
    }

    unsafe fn block(&self, i: usize, rows: usize, parts: &[PackedB; 7], sum: &mut [f32]) {
        use SecondMode::{Add, Store, Subtract};
        let (k, k2, n) = (self.k, self.k / 2, self.n);
        let [a11, a12, a21, a22] = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(qi, qk)| self.a(qi, qk, i));
        let [c11, c12, c21, c22] = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(qi, qj)| self.c(qi, qj, i));
        let [e11, e12, e21, e22] =
            [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(qi, qj)| self.e.at(qi * self.half + i, qj * (n / 2)));
        let none = Epilogue::NONE;
        let sum = &mut sum[..rows * k2];
        // Each sum of A's quadrants is made just before its product, so that it is still in cache when read.
        let mut product = |a: AOperand, b: &PackedB, c: *mut f32, accumulate, epilogue, second| {
            let (a, lda) = match a {
                AOperand::Quadrant(x) => (x, k),
                AOperand::Sum(x, sign, y) => {
                    add_quadrants(sum, x, sign, y, k, rows, k2);
                    (sum.as_ptr(), k2)
                }
            };
            gemm_rows_to(rows, a, lda, b, &Output { c, ldc: n, accumulate, epilogue, second })
        };
        use AOperand::{Quadrant, Sum};
        product(Sum(a11, 1.0, a22), &parts[0], c11, false, &none, Some((c22, n, Store)));
        product(Sum(a21, 1.0, a22), &parts[1], c21, false, &none, Some((c22, n, Subtract)));
        product(Quadrant(a11), &parts[2], c12, false, &none, Some((c22, n, Add)));
        product(Quadrant(a22), &parts[3], c21, true, &e21, Some((c11, n, Add)));
        product(Sum(a11, 1.0, a12), &parts[4], c12, true, &e12, Some((c11, n, Subtract)));
        product(Sum(a21, -1.0, a11), &parts[5], c22, true, &e22, None);
        product(Sum(a12, -1.0, a22), &parts[6], c11, true, &e11, None);
    }
}

/// The A side of a product: one quadrant read in place, or x + sign · y of two quadrants.
enum AOperand {
    Quadrant(*const f32),
    Sum(*const f32, f32, *const f32),
}

/// dst[r, p] = x[r, p] + sign · y[r, p] for `rows` rows of `width` values (x, y rows `ld` apart, dst dense).
/// (Compiled for AVX2, which `super::available()` has checked, so that the loops vectorise 8 wide.)
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2"))]
unsafe fn add_quadrants(
    dst: &mut [f32],
    x: *const f32,
    sign: f32,
    y: *const f32,
    ld: usize,
    rows: usize,
    width: usize,
) {
    for r in 0..rows {
        let (x, y) =
            (std::slice::from_raw_parts(x.add(r * ld), width), std::slice::from_raw_parts(y.add(r * ld), width));
        let d = &mut dst[r * width..][..width];
        if sign > 0.0 {
            d.iter_mut().zip(x.iter().zip(y)).for_each(|(d, (x, y))| *d = x + y);
        } else {
            d.iter_mut().zip(x.iter().zip(y)).for_each(|(d, (x, y))| *d = x - y);
        }
    }
}

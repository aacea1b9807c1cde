//! The AVX2 + FMA micro-kernel: a 6 × 16 tile of C held in 12 ymm accumulators, B read from one packed
//! 16-column panel (one 64-byte line per k), A read either from a packed 6-row panel or in place through a row
//! stride. Callers must have checked `is_x86_feature_detected!("avx2")` and `("fma")` (see `super::has_avx2`).

use std::arch::x86_64::*;

use super::{MR, NR};
use crate::ops::simd::{gelu, quick_gelu};
use crate::ops::Activation;

/// Where the kernel reads A: a packed panel (element (r, p) at `p·MR + r`) or rows `lda` apart (at `r·lda + p`).
#[derive(Clone, Copy)]
pub(super) enum ASource {
    Packed(*const f32),
    Rows(*const f32, usize),
}

/// C[0..6, 0..16] (`out`: row stride `ldc`) = (or +=, when `accumulate`) A[0..6, 0..kc] · B[0..kc, 0..16], then
/// `epilogue` if given. The product alone also goes to `second` when given (Strassen's products feed two blocks
/// of C).
///
/// # Safety
/// AVX2 and FMA must be available. `a` must hold 6 rows of `kc` values in the layout it names, `b` `kc`
/// packed rows of 16 values, 32-byte aligned, `c` 6 rows of 16 writable values `ldc` apart, and the epilogue's
/// pointers 16 readable values (6 rows of them for the residual).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel_6x16(kc: usize, a: ASource, b: *const f32, out: &TileOut) {
    match a {
        ASource::Packed(a) => kernel::<true>(kc, a, MR, b, out),
        ASource::Rows(a, lda) => kernel::<false>(kc, a, lda, b, out),
    }
}

/// Where a tile goes: C (`c`, rows `ldc` apart) stored or, when `accumulate`, added to; then the epilogue; and
/// the bare product to `second` as well.
#[derive(Clone, Copy)]
pub(super) struct TileOut<'a> {
    pub c: *mut f32,
    pub ldc: usize,
    pub accumulate: bool,
    pub epilogue: Option<&'a TileEpilogue>,
    pub second: Option<&'a SecondTile>,
}

/// A second destination of a tile's product, at its first element: stored, added or subtracted.
pub(super) struct SecondTile {
    pub c: *mut f32,
    pub ldc: usize,
    pub mode: super::SecondMode,
}

#[inline(always)]
unsafe fn kernel<const PACKED: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, out: &TileOut) {
    let TileOut { c, ldc, accumulate, epilogue, second } = *out;
    // A element (r, p): packed at a + p·MR + r, in rows at a + r·lda + p.
    let (a_step, r_step) = if PACKED { (MR, 1) } else { (1, lda) };
    // C tiles and residual rows are far apart in memory: start fetching them now, well before the stores.
    for r in 0..MR {
        _mm_prefetch::<_MM_HINT_ET0>(c.add(r * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_ET0>(c.add(r * ldc + NR - 1) as *const i8);
        if let Some(s) = second {
            _mm_prefetch::<_MM_HINT_ET0>(s.c.add(r * s.ldc) as *const i8);
            _mm_prefetch::<_MM_HINT_ET0>(s.c.add(r * s.ldc + NR - 1) as *const i8);
        }
        if let Some(e) = epilogue.filter(|e| !e.res.is_null()) {
            _mm_prefetch::<_MM_HINT_T0>(e.res.add(r * e.ldr) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(e.res.add(r * e.ldr + NR - 1) as *const i8);
        }
    }
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    let (mut a, mut b) = (a, b);
    macro_rules! step {
        ($p:expr) => {{
            let b0 = _mm256_load_ps(b.add($p * NR));
            let b1 = _mm256_load_ps(b.add($p * NR + 8));
            let ap = a.add($p * a_step);
            for r in 0..MR {
                let av = _mm256_broadcast_ss(&*ap.add(r * r_step));
                acc[2 * r] = _mm256_fmadd_ps(av, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(av, b1, acc[2 * r + 1]);
            }
        }};
    }
    for _ in 0..kc / 4 {
        _mm_prefetch::<_MM_HINT_T0>(b.add(8 * NR) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(b.add(9 * NR) as *const i8);
        step!(0);
        step!(1);
        step!(2);
        step!(3);
        a = a.add(4 * a_step);
        b = b.add(4 * NR);
    }
    for _ in 0..kc % 4 {
        step!(0);
        a = a.add(a_step);
        b = b.add(NR);
    }
    if let Some(s) = second {
        store_second(&acc, s);
    }
    for r in 0..MR {
        let row = c.add(r * ldc);
        let (mut lo, mut hi) = (acc[2 * r], acc[2 * r + 1]);
        if accumulate {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8)));
        }
        if let Some(e) = epilogue {
            lo = finish(lo, r, 0, e);
            hi = finish(hi, r, 1, e);
        }
        _mm256_storeu_ps(row, lo);
        _mm256_storeu_ps(row.add(8), hi);
    }
}

#[inline(always)]
unsafe fn store_second(acc: &[__m256; 2 * MR], s: &SecondTile) {
    use super::SecondMode;
    for r in 0..MR {
        let row = s.c.add(r * s.ldc);
        for half in 0..2 {
            let (p, dst) = (acc[2 * r + half], row.add(8 * half));
            let v = match s.mode {
                SecondMode::Store => p,
                SecondMode::Add => _mm256_add_ps(_mm256_loadu_ps(dst), p),
                SecondMode::Subtract => _mm256_sub_ps(_mm256_loadu_ps(dst), p),
            };
            _mm256_storeu_ps(dst, v);
        }
    }
}

/// The epilogue of one full tile, pointers at its first row and column (null where absent): + bias[j],
/// activation, · scale[j], + res[i·ldr + j], in that order.
pub(super) struct TileEpilogue {
    pub bias: *const f32,
    pub scale: *const f32,
    pub res: *const f32,
    pub ldr: usize,
    pub act: Activation,
}

#[inline(always)]
unsafe fn finish(v: __m256, r: usize, half: usize, e: &TileEpilogue) -> __m256 {
    let mut v = v;
    if !e.bias.is_null() {
        v = _mm256_add_ps(v, _mm256_loadu_ps(e.bias.add(8 * half)));
    }
    v = match e.act {
        Activation::Gelu => gelu(v),
        Activation::QuickGelu => quick_gelu(v),
        Activation::None | Activation::Tanh => v,
    };
    if !e.scale.is_null() {
        v = _mm256_mul_ps(v, _mm256_loadu_ps(e.scale.add(8 * half)));
    }
    if !e.res.is_null() {
        v = _mm256_add_ps(v, _mm256_loadu_ps(e.res.add(r * e.ldr + 8 * half)));
    }
    v
}

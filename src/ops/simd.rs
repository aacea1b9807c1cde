//! AVX2 + FMA versions of `math`'s functions, eight lanes at a time, for the CPU kernels' epilogues and softmax.
//! Callers must have checked for AVX2 and FMA (`sgemm::available()`).

use std::arch::x86_64::*;

use super::math::{self, LOG2E};

/// Horner: c[0]·xⁿ + … + c[n].
#[inline(always)]
unsafe fn poly(x: __m256, c: &[f32]) -> __m256 {
    let mut p = _mm256_set1_ps(c[0]);
    for &ci in &c[1..] {
        p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(ci));
    }
    p
}

/// `math::exp`, eight lanes at a time (same range reduction and polynomial).
#[inline(always)]
pub(crate) unsafe fn exp(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0)), _mm256_set1_ps(88.0));
    let n =
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(math::LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(math::LN2_LO), r);
    let p = poly(r, &[1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]);
    let two_n = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    _mm256_mul_ps(_mm256_castsi256_ps(two_n), p)
}

/// x·Φ(x) with `math::erf`'s rational approximation.
#[inline(always)]
pub(crate) unsafe fn gelu(x: __m256) -> __m256 {
    let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-4.0)), _mm256_set1_ps(4.0));
    let z2 = _mm256_mul_ps(z, z);
    let erf = _mm256_div_ps(_mm256_mul_ps(z, poly(z2, &math::ERF_P)), poly(z2, &math::ERF_Q));
    let half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5));
    _mm256_fmadd_ps(half_x, erf, half_x)
}

/// x·σ(1.702·x).
#[inline(always)]
pub(crate) unsafe fn quick_gelu(x: __m256) -> __m256 {
    let e = exp(_mm256_mul_ps(x, _mm256_set1_ps(-1.702)));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// row ← softmax(scale · row).
///
/// # Safety
/// AVX2 and FMA must be available.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn softmax_row(row: &mut [f32], scale: f32) {
    let n = row.len();
    let full = n - n % 8;
    let p = row.as_mut_ptr();
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    for i in (0..full).step_by(8) {
        m = _mm256_max_ps(m, _mm256_loadu_ps(p.add(i)));
    }
    let max = row[full..].iter().fold(hmax(m), |a, &b| a.max(b));
    // exp(scale·x − scale·max) with one FMA per lane; two sums to overlap the additions.
    let (sc, shift) = (_mm256_set1_ps(scale), _mm256_set1_ps(-scale * max));
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= full {
        let e0 = exp(_mm256_fmadd_ps(_mm256_loadu_ps(p.add(i)), sc, shift));
        let e1 = exp(_mm256_fmadd_ps(_mm256_loadu_ps(p.add(i + 8)), sc, shift));
        _mm256_storeu_ps(p.add(i), e0);
        _mm256_storeu_ps(p.add(i + 8), e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
        i += 16;
    }
    if i < full {
        let e0 = exp(_mm256_fmadd_ps(_mm256_loadu_ps(p.add(i)), sc, shift));
        _mm256_storeu_ps(p.add(i), e0);
        s0 = _mm256_add_ps(s0, e0);
    }
    let mut sum = hsum(_mm256_add_ps(s0, s1));
    for x in &mut row[full..] {
        *x = math::exp(*x * scale - scale * max);
        sum += *x;
    }
    let inv = _mm256_set1_ps(1.0 / sum);
    for i in (0..full).step_by(8) {
        _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
    }
    row[full..].iter_mut().for_each(|x| *x /= sum);
}

#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// dst[16·p + c] = rows[c][p] for p < `k`, c < 16: sixteen contiguous rows into `k` lines of 16 (a packed B panel
/// of Wᵀ or Kᵀ), eight k at a time through two 8 × 8 register transposes.
///
/// # Safety
/// AVX2 must be available; each row must be readable for `k` values and `dst` writable for 16·k, 32-byte aligned.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn transpose_rows_16(dst: *mut f32, rows: &[*const f32; 16], k: usize) {
    let full = k - k % 8;
    for p in (0..full).step_by(8) {
        for half in 0..2 {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(rows[8 * half + i].add(p)));
            for (i, v) in transpose_8x8(r).into_iter().enumerate() {
                _mm256_store_ps(dst.add(16 * (p + i) + 8 * half), v);
            }
        }
    }
    for p in full..k {
        for (c, row) in rows.iter().enumerate() {
            *dst.add(16 * p + c) = *row.add(p);
        }
    }
}

/// Rows of an 8 × 8 block in, its columns out.
#[inline(always)]
unsafe fn transpose_8x8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    // u0: column 0 of rows 0-3 | column 4 of rows 0-3; u1: columns 1 | 5; u2: 2 | 6; u3: 3 | 7 (u4-u7: rows 4-7).
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

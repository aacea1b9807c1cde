//! `Mat`: a borrowed or owned row-major `[rows, cols]` matrix of f32, f16 or bf16 values, read one row (or chunk)
//! at a time as f32. Memory-mapped f32 inputs are never copied; half-precision rows are widened on the fly, so a
//! pool larger than RAM streams straight from the map. Also the small SIMD-friendly kernels the strategies share.

use std::borrow::Cow;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Rows per unit of parallel work in every pass over the pool.
pub(crate) const CHUNK_ROWS: usize = 2048;

enum Elems<'a> {
    F32(Cow<'a, [f32]>),
    F16(&'a [u8]),
    Bf16(&'a [u8]),
}

/// The values of a [`Mat`] in their stored type ([`Mat::stored`]).
pub(crate) enum Stored<'b> {
    F32(&'b [f32]),
    F16(&'b [u8]),
    Bf16(&'b [u8]),
}

/// A row-major `[rows, cols]` matrix; `name` (e.g. "logits.npy: field `logits`") is what errors cite.
pub struct Mat<'a> {
    elems: Elems<'a>,
    rows: usize,
    cols: usize,
    name: String,
}

impl<'a> Mat<'a> {
    /// An f32 matrix over `data` (borrowed or owned); errors if `data.len() != rows * cols`.
    pub fn from_f32(data: impl Into<Cow<'a, [f32]>>, rows: usize, cols: usize, name: &str) -> Result<Mat<'a>> {
        let data = data.into();
        check_len(data.len(), rows, cols, name)?;
        Ok(Mat { elems: Elems::F32(data), rows, cols, name: name.to_string() })
    }

    /// A matrix over little-endian f32 bytes: borrowed when 4-byte aligned, copied once otherwise.
    pub fn from_f32_bytes(bytes: &'a [u8], rows: usize, cols: usize, name: &str) -> Result<Mat<'a>> {
        let data: Cow<'a, [f32]> = match bytemuck::try_cast_slice::<u8, f32>(bytes) {
            Ok(slice) => Cow::Borrowed(slice),
            Err(_) => Cow::Owned(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        };
        Mat::from_f32(data, rows, cols, name)
    }

    /// A matrix over little-endian IEEE half-precision bytes, widened to f32 row by row.
    pub fn from_f16_bytes(bytes: &'a [u8], rows: usize, cols: usize, name: &str) -> Result<Mat<'a>> {
        check_len(bytes.len() / 2, rows, cols, name)?;
        Ok(Mat { elems: Elems::F16(bytes), rows, cols, name: name.to_string() })
    }

    /// A matrix over little-endian bfloat16 bytes, widened to f32 row by row.
    pub fn from_bf16_bytes(bytes: &'a [u8], rows: usize, cols: usize, name: &str) -> Result<Mat<'a>> {
        check_len(bytes.len() / 2, rows, cols, name)?;
        Ok(Mat { elems: Elems::Bf16(bytes), rows, cols, name: name.to_string() })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (values per row).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// What errors about this matrix cite.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows `start..end` as one contiguous f32 slice: borrowed for f32 data, else widened into `buf`.
    pub fn rows_f32<'b>(&'b self, start: usize, end: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        let (lo, hi) = (start * self.cols, end * self.cols);
        match &self.elems {
            Elems::F32(data) => &data[lo..hi],
            Elems::F16(bytes) => {
                buf.clear();
                buf.extend(bytes[2 * lo..2 * hi].chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()));
                buf
            }
            Elems::Bf16(bytes) => {
                buf.clear();
                buf.extend(bytes[2 * lo..2 * hi].chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()));
                buf
            }
        }
    }

    /// The values as stored: f32, or the little-endian bytes of IEEE half / bfloat16 values (exactly
    /// rows·cols of them), e.g. to upload them to a device without widening.
    pub(crate) fn stored(&self) -> Stored<'_> {
        let n = self.rows * self.cols;
        match &self.elems {
            Elems::F32(data) => Stored::F32(&data[..n]),
            Elems::F16(bytes) => Stored::F16(&bytes[..2 * n]),
            Elems::Bf16(bytes) => Stored::Bf16(&bytes[..2 * n]),
        }
    }

    /// Row `i` as f32 (see [`Mat::rows_f32`]).
    pub fn row<'b>(&'b self, i: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        self.rows_f32(i, i + 1, buf)
    }

    /// Error naming the first row that holds a NaN or an infinity.
    pub fn check_finite(&self) -> Result<()> {
        let first_bad = (0..self.rows.div_ceil(CHUNK_ROWS)).into_par_iter().find_map_first(|chunk| {
            let start = chunk * CHUNK_ROWS;
            let end = (start + CHUNK_ROWS).min(self.rows);
            let mut buf = Vec::new();
            let values = self.rows_f32(start, end, &mut buf);
            if all_finite(values) {
                return None;
            }
            let cols = self.cols.max(1);
            values.chunks_exact(cols).position(|row| !all_finite(row)).map(|r| start + r)
        });
        match first_bad {
            Some(row) => Err(Error::invalid(&self.name, format!("row {row} contains NaN or Inf"))),
            None => Ok(()),
        }
    }
}

fn check_len(len: usize, rows: usize, cols: usize, name: &str) -> Result<()> {
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::invalid(name, format!("{len} values cannot form a [{rows}, {cols}] matrix")));
    }
    Ok(())
}

/// Run `f` compiled for AVX2+FMA when the CPU has them (the crate is built for baseline x86-64), else as is.
macro_rules! simd_dispatch {
    ($name:ident, $impl:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[inline]
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $impl($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $impl($($arg),*)
        }
    };
}

pub(crate) use simd_dispatch;

const LANES: usize = 8;

#[inline(always)]
fn sq_dist_impl(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

simd_dispatch!(sq_dist, sq_dist_impl, (a: &[f32], b: &[f32]) -> f32);
simd_dispatch!(dot, dot_impl, (a: &[f32], b: &[f32]) -> f32);

#[inline(always)]
fn all_finite_impl(values: &[f32]) -> bool {
    const EXP_MASK: u32 = 0x7f80_0000;
    let bad = values.iter().fold(0u32, |bad, v| bad | ((v.to_bits() & EXP_MASK) == EXP_MASK) as u32);
    bad == 0
}

simd_dispatch!(all_finite, all_finite_impl, (values: &[f32]) -> bool);

/// Per-row softmax statistics of one logit row, with z = x − max: `z_sum` = Σ e^z, `ze_sum` = Σ z·e^z, and the
/// largest and second-largest logits. `finite` is false when the row holds NaN or ±Inf.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogitStats {
    pub max: f32,
    pub second: f32,
    pub z_sum: f64,
    pub ze_sum: f64,
    pub finite: bool,
}

simd_dispatch!(logit_stats, logit_stats_impl, (row: &[f32], want_second: bool) -> LogitStats);

#[inline(always)]
fn logit_stats_impl(row: &[f32], want_second: bool) -> LogitStats {
    const EXP_MASK: u32 = 0x7f80_0000;
    let mut max_l = [f32::NEG_INFINITY; LANES];
    let mut bad_l = [0u32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rem = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            max_l[l] = if c[l] > max_l[l] { c[l] } else { max_l[l] };
            bad_l[l] |= ((c[l].to_bits() & EXP_MASK) == EXP_MASK) as u32;
        }
    }
    let mut max = max_l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut bad = bad_l.iter().any(|&b| b != 0);
    for &v in rem {
        max = max.max(v);
        bad |= !v.is_finite();
    }
    if bad || row.is_empty() {
        return LogitStats { max, second: max, z_sum: f64::NAN, ze_sum: f64::NAN, finite: false };
    }
    let (mut z_sum, mut ze_sum) = exp_sums(&row[..row.len() - rem.len()], max);
    for &v in rem {
        let z = (v - max).max(EXP_FLOOR) as f64; // v − max may overflow to −∞ (|values| near f32::MAX)
        z_sum += z.exp();
        ze_sum += z * z.exp();
    }
    let second = if want_second { second_largest(row) } else { max };
    LogitStats { max, second, z_sum, ze_sum, finite: true }
}

/// The second-largest value of `row` (counting a repeated maximum twice); −∞ for a 1-element row.
fn second_largest(row: &[f32]) -> f32 {
    top_two(row, f32::NEG_INFINITY).1
}

/// (largest, second largest) of `values`, a repeated maximum counted twice; `floor` where there are too few.
pub(crate) fn top_two<T: PartialOrd + Copy>(values: &[T], floor: T) -> (T, T) {
    let (mut first, mut second) = (floor, floor);
    for &v in values {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    (first, second)
}

/// z = x − max is clamped here before the exp: e^z is then exactly 0 (`exp_nonpositive`), and z·e^z is 0 rather
/// than −∞·0 when x − max overflows.
const EXP_FLOOR: f32 = -150.0;

/// (Σ e^z, Σ z·e^z) with z = x − max over `full` (a multiple of 8 values).
#[inline(always)]
fn exp_sums(full: &[f32], max: f32) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA.
            return unsafe { avx2::exp_sums(full, max) };
        }
    }
    let mut e_l = [0f32; LANES];
    let mut ze_l = [0f32; LANES];
    for c in full.chunks_exact(LANES) {
        for l in 0..LANES {
            let z = (c[l] - max).max(EXP_FLOOR);
            let e = exp_nonpositive(z);
            e_l[l] += e;
            ze_l[l] += z * e;
        }
    }
    let sum = |v: [f32; LANES]| v.iter().map(|&x| x as f64).sum::<f64>();
    (sum(e_l), sum(ze_l))
}

/// The exp kernel written with AVX2 intrinsics (LLVM does not vectorise the scalar form reliably).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_sums(full: &[f32], max: f32) -> (f64, f64) {
        let (vmax, floor) = (_mm256_set1_ps(max), _mm256_set1_ps(super::EXP_FLOOR));
        let (mut acc_e, mut acc_ze) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for chunk in full.chunks_exact(8) {
            // SAFETY: `chunk` holds exactly 8 f32 values.
            let z = _mm256_max_ps(_mm256_sub_ps(unsafe { _mm256_loadu_ps(chunk.as_ptr()) }, vmax), floor);
            let e = exp_nonpositive(z);
            acc_e = _mm256_add_ps(acc_e, e);
            acc_ze = _mm256_fmadd_ps(z, e, acc_ze);
        }
        (hsum(acc_e), hsum(acc_ze))
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f64 {
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` has room for 8 f32 values.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().map(|&x| x as f64).sum()
    }

    /// Same algorithm and constants as the scalar `exp_nonpositive`.
    #[target_feature(enable = "avx2,fma")]
    fn exp_nonpositive(x: __m256) -> __m256 {
        const MAGIC: f32 = 12_582_912.0;
        let in_range = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.0));
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
        let t = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), _mm256_set1_ps(MAGIC));
        let n = _mm256_sub_ps(t, _mm256_set1_ps(MAGIC));
        let ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(MAGIC.to_bits() as i32));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let poly = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(ni, _mm256_set1_epi32(127))));
        _mm256_and_ps(_mm256_mul_ps(poly, scale), in_range)
    }
}

/// e^x for x ≤ 0 (Cephes expf polynomial, within 1.41·2⁻²⁴ relative on every f32 in [−87, 0], checked
/// exhaustively), written so that it vectorises; x below −87 gives exactly 0 (e^−87 ≈ 1.6·10⁻³⁸).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let in_range = x >= -87.0;
    let x = if in_range { x } else { -87.0 };
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let poly = p * r * r + r + 1.0;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    if in_range {
        poly * scale
    } else {
        0.0
    }
}

/// Probabilities from a logit row in f64 (numerically stable softmax).
pub(crate) fn softmax_f64(row: &[f32], out: &mut [f64]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut sum = 0.0;
    for (o, &v) in out.iter_mut().zip(row) {
        *o = (v as f64 - max).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// Shannon entropy (nats) of a probability vector; 0·ln 0 counts as 0.
pub(crate) fn entropy_f64(p: &[f64]) -> f64 {
    -p.iter().filter(|&&v| v > 0.0).map(|&v| v * v.ln()).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std() {
        let mut x = 0.0f32;
        while x > -86.0 {
            let (got, want) = (exp_nonpositive(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 4e-7 * want + 1e-38, "x={x}: {got} vs {want}");
            x -= 0.0137;
        }
    }

    #[test]
    fn far_below_the_max_adds_nothing() {
        assert_eq!(exp_nonpositive(-87.5), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        // One dominant logit, the others ~1e30 below it (and f32::MIN, whose distance overflows to −∞): the
        // entropy is 0, not the −z·e^−87 each far value used to add.
        for far in [-1e30f32, f32::MIN] {
            let mut row = vec![far; 19];
            row[3] = 5.0;
            let s = logit_stats(&row, true);
            assert!(s.finite && s.z_sum == 1.0 && s.ze_sum.abs() < 1e-60, "{far}: {s:?}");
        }
        let s = logit_stats(&[f32::MAX, f32::MIN, 0.0], true);
        assert!(s.finite && s.z_sum == 1.0 && s.ze_sum.abs() < 1e-60, "{s:?}");
    }

    #[test]
    fn stats_flag_non_finite() {
        assert!(!logit_stats(&[1.0, f32::NAN, 0.5], false).finite);
        assert!(!logit_stats(&[1.0; 9].iter().chain(&[f32::INFINITY]).copied().collect::<Vec<_>>(), false).finite);
        assert!(logit_stats(&[1.0, 2.0, 3.0], true).finite);
    }
}

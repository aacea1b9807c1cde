//! An int8 shadow of a feature matrix, used only to *skip* exact distance computations, never to replace them.
//!
//! Each row x is stored as s·q (q ∈ [−127, 127]^D, one scale per row) together with the exact residual norm
//! e = ‖x − s·q‖. With x̂ = s·q, the triangle inequality gives d(x, y) ≥ d(x̂, ŷ) − e_x − e_y, and d(x̂, ŷ) comes
//! from exact integer dot products. A row is skipped only when that lower bound already rules out an update, so
//! selections are identical to the f32 path while a pass reads D bytes per row instead of 4·D.

use rayon::prelude::*;

use super::matrix::CHUNK_ROWS;
use super::Mat;

/// Above this many int8 codes (1 GiB) no shadow is built, so that a pool larger than RAM still only streams.
const MAX_CODES: usize = 1 << 30;

/// Relative slack on every bound so that f32/f64 rounding can never turn a needed update into a skip.
const BOUND_SLACK: f64 = 1e-4;

/// Quantized copies of selected rows of a matrix (position k holds row `rows[k]`).
pub(crate) struct Quantized {
    /// False when the shadow would be too large: then no bound ever rules anything out.
    enabled: bool,
    dim: usize,
    codes: Vec<i8>,
    scale: Vec<f32>,
    /// ‖x − s·q‖, rounded up.
    residual: Vec<f32>,
    /// Σ q².
    code_norm2: Vec<i32>,
}

impl Quantized {
    /// Quantize `rows` of `features` (in parallel).
    pub(crate) fn new(features: &Mat, rows: &[usize]) -> Quantized {
        let dim = features.cols();
        if rows.len().saturating_mul(dim) > MAX_CODES {
            let (codes, scale, residual, code_norm2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            return Quantized { enabled: false, dim, codes, scale, residual, code_norm2 };
        }
        let mut codes = vec![0i8; rows.len() * dim];
        let meta: Vec<(f32, f32, i32)> = codes
            .par_chunks_mut(dim.max(1) * CHUNK_ROWS)
            .zip(rows.par_chunks(CHUNK_ROWS))
            .flat_map_iter(|(out, rows)| {
                let mut buf = Vec::new();
                let mut meta = Vec::with_capacity(rows.len());
                for (k, &row) in rows.iter().enumerate() {
                    let x = features.row(row, &mut buf);
                    meta.push(quantize_row(x, &mut out[k * dim..(k + 1) * dim]));
                }
                meta
            })
            .collect();
        let scale = meta.iter().map(|m| m.0).collect();
        let residual = meta.iter().map(|m| m.1).collect();
        let code_norm2 = meta.iter().map(|m| m.2).collect();
        Quantized { enabled: true, dim, codes, scale, residual, code_norm2 }
    }

    fn codes(&self, k: usize) -> &[i8] {
        &self.codes[k * self.dim..(k + 1) * self.dim]
    }

    /// (⟨x̂_a, x̂_b⟩, residual of a, residual of b, ‖x̂_a‖, ‖x̂_b‖).
    fn approx(&self, a: usize, b: usize) -> (f64, f64, f64, f64, f64) {
        let (sa, sb) = (self.scale[a] as f64, self.scale[b] as f64);
        let dot = sa * sb * dot_i8(self.codes(a), self.codes(b)) as f64;
        let na = sa * (self.code_norm2[a] as f64).sqrt();
        let nb = sb * (self.code_norm2[b] as f64).sqrt();
        (dot, self.residual[a] as f64, self.residual[b] as f64, na, nb)
    }

    /// True when ‖x_a − x_b‖² is certainly ≥ `bound2` (so an exact computation could not go below it).
    pub(crate) fn dist2_at_least(&self, a: usize, b: usize, bound2: f32) -> bool {
        if !self.enabled {
            return false;
        }
        let (dot, ea, eb, na, nb) = self.approx(a, b);
        let approx = (na * na + nb * nb - 2.0 * dot).max(0.0).sqrt();
        let lower = (approx - (ea + eb)) * (1.0 - BOUND_SLACK);
        lower > 0.0 && lower * lower >= bound2 as f64 * (1.0 + BOUND_SLACK)
    }

    /// An interval [lo, hi] that certainly holds ⟨x_a, x_b⟩ (and its f32 evaluation); `norm_a`, `norm_b` are the
    /// exact norms ‖x_a‖, ‖x_b‖.
    pub(crate) fn dot_interval(&self, a: usize, b: usize, norm_a: f64, norm_b: f64) -> (f64, f64) {
        if !self.enabled {
            return (-norm_a * norm_b * 2.0, norm_a * norm_b * 2.0);
        }
        let (dot, ea, eb, na, _) = self.approx(a, b);
        // ⟨x_a, x_b⟩ − ⟨x̂_a, x̂_b⟩ = ⟨x_a − x̂_a, x_b⟩ + ⟨x̂_a, x_b − x̂_b⟩.
        let err = ea * norm_b + na * eb + BOUND_SLACK * norm_a * norm_b;
        (dot - err, dot + err)
    }
}

/// Quantize one row into `out`; returns (scale, residual norm rounded up, Σ q²).
#[inline(always)]
fn quantize_row_impl(x: &[f32], out: &mut [i8]) -> (f32, f32, i32) {
    let max = x.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    let (mut residual2, mut norm2) = (0f64, 0i32);
    for (o, &v) in out.iter_mut().zip(x) {
        // Round half away from zero without a libm call; |v·inv| ≤ 127 up to rounding.
        let q = ((v * inv + 0.5f32.copysign(v)) as i32).clamp(-127, 127);
        *o = q as i8;
        norm2 += q * q;
        residual2 += (v as f64 - scale as f64 * q as f64).powi(2);
    }
    (scale, (residual2.sqrt() * (1.0 + 1e-6)) as f32 * (1.0 + 1e-6), norm2)
}

super::matrix::simd_dispatch!(quantize_row, quantize_row_impl, (x: &[f32], out: &mut [i8]) -> (f32, f32, i32));

#[inline(always)]
fn dot_i8_impl(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 16;
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: i32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x as i32 * y as i32).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES / 2 {
            let (a0, a1) = (x[2 * l] as i16 as i32, x[2 * l + 1] as i16 as i32);
            let (b0, b1) = (y[2 * l] as i16 as i32, y[2 * l + 1] as i16 as i32);
            acc[l] += a0 * b0 + a1 * b1;
        }
    }
    acc.iter().sum::<i32>() + tail
}

super::matrix::simd_dispatch!(dot_i8, dot_i8_impl, (a: &[i8], b: &[i8]) -> i32);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn bounds_hold_and_bite() {
        let (n, d) = (60, 37);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let x: Vec<f32> = (0..n * d).map(|k| rng.random::<f32>() * 4.0 - 2.0 + (k / d % 3) as f32 * 5.0).collect();
        let mat = Mat::from_f32(&x[..], n, d, "x").unwrap();
        let quant = Quantized::new(&mat, &(0..n).collect::<Vec<_>>());
        let row = |i: usize| &x[i * d..(i + 1) * d];
        let mut bites = 0;
        for a in 0..n {
            for b in 0..n {
                let exact2: f64 = row(a).iter().zip(row(b)).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum();
                let dot: f64 = row(a).iter().zip(row(b)).map(|(&p, &q)| p as f64 * q as f64).sum();
                assert!(!quant.dist2_at_least(a, b, (exact2 * 1.000_01) as f32 + 1e-30), "{a} {b}");
                bites += quant.dist2_at_least(a, b, (exact2 * 0.9) as f32) as usize;
                let norm = |r: &[f32]| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                let (lo, hi) = quant.dot_interval(a, b, norm(row(a)), norm(row(b)));
                assert!(lo <= dot && dot <= hi, "{a} {b}: {lo} {dot} {hi}");
            }
        }
        assert!(bites > n * n / 2, "the bound should rule out most pairs at 90%: {bites}");
    }
}

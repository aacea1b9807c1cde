use crate::ops::par_rows;

pub(super) fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], d: usize, eps: f64) -> Vec<f32> {
    let mut out = x.to_vec();
    par_rows(&mut out, d, |_, row| {
        let mean = sum_f64(row, |v| v as f64) / d as f64;
        let var = sum_f64(row, |v| (v as f64 - mean).powi(2)) / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = ((*v as f64 - mean) * inv) as f32 * gamma[j] + beta[j];
        }
    });
    out
}

/// (mean, 1/sqrt(var + eps)) of each row of `d` values, f64 statistics rounded to f32.
pub(super) fn row_stats(x: &[f32], d: usize, eps: f64) -> Vec<f32> {
    x.chunks(d.max(1))
        .flat_map(|row| {
            let mean = sum_f64(row, |v| v as f64) / d as f64;
            let var = sum_f64(row, |v| (v as f64 - mean).powi(2)) / d as f64;
            [mean as f32, (1.0 / (var + eps).sqrt()) as f32]
        })
        .collect()
}

/// Σ f(x) in f64 over eight independent partial sums, so that it vectorises (one running sum is a chain of
/// dependent adds).
#[inline(always)]
fn sum_f64(xs: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut s = [0f64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            s[l] += f(c[l]);
        }
    }
    chunks.remainder().iter().map(|v| f(*v)).sum::<f64>() + s.iter().sum::<f64>()
}

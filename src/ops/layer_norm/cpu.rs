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

/// Backward of `layer_norm` for one row block: (dx, per-row contributions summed into dγ and dβ).
/// With x̂ = (x − mean)·rstd and dx̂ = g ⊙ γ: dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂)).
pub(super) fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    d: usize,
    eps: f64,
) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0f32; x.len()];
    let (mut dgamma, mut dbeta) = (vec![0f64; d], vec![0f64; d]);
    for ((row, g), dx_row) in x.chunks(d).zip(grad.chunks(d)).zip(dx.chunks_mut(d)) {
        let mean = sum_f64(row, |v| v as f64) / d as f64;
        let var = sum_f64(row, |v| (v as f64 - mean).powi(2)) / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let xhat: Vec<f64> = row.iter().map(|&v| (v as f64 - mean) * rstd).collect();
        let dxhat: Vec<f64> = g.iter().zip(gamma).map(|(&g, &w)| g as f64 * w as f64).collect();
        let mean_dxhat = dxhat.iter().sum::<f64>() / d as f64;
        let mean_dxhat_xhat = dxhat.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / d as f64;
        for j in 0..d {
            dx_row[j] = (rstd * (dxhat[j] - mean_dxhat - xhat[j] * mean_dxhat_xhat)) as f32;
            dgamma[j] += g[j] as f64 * xhat[j];
            dbeta[j] += g[j] as f64;
        }
    }
    (dx, dgamma, dbeta)
}

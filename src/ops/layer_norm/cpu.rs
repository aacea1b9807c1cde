use crate::ops::par_rows;

pub(super) fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], d: usize, eps: f64) -> Vec<f32> {
    let mut out = x.to_vec();
    par_rows(&mut out, d, |_, row| {
        let mean = row.iter().map(|v| *v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = ((*v as f64 - mean) * inv) as f32 * gamma[j] + beta[j];
        }
    });
    out
}

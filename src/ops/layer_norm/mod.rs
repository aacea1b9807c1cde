//! LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) · γ + β, statistics in f64 on the CPU.

mod cpu;

use crate::error::Result;
use crate::tensor::{Storage, Tensor};

use super::expect_shape;

pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.last_dim();
    expect_shape("layer_norm", "gamma", gamma, &[d])?;
    expect_shape("layer_norm", "beta", beta, &[d])?;
    match x.storage() {
        Storage::Cpu(_) => {
            let out = cpu::layer_norm(x.cpu_slice()?, gamma.cpu_slice()?, beta.cpu_slice()?, d, eps);
            Tensor::from_vec(out, x.shape())
        }
        Storage::Gpu(_) => super::gpu::layer_norm(x, gamma, beta, eps),
    }
}

/// Each row's mean and 1/sqrt(var + eps) as f32 `[rows, 2]`: the statistics of `layer_norm` for a linear that
/// folds the normalisation into its epilogue (`Epilogue::with_row_norm`).
pub fn layer_norm_stats(x: &Tensor, eps: f64) -> Result<Tensor> {
    match x.storage() {
        Storage::Cpu(_) => Tensor::from_vec(cpu::row_stats(x.cpu_slice()?, x.last_dim(), eps), &[x.rows(), 2]),
        Storage::Gpu(_) => super::gpu::layer_norm_stats(x, eps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{rand_vec, rel_err};

    #[test]
    fn matches_float64_reference() {
        for (rows, d, seed) in [(1, 1, 1), (3, 7, 2), (17, 48, 3), (5, 769, 4)] {
            let x: Vec<f32> = rand_vec(rows * d, seed, 2.0).iter().map(|v| v + 0.5).collect();
            let g = rand_vec(d, seed + 1, 1.0);
            let b = rand_vec(d, seed + 2, 1.0);
            let eps = 1e-5;
            let mut want = vec![0f64; rows * d];
            for r in 0..rows {
                let row = &x[r * d..(r + 1) * d];
                let mean = row.iter().map(|v| *v as f64).sum::<f64>() / d as f64;
                let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                for j in 0..d {
                    want[r * d + j] = (row[j] as f64 - mean) / (var + eps).sqrt() * g[j] as f64 + b[j] as f64;
                }
            }
            let y = layer_norm(
                &Tensor::from_vec(x, &[rows, d]).unwrap(),
                &Tensor::from_vec(g, &[d]).unwrap(),
                &Tensor::from_vec(b, &[d]).unwrap(),
                eps,
            )
            .unwrap();
            let err = rel_err(&y.to_vec().unwrap(), &want);
            assert!(err < 1e-6, "rows={rows} d={d}: {err}");
        }
    }
}

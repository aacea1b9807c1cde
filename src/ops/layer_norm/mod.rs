//! LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) · γ + β, statistics in f64 on the CPU.

mod cpu;

use crate::autograd::{self, Backward};
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

use super::expect_shape;

pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.last_dim();
    expect_shape("layer_norm", "gamma", gamma, &[d])?;
    expect_shape("layer_norm", "beta", beta, &[d])?;
    let out = match x.storage() {
        Storage::Cpu(_) => {
            let out = cpu::layer_norm(x.cpu_slice()?, gamma.cpu_slice()?, beta.cpu_slice()?, d, eps);
            Tensor::from_vec(out, x.shape())?
        }
        Storage::Gpu(_) => super::gpu::layer_norm(x, gamma, beta, eps)?,
    };
    let inputs = [x, gamma, beta];
    Ok(autograd::record(out, &inputs, || LayerNormBackward { inputs: inputs.map(Tensor::clone), eps }))
}

/// Keeps x, γ and β; the statistics are recomputed.
struct LayerNormBackward {
    inputs: [Tensor; 3],
    eps: f64,
}

impl Backward for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        self.inputs.iter().collect()
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let [x, gamma, beta] = &self.inputs;
        if [x, gamma, grad].iter().any(|t| !matches!(t.storage(), Storage::Cpu(_))) {
            return Err(autograd::cpu_only("layer_norm"));
        }
        let d = x.last_dim();
        let (dx, dgamma, dbeta) =
            cpu::layer_norm_backward(x.cpu_slice()?, gamma.cpu_slice()?, grad.cpu_slice()?, d, self.eps);
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect::<Vec<_>>();
        Ok(vec![
            x.is_tracked().then(|| Tensor::from_vec(dx, x.shape())).transpose()?,
            gamma.is_tracked().then(|| Tensor::from_vec(to_f32(dgamma), gamma.shape())).transpose()?,
            beta.is_tracked().then(|| Tensor::from_vec(to_f32(dbeta), beta.shape())).transpose()?,
        ])
    }
}

/// Each row's mean and 1/sqrt(var + eps) as f32 `[rows, 2]`: the statistics of `layer_norm` for a linear that
/// folds the normalisation into its epilogue (`Epilogue::with_row_norm`).
pub fn layer_norm_stats(x: &Tensor, eps: f64) -> Result<Tensor> {
    crate::autograd::untracked("layer_norm_stats", &[x])?;
    match x.storage() {
        Storage::Cpu(_) => Tensor::from_vec(cpu::row_stats(x.cpu_slice()?, x.last_dim(), eps), &[x.rows(), 2]),
        Storage::Gpu(_) => super::gpu::layer_norm_stats(x, eps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{fd_grad, rand_vec, rel_err, to_f64, weighted_sum};

    fn forward64(x: &[f64], g: &[f64], b: &[f64], d: usize, eps: f64) -> Vec<f64> {
        x.chunks(d)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / d as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
                (0..d).map(move |j| (row[j] - mean) / (var + eps).sqrt() * g[j] + b[j])
            })
            .collect()
    }

    #[test]
    fn gradients_match_float64_finite_differences() {
        for (rows, d, seed) in [(1, 2, 1), (3, 7, 2), (5, 33, 3)] {
            let eps = 1e-5;
            let x: Vec<f32> = rand_vec(rows * d, seed, 2.0).iter().map(|v| v + 0.5).collect();
            let (g, b) = (rand_vec(d, seed + 1, 1.0), rand_vec(d, seed + 2, 1.0));
            let up = rand_vec(rows * d, seed + 3, 1.0);
            let vars = [(&x, vec![rows, d]), (&g, vec![d]), (&b, vec![d])]
                .map(|(v, s)| Tensor::from_vec(v.clone(), &s).unwrap().variable());
            let y = layer_norm(&vars[0], &vars[1], &vars[2], eps).unwrap();
            let grads = autograd::backward_with(&y, &Tensor::from_vec(up.clone(), &[rows, d]).unwrap()).unwrap();
            let p64 = [to_f64(&x), to_f64(&g), to_f64(&b)];
            for (i, name) in ["x", "gamma", "beta"].iter().enumerate() {
                let want = fd_grad(&p64[i], |v| {
                    let mut p = p64.clone();
                    p[i] = v.to_vec();
                    weighted_sum(&forward64(&p[0], &p[1], &p[2], d, eps), &up)
                });
                let err = rel_err(&grads.get(&vars[i]).unwrap().to_vec().unwrap(), &want);
                assert!(err < 1e-4, "d{name} rows={rows} d={d}: {err}");
            }
        }
    }

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

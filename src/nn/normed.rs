//! A LayerNorm and the Linear it feeds (ln1 → Q/K/V, ln2 → fc1), optionally folded into one GEMM.
//!
//! LN(x)·Wᵀ + b = rstd·(x·Gᵀ − mean·c) + d, with G = W·diag(γ), c = G·1 and d = W·β + b made once at load. The
//! GEMM then reads x itself and takes each row's (mean, rstd) from the GEMM that wrote x
//! (`Linear::forward_with_stats`) or, failing that, from `ops::layer_norm_stats`: the normalised activations are
//! never written, which saves a write and a read of [tokens, D] per LayerNorm. G is rounded to
//! the storage dtype before c is summed, so `x·Gᵀ − mean·c` is exactly `(x − mean)·Gᵀ` up to f32 accumulation.
//! Opt-in on a GPU with `CPEAL_LN_FOLD=on` (a speed candidate until it is measured there; see
//! bench/results/gpu-notes-2026-12-07.md); never for an f32 residual stream (the GEMM reads 16-bit x).

use std::sync::OnceLock;

use crate::error::Result;
use crate::gpu::DType;
use crate::ops::{self, Activation, RowNorm};
use crate::tensor::Tensor;
use crate::Device;

use super::{LayerNorm, Linear};

pub enum NormedLinear {
    Separate {
        norm: LayerNorm,
        linear: Linear,
    },
    /// `linear` holds G and d; `col_sum` is c in f32.
    Folded {
        linear: Linear,
        col_sum: Tensor,
        eps: f64,
    },
}

impl NormedLinear {
    /// The linear of an unfolded pair, for an adapter; a folded one has no separate linear to adapt.
    pub fn unfolded_linear(&mut self, what: &str) -> Result<&mut Linear> {
        match self {
            NormedLinear::Separate { linear, .. } => Ok(linear),
            NormedLinear::Folded { .. } => Err(crate::Error::invalid(
                what.to_string(),
                "the LayerNorm is folded into this linear (CPEAL_LN_FOLD=on); unset it to use adapters",
            )),
        }
    }

    /// `norm` and `linear` as they are (on the device), one after the other.
    pub fn separate(norm: LayerNorm, linear: Linear) -> NormedLinear {
        NormedLinear::Separate { norm, linear }
    }

    /// The fold of `norm` into `linear` (both on the CPU, f32), stored on `device`.
    pub fn folded(norm: &LayerNorm, linear: &Linear, device: &Device) -> Result<NormedLinear> {
        let [n, k] = linear.weight.dims::<2>("fold layer norm")?;
        ops::expect_shape("fold layer norm", "gamma", &norm.weight, &[k])?;
        let (w, gamma, beta) = (linear.weight.cpu_slice()?, norm.weight.cpu_slice()?, norm.bias.cpu_slice()?);
        let dt = device.storage_dtype();
        let g: Vec<f32> = w.chunks(k).flat_map(|row| row.iter().zip(gamma).map(|(w, g)| w * g)).collect();
        let g = dt.round(&g);
        let col_sum: Vec<f32> = g.chunks(k).map(|row| row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32).collect();
        let bias = linear.bias.as_ref().map(|b| b.cpu_slice()).transpose()?;
        let d: Vec<f32> = (0..n)
            .map(|j| {
                let wb: f64 = w[j * k..][..k].iter().zip(beta).map(|(&w, &b)| f64::from(w) * f64::from(b)).sum();
                (wb + bias.map_or(0.0, |b| f64::from(b[j]))) as f32
            })
            .collect();
        Ok(NormedLinear::Folded {
            linear: Linear::new(
                Tensor::from_vec(g, &[n, k])?.to_device_as(device, dt)?,
                Some(Tensor::from_vec(d, &[n])?.to_device_as(device, dt)?),
            ),
            col_sum: Tensor::from_vec(col_sum, &[n])?.to_device_as(device, DType::F32)?,
            eps: norm.eps,
        })
    }

    /// act(linear(LN(x))). A folded one takes x's statistics from `stats` when the GEMM that made x wrote them
    /// (`Linear::forward_with_stats`), else computes them; `Separate` ignores `stats`.
    pub fn forward(&self, x: &Tensor, stats: Option<&Tensor>, act: Activation) -> Result<Tensor> {
        match self {
            NormedLinear::Separate { norm, linear } => {
                linear.forward_with(&norm.forward(x)?, |e| e.with_activation(act))
            }
            NormedLinear::Folded { linear, col_sum, eps } => {
                let computed;
                let stats = match stats {
                    Some(s) => s,
                    None => {
                        computed = ops::layer_norm_stats(x, *eps)?;
                        &computed
                    }
                };
                let row_norm = RowNorm { stats, col_sum };
                linear.forward_with(x, |e| e.with_row_norm(row_norm).with_activation(act))
            }
        }
    }

    /// The epsilon of a folded LayerNorm, whose input's statistics the GEMM before it can provide; None when
    /// the LayerNorm runs on its own.
    pub fn folded_eps(&self) -> Option<f64> {
        match self {
            NormedLinear::Folded { eps, .. } => Some(*eps),
            NormedLinear::Separate { .. } => None,
        }
    }
}

/// Whether blocks on `device` fold their LayerNorms: `CPEAL_LN_FOLD=on` on a GPU (`off`, unset: no).
pub fn fold_requested(device: &Device) -> Result<bool> {
    static FORCED: OnceLock<std::result::Result<Option<bool>, String>> = OnceLock::new();
    let forced = crate::gpu::ops::forced_choice(&FORCED, "CPEAL_LN_FOLD", || {
        vec![("on".to_string(), true), ("off".to_string(), false)]
    })?;
    Ok(matches!(device, Device::Gpu(_)) && forced == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{rand_vec, rel_err};

    fn tensor(v: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape).unwrap()
    }

    /// The fold is an identity of the algebra: on the CPU (f32, no rounding of G) it must give the unfolded
    /// result to f32 accuracy, on rows whose mean is far from zero (where `x·Gᵀ − mean·c` cancels most).
    #[test]
    fn folded_matches_layer_norm_then_linear_on_the_cpu() {
        for (rows, k, n, seed, act) in
            [(1, 8, 3, 1, Activation::None), (7, 40, 17, 2, Activation::Gelu), (33, 96, 50, 3, Activation::QuickGelu)]
        {
            let x: Vec<f32> = rand_vec(rows * k, seed, 2.0).iter().map(|v| v + 3.0).collect();
            let norm = LayerNorm {
                weight: tensor(rand_vec(k, seed + 1, 1.0), &[k]),
                bias: tensor(rand_vec(k, seed + 2, 1.0), &[k]),
                eps: 1e-5,
            };
            let linear = Linear::new(
                tensor(rand_vec(n * k, seed + 3, 0.5), &[n, k]),
                Some(tensor(rand_vec(n, seed + 4, 1.0), &[n])),
            );
            let x = tensor(x, &[rows, k]);
            let want = linear.forward_with(&norm.forward(&x).unwrap(), |e| e.with_activation(act)).unwrap();
            let want: Vec<f64> = want.to_vec().unwrap().iter().map(|&v| f64::from(v)).collect();
            let folded = NormedLinear::folded(&norm, &linear, &Device::Cpu).unwrap();
            let got = folded.forward(&x, None, act).unwrap();
            assert_eq!(got.shape(), &[rows, n]);
            let err = rel_err(&got.to_vec().unwrap(), &want);
            assert!(err < 1e-5, "rows={rows} k={k} n={n}: rel err {err}");
        }
    }

    #[test]
    fn the_fold_needs_gamma_as_wide_as_the_input() {
        let norm = LayerNorm { weight: tensor(vec![1.0; 4], &[4]), bias: tensor(vec![0.0; 4], &[4]), eps: 1e-5 };
        let linear = Linear::new(tensor(vec![1.0; 6], &[2, 3]), None);
        let err = NormedLinear::folded(&norm, &linear, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("gamma"), "{err}");
    }
}

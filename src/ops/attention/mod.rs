//! Multi-head scaled-dot-product attention over the packed output of the fused Q/K/V projection,
//! `[B, T, 3·H·dh]` (Q, K, V side by side per token, as `nn::Linear::concat` builds it). Heads are read through
//! strides, never split into copies.

mod backward;
mod cpu;

use crate::autograd::{self, Backward};
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

/// softmax(Q·Kᵀ/√dh [+ causal mask]) · V per head; returns `[B, T, H·dh]`.
pub fn attention(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    let [b, t, d3] = qkv.dims::<3>("attention")?;
    let d = d3 / 3;
    if d3 % 3 != 0 || heads == 0 || d % heads != 0 {
        return Err(Error::shape(
            "attention",
            format!("packed qkv {:?} cannot be split into 3 x {heads} heads", qkv.shape()),
        ));
    }
    let dims = cpu::Dims { batch: b, tokens: t, heads, head_dim: d / heads };
    let out = match qkv.storage() {
        Storage::Cpu(_) => Tensor::from_vec(cpu::attention(qkv.cpu_slice()?, dims, causal), &[b, t, d])?,
        Storage::Gpu(_) => super::gpu::attention(qkv, heads, causal)?,
    };
    Ok(autograd::record(out, &[qkv], || AttentionBackward { qkv: qkv.clone(), dims, causal }))
}

struct AttentionBackward {
    qkv: Tensor,
    dims: cpu::Dims,
    causal: bool,
}

impl Backward for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.qkv]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (Storage::Cpu(_), Storage::Cpu(_)) = (self.qkv.storage(), grad.storage()) else {
            return Err(autograd::cpu_only("attention"));
        };
        let dqkv = backward::attention_backward(self.qkv.cpu_slice()?, grad.cpu_slice()?, self.dims, self.causal);
        Ok(vec![Some(Tensor::from_vec(dqkv, self.qkv.shape())?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{fd_grad, rand_vec, rel_err, to_f64, weighted_sum};

    /// Attention in float64 over a packed qkv `[B, T, 3·D]`.
    fn forward64(qkv: &[f64], b: usize, t: usize, h: usize, dh: usize, causal: bool) -> Vec<f64> {
        let d = h * dh;
        let at = |bi: usize, ti: usize, which: usize, hi: usize, c: usize| {
            qkv[(bi * t + ti) * 3 * d + which * d + hi * dh + c]
        };
        let mut out = vec![0f64; b * t * d];
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..t {
                    let n = if causal { i + 1 } else { t };
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..dh).map(|c| at(bi, i, 0, hi, c) * at(bi, j, 1, hi, c)).sum::<f64>() / (dh as f64).sqrt()
                        })
                        .collect();
                    let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
                    for c in 0..dh {
                        out[bi * t * d + i * d + hi * dh + c] =
                            (0..n).map(|j| (s[j] - mx).exp() / z * at(bi, j, 2, hi, c)).sum();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn gradient_matches_float64_finite_differences() {
        for (b, t, h, dh, seed) in [(1, 1, 1, 1, 1), (2, 5, 3, 4, 2), (1, 9, 2, 7, 3)] {
            let d = h * dh;
            let qkv = rand_vec(b * t * 3 * d, seed, 1.5);
            let up = rand_vec(b * t * d, seed + 1, 1.0);
            let var = Tensor::from_vec(qkv.clone(), &[b, t, 3 * d]).unwrap().variable();
            for causal in [false, true] {
                let y = attention(&var, h, causal).unwrap();
                let grads = autograd::backward_with(&y, &Tensor::from_vec(up.clone(), &[b, t, d]).unwrap()).unwrap();
                let want = fd_grad(&to_f64(&qkv), |p| weighted_sum(&forward64(p, b, t, h, dh, causal), &up));
                let err = rel_err(&grads.get(&var).unwrap().to_vec().unwrap(), &want);
                assert!(err < 1e-4, "b={b} t={t} h={h} dh={dh} causal={causal}: {err}");
            }
        }
    }

    #[test]
    fn matches_float64_reference_with_and_without_causal_mask() {
        for (b, t, h, dh, seed) in
            [(1, 1, 1, 1, 1), (2, 5, 3, 4, 2), (3, 17, 4, 12, 3), (1, 40, 2, 33, 4), (1, 197, 2, 64, 5)]
        {
            let n = b * t * h * dh;
            let (q, k, v) = (rand_vec(n, seed, 1.5), rand_vec(n, seed + 1, 1.5), rand_vec(n, seed + 2, 1.0));
            let d = h * dh;
            let packed: Vec<f32> =
                (0..b * t).flat_map(|r| [&q, &k, &v].map(|x| x[r * d..(r + 1) * d].to_vec()).concat()).collect();
            let qkv = Tensor::from_vec(packed, &[b, t, 3 * d]).unwrap();
            for causal in [false, true] {
                let y = attention(&qkv, h, causal).unwrap();
                let err =
                    rel_err(&y.to_vec().unwrap(), &forward64(&to_f64(qkv.cpu_slice().unwrap()), b, t, h, dh, causal));
                assert!(err < 1e-6, "b={b} t={t} h={h} dh={dh} causal={causal}: {err}");
            }
        }
    }
}

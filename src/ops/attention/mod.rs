//! Multi-head scaled-dot-product attention over the packed output of the fused Q/K/V projection,
//! `[B, T, 3·H·dh]` (Q, K, V side by side per token, as `nn::Linear::concat` builds it). Heads are read through
//! strides, never split into copies.

mod cpu;

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
    match qkv.storage() {
        Storage::Cpu(_) => Tensor::from_vec(cpu::attention(qkv.cpu_slice()?, dims, causal), &[b, t, d]),
        Storage::Gpu(_) => super::gpu::attention(qkv, heads, causal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{rand_vec, rel_err};

    #[allow(clippy::too_many_arguments)]
    fn reference(q: &[f32], k: &[f32], v: &[f32], b: usize, t: usize, h: usize, dh: usize, causal: bool) -> Vec<f64> {
        let d = h * dh;
        let mut out = vec![0f64; b * t * d];
        let at = |x: &[f32], bi: usize, ti: usize, hi: usize, j: usize| x[bi * t * d + ti * d + hi * dh + j] as f64;
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..t {
                    let n = if causal { i + 1 } else { t };
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..dh).map(|c| at(q, bi, i, hi, c) * at(k, bi, j, hi, c)).sum::<f64>() / (dh as f64).sqrt()
                        })
                        .collect();
                    let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
                    for c in 0..dh {
                        out[bi * t * d + i * d + hi * dh + c] =
                            (0..n).map(|j| (s[j] - mx).exp() / z * at(v, bi, j, hi, c)).sum();
                    }
                }
            }
        }
        out
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
                let err = rel_err(&y.to_vec().unwrap(), &reference(&q, &k, &v, b, t, h, dh, causal));
                assert!(err < 1e-6, "b={b} t={t} h={h} dh={dh} causal={causal}: {err}");
            }
        }
    }
}

//! Backward of `attention`, per (batch, head), recomputing the probabilities P = softmax(Q·Kᵀ·s [+ mask]):
//! dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = s·dS·K, dK = s·dSᵀ·Q, written into the packed
//! `[B, T, 3·D]` layout of the input.

use rayon::prelude::*;

use crate::ops::matmul::{matmul, Layout};

use super::cpu::Dims;

/// d qkv `[B, T, 3·D]` from `qkv` and d out `[B, T, D]`.
pub(super) fn attention_backward(qkv: &[f32], grad: &[f32], dims: Dims, causal: bool) -> Vec<f32> {
    let Dims { batch, tokens: t, heads, head_dim: dh } = dims;
    let d = heads * dh;
    let per_head: Vec<[Vec<f32>; 3]> =
        (0..batch * heads).into_par_iter().map(|task| head_backward(qkv, grad, dims, causal, task)).collect();
    let mut dqkv = vec![0f32; batch * t * 3 * d];
    for (task, parts) in per_head.iter().enumerate() {
        let (b, h) = (task / heads, task % heads);
        for (which, part) in parts.iter().enumerate() {
            for i in 0..t {
                dqkv[(b * t + i) * 3 * d + which * d + h * dh..][..dh].copy_from_slice(&part[i * dh..][..dh]);
            }
        }
    }
    dqkv
}

/// [dQ, dK, dV] of one head, each `[T, dh]`.
fn head_backward(qkv: &[f32], grad: &[f32], dims: Dims, causal: bool, task: usize) -> [Vec<f32>; 3] {
    let Dims { tokens: t, heads, head_dim: dh, .. } = dims;
    let d = heads * dh;
    let (b, h) = (task / heads, task % heads);
    let slice = |src: &[f32], row_width: usize, offset: usize| -> Vec<f32> {
        (0..t).flat_map(|i| src[(b * t + i) * row_width + offset + h * dh..][..dh].iter().copied()).collect()
    };
    let (q, k, v) = (slice(qkv, 3 * d, 0), slice(qkv, 3 * d, d), slice(qkv, 3 * d, 2 * d));
    let d_out = slice(grad, d, 0);
    let scale = 1.0 / (dh as f32).sqrt();
    let p = probabilities(&q, &k, t, dh, scale, causal);
    let dv = matmul(&p, Layout::Transposed, &d_out, Layout::RowMajor, (t, t, dh));
    let mut ds = matmul(&d_out, Layout::RowMajor, &v, Layout::Transposed, (t, dh, t));
    for (ds_row, p_row) in ds.chunks_mut(t).zip(p.chunks(t)) {
        let dot: f64 = ds_row.iter().zip(p_row).map(|(a, b)| *a as f64 * *b as f64).sum();
        ds_row.iter_mut().zip(p_row).for_each(|(g, p)| *g = scale * p * (*g - dot as f32));
    }
    let dq = matmul(&ds, Layout::RowMajor, &k, Layout::RowMajor, (t, t, dh));
    let dk = matmul(&ds, Layout::Transposed, &q, Layout::RowMajor, (t, t, dh));
    [dq, dk, dv]
}

/// softmax(s·Q·Kᵀ) per row, with the keys after the query masked out when `causal`.
fn probabilities(q: &[f32], k: &[f32], t: usize, dh: usize, scale: f32, causal: bool) -> Vec<f32> {
    let mut s = matmul(q, Layout::RowMajor, k, Layout::Transposed, (t, dh, t));
    for (i, row) in s.chunks_mut(t).enumerate() {
        let visible = if causal { i + 1 } else { t };
        let max = row[..visible].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
        let mut sum = 0f64;
        for v in row[..visible].iter_mut() {
            *v = (*v * scale - max).exp();
            sum += *v as f64;
        }
        row[..visible].iter_mut().for_each(|v| *v = (*v as f64 / sum) as f32);
        row[visible..].iter_mut().for_each(|v| *v = 0.0);
    }
    s
}

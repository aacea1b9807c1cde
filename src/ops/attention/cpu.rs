//! CPU attention: one task per (batch, head), two GEMMs and a row softmax in between. Q and the probabilities
//! are read in place (Q from the packed `[B, T, 3·D]` projection output); Kᵀ and V are packed per head for the
//! `sgemm` kernel, or read through strides by the gemm crate where that kernel is not available.

use rayon::prelude::*;

use crate::ops::math;
use crate::ops::sgemm::{self, Epilogue, PackedB};

#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// A raw output pointer that rayon tasks share; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (batch, head) column blocks of the output.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Query rows per block on the sgemm path (a multiple of the 6-row tile): their scores stay in L1/L2 between
/// the two GEMMs.
const ROW_BLOCK: usize = 48;

/// `qkv` is `[B, T, 3·D]` (Q, K, V side by side per token); returns `[B, T, D]`.
pub(super) fn attention(qkv: &[f32], dims: Dims, causal: bool) -> Vec<f32> {
    let Dims { batch, tokens: t, heads, head_dim: dh } = dims;
    let d = heads * dh;
    let fast = sgemm::available();
    // The sgemm path writes every output element (each head's P·V covers its columns of all rows) before
    // anything reads it, so its output is not zero-filled first; the length is set after the loop.
    let len = batch * t * d;
    let mut out = if fast { Vec::with_capacity(len) } else { vec![0f32; len] };
    let shared = SharedOut(out.as_mut_ptr());
    let scale = 1.0 / (dh as f32).sqrt();
    (0..batch * heads).into_par_iter().for_each_init(
        || (vec![0f32; t * t], PackedB::default(), PackedB::default()),
        |(scores, packed_k, packed_v), task| {
            let (b, h) = (task / heads, task % heads);
            let q = b * t * 3 * d + h * dh;
            let (k, v) = (q + d, q + 2 * d);
            let o = b * t * d + h * dh;
            // SAFETY: q/k/v/o index the (b, h) head of token 0; rows advance by 3·D (inputs) or D (output), so
            // every access stays inside `qkv` and inside this task's own block of `out`.
            unsafe {
                #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw pointer field
                let shared = shared;
                let qkv = qkv.as_ptr();
                if fast {
                    // Kᵀ (B[p, j] = K[j, p]) and V (B[p, j] = V[p, j]) packed once; then per block of query rows
                    // scores = Q · Kᵀ, softmax (with the scale), out = P · V, while the block's scores are hot.
                    packed_k.pack(qkv.add(k), dh, t, 1, 3 * d);
                    packed_v.pack(qkv.add(v), t, dh, 3 * d, 1);
                    for r0 in (0..t).step_by(ROW_BLOCK) {
                        let rows = ROW_BLOCK.min(t - r0);
                        let s = scores.as_mut_ptr();
                        let none = &Epilogue::NONE;
                        sgemm::gemm_rows(rows, qkv.add(q + r0 * 3 * d), 3 * d, packed_k, s, t, none);
                        softmax_rows(&mut scores[..rows * t], t, r0, scale, causal);
                        sgemm::gemm_rows(rows, scores.as_ptr(), t, packed_v, shared.0.add(o + r0 * d), d, none);
                    }
                } else {
                    // scores[t, t] = Q · Kᵀ
                    strided_gemm(scores.as_mut_ptr(), t, qkv.add(q), 3 * d, 1, qkv.add(k), 1, 3 * d, t, t, dh, 1.0);
                    softmax_rows(scores, t, 0, scale, causal);
                    // out[t, dh] = P · V
                    strided_gemm(shared.0.add(o), d, scores.as_ptr(), t, 1, qkv.add(v), 3 * d, 1, t, dh, t, 1.0);
                }
            }
        },
    );
    // SAFETY: all `len` values are initialised (zero-filled, or written by the tasks above).
    unsafe { out.set_len(len) };
    out
}

/// dst[m, n] (row stride `dst_rs`) = alpha · lhs[m, k] · rhs[k, n], all given by row/column strides.
#[allow(clippy::too_many_arguments)]
unsafe fn strided_gemm(
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
) {
    let s = |x: usize| x as isize;
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        s(dst_rs),
        false,
        lhs,
        s(lhs_cs),
        s(lhs_rs),
        rhs,
        s(rhs_cs),
        s(rhs_rs),
        0.0,
        alpha,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Each row ← softmax(scale · row), entries past the diagonal zeroed when `causal` (the rows are query rows
/// `first_row..`).
fn softmax_rows(scores: &mut [f32], t: usize, first_row: usize, scale: f32, causal: bool) {
    for (i, row) in scores.chunks_mut(t).enumerate() {
        let valid = if causal { first_row + i + 1 } else { t };
        let (live, masked) = row.split_at_mut(valid);
        #[cfg(target_arch = "x86_64")]
        if sgemm::available() {
            // SAFETY: `available()` means AVX2 and FMA are present.
            unsafe { crate::ops::simd::softmax_row(live, scale) };
            masked.iter_mut().for_each(|x| *x = 0.0);
            continue;
        }
        let inv = 1.0 / exp_sum(live, max(live), scale);
        live.iter_mut().for_each(|x| *x *= inv);
        masked.iter_mut().for_each(|x| *x = 0.0);
    }
}
/// Lanes of independent partial results, so that the reductions below vectorise (a plain fold is sequential).
const LANES: usize = 8;

fn max(xs: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            m[l] = if c[l] > m[l] { c[l] } else { m[l] };
        }
    }
    chunks.remainder().iter().chain(&m).fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// xs ← exp(scale · (xs − max)), returning their sum.
fn exp_sum(xs: &mut [f32], max: f32, scale: f32) -> f32 {
    let mut s = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            c[l] = math::exp((c[l] - max) * scale);
            s[l] += c[l];
        }
    }
    let mut rest = 0.0;
    for x in chunks.into_remainder() {
        *x = math::exp((*x - max) * scale);
        rest += *x;
    }
    s.iter().sum::<f32>() + rest
}

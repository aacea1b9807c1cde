//! CPU attention: one task per (batch, head), two strided gemm calls and a row softmax in between.

use rayon::prelude::*;

use crate::ops::math;

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

pub(super) fn attention(q: &[f32], k: &[f32], v: &[f32], dims: Dims, causal: bool) -> Vec<f32> {
    let Dims { batch, tokens: t, heads, head_dim: dh } = dims;
    let d = heads * dh;
    let mut out = vec![0f32; batch * t * d];
    let shared = SharedOut(out.as_mut_ptr());
    let scale = 1.0 / (dh as f32).sqrt();
    (0..batch * heads).into_par_iter().for_each_init(
        || vec![0f32; t * t],
        |scores, task| {
            let (b, h) = (task / heads, task % heads);
            let base = b * t * d + h * dh;
            // SAFETY: `base` indexes the (b, h) block; rows advance by `d`; all reads stay in q/k/v and the
            // write stays in this task's block of `out`.
            unsafe {
                let shared = shared;
                gemm_nograd(
                    scores.as_mut_ptr(),
                    t as isize,
                    q.as_ptr().add(base),
                    k.as_ptr().add(base),
                    t,
                    t,
                    dh,
                    d,
                    scale,
                    true,
                );
                softmax_rows(scores, t, causal);
                gemm_nograd(
                    shared.0.add(base),
                    d as isize,
                    scores.as_ptr(),
                    v.as_ptr().add(base),
                    t,
                    dh,
                    t,
                    d,
                    1.0,
                    false,
                );
            }
        },
    );
    out
}

/// dst[m, n] (row stride `dst_rs`) = alpha · lhs[m, k] · rhs, where for the scores product (`rhs_is_keys`) lhs
/// is Q (row stride `d`) and rhs = Kᵀ; otherwise lhs is the `[t, t]` probability matrix and rhs is V.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_nograd(
    dst: *mut f32,
    dst_rs: isize,
    lhs: *const f32,
    rhs: *const f32,
    m: usize,
    n: usize,
    k: usize,
    d: usize,
    alpha: f32,
    rhs_is_keys: bool,
) {
    let d = d as isize;
    let (lhs_rs, rhs_cs, rhs_rs) = if rhs_is_keys { (d, d, 1) } else { (k as isize, 1, d) };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        false,
        lhs,
        1,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        0.0,
        alpha,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

fn softmax_rows(scores: &mut [f32], t: usize, causal: bool) {
    for (i, row) in scores.chunks_mut(t).enumerate() {
        let valid = if causal { i + 1 } else { t };
        let (live, masked) = row.split_at_mut(valid);
        let max = live.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        live.iter_mut().for_each(|x| *x = math::exp(*x - max));
        let sum: f32 = live.iter().sum();
        let inv = 1.0 / sum;
        live.iter_mut().for_each(|x| *x *= inv);
        masked.iter_mut().for_each(|x| *x = 0.0);
    }
}

//! Entropy, least-confidence and margin: score every unlabelled row in one streaming pass over the logits (rows
//! in parallel chunks, stable softmax), then take the top K with a bounded heap.

use rayon::prelude::*;

use super::matrix::{logit_stats, CHUNK_ROWS};
use super::{scores_for_output, topk, PredictionKind, Predictions, Selection, SelectionInput};
use crate::error::{Error, Result};

/// Which uncertainty score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncertainty {
    /// −Σ p ln p.
    Entropy,
    /// 1 − max p.
    LeastConfidence,
    /// −(p₁ − p₂): the smaller the gap between the two most likely classes, the higher the score.
    Margin,
}

/// Top-`budget` unlabelled rows by the score, highest first, ties to the lower index.
pub fn select(kind: Uncertainty, input: &SelectionInput, budget: usize) -> Result<Selection> {
    let preds = input.predictions_for("entropy/least-confidence/margin")?;
    let scores = scores(kind, preds)?;
    let labeled = input.labeled_mask(scores.len());
    let indices = topk::top_k(&scores, &labeled, budget);
    Ok(Selection { indices, scores: Some(scores_for_output(&scores, &labeled)) })
}

/// The score of every pool row (higher = more uncertain). Errors name the first row holding NaN or Inf.
pub fn scores(kind: Uncertainty, preds: &Predictions) -> Result<Vec<f64>> {
    let n = preds.pool_size();
    let mut scores = vec![0.0; n];
    let fast = preds.samples() == 1 && preds.kind() == PredictionKind::Logits;
    let first_bad = scores
        .par_chunks_mut(CHUNK_ROWS)
        .enumerate()
        .filter_map(|(chunk, out)| {
            let start = chunk * CHUNK_ROWS;
            if fast {
                score_logit_rows(kind, preds, start, out)
            } else {
                score_prob_rows(kind, preds, start, out)
            }
        })
        .min();
    match first_bad {
        Some(row) => Err(Error::invalid(preds.values().name(), format!("row {row} contains NaN or Inf"))),
        None => Ok(scores),
    }
}

/// Scores rows `start..start + out.len()` straight from logits; returns the first non-finite row, if any.
fn score_logit_rows(kind: Uncertainty, preds: &Predictions, start: usize, out: &mut [f64]) -> Option<usize> {
    let mut buf = Vec::new();
    let c = preds.classes();
    let values = preds.values().rows_f32(start, start + out.len(), &mut buf);
    for (r, (row, o)) in values.chunks_exact(c).zip(out.iter_mut()).enumerate() {
        match logit_row_score(kind, row) {
            Some(score) => *o = score,
            None => return Some(start + r),
        }
    }
    None
}

/// The score of one logit row exactly as the CPU path computes it (the device path rescores its candidate
/// rows with this); `None` when the row holds NaN or ±Inf.
pub(crate) fn logit_row_score(kind: Uncertainty, row: &[f32]) -> Option<f64> {
    let s = logit_stats(row, kind == Uncertainty::Margin);
    if !s.finite {
        return None;
    }
    Some(match kind {
        // H = ln Z − (Σ z e^z) / Z with z = x − max, Z = Σ e^z.
        Uncertainty::Entropy => s.z_sum.ln() - s.ze_sum / s.z_sum,
        Uncertainty::LeastConfidence => 1.0 - 1.0 / s.z_sum,
        Uncertainty::Margin => -(1.0 - ((s.second - s.max) as f64).exp()) / s.z_sum,
    })
}

/// A bound on |computed − exact| of every uncertainty score (entropy, least confidence, margin) of any finite
/// row of `c` logits, for an f32 evaluation of Z = Σ e^z and E = Σ z·e^z (z = x − max ≤ 0) in which each term
/// passes through at most `depth` rounded additions and `rescales` multiplications by a computed e^d, every
/// exp is within `exp_err`·u relative (u = 2⁻²⁴), and z (with the rescale exponents d) carries at most 2u|z|
/// of rounding. The exact value is that of the f32 inputs; terms below e^−87 may be dropped or kept.
///
/// First-order derivation, with L = ln c, p = softmax, Z ≥ 1 (the maximum contributes e^0 = 1):
/// - each term is off by ≤ A·u relative, A = depth + exp_err + rescales·(exp_err + 4) + 4, plus 2u|z| from
///   the exponent; E_p|z| = H − ln Z ≤ L, and E_p[z²] ≤ 1.14·(L + 2)² (split at |z| = L + 2 and use
///   z²e^z ≤ (L+2)²e^−(L+2) beyond, with at most c terms);
/// - so Z is off by ε_Z ≤ (A + 2L)u relative, and E/Z by ≤ A·u·L + 2.28u(L + 2)² absolutely;
/// - entropy ln Z − E/Z: ≤ ε_Z + 2uL (log) + |E/Z|·ε_Z (|E/Z| ≤ L) + the above + 4uL of final roundings;
///   least confidence 1 − 1/Z: ≤ ε_Z + 3u; margin −(1 − e^(s−f))/Z: ≤ ε_Z + (exp_err + 4)u. The entropy
///   bound covers all three:
///   B = A(1 + 2L) + 2L(1 + L) + 2.28(L + 2)² + 6L (units of u), plus 10⁻³⁵·c for the dropped terms.
pub fn score_error_bound(c: usize, depth: f64, rescales: f64, exp_err: f64) -> f64 {
    const U: f64 = 1.0 / 16_777_216.0;
    let l = (c.max(1) as f64).ln();
    let a = depth + exp_err + rescales * (exp_err + 4.0) + 4.0;
    let b = a * (1.0 + 2.0 * l) + 2.0 * l * (1.0 + l) + 2.28 * (l + 2.0).powi(2) + 6.0 * l;
    b * U + 1e-35 * c as f64
}

/// [`score_error_bound`] of the CPU path (`logit_stats`): 8 f32 lanes sum ⌈c/8⌉ terms each, then f64; no
/// rescaling (the row's maximum is found first); the exp is within 1.41u (checked on every f32 in [−87, 0]),
/// taken as 4u.
pub fn cpu_score_error(c: usize) -> f64 {
    score_error_bound(c, c.div_ceil(8) as f64 + 1.0, 0.0, 4.0)
}

/// Scores rows from (MC-averaged) probabilities; returns the first non-finite row, if any.
fn score_prob_rows(kind: Uncertainty, preds: &Predictions, start: usize, out: &mut [f64]) -> Option<usize> {
    let c = preds.classes();
    let (mut buf, mut tmp, mut p) = (Vec::new(), vec![0.0; c], vec![0.0; c]);
    for (r, o) in out.iter_mut().enumerate() {
        preds.mean_probs(start + r, &mut buf, &mut tmp, &mut p);
        if p.iter().any(|v| !v.is_finite()) {
            return Some(start + r);
        }
        *o = score_from_probs(kind, &p);
    }
    None
}

/// The score from a probability vector.
pub(crate) fn score_from_probs(kind: Uncertainty, p: &[f64]) -> f64 {
    match kind {
        Uncertainty::Entropy => super::matrix::entropy_f64(p),
        Uncertainty::LeastConfidence => 1.0 - p.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Uncertainty::Margin => {
            let (first, second) = super::matrix::top_two(p, f64::NEG_INFINITY);
            if p.len() < 2 {
                -1.0
            } else {
                -(first - second)
            }
        }
    }
}

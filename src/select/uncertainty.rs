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
        let s = logit_stats(row, kind == Uncertainty::Margin);
        if !s.finite {
            return Some(start + r);
        }
        *o = match kind {
            // H = ln Z − (Σ z e^z) / Z with z = x − max, Z = Σ e^z.
            Uncertainty::Entropy => s.z_sum.ln() - s.ze_sum / s.z_sum,
            Uncertainty::LeastConfidence => 1.0 - 1.0 / s.z_sum,
            Uncertainty::Margin => -(1.0 - ((s.second - s.max) as f64).exp()) / s.z_sum,
        };
    }
    None
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

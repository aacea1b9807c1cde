//! BALD and mean entropy from MC samples `[T, N, C]` (e.g. passes with LoRA dropout on).
//!
//! With p̄ the mean over T of the per-pass probabilities: mean entropy = H(p̄) (the predictive entropy), and
//! BALD = H(p̄) − (1/T) Σ_t H(p_t), the mutual information between the label and the model.

use rayon::prelude::*;

use super::matrix::entropy_f64;
use super::{scores_for_output, topk, Predictions, Selection, SelectionInput};
use crate::error::Result;

/// Which MC score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McScore {
    /// H(p̄) − mean_t H(p_t).
    Bald,
    /// H(p̄).
    MeanEntropy,
}

/// Top-`budget` unlabelled rows by the score, highest first, ties to the lower index.
pub fn select(kind: McScore, input: &SelectionInput, budget: usize) -> Result<Selection> {
    let preds = input.predictions_for("bald/mean-entropy")?;
    let scores = scores(kind, preds);
    let labeled = input.labeled_mask(scores.len());
    let indices = topk::top_k(&scores, &labeled, budget);
    Ok(Selection { indices, scores: Some(scores_for_output(&scores, &labeled)) })
}

/// The score of every pool row (inputs already checked finite).
pub fn scores(kind: McScore, preds: &Predictions) -> Vec<f64> {
    let c = preds.classes();
    (0..preds.pool_size())
        .into_par_iter()
        .map_init(
            || (Vec::new(), vec![0.0; c], vec![0.0; c]),
            |(buf, p, mean), i| {
                mean.iter_mut().for_each(|m| *m = 0.0);
                let mut entropy_sum = 0.0;
                for t in 0..preds.samples() {
                    preds.sample_probs(t, i, buf, p);
                    entropy_sum += entropy_f64(p);
                    mean.iter_mut().zip(p.iter()).for_each(|(m, v)| *m += v);
                }
                let t = preds.samples() as f64;
                mean.iter_mut().for_each(|m| *m /= t);
                let predictive = entropy_f64(mean);
                match kind {
                    McScore::MeanEntropy => predictive,
                    McScore::Bald => predictive - entropy_sum / t,
                }
            },
        )
        .collect()
}

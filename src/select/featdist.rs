//! featdist, as C_PEAL's `featdist.py` defines it (mode `default`): a row's score is the L2 distance of its
//! feature to the mean feature of the labelled rows whose label equals the row's predicted class; a row whose
//! predicted class has no labelled row gets the sentinel [`SENTINEL`] (1e6).
//!
//! Selection (C_PEAL's `run` with `splitval`): `h` = min(#sentinel rows, ⌊split·K⌋) sentinel rows in index
//! order, and K − h of the others by score, largest first (ties to the lower index); the others come first in
//! the output, then the sentinel rows. With the default split 0 no sentinel row is taken — unless there are
//! fewer than K others, when C_PEAL would return fewer than K; here the budget is then filled with further
//! sentinel rows in index order.

use rayon::prelude::*;

use super::{topk, Selection, SelectionInput};
use crate::error::{Error, Result};

/// Score of a row whose predicted class has no labelled sample (C_PEAL's `high_distance_value`).
pub const SENTINEL: f64 = 1e6;

/// `budget` rows by C_PEAL's featdist rule.
pub fn select(input: &SelectionInput, budget: usize) -> Result<Selection> {
    let scores = scores(input)?;
    let n = scores.len();
    let labeled = input.labeled_mask(n);
    let is_sentinel = |i: usize| scores[i] == SENTINEL;
    let high: Vec<usize> = (0..n).filter(|&i| !labeled[i] && is_sentinel(i)).collect();
    let excluded: Vec<bool> = (0..n).map(|i| labeled[i] || is_sentinel(i)).collect();
    let take_high = high.len().min((input.featdist_split * budget as f64).floor() as usize);
    let mut indices = topk::top_k(&scores, &excluded, budget - take_high);
    let fill = budget - indices.len();
    indices.extend(high.iter().take(fill));
    Ok(Selection { indices, scores: Some(super::scores_for_output(&scores, &labeled)) })
}

/// The featdist score of every pool row.
pub fn scores(input: &SelectionInput) -> Result<Vec<f64>> {
    let features = input.features_for("featdist")?;
    let preds = input.predictions_for("featdist")?;
    let labels = match (&input.labels, input.labeled.is_empty()) {
        (Some(labels), _) => labels.as_slice(),
        (None, true) => &[],
        (None, false) => {
            return Err(Error::invalid("labels", "strategy featdist needs the labels of the labelled rows"))
        }
    };
    let means = class_means(features, &input.labeled, labels, preds.classes());
    let predicted = preds.argmax_all();
    let scores = predicted
        .par_iter()
        .enumerate()
        .map_init(Vec::new, |buf, (i, &class)| match &means[class] {
            None => SENTINEL,
            Some(mean) => {
                let h = features.row(i, buf);
                h.iter().zip(mean).map(|(&x, &m)| (x as f64 - m).powi(2)).sum::<f64>().sqrt()
            }
        })
        .collect();
    Ok(scores)
}

/// Mean feature (f64) of the labelled rows of each class; `None` for a class without labelled rows.
fn class_means(features: &super::Mat, labeled: &[usize], labels: &[usize], classes: usize) -> Vec<Option<Vec<f64>>> {
    let d = features.cols();
    let mut sums = vec![vec![0.0f64; d]; classes];
    let mut counts = vec![0usize; classes];
    let mut buf = Vec::new();
    for (&i, &label) in labeled.iter().zip(labels) {
        let h = features.row(i, &mut buf);
        sums[label].iter_mut().zip(h).for_each(|(s, &x)| *s += x as f64);
        counts[label] += 1;
    }
    sums.into_iter()
        .zip(counts)
        .map(|(sum, count)| (count > 0).then(|| sum.into_iter().map(|s| s / count as f64).collect()))
        .collect()
}

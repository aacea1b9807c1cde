//! What one round of one arm and seed produced: the metrics on the test set after training on the labelled
//! images, and how long training and selection took. Written as JSON, one file per round, when the round is
//! complete; the run directory's tables and plots are made from these records alone.

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// The arm's name in the config (a strategy with its training loss, e.g. "entropy+uc").
    pub arm: String,
    pub seed: u64,
    /// 0 for the initial random round.
    pub round: usize,
    /// Labelled images the round trained on.
    pub labelled: usize,
    /// Accuracy and calibration on the test rows.
    pub metrics: Metrics,
    /// Wall-clock seconds of training and evaluating, and of scoring the pool and choosing the next images
    /// (about 0 in the last round). Not part of the results: they differ between runs.
    pub train_s: f64,
    pub select_s: f64,
}

//! The selection engine: given a pool's predictions (logits or probabilities, optionally MC samples) and/or
//! features, and the indices already labelled, choose `budget` more indices to label.
//!
//! Every strategy returns indices **in selection order**, never a labelled index and never a duplicate. Inputs
//! are read row by row from [`Mat`] views (memory-mapped and zero-copy for f32 files), so memory stays
//! O(N·(C + D)) at most and the f32 feature matrix is never copied.
//!
//! ```no_run
//! use cpeal::select::{select, Mat, Predictions, SelectionInput, Strategy};
//! let logits = vec![0.1f32, 2.0, -1.0, 0.3, 0.2, 0.1]; // [N = 2, C = 3]
//! let preds = Predictions::logits(Mat::from_f32(&logits[..], 2, 3, "logits")?);
//! let input = SelectionInput::new(1).with_predictions(preds);
//! let chosen = select(Strategy::Entropy, &input)?;
//! # Ok::<(), cpeal::Error>(())
//! ```

#![warn(missing_docs)]

pub mod badge;
pub mod bald;
pub mod coreset;
pub mod featdist;
pub mod gpu;
pub mod input;
mod matrix;
pub mod pcb;
mod quant;
pub mod random;
pub mod topk;
pub mod uncertainty;

pub use matrix::Mat;

use crate::error::{Error, Result};

/// An acquisition strategy (the CLI's `--strategy` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Uniformly at random from the unlabelled pool (seeded).
    Random,
    /// Highest predictive entropy first.
    Entropy,
    /// Highest 1 − max p first.
    LeastConfidence,
    /// Smallest gap between the two most likely classes first.
    Margin,
    /// k-center greedy in feature space (Sener & Savarese).
    Coreset,
    /// k-means++ seeding on gradient embeddings (Ash et al.).
    Badge,
    /// Mutual information between prediction and model (needs MC samples).
    Bald,
    /// Entropy of the MC-averaged prediction.
    MeanEntropy,
    /// Distance to the mean feature of the labelled samples of the predicted class (C_PEAL's `featdist`).
    Featdist,
}

impl Strategy {
    /// Whether the strategy reads predictions.
    pub fn needs_predictions(self) -> bool {
        !matches!(self, Strategy::Random | Strategy::Coreset)
    }

    /// Whether the strategy reads features.
    pub fn needs_features(self) -> bool {
        matches!(self, Strategy::Coreset | Strategy::Badge | Strategy::Featdist)
    }

    /// Whether the strategy needs MC samples (`[T, N, C]` with T ≥ 2).
    pub fn needs_mc_samples(self) -> bool {
        matches!(self, Strategy::Bald)
    }

    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Entropy => "entropy",
            Strategy::LeastConfidence => "least-confidence",
            Strategy::Margin => "margin",
            Strategy::Coreset => "coreset",
            Strategy::Badge => "badge",
            Strategy::Bald => "bald",
            Strategy::MeanEntropy => "mean-entropy",
            Strategy::Featdist => "featdist",
        }
    }
}

/// Whether prediction values are logits (softmax applied) or probabilities (used as given, renormalised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictionKind {
    /// Unnormalised scores; a numerically stable softmax turns them into probabilities.
    Logits,
    /// Non-negative values per row, divided by their sum.
    Probabilities,
}

/// The model's predictions on the pool: `samples` stacked `[N, C]` blocks (`[T, N, C]` viewed as `[T·N, C]`).
pub struct Predictions<'a> {
    values: Mat<'a>,
    samples: usize,
    kind: PredictionKind,
}

impl<'a> Predictions<'a> {
    /// One pass of logits, `[N, C]`.
    pub fn logits(values: Mat<'a>) -> Predictions<'a> {
        Predictions { values, samples: 1, kind: PredictionKind::Logits }
    }

    /// `samples` stacked passes (`[T, N, C]` as a `[T·N, C]` matrix) of the given kind.
    pub fn stacked(values: Mat<'a>, samples: usize, kind: PredictionKind) -> Result<Predictions<'a>> {
        if samples == 0 || values.rows() % samples != 0 {
            return Err(Error::invalid(
                values.name(),
                format!("{} rows do not split into {samples} MC samples", values.rows()),
            ));
        }
        Ok(Predictions { values, samples, kind })
    }

    /// Pool size N.
    pub fn pool_size(&self) -> usize {
        self.values.rows() / self.samples
    }

    /// Number of classes C.
    pub fn classes(&self) -> usize {
        self.values.cols()
    }

    /// Number of MC samples T (1 for plain logits).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Value kind.
    pub fn kind(&self) -> PredictionKind {
        self.kind
    }

    /// The underlying `[T·N, C]` matrix.
    pub fn values(&self) -> &Mat<'a> {
        &self.values
    }

    /// Probabilities of MC sample `t` for pool row `i`, written to `out` (length C).
    pub(crate) fn sample_probs(&self, t: usize, i: usize, buf: &mut Vec<f32>, out: &mut [f64]) {
        let row = self.values.row(t * self.pool_size() + i, buf);
        match self.kind {
            PredictionKind::Logits => matrix::softmax_f64(row, out),
            PredictionKind::Probabilities => {
                let sum: f64 = row.iter().map(|&v| v as f64).sum();
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = if sum > 0.0 { v as f64 / sum } else { 1.0 / row.len() as f64 };
                }
            }
        }
    }

    /// MC-averaged probabilities of pool row `i` in `out` (length C); `tmp` is scratch of length C.
    pub(crate) fn mean_probs(&self, i: usize, buf: &mut Vec<f32>, tmp: &mut [f64], out: &mut [f64]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        for t in 0..self.samples {
            self.sample_probs(t, i, buf, tmp);
            out.iter_mut().zip(tmp.iter()).for_each(|(o, p)| *o += p);
        }
        out.iter_mut().for_each(|o| *o /= self.samples as f64);
    }

    /// Predicted class of every pool row (argmax of the mean probabilities, ties to the lower class).
    pub(crate) fn argmax_all(&self) -> Vec<usize> {
        use rayon::prelude::*;
        let c = self.classes();
        (0..self.pool_size())
            .into_par_iter()
            .map_init(
                || (Vec::new(), vec![0.0; c], vec![0.0; c]),
                |(buf, tmp, p), i| {
                    self.mean_probs(i, buf, tmp, p);
                    argmax(p)
                },
            )
            .collect()
    }

    /// Error naming the first row with NaN or Inf, or probabilities that are negative.
    pub fn check(&self) -> Result<()> {
        self.values.check_finite()?;
        if self.kind == PredictionKind::Probabilities {
            let mut buf = Vec::new();
            for r in 0..self.values.rows() {
                if self.values.row(r, &mut buf).iter().any(|&v| v < 0.0) {
                    return Err(Error::invalid(self.values.name(), format!("row {r} has a negative probability")));
                }
            }
        }
        Ok(())
    }
}

/// Index of the largest value, ties to the lower index.
pub(crate) fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (k, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = k;
        }
    }
    best
}

/// Everything a strategy may read. Build with [`SelectionInput::new`] and the `with_*` methods.
pub struct SelectionInput<'a> {
    /// Model predictions on the whole pool (labelled rows included).
    pub predictions: Option<Predictions<'a>>,
    /// Features `[N, D]` of the whole pool.
    pub features: Option<Mat<'a>>,
    /// Row indices already labelled.
    pub labeled: Vec<usize>,
    /// Class labels of `labeled`, in the same order (featdist and PCB statistics).
    pub labels: Option<Vec<usize>>,
    /// How many indices to choose.
    pub budget: usize,
    /// Seed of every random choice (`ChaCha8Rng::seed_from_u64`).
    pub seed: u64,
    /// PCB class balancing with this candidate fraction γ of the pool (C_PEAL default 0.1); `None` = off.
    pub pcb: Option<f64>,
    /// featdist: fraction of the budget taken from samples whose predicted class has no labelled sample
    /// (C_PEAL's `splitval`, default 0).
    pub featdist_split: f64,
    /// Report the picks of the greedy strategies (coreset, BADGE) as they are made, through `progress`: a bar
    /// on a terminal, JSON lines otherwise. Off by default (a library caller's stderr stays quiet).
    pub progress: bool,
}

impl<'a> SelectionInput<'a> {
    /// An input choosing `budget` indices, with no data yet, nothing labelled, seed 0 and PCB off.
    pub fn new(budget: usize) -> SelectionInput<'a> {
        SelectionInput {
            predictions: None,
            features: None,
            labeled: Vec::new(),
            labels: None,
            budget,
            seed: 0,
            pcb: None,
            featdist_split: 0.0,
            progress: false,
        }
    }

    /// Set the predictions.
    pub fn with_predictions(mut self, predictions: Predictions<'a>) -> Self {
        self.predictions = Some(predictions);
        self
    }

    /// Set the features.
    pub fn with_features(mut self, features: Mat<'a>) -> Self {
        self.features = Some(features);
        self
    }

    /// Set the labelled indices (and optionally their labels).
    pub fn with_labeled(mut self, labeled: Vec<usize>, labels: Option<Vec<usize>>) -> Self {
        self.labeled = labeled;
        self.labels = labels;
        self
    }

    /// Set the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Report the greedy strategies' picks as they are made (see [`SelectionInput::progress`]).
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// The reporter of `picks` greedy picks labelled `label`, when progress is on.
    pub(crate) fn picks_progress(&self, picks: usize, label: &str) -> Option<crate::progress::Progress> {
        self.progress.then(|| crate::progress::Progress::new(picks, label))
    }

    /// Pool size N, from predictions or features.
    pub fn pool_size(&self) -> Option<usize> {
        self.predictions.as_ref().map(Predictions::pool_size).or(self.features.as_ref().map(Mat::rows))
    }

    /// `mask[i]` is true when row `i` is labelled.
    pub fn labeled_mask(&self, n: usize) -> Vec<bool> {
        let mut mask = vec![false; n];
        self.labeled.iter().filter(|&&i| i < n).for_each(|&i| mask[i] = true);
        mask
    }

    pub(crate) fn predictions_for(&self, strategy: &str) -> Result<&Predictions<'a>> {
        self.predictions
            .as_ref()
            .ok_or_else(|| Error::invalid("logits", format!("strategy {strategy} needs predictions (logits)")))
    }

    pub(crate) fn features_for(&self, strategy: &str) -> Result<&Mat<'a>> {
        self.features.as_ref().ok_or_else(|| Error::invalid("features", format!("strategy {strategy} needs features")))
    }
}

/// The chosen indices in selection order, and a per-row score where the strategy has one (`--scores`).
pub struct Selection {
    /// Chosen pool indices, in selection order.
    pub indices: Vec<usize>,
    /// One score per pool row (labelled rows get NaN), if the strategy scores rows.
    pub scores: Option<Vec<f32>>,
}

/// Choose `input.budget` indices with `strategy` (and PCB when `input.pcb` is set).
pub fn select(strategy: Strategy, input: &SelectionInput) -> Result<Vec<usize>> {
    Ok(select_with_scores(strategy, input)?.indices)
}

/// As [`select`], also returning the per-row scores.
pub fn select_with_scores(strategy: Strategy, input: &SelectionInput) -> Result<Selection> {
    validate(strategy, input)?;
    match input.pcb {
        Some(gamma) => pcb::select(strategy, input, gamma),
        None => run_strategy(strategy, input, input.budget),
    }
}

/// Run the bare strategy for `budget` picks (input already validated).
pub(crate) fn run_strategy(strategy: Strategy, input: &SelectionInput, budget: usize) -> Result<Selection> {
    use uncertainty::Uncertainty;
    match strategy {
        Strategy::Random => Ok(Selection { indices: random::select(input, budget)?, scores: None }),
        Strategy::Entropy => uncertainty::select(Uncertainty::Entropy, input, budget),
        Strategy::LeastConfidence => uncertainty::select(Uncertainty::LeastConfidence, input, budget),
        Strategy::Margin => uncertainty::select(Uncertainty::Margin, input, budget),
        Strategy::MeanEntropy => bald::select(bald::McScore::MeanEntropy, input, budget),
        Strategy::Bald => bald::select(bald::McScore::Bald, input, budget),
        Strategy::Coreset => coreset::select(input, budget),
        Strategy::Badge => badge::select(input, budget),
        Strategy::Featdist => featdist::select(input, budget),
    }
}

fn validate(strategy: Strategy, input: &SelectionInput) -> Result<()> {
    let name = strategy.name();
    let n = input
        .pool_size()
        .ok_or_else(|| Error::invalid("input", format!("strategy {name} needs logits or features to know the pool")))?;
    if let (Some(p), Some(f)) = (&input.predictions, &input.features) {
        if p.pool_size() != f.rows() {
            return Err(Error::invalid(
                f.name(),
                format!("{} rows, but {} has {} pool rows", f.rows(), p.values().name(), p.pool_size()),
            ));
        }
    }
    if strategy.needs_predictions() || input.pcb.is_some() {
        let preds = input.predictions_for(name)?;
        if strategy.needs_mc_samples() && preds.samples() < 2 {
            return Err(Error::invalid(
                preds.values().name(),
                format!("strategy {name} needs MC samples [T, N, C] with T >= 2, got [N, C]"),
            ));
        }
        if !matches!(strategy, Strategy::Entropy | Strategy::LeastConfidence | Strategy::Margin) {
            preds.check()?; // the uncertainty scores check finiteness in their own pass
        }
    }
    if strategy.needs_features() {
        input.features_for(name)?.check_finite()?;
    }
    validate_labeled(input, n)?;
    if let Some(gamma) = input.pcb {
        if !(gamma > 0.0 && gamma <= 1.0) {
            return Err(Error::invalid("candidates", format!("PCB candidate fraction {gamma} is not in (0, 1]")));
        }
    }
    let pool = n - input.labeled.len();
    if pool == 0 {
        return Err(Error::invalid("labeled", format!("the unlabelled pool is empty ({n} rows, all labelled)")));
    }
    if input.budget > pool {
        return Err(Error::invalid("budget", format!("budget {} exceeds the unlabelled pool of {pool}", input.budget)));
    }
    Ok(())
}

fn validate_labeled(input: &SelectionInput, n: usize) -> Result<()> {
    let mut seen = vec![false; n];
    for (k, &i) in input.labeled.iter().enumerate() {
        if i >= n {
            return Err(Error::invalid("labeled", format!("entry {k}: index {i} is out of range for a pool of {n}")));
        }
        if std::mem::replace(&mut seen[i], true) {
            return Err(Error::invalid("labeled", format!("entry {k}: index {i} is repeated")));
        }
    }
    if let Some(labels) = &input.labels {
        if labels.len() != input.labeled.len() {
            return Err(Error::invalid(
                "labels",
                format!("{} labels for {} labelled indices", labels.len(), input.labeled.len()),
            ));
        }
        if let Some(c) = input.predictions.as_ref().map(Predictions::classes) {
            if let Some((k, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= c) {
                return Err(Error::invalid("labels", format!("entry {k}: class {l} is out of range for {c} classes")));
            }
        }
    }
    Ok(())
}

/// Scores of unlabelled rows stay as given; labelled rows become NaN (the `--scores` convention).
pub(crate) fn scores_for_output(scores: &[f64], labeled: &[bool]) -> Vec<f32> {
    scores.iter().zip(labeled).map(|(&s, &l)| if l { f32::NAN } else { s as f32 }).collect()
}

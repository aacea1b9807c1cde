//! The selection engine's device path (`cpeal select --device cuda|cuda-emu`): entropy, least confidence and
//! margin score the logits with `uncertainty_scores_f32` and rank them with `topk_partial_f32` (the logits are
//! read once; the host merges the blocks' candidates), and coreset keeps the features and the running
//! min-distances on the device (`mindist_update_f32` per new centre, then `argmax_f32` for the farthest row).
//! Every other strategy, PCB, MC samples and probability inputs run the CPU path unchanged. The order is the
//! CPU path's (same tie rule, same first draw); only the distances and scores are f32 sums in another order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::uncertainty::Uncertainty;
use super::{scores_for_output, select_with_scores, topk, PredictionKind, Selection, SelectionInput, Strategy};
use crate::error::{Error, Result};
use crate::gpu::ops::select::{self as sel, Column};
use crate::gpu::ops::softmax::argmax;
use crate::gpu::{DType, GpuBuffer, GpuDevice};

/// `select_with_scores` with the scoring on `dev` where a kernel exists, the CPU path elsewhere.
pub fn select_on_device(strategy: Strategy, input: &SelectionInput, dev: &GpuDevice) -> Result<Selection> {
    let kind = match strategy {
        Strategy::Entropy => Some(Uncertainty::Entropy),
        Strategy::LeastConfidence => Some(Uncertainty::LeastConfidence),
        Strategy::Margin => Some(Uncertainty::Margin),
        _ => None,
    };
    let plain_logits =
        input.predictions.as_ref().is_some_and(|p| p.samples() == 1 && p.kind() == PredictionKind::Logits);
    if input.pcb.is_some() || input.budget == 0 {
        return select_with_scores(strategy, input);
    }
    match (kind, strategy) {
        (Some(kind), _) if plain_logits => {
            super::validate(strategy, input)?;
            uncertainty(kind, input, dev)
        }
        (None, Strategy::Coreset) => {
            super::validate(strategy, input)?;
            coreset(input, dev)
        }
        _ => select_with_scores(strategy, input),
    }
}

/// Column of `uncertainty_scores_*`'s output holding the score.
fn column(kind: Uncertainty) -> usize {
    match kind {
        Uncertainty::Entropy => 0,
        Uncertainty::LeastConfidence => 1,
        Uncertainty::Margin => 2,
    }
}

fn uncertainty(kind: Uncertainty, input: &SelectionInput, dev: &GpuDevice) -> Result<Selection> {
    let preds = input.predictions_for("entropy/least-confidence/margin")?;
    let (n, c) = (preds.pool_size(), preds.classes());
    let mut buf = Vec::new();
    let logits = dev.upload(preds.values().rows_f32(0, n, &mut buf), DType::F32)?;
    let out = dev.alloc(DType::F32, n * sel::SCORE_COLS)?;
    sel::uncertainty_scores(dev, n, c, &logits, &out)?;
    let all = dev.download(&out)?;
    let col = column(kind);
    let scores: Vec<f64> = (0..n).map(|i| all[i * sel::SCORE_COLS + col] as f64).collect();
    if let Some(row) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::invalid(preds.values().name(), format!("row {row} contains NaN or Inf")));
    }
    let labeled = input.labeled_mask(n);
    let indices = if input.budget <= sel::TOPK_MAX {
        let skip = skip_mask(dev, &labeled)?;
        let column = Column { stride: sel::SCORE_COLS, col };
        let k = input.budget.min(n);
        sel::topk(dev, n, k, column, &out, Some(&skip))?.into_iter().map(|(i, _)| i).collect()
    } else {
        topk::top_k(&scores, &labeled, input.budget) // beyond the kernel's k: rank the downloaded scores
    };
    Ok(Selection { indices, scores: Some(scores_for_output(&scores, &labeled)) })
}

/// The labelled mask as the kernel's `skip` (i32, non-zero = take no part).
fn skip_mask(dev: &GpuDevice, labeled: &[bool]) -> Result<GpuBuffer> {
    let v: Vec<f32> = labeled.iter().map(|&l| l as i32 as f32).collect();
    dev.upload(&v, DType::I32)
}

/// k-center greedy as `coreset::select`: labelled rows are the first centres; with none, the first pick is the
/// same seeded uniform draw; each next pick is the farthest active row (ties to the lower index).
fn coreset(input: &SelectionInput, dev: &GpuDevice) -> Result<Selection> {
    let features = input.features_for("coreset")?;
    let (n, d) = (features.rows(), features.cols());
    let labeled = input.labeled_mask(n);
    let mut buf = Vec::new();
    let x = dev.upload(features.rows_f32(0, n, &mut buf), DType::F32)?;
    let start: Vec<f32> = labeled.iter().map(|&l| if l { -1.0 } else { f32::INFINITY }).collect();
    let mindist = dev.upload(&start, DType::F32)?;
    let far = dev.alloc(DType::I32, 1)?;
    let mut active = labeled.iter().filter(|&&l| !l).count();
    // The farthest active row after the updates so far (`None` once no row is active).
    let farthest = |active: usize| -> Result<Option<usize>> {
        if active == 0 {
            return Ok(None);
        }
        argmax(dev, 1, n, &mindist, &far)?;
        Ok(Some(dev.download(&far)?[0] as usize))
    };
    let mut next = None;
    let centres: Vec<usize> = input.labeled.iter().copied().filter(|&i| i < n).collect();
    for (k, &centre) in centres.iter().enumerate() {
        sel::mindist_update(dev, n, d, &x, &mindist, centre)?;
        if k + 1 == centres.len() {
            next = farthest(active)?;
        }
    }
    if centres.is_empty() {
        let pool: Vec<usize> = (0..n).filter(|&i| !labeled[i]).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
        next = pool.get(rng.random_range(0..pool.len().max(1))).copied();
    }
    let mut order = Vec::with_capacity(input.budget);
    while order.len() < input.budget {
        let Some(pick) = next else { break };
        order.push(pick);
        sel::mindist_update(dev, n, d, &x, &mindist, pick)?;
        active -= 1;
        next = farthest(active)?;
    }
    let m = dev.download(&mindist)?;
    let scores = m.iter().zip(&labeled).map(|(&m, &l)| if l { f32::NAN } else { m.max(0.0).sqrt() });
    Ok(Selection { indices: order, scores: Some(scores.collect()) })
}

//! The selection engine's device path (`cpeal select --device cuda|cuda-emu`): entropy, least confidence and
//! margin score the logits with `uncertainty_scores_*` (the logits are uploaded as stored and read once) and
//! find the K-th best device score with the device radix select (`ops::topk::kth_score`, nothing sorted); then
//! every row whose device score is within the error bound of that K-th score is rescored on the host exactly as
//! the CPU path scores it, so the picks and their order are the CPU path's on any input (see [`uncertainty`]).
//! Coreset keeps the features, the centres and the running min-distances on the device (`ops::coreset`: two
//! launches a centre, no host round trip, rows the new centre cannot come closer to skipped as on the CPU); its
//! distances are f32 sums in another order than the CPU's. BADGE does the same (`ops::badge`), each centre
//! drawn on the device from the CPU path's own uniforms (see [`badge`]), from any predictions (its residuals are
//! computed on the host). With PCB these strategies give the ⌊γ·N⌋ candidates and the host balances them, as on
//! the CPU path. Every other strategy, and the uncertainty strategies on MC samples or probabilities, run the
//! CPU path unchanged.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::matrix::Stored;
use super::uncertainty::{cpu_score_error, logit_row_score, score_error_bound, Uncertainty};
use super::{scores_for_output, select_with_scores, topk, Mat, PredictionKind, Selection, SelectionInput, Strategy};
use crate::error::{Error, Result};
use crate::gpu::ops::badge::{Badge, UNIFORM_REST};
use crate::gpu::ops::coreset::Coreset;
use crate::gpu::ops::pool::mean_tokens;
use crate::gpu::ops::select as sel;
use crate::gpu::ops::topk::{kth_score, Column};
use crate::gpu::{DType, GpuBuffer, GpuDevice};
use crate::progress::Progress;

/// `select_with_scores` with the scoring on `dev` where a kernel exists, the CPU path elsewhere. With PCB, the
/// strategy's ⌊γ·N⌋ candidates come from the device and the class balancing runs on the host as on the CPU path.
pub fn select_on_device(strategy: Strategy, input: &SelectionInput, dev: &GpuDevice) -> Result<Selection> {
    let plain_logits =
        input.predictions.as_ref().is_some_and(|p| p.samples() == 1 && p.kind() == PredictionKind::Logits);
    let on_device = match uncertainty_kind(strategy) {
        Some(_) => plain_logits,
        None => matches!(strategy, Strategy::Coreset | Strategy::Badge),
    };
    if !on_device || input.budget == 0 {
        return select_with_scores(strategy, input);
    }
    super::validate(strategy, input)?;
    let run = |budget: usize| match uncertainty_kind(strategy) {
        Some(kind) => uncertainty(kind, input, dev, budget),
        None if strategy == Strategy::Badge => badge(input, dev, budget),
        None => coreset(input, dev, budget),
    };
    match input.pcb {
        Some(gamma) => super::pcb::select_with(input, gamma, run),
        None => run(input.budget),
    }
}

/// The uncertainty score `strategy` ranks by, if it is one.
fn uncertainty_kind(strategy: Strategy) -> Option<Uncertainty> {
    match strategy {
        Strategy::Entropy => Some(Uncertainty::Entropy),
        Strategy::LeastConfidence => Some(Uncertainty::LeastConfidence),
        Strategy::Margin => Some(Uncertainty::Margin),
        _ => None,
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

/// A matrix uploaded in its stored type (f32, f16 or bf16: half-precision data is not widened on the host).
fn upload_stored(dev: &GpuDevice, m: &Mat) -> Result<GpuBuffer> {
    match m.stored() {
        Stored::F32(v) => dev.upload(v, DType::F32),
        Stored::F16(b) => dev.upload_bytes(b, DType::F16),
        Stored::Bf16(b) => dev.upload_bytes(b, DType::Bf16),
    }
}

/// [`score_error_bound`] of `uncertainty_scores_*` for rows of `c` logits. A lane folds its ⌈c / lanes⌉ values
/// (one 16-byte vector more with vector loads) in chunks of `UNC_CHUNK`: 3 additions inside each of 4
/// accumulators, 2 combining them, 1 into the running sum per chunk, 1 per shuffle level; one rescale per
/// chunk and per shuffle level. ex2.approx and expf are within 2 ulp (4u) by the CUDA documentation, taken as
/// 8u (the emulator's libm is within 1 ulp); the flush of subnormal exponentials moves Z (≥ 1) by < 2^-126.
pub fn device_score_error(c: usize) -> f64 {
    let lanes = sel::uncertainty_lanes(c);
    let chunks = (c.div_ceil(lanes).div_ceil(sel::UNC_CHUNK) + 1) as f64;
    let tree = lanes.trailing_zeros() as f64;
    score_error_bound(c, 5.0 + chunks + tree, chunks + tree, 8.0)
}

/// Largest |device score − CPU score| the device path allows for: twice the sum of both error bounds (the
/// factor 2 covers the second-order terms the bounds leave out).
pub fn score_tolerance(c: usize) -> f64 {
    2.0 * (cpu_score_error(c) + device_score_error(c))
}

/// Exact top-K on the device path. With δ = [`score_tolerance`] ≥ |device − CPU| for every row and s_K the
/// K-th best device score of the unlabelled rows: K rows have device score ≥ s_K, so CPU score ≥ s_K − δ; a row
/// with device score < s_K − 2δ has CPU score < s_K − δ, below K others, and cannot be among the CPU's top K.
/// So the rows with device score ≥ s_K − 2δ hold the CPU's top K; rescored with the CPU's own function and
/// ranked with its rule (higher score, then lower index), their top K is the CPU path's, in its order.
fn uncertainty(kind: Uncertainty, input: &SelectionInput, dev: &GpuDevice, budget: usize) -> Result<Selection> {
    let preds = input.predictions_for("entropy/least-confidence/margin")?;
    let (n, c, values) = (preds.pool_size(), preds.classes(), preds.values());
    let out = dev.alloc(DType::F32, n * sel::SCORE_COLS)?;
    sel::uncertainty_scores(dev, n, c, &upload_stored(dev, values)?, &out)?;
    let col = column(kind);
    let col_buf = dev.alloc(DType::F32, n)?;
    mean_tokens(dev, n, sel::SCORE_COLS, 1, (col, col + 1), &out, &col_buf)?; // the score column alone
    let device = dev.download(&col_buf)?;
    if let Some(row) = device.iter().position(|s| s.is_nan()) {
        return Err(Error::invalid(values.name(), format!("row {row} contains NaN or Inf")));
    }
    let labeled = input.labeled_mask(n);
    let k = budget.min(n);
    let kth = if k == 0 {
        f64::INFINITY // nothing to pick
    } else {
        let skip = skip_mask(dev, &labeled)?;
        // None: no more than k rows take part, so every unlabelled row is a candidate.
        let kth = kth_score(dev, n, k, Column { stride: sel::SCORE_COLS, col }, &out, Some(&skip))?;
        kth.map_or(f64::NEG_INFINITY, |s| s as f64)
    };
    let floor = kth - 2.0 * score_tolerance(c);
    let candidates: Vec<usize> = (0..n).filter(|&i| !labeled[i] && device[i] as f64 >= floor).collect();
    let exact = candidates
        .par_iter()
        .map_init(Vec::new, |buf, &i| logit_row_score(kind, values.row(i, buf)).ok_or(i))
        .collect::<std::result::Result<Vec<f64>, usize>>()
        .map_err(|row| Error::invalid(values.name(), format!("row {row} contains NaN or Inf")))?;
    let picks = topk::top_k(&exact, &vec![false; exact.len()], k);
    let mut scores: Vec<f64> = device.iter().map(|&s| s as f64).collect();
    candidates.iter().zip(&exact).for_each(|(&i, &s)| scores[i] = s);
    Ok(Selection {
        indices: picks.into_iter().map(|j| candidates[j]).collect(),
        scores: Some(scores_for_output(&scores, &labeled)),
    })
}

/// The labelled mask as the kernel's `skip` (i32, non-zero = take no part).
fn skip_mask(dev: &GpuDevice, labeled: &[bool]) -> Result<GpuBuffer> {
    dev.upload_i32(&labeled.iter().map(|&l| l as i32).collect::<Vec<_>>())
}

/// k-center greedy as `coreset::select`: labelled rows are the first centres; with none, the first pick is the
/// same seeded uniform draw; each next pick is the farthest active row (ties to the lower index). The centres
/// stay on the device (`ops::coreset`) until the end: two launches a centre, one download of all the picks.
fn coreset(input: &SelectionInput, dev: &GpuDevice, budget: usize) -> Result<Selection> {
    let features = input.features_for("coreset")?;
    let (n, d) = (features.rows(), features.cols());
    let labeled = input.labeled_mask(n);
    let x = upload_stored(dev, features)?;
    let centres: Vec<usize> = input.labeled.iter().copied().filter(|&i| i < n).collect();
    let first = if centres.is_empty() {
        let pool: Vec<usize> = (0..n).filter(|&i| !labeled[i]).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
        pool.get(rng.random_range(0..pool.len().max(1))).copied()
    } else {
        None // the farthest row after the labelled centres
    };
    // Each pick leaves one active row fewer: no launches past the last.
    let budget = budget.min(labeled.iter().filter(|&&l| !l).count());
    let state = Coreset::new(dev, d, &x, &labeled, (centres.len() + budget).max(1))?;
    for (s, &centre) in centres.iter().enumerate() {
        state.add(dev, s, Some(centre))?;
    }
    let mut progress = input.picks_progress(budget, "coreset");
    for t in 0..budget {
        state.add(dev, centres.len() + t, if t == 0 { first } else { None })?;
        report_pick(dev, &mut progress, t + 1)?;
    }
    let order = state.centres(dev, centres.len())?;
    let m = dev.download(state.mindist())?;
    let scores = m.iter().zip(&labeled).map(|(&m, &l)| if l { f32::NAN } else { m.max(0.0).sqrt() });
    Ok(Selection { indices: order, scores: Some(scores.collect()) })
}

/// BADGE as `badge::select`, seeded on the device (`ops::badge`): the first centre is the unlabelled row of
/// largest ‖g‖² (ties to the lower index); every next one is drawn ∝ D² on the device with the uniforms the CPU
/// path would draw, `rng.random::<f64>()` from the same seeded stream, drawn here first. Once every remaining
/// D² is 0, the host finishes with the CPU path's uniform draws. The draws equal the CPU path's wherever the
/// D² agree; they are f32 inner products summed in another order, so on inexact inputs a draw that lands
/// within rounding of a row's boundary can part the two paths from there on (each reproducible from its seed).
fn badge(input: &SelectionInput, dev: &GpuDevice, budget: usize) -> Result<Selection> {
    let features = input.features_for("badge")?;
    let preds = input.predictions_for("badge")?;
    let (n, d) = (features.rows(), features.cols());
    let labeled = input.labeled_mask(n);
    let pool: Vec<usize> = (0..n).filter(|&i| !labeled[i]).collect();
    let budget = budget.min(pool.len());
    if budget == 0 {
        return Ok(Selection { indices: Vec::new(), scores: Some(vec![f32::NAN; n]) });
        // every row labelled
    }
    let q = super::badge::residuals(preds, &(0..n).collect::<Vec<_>>());
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
    let us: Vec<f64> = (1..budget).map(|_| rng.random::<f64>()).collect();
    let x = upload_stored(dev, features)?;
    let mut state = Badge::new(dev, d, &x, &q, &labeled, &us)?;
    let norm2 = state.norm2(dev)?;
    let first = pool.iter().copied().reduce(|best, i| if norm2[i] > norm2[best] { i } else { best });
    state.start(dev, first.expect("budget > 0, so the pool has a row"))?;
    let mut progress = input.picks_progress(budget, "badge");
    for s in 0..budget {
        state.add(dev, s)?;
        report_pick(dev, &mut progress, s + 1)?;
    }
    let mut order: Vec<usize> = Vec::with_capacity(budget);
    for (slot, row) in state.centres(dev)?.into_iter().enumerate() {
        match row {
            UNIFORM_REST => {
                uniform_rest(input.seed, slot, &pool, &mut order, budget);
                break;
            }
            row if row >= 0 => order.push(row as usize),
            _ => break,
        }
    }
    let d2 = state.d2(dev)?;
    let scores = d2.iter().zip(&labeled).map(|(&m, &l)| if l { f32::NAN } else { m.max(0.0).sqrt() as f32 });
    Ok(Selection { indices: order, scores: Some(scores.collect()) })
}

/// The CPU path's picks once every remaining D² is 0, from slot `slot` on: the seeded stream past the slot − 1
/// uniforms of the draws before, then one `random_range` over the unchosen pool rows (in pool order) a pick.
fn uniform_rest(seed: u64, slot: usize, pool: &[usize], order: &mut Vec<usize>, budget: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (1..slot).for_each(|_| {
        rng.random::<f64>();
    });
    let chosen: std::collections::HashSet<usize> = order.iter().copied().collect();
    let mut remaining: Vec<usize> = pool.iter().copied().filter(|i| !chosen.contains(i)).collect();
    while order.len() < budget && !remaining.is_empty() {
        order.push(remaining.remove(rng.random_range(0..remaining.len())));
    }
}

/// Reports `done` picks queued on the device: every ~1% of the total (and at the last) it waits for the device
/// first, so the count is what the device has finished, at the cost of at most ~100 waits a run.
fn report_pick(dev: &GpuDevice, progress: &mut Option<Progress>, done: usize) -> Result<()> {
    let Some(p) = progress else { return Ok(()) };
    if done % (p.total() / 100).max(1) == 0 || done == p.total() {
        dev.synchronize()?;
        p.inc(done - p.done());
    }
    if done == p.total() {
        p.finish();
    }
    Ok(())
}

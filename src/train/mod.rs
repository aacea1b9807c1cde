//! Adapter training: minibatch SGD on a frozen backbone with the calibration loss, the reference code's
//! schedules, reproducible from a seed. Only the adapter's tensors are variables; every step places them on
//! the model afresh (with new dropout masks) and the optimiser replaces them with their updated values.

pub mod schedule;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use schedule::Schedule;

use crate::adapters::LoraAdapter;
use crate::autograd;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::ops::{calibration_loss, CalibWeighting, CalibrationLoss};
use crate::optim::Sgd;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub schedule: Schedule,
    pub batch_size: usize,
    pub momentum: f32,
    pub weight_decay: f32,
    pub weighting: CalibWeighting,
    pub seed: u64,
}

/// What one step did, for progress and logs.
#[derive(Clone, Debug, PartialEq)]
pub struct StepLog {
    pub step: usize,
    pub steps: usize,
    pub epoch: usize,
    pub loss: f32,
    pub ce: f32,
    pub l_uc: f32,
    pub lr: f32,
    pub calib_weight: f32,
    /// Rows of the batch whose argmax was their label.
    pub correct: usize,
    pub batch: usize,
}

impl StepLog {
    pub fn json(&self) -> String {
        format!(
            r#"{{"step":{},"steps":{},"epoch":{},"loss":{},"ce":{},"l_uc":{},"lr":{},"calib_weight":{},"correct":{},"batch":{}}}"#,
            self.step,
            self.steps,
            self.epoch,
            self.loss,
            self.ce,
            self.l_uc,
            self.lr,
            self.calib_weight,
            self.correct,
            self.batch
        )
    }
}

/// Trains `adapter` (LoRA factors and the classification head it holds) on `images` `[N, 3, H, W]` with
/// `labels`; `adapter.tensors` end as the trained values and the model is left with them placed, frozen.
/// Batches are reshuffled every epoch; a batch of fewer than `batch_size` rows is dropped when the set has at
/// least one full batch (as the reference code's loader does). A non-finite loss stops training with an error
/// and leaves `adapter` as it was before that step.
pub fn train_image_classifier(
    model: &mut Model,
    adapter: &mut LoraAdapter,
    images: &Tensor,
    labels: &[usize],
    opts: &TrainOptions,
    mut on_step: impl FnMut(&StepLog),
) -> Result<()> {
    let n = check_data(images, labels, opts.batch_size)?;
    let batches_per_epoch = batches_per_epoch(n, opts.batch_size);
    let steps = batches_per_epoch * opts.schedule.epochs;
    let mut sgd = Sgd::new(opts.schedule.lr, opts.momentum, opts.weight_decay);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut step = 0;
    for epoch in 0..opts.schedule.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for rows in order.chunks(opts.batch_size.min(n)).take(batches_per_epoch) {
            let loss = CalibrationLoss { weight: opts.schedule.calib_weight(epoch), weighting: opts.weighting };
            sgd.lr = opts.schedule.lr(epoch);
            let done =
                train_step(model, adapter, &mut sgd, &gather_rows(images, rows)?, &pick(labels, rows), loss, step)?;
            step += 1;
            on_step(&StepLog {
                step,
                steps,
                epoch,
                loss: done.loss,
                ce: done.ce,
                l_uc: done.l_uc,
                lr: sgd.lr,
                calib_weight: loss.weight,
                correct: done.correct,
                batch: rows.len(),
            });
        }
    }
    model.clear_adapters();
    adapter.attach(model, false)?;
    Ok(())
}

/// Batches in an epoch of `n` rows: the full batches, or one short batch when there is no full one.
pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
    if n >= batch_size {
        n / batch_size.max(1)
    } else {
        1
    }
}

/// One forward, backward and update on a batch.
fn train_step(
    model: &mut Model,
    adapter: &mut LoraAdapter,
    sgd: &mut Sgd,
    images: &Tensor,
    labels: &[usize],
    loss: CalibrationLoss,
    step: usize,
) -> Result<StepDone> {
    model.clear_adapters();
    let mut params = adapter.attach_training(model, step as u64)?;
    let logits = model
        .forward_images(images)?
        .logits
        .ok_or_else(|| Error::invalid("train", "the model has no classification head to train against"))?;
    let terms = calibration_loss(&logits, labels, &loss)?;
    let value = terms.loss.to_vec()?[0];
    if !value.is_finite() {
        return Err(Error::invalid(
            "train",
            format!("the loss is {value} at step {}; the adapter is left as it was", step + 1),
        ));
    }
    let grads = autograd::backward(&terms.loss)?;
    sgd.step(&mut params, &grads)?;
    adapter.tensors = params.into_iter().map(|(name, t)| (name, t.detach())).collect();
    Ok(StepDone { loss: value, ce: terms.ce, l_uc: terms.l_uc, correct: terms.correct })
}

/// The loss terms of one step.
struct StepDone {
    loss: f32,
    ce: f32,
    l_uc: f32,
    correct: usize,
}

fn check_data(images: &Tensor, labels: &[usize], batch_size: usize) -> Result<usize> {
    let n = images.shape().first().copied().unwrap_or(0);
    if images.rank() != 4 || n == 0 {
        return Err(Error::shape("train", format!("images {:?}: expected [N, 3, H, W] with N > 0", images.shape())));
    }
    if labels.len() != n {
        return Err(Error::shape("train", format!("{} labels for {n} images", labels.len())));
    }
    if batch_size == 0 {
        return Err(Error::invalid("train", "the batch size must be at least 1"));
    }
    Ok(n)
}

/// Rows `rows` of `[N, …]`, in that order.
fn gather_rows(images: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let per_row = images.numel() / images.shape()[0];
    let all = images.cpu_slice()?;
    let values: Vec<f32> = rows.iter().flat_map(|&r| all[r * per_row..][..per_row].iter().copied()).collect();
    let mut shape = images.shape().to_vec();
    shape[0] = rows.len();
    Tensor::from_vec(values, &shape)
}

fn pick(labels: &[usize], rows: &[usize]) -> Vec<usize> {
    rows.iter().map(|&r| labels[r]).collect()
}

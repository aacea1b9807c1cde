//! Adapter training: minibatch SGD on a frozen backbone with the calibration loss, the reference code's
//! schedules, reproducible from a seed. Only the adapter's tensors are variables; every step places them on
//! the model afresh (with new dropout masks) and the optimiser replaces them with their updated values.

pub mod clip_lora;
pub mod coop;
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
use crate::optim::{Optimizer, OptimizerKind};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub schedule: Schedule,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Scale the gradients down together when their global L2 norm exceeds this.
    pub clip_grad_norm: Option<f32>,
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

/// A model under training: logits for rows of the training set with the trained tensors in place.
pub trait Trainee {
    /// Logits `[rows, classes]` for `rows` of the training set, computed with `params` (this step's variables)
    /// in place; `step` seeds any dropout.
    fn logits(&mut self, params: &[(String, Tensor)], rows: &[usize], step: usize) -> Result<Tensor>;
    /// Leaves the model with `params` in place for inference.
    fn finish(&mut self, params: &[(String, Tensor)]) -> Result<()>;
}

/// Trains `params` (by name, as the trainee places them) against `labels`, one per row of the training set.
/// Batches are reshuffled every epoch; a batch of fewer than `batch_size` rows is dropped when the set has at
/// least one full batch (as the reference code's loader does). A non-finite loss stops training with an error
/// and leaves `params` as they were before that step.
pub fn train(
    trainee: &mut impl Trainee,
    params: &mut Vec<(String, Tensor)>,
    labels: &[usize],
    opts: &TrainOptions,
    mut on_step: impl FnMut(&StepLog),
) -> Result<()> {
    let n = labels.len();
    if n == 0 || opts.batch_size == 0 {
        return Err(Error::invalid("train", format!("{n} labelled rows in batches of {}", opts.batch_size)));
    }
    let batches_per_epoch = batches_per_epoch(n, opts.batch_size);
    let steps = batches_per_epoch * opts.schedule.epochs;
    let mut optimizer = opts.optimizer.build(opts.schedule.lr);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut step = 0;
    for epoch in 0..opts.schedule.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for rows in order.chunks(opts.batch_size.min(n)).take(batches_per_epoch) {
            let loss = CalibrationLoss { weight: opts.schedule.calib_weight(epoch), weighting: opts.weighting };
            optimizer.set_lr(opts.schedule.lr(epoch));
            let done = train_step(
                trainee,
                params,
                optimizer.as_mut(),
                opts.clip_grad_norm,
                rows,
                &pick(labels, rows),
                loss,
                step,
            )?;
            step += 1;
            on_step(&StepLog {
                step,
                steps,
                epoch,
                loss: done.loss,
                ce: done.ce,
                l_uc: done.l_uc,
                lr: optimizer.lr(),
                calib_weight: loss.weight,
                correct: done.correct,
                batch: rows.len(),
            });
        }
    }
    trainee.finish(params)
}

/// One forward, backward and update on a batch.
#[allow(clippy::too_many_arguments)] // the loop's state, passed apart so that each piece is borrowed alone
fn train_step(
    trainee: &mut impl Trainee,
    params: &mut Vec<(String, Tensor)>,
    optimizer: &mut dyn Optimizer,
    clip_grad_norm: Option<f32>,
    rows: &[usize],
    labels: &[usize],
    loss: CalibrationLoss,
    step: usize,
) -> Result<StepDone> {
    let mut vars: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.variable())).collect();
    let logits = trainee.logits(&vars, rows, step)?;
    let terms = calibration_loss(&logits, labels, &loss)?;
    let value = terms.loss.to_vec()?[0];
    if !value.is_finite() {
        return Err(Error::invalid(
            "train",
            format!("the loss is {value} at step {}; the adapter is left as it was", step + 1),
        ));
    }
    let grads = autograd::backward(&terms.loss)?;
    optimizer.step_clipped(&mut vars, &grads, clip_grad_norm)?;
    *params = vars.into_iter().map(|(name, t)| (name, t.detach())).collect();
    Ok(StepDone { loss: value, ce: terms.ce, l_uc: terms.l_uc, correct: terms.correct })
}

/// The loss terms of one step.
struct StepDone {
    loss: f32,
    ce: f32,
    l_uc: f32,
    correct: usize,
}

/// Batches in an epoch of `n` rows: the full batches, or one short batch when there is no full one.
pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
    if n >= batch_size {
        n / batch_size.max(1)
    } else {
        1
    }
}

/// LoRA and a classification head on a ViT or DINOv2 model, over images `[N, 3, H, W]`.
pub struct ImageClassifier<'a> {
    pub model: &'a mut Model,
    pub adapter: &'a LoraAdapter,
    pub images: &'a Tensor,
}

impl Trainee for ImageClassifier<'_> {
    fn logits(&mut self, params: &[(String, Tensor)], rows: &[usize], step: usize) -> Result<Tensor> {
        self.model.clear_adapters();
        self.adapter.place(self.model, params, Some(step as u64))?;
        self.model
            .forward_images(&gather_rows(self.images, rows)?)?
            .logits
            .ok_or_else(|| Error::invalid("train", "the model has no classification head to train against"))
    }

    fn finish(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        self.model.clear_adapters();
        self.adapter.place(self.model, params, None)
    }
}

/// Trains `adapter` (LoRA factors and the classification head it holds) on `images` `[N, 3, H, W]` with
/// `labels` (see `train`); `adapter.tensors` end as the trained values, placed on the model for inference.
pub fn train_image_classifier(
    model: &mut Model,
    adapter: &mut LoraAdapter,
    images: &Tensor,
    labels: &[usize],
    opts: &TrainOptions,
    on_step: impl FnMut(&StepLog),
) -> Result<()> {
    check_data(images, labels)?;
    let mut params = adapter.tensors.clone();
    let result = train(&mut ImageClassifier { model, adapter: &*adapter, images }, &mut params, labels, opts, on_step);
    adapter.tensors = params;
    result
}

fn check_data(images: &Tensor, labels: &[usize]) -> Result<()> {
    let n = images.shape().first().copied().unwrap_or(0);
    if images.rank() != 4 || n == 0 {
        return Err(Error::shape("train", format!("images {:?}: expected [N, 3, H, W] with N > 0", images.shape())));
    }
    if labels.len() != n {
        return Err(Error::shape("train", format!("{} labels for {n} images", labels.len())));
    }
    Ok(())
}

/// Rows `rows` of `[N, …]`, in that order.
pub(crate) fn gather_rows(images: &Tensor, rows: &[usize]) -> Result<Tensor> {
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

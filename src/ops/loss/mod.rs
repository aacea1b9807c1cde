//! The training loss: cross-entropy plus the paper's differentiable uncertainty-calibration term, fused.
//!
//! For logits z `[B, C]` and labels y, with p = softmax(z) and each row's entropy u = −Σ p·log(p + 1e−6):
//! L_cor is the mean of −log(1 − tanh u + 1e−6) over the rows whose argmax is the label (confident where right),
//! L_inc the mean of −log(tanh u + 1e−6) over the others (uncertain where wrong). L_UC combines them by
//! `CalibWeighting`, is clamped to 5 and taken as 0 when NaN; total = CE + λ·L_UC. The gradient with respect to
//! the logits is analytic; which rows are correct is piecewise constant, so it gets none.

mod cpu;
#[cfg(test)]
mod tests;

use crate::autograd::{self, Backward};
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

const OP: &str = "calibration_loss";

/// How L_cor and L_inc are combined into L_UC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CalibWeighting {
    /// (|I|/B)·L_cor + (|C|/B)·L_inc: each group weighted by the other's share of the batch (the reference
    /// code's default), so the term vanishes when either group is empty.
    #[default]
    Inter,
    /// L_cor + L_inc.
    Sum,
}

/// The loss's settings: total = CE + `weight`·L_UC.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationLoss {
    /// λ ≥ 0; 0 trains on plain cross-entropy.
    pub weight: f32,
    pub weighting: CalibWeighting,
}

impl CalibrationLoss {
    /// Plain cross-entropy (λ = 0); L_UC is still measured.
    pub fn cross_entropy() -> CalibrationLoss {
        CalibrationLoss { weight: 0.0, weighting: CalibWeighting::Inter }
    }
}

/// The loss of one batch and the terms it is made of, for logging.
#[derive(Debug)]
pub struct LossTerms {
    /// CE + λ·L_UC, shape `[1]`; tracked when the logits are, so `autograd::backward` reaches them.
    pub loss: Tensor,
    /// Mean cross-entropy.
    pub ce: f32,
    /// L_UC after the clamp (before the weight λ).
    pub l_uc: f32,
    /// Each row's entropy u_b.
    pub entropy: Vec<f32>,
    /// How many rows' argmax is their label.
    pub correct: usize,
}

/// Cross-entropy plus λ times the calibration term, for `logits` `[B, C]` and one label in `0..C` per row.
pub fn calibration_loss(logits: &Tensor, labels: &[usize], cfg: &CalibrationLoss) -> Result<LossTerms> {
    let [b, c] = logits.dims::<2>(OP)?;
    check_inputs(b, c, labels, cfg)?;
    let z = match logits.storage() {
        Storage::Cpu(_) => logits.cpu_slice()?,
        Storage::Gpu(_) => return Err(autograd::cpu_only(OP)),
    };
    let pass = cpu::row_pass(z, labels, c);
    let calib = cpu::calibration(&pass.rows, cfg.weighting);
    let ce = pass.rows.iter().map(|r| r.ce).sum::<f64>() / b as f64;
    let weight = cfg.weight as f64;
    let loss = Tensor::from_vec(vec![(ce + weight * calib.value) as f32], &[1])?;
    let loss = autograd::record(loss, &[logits], || CalibrationBackward {
        logits: logits.clone(),
        grad: cpu::logits_grad(&pass, weight, &calib.d_entropy),
    });
    Ok(LossTerms {
        loss,
        ce: ce as f32,
        l_uc: calib.value as f32,
        entropy: pass.rows.iter().map(|r| r.entropy as f32).collect(),
        correct: pass.rows.iter().filter(|r| r.correct).count(),
    })
}

/// A non-empty batch, one label per row, each a class, and a usable λ.
fn check_inputs(b: usize, c: usize, labels: &[usize], cfg: &CalibrationLoss) -> Result<()> {
    if b == 0 {
        return Err(Error::shape(OP, format!("empty batch (logits [{b}, {c}])")));
    }
    if labels.len() != b {
        return Err(Error::shape(OP, format!("{} labels for {b} rows of logits", labels.len())));
    }
    if let Some((row, y)) = labels.iter().enumerate().find(|(_, &y)| y >= c) {
        return Err(Error::invalid(OP, format!("row {row}: label {y} is out of range for {c} classes")));
    }
    if !(cfg.weight.is_finite() && cfg.weight >= 0.0) {
        return Err(Error::invalid(OP, format!("the calibration weight λ must be finite and ≥ 0, got {}", cfg.weight)));
    }
    Ok(())
}

/// Keeps ∂total/∂logits from the forward; the backward scales it by the upstream scalar.
struct CalibrationBackward {
    logits: Tensor,
    grad: Vec<f32>,
}

impl Backward for CalibrationBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.logits]
    }
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let scale = match grad.storage() {
            Storage::Cpu(_) => grad.cpu_slice()?[0],
            Storage::Gpu(_) => return Err(autograd::cpu_only(OP)),
        };
        let dz = self.grad.iter().map(|g| g * scale).collect();
        Ok(vec![Some(Tensor::from_vec(dz, self.logits.shape())?)])
    }
}

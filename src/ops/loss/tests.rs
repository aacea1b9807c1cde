//! The calibration loss against PyTorch's values and gradient, and its gradient against finite differences of
//! an independent float64 composition of the definition.

use super::*;
use crate::autograd;
use crate::ops::test_util::{fd_grad, rand_vec, rel_err, to_f64};

const INTER: CalibWeighting = CalibWeighting::Inter;
const SUM: CalibWeighting = CalibWeighting::Sum;

fn cfg(weight: f32, weighting: CalibWeighting) -> CalibrationLoss {
    CalibrationLoss { weight, weighting }
}

/// The loss by the definition, term by term, in float64.
struct Reference {
    ce: f64,
    entropy: Vec<f64>,
    /// L_UC before the clamp.
    raw_l_uc: f64,
    l_uc: f64,
    total: f64,
}

fn reference(z: &[f64], labels: &[usize], cfg: &CalibrationLoss) -> Reference {
    let (b, c) = (labels.len(), z.len() / labels.len());
    let (mut ce, mut entropy) = (0.0, Vec::new());
    let (mut cor, mut inc) = (Vec::new(), Vec::new());
    for (row, &y) in z.chunks(c).zip(labels) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
        let p: Vec<f64> = e.iter().map(|v| v / e.iter().sum::<f64>()).collect();
        ce -= p[y].ln() / b as f64;
        let u = -p.iter().map(|q| q * (q + 1e-6).ln()).sum::<f64>();
        entropy.push(u);
        let argmax = (0..c).fold(0, |best, j| if row[j] > row[best] { j } else { best });
        if argmax == y {
            cor.push(-(1.0 - u.tanh() + 1e-6).ln());
        } else {
            inc.push(-(u.tanh() + 1e-6).ln());
        }
    }
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    let raw_l_uc = match cfg.weighting {
        CalibWeighting::Inter => (inc.len() as f64 * mean(&cor) + cor.len() as f64 * mean(&inc)) / b as f64,
        CalibWeighting::Sum => mean(&cor) + mean(&inc),
    };
    let l_uc = if raw_l_uc.is_nan() { 0.0 } else { raw_l_uc.min(5.0) };
    Reference { ce, entropy, raw_l_uc, l_uc, total: ce + cfg.weight as f64 * l_uc }
}

/// Random logits in [-scale, scale] with each row's maximum raised by 0.05, so a finite-difference step never
/// changes which class is the argmax.
fn logits(b: usize, c: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut z = rand_vec(b * c, seed, scale);
    for row in z.chunks_mut(c) {
        let j = argmax(row);
        row[j] += 0.05;
    }
    z
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, j| if row[j] > row[best] { j } else { best })
}

/// Labels that are the argmax on rows of one parity (`shift`) and another class on the others.
fn mixed_labels(z: &[f32], c: usize, shift: usize) -> Vec<usize> {
    z.chunks(c)
        .enumerate()
        .map(|(r, row)| if (r + shift) % 2 == 0 { argmax(row) } else { (argmax(row) + 1 + r % (c - 1)) % c })
        .collect()
}

/// The op's ∂total/∂z through the autograd tape.
fn op_grad(z: &[f32], labels: &[usize], cfg: &CalibrationLoss) -> (LossTerms, Vec<f32>) {
    let x = Tensor::from_vec(z.to_vec(), &[labels.len(), z.len() / labels.len()]).unwrap().variable();
    let terms = calibration_loss(&x, labels, cfg).unwrap();
    let grads = autograd::backward(&terms.loss).unwrap();
    let g = grads.get(&x).unwrap().to_vec().unwrap();
    (terms, g)
}

fn rel(a: f32, b: f64) -> f64 {
    (a as f64 - b).abs() / b.abs().max(1e-30)
}

/// The op's terms match the reference's and its gradient the reference's finite differences; returns the
/// gradient's relative error and the reference.
fn check_against_reference(z: &[f32], labels: &[usize], cfg: &CalibrationLoss) -> (f64, Reference) {
    let (terms, g) = op_grad(z, labels, cfg);
    let r = reference(&to_f64(z), labels, cfg);
    assert!(rel(terms.ce, r.ce) < 1e-5, "ce {} vs {}", terms.ce, r.ce);
    assert!((terms.l_uc as f64 - r.l_uc).abs() <= 1e-5 * r.l_uc.max(1.0), "l_uc {} vs {}", terms.l_uc, r.l_uc);
    assert!(rel(terms.loss.to_vec().unwrap()[0], r.total) < 1e-5);
    assert!(rel_err(&terms.entropy, &r.entropy) < 1e-5);
    let fd = fd_grad(&to_f64(z), |x| reference(x, labels, cfg).total);
    let err = rel_err(&g, &fd);
    assert!(err <= 1e-4, "gradient rel err {err:e} for {cfg:?}, B={}", labels.len());
    (err, r)
}

#[test]
fn matches_pytorch_fixture() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/train/dinov2_lora_step");
    let open = |f: &str| crate::weights::SafetensorsFile::open(std::path::Path::new(&format!("{dir}/{f}"))).unwrap();
    let (expected, batch) = (open("expected.safetensors"), open("batch.safetensors"));
    let logits = expected.get("logits", Some(&[6, 5])).unwrap();
    let labels: Vec<usize> = batch.get_i64("labels").unwrap().0.iter().map(|&y| y as usize).collect();
    let scalar = |name: &str| expected.get(name, Some(&[1])).unwrap().to_vec().unwrap()[0] as f64;

    let x = logits.variable();
    let terms = calibration_loss(&x, &labels, &cfg(1.0, INTER)).unwrap();
    let errs = [
        rel(terms.ce, scalar("ce")),
        rel(terms.l_uc, scalar("l_uc")),
        rel(terms.loss.to_vec().unwrap()[0], scalar("loss")),
        rel_err(&terms.entropy, &to_f64(&expected.get("entropy", Some(&[6])).unwrap().to_vec().unwrap())),
    ];
    eprintln!("fixture rel errors (ce, l_uc, loss, entropy): {errs:?}");
    assert!(errs.iter().all(|&e| e < 1e-5), "{errs:?}");

    // The classifier's bias gets Σ_b ∂L/∂z_b: PyTorch's gradient of the same loss.
    let g = autograd::backward(&terms.loss).unwrap().get(&x).unwrap().to_vec().unwrap();
    let bias_grad: Vec<f32> = (0..5).map(|j| g.chunks(5).map(|row| row[j]).sum()).collect();
    let name = "grad.base_model.model.classifier.modules_to_save.bias";
    let err = rel_err(&bias_grad, &to_f64(&expected.get(name, Some(&[5])).unwrap().to_vec().unwrap()));
    eprintln!("fixture bias gradient rel error: {err:e}");
    assert!(err < 1e-4, "{err:e}");
}

#[test]
fn gradient_matches_finite_differences() {
    let cases = [(1, 2, 1, 2.0, 0), (1, 2, 2, 2.0, 1), (2, 3, 3, 2.0, 0), (7, 13, 4, 3.0, 1), (33, 100, 5, 10.0, 0)];
    for (b, c, seed, scale, shift) in cases {
        let z = logits(b, c, seed, scale);
        let labels = mixed_labels(&z, c, shift);
        for cfg in [cfg(0.0, INTER), cfg(0.7, INTER), cfg(0.0, SUM), cfg(0.7, SUM)] {
            let (err, r) = check_against_reference(&z, &labels, &cfg);
            assert!(r.raw_l_uc < 5.0, "B={b} C={c}: L_UC {} is clamped; the case tests nothing", r.raw_l_uc);
            eprintln!(
                "B={b} C={c} {:?} λ={}: L_UC {:.4}, gradient rel err {err:.2e}",
                cfg.weighting, cfg.weight, r.l_uc
            );
        }
    }
}

#[test]
fn all_correct_and_all_wrong_batches() {
    let (b, c) = (6, 5);
    let z = logits(b, c, 11, 2.0);
    let right: Vec<usize> = z.chunks(c).map(argmax).collect();
    let wrong: Vec<usize> = right.iter().map(|y| (y + 2) % c).collect();
    for (labels, correct) in [(&right, b), (&wrong, 0)] {
        // Inter weights each group by the other's share: one empty group leaves plain cross-entropy.
        let (terms, g) = op_grad(&z, labels, &cfg(0.7, INTER));
        assert_eq!((terms.correct, terms.l_uc), (correct, 0.0));
        assert_eq!(g, op_grad(&z, labels, &CalibrationLoss::cross_entropy()).1);
        let (err, r) = check_against_reference(&z, labels, &cfg(0.7, SUM));
        assert!(r.l_uc > 0.1 && r.l_uc < 5.0, "{}", r.l_uc);
        eprintln!("{correct}/{b} correct, Sum: L_UC {:.4}, gradient rel err {err:.2e}", r.l_uc);
    }
}

#[test]
fn clamped_calibration_term_passes_only_cross_entropy() {
    // All rows right but near-uniform over 50 classes: u ≈ log 50, so −log(1 − tanh u + 1e−6) ≈ 7 > 5.
    let (b, c) = (4, 50);
    let z = logits(b, c, 21, 0.01);
    let labels: Vec<usize> = z.chunks(c).map(argmax).collect();
    let (err, r) = check_against_reference(&z, &labels, &cfg(0.7, SUM));
    assert!(r.raw_l_uc > 5.0, "the batch should be clamped: L_UC {}", r.raw_l_uc);
    let (terms, g) = op_grad(&z, &labels, &cfg(0.7, SUM));
    assert_eq!((terms.l_uc, terms.correct), (5.0, b));
    assert_eq!(g, op_grad(&z, &labels, &CalibrationLoss::cross_entropy()).1);
    eprintln!("clamped: raw L_UC {:.4}, gradient rel err {err:.2e}", r.raw_l_uc);
}

#[test]
fn clamp_replaces_nan_and_large_values() {
    assert_eq!(cpu::clamp(f64::NAN), (0.0, false));
    assert_eq!(cpu::clamp(7.5), (5.0, false));
    assert_eq!(cpu::clamp(5.0), (5.0, true));
    assert_eq!(cpu::clamp(0.25), (0.25, true));
}

#[test]
fn ties_go_to_the_first_maximum() {
    let z = Tensor::from_vec(vec![1.0, 3.0, 3.0, 2.0, 2.0, 0.0], &[2, 3]).unwrap();
    let count = |labels: &[usize]| calibration_loss(&z, labels, &cfg(1.0, INTER)).unwrap().correct;
    assert_eq!(count(&[1, 0]), 2);
    assert_eq!(count(&[2, 1]), 0);
}

#[test]
fn frozen_logits_record_nothing_and_upstream_gradient_scales() {
    let (b, c) = (3, 4);
    let z = logits(b, c, 31, 2.0);
    let labels = mixed_labels(&z, c, 0);
    let frozen = Tensor::from_vec(z.clone(), &[b, c]).unwrap();
    assert!(!calibration_loss(&frozen, &labels, &cfg(0.7, INTER)).unwrap().loss.is_tracked());

    let (_, g) = op_grad(&z, &labels, &cfg(0.7, INTER));
    let x = frozen.variable();
    let loss = calibration_loss(&x, &labels, &cfg(0.7, INTER)).unwrap().loss;
    let scaled = autograd::backward_with(&loss, &Tensor::from_vec(vec![2.5], &[1]).unwrap()).unwrap();
    let want: Vec<f32> = g.iter().map(|v| v * 2.5).collect();
    assert_eq!(scaled.get(&x).unwrap().to_vec().unwrap(), want);
}

#[test]
fn bad_inputs_are_errors() {
    let err = |shape: &[usize], labels: &[usize], weight: f32| {
        let x = Tensor::from_vec(vec![0.5; shape.iter().product()], shape).unwrap();
        calibration_loss(&x, labels, &cfg(weight, INTER)).unwrap_err().to_string()
    };
    for (msg, want) in [
        (err(&[5], &[0], 1.0), "rank 2"),
        (err(&[1, 2, 3], &[0], 1.0), "rank 2"),
        (err(&[3, 4], &[0, 1], 1.0), "2 labels for 3 rows"),
        (err(&[3, 4], &[0, 3, 4], 1.0), "row 2: label 4 is out of range for 4 classes"),
        (err(&[0, 4], &[], 1.0), "empty batch"),
        (err(&[2, 4], &[0, 1], -0.5), "λ"),
        (err(&[2, 4], &[0, 1], f32::NAN), "λ"),
    ] {
        assert!(msg.contains("calibration_loss") && msg.contains(want), "{msg}");
    }
}

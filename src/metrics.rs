//! How good and how calibrated a classifier's probabilities are on labelled data: accuracy, expected
//! calibration error (15 equal-width confidence bins), negative log-likelihood, Brier score, and the AUROC of
//! the entropy as a detector of wrong predictions (is the uncertainty trustworthy?). Sums in float64.

use crate::error::{Error, Result};

/// The confidence bins of the ECE, as is customary (and as the paper reports it).
pub const ECE_BINS: usize = 15;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub samples: usize,
    pub accuracy: f64,
    /// Σ_b (n_b/N)·|accuracy_b − confidence_b| over bins (b/15, (b+1)/15] of the top probability.
    pub ece: f64,
    /// mean −log p(label)
    pub nll: f64,
    /// mean Σ_c (p_c − [c = label])²
    pub brier: f64,
    /// P(entropy of a wrong prediction > entropy of a right one), ties counting ½; `None` when every prediction
    /// is right or every one is wrong.
    pub error_auroc: Option<f64>,
}

impl Metrics {
    pub fn json(&self) -> String {
        let auroc = self.error_auroc.map_or("null".to_string(), |a| a.to_string());
        format!(
            r#"{{"samples":{},"accuracy":{},"ece":{},"nll":{},"brier":{},"error_auroc":{auroc}}}"#,
            self.samples, self.accuracy, self.ece, self.nll, self.brier
        )
    }
}

/// One sample's softmax summary.
struct Row {
    correct: bool,
    confidence: f64,
    entropy: f64,
    nll: f64,
    brier: f64,
}

/// The metrics of `logits` (`[N, classes]`, row-major) against `labels`.
pub fn evaluate(logits: &[f32], classes: usize, labels: &[usize]) -> Result<Metrics> {
    let n = labels.len();
    if n == 0 || classes == 0 || logits.len() != n * classes {
        return Err(Error::shape("evaluate", format!("{} logits for {n} labels of {classes} classes", logits.len())));
    }
    if let Some((row, l)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(Error::invalid("evaluate", format!("row {row}: label {l} is out of range for {classes} classes")));
    }
    let rows: Vec<Row> = logits.chunks(classes).zip(labels).map(|(z, &y)| summarise(z, y)).collect();
    let mean = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / n as f64;
    Ok(Metrics {
        samples: n,
        accuracy: mean(&|r| r.correct as u8 as f64),
        ece: expected_calibration_error(&rows),
        nll: mean(&|r| r.nll),
        brier: mean(&|r| r.brier),
        error_auroc: error_auroc(&rows),
    })
}

fn summarise(z: &[f32], label: usize) -> Row {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
    let p: Vec<f64> = z.iter().map(|&v| (v as f64 - max).exp() / sum).collect();
    // The first maximum, as argmax.
    let top = (0..z.len()).fold(0, |best, c| if p[c] > p[best] { c } else { best });
    Row {
        correct: top == label,
        confidence: p[top],
        entropy: -p.iter().filter(|&&q| q > 0.0).map(|q| q * q.ln()).sum::<f64>(),
        nll: -(z[label] as f64 - max - sum.ln()),
        brier: p.iter().enumerate().map(|(c, q)| (q - (c == label) as u8 as f64).powi(2)).sum(),
    }
}

fn expected_calibration_error(rows: &[Row]) -> f64 {
    let mut bins = [(0usize, 0f64, 0f64); ECE_BINS]; // (count, Σ correct, Σ confidence)
    for r in rows {
        // Bin b holds confidences in (b/15, (b+1)/15]; a confidence is always > 1/classes > 0.
        let b = ((r.confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        bins[b].0 += 1;
        bins[b].1 += r.correct as u8 as f64;
        bins[b].2 += r.confidence;
    }
    bins.iter().filter(|b| b.0 > 0).map(|&(_, right, conf)| (right - conf).abs()).sum::<f64>() / rows.len() as f64
}

/// Mann–Whitney: over every (wrong, right) pair, how often the wrong one has the larger entropy.
fn error_auroc(rows: &[Row]) -> Option<f64> {
    let mut scored: Vec<(f64, bool)> = rows.iter().map(|r| (r.entropy, !r.correct)).collect();
    let wrong = scored.iter().filter(|s| s.1).count();
    let right = scored.len() - wrong;
    if wrong == 0 || right == 0 {
        return None;
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Rank sum of the wrong predictions, ties given their mean rank.
    let (mut rank_sum, mut i) = (0f64, 0);
    while i < scored.len() {
        let j = (i..scored.len()).find(|&j| scored[j].0 != scored[i].0).unwrap_or(scored.len());
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += scored[i..j].iter().filter(|s| s.1).count() as f64 * mean_rank;
        i = j;
    }
    Some((rank_sum - (wrong * (wrong + 1)) as f64 / 2.0) / (wrong * right) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The metrics written out plainly: pairwise AUROC, bins found by comparison.
    fn brute_force(logits: &[f32], c: usize, labels: &[usize]) -> (f64, f64, f64, f64, Option<f64>) {
        let mut rows = Vec::new();
        for (z, &y) in logits.chunks(c).zip(labels) {
            let e: Vec<f64> = z.iter().map(|&v| (v as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|v| v / s).collect();
            let top = (0..c).fold(0, |b, k| if p[k] > p[b] { k } else { b });
            let entropy: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
            let brier: f64 = (0..c).map(|k| (p[k] - if k == y { 1.0 } else { 0.0 }).powi(2)).sum();
            rows.push((top == y, p[top], entropy, -p[y].ln(), brier));
        }
        let n = rows.len() as f64;
        let acc = rows.iter().filter(|r| r.0).count() as f64 / n;
        let mut ece = 0.0;
        for b in 0..15 {
            let (lo, hi) = (b as f64 / 15.0, (b + 1) as f64 / 15.0);
            let inside: Vec<_> = rows.iter().filter(|r| r.1 > lo && r.1 <= hi).collect();
            if !inside.is_empty() {
                let a = inside.iter().filter(|r| r.0).count() as f64;
                let conf: f64 = inside.iter().map(|r| r.1).sum();
                ece += (a - conf).abs() / n;
            }
        }
        type Summary = (bool, f64, f64, f64, f64);
        let (wrong, right): (Vec<&Summary>, Vec<&Summary>) = rows.iter().partition(|r| !r.0);
        let auroc = (!wrong.is_empty() && !right.is_empty()).then(|| {
            let mut wins = 0.0;
            for w in &wrong {
                for r in &right {
                    wins += if w.2 > r.2 {
                        1.0
                    } else if w.2 == r.2 {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            wins / (wrong.len() * right.len()) as f64
        });
        let nll = rows.iter().map(|r| r.3).sum::<f64>() / n;
        let brier = rows.iter().map(|r| r.4).sum::<f64>() / n;
        (acc, ece, nll, brier, auroc)
    }

    #[test]
    fn matches_the_metrics_written_out_plainly() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (n, c) in [(1, 2), (7, 3), (200, 10), (333, 7)] {
            let logits: Vec<f32> = (0..n * c).map(|_| rng.random_range(-3.0..3.0)).collect();
            let mut labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..c)).collect();
            // Duplicate rows, so that entropies tie across right and wrong predictions.
            if n > 10 {
                labels[1] = (labels[0] + 1) % c;
            }
            let mut logits = logits;
            if n > 10 {
                let first: Vec<f32> = logits[..c].to_vec();
                logits[c..2 * c].copy_from_slice(&first);
            }
            let m = evaluate(&logits, c, &labels).unwrap();
            let (acc, ece, nll, brier, auroc) = brute_force(&logits, c, &labels);
            assert!((m.accuracy - acc).abs() < 1e-12 && (m.ece - ece).abs() < 1e-9, "n={n}");
            assert!((m.nll - nll).abs() < 1e-9 && (m.brier - brier).abs() < 1e-9, "n={n}");
            match (m.error_auroc, auroc) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "n={n}: {a} vs {b}"),
                (a, b) => assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn rejects_mismatched_inputs() {
        assert!(evaluate(&[1.0, 2.0], 2, &[2]).unwrap_err().to_string().contains("row 0"));
        assert!(evaluate(&[1.0, 2.0, 3.0], 2, &[0, 1]).is_err());
        assert!(evaluate(&[], 2, &[]).is_err());
    }
}

//! BADGE (Ash et al.): k-means++ seeding on gradient embeddings g_i = q_i ⊗ h_i with q_i = p_i − onehot(argmax p_i)
//! and h_i the features — without ever forming g (which is N·C·D). Since ⟨g_i, g_j⟩ = ⟨q_i, q_j⟩⟨h_i, h_j⟩,
//! ‖g_i − g_j‖² = ‖q_i‖²‖h_i‖² + ‖q_j‖²‖h_j‖² − 2⟨q_i, q_j⟩⟨h_i, h_j⟩, so memory is O(N·(C + D)).
//!
//! As the original BADGE (and C_PEAL's `badge.py`), only unlabelled rows take part: the first centre is the row
//! with the largest ‖g‖ (ties to the lower index); every next one is drawn with probability ∝ D², the squared
//! distance to the nearest centre, among the rows not yet chosen. The draw: u = `rng.random::<f64>()` · ΣD²
//! from `ChaCha8Rng::seed_from_u64(seed)`, and the pick is the first row (ascending) whose running sum of D²
//! exceeds u. When every remaining D² is 0, a uniform `rng.random_range(0..remaining)` picks among them.
//! Rows a new centre cannot come closer to are skipped by the triangle inequality (as in `coreset`), and rows
//! whose ⟨h_i, h_c⟩ interval from the int8 shadow of the features (`quant`) already rules out an update skip the
//! exact f32 product; neither changes the result.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::matrix::{dot, CHUNK_ROWS};
use super::quant::Quantized;
use super::{argmax, Mat, Selection, SelectionInput};
use crate::error::Result;

const INACTIVE: f64 = -1.0;
const NO_CENTRE: u32 = u32::MAX;
const SLACK: f64 = 1.0 + 1e-4;

/// `budget` rows in BADGE order; scores are each row's final gradient-space distance to its nearest centre.
pub fn select(input: &SelectionInput, budget: usize) -> Result<Selection> {
    let features = input.features_for("badge")?;
    let preds = input.predictions_for("badge")?;
    let n = features.rows();
    let labeled = input.labeled_mask(n);
    let pool: Vec<usize> = (0..n).filter(|&i| !labeled[i]).collect();
    let q = residuals(preds, &pool);
    let mut state = Seeding::new(features, &pool, q, preds.classes());
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
    let mut order = Vec::with_capacity(budget);
    let mut next = state.largest_norm();
    let mut progress = input.picks_progress(budget, "badge");
    while order.len() < budget {
        let Some(j) = next else { break };
        order.push(pool[j]);
        let chunk_sums = state.add_centre(j);
        next = state.draw(&chunk_sums, &mut rng);
        progress.iter_mut().for_each(|p| p.inc(1));
    }
    progress.iter_mut().for_each(|p| p.finish());
    let mut scores = vec![f32::NAN; n];
    for (j, &i) in pool.iter().enumerate() {
        scores[i] = state.min_dist2[j].max(0.0).sqrt() as f32;
    }
    Ok(Selection { indices: order, scores: Some(scores) })
}

/// q = p − onehot(argmax p) for every pool row, flattened `[M, C]`.
pub(crate) fn residuals(preds: &super::Predictions, pool: &[usize]) -> Vec<f32> {
    let c = preds.classes();
    let mut q = vec![0f32; pool.len() * c];
    q.par_chunks_mut(c.max(1)).zip(pool.par_iter()).for_each_init(
        || (Vec::new(), vec![0.0; c], vec![0.0; c]),
        |(buf, tmp, p), (out, &i)| {
            preds.mean_probs(i, buf, tmp, p);
            let top = argmax(p);
            for (k, (o, &v)) in out.iter_mut().zip(p.iter()).enumerate() {
                *o = (v - if k == top { 1.0 } else { 0.0 }) as f32;
            }
        },
    );
    q
}

/// k-means++ state over the pool (positions j index `pool`).
struct Seeding<'m, 'a> {
    features: &'m Mat<'a>,
    pool: &'m [usize],
    classes: usize,
    q: Vec<f32>,
    /// ‖g_j‖² = ‖q_j‖²‖h_j‖².
    norm2: Vec<f64>,
    /// ‖h_j‖.
    h_norm: Vec<f64>,
    quant: Quantized,
    /// D² of each pool row (∞ before any centre, `INACTIVE` once chosen).
    min_dist2: Vec<f64>,
    nearest: Vec<u32>,
    /// Per centre: its q row, h row and ‖g‖².
    centres: Vec<(Vec<f32>, Vec<f32>, f64)>,
}

impl<'m, 'a> Seeding<'m, 'a> {
    fn new(features: &'m Mat<'a>, pool: &'m [usize], q: Vec<f32>, classes: usize) -> Self {
        let (norm2, h_norm): (Vec<f64>, Vec<f64>) = pool
            .par_iter()
            .enumerate()
            .map_init(Vec::new, |buf, (j, &i)| {
                let h = features.row(i, buf);
                let qj = &q[j * classes..(j + 1) * classes];
                let h2 = dot(h, h) as f64;
                (dot(qj, qj) as f64 * h2, h2.sqrt())
            })
            .unzip();
        let quant = Quantized::new(features, pool);
        let m = pool.len();
        Seeding {
            features,
            pool,
            classes,
            q,
            norm2,
            h_norm,
            quant,
            min_dist2: vec![f64::INFINITY; m],
            nearest: vec![NO_CENTRE; m],
            centres: Vec::new(),
        }
    }

    fn largest_norm(&self) -> Option<usize> {
        (0..self.norm2.len()).reduce(|best, j| if self.norm2[j] > self.norm2[best] { j } else { best })
    }

    /// Make pool row `j` a centre and update D²; return the sum of active D² per chunk (in order).
    fn add_centre(&mut self, j: usize) -> Vec<f64> {
        let c = self.classes;
        let mut buf = Vec::new();
        let h_new = self.features.row(self.pool[j], &mut buf).to_vec();
        let q_new = self.q[j * c..(j + 1) * c].to_vec();
        let n2_new = self.norm2[j];
        let centre_dist2: Vec<f64> = self
            .centres
            .par_iter()
            .map(|(qk, hk, n2k)| grad_dist2(n2_new, *n2k, dot(&q_new, qk), dot(&h_new, hk)))
            .collect();
        let new_id = self.centres.len() as u32;
        self.min_dist2[j] = INACTIVE;
        let (features, pool, q, norm2, h_norm, quant) =
            (self.features, self.pool, &self.q, &self.norm2, &self.h_norm, &self.quant);
        let h_norm_new = h_norm[j];
        let sums = self
            .min_dist2
            .par_chunks_mut(CHUNK_ROWS)
            .zip(self.nearest.par_chunks_mut(CHUNK_ROWS))
            .enumerate()
            .map(|(chunk, (dist2, nearest))| {
                let mut buf = Vec::new();
                let mut sum = 0.0;
                for (r, (m, a)) in dist2.iter_mut().zip(nearest.iter_mut()).enumerate() {
                    if *m == INACTIVE {
                        continue;
                    }
                    let unreachable = *a != NO_CENTRE && centre_dist2[*a as usize] >= 4.0 * *m * SLACK;
                    if *m > 0.0 && !unreachable {
                        let k = chunk * CHUNK_ROWS + r;
                        let q_dot = dot(&q[k * c..(k + 1) * c], &q_new);
                        if m.is_finite() {
                            let (lo, hi) = quant.dot_interval(k, j, h_norm[k], h_norm_new);
                            let lower = norm2[k] + n2_new - 2.0 * (q_dot as f64 * lo).max(q_dot as f64 * hi);
                            if lower >= *m * SLACK {
                                sum += *m;
                                continue;
                            }
                        }
                        let hk = features.row(pool[k], &mut buf);
                        let d2 = grad_dist2(norm2[k], n2_new, q_dot, dot(hk, &h_new));
                        if d2 < *m {
                            *m = d2;
                            *a = new_id;
                        }
                    }
                    sum += *m;
                }
                sum
            })
            .collect();
        self.centres.push((q_new, h_new, n2_new));
        sums
    }

    /// Draw the next centre ∝ D² among active rows (see the module docs for the exact stream use).
    fn draw(&self, chunk_sums: &[f64], rng: &mut ChaCha8Rng) -> Option<usize> {
        let total: f64 = chunk_sums.iter().sum();
        let active = || (0..self.min_dist2.len()).filter(|&j| self.min_dist2[j] != INACTIVE);
        if total.is_nan() || total <= 0.0 {
            let remaining = active().count();
            return (remaining > 0).then(|| active().nth(rng.random_range(0..remaining))).flatten();
        }
        let u = rng.random::<f64>() * total;
        let mut cum = 0.0;
        let mut last_positive = None;
        for (chunk, &s) in chunk_sums.iter().enumerate() {
            if cum + s <= u {
                cum += s;
                continue;
            }
            let start = chunk * CHUNK_ROWS;
            let end = (start + CHUNK_ROWS).min(self.min_dist2.len());
            for j in start..end {
                let m = self.min_dist2[j];
                if m == INACTIVE || m <= 0.0 {
                    continue;
                }
                cum += m;
                last_positive = Some(j);
                if cum > u {
                    return Some(j);
                }
            }
        }
        // Rounding left u at the very end: take the last row with positive weight.
        last_positive.or_else(|| (0..self.min_dist2.len()).rev().find(|&j| self.min_dist2[j] > 0.0))
    }
}

/// ‖g_a − g_b‖² from the norms and the two factor inner products, clamped at 0 against rounding.
fn grad_dist2(norm2_a: f64, norm2_b: f64, q_dot: f32, h_dot: f32) -> f64 {
    (norm2_a + norm2_b - 2.0 * q_dot as f64 * h_dot as f64).max(0.0)
}

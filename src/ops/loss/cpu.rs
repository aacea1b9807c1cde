//! CPU math of the calibration loss, in f64: one fused pass per row (softmax, cross-entropy, entropy, argmax and
//! the entropy's derivative), then the batch-level group means and the gradient with respect to the logits.

use rayon::prelude::*;

use super::CalibWeighting;

/// The ε inside the entropy's log and the calibration logs, as in the reference code.
pub(super) const EPS: f64 = 1e-6;
/// The ceiling of the calibration term (its gradient is zero above it).
pub(super) const L_UC_MAX: f64 = 5.0;

/// One row's share of the loss.
#[derive(Clone, Copy, Debug)]
pub(super) struct Row {
    /// −log p[y], as logsumexp − z_y.
    pub ce: f64,
    /// u = −Σ p·log(p + ε).
    pub entropy: f64,
    /// Whether the first maximum of the row is the label.
    pub correct: bool,
}

/// Every row's share, with each row's ∂CE_b/∂z = p − onehot(y) and ∂u/∂z kept row-major `[B, C]` for the
/// gradient.
pub(super) struct RowPass {
    pub rows: Vec<Row>,
    pub dce_dz: Vec<f32>,
    pub du_dz: Vec<f32>,
}

/// The fused per-row pass over logits `z` (`[B, C]` row-major, C ≥ 1) with one label per row.
pub(super) fn row_pass(z: &[f32], labels: &[usize], c: usize) -> RowPass {
    let mut dce_dz = vec![0f32; z.len()];
    let mut du_dz = vec![0f32; z.len()];
    let rows = z
        .par_chunks(c)
        .zip(labels.par_iter())
        .zip(dce_dz.par_chunks_mut(c).zip(du_dz.par_chunks_mut(c)))
        .map(|((z, &y), (dce, du))| one_row(z, y, dce, du))
        .collect();
    RowPass { rows, dce_dz, du_dz }
}

/// One row: writes p − onehot(y) (in f64 before rounding, so a confident row keeps its tiny gradient) and ∂u/∂z = −p_j(a_j − Σ p_i a_i), a_i = log(p_i + ε) + p_i/(p_i + ε).
fn one_row(z: &[f32], y: usize, dce_out: &mut [f32], du_out: &mut [f32]) -> Row {
    let (arg, max) = first_max(z);
    let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    let p: Vec<f64> = z.iter().map(|&v| (v as f64 - lse).exp()).collect();
    let a: Vec<f64> = p.iter().map(|&q| (q + EPS).ln() + q / (q + EPS)).collect();
    let entropy = -p.iter().map(|&q| q * (q + EPS).ln()).sum::<f64>();
    let a_mean: f64 = p.iter().zip(&a).map(|(q, a)| q * a).sum();
    for (j, (dce, du)) in dce_out.iter_mut().zip(du_out.iter_mut()).enumerate() {
        *dce = (p[j] - if j == y { 1.0 } else { 0.0 }) as f32;
        *du = (-p[j] * (a[j] - a_mean)) as f32;
    }
    Row { ce: lse - z[y] as f64, entropy, correct: arg == y }
}

/// The index of the first maximum (torch.argmax's choice on ties) and its value.
fn first_max(z: &[f32]) -> (usize, f64) {
    let mut best = 0;
    for (j, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = j;
        }
    }
    (best, z[best] as f64)
}

/// The calibration term and its derivative with respect to each row's entropy.
#[derive(Debug)]
pub(super) struct Calibration {
    /// L_UC after the clamp (0 when it was NaN).
    pub value: f64,
    /// ∂L_UC/∂u_b (all zero when clamped or NaN).
    pub d_entropy: Vec<f64>,
}

/// L_UC from the rows' entropies and correctness: the mean of −log(1 − tanh u + ε) over the correct rows and of
/// −log(tanh u + ε) over the others, combined by `weighting`, then clamped to `L_UC_MAX`.
pub(super) fn calibration(rows: &[Row], weighting: CalibWeighting) -> Calibration {
    let b = rows.len() as f64;
    let n_cor = rows.iter().filter(|r| r.correct).count() as f64;
    let n_inc = b - n_cor;
    let (w_cor, w_inc) = match weighting {
        CalibWeighting::Inter => (n_inc / b, n_cor / b),
        CalibWeighting::Sum => (1.0, 1.0),
    };
    // each group's weight over its size: the factor of a row's term in L_UC (0 for an empty group)
    let per_cor = if n_cor > 0.0 { w_cor / n_cor } else { 0.0 };
    let per_inc = if n_inc > 0.0 { w_inc / n_inc } else { 0.0 };
    let mut value = 0.0;
    let mut d_entropy = Vec::with_capacity(rows.len());
    for r in rows {
        let t = r.entropy.tanh();
        let dt = 1.0 - t * t;
        if r.correct {
            value += -per_cor * (1.0 - t + EPS).ln();
            d_entropy.push(per_cor * dt / (1.0 - t + EPS));
        } else {
            value += -per_inc * (t + EPS).ln();
            d_entropy.push(-per_inc * dt / (t + EPS));
        }
    }
    let (value, live) = clamp(value);
    if !live {
        d_entropy.iter_mut().for_each(|d| *d = 0.0);
    }
    Calibration { value, d_entropy }
}

/// L_UC clamped to `L_UC_MAX`, NaN to 0, and whether its gradient flows (it does not where it was replaced).
pub(super) fn clamp(l_uc: f64) -> (f64, bool) {
    if l_uc.is_nan() {
        (0.0, false)
    } else if l_uc > L_UC_MAX {
        (L_UC_MAX, false)
    } else {
        (l_uc, true)
    }
}

/// ∂total/∂z = (p − onehot(y))/B + λ·∂L_UC/∂u_b·∂u_b/∂z, row-major `[B, C]`.
pub(super) fn logits_grad(pass: &RowPass, weight: f64, d_entropy: &[f64]) -> Vec<f32> {
    let c = pass.dce_dz.len() / pass.rows.len();
    let inv_b = 1.0 / pass.rows.len() as f64;
    let mut grad = vec![0f32; pass.dce_dz.len()];
    grad.par_chunks_mut(c).enumerate().for_each(|(b, g)| {
        let (dce, du) = (&pass.dce_dz[b * c..(b + 1) * c], &pass.du_dz[b * c..(b + 1) * c]);
        let calib = weight * d_entropy[b];
        for ((g, &dce), &du) in g.iter_mut().zip(dce).zip(du) {
            *g = (dce as f64 * inv_b + calib * du as f64) as f32;
        }
    });
    grad
}

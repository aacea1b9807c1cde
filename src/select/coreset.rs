//! Coreset: k-center greedy in Euclidean feature space (Sener & Savarese), the exact textbook order.
//!
//! The labelled rows are the initial centres (with none, the first pick is a uniform draw from the unlabelled
//! rows by the seed); each pick is the unlabelled row farthest from its nearest centre, ties to the lower index.
//! One running min-distance per row is updated once per new centre. That update skips, without reading its
//! features, every row the new centre provably cannot come closer to: with a(i) the row's nearest centre and
//! m(i) its distance, d(i, new) ≥ d(new, a(i)) − m(i) ≥ m(i) whenever d(new, a(i)) ≥ 2·m(i) (triangle
//! inequality). Rows that survive are first checked against a lower bound from an int8 shadow of the features
//! (see `quant`), which reads a quarter of the bytes; only rows the bound cannot rule out get the exact f32
//! distance, summed from differences (no ‖x‖² + ‖y‖² − 2⟨x, y⟩ cancellation). Neither skip changes the order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::matrix::{sq_dist, CHUNK_ROWS};
use super::quant::Quantized;
use super::{Mat, Selection, SelectionInput};
use crate::error::Result;

/// Marks a row that is a centre (labelled or chosen): never updated, never picked.
const INACTIVE: f32 = -1.0;
const NO_CENTRE: u32 = u32::MAX;
/// Prune only when d(new, a(i))² ≥ 4·m(i)²·SLACK, so f32 rounding can never skip a row that gets closer.
const SLACK: f32 = 1.0 + 1e-4;

/// `budget` rows in k-center greedy order; scores are each row's final distance to its nearest centre.
pub fn select(input: &SelectionInput, budget: usize) -> Result<Selection> {
    let features = input.features_for("coreset")?;
    let n = features.rows();
    let labeled = input.labeled_mask(n);
    let mut state = KCenter::new(features, &labeled);
    let mut farthest = None;
    for &centre in &input.labeled {
        farthest = state.add_centre(centre);
    }
    if input.labeled.is_empty() {
        let pool: Vec<usize> = (0..n).filter(|&i| !labeled[i]).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
        farthest = pool.get(rng.random_range(0..pool.len().max(1))).copied();
    }
    let mut order = Vec::with_capacity(budget);
    let mut progress = input.picks_progress(budget, "coreset");
    while order.len() < budget {
        let Some(pick) = farthest else { break };
        order.push(pick);
        farthest = state.add_centre(pick);
        progress.iter_mut().for_each(|p| p.inc(1));
    }
    progress.iter_mut().for_each(|p| p.finish());
    let scores = state.min_dist2.iter().zip(&labeled).map(|(&m, &l)| if l { f32::NAN } else { m.max(0.0).sqrt() });
    Ok(Selection { indices: order, scores: Some(scores.collect()) })
}

/// The running state of k-center greedy.
struct KCenter<'m, 'a> {
    features: &'m Mat<'a>,
    quant: Quantized,
    /// Squared distance of each row to its nearest centre (∞ before any centre; `INACTIVE` for centres).
    min_dist2: Vec<f32>,
    /// Index (into `centres`) of each row's nearest centre.
    nearest: Vec<u32>,
    /// Centre rows, flattened `[k, D]`.
    centres: Vec<f32>,
    /// Squared distance from the newest centre to every centre, refreshed per pick.
    centre_dist2: Vec<f32>,
}

impl<'m, 'a> KCenter<'m, 'a> {
    fn new(features: &'m Mat<'a>, labeled: &[bool]) -> Self {
        let min_dist2 = labeled.iter().map(|&l| if l { INACTIVE } else { f32::INFINITY }).collect();
        let nearest = vec![NO_CENTRE; features.rows()];
        let all_rows: Vec<usize> = (0..features.rows()).collect();
        KCenter {
            features,
            quant: Quantized::new(features, &all_rows),
            min_dist2,
            nearest,
            centres: Vec::new(),
            centre_dist2: Vec::new(),
        }
    }

    /// Make row `c` a centre, update every row's min-distance, and return the farthest active row.
    fn add_centre(&mut self, c: usize) -> Option<usize> {
        let d = self.features.cols();
        let mut buf = Vec::new();
        let new_row = self.features.row(c, &mut buf).to_vec();
        self.centre_dist2 = self.centres.par_chunks(d.max(1)).map(|other| sq_dist(&new_row, other)).collect();
        let new_id = self.centre_dist2.len() as u32;
        self.centres.extend_from_slice(&new_row);
        self.min_dist2[c] = INACTIVE;
        let pass = Pass { features: self.features, quant: &self.quant, new_row: &new_row, new_index: c, new_id };
        let centre_dist2 = &self.centre_dist2;
        self.min_dist2
            .par_chunks_mut(CHUNK_ROWS)
            .zip(self.nearest.par_chunks_mut(CHUNK_ROWS))
            .enumerate()
            .map(|(chunk, (dist2, nearest))| {
                let start = chunk * CHUNK_ROWS;
                pass.update_chunk(centre_dist2, start, dist2, nearest)
            })
            .reduce(|| None, farther)
            .map(|(_, i)| i)
    }
}

/// What one min-distance update pass needs to know about the new centre.
struct Pass<'p, 'a> {
    features: &'p Mat<'a>,
    quant: &'p Quantized,
    new_row: &'p [f32],
    new_index: usize,
    new_id: u32,
}

impl Pass<'_, '_> {
    /// Update rows `start..` of one chunk for the new centre; return the chunk's farthest active row.
    fn update_chunk(
        &self,
        centre_dist2: &[f32],
        start: usize,
        dist2: &mut [f32],
        nearest: &mut [u32],
    ) -> Option<(f32, usize)> {
        let mut buf = Vec::new();
        let mut best = None;
        for (r, (m, a)) in dist2.iter_mut().zip(nearest.iter_mut()).enumerate() {
            if *m == INACTIVE {
                continue;
            }
            let i = start + r;
            let unreachable = *a != NO_CENTRE && centre_dist2[*a as usize] >= 4.0 * *m * SLACK;
            if *m > 0.0 && !unreachable && !(m.is_finite() && self.quant.dist2_at_least(i, self.new_index, *m)) {
                let d2 = sq_dist(self.features.row(i, &mut buf), self.new_row);
                if d2 < *m {
                    *m = d2;
                    *a = self.new_id;
                }
            }
            best = farther(best, Some((*m, i)));
        }
        best
    }
}

/// The farther of two (distance, row) candidates, ties to the lower row.
fn farther(a: Option<(f32, usize)>, b: Option<(f32, usize)>) -> Option<(f32, usize)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 > x.0 || (y.0 == x.0 && y.1 < x.1) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

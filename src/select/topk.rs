//! Top-K of a score vector without sorting all N: a bounded heap per chunk of rows (in parallel), merged.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::matrix::CHUNK_ROWS;

/// A candidate ordered so that "greater" means "picked earlier": higher score, then lower index.
#[derive(Clone, Copy, Debug)]
struct Ranked {
    score: f64,
    index: usize,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.index.cmp(&self.index))
    }
}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}

/// A min-heap (by rank) that keeps the `k` best candidates pushed into it.
struct Bounded {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<Ranked>>,
}

impl Bounded {
    fn new(k: usize) -> Bounded {
        Bounded { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    fn push(&mut self, item: Ranked) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(item));
        } else if let Some(worst) = self.heap.peek() {
            if item > worst.0 {
                self.heap.pop();
                self.heap.push(std::cmp::Reverse(item));
            }
        }
    }
}

/// The `k` indices with the highest scores among rows where `excluded` is false, highest first, ties to the
/// lower index. NaN scores rank above everything (callers reject NaN inputs before scoring).
pub fn top_k(scores: &[f64], excluded: &[bool], k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let partial: Vec<Bounded> = scores
        .par_chunks(CHUNK_ROWS)
        .zip(excluded.par_chunks(CHUNK_ROWS))
        .enumerate()
        .map(|(chunk, (s, ex))| {
            let mut best = Bounded::new(k);
            for (r, (&score, &skip)) in s.iter().zip(ex).enumerate() {
                if !skip {
                    best.push(Ranked { score, index: chunk * CHUNK_ROWS + r });
                }
            }
            best
        })
        .collect();
    let mut merged = Bounded::new(k);
    partial.into_iter().flat_map(|b| b.heap.into_iter()).for_each(|r| merged.push(r.0));
    let mut ranked: Vec<Ranked> = merged.heap.into_iter().map(|r| r.0).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.into_iter().map(|r| r.index).collect()
}

/// All non-excluded indices ordered by score, highest first, ties to the lower index.
pub fn rank_all(scores: &[f64], excluded: &[bool]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).filter(|&i| !excluded[i]).collect();
    idx.par_sort_unstable_by(|&a, &b| {
        Ranked { score: scores[b], index: b }.cmp(&Ranked { score: scores[a], index: a })
    });
    idx
}

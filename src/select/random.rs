//! Uniform random selection without replacement from the unlabelled pool (seeded).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SelectionInput;
use crate::error::{Error, Result};

/// `budget` distinct unlabelled indices: a partial Fisher–Yates shuffle of the unlabelled indices (ascending)
/// driven by `ChaCha8Rng::seed_from_u64(seed)`; position k swaps with a uniform position in `k..len`.
pub fn select(input: &SelectionInput, budget: usize) -> Result<Vec<usize>> {
    let n = input.pool_size().ok_or_else(|| Error::invalid("input", "random needs logits or features"))?;
    let labeled = input.labeled_mask(n);
    let mut pool: Vec<usize> = (0..n).filter(|&i| !labeled[i]).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed);
    let budget = budget.min(pool.len());
    for k in 0..budget {
        let j = rng.random_range(k..pool.len());
        pool.swap(k, j);
    }
    pool.truncate(budget);
    Ok(pool)
}

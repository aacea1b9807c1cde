//! PCB class balancing on top of any strategy, as C_PEAL's `pcb.py` (and its caller in `alvlm.py`):
//!
//! 1. the strategy picks ⌊γ·N⌋ candidates (N the whole pool, labelled included, as C_PEAL's
//!    `len(unlabeled_dst) * GAMMA`), clamped to at least the budget and at most the unlabelled pool;
//! 2. per class, the number of labelled rows with that label (`--labels`) is the running statistic;
//! 3. until the budget is filled: take the class with the smallest statistic (ties to the lower class); if it has
//!    unchosen candidates (by predicted class = argmax of the predictions), pick one uniformly at random and add
//!    1 to that class; otherwise pick uniformly among all unchosen candidates and leave the statistics as they
//!    are (so, as in C_PEAL, once the rarest class has no candidate left the remaining picks are random).
//!
//! Randomness: `ChaCha8Rng::seed_from_u64(seed)`, one `random_range(0..len)` per pick over the eligible
//! candidates in candidate order (a class's list shrinks by `swap_remove`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{argmax, run_strategy, Selection, SelectionInput, Strategy};
use crate::error::{Error, Result};

/// Balanced selection of `input.budget` rows from the candidates `strategy` ranks first.
pub fn select(strategy: Strategy, input: &SelectionInput, gamma: f64) -> Result<Selection> {
    select_with(input, gamma, |n_candidates| run_strategy(strategy, input, n_candidates))
}

/// [`select`] with the strategy run by `strategy(n_candidates)` (the device path passes its own).
pub(crate) fn select_with(
    input: &SelectionInput,
    gamma: f64,
    strategy: impl FnOnce(usize) -> Result<Selection>,
) -> Result<Selection> {
    let preds = input.predictions_for("--pcb")?;
    let n = preds.pool_size();
    let budget = input.budget;
    let unlabeled = n - input.labeled.len();
    let n_candidates = ((n as f64 * gamma).floor() as usize).clamp(budget, unlabeled);
    let base = strategy(n_candidates)?;
    let candidates = base.indices;
    let predicted: Vec<usize> = {
        let c = preds.classes();
        let (mut buf, mut tmp, mut p) = (Vec::new(), vec![0.0; c], vec![0.0; c]);
        candidates
            .iter()
            .map(|&i| {
                preds.mean_probs(i, &mut buf, &mut tmp, &mut p);
                argmax(&p)
            })
            .collect()
    };
    let statistics = labelled_counts(input, preds.classes())?;
    let picks = balance(&predicted, statistics, budget, input.seed);
    Ok(Selection { indices: picks.into_iter().map(|k| candidates[k]).collect(), scores: base.scores })
}

fn labelled_counts(input: &SelectionInput, classes: usize) -> Result<Vec<usize>> {
    let mut counts = vec![0; classes];
    match &input.labels {
        Some(labels) => labels.iter().for_each(|&l| counts[l] += 1),
        None if input.labeled.is_empty() => {}
        None => return Err(Error::invalid("labels", "--pcb needs the labels of the labelled rows")),
    }
    Ok(counts)
}

/// Positions (into the candidate list) of `budget` balanced picks; `predicted[k]` is candidate k's class.
pub fn balance(predicted: &[usize], mut statistics: Vec<usize>, budget: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); statistics.len()];
    for (k, &c) in predicted.iter().enumerate() {
        by_class[c].push(k);
    }
    let mut chosen = vec![false; predicted.len()];
    let mut picks = Vec::with_capacity(budget);
    while picks.len() < budget.min(predicted.len()) {
        let rarest = (0..statistics.len()).min_by_key(|&c| (statistics[c], c)).unwrap_or(0);
        let pick = match by_class.get_mut(rarest) {
            Some(list) if !list.is_empty() => {
                statistics[rarest] += 1;
                list.swap_remove(rng.random_range(0..list.len()))
            }
            _ => {
                let remaining = chosen.iter().filter(|&&c| !c).count();
                let nth = rng.random_range(0..remaining);
                let k = (0..chosen.len()).filter(|&k| !chosen[k]).nth(nth).unwrap_or(0);
                let list = &mut by_class[predicted[k]];
                if let Some(pos) = list.iter().position(|&x| x == k) {
                    list.swap_remove(pos);
                }
                k
            }
        };
        chosen[pick] = true;
        picks.push(pick);
    }
    picks
}

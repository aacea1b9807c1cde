//! The round loop, resumable at any point. Per arm and seed, round r trains afresh on the images labelled so
//! far, evaluates on the test rows, then (before the last round) scores the pool and writes the next picks.
//! Every file is replaced atomically and a round's record is written last, so a killed run restarts at its
//! first round without a record and, every step being seeded, ends exactly as an uninterrupted run would.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::{Arm, Experiment};
use super::data::Dataset;
use super::learner::Learner;
use super::record::RoundRecord;
use crate::error::{Error, Result};
use crate::metrics;
use crate::select::input::read_integers_checked;
use crate::select::{self, Mat, Predictions, SelectionInput, Strategy};
use crate::weights::write_atomic;

/// The run directory's layout.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> RunDir {
        RunDir { root: root.to_path_buf() }
    }

    pub fn experiment(&self) -> PathBuf {
        self.root.join("experiment.toml")
    }

    pub fn feature_cache(&self) -> PathBuf {
        self.root.join("cache").join("features.safetensors")
    }

    /// The split rows labelled at the start of `round` (round 0: the random initial set).
    pub fn selected(&self, arm: &str, seed: u64, round: usize) -> PathBuf {
        self.root.join("selected").join(format!("{arm}_seed{seed}_round{round}.txt"))
    }

    pub fn record(&self, arm: &str, seed: u64, round: usize) -> PathBuf {
        self.root.join("rounds").join(format!("{arm}_seed{seed}_round{round}.json"))
    }

    /// Creates the folders; keeps `exp` beside the results, or checks that the one kept there is the same
    /// experiment (a resume), so results of two experiments never mix.
    pub fn prepare(&self, exp: &Experiment) -> Result<()> {
        for dir in ["selected", "rounds", "cache"] {
            let path = self.root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        let path = self.experiment();
        let text = exp.to_toml();
        if path.exists() {
            let kept = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            if kept != text {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "this run directory holds a different experiment; give another --out (nothing was changed)",
                ));
            }
            return Ok(());
        }
        write_atomic(&path, text.as_bytes())
    }

    /// The records of every arm and seed of `exp` found on disk, in arm, seed, round order.
    pub fn records(&self, exp: &Experiment) -> Result<Vec<RoundRecord>> {
        let mut out = Vec::new();
        for arm in &exp.arms {
            for &seed in &exp.seeds {
                out.extend(self.arm_records(&arm.name, seed)?);
            }
        }
        Ok(out)
    }

    /// The completed rounds of one arm and seed: 0, 1, … up to the first missing record.
    fn arm_records(&self, arm: &str, seed: u64) -> Result<Vec<RoundRecord>> {
        let mut out = Vec::new();
        loop {
            let path = self.record(arm, seed, out.len());
            if !path.exists() {
                return Ok(out);
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let record: RoundRecord = serde_json::from_str(&text).map_err(|e| {
                Error::invalid(
                    path.display().to_string(),
                    format!("unreadable round record ({e}); delete it to redo the round"),
                )
            })?;
            out.push(record);
        }
    }
}

/// A seed for one purpose of one round, derived from the experiment's seed.
pub fn derive_seed(seed: u64, round: usize, purpose: u64) -> u64 {
    crate::seed::mix(
        seed ^ (round as u64).wrapping_mul(crate::seed::GOLDEN) ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

const TRAIN: u64 = 1;
const SELECT: u64 = 2;

/// Per round, what the protocol asks: images at the start and picks per round.
pub struct Budgets {
    pub initial: usize,
    pub per_round: usize,
}

impl Budgets {
    /// The protocol's budgets (default: the number of classes); errors when the pool cannot supply them.
    pub fn of(exp: &Experiment, data: &Dataset, config: &Path) -> Result<Budgets> {
        let initial = exp.protocol.initial.unwrap_or(data.classes);
        let per_round = exp.protocol.budget.unwrap_or(data.classes);
        let needed = initial + per_round * (exp.protocol.rounds - 1);
        if initial == 0 || needed > data.pool_size() {
            let why = format!(
                "{initial} initial + {per_round} per round × {} rounds = {needed} images, but the pool has {}",
                exp.protocol.rounds - 1,
                data.pool_size()
            );
            return Err(Error::field(config, "protocol", why));
        }
        Ok(Budgets { initial, per_round })
    }
}

/// Runs the rounds of `arm` with `seed` that have no record yet; `on_round` sees each record written.
#[allow(clippy::too_many_arguments)] // the experiment's parts, each borrowed apart
pub fn run_arm(
    exp: &Experiment,
    arm: &Arm,
    seed: u64,
    data: &Dataset,
    budgets: &Budgets,
    learner: &mut dyn Learner,
    dir: &RunDir,
    on_round: &mut dyn FnMut(&RoundRecord) -> Result<()>,
) -> Result<()> {
    let done = dir.arm_records(&arm.name, seed)?.len();
    for round in done..exp.protocol.rounds {
        let labelled = labelled_at(arm, seed, round, data, budgets, dir)?;
        let labels = data.labels_of(&labelled);
        let started = Instant::now();
        learner.fit(
            &labelled,
            &labels,
            &exp.train_options(arm, derive_seed(seed, round, TRAIN)),
            derive_seed(seed, round, TRAIN),
        )?;
        let test = data.test_rows();
        let predicted = learner.predict(&test)?;
        let metrics = metrics::evaluate(&predicted.logits, data.classes, &data.labels_of(&test))?;
        let train_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        if round + 1 < exp.protocol.rounds {
            let picks = pick_next(exp, arm, seed, round, data, budgets, learner, &labelled)?;
            write_rows(&dir.selected(&arm.name, seed, round + 1), &picks)?;
        }
        let record = RoundRecord {
            arm: arm.name.clone(),
            seed,
            round,
            labelled: labelled.len(),
            metrics,
            train_s,
            select_s: started.elapsed().as_secs_f64(),
        };
        let text = serde_json::to_string_pretty(&record).expect("records serialise") + "\n";
        write_atomic(&dir.record(&arm.name, seed, round), text.as_bytes())?;
        on_round(&record)?;
    }
    Ok(())
}

/// The split rows labelled at the start of `round`: the initial random set and each earlier round's picks.
/// Round 0's set depends on the seed alone, so every arm starts from the same images.
fn labelled_at(
    arm: &Arm,
    seed: u64,
    round: usize,
    data: &Dataset,
    budgets: &Budgets,
    dir: &RunDir,
) -> Result<Vec<usize>> {
    let first = dir.selected(&arm.name, seed, 0);
    if !first.exists() {
        let input = SelectionInput::new(budgets.initial)
            .with_seed(derive_seed(seed, 0, SELECT))
            .with_features(pool_size_only(data.pool_size())?);
        let picks = select::random::select(&input, budgets.initial)?;
        write_rows(&first, &picks.iter().map(|&i| data.pool_row(i)).collect::<Vec<_>>())?;
    }
    let mut rows = Vec::new();
    for r in 0..=round {
        rows.extend(read_rows(&dir.selected(&arm.name, seed, r), data)?);
    }
    Ok(rows)
}

/// The next round's picks (split rows) by the arm's strategy, from the model trained this round. PCB, when
/// on, balances every strategy's picks but random's (the plain baseline).
#[allow(clippy::too_many_arguments)]
fn pick_next(
    exp: &Experiment,
    arm: &Arm,
    seed: u64,
    round: usize,
    data: &Dataset,
    budgets: &Budgets,
    learner: &mut dyn Learner,
    labelled: &[usize],
) -> Result<Vec<usize>> {
    let strategy = arm.strategy().map_err(|why| Error::invalid(format!("arm {}", arm.name), why))?;
    let pool = data.pool_rows();
    let n = pool.len();
    let predicted = match strategy {
        Strategy::Random => None,
        _ => Some(learner.predict(&pool)?),
    };
    let positions: Vec<usize> = labelled.iter().filter_map(|&r| data.pool_position(r)).collect();
    let mut input = SelectionInput::new(budgets.per_round)
        .with_seed(derive_seed(seed, round + 1, SELECT))
        .with_labeled(positions, Some(data.labels_of(labelled)));
    match &predicted {
        Some(p) => {
            input = input
                .with_predictions(Predictions::logits(Mat::from_f32(&p.logits[..], n, data.classes, "pool logits")?))
                .with_features(Mat::from_f32(&p.features[..], n, p.dim, "pool features")?);
            input.pcb = exp.protocol.pcb.then_some(exp.protocol.candidates);
        }
        None => input.features = Some(pool_size_only(n)?),
    }
    let picks = select::select(strategy, &input)?;
    Ok(picks.into_iter().map(|i| data.pool_row(i)).collect())
}

/// An empty `[n, 0]` matrix: tells random selection the pool's size.
fn pool_size_only(n: usize) -> Result<Mat<'static>> {
    Mat::from_f32(Vec::new(), n, 0, "pool")
}

fn write_rows(path: &Path, rows: &[usize]) -> Result<()> {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    write_atomic(path, text.as_bytes())
}

/// Rows, one per line; each must be a pool row.
fn read_rows(path: &Path, data: &Dataset) -> Result<Vec<usize>> {
    read_integers_checked(path, "row", |r| {
        data.pool_position(r).is_none().then(|| format!("row {r} is not in the pool"))
    })
}

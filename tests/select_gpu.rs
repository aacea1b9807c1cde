//! The selection engine's device path on `cuda-emu` picks exactly the CPU path's indices: entropy, least
//! confidence and margin through `uncertainty_scores` + the device k-th score, coreset through `ops::coreset`,
//! BADGE through `ops::badge` (on inputs where its arithmetic is exact). Run with
//! `cargo test --features cuda-emu --test select_gpu`.
#![cfg(feature = "cuda-emu")]

use cpeal::gpu::GpuDevice;
use cpeal::select::gpu::select_on_device;
use cpeal::select::{select_with_scores, Mat, PredictionKind, Predictions, SelectionInput, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_matrix(rows: usize, cols: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows * cols).map(|_| (rng.random::<f32>() - 0.5) * 2.0 * scale).collect()
}

fn dev() -> GpuDevice {
    GpuDevice::emu().expect("the cuda-emu feature is on")
}

/// Same indices, and scores equal to f32 rounding (NaN exactly where the CPU has NaN).
fn assert_same(strategy: Strategy, input: &SelectionInput, what: &str) {
    let cpu = select_with_scores(strategy, input).unwrap();
    let gpu = select_on_device(strategy, input, &dev()).unwrap();
    assert_eq!(gpu.indices, cpu.indices, "{} {what}: indices", strategy.name());
    let (cs, gs) = match (cpu.scores, gpu.scores) {
        (Some(cs), Some(gs)) => (cs, gs),
        (None, None) => return,
        (c, g) => panic!("{} {what}: scores {:?} vs {:?}", strategy.name(), c.is_some(), g.is_some()),
    };
    assert_eq!(cs.len(), gs.len());
    for (i, (c, g)) in cs.iter().zip(&gs).enumerate() {
        assert_eq!(c.is_nan(), g.is_nan(), "{} {what}: score {i} NaN mismatch", strategy.name());
        if !c.is_nan() {
            assert!((c - g).abs() <= 1e-5 * c.abs().max(1.0), "{} {what}: score {i}: {c} vs {g}", strategy.name());
        }
    }
}

#[test]
fn uncertainty_on_device_picks_the_cpu_indices() {
    // (n, c, budget, labelled): one class, odd sizes, several top-k blocks, budget past the kernel's k.
    let shapes = [(1usize, 1usize, 1usize, false), (37, 3, 5, true), (300, 10, 40, true), (5000, 7, 300, true)];
    for (n, c, budget, with_labeled) in shapes {
        let logits = random_matrix(n, c, 4.0, (n * c) as u64);
        let labeled: Vec<usize> = if with_labeled { (0..n).filter(|i| i % 9 == 4).collect() } else { Vec::new() };
        let preds = Predictions::logits(Mat::from_f32(&logits[..], n, c, "logits").unwrap());
        let input = SelectionInput::new(budget).with_predictions(preds).with_labeled(labeled, None);
        for strategy in [Strategy::Entropy, Strategy::LeastConfidence, Strategy::Margin] {
            assert_same(strategy, &input, &format!("n{n} c{c} budget{budget}"));
        }
    }
}

/// A budget past what one block sorts (the K-th score is all the device path needs, whatever K).
#[test]
fn uncertainty_with_a_budget_past_one_blocks_sort() {
    let (n, c, budget) = (1500usize, 4usize, 1100usize);
    let logits = random_matrix(n, c, 3.0, 5);
    let preds = Predictions::logits(Mat::from_f32(&logits[..], n, c, "logits").unwrap());
    let input = SelectionInput::new(budget).with_predictions(preds);
    assert_same(Strategy::Entropy, &input, "budget 1100");
}

#[test]
fn non_finite_logits_are_an_error_naming_the_row() {
    let mut logits = random_matrix(10, 3, 2.0, 1);
    logits[7 * 3 + 1] = f32::INFINITY;
    let preds = Predictions::logits(Mat::from_f32(&logits[..], 10, 3, "logits").unwrap());
    let input = SelectionInput::new(2).with_predictions(preds);
    let err = select_on_device(Strategy::Entropy, &input, &dev()).err().expect("an error").to_string();
    assert!(err.contains("row 7") && err.contains("logits"), "{err}");
}

#[test]
fn coreset_on_device_picks_the_cpu_indices() {
    // (n, d, budget, labelled): one row, a single feature, no labelled rows (seeded first pick), labelled
    // centres, a budget that exhausts the pool.
    let shapes = [
        (1usize, 1usize, 1usize, false),
        (37, 1, 10, true),
        (200, 48, 30, false),
        (120, 33, 25, true),
        (20, 5, 19, true),
    ];
    for (n, d, budget, with_labeled) in shapes {
        let x = random_matrix(n, d, 1.0, (n + d) as u64);
        let labeled: Vec<usize> = if with_labeled { vec![3 % n, n - 1] } else { Vec::new() };
        let budget = budget.min(n - labeled.iter().collect::<std::collections::BTreeSet<_>>().len());
        let input = SelectionInput::new(budget)
            .with_features(Mat::from_f32(&x[..], n, d, "features").unwrap())
            .with_labeled(labeled, None)
            .with_seed(n as u64);
        assert_same(Strategy::Coreset, &input, &format!("n{n} d{d} budget{budget}"));
    }
}

/// Many picks over clustered rows, so that most rows are skipped without reading their features (the new
/// centre provably no closer), with exact duplicates (distance 0), as bf16 (16-byte vector loads) and f32 with
/// an odd width (scalar loads), and more rows than the update's warps (they stride).
#[test]
fn coreset_on_device_skips_rows_as_the_cpu_does() {
    let (n, clusters) = (800usize, 25usize);
    for (d, bf16) in [(32usize, true), (13, false)] {
        let centres = random_matrix(clusters, d, 10.0, 7);
        let noise = random_matrix(n, d, 0.3, 8);
        let x: Vec<f32> = (0..n * d)
            .map(|j| {
                let (row, col) = (j / d, j % d);
                let row = if row % 50 == 49 { row - 1 } else { row }; // every 50th row repeats the one before
                centres[(row % clusters) * d + col] + noise[row * d + col]
            })
            .collect();
        let bytes: Vec<u8> = x.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let features = if bf16 {
            Mat::from_bf16_bytes(&bytes, n, d, "features").unwrap()
        } else {
            Mat::from_f32(&x[..], n, d, "features").unwrap()
        };
        let input = SelectionInput::new(60).with_features(features).with_labeled(vec![5, 17, 799], None).with_seed(3);
        assert_same(Strategy::Coreset, &input, &format!("clustered d{d} bf16 {bf16}"));
    }
}

/// PCB over device candidates (γ·N of them; 1500 past one block's device sort for entropy): the CPU path's
/// balanced picks, in its order, for each device strategy (coreset on a smaller pool: the emulator runs its two
/// launches a pick slowly).
#[test]
fn pcb_on_device_candidates_picks_the_cpu_indices() {
    let (c, d) = (5usize, 16usize);
    for (strategy, n, gamma) in [
        (Strategy::Entropy, 3000usize, 0.5),
        (Strategy::LeastConfidence, 3000, 0.1),
        (Strategy::Margin, 3000, 0.4),
        (Strategy::Coreset, 400, 0.1),
    ] {
        let logits = random_matrix(n, c, 3.0, 21);
        let x = random_matrix(n, d, 1.0, 22);
        let labeled: Vec<usize> = (0..n).filter(|i| i % 97 == 5).collect();
        let labels: Vec<usize> = labeled.iter().map(|i| i % c).collect();
        let mut input = SelectionInput::new(40)
            .with_predictions(Predictions::logits(Mat::from_f32(&logits[..], n, c, "logits").unwrap()))
            .with_features(Mat::from_f32(&x[..], n, d, "features").unwrap())
            .with_labeled(labeled, Some(labels))
            .with_seed(9);
        input.pcb = Some(gamma);
        assert_same(strategy, &input, &format!("pcb {gamma}"));
    }
}

#[test]
fn other_strategies_fall_back_to_the_cpu_path() {
    let (n, c) = (50usize, 4usize);
    let logits = random_matrix(n, c, 3.0, 2);
    let x = random_matrix(n, 8, 1.0, 3);
    let preds = Predictions::logits(Mat::from_f32(&logits[..], n, c, "logits").unwrap());
    let input = SelectionInput::new(6)
        .with_predictions(preds)
        .with_features(Mat::from_f32(&x[..], n, 8, "features").unwrap())
        .with_seed(4);
    assert_same(Strategy::Random, &input, "random");
    assert_same(Strategy::MeanEntropy, &input, "mean entropy");
}

/// BADGE seeded on the device draws the CPU path's rows on exact inputs: the same first centre, the same
/// uniforms from the seeded stream, the same D²; with only duplicates of the centres left (every D² 0), the
/// host's uniform draws take over as on the CPU. Labelled rows take no part; bf16 and f32 features.
#[test]
fn badge_on_device_draws_the_cpu_rows_on_exact_inputs() {
    // (n, d, c, budget, distinct rows, labelled, bf16)
    for (n, d, c, budget, distinct, labelled, bf16) in [
        (1usize, 1usize, 2usize, 1usize, 1usize, false, false),
        (37, 5, 3, 9, 37, true, false),
        (300, 33, 4, 40, 300, true, true),
        (60, 8, 3, 20, 6, false, true),
        (2100, 16, 5, 12, 2100, true, false),
        (6500, 4, 3, 4, 6500, false, false), // more rows in a block of the update than it has threads
    ] {
        let (x, p) = cpeal::gpu::selftest::exact_badge_input(n, d, c, distinct, (n + d) as u64);
        let bytes: Vec<u8> = x.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let features = if bf16 {
            Mat::from_bf16_bytes(&bytes, n, d, "features").unwrap()
        } else {
            Mat::from_f32(&x[..], n, d, "features").unwrap()
        };
        let probs = Mat::from_f32(&p[..], n, c, "probs").unwrap();
        let labeled: Vec<usize> = if labelled { (0..n).filter(|i| i % 11 == 3).collect() } else { Vec::new() };
        let input = SelectionInput::new(budget)
            .with_predictions(Predictions::stacked(probs, 1, PredictionKind::Probabilities).unwrap())
            .with_features(features)
            .with_labeled(labeled, None)
            .with_seed(n as u64 + 1);
        assert_same(Strategy::Badge, &input, &format!("n{n} d{d} c{c} budget{budget} distinct{distinct}"));
    }
}

/// Every lane count a row scores the same (bench-kernels times the old count beside the default one), and one
/// that is not a power of two up to 32 is an error naming the kernel.
#[test]
fn uncertainty_scores_agree_across_lane_counts() {
    use cpeal::gpu::ops::select::{uncertainty_lanes, uncertainty_scores_in_lanes, SCORE_COLS};
    use cpeal::gpu::DType;
    let dev = dev();
    let (rows, c) = (9, 1000);
    let x = dev.upload(&random_matrix(rows, c, 4.0, 11), DType::Bf16).unwrap();
    let scores = |lanes: usize| {
        let out = dev.alloc(DType::F32, rows * SCORE_COLS).unwrap();
        uncertainty_scores_in_lanes(&dev, rows, c, &x, &out, lanes).map(|()| dev.download(&out).unwrap())
    };
    let default = scores(uncertainty_lanes(c)).unwrap();
    for lanes in [1, 2, 32] {
        for (i, (a, b)) in scores(lanes).unwrap().iter().zip(&default).enumerate() {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{lanes} lanes, score {i}: {a} vs {b}");
        }
    }
    for bad in [0, 3, 64] {
        let err = scores(bad).unwrap_err().to_string();
        assert!(err.contains("uncertainty_scores_bf16") && err.contains("lanes"), "{err}");
    }
}

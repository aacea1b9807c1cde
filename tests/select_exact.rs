//! The device path of entropy / least confidence / margin (`select_on_device` on `cuda-emu`) returns exactly the
//! CPU path's indices in the CPU path's order on adversarial near-ties: rows that are permutations of one
//! another, rows one ulp apart, many equal rows straddling the K boundary, extreme logit scales, half-precision
//! storage, and budgets past the device top-k. The oracle is the CPU path (`select_with_scores`); the error
//! bounds the device path relies on are checked against a float64 reference written here.
//! Run with `cargo test --features cuda-emu --test select_exact`.
#![cfg(feature = "cuda-emu")]

use cpeal::gpu::ops::select as sel;
use cpeal::gpu::{DType, GpuDevice};
use cpeal::select::gpu::{device_score_error, select_on_device};
use cpeal::select::uncertainty::{cpu_score_error, scores, Uncertainty};
use cpeal::select::{select_with_scores, Mat, Predictions, SelectionInput, Strategy};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const STRATEGIES: [Strategy; 3] = [Strategy::Entropy, Strategy::LeastConfidence, Strategy::Margin];

fn dev() -> GpuDevice {
    GpuDevice::emu().expect("the cuda-emu feature is on")
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller; enough for test data.
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// Every strategy picks the CPU path's indices in the CPU path's order.
fn assert_exact(logits: &[f32], n: usize, c: usize, budget: usize, labeled: &[usize], what: &str) {
    let preds = || Predictions::logits(Mat::from_f32(logits, n, c, "logits").unwrap());
    for strategy in STRATEGIES {
        let input = SelectionInput::new(budget).with_predictions(preds()).with_labeled(labeled.to_vec(), None);
        let cpu = select_with_scores(strategy, &input).unwrap();
        let gpu = select_on_device(strategy, &input, &dev()).unwrap();
        assert_eq!(gpu.indices.len(), budget, "{} {what}", strategy.name());
        if let Some(p) = gpu.indices.iter().zip(&cpu.indices).position(|(g, c)| g != c) {
            panic!(
                "{} {what}: first difference at position {p}: {} vs {}",
                strategy.name(),
                gpu.indices[p],
                cpu.indices[p]
            );
        }
    }
}

#[test]
fn permuted_rows_rank_as_on_the_cpu() {
    // Rows that are permutations of a few base rows: equal exact scores, f32 sums that differ in the last bits.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (n, c, budget) in [(1200usize, 256usize, 300usize), (900, 257, 450), (2000, 10, 700), (600, 1000, 200)] {
        let bases: Vec<Vec<f32>> = (0..3).map(|_| (0..c).map(|_| 2.0 * normal(&mut rng)).collect()).collect();
        let mut logits = Vec::with_capacity(n * c);
        for i in 0..n {
            let mut row = bases[i % 3].clone();
            row.shuffle(&mut rng);
            logits.extend(row);
        }
        let labeled: Vec<usize> = (0..n).filter(|i| i % 13 == 5).collect();
        assert_exact(&logits, n, c, budget, &labeled, &format!("permutations n{n} c{c}"));
    }
}

#[test]
fn rows_one_ulp_apart_rank_as_on_the_cpu() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (n, c, budget) in [(1500usize, 64usize, 400usize), (800, 333, 100), (3000, 3, 1000)] {
        let base: Vec<f32> = (0..c).map(|_| normal(&mut rng)).collect();
        let mut logits = Vec::with_capacity(n * c);
        for _ in 0..n {
            let mut row = base.clone();
            for _ in 0..rng.random_range(0..3) {
                let j = rng.random_range(0..c);
                let bits = row[j].to_bits();
                row[j] = f32::from_bits(if rng.random::<bool>() { bits + 1 } else { bits - 1 });
            }
            logits.extend(row);
        }
        assert_exact(&logits, n, c, budget, &[], &format!("one ulp n{n} c{c}"));
    }
}

#[test]
fn equal_rows_straddling_the_boundary_take_the_lower_indices() {
    // 400 identical rows in the middle of the score range, the budget ending among them.
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (n, c) = (2500usize, 48usize);
    let same: Vec<f32> = (0..c).map(|_| normal(&mut rng)).collect();
    let mut logits = Vec::with_capacity(n * c);
    let mut tied = Vec::new();
    for i in 0..n {
        if i % 6 == 1 {
            tied.push(i);
            logits.extend(&same);
        } else {
            let scale = if i % 2 == 0 { 0.2 } else { 5.0 }; // far more and far less uncertain than `same`
            logits.extend((0..c).map(|_| scale * normal(&mut rng)));
        }
    }
    let labeled = vec![tied[3], tied[10], 7];
    let more = (0..n).filter(|&i| i % 6 != 1 && i % 2 == 0 && i != 7).count();
    for budget in [more + 1, more + 150, more + 399] {
        assert_exact(&logits, n, c, budget, &labeled, &format!("equal rows budget {budget}"));
    }
    // Past the device top-k's largest k, the K-th score comes from the host.
    assert_exact(&logits, n, c, 1500, &labeled, "equal rows budget 1500");
}

#[test]
fn extreme_scales_rank_as_on_the_cpu() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let (n, c) = (700usize, 40usize);
    type Gen = Box<dyn Fn(&mut ChaCha8Rng, usize) -> f32>; // (rng, column) -> logit
    let cases: Vec<(&str, Gen)> = vec![
        ("tiny spread around 1e4", Box::new(|r, _| 1e4 + 1e-3 * normal(r))),
        ("wide", Box::new(|r, _| 300.0 * normal(r))),
        ("far values", Box::new(|r, j| if j % 5 == 0 { -1e30 } else { normal(r) })),
        ("f32 extremes", Box::new(|r, j| [f32::MAX, f32::MIN, 0.5 * normal(r)][j % 3])),
        ("quantised", Box::new(|r, _| (r.random_range(-4i32..4) as f32) / 2.0)),
    ];
    for (what, f) in &cases {
        let logits: Vec<f32> = (0..n * c).map(|i| f(&mut rng, i % c)).collect();
        assert_exact(&logits, n, c, 250, &[1, 2, 3], what);
    }
    // One class (every score ties) and two classes.
    let logits: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
    assert_exact(&logits, n, 1, 50, &[0], "one class");
    let logits: Vec<f32> = (0..n * 2).map(|i| if i % 7 == 0 { 1.0 } else { normal(&mut rng) }).collect();
    assert_exact(&logits, n, 2, 300, &[], "two classes");
}

#[test]
fn half_precision_logits_rank_as_on_the_cpu() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    // Permutations of two base rows (16-byte rows: the vector loads), stored in 16 bits.
    let (n, c, budget) = (1500usize, 24usize, 500usize);
    let bases: Vec<Vec<f32>> = (0..2).map(|_| (0..c).map(|_| 3.0 * normal(&mut rng)).collect()).collect();
    let mut values = Vec::with_capacity(n * c);
    for i in 0..n {
        let mut row = bases[i % 2].clone();
        row.shuffle(&mut rng);
        values.extend(row);
    }
    for dt in [DType::Bf16, DType::F16] {
        let bytes = dt.encode(&values);
        let mat = || match dt {
            DType::Bf16 => Mat::from_bf16_bytes(&bytes, n, c, "logits").unwrap(),
            _ => Mat::from_f16_bytes(&bytes, n, c, "logits").unwrap(),
        };
        for strategy in STRATEGIES {
            let input = SelectionInput::new(budget).with_predictions(Predictions::logits(mat()));
            let cpu = select_with_scores(strategy, &input).unwrap();
            let gpu = select_on_device(strategy, &input, &dev()).unwrap();
            assert_eq!(gpu.indices, cpu.indices, "{} {dt:?}", strategy.name());
        }
    }
}

#[test]
fn non_finite_values_anywhere_are_an_error_naming_the_row() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    // c = 1000: 16-byte rows, several chunks a lane; c = 37: the scalar path. Bad value early, in a tail.
    for (c, col) in [(1000usize, 3usize), (1000, 999), (37, 36), (37, 0)] {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let n = 20;
            let mut logits: Vec<f32> = (0..n * c).map(|_| normal(&mut rng)).collect();
            logits[13 * c + col] = bad;
            let preds = Predictions::logits(Mat::from_f32(&logits[..], n, c, "logits").unwrap());
            let input = SelectionInput::new(3).with_predictions(preds);
            let err = select_on_device(Strategy::Margin, &input, &dev()).err().expect("an error").to_string();
            assert!(err.contains("row 13"), "c{c} col{col} {bad}: {err}");
        }
    }
}

/// Entropy, least confidence and margin of one row in float64 from its f32 values.
fn reference(row: &[f32]) -> [f64; 3] {
    let m = row.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
    let z: f64 = e.iter().sum();
    let h = -e.iter().filter(|&&x| x > 0.0).map(|&x| (x / z) * (x / z).ln()).sum::<f64>();
    let mut p: Vec<f64> = e.iter().map(|x| x / z).collect();
    p.sort_by(|a, b| b.total_cmp(a));
    [h, 1.0 - p[0], if p.len() < 2 { -1.0 } else { -(p[0] - p[1]) }]
}

#[test]
fn both_paths_stay_within_their_error_bounds() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let dev = dev();
    for (n, c, scale) in
        [(300usize, 2usize, 30.0f32), (300, 10, 3.0), (200, 101, 1.0), (100, 1000, 0.3), (20, 4096, 2.0)]
    {
        let mut logits: Vec<f32> = (0..n * c).map(|_| scale * normal(&mut rng)).collect();
        logits[..c].iter_mut().for_each(|v| *v = 1.0); // a uniform row: the largest entropy
        let out = dev.alloc(DType::F32, n * sel::SCORE_COLS).unwrap();
        sel::uncertainty_scores(&dev, n, c, &dev.upload(&logits, DType::F32).unwrap(), &out).unwrap();
        let device = dev.download(&out).unwrap();
        let preds = Predictions::logits(Mat::from_f32(&logits[..], n, c, "logits").unwrap());
        let kinds = [Uncertainty::Entropy, Uncertainty::LeastConfidence, Uncertainty::Margin];
        let cpu: Vec<Vec<f64>> = kinds.iter().map(|&k| scores(k, &preds).unwrap()).collect();
        let (bound_dev, bound_cpu) = (device_score_error(c), cpu_score_error(c));
        let (mut worst_dev, mut worst_cpu) = (0.0f64, 0.0f64);
        for (i, row) in logits.chunks_exact(c).enumerate() {
            for (k, want) in reference(row).into_iter().enumerate() {
                worst_dev = worst_dev.max((device[i * sel::SCORE_COLS + k] as f64 - want).abs());
                worst_cpu = worst_cpu.max((cpu[k][i] - want).abs());
            }
        }
        assert!(worst_dev <= bound_dev, "c{c}: device error {worst_dev:e} > bound {bound_dev:e}");
        assert!(worst_cpu <= bound_cpu, "c{c}: CPU error {worst_cpu:e} > bound {bound_cpu:e}");
    }
}

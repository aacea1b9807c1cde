//! Library tests of the selection engine against naive float64 references written here.

use cpeal::select::{select, select_with_scores, Mat, PredictionKind, Predictions, SelectionInput, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    // Sum of uniforms: cheap, smooth enough, never all zero.
    (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * 1.7
}

fn random_matrix(rows: usize, cols: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows * cols).map(|_| gaussian(&mut rng) * scale).collect()
}

/// Features in `k` clusters (so triangle pruning actually prunes), plus noise.
fn clustered(rows: usize, cols: usize, k: usize, seed: u64) -> Vec<f32> {
    let centres = random_matrix(k, cols, 6.0, seed ^ 99);
    let noise = random_matrix(rows, cols, 0.4, seed);
    (0..rows * cols).map(|x| centres[(x / cols % k) * cols + x % cols] + noise[x]).collect()
}

fn softmax64(row: &[f32]) -> Vec<f64> {
    let max = row.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn entropy64(p: &[f64]) -> f64 {
    -p.iter().filter(|&&v| v > 0.0).map(|v| v * v.ln()).sum::<f64>()
}

/// Reference top-K: sort by score descending, ties to the lower index.
fn ref_top_k(scores: &[f64], labeled: &[usize], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).filter(|i| !labeled.contains(i)).collect();
    idx.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

fn logits_input(logits: &[f32], n: usize, c: usize, budget: usize) -> SelectionInput<'_> {
    SelectionInput::new(budget).with_predictions(Predictions::logits(Mat::from_f32(logits, n, c, "logits").unwrap()))
}

fn assert_valid(chosen: &[usize], labeled: &[usize], budget: usize, n: usize) {
    assert_eq!(chosen.len(), budget);
    let mut seen = vec![false; n];
    for &i in chosen {
        assert!(i < n && !labeled.contains(&i), "index {i} is labelled or out of range");
        assert!(!std::mem::replace(&mut seen[i], true), "index {i} chosen twice");
    }
}

#[test]
fn uncertainty_top_k_equals_f64_reference() {
    for &(n, c) in &[(600, 7), (333, 16), (257, 37), (50, 2)] {
        let logits = random_matrix(n, c, 2.5, n as u64 * 31 + c as u64);
        let labeled = vec![0, 5, 17, n - 1];
        let probs: Vec<Vec<f64>> = logits.chunks(c).map(softmax64).collect();
        let refs: [(Strategy, Vec<f64>); 3] = [
            (Strategy::Entropy, probs.iter().map(|p| entropy64(p)).collect()),
            (Strategy::LeastConfidence, probs.iter().map(|p| 1.0 - p.iter().cloned().fold(0.0, f64::max)).collect()),
            (
                Strategy::Margin,
                probs
                    .iter()
                    .map(|p| {
                        let mut s = p.clone();
                        s.sort_by(|a, b| b.partial_cmp(a).unwrap());
                        -(s[0] - s[1])
                    })
                    .collect(),
            ),
        ];
        for (strategy, scores) in refs {
            for k in [1, 10, 40] {
                let input = logits_input(&logits, n, c, k).with_labeled(labeled.clone(), None);
                let got = select(strategy, &input).unwrap();
                assert_eq!(got, ref_top_k(&scores, &labeled, k), "{strategy:?} n={n} c={c} k={k}");
            }
        }
    }
}

#[test]
fn probabilities_input_matches_logits_input() {
    let (n, c) = (200, 9);
    let logits = random_matrix(n, c, 2.0, 4);
    let probs: Vec<f32> = logits.chunks(c).flat_map(|r| softmax64(r).into_iter().map(|v| v as f32)).collect();
    let mat = Mat::from_f32(&probs[..], n, c, "probs").unwrap();
    let preds = Predictions::stacked(mat, 1, PredictionKind::Probabilities).unwrap();
    let input = SelectionInput::new(15).with_predictions(preds);
    let from_logits = select(Strategy::Entropy, &logits_input(&logits, n, c, 15)).unwrap();
    assert_eq!(select(Strategy::Entropy, &input).unwrap(), from_logits);
}

/// Textbook k-center greedy in f64, O(N²).
fn naive_coreset(x: &[f32], n: usize, d: usize, labeled: &[usize], k: usize, seed: u64) -> Vec<usize> {
    let dist = |a: usize, b: usize| -> f64 {
        (0..d).map(|j| (x[a * d + j] as f64 - x[b * d + j] as f64).powi(2)).sum::<f64>().sqrt()
    };
    let mut min = vec![f64::INFINITY; n];
    let mut centre = vec![false; n];
    for &l in labeled {
        centre[l] = true;
        (0..n).for_each(|i| min[i] = min[i].min(dist(i, l)));
    }
    let mut order = Vec::new();
    let pool: Vec<usize> = (0..n).filter(|&i| !centre[i]).collect();
    let mut next = if labeled.is_empty() {
        pool[ChaCha8Rng::seed_from_u64(seed).random_range(0..pool.len())]
    } else {
        (0..n).filter(|&i| !centre[i]).fold(pool[0], |b, i| if min[i] > min[b] { i } else { b })
    };
    while order.len() < k {
        order.push(next);
        centre[next] = true;
        (0..n).for_each(|i| min[i] = min[i].min(dist(i, next)));
        let rest: Vec<usize> = (0..n).filter(|&i| !centre[i]).collect();
        if rest.is_empty() {
            break;
        }
        next = rest.iter().copied().fold(rest[0], |b, i| if min[i] > min[b] { i } else { b });
    }
    order
}

#[test]
fn coreset_order_equals_naive_greedy() {
    for &(n, d, clusters) in &[(1, 3, 1), (7, 3, 2), (33, 13, 5), (257, 13, 9), (1001, 20, 12)] {
        let x = clustered(n, d, clusters, n as u64);
        let labeled_sets: Vec<Vec<usize>> = if n > 10 { vec![vec![], vec![3, n / 2, 1]] } else { vec![vec![]] };
        for labeled in labeled_sets {
            let k = (n - labeled.len()).min(60);
            let input = SelectionInput::new(k)
                .with_features(Mat::from_f32(&x[..], n, d, "features").unwrap())
                .with_labeled(labeled.clone(), None)
                .with_seed(n as u64 + 3);
            let got = select(Strategy::Coreset, &input).unwrap();
            assert_eq!(got, naive_coreset(&x, n, d, &labeled, k, n as u64 + 3), "n={n} labeled={labeled:?}");
        }
    }
}

#[test]
fn coreset_reads_f16_features() {
    let (n, d) = (150, 11);
    let x: Vec<f32> = clustered(n, d, 6, 8).iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let bytes: Vec<u8> = x.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let input = SelectionInput::new(30).with_features(Mat::from_f16_bytes(&bytes, n, d, "f").unwrap()).with_seed(2);
    assert_eq!(select(Strategy::Coreset, &input).unwrap(), naive_coreset(&x, n, d, &[], 30, 2));
}

/// BADGE with the gradient embeddings materialised, in f64, with the documented random stream.
#[allow(clippy::too_many_arguments)]
fn naive_badge(
    logits: &[f32],
    h: &[f32],
    n: usize,
    c: usize,
    d: usize,
    labeled: &[usize],
    k: usize,
    seed: u64,
) -> Vec<usize> {
    let pool: Vec<usize> = (0..n).filter(|i| !labeled.contains(i)).collect();
    let g: Vec<Vec<f64>> = pool
        .iter()
        .map(|&i| {
            let p = softmax64(&logits[i * c..(i + 1) * c]);
            let top = (0..c).fold(0, |b, j| if p[j] > p[b] { j } else { b });
            let mut gi = Vec::with_capacity(c * d);
            for (cls, p) in p.iter().enumerate() {
                let q = p - if cls == top { 1.0 } else { 0.0 };
                gi.extend((0..d).map(|j| q * h[i * d + j] as f64));
            }
            gi
        })
        .collect();
    let dist2 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let norms: Vec<f64> = g.iter().map(|v| v.iter().map(|x| x * x).sum()).collect();
    let mut next = (0..pool.len()).fold(0, |b, j| if norms[j] > norms[b] { j } else { b });
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut d2 = vec![f64::INFINITY; pool.len()];
    let mut chosen = vec![false; pool.len()];
    let mut order = Vec::new();
    while order.len() < k {
        order.push(pool[next]);
        chosen[next] = true;
        for j in 0..pool.len() {
            d2[j] = d2[j].min(dist2(&g[j], &g[next]));
        }
        let total: f64 = (0..pool.len()).filter(|&j| !chosen[j]).map(|j| d2[j]).sum();
        let u = rng.random::<f64>() * total;
        let mut cum = 0.0;
        next = (0..pool.len())
            .filter(|&j| !chosen[j] && d2[j] > 0.0)
            .find(|&j| {
                cum += d2[j];
                cum > u
            })
            .unwrap_or(0);
    }
    order
}

#[test]
fn badge_equals_materialised_naive() {
    for &(n, c, d, k, seed) in &[(120, 3, 5, 20, 1u64), (300, 6, 9, 40, 7), (2500, 4, 10, 15, 11)] {
        let logits = random_matrix(n, c, 2.0, seed + 100);
        let h = clustered(n, d, 5, seed);
        let labeled = vec![2, 9, n - 3];
        let input = logits_input(&logits, n, c, k)
            .with_features(Mat::from_f32(&h[..], n, d, "features").unwrap())
            .with_labeled(labeled.clone(), None)
            .with_seed(seed);
        let got = select(Strategy::Badge, &input).unwrap();
        assert_eq!(got, naive_badge(&logits, &h, n, c, d, &labeled, k, seed), "n={n} c={c} d={d}");
    }
}

#[test]
fn bald_and_mean_entropy_equal_naive() {
    let (t, n, c) = (5, 240, 6);
    let logits = random_matrix(t * n, c, 1.5, 21);
    let probs = |t_: usize, i: usize| softmax64(&logits[(t_ * n + i) * c..(t_ * n + i + 1) * c]);
    let mut bald = Vec::new();
    let mut mean_entropy = Vec::new();
    for i in 0..n {
        let mean: Vec<f64> = (0..c).map(|j| (0..t).map(|s| probs(s, i)[j]).sum::<f64>() / t as f64).collect();
        let expected_h = (0..t).map(|s| entropy64(&probs(s, i))).sum::<f64>() / t as f64;
        mean_entropy.push(entropy64(&mean));
        bald.push(entropy64(&mean) - expected_h);
    }
    let labeled = vec![4, 8];
    for (strategy, scores) in [(Strategy::Bald, bald), (Strategy::MeanEntropy, mean_entropy)] {
        let mat = Mat::from_f32(&logits[..], t * n, c, "logits").unwrap();
        let preds = Predictions::stacked(mat, t, PredictionKind::Logits).unwrap();
        let input = SelectionInput::new(25).with_predictions(preds).with_labeled(labeled.clone(), None);
        assert_eq!(select(strategy, &input).unwrap(), ref_top_k(&scores, &labeled, 25), "{strategy:?}");
    }
}

#[test]
fn featdist_equals_naive_with_sentinel() {
    let (n, c, d) = (180, 5, 7);
    let logits = random_matrix(n, c, 2.0, 31);
    let h = random_matrix(n, d, 1.0, 32);
    let pred: Vec<usize> = logits.chunks(c).map(|r| (0..c).fold(0, |b, j| if r[j] > r[b] { j } else { b })).collect();
    // Labelled rows whose labels cover classes 0..3 only: classes 3 and 4 get the sentinel.
    let labeled = vec![1, 2, 3, 10, 11, 12];
    let labels = vec![0, 1, 2, 0, 1, 1];
    let mean = |cls: usize| -> Option<Vec<f64>> {
        let rows: Vec<usize> = labeled.iter().zip(&labels).filter(|(_, &l)| l == cls).map(|(&i, _)| i).collect();
        (!rows.is_empty()).then(|| {
            (0..d).map(|j| rows.iter().map(|&i| h[i * d + j] as f64).sum::<f64>() / rows.len() as f64).collect()
        })
    };
    let scores: Vec<f64> = (0..n)
        .map(|i| match mean(pred[i]) {
            None => 1e6,
            Some(m) => (0..d).map(|j| (h[i * d + j] as f64 - m[j]).powi(2)).sum::<f64>().sqrt(),
        })
        .collect();
    let sentinel: Vec<usize> = (0..n).filter(|&i| !labeled.contains(&i) && scores[i] == 1e6).collect();
    assert!(!sentinel.is_empty());
    let others = ref_top_k(
        &scores.iter().map(|&s| if s == 1e6 { f64::NEG_INFINITY } else { s }).collect::<Vec<_>>(),
        &labeled,
        n,
    );
    for split in [0.0, 0.5] {
        let k = 30;
        let take_high = sentinel.len().min((split * k as f64) as usize);
        let mut expected: Vec<usize> =
            others.iter().copied().filter(|&i| scores[i] != 1e6).take(k - take_high).collect();
        expected.extend(sentinel.iter().take(take_high));
        let mut input = logits_input(&logits, n, c, k)
            .with_features(Mat::from_f32(&h[..], n, d, "features").unwrap())
            .with_labeled(labeled.clone(), Some(labels.clone()));
        input.featdist_split = split;
        assert_eq!(select(Strategy::Featdist, &input).unwrap(), expected, "split {split}");
    }
}

fn entropy_candidates(logits: &[f32], c: usize, labeled: &[usize], m: usize) -> Vec<usize> {
    let scores: Vec<f64> = logits.chunks(c).map(|r| entropy64(&softmax64(r))).collect();
    ref_top_k(&scores, labeled, m)
}

#[test]
fn pcb_balances_classes_and_is_reproducible() {
    let (n, c) = (1000, 4);
    let logits = random_matrix(n, c, 1.2, 41);
    let pred: Vec<usize> = logits.chunks(c).map(|r| (0..c).fold(0, |b, j| if r[j] > r[b] { j } else { b })).collect();
    let labeled = vec![0, 1, 2, 3, 4, 5];
    let labels = vec![0, 0, 0, 1, 1, 2];
    let budget = 20;
    let run = |seed: u64| {
        let mut input = logits_input(&logits, n, c, budget).with_labeled(labeled.clone(), Some(labels.clone()));
        input.pcb = Some(0.1);
        input.seed = seed;
        select(Strategy::Entropy, &input).unwrap()
    };
    let chosen = run(5);
    assert_valid(&chosen, &labeled, budget, n);
    let candidates = entropy_candidates(&logits, c, &labeled, 100);
    let mut stats = [3usize, 2, 1, 0];
    let mut left: Vec<usize> = (0..c).map(|cls| candidates.iter().filter(|&&i| pred[i] == cls).count()).collect();
    assert!(left.iter().all(|&l| l >= 5), "test data must give every class enough candidates: {left:?}");
    for &i in &chosen {
        assert!(candidates.contains(&i), "{i} is not a candidate");
        let cls = pred[i];
        for other in 0..c {
            assert!(left[other] == 0 || stats[other] >= stats[cls], "class {cls} picked while {other} is rarer");
        }
        stats[cls] += 1;
        left[cls] -= 1;
    }
    assert_eq!(run(5), chosen);
    assert_ne!(run(6), chosen);
}

#[test]
fn pcb_falls_back_to_random_candidates_when_rarest_class_has_none() {
    let (n, c) = (400, 3);
    // Class 2 is never predicted: its logit is always far below.
    let mut logits = random_matrix(n, c, 1.0, 51);
    logits.chunks_mut(c).for_each(|r| r[2] = -50.0);
    let mut input = logits_input(&logits, n, c, 10);
    input.pcb = Some(0.1);
    let chosen = select(Strategy::Margin, &input).unwrap();
    assert_valid(&chosen, &[], 10, n);
    let scores: Vec<f64> = logits
        .chunks(c)
        .map(|r| {
            let mut p = softmax64(r);
            p.sort_by(|a, b| b.partial_cmp(a).unwrap());
            -(p[0] - p[1])
        })
        .collect();
    let candidates = ref_top_k(&scores, &[], 40);
    assert!(chosen.iter().all(|i| candidates.contains(i)));
}

#[test]
fn random_is_seeded_distinct_and_unlabelled() {
    let logits = random_matrix(100, 3, 1.0, 1);
    let labeled: Vec<usize> = (0..100).step_by(3).collect();
    let run = |seed| {
        select(Strategy::Random, &logits_input(&logits, 100, 3, 30).with_labeled(labeled.clone(), None).with_seed(seed))
            .unwrap()
    };
    assert_valid(&run(1), &labeled, 30, 100);
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn every_strategy_returns_distinct_unlabelled_indices() {
    let (t, n, c, d) = (3, 90, 4, 5);
    let logits = random_matrix(t * n, c, 1.5, 61);
    let h = clustered(n, d, 4, 62);
    let labeled = vec![0, 13, 44];
    for strategy in [
        Strategy::Random,
        Strategy::Entropy,
        Strategy::LeastConfidence,
        Strategy::Margin,
        Strategy::Coreset,
        Strategy::Badge,
        Strategy::Bald,
        Strategy::MeanEntropy,
        Strategy::Featdist,
    ] {
        for pcb in [None, Some(0.5)] {
            let mat = Mat::from_f32(&logits[..], t * n, c, "logits").unwrap();
            let mut input = SelectionInput::new(12)
                .with_predictions(Predictions::stacked(mat, t, PredictionKind::Logits).unwrap())
                .with_features(Mat::from_f32(&h[..], n, d, "features").unwrap())
                .with_labeled(labeled.clone(), Some(vec![0, 1, 2]));
            input.pcb = pcb;
            let got = select_with_scores(strategy, &input).unwrap();
            assert_valid(&got.indices, &labeled, 12, n);
        }
    }
}

fn error_of(strategy: Strategy, input: &SelectionInput) -> String {
    match select(strategy, input) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_field() {
    let (n, c, d) = (20, 3, 4);
    let logits = random_matrix(n, c, 1.0, 71);
    let h = random_matrix(n, d, 1.0, 72);
    let feats = || Mat::from_f32(&h[..], n, d, "feat.npy").unwrap();
    let msg = error_of(Strategy::Coreset, &logits_input(&logits, n, c, 2));
    assert!(msg.contains("features"), "{msg}");
    let msg = error_of(Strategy::Bald, &logits_input(&logits, n, c, 2));
    assert!(msg.contains("MC samples"), "{msg}");
    let msg = error_of(Strategy::Entropy, &logits_input(&logits, n, c, n + 1));
    assert!(msg.contains("budget"), "{msg}");
    let msg = error_of(Strategy::Entropy, &logits_input(&logits, n, c, 0).with_labeled((0..n).collect(), None));
    assert!(msg.contains("empty"), "{msg}");
    let msg = error_of(Strategy::Entropy, &logits_input(&logits, n, c, 1).with_labeled(vec![n], None));
    assert!(msg.contains("labeled") && msg.contains("out of range"), "{msg}");
    let msg = error_of(Strategy::Entropy, &logits_input(&logits, n, c, 1).with_labeled(vec![3, 3], None));
    assert!(msg.contains("repeated"), "{msg}");
    let short = Mat::from_f32(&h[..d * (n - 1)], n - 1, d, "feat.npy").unwrap();
    let msg = error_of(Strategy::Badge, &logits_input(&logits, n, c, 1).with_features(short));
    assert!(msg.contains("feat.npy"), "{msg}");
    let mut bad_logits = logits.clone();
    bad_logits[7 * c + 1] = f32::NAN;
    for strategy in [Strategy::Entropy, Strategy::Badge, Strategy::Margin] {
        let msg = error_of(strategy, &logits_input(&bad_logits, n, c, 1).with_features(feats()));
        assert!(msg.contains("logits") && msg.contains("row 7"), "{strategy:?}: {msg}");
    }
    let mut bad_h = h.clone();
    bad_h[11 * d] = f32::INFINITY;
    let input = SelectionInput::new(1).with_features(Mat::from_f32(&bad_h[..], n, d, "feat.npy").unwrap());
    let msg = error_of(Strategy::Coreset, &input);
    assert!(msg.contains("feat.npy") && msg.contains("row 11"), "{msg}");
    let msg = error_of(
        Strategy::Featdist,
        &logits_input(&logits, n, c, 1).with_features(feats()).with_labeled(vec![1], None),
    );
    assert!(msg.contains("labels"), "{msg}");
}

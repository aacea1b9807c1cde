//! Cases of `kernels/select.cu` (uncertainty scores, the coreset and BADGE distance updates) and of
//! `kernels/topk.cu` (the top-k of a score column).

use rand::{Rng, SeedableRng};

use super::{case, poisoned, random, Case, DTYPES};
use crate::error::Result;
use crate::gpu::ops::badge::Badge;
use crate::gpu::ops::select as sel;
use crate::gpu::ops::topk::{kth_score, topk, Column, DEVICE_SORT_MAX, TOPK_SLICE};
use crate::gpu::{reference as r, DType, GpuBuffer, GpuDevice};
use crate::select::gpu::{device_score_error, select_on_device};
use crate::select::{select_with_scores, Mat, PredictionKind, Predictions, SelectionInput, Strategy};

/// Outputs are f32 computed from inputs already rounded to the storage type, so every dtype gets f32-level
/// tolerance (a little above `tol(F32)`: f32 exp/log and differences of f32 sums).
const SCORE_TOL: f64 = 2e-5;

pub(super) fn select_cases(out: &mut Vec<Case>) {
    uncertainty_cases(out);
    uncertainty_bound_cases(out);
    topk_cases(out);
    kth_cases(out);
    mindist_cases(out);
    coreset_cases(out);
    badge_cases(out);
}

fn uncertainty_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        // One class; several rows a warp (c ≤ 128: 1 lane a row; 200: 2; 1000: 8; 1500: 16); 16-byte rows (the
        // vector path for every dtype: 8, 24, 200, 1000, 4096; for half types only: 40) and odd ones (101, 1500);
        // many chunks a lane (from 101 on: about 128 values a lane).
        for (rows, c) in [
            (1usize, 1usize),
            (37, 3),
            (1000, 10),
            (33, 8),
            (9, 24),
            (21, 40),
            (37, 101),
            (11, 200),
            (5, 1000),
            (6, 1500),
            (3, 4096),
        ] {
            out.push(case(
                "select",
                format!("uncertainty_scores_{}", dt.suffix()),
                format!("[{rows},{c}]"),
                SCORE_TOL,
                Box::new(move |dev, rng| {
                    let logits = random(rng, rows * c, -6.0, 6.0, dt);
                    let y = poisoned(dev, DType::F32, rows * sel::SCORE_COLS)?;
                    sel::uncertainty_scores(dev, rows, c, &dev.upload(&logits, dt)?, &y)?;
                    Ok((dev.download(&y)?, r::uncertainty_scores(rows, c, &logits)))
                }),
            ));
        }
    }
}

/// The device path of `cpeal select` is exact only if every score is within `device_score_error(c)` of the
/// exact one (`select::gpu`). These cases report max |out − ref| / bound as rel.err (pass: ≤ 1) on rows of
/// very different spreads and offsets, uniform rows, and (`view+1`) a 4-byte-misaligned view (scalar loads).
fn uncertainty_bound_cases(out: &mut Vec<Case>) {
    for dt in [DType::F32, DType::Bf16] {
        for (rows, c, offset) in [(512usize, 10usize, 0usize), (64, 257, 0), (64, 1000, 0), (64, 1000, 1), (8, 4096, 0)]
        {
            let shape = format!("[{rows},{c}] bound{}", if offset > 0 { " view+1" } else { "" });
            out.push(case(
                "select",
                format!("uncertainty_scores_{}", dt.suffix()),
                shape,
                1.0,
                Box::new(move |dev, rng| {
                    let mut logits = Vec::with_capacity(offset + rows * c);
                    logits.resize(offset, 0.0);
                    for row in 0..rows {
                        let spread = [0.0f32, 0.01, 1.0, 10.0, 100.0][row % 5];
                        let shift = [0.0f32, -3.0, 1000.0][row % 3];
                        logits.extend((0..c).map(|_| shift + spread * (rng.random::<f32>() - 0.5)));
                    }
                    let logits = dt.round(&logits);
                    let x = dev.upload(&logits, dt)?.slice(offset, rows * c)?;
                    let y = poisoned(dev, DType::F32, rows * sel::SCORE_COLS)?;
                    sel::uncertainty_scores(dev, rows, c, &x, &y)?;
                    let got = dev.download(&y)?;
                    let want = r::uncertainty_scores(rows, c, &logits[offset..]);
                    let worst = got.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
                    let ratio = if got.iter().all(|v| v.is_finite()) { worst / device_score_error(c) } else { 1e9 };
                    Ok((vec![(1.0 + ratio) as f32], vec![1.0]))
                }),
            ));
        }
    }
}

/// Scores of a top-k case.
#[derive(Clone, Copy, Debug)]
enum Scores {
    /// On a grid of 1/8 in [-4, 4): many exact ties.
    Grid,
    /// Uniform in [-4, 4): (almost surely) no ties.
    Continuous,
    /// All 1.5: the lowest indices win.
    Equal,
    /// NaN, −∞, −1, −0, +0 and 1, the k-th among the zeros: NaN ranks as −∞ and −0 as +0.
    Special,
}

impl Scores {
    fn draw(self, rng: &mut rand_chacha::ChaCha8Rng) -> f32 {
        match self {
            Scores::Grid => rng.random_range(-32i32..32) as f32 / 8.0,
            Scores::Continuous => rng.random::<f32>() * 8.0 - 4.0,
            Scores::Equal => 1.5,
            Scores::Special => [f32::NAN, f32::NEG_INFINITY, -1.0, -0.0, -0.0, 0.0, 0.0, 1.0][rng.random_range(0..8)],
        }
    }
}

/// Rows left out of a top-k case: none, every 7th, or all but every 7th (fewer than k take part).
#[derive(Clone, Copy, Debug)]
enum Skip {
    None,
    Some,
    Most,
}

impl Skip {
    fn label(self) -> &'static str {
        match self {
            Skip::None => "",
            Skip::Some => " skip",
            Skip::Most => " skip most",
        }
    }
}

/// A top-k case: rows, k, the column's stride (the score is its last column), the scores, the rows left out.
type TopkShape = (usize, usize, usize, Scores, Skip);

// Up to 2048 rows one block sorts (one row, k past the rows that take part, the largest k); beyond, the radix
// select: two slices, one of them a row, ties across slices (more rows equal to the k-th score than are taken),
// none, all rows equal, NaN and signed zeros, fewer rows taking part than k; then k past one block's sort (the
// candidates sorted by tiles and merges: one tile, two, three with a short last pair) on one slice, with ties,
// with NaN, with few rows.
const TOPK_SHAPES: [TopkShape; 20] = {
    use Scores::*;
    [
        (1usize, 1usize, 1usize, Grid, Skip::None),
        (37, 5, 3, Grid, Skip::Some),
        (37, 40, 1, Grid, Skip::Some),
        (1000, 37, 3, Grid, Skip::None),
        (2048, 1024, 1, Continuous, Skip::Some),
        (2049, 1000, 1, Grid, Skip::None),
        (5000, 100, 3, Grid, Skip::Some),
        (4500, 1024, 1, Grid, Skip::None),
        (13000, 700, 1, Grid, Skip::Some),
        (40000, 128, 3, Grid, Skip::None),
        (40000, 3, 1, Grid, Skip::Some),
        (20000, 1000, 1, Continuous, Skip::None),
        (9000, 300, 2, Equal, Skip::Some),
        (6000, 1000, 1, Special, Skip::None),
        (3000, 1000, 3, Grid, Skip::Most),
        (5000, 1, 1, Continuous, Skip::Most),
        (1500, 1400, 1, Grid, Skip::None),
        (30000, 5000, 3, Grid, Skip::Some),
        (20000, 3000, 1, Special, Skip::None),
        (3000, 3000, 1, Continuous, Skip::Most),
    ]
};

/// A top-k case's input on the device (scores [n, stride], the skip mask unless no row is left out), which rows
/// are left out, and the score column as ranked on the host (NaN as −∞ and −0 as +0, the documented order).
struct TopkInput {
    scores: GpuBuffer,
    skip: Option<GpuBuffer>,
    skip_rows: Vec<bool>,
    column: Vec<f32>,
}

fn topk_input(dev: &GpuDevice, rng: &mut rand_chacha::ChaCha8Rng, shape: TopkShape) -> Result<TopkInput> {
    let (n, _, stride, scores, skip) = shape;
    let values: Vec<f32> = (0..n * stride).map(|_| scores.draw(rng)).collect();
    let skip_rows: Vec<bool> = (0..n)
        .map(|i| match skip {
            Skip::None => false,
            Skip::Some => i % 7 == 3,
            Skip::Most => i % 7 != 3,
        })
        .collect();
    let ranked = |v: f32| {
        if v.is_nan() {
            f32::NEG_INFINITY
        } else if v == 0.0 {
            0.0
        } else {
            v
        }
    };
    let skip_f: Vec<f32> = skip_rows.iter().map(|&s| s as i32 as f32).collect();
    Ok(TopkInput {
        scores: dev.upload(&values, DType::F32)?,
        skip: (!matches!(skip, Skip::None)).then(|| dev.upload(&skip_f, DType::I32)).transpose()?,
        column: (0..n).map(|i| ranked(values[i * stride + stride - 1])).collect(),
        skip_rows,
    })
}

fn topk_cases(out: &mut Vec<Case>) {
    for shape in TOPK_SHAPES {
        let (n, k, stride, scores, skip) = shape;
        let kernel = if n <= TOPK_SLICE && k <= DEVICE_SORT_MAX { "topk_block_f32" } else { "topk_radix_f32" };
        out.push(case(
            "select",
            kernel.into(),
            format!("n{n} k{k} stride{stride} {scores:?}{}", skip.label()),
            0.0,
            Box::new(move |dev, rng| {
                let TopkInput { scores, skip, skip_rows, column } = topk_input(dev, rng, shape)?;
                let got = topk(dev, n, k, Column { stride, col: stride - 1 }, &scores, skip.as_ref())?;
                let want = r::topk(&column, &skip_rows, k);
                // Indices and their scores, both exact (no case takes a −∞).
                let mut got_v: Vec<f32> = got.iter().map(|&(i, _)| i as f32).collect();
                got_v.extend(got.iter().map(|&(_, v)| v));
                let mut want_v: Vec<f64> = want.iter().map(|&i| i as f64).collect();
                want_v.extend(want.iter().map(|&i| column[i] as f64));
                Ok((got_v, want_v))
            }),
        ));
    }
}

/// `kth_score` on the shapes of TOPK_SHAPES whose k-th score is finite, or where no more than k rows take part:
/// [1, 0] for None, [0, score] for Some, against the reference's k-th row.
fn kth_cases(out: &mut Vec<Case>) {
    for shape in TOPK_SHAPES.into_iter().filter(|&(_, _, _, scores, _)| !matches!(scores, Scores::Special)) {
        let (n, k, stride, scores, skip) = shape;
        out.push(case(
            "select",
            "topk_kth_f32".into(),
            format!("n{n} k{k} stride{stride} {scores:?}{}", skip.label()),
            0.0,
            Box::new(move |dev, rng| {
                let TopkInput { scores, skip, skip_rows, column } = topk_input(dev, rng, shape)?;
                let got = match kth_score(dev, n, k, Column { stride, col: stride - 1 }, &scores, skip.as_ref())? {
                    None => vec![1.0, 0.0],
                    Some(v) => vec![0.0, v],
                };
                let ranking = r::topk(&column, &skip_rows, n);
                let want = match ranking.get(k) {
                    None => vec![1.0, 0.0], // no more than k rows take part
                    Some(_) => vec![0.0, column[ranking[k - 1]] as f64],
                };
                Ok((got, want))
            }),
        ));
    }
}

/// Starting distances: finite values, a few −1 (centres already chosen).
fn start_dist(rng: &mut rand_chacha::ChaCha8Rng, n: usize, hi: f32) -> Vec<f32> {
    (0..n).map(|i| if i % 11 == 5 { -1.0 } else { rng.random::<f32>() * hi }).collect()
}

fn mindist_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        for (n, d) in [(1usize, 1usize), (37, 48), (1000, 1), (100, 768), (37, 33)] {
            out.push(case(
                "select",
                format!("mindist_update_{}", dt.suffix()),
                format!("[{n},{d}]"),
                SCORE_TOL,
                Box::new(move |dev, rng| {
                    let x = random(rng, n * d, -1.0, 1.0, dt);
                    // Around the typical ‖x_i − x_c‖² = 2d/3, so about half the rows change.
                    let m0 = start_dist(rng, n, 4.0 * d as f32 / 3.0);
                    let centre = rng.random_range(0..n);
                    let m = dev.upload(&m0, DType::F32)?;
                    sel::mindist_update(dev, n, d, &dev.upload(&x, dt)?, &m, centre)?;
                    Ok((dev.download(&m)?, r::mindist_update(n, d, &x, &m0, centre)))
                }),
            ));
        }
    }
}

/// `cpeal select`'s device coreset (`kernels/coreset.cu`) against the CPU path: the same picks in the same
/// order, and the same distances to f32 rounding. 16-byte rows with labelled centres; an odd width, seeded.
fn coreset_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        for (n, d, budget, labelled) in [(300usize, 24usize, 40usize, vec![3usize, 299]), (1000, 13, 60, vec![])] {
            let shape = format!("n{n} d{d} budget{budget} labelled{}", labelled.len());
            out.push(case(
                "select",
                format!("coreset_update_{}", dt.suffix()),
                shape,
                1e-5,
                Box::new(move |dev, rng| {
                    let bytes = dt.encode(&random(rng, n * d, -1.0, 1.0, dt));
                    let features = features_mat(dt, &bytes, n, d)?;
                    let input =
                        SelectionInput::new(budget).with_features(features).with_labeled(labelled.clone(), None);
                    let (gpu, cpu) = (
                        select_on_device(Strategy::Coreset, &input, dev)?,
                        select_with_scores(Strategy::Coreset, &input)?,
                    );
                    // Picks (as numbers: one wrong pick is a large error), then the finite distances.
                    let finite = |s: Option<Vec<f32>>| s.unwrap_or_default().into_iter().filter(|v| v.is_finite());
                    let mut got: Vec<f32> = gpu.indices.iter().map(|&i| i as f32).collect();
                    got.extend(finite(gpu.scores));
                    let mut want: Vec<f64> = cpu.indices.iter().map(|&i| i as f64).collect();
                    want.extend(finite(cpu.scores).map(f64::from));
                    Ok((got, want))
                }),
            ));
        }
    }
}

/// `badge_update_*` after one centre on random inputs: every row's D² against explicit gradient embeddings in
/// f64 (labelled rows and the centre −1).
fn badge_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        for (n, c, d) in [(1usize, 1usize, 1usize), (37, 3, 48), (1000, 10, 16), (37, 101, 48), (50, 10, 768)] {
            out.push(case(
                "select",
                format!("badge_update_{}", dt.suffix()),
                format!("N{n} C{c} D{d} first centre"),
                SCORE_TOL,
                Box::new(move |dev, rng| {
                    let h = random(rng, n * d, -1.0, 1.0, dt);
                    let q = residuals(&random(rng, n * c, -3.0, 3.0, DType::F32), c);
                    let labelled: Vec<bool> = (0..n).map(|i| i % 7 == 5).collect();
                    let centre = rng.random_range(0..n);
                    let hb = dev.upload(&h, dt)?;
                    let mut state = Badge::new(dev, d, &hb, &q, &labelled, &[])?;
                    state.seed(dev, centre)?;
                    let got = state.d2(dev)?.into_iter().map(|v| v as f32).collect();
                    let start: Vec<f32> = labelled.iter().map(|&l| if l { -1.0 } else { f32::INFINITY }).collect();
                    Ok((got, r::badge_d2_update(n, c, d, &q, &h, &start, centre)))
                }),
            ));
        }
    }
    for dt in DTYPES {
        // (n, d, c, budget, distinct rows): the uniform draws of the host take over in the second.
        for (n, d, c, budget, distinct) in
            [(300usize, 33usize, 4usize, 25usize, 300usize), (60, 8, 3, 20, 6), (1000, 40, 10, 10, 1000)]
        {
            out.push(case(
                "select",
                format!("badge_seed_{}", dt.suffix()),
                format!("N{n} D{d} C{c} budget{budget} distinct{distinct}"),
                0.0,
                Box::new(move |dev, rng| {
                    let (x, p) = exact_badge_input(n, d, c, distinct, rng.random());
                    let bytes = dt.encode(&x);
                    let features = features_mat(dt, &bytes, n, d)?;
                    let probs = Mat::from_f32(&p[..], n, c, "probs")?;
                    let input = SelectionInput::new(budget)
                        .with_predictions(Predictions::stacked(probs, 1, PredictionKind::Probabilities)?)
                        .with_features(features)
                        .with_labeled((0..n).filter(|i| i % 11 == 3).collect(), None)
                        .with_seed(rng.random());
                    let (gpu, cpu) =
                        (select_on_device(Strategy::Badge, &input, dev)?, select_with_scores(Strategy::Badge, &input)?);
                    Ok((
                        gpu.indices.iter().map(|&i| i as f32).collect(),
                        cpu.indices.iter().map(|&i| i as f64).collect(),
                    ))
                }),
            ));
        }
    }
}

/// Features [n, d] stored as `dt` (the bytes of `DType::encode`), as `cpeal select` reads them.
fn features_mat(dt: DType, bytes: &[u8], n: usize, d: usize) -> Result<Mat<'_>> {
    match dt {
        DType::Bf16 => Mat::from_bf16_bytes(bytes, n, d, "features"),
        DType::F16 => Mat::from_f16_bytes(bytes, n, d, "features"),
        _ => Mat::from_f32_bytes(bytes, n, d, "features"),
    }
}

/// BADGE inputs on which every inner product, D² and running sum is exact in f32 and f64 whatever the order, so
/// the device's draws are the CPU's: features [n, d], integers in [−3, 3] (exact in bf16 and f16 too), and
/// probabilities [n, c] in sixteenths. Rows repeat every `distinct` rows (exact duplicates: D² = 0).
pub fn exact_badge_input(n: usize, d: usize, c: usize, distinct: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let base_x: Vec<f32> = (0..distinct * d).map(|_| rng.random_range(-3i32..=3) as f32).collect();
    let base_p: Vec<f32> = (0..distinct)
        .flat_map(|_| {
            let mut row = vec![0f32; c];
            (0..16).for_each(|_| row[rng.random_range(0..c)] += 1.0);
            row
        })
        .collect();
    let x = (0..n * d).map(|j| base_x[(j / d % distinct) * d + j % d]).collect();
    let p = (0..n * c).map(|j| base_p[(j / c % distinct) * c + j % c]).collect();
    (x, p)
}

/// q = softmax(logits) − onehot(argmax), per row of `c`.
fn residuals(logits: &[f32], c: usize) -> Vec<f32> {
    let mut q = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(c) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|&v| (v - m).exp()).sum();
        let top = row.iter().position(|&v| v == m).unwrap_or(0);
        q.extend(row.iter().enumerate().map(|(j, &v)| (v - m).exp() / z - if j == top { 1.0 } else { 0.0 }));
    }
    q
}

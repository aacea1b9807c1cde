use super::*;
use crate::ops::test_util::{erf64, rand_vec, rel_err};

/// out[i, j] = Σ_p x[i, p] · w[j, p] in float64.
fn reference_xwt(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| x[i * k + p] as f64 * w[j * k + p] as f64).sum();
        }
    }
    out
}

fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf64(x / 2f64.sqrt()))
}

/// `f` run inside a rayon pool of `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

/// Sizes around the tile (6 × 16) and block (72 rows) edges, ViT's 197 tokens, and K over one pass (1024).
const SIZES: [(usize, usize, usize); 14] = [
    (1, 1, 1),
    (7, 17, 33),
    (6, 16, 4),
    (17, 7, 100),
    (33, 100, 17),
    (100, 33, 197),
    (197, 65, 64),
    (150, 48, 256),
    (145, 31, 257),
    (289, 40, 513),
    (13, 200, 770),
    (64, 64, 1),
    (13, 40, 1100),
    (50, 33, 2500),
];

#[test]
fn matmul_matches_float64_on_odd_sizes() {
    if !available() {
        return;
    }
    for (i, &(m, n, k)) in SIZES.iter().enumerate() {
        let x = rand_vec(m * k, 100 + i as u64, 1.0);
        let w = rand_vec(n * k, 200 + i as u64, 1.0);
        let b = PackedB::from_weight_t(&w, n, k);
        let mut out = vec![f32::NAN; m * n];
        matmul(&mut out, &x, m, &b, &Fused::NONE);
        let err = rel_err(&out, &reference_xwt(&x, &w, m, n, k));
        assert!(err <= 1e-5, "m={m} n={n} k={k}: rel err {err}");
    }
}

#[test]
fn matmul_splits_rows_over_threads() {
    if !available() {
        return;
    }
    let (m, n, k) = (301, 70, 300);
    let x = rand_vec(m * k, 7, 1.0);
    let w = rand_vec(n * k, 8, 1.0);
    let b = PackedB::from_weight_t(&w, n, k);
    let want = reference_xwt(&x, &w, m, n, k);
    for threads in [1, 2, 3] {
        let mut out = vec![f32::NAN; m * n];
        with_threads(threads, || matmul(&mut out, &x, m, &b, &Fused::NONE));
        let err = rel_err(&out, &want);
        assert!(err <= 1e-5, "{threads} threads: rel err {err}");
    }
}

/// A read through a row stride wider than K, C written with a row stride wider than N, and B packed from
/// row-major (not transposed) storage.
#[test]
fn strided_operands_and_unpacked_a() {
    if !available() {
        return;
    }
    for (i, &(m, n, k)) in SIZES.iter().enumerate() {
        let (lda, ldc) = (k + 5, n + 3);
        let a = rand_vec(m * lda, 300 + i as u64, 1.0);
        // B[p, j] at bsrc[p·(n + 2) + j]: row-major with padding.
        let ldb = n + 2;
        let bsrc = rand_vec(k * ldb, 400 + i as u64, 1.0);
        let mut b = PackedB::default();
        unsafe { b.pack(bsrc.as_ptr(), k, n, ldb, 1) };
        let mut want = vec![0f64; m * n];
        for r in 0..m {
            for j in 0..n {
                want[r * n + j] = (0..k).map(|p| a[r * lda + p] as f64 * bsrc[p * ldb + j] as f64).sum();
            }
        }
        let mut c = vec![-7f32; m * ldc];
        unsafe { gemm_rows(m, a.as_ptr(), lda, &b, c.as_mut_ptr(), ldc, &Epilogue::NONE) };
        let got: Vec<f32> = c.chunks(ldc).flat_map(|row| row[..n].to_vec()).collect();
        let err = rel_err(&got, &want);
        assert!(err <= 1e-5, "m={m} n={n} k={k}: rel err {err}");
        assert!(c.chunks(ldc).all(|row| row[n..].iter().all(|v| *v == -7.0)), "wrote past N");
    }
}

/// Random operands of an M x N x K product with a full epilogue, and the bare product in float64.
struct EpilogueCase {
    x: Vec<f32>,
    bias: Vec<f32>,
    scale: Vec<f32>,
    res: Vec<f32>,
    b: PackedB,
    dot: Vec<f64>,
}

impl EpilogueCase {
    fn new(m: usize, n: usize, k: usize, seed: u64) -> EpilogueCase {
        let x = rand_vec(m * k, seed, 1.0);
        let w = rand_vec(n * k, seed + 1, 3.0 / (k as f32).sqrt());
        let dot = reference_xwt(&x, &w, m, n, k);
        EpilogueCase {
            bias: rand_vec(n, seed + 2, 1.0),
            scale: rand_vec(n, seed + 3, 1.0),
            res: rand_vec(m * n, seed + 4, 1.0),
            b: PackedB::from_weight_t(&w, n, k),
            x,
            dot,
        }
    }
}

/// bias, activation, scale and residual applied to full and edge tiles, with K in one pass and in several.
#[test]
fn fused_epilogue_matches_float64() {
    if !available() {
        return;
    }
    let quick_gelu = |x: f64| x / (1.0 + (-1.702 * x).exp());
    for (i, &(m, n, k)) in [(157, 45, 600), (13, 40, 1100), (6, 16, 7), (200, 64, 64)].iter().enumerate() {
        let EpilogueCase { x, bias, scale, res, b, dot } = EpilogueCase::new(m, n, k, 500 + 10 * i as u64);
        for (act, f) in [(Activation::Gelu, &gelu64 as &dyn Fn(f64) -> f64), (Activation::QuickGelu, &quick_gelu)] {
            let fused = Fused { bias: Some(&bias), activation: act, scale: Some(&scale), residual: Some(&res) };
            let want: Vec<f64> = (0..m * n)
                .map(|idx| {
                    let j = idx % n;
                    res[idx] as f64 + scale[j] as f64 * f(dot[idx] + bias[j] as f64)
                })
                .collect();
            let mut out = vec![f32::NAN; m * n];
            matmul(&mut out, &x, m, &b, &fused);
            let err = rel_err(&out, &want);
            assert!(err <= 1e-5, "m={m} n={n} k={k} {act:?}: rel err {err}");
        }
        // bias alone
        let want: Vec<f64> = (0..m * n).map(|idx| dot[idx] + bias[idx % n] as f64).collect();
        let mut out = vec![f32::NAN; m * n];
        matmul(&mut out, &x, m, &b, &Fused { bias: Some(&bias), ..Fused::NONE });
        let err = rel_err(&out, &want);
        assert!(err <= 1e-5, "m={m} n={n} k={k} bias only: rel err {err}");
    }
}

#[test]
fn empty_inner_dimension_gives_zeros() {
    if !available() {
        return;
    }
    let b = PackedB::from_weight_t(&[], 5, 0);
    let mut out = vec![f32::NAN; 3 * 5];
    matmul(&mut out, &[], 3, &b, &Fused::NONE);
    assert!(out.iter().all(|v| *v == 0.0));
}

/// Strassen's level (forced, whatever the size) against float64, with the whole epilogue: odd M (the last row
/// by the ordinary kernel), halves that are not whole tiles, K halves of one and of 1536, and 1–3 threads.
#[test]
fn strassen_matches_float64() {
    for (i, &(m, n, k)) in [(2, 32, 2), (13, 32, 6), (75, 96, 130), (150, 64, 258), (37, 160, 3072)].iter().enumerate()
    {
        check_strassen(m, n, k, 700 + 10 * i as u64);
    }
}

/// B quadrant sums over `strassen::LARGE_PART` bytes take the long row blocks; 803 rows make more than one of
/// them on one thread.
#[test]
fn strassen_with_large_quadrant_sums_matches_float64() {
    let (m, n, k) = (803, 1056, 1000);
    assert!((n / 2) * (k / 2) * 4 > strassen::LARGE_PART && (m / 2) > strassen::LARGE_PART_ROWS);
    check_strassen(m, n, k, 760);
}

#[test]
fn strassen_blocks_are_whole_tiles_and_large_only_for_large_sums() {
    let small = strassen::LARGE_PART;
    assert_eq!(strassen::block_rows(394, 384, small), m_block(384));
    for rows in [1, 5, 6, 199, 200, 201, 394, 3152] {
        let block = strassen::block_rows(rows, 384, small + 1);
        assert!(block % MR == 0 && block >= MR, "{rows} rows: block {block}");
        assert!(block <= strassen::LARGE_PART_ROWS.next_multiple_of(MR), "{rows} rows: block {block}");
        // Equal blocks: the last one is not a sliver (unless the task itself is one tile).
        let last = rows - (rows.div_ceil(block) - 1) * block;
        assert!(rows <= MR || last * 2 >= block - MR, "{rows} rows: block {block}, last {last}");
    }
}

fn check_strassen(m: usize, n: usize, k: usize, seed: u64) {
    if !available() {
        return;
    }
    assert!(strassen::splits(m, n, k));
    let EpilogueCase { x, bias, scale, res, b, dot } = EpilogueCase::new(m, n, k, seed);
    let want: Vec<f64> = (0..m * n)
        .map(|idx| res[idx] as f64 + scale[idx % n] as f64 * gelu64(dot[idx] + bias[idx % n] as f64))
        .collect();
    let fused = Fused { bias: Some(&bias), activation: Activation::Gelu, scale: Some(&scale), residual: Some(&res) };
    for threads in [1, 2, 3] {
        let mut out = vec![f32::NAN; m * n];
        with_threads(threads, || unsafe { strassen::matmul_to(out.as_mut_ptr(), &x, m, &b, &fused.epilogue(n)) });
        let err = rel_err(&out, &want);
        assert!(err <= 2e-5, "m={m} n={n} k={k}, {threads} threads: rel err {err}");
    }
    // The bare product too (no epilogue: the blocks of C are only stored and added).
    let mut out = vec![f32::NAN; m * n];
    unsafe { strassen::matmul_to(out.as_mut_ptr(), &x, m, &b, &Fused::NONE.epilogue(n)) };
    let err = rel_err(&out, &dot);
    assert!(err <= 2e-5, "m={m} n={n} k={k} bare: rel err {err}");
}

#[test]
fn strassen_only_where_the_shape_splits() {
    assert!(strassen::splits(2, 32, 2));
    assert!(!strassen::splits(1, 32, 2), "one row has no halves");
    assert!(!strassen::splits(64, 48, 64), "N/2 = 24 is not whole 16-column panels");
    assert!(!strassen::splits(64, 64, 63), "odd K");
    assert!(!strassen::splits(64, 64, 2 * KC_MAX + 2), "K/2 over one pass");
    assert!(!strassen::chosen(64, 48, 64));
}

/// With Strassen's level a row's result depends on the rows it is batched with (their sums share products), so
/// batch-of-one equality holds to rounding, not bit for bit: within 1e-5 of the row's norm here.
#[test]
fn strassen_rows_match_the_same_row_alone() {
    if !available() {
        return;
    }
    let (m, n, k) = (390, 288, 300);
    assert!(strassen::chosen(m, n, k) || std::env::var("CPEAL_STRASSEN").is_ok());
    let x = rand_vec(m * k, 900, 1.0);
    let w = rand_vec(n * k, 901, 1.0 / (k as f32).sqrt());
    let b = PackedB::from_weight_t(&w, n, k);
    let mut batch = vec![f32::NAN; m * n];
    matmul(&mut batch, &x, m, &b, &Fused::NONE);
    for i in [0, 1, m / 2, m - 2, m - 1] {
        let mut alone = vec![f32::NAN; n];
        matmul(&mut alone, &x[i * k..][..k], 1, &b, &Fused::NONE);
        let want: Vec<f64> = alone.iter().map(|v| *v as f64).collect();
        let err = rel_err(&batch[i * n..][..n], &want);
        assert!(err <= 1e-5, "row {i}: rel diff {err}");
    }
}

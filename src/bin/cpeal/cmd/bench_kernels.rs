//! `cpeal bench-kernels --device cuda`: times our kernels on ViT-B shapes (median of repeated runs after a
//! warm-up, host clock around a synchronised batch of launches) and prints TFLOP/s or GB/s as a markdown table.

use std::time::Instant;

use cpeal::gpu::ops::gemm::{Activation, Gemm, GemmKernel, SM90_VARIANTS};
use cpeal::gpu::{ops, selftest, DType, GpuDevice};
use rand::SeedableRng;

use super::selftest::{open, GpuKind};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "cuda")]
    pub device: GpuKind,
    /// Images per batch for the ViT-B/16 shapes (197 tokens each)
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed repetitions (launches per repetition: 10)
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Pool rows for the selection kernels (entropy scores and top-k over [rows, 1000] logits)
    #[arg(long, default_value_t = 1_000_000)]
    pub pool_rows: usize,
    /// Leave out kernels whose names start with one of these prefixes (comma-separated), e.g. candidates that
    /// failed the selftest
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

impl Args {
    fn skips(&self, kernel: &str) -> bool {
        self.skip.iter().any(|p| kernel.starts_with(p.as_str()))
    }
}

/// Median seconds of one call of `f`, from `reps` batches of 10 calls after 3 warm-up calls.
fn time(dev: &GpuDevice, reps: usize, f: &dyn Fn() -> cpeal::Result<()>) -> cpeal::Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    dev.synchronize()?;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        for _ in 0..10 {
            f()?;
        }
        dev.synchronize()?;
        samples.push(t.elapsed().as_secs_f64() / 10.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

pub fn run(args: &Args) -> cpeal::Result<()> {
    let dev = open(args.device)?;
    if dev.is_emu() {
        return Err(cpeal::Error::invalid(
            "bench-kernels",
            "timings need a GPU (--device cuda); the emulator is for correctness",
        ));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let m = args.batch * 197;
    println!("device: {}\n", dev.name());
    let cublas =
        if dev.is_emu() { None } else { cpeal::gpu::cublas::Cublas::new(&dev).map_err(|e| eprintln!("{e}")).ok() };
    println!("| kernel | shape (M x N x K) | time (us) | TFLOP/s |\n|---|---|---|---|");
    let mut summary = Vec::new();
    // ViT-B/16: qkv projection (768 -> 2304), attention out (768 -> 768), fc1 (768 -> 3072, gelu), fc2 (3072 -> 768).
    for (name, n, k, act) in [
        ("qkv", 2304usize, 768usize, Activation::None),
        ("proj", 768, 768, Activation::None),
        ("fc1+gelu", 3072, 768, Activation::Gelu),
        ("fc2", 768, 3072, Activation::None),
    ] {
        let a = dev.upload(&selftest::random(&mut rng, m * k, -1.0, 1.0, DType::Bf16), DType::Bf16)?;
        let w = dev.upload(&selftest::random(&mut rng, n * k, -0.05, 0.05, DType::Bf16), DType::Bf16)?;
        let b = dev.upload(&selftest::random(&mut rng, n, -0.1, 0.1, DType::Bf16), DType::Bf16)?;
        let c = dev.alloc(DType::Bf16, m * n)?;
        // The automatic choice first (gpu-check.sh compares that row with torch), then each kernel by name.
        let mut kernels =
            vec![("gemm_bf16".to_string(), GemmKernel::Auto), ("gemm_sm80_bf16".into(), GemmKernel::Sm80)];
        if dev.arch().as_deref() == Some("sm_90") {
            for v in SM90_VARIANTS {
                kernels.push((format!("gemm_sm90_{}_bf16", v.label()), GemmKernel::Sm90(v)));
            }
        }
        let mut rates = Vec::new();
        for (label, kernel) in kernels.into_iter().filter(|(label, _)| !args.skips(label)) {
            let gemm = Gemm::new(m, n, k, &a, &w, &c).bias(&b).act(act).kernel(kernel);
            let secs = time(&dev, args.reps, &|| gemm.launch(&dev))?;
            let tflops = 2.0 * (m * n * k) as f64 / secs / 1e12;
            println!("| {label} {name} | {m} x {n} x {k} | {:.1} | {tflops:.1} |", secs * 1e6);
            rates.push((label, tflops));
        }
        let plain = Gemm::new(m, n, k, &a, &w, &c).bias(&b).act(act);
        for row in fold_rows(&dev, args, name, plain, &mut rng)? {
            println!("{row}");
        }
        let mut cublas_rate = None;
        if let Some(cb) = &cublas {
            let secs = time(&dev, args.reps, &|| cb.gemm_bf16(m, n, k, &a, &w, &c))?;
            let tflops = 2.0 * (m * n * k) as f64 / secs / 1e12;
            println!("| cublas_bf16 {name} (no epilogue) | {m} x {n} x {k} | {:.1} | {tflops:.1} |", secs * 1e6);
            cublas_rate = Some(tflops);
        }
        summary.push(gemm_summary(name, &rates, cublas_rate));
    }
    println!("\n| GEMM | default TFLOP/s | fastest kernel | its TFLOP/s | default / cuBLAS | fastest / cuBLAS |");
    println!("|---|---|---|---|---|---|");
    for row in summary {
        println!("{row}");
    }
    let (rows, cols) = (m, 768);
    let x = dev.upload(&selftest::random(&mut rng, rows * cols, -2.0, 2.0, DType::Bf16), DType::Bf16)?;
    let g = dev.upload(&vec![1.0; cols], DType::Bf16)?;
    let y = dev.alloc(DType::Bf16, rows * cols)?;
    let secs = time(&dev, args.reps, &|| ops::layernorm::layernorm(&dev, rows, cols, &x, &g, &g, &y, 1e-6))?;
    let gbs = (2 * rows * cols * 2) as f64 / secs / 1e9;
    println!("\n| kernel | shape | time (us) | GB/s |\n|---|---|---|---|");
    println!(
        "| {} | {rows} x {cols} | {:.1} | {gbs:.0} |",
        ops::layernorm::kernel_for(cols, &x, &g, &g, &y),
        secs * 1e6
    );
    // What replaces it when the LayerNorm is folded into the next GEMM: the row statistics alone (reads x).
    if !args.skips("layernorm_stats") {
        let stats = dev.alloc(DType::F32, 2 * rows)?;
        let secs = time(&dev, args.reps, &|| ops::layernorm::row_stats(&dev, rows, cols, &x, &stats, 1e-6))?;
        let gbs = (rows * cols * 2) as f64 / secs / 1e9;
        println!("| layernorm_stats_warp_bf16 | {rows} x {cols} | {:.1} | {gbs:.0} |", secs * 1e6);
    }
    bench_attention(&dev, args, &mut rng)?;
    // Each table printed once built, so that a failure in the second keeps the first.
    selection_table(&dev, args)?.iter().for_each(|row| println!("{row}"));
    coreset_table(&dev, args)?.iter().for_each(|row| println!("{row}"));
    Ok(())
}

/// The rows of one GEMM shape with LayerNorms folded in (CPEAL_LN_FOLD), on the automatic kernel: on qkv and fc1
/// (after a LayerNorm) with the row normalisation in the epilogue, on proj and fc2 (before one) writing the rows'
/// partial statistics, which the merge kernel then combines. Not in the summary, which compares equal work.
fn fold_rows(
    dev: &GpuDevice,
    args: &Args,
    name: &str,
    plain: Gemm,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> cpeal::Result<Vec<String>> {
    let prefix = match name {
        "qkv" | "fc1+gelu" => "lnfold_",
        "proj" | "fc2" => "lnstats_",
        _ => return Ok(Vec::new()),
    };
    if args.skips(prefix) {
        return Ok(Vec::new());
    }
    let (m, n, k) = (plain.m, plain.n, plain.k);
    let stats = dev.upload(&selftest::random(rng, 2 * m, 0.5, 1.5, DType::F32), DType::F32)?;
    let col_sum = dev.upload(&selftest::random(rng, n, -1.0, 1.0, DType::F32), DType::F32)?;
    let width = plain.partial_width(dev)?;
    let partials = dev.alloc(DType::F32, 2 * m * n.div_ceil(width))?;
    let gemm = if prefix == "lnfold_" { plain.row_norm(&stats, &col_sum) } else { plain.row_partials(&partials) };
    let secs = time(dev, args.reps, &|| gemm.launch(dev))?;
    let tflops = 2.0 * (m * n * k) as f64 / secs / 1e12;
    let mut rows = vec![format!("| {prefix}gemm_bf16 {name} | {m} x {n} x {k} | {:.1} | {tflops:.1} |", secs * 1e6)];
    if prefix == "lnstats_" {
        let secs = time(dev, args.reps, &|| ops::layernorm::merge_partials(dev, m, n, width, &partials, &stats, 1e-6))?;
        rows.push(format!("| layernorm_stats_merge_f32 {name} (width {width}) | {m} x {n} | {:.1} | - |", secs * 1e6));
    }
    Ok(rows)
}

/// One row of the GEMM summary: the automatic choice (first in `rates`), the fastest kernel, and both as a share
/// of cuBLAS without an epilogue (the goal: at least 75%).
fn gemm_summary(name: &str, rates: &[(String, f64)], cublas: Option<f64>) -> String {
    let default = rates.first().map_or(f64::NAN, |r| r.1);
    let (best, rate) = rates.iter().max_by(|a, b| a.1.total_cmp(&b.1)).map_or(("-", f64::NAN), |r| (r.0.as_str(), r.1));
    let share = |x: f64| cublas.map_or("-".to_string(), |c| format!("{:.0}%", 100.0 * x / c));
    format!("| {name} | {default:.1} | {best} | {rate:.1} | {} | {} |", share(default), share(rate))
}

/// ViT-B/16 self-attention (12 heads of 64, 197 tokens) over separate q, k, v buffers.
fn bench_attention(dev: &GpuDevice, args: &Args, rng: &mut rand_chacha::ChaCha8Rng) -> cpeal::Result<()> {
    let (heads, len, hd) = (12, 197, 64);
    let n = args.batch * len * heads * hd;
    let q = dev.upload(&selftest::random(rng, n, -1.0, 1.0, DType::Bf16), DType::Bf16)?;
    let k = dev.upload(&selftest::random(rng, n, -1.0, 1.0, DType::Bf16), DType::Bf16)?;
    let v = dev.upload(&selftest::random(rng, n, -1.0, 1.0, DType::Bf16), DType::Bf16)?;
    let o = dev.alloc(DType::Bf16, n)?;
    let flops = 4.0 * (args.batch * heads * len * len * hd) as f64;
    println!("\n| kernel | shape | time (us) | TFLOP/s |\n|---|---|---|---|");
    // The default kernel, then the candidates (the last key tile in 16-key steps at 3 and 4 blocks per SM, one
    // block per (batch, head), and on Hopper the wgmma kernel).
    use ops::attention::AttentionKernel;
    for kernel in AttentionKernel::ALL.into_iter().filter(|&k| k != AttentionKernel::Wgmma || dev.runs_hopper_kernels())
    {
        let att = ops::attention::Attention::new(args.batch, heads, len, hd, &q, &k, &v, &o).kernel(kernel);
        if args.skips(&att.kernel_name(dev)) {
            continue;
        }
        let secs = time(dev, args.reps, &|| att.launch(dev))?;
        println!(
            "| {} | {} x {heads} heads x {len} x {hd} | {:.1} | {:.1} |",
            att.kernel_name(dev),
            args.batch,
            secs * 1e6,
            flops / secs / 1e12
        );
    }
    Ok(())
}

/// The fused uncertainty-score pass (reads the logits once) in GB/s over [rows, 1000] and [10·rows, 10] logits,
/// the device top-1000 alone (radix select, gather, sort and a 1000-pair download), its 1000th score alone (what
/// `cpeal select` takes) and top-10000 (sorted by tiles and merges), and scores + top-1000 end to end.
fn selection_table(dev: &GpuDevice, args: &Args) -> cpeal::Result<Vec<String>> {
    use ops::select::{uncertainty_scores, uncertainty_scores_in_lanes, SCORE_COLS};
    use ops::topk::{kth_score, topk, Column};
    let mut table = vec!["\n| selection kernel | shape | time (us) | GB/s read |\n|---|---|---|---|".to_string()];
    for (rows, c) in [(args.pool_rows, 1000usize), (args.pool_rows * 10, 10)] {
        // Cheap deterministic non-constant logits (an RNG over 10^9 values would dominate the run).
        let logits: Vec<f32> =
            (0..rows * c).map(|i| ((i.wrapping_mul(2654435761) >> 7) % 4001) as f32 / 400.0 - 5.0).collect();
        for dt in [DType::F32, DType::Bf16] {
            let x = dev.upload(&logits, dt)?;
            let out = dev.alloc(DType::F32, rows * SCORE_COLS)?;
            let secs = time(dev, args.reps.min(5), &|| uncertainty_scores(dev, rows, c, &x, &out))?;
            let gbs = (rows * c * dt.size()) as f64 / secs / 1e9;
            table.push(format!("| uncertainty_scores_{} | {rows} x {c} | {:.1} | {gbs:.0} |", dt.suffix(), secs * 1e6));
            if c != 1000 {
                continue;
            }
            // The lanes a row of before 2026-12-07 (16 values a lane), beside today's choice.
            let before = c.div_ceil(16).next_power_of_two().min(32);
            let secs = time(dev, args.reps.min(5), &|| uncertainty_scores_in_lanes(dev, rows, c, &x, &out, before))?;
            let gbs = (rows * c * dt.size()) as f64 / secs / 1e9;
            let label = format!("uncertainty_scores_{} at {before} lanes a row (before)", dt.suffix());
            table.push(format!("| {label} | {rows} x {c} | {:.1} | {gbs:.0} |", secs * 1e6));
            if args.skips("topk_") {
                continue; // its selftest failed on this device
            }
            let column = Column { stride: SCORE_COLS, col: 0 };
            let secs = time(dev, args.reps.min(5), &|| topk(dev, rows, 1000, column, &out, None).map(|_| ()))?;
            table
                .push(format!("| top-1000 (radix select + gather + sort + download) | {rows} | {:.1} | |", secs * 1e6));
            // What `cpeal select` takes from the device for a budget of 1000: the 1000th score alone.
            let secs = time(dev, args.reps.min(5), &|| kth_score(dev, rows, 1000, column, &out, None).map(|_| ()))?;
            table.push(format!(
                "| k-th score of top-1000 (radix select + state download) | {rows} | {:.1} | |",
                secs * 1e6
            ));
            // A budget past one block's sort: the 10 000 candidates are sorted by tiles and merges.
            let k = 10_000.min(rows);
            let secs = time(dev, args.reps.min(5), &|| topk(dev, rows, k, column, &out, None).map(|_| ()))?;
            table.push(format!(
                "| top-{k} (radix select + gather + tile sort + merges + download) | {rows} | {:.1} | |",
                secs * 1e6
            ));
            let secs = time(dev, args.reps.min(5), &|| {
                uncertainty_scores(dev, rows, c, &x, &out)?;
                topk(dev, rows, 1000, column, &out, None).map(|_| ())
            })?;
            let gbs = (rows * c * dt.size()) as f64 / secs / 1e9;
            table.push(format!(
                "| scores + top-1000 ({}) | {rows} x {c} | {:.1} | {gbs:.0} |",
                dt.suffix(),
                secs * 1e6
            ));
        }
    }
    Ok(table)
}

/// Coreset: 100 picks (fewer in a smaller pool) over [pool_rows / 4, 768] bf16 features as `cpeal select` runs
/// them (two launches a pick, one download at the end), beside the path before 2026-12-07 (`mindist_update`, a
/// one-block `argmax_f32` over every row and a download, each pick); then BADGE's seeding over the same features
/// (the first pick included, which reads every row). The features are hashed, not clustered, so few rows are
/// skipped.
fn coreset_table(dev: &GpuDevice, args: &Args) -> cpeal::Result<Vec<String>> {
    use ops::coreset::Coreset;
    let n = (args.pool_rows / 4).max(1);
    let (d, picks) = (768usize, 100.min(n));
    let features: Vec<f32> =
        (0..n * d).map(|i| ((i.wrapping_mul(2654435761) >> 9) % 2001) as f32 / 1000.0 - 1.0).collect();
    let x = dev.upload(&features, DType::Bf16)?;
    drop(features);
    let labelled = vec![false; n];
    let mut table = vec!["\n| coreset kernel | shape | time a pick (us) | GB/s read |\n|---|---|---|---|".to_string()];
    let gbs = |secs: f64| (n * d * 2) as f64 / (secs / picks as f64) / 1e9;
    if !args.skips("coreset_") {
        let secs = time(dev, 1, &|| {
            let state = Coreset::new(dev, d, &x, &labelled, picks)?;
            (0..picks).try_for_each(|t| state.add(dev, t, (t == 0).then_some(0)))?;
            state.centres(dev, 0).map(|_| ())
        })?;
        table.push(format!(
            "| coreset_centre + coreset_update, {picks} picks | {n} x {d} | {:.1} | {:.0} |",
            secs * 1e6 / picks as f64,
            gbs(secs)
        ));
    }
    let (mindist, far) = (dev.upload(&vec![f32::INFINITY; n], DType::F32)?, dev.alloc(DType::I32, 1)?);
    let secs = time(dev, 1, &|| {
        let mut pick = 0;
        for _ in 0..picks {
            ops::select::mindist_update(dev, n, d, &x, &mindist, pick)?;
            ops::softmax::argmax(dev, 1, n, &mindist, &far)?;
            pick = dev.download_i32(&far)?[0].max(0) as usize;
        }
        Ok(())
    })?;
    table.push(format!(
        "| mindist_update + argmax + download (before), {picks} picks | {n} x {d} | {:.1} | {:.0} |",
        secs * 1e6 / picks as f64,
        gbs(secs)
    ));
    if args.skips("badge_") {
        return Ok(table);
    }
    // BADGE over the same features with 10 classes: two launches a pick, each drawn on the device.
    let c = 10usize;
    let q: Vec<f32> = (0..n * c)
        .map(|i| if i % c == i / c % c { -0.5 } else { 0.5 / (c - 1) as f32 } + (i % 7) as f32 * 1e-3)
        .collect();
    let us: Vec<f64> = (1..picks).map(|t| (t as f64 * 0.618_033_988_75).fract()).collect();
    let secs = time(dev, 1, &|| {
        let mut state = ops::badge::Badge::new(dev, d, &x, &q, &labelled, &us)?;
        state.seed(dev, 0)?;
        state.centres(dev).map(|_| ())
    })?;
    table.push(format!(
        "| badge_centre + badge_update (draw on the device), {picks} picks | {n} x {d}, {c} classes | {:.1} | {:.0} |",
        secs * 1e6 / picks as f64,
        gbs(secs)
    ));
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::gemm_summary;

    /// The folded-LayerNorm rows launch what they time (bench-kernels itself needs a GPU): on the emulator, at a
    /// small shape, each gives its row, and skipping the prefix leaves it out.
    #[cfg(feature = "cuda-emu")]
    #[test]
    fn the_fold_rows_run_on_the_emulator() {
        use super::{fold_rows, Args, GpuKind};
        use cpeal::gpu::ops::gemm::Gemm;
        use cpeal::gpu::{DType, GpuDevice};
        use rand::SeedableRng;
        let dev = GpuDevice::emu().unwrap();
        let mut args = Args { device: GpuKind::CudaEmu, batch: 1, reps: 1, pool_rows: 1, skip: Vec::new() };
        let (m, n, k) = (37, 72, 40);
        let a = dev.upload(&vec![0.5; m * k], DType::Bf16).unwrap();
        let w = dev.upload(&vec![0.25; n * k], DType::Bf16).unwrap();
        let c = dev.alloc(DType::Bf16, m * n).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let rows = |args: &Args, name: &str, rng: &mut rand_chacha::ChaCha8Rng| {
            fold_rows(&dev, args, name, Gemm::new(m, n, k, &a, &w, &c), rng).unwrap()
        };
        let fold = rows(&args, "qkv", &mut rng);
        assert!(fold.len() == 1 && fold[0].starts_with("| lnfold_gemm_bf16 qkv | 37 x 72 x 40 |"), "{fold:?}");
        let stats = rows(&args, "fc2", &mut rng);
        assert!(stats.len() == 2 && stats[1].starts_with("| layernorm_stats_merge_f32 fc2 (width 32) |"), "{stats:?}");
        args.skip = vec!["lnstats_".into()];
        assert!(rows(&args, "fc2", &mut rng).is_empty());
    }

    /// The selection and coreset rows run what they time (a failure there would lose the whole bench-kernels
    /// section of a GPU run): on the emulator, at a small pool, each gives its row; the kernels whose selftest
    /// failed (`--skip`) are not timed.
    #[cfg(feature = "cuda-emu")]
    #[test]
    fn the_selection_rows_run_on_the_emulator() {
        use super::{coreset_table, selection_table, Args, GpuKind};
        let dev = cpeal::gpu::GpuDevice::emu().unwrap();
        let args = Args { device: GpuKind::CudaEmu, batch: 1, reps: 1, pool_rows: 40, skip: Vec::new() };
        let rows = selection_table(&dev, &args).unwrap();
        for label in [
            "| uncertainty_scores_bf16 | 40 x 1000 |",
            "| uncertainty_scores_f32 at 32 lanes a row (before) | 40 x 1000 |",
            "| top-1000 (radix select + gather + sort + download) | 40 |",
            "| k-th score of top-1000 (radix select + state download) | 40 |",
            "| top-40 (radix select + gather + tile sort + merges + download) | 40 |",
            "| scores + top-1000 (bf16) | 40 x 1000 |",
            "| uncertainty_scores_f32 | 400 x 10 |",
        ] {
            assert!(rows.iter().any(|r| r.starts_with(label)), "no `{label}` in {rows:#?}");
        }
        let skip = vec!["topk_".into(), "coreset_".into(), "badge_".into()];
        let skipping = Args { device: GpuKind::CudaEmu, batch: 1, reps: 1, pool_rows: 40, skip };
        let kept = selection_table(&dev, &skipping).unwrap().into_iter().chain(coreset_table(&dev, &skipping).unwrap());
        let kept: Vec<String> = kept.collect();
        assert!(kept.iter().any(|r| r.starts_with("| uncertainty_scores_f32 | 40 x 1000 |")), "{kept:#?}");
        assert!(kept.iter().any(|r| r.starts_with("| mindist_update + argmax")), "{kept:#?}");
        for skipped in ["| top-", "| k-th", "| scores +", "| coreset_centre", "| badge_"] {
            assert!(!kept.iter().any(|r| r.starts_with(skipped)), "`{skipped}` timed though skipped: {kept:#?}");
        }
        let rows = coreset_table(&dev, &args).unwrap();
        for label in [
            "| coreset_centre + coreset_update, 10 picks | 10 x 768 |",
            "| mindist_update + argmax + download (before), 10 picks | 10 x 768 |",
            "| badge_centre + badge_update (draw on the device), 10 picks | 10 x 768, 10 classes |",
        ] {
            assert!(rows.iter().any(|r| r.starts_with(label)), "no `{label}` in {rows:#?}");
        }
    }

    #[test]
    fn the_summary_names_the_fastest_kernel_and_both_shares_of_cublas() {
        let rates = [("gemm_bf16".to_string(), 400.0), ("gemm_sm90_pp-n128s5_bf16".to_string(), 520.0)];
        // 400 / 650 = 61.5%, 520 / 650 = 80%.
        assert_eq!(
            gemm_summary("qkv", &rates, Some(650.0)),
            "| qkv | 400.0 | gemm_sm90_pp-n128s5_bf16 | 520.0 | 62% | 80% |"
        );
        assert!(gemm_summary("fc2", &rates, None).ends_with("| - | - |"));
    }
}

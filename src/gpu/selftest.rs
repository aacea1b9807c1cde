//! Every kernel against its CPU reference on random inputs of several shapes (odd ones included), outputs
//! poisoned with NaN before each launch. Used by `cpeal selftest --device cuda|cuda-emu` and by the emulator
//! tests (`tests/gpu_emu.rs`), so both check the very same cases.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod gemm;
mod select;
pub use select::exact_badge_input;
mod stream;
mod tokens;

use super::{ops, reference as r, DType, GpuBuffer, GpuDevice};
use crate::error::Result;

/// Output of a kernel as f32 and the reference in f64.
pub type Outcome = (Vec<f32>, Vec<f64>);
type RunFn = Box<dyn Fn(&GpuDevice, &mut ChaCha8Rng) -> Result<Outcome>>;

/// One check: a kernel at one shape.
pub struct Case {
    pub family: &'static str,
    pub kernel: String,
    pub shape: String,
    /// Largest relative error ‖out − ref‖/‖ref‖ that passes.
    pub tol: f64,
    run: RunFn,
}

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub family: &'static str,
    pub kernel: String,
    pub shape: String,
    pub rel_err: f64,
    pub max_abs: f64,
    pub tol: f64,
    pub pass: bool,
    /// Set when the launch itself failed.
    pub error: Option<String>,
}

/// Tolerance of a result stored in `dt` (its rounding alone is ~2^-9 for bf16, 2^-12 for f16).
pub fn tol(dt: DType) -> f64 {
    match dt {
        DType::Bf16 => 1e-2,
        DType::F16 => 2e-3,
        DType::F32 | DType::I32 => 1e-5,
    }
}

/// Uniform values in [lo, hi), rounded to `dt`.
pub fn random(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32, dt: DType) -> Vec<f32> {
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * (hi - lo) + lo).collect();
    dt.round(&v)
}

/// An output buffer filled with NaN.
pub fn poisoned(dev: &GpuDevice, dt: DType, n: usize) -> Result<GpuBuffer> {
    let b = dev.alloc(dt, n)?;
    dev.poison(&b)?;
    Ok(b)
}

fn case(family: &'static str, kernel: String, shape: String, tol: f64, run: RunFn) -> Case {
    Case { family, kernel, shape, tol, run }
}

type UnaryLaunch = fn(&GpuDevice, &GpuBuffer, &GpuBuffer) -> Result<()>;
type UnaryCase = (&'static str, UnaryLaunch, fn(f64) -> f64);

const DTYPES: [DType; 3] = [DType::Bf16, DType::F16, DType::F32];

fn elementwise_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        for n in [1usize, 1000, 4099] {
            let unary: [UnaryCase; 2] = [
                ("gelu", ops::elementwise::gelu, r::gelu1),
                ("quick_gelu", ops::elementwise::quick_gelu, r::quick_gelu1),
            ];
            for (name, launch, f) in unary {
                out.push(case(
                    "elementwise",
                    format!("{name}_{}", dt.suffix()),
                    format!("[{n}]"),
                    tol(dt),
                    Box::new(move |dev, rng| {
                        let x = random(rng, n, -4.0, 4.0, dt);
                        let (xb, yb) = (dev.upload(&x, dt)?, poisoned(dev, dt, n)?);
                        launch(dev, &xb, &yb)?;
                        Ok((dev.download(&yb)?, x.iter().map(|&v| f(v as f64)).collect()))
                    }),
                ));
            }
            out.push(case(
                "elementwise",
                format!("add_{}", dt.suffix()),
                format!("[{n}]"),
                tol(dt),
                Box::new(move |dev, rng| {
                    let (a, b) = (random(rng, n, -3.0, 3.0, dt), random(rng, n, -3.0, 3.0, dt));
                    let y = poisoned(dev, dt, n)?;
                    ops::elementwise::add(dev, &dev.upload(&a, dt)?, &dev.upload(&b, dt)?, &y)?;
                    Ok((dev.download(&y)?, a.iter().zip(&b).map(|(&p, &q)| p as f64 + q as f64).collect()))
                }),
            ));
            out.push(case(
                "elementwise",
                format!("scale_{}", dt.suffix()),
                format!("[{n}]"),
                tol(dt),
                Box::new(move |dev, rng| {
                    let x = random(rng, n, -3.0, 3.0, dt);
                    let y = poisoned(dev, dt, n)?;
                    ops::elementwise::scale(dev, &dev.upload(&x, dt)?, &y, -0.37)?;
                    Ok((dev.download(&y)?, x.iter().map(|&v| v as f64 * -0.37).collect()))
                }),
            ));
        }
    }
    for (from, to) in
        [(DType::F32, DType::Bf16), (DType::Bf16, DType::F32), (DType::F32, DType::F16), (DType::F16, DType::F32)]
    {
        out.push(case(
            "elementwise",
            format!("cast_{}_{}", from.suffix(), to.suffix()),
            "[777]".into(),
            1e-7,
            Box::new(move |dev, rng| {
                let x = random(rng, 777, -70.0, 70.0, from);
                let y = poisoned(dev, to, 777)?;
                ops::elementwise::cast(dev, &dev.upload(&x, from)?, &y)?;
                // Exact: the reference is the host's round-to-nearest-even of the same value.
                Ok((dev.download(&y)?, to.round(&x).iter().map(|&v| v as f64).collect()))
            }),
        ));
    }
}

fn layernorm_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        // 7 and 1030: the general kernel; 768, 384, 1024 and 776 (a ragged last chunk): warp per row (16-bit).
        for (rows, cols) in [(1usize, 7usize), (5, 768), (3, 1030), (9, 384), (6, 1024), (4, 776)] {
            let warp = dt != DType::F32 && cols % 8 == 0 && cols <= 1024;
            out.push(case(
                "layernorm",
                format!("{}_{}", if warp { "layernorm_warp" } else { "layernorm_fwd" }, dt.suffix()),
                format!("[{rows},{cols}]"),
                tol(dt),
                Box::new(move |dev, rng| {
                    let x = random(rng, rows * cols, -2.0, 6.0, dt); // a non-zero mean, as in real activations
                    let (g, b) = (random(rng, cols, 0.5, 1.5, dt), random(rng, cols, -0.5, 0.5, dt));
                    let y = poisoned(dev, dt, rows * cols)?;
                    let (xb, gb, bb) = (dev.upload(&x, dt)?, dev.upload(&g, dt)?, dev.upload(&b, dt)?);
                    ops::layernorm::layernorm(dev, rows, cols, &xb, &gb, &bb, &y, 1e-6)?;
                    Ok((dev.download(&y)?, r::layernorm(rows, cols, &x, &g, &b, 1e-6)))
                }),
            ));
            if dt != DType::F32 {
                out.push(row_stats_case(dt, rows, cols, warp));
            }
        }
    }
}

/// The statistics of a LayerNorm folded into a GEMM: f32 (mean, rstd) per row.
fn row_stats_case(dt: DType, rows: usize, cols: usize, warp: bool) -> Case {
    case(
        "layernorm",
        format!("{}_{}", if warp { "layernorm_stats_warp" } else { "layernorm_stats_fwd" }, dt.suffix()),
        format!("[{rows},{cols}]"),
        1e-5,
        Box::new(move |dev, rng| {
            let x = random(rng, rows * cols, -2.0, 6.0, dt);
            let stats = poisoned(dev, DType::F32, 2 * rows)?;
            ops::layernorm::row_stats(dev, rows, cols, &dev.upload(&x, dt)?, &stats, 1e-6)?;
            Ok((dev.download(&stats)?, r::row_stats(rows, cols, &x, 1e-6)))
        }),
    )
}

fn softmax_cases(out: &mut Vec<Case>) {
    for dt in DTYPES {
        for (rows, cols, q_len, causal) in
            [(4usize, 5usize, 4usize, false), (6, 197, 3, false), (2 * 77, 77, 77, true), (10, 13, 5, true)]
        {
            let shape = format!("[{rows},{cols}] q_len={q_len}{}", if causal { " causal" } else { "" });
            out.push(case(
                "softmax",
                format!("softmax_{}", dt.suffix()),
                shape,
                tol(dt),
                Box::new(move |dev, rng| {
                    let x = random(rng, rows * cols, -5.0, 5.0, dt);
                    let y = poisoned(dev, dt, rows * cols)?;
                    ops::softmax::softmax(dev, rows, cols, q_len, &dev.upload(&x, dt)?, &y, 0.7, causal)?;
                    Ok((dev.download(&y)?, r::softmax(rows, cols, q_len, &x, 0.7, causal)))
                }),
            ));
        }
    }
    for (rows, cols) in [(3usize, 1usize), (7, 1000)] {
        out.push(case(
            "softmax",
            "argmax_f32".into(),
            format!("[{rows},{cols}]"),
            0.0,
            Box::new(move |dev, rng| {
                let x = random(rng, rows * cols, -5.0, 5.0, DType::F32);
                let idx = poisoned(dev, DType::I32, rows)?;
                ops::softmax::argmax(dev, rows, cols, &dev.upload(&x, DType::F32)?, &idx)?;
                Ok((dev.download(&idx)?, r::argmax(rows, cols, &x)))
            }),
        ));
    }
}

fn attention_cases(out: &mut Vec<Case>, hopper: bool) {
    // (dtype, batch, heads, len, head dim, causal): single token, ViT-like, CLIP text (77, causal), several
    // query and key tiles, every head dim.
    let shapes = [
        (DType::Bf16, 1usize, 1usize, 1usize, 64usize, false),
        (DType::Bf16, 2, 3, 50, 64, false),
        (DType::Bf16, 1, 2, 77, 64, true),
        (DType::Bf16, 1, 2, 130, 80, false),
        (DType::F16, 1, 1, 37, 96, true),
        (DType::Bf16, 1, 1, 65, 128, false),
        (DType::F16, 2, 2, 197, 64, false), // ViT-B/16's 197 tokens: 4 key tiles, a last query block of 5
        (DType::Bf16, 1, 2, 120, 64, false), // tail16: a whole key tile, then 56 keys in four 16-key steps
    ];
    // The candidate kernels (head dim 64) on the same shapes.
    use ops::attention::AttentionKernel;
    let candidates = AttentionKernel::ALL
        .into_iter()
        .filter(|&k| k != AttentionKernel::Tiled && (hopper || k != AttentionKernel::Wgmma))
        .flat_map(|k| shapes.into_iter().filter(|s| s.4 == 64).map(move |s| (s, k)));
    for ((dt, b, h, t, d, causal), kernel) in shapes.into_iter().map(|s| (s, AttentionKernel::Tiled)).chain(candidates)
    {
        let shape = format!("B{b} H{h} T{t} D{d}{}", if causal { " causal" } else { "" });
        let name = format!("attention_fwd_{}d{d}_{}", kernel.prefix(), dt.suffix());
        out.push(case(
            "attention",
            name.clone(),
            shape,
            tol(dt),
            Box::new(move |dev, rng| {
                let n = b * t * h * d;
                let (q, k, v) =
                    (random(rng, n, -2.0, 2.0, dt), random(rng, n, -2.0, 2.0, dt), random(rng, n, -1.0, 1.0, dt));
                let (qb, kb, vb) = (dev.upload(&q, dt)?, dev.upload(&k, dt)?, dev.upload(&v, dt)?);
                let o = poisoned(dev, dt, n)?;
                let att = ops::attention::Attention::new(b, h, t, d, &qb, &kb, &vb, &o).causal(causal).kernel(kernel);
                tensor_core_path(dev, &att, &name)?;
                att.launch(dev)?;
                Ok((dev.download(&o)?, r::attention(b, h, t, t, d, &q, &k, &v, att.scale as f64, causal)))
            }),
        ));
    }
}

/// These cases test the tensor-core kernel `expected`: fail if the launcher would run another (the generic one).
fn tensor_core_path(dev: &GpuDevice, att: &ops::attention::Attention, expected: &str) -> Result<()> {
    let picked = att.kernel_name(dev);
    if !att.uses_tensor_cores() || picked != expected {
        return Err(crate::error::Error::kernel(expected, format!("launch would run {picked}")));
    }
    Ok(())
}

/// Attention reading q, k, v straight out of one fused [b, t, 3·h·d] projection (row stride 3·h·d), by the
/// default kernel and the Hopper one (ViT's layout).
fn fused_qkv_cases(out: &mut Vec<Case>, hopper: bool) {
    use ops::attention::AttentionKernel;
    let (dt, b, h, t, d) = (DType::Bf16, 2usize, 2usize, 70usize, 64usize);
    let kernels = [AttentionKernel::Tiled, AttentionKernel::Wgmma];
    for kernel in kernels.into_iter().filter(|&k| hopper || k != AttentionKernel::Wgmma) {
        let name = format!("attention_fwd_{}d{d}_{}", kernel.prefix(), dt.suffix());
        out.push(case(
            "attention",
            name.clone(),
            format!("B{b} H{h} T{t} D{d} fused qkv"),
            tol(dt),
            Box::new(move |dev, rng| {
                let w = h * d;
                let qkv = random(rng, b * t * 3 * w, -2.0, 2.0, dt);
                let part = |p: usize| -> Vec<f32> {
                    (0..b * t).flat_map(|r| qkv[r * 3 * w + p * w..][..w].to_vec()).collect()
                };
                let qkv_b = dev.upload(&qkv, dt)?;
                let n = qkv.len();
                let (q, k, v) = (qkv_b.slice(0, n)?, qkv_b.slice(w, n - w)?, qkv_b.slice(2 * w, n - 2 * w)?);
                let o = poisoned(dev, dt, b * t * w)?;
                let mut att = ops::attention::Attention::new(b, h, t, d, &q, &k, &v, &o).kernel(kernel);
                (att.ld_q, att.ld_k, att.ld_v) = (3 * w, 3 * w, 3 * w);
                tensor_core_path(dev, &att, &name)?;
                att.launch(dev)?;
                let reference = r::attention(b, h, t, t, d, &part(0), &part(1), &part(2), att.scale as f64, false);
                Ok((dev.download(&o)?, reference))
            }),
        ));
    }
}

fn patch_cases(out: &mut Vec<Case>) {
    // (dtype, b, c, h, w, p, row stride): exact rows, and rows padded to a multiple of 8 (DINOv2's 3·14·14 = 588),
    // both written 8 columns a thread; rows of an odd stride take the kernel's one-element path.
    for (dt, b, c, h, w, p, ldc) in [
        (DType::Bf16, 2usize, 3usize, 32usize, 48usize, 16usize, 768usize),
        (DType::F32, 1, 3, 30, 29, 14, 592),
        (DType::F16, 1, 2, 9, 9, 3, 24),
        (DType::Bf16, 2, 3, 11, 10, 3, 27),
        (DType::F32, 1, 2, 7, 9, 2, 9),
    ] {
        out.push(case(
            "patch_embed",
            format!("patch_im2col_{}", dt.suffix()),
            format!("[{b},{c},{h},{w}] p{p} ld{ldc}"),
            tol(dt),
            Box::new(move |dev, rng| {
                let img = random(rng, b * c * h * w, -2.0, 2.0, DType::F32);
                let n = b * (h / p) * (w / p) * ldc;
                let cols = poisoned(dev, dt, n)?;
                ops::patch_embed::patch_im2col(dev, b, c, h, w, p, ldc, &dev.upload(&img, DType::F32)?, &cols)?;
                Ok((dev.download(&cols)?, r::patch_im2col(b, c, h, w, p, ldc, &img)))
            }),
        ));
    }
}

fn interp_cases(out: &mut Vec<Case>) {
    use ops::interp::Scale;
    // (dtype, d, in, out, scale factor, antialias): ViT-B/16 224 grid 14x14 to 16x20 and down to 9x11, both modes.
    let shapes = [
        (DType::F32, 5usize, (14usize, 14usize), (16usize, 20usize), None, false),
        (DType::F32, 3, (14, 14), (9, 11), None, true),
        (DType::Bf16, 64, (14, 14), (37, 23), None, true),
        (DType::F16, 8, (16, 16), (7, 5), Some((0.45, 0.33)), true),
        (DType::Bf16, 4, (5, 6), (11, 3), None, false),
    ];
    for (dt, d, (hi, wi), (ho, wo), factor, aa) in shapes {
        let shape = format!("{hi}x{wi}->{ho}x{wo} d{d}{}", if aa { " aa" } else { "" });
        out.push(case(
            "interp",
            format!("interp_bicubic_{}", dt.suffix()),
            shape,
            tol(dt),
            Box::new(move |dev, rng| {
                let x = random(rng, hi * wi * d, -1.0, 1.0, dt);
                let y = poisoned(dev, dt, ho * wo * d)?;
                let scale = factor.map_or(Scale::FromSizes, |(fh, fw)| Scale::Factor(fh, fw));
                ops::interp::interp_bicubic(dev, d, (hi, wi), (ho, wo), &dev.upload(&x, dt)?, &y, scale, aa)?;
                let (sh, sw) =
                    factor.map_or((hi as f64 / ho as f64, wi as f64 / wo as f64), |(fh, fw)| (1.0 / fh, 1.0 / fw));
                // The kernel receives f32 scales: use the same rounded values.
                let (sh, sw) = (sh as f32 as f64, sw as f32 as f64);
                Ok((dev.download(&y)?, r::interp_bicubic(d, hi, wi, ho, wo, &x, sh, sw, aa)))
            }),
        ));
    }
}

fn pool_cases(out: &mut Vec<Case>) {
    for (dt, b, t, d) in [(DType::Bf16, 3usize, 77usize, 40usize), (DType::F32, 2, 5, 7), (DType::F16, 1, 257, 33)] {
        out.push(case(
            "pool",
            format!("gather_rows_{}", dt.suffix()),
            format!("[{b},{t},{d}]"),
            tol(dt),
            Box::new(move |dev, rng| {
                let x = random(rng, b * t * d, -2.0, 2.0, dt);
                let idx: Vec<f32> = (0..b).map(|i| ((i * 31 + 5) % t) as f32).collect();
                let y = poisoned(dev, dt, b * d)?;
                ops::pool::gather_rows(dev, b, t, d, &dev.upload(&x, dt)?, &dev.upload(&idx, DType::I32)?, &y)?;
                let want = (0..b * d).map(|i| x[((i / d) * t + idx[i / d] as usize) * d + i % d] as f64).collect();
                Ok((dev.download(&y)?, want))
            }),
        ));
        out.push(case(
            "pool",
            format!("mean_tokens_{}", dt.suffix()),
            format!("[{b},{t},{d}] 1..{t}"),
            tol(dt),
            Box::new(move |dev, rng| {
                let x = random(rng, b * t * d, -2.0, 2.0, dt);
                let y = poisoned(dev, dt, b * d)?;
                ops::pool::mean_tokens(dev, b, t, d, (1, t), &dev.upload(&x, dt)?, &y)?;
                let want = (0..b * d)
                    .map(|i| (1..t).map(|tt| x[((i / d) * t + tt) * d + i % d] as f64).sum::<f64>() / (t - 1) as f64)
                    .collect();
                Ok((dev.download(&y)?, want))
            }),
        ));
    }
}

/// Every case for `dev`, in a fixed order (the Hopper kernels on an sm_90 device and the emulator).
pub fn cases(dev: &GpuDevice) -> Vec<Case> {
    let mut out = Vec::new();
    elementwise_cases(&mut out);
    layernorm_cases(&mut out);
    softmax_cases(&mut out);
    let hopper = dev.runs_hopper_kernels();
    gemm::gemm_cases(&mut out, hopper);
    attention_cases(&mut out, hopper);
    fused_qkv_cases(&mut out, hopper);
    tokens::generic_attention_cases(&mut out);
    patch_cases(&mut out);
    interp_cases(&mut out);
    pool_cases(&mut out);
    tokens::token_cases(&mut out);
    select::select_cases(&mut out);
    stream::stream_cases(&mut out);
    out
}

/// Run `cases` on `dev`, with inputs drawn from `seed`.
pub fn run(dev: &GpuDevice, cases: &[Case], seed: u64) -> Vec<CaseResult> {
    run_each(dev, cases, seed, |_| {})
}

/// [`run`], calling `each` with every result as it completes (so a case that hangs shows which it is).
pub fn run_each(dev: &GpuDevice, cases: &[Case], seed: u64, mut each: impl FnMut(&CaseResult)) -> Vec<CaseResult> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    cases
        .iter()
        .map(|c| {
            let mut res = CaseResult {
                family: c.family,
                kernel: c.kernel.clone(),
                shape: c.shape.clone(),
                rel_err: f64::INFINITY,
                max_abs: f64::INFINITY,
                tol: c.tol,
                pass: false,
                error: None,
            };
            match (c.run)(dev, &mut rng) {
                Ok((out, reference)) => {
                    let (rel, max_abs) = r::compare(&out, &reference);
                    res.rel_err = rel;
                    res.max_abs = max_abs;
                    res.pass = rel <= c.tol;
                }
                Err(e) => res.error = Some(e.to_string()),
            }
            each(&res);
            res
        })
        .collect()
}

/// The cases of one family (`elementwise`, `layernorm`, …).
pub fn family(dev: &GpuDevice, name: &str) -> Vec<Case> {
    cases(dev).into_iter().filter(|c| c.family == name).collect()
}

/// A fixed-width table of results, one line each.
pub fn table(results: &[CaseResult]) -> String {
    let mut s = table_header();
    for r in results {
        s.push_str(&table_row(r));
    }
    s
}

/// The header line of [`table`].
pub fn table_header() -> String {
    format!("{:<28} {:<36} {:>10} {:>10} {:>8}  result\n", "kernel", "shape", "rel.err", "max.abs", "tol")
}

/// One line of [`table`]: kernel, shape, errors, tolerance and `pass`, `FAIL` or `ERROR <message>`.
pub fn table_row(r: &CaseResult) -> String {
    let verdict = match (&r.error, r.pass) {
        (Some(e), _) => format!("ERROR {e}"),
        (None, true) => "pass".into(),
        (None, false) => "FAIL".into(),
    };
    format!("{:<28} {:<36} {:>10.2e} {:>10.2e} {:>8.0e}  {verdict}\n", r.kernel, r.shape, r.rel_err, r.max_abs, r.tol)
}

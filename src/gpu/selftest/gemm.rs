//! Cases of `kernels/gemm.cu` and, on sm_90 devices and the emulator, every Hopper variant (`kernels/gemm_sm90.cu`,
//! `kernels/gemm_persistent_sm90.cu`): the fused epilogue, a folded LayerNorm's row normalisation (`lnfold_`), and
//! the row statistics the epilogue can write for the next LayerNorm (`lnstats_`, merged by
//! `layernorm_stats_merge_f32`). Candidates carry their own
//! prefix so that gpu-check.sh can test them apart from the default kernels.

use rand_chacha::ChaCha8Rng;

use super::{case, poisoned, random, tol, Case};
use crate::error::Result;
use crate::gpu::ops::gemm::{Activation, Gemm, GemmKernel, SM90_VARIANTS};
use crate::gpu::{ops, reference as r, DType, GpuBuffer, GpuDevice};

/// (m, n, k, bias, act, layer_scale, residual in place, row norm (a folded LayerNorm))
type GemmShape = (usize, usize, usize, bool, u8, bool, bool, bool);

const GEMM_SHAPES: [(DType, GemmShape); 8] = [
    (DType::Bf16, (1, 8, 8, false, 0, false, false, false)),
    (DType::Bf16, (37, 53, 40, true, 1, false, false, true)),
    (DType::Bf16, (7, 19, 13, true, 2, true, true, false)), // odd K: the unaligned path
    (DType::F16, (9, 21, 27, true, 2, false, false, true)),
    (DType::Bf16, (130, 136, 96, true, 0, true, true, false)),
    (DType::F16, (64, 72, 64, true, 1, true, false, true)),
    (DType::Bf16, (197, 96, 768, true, 1, false, false, true)), // ViT-B's K
    (DType::F16, (300, 270, 200, true, 2, true, true, true)),   // several block tiles, a partial K tile
];

/// Residual GEMMs (as the attention projection and fc2) that also write their rows' statistics: N not a multiple
/// of any window, partial row tiles, an odd K (the unaligned kernel), several block tiles.
const STATS_SHAPES: [(DType, GemmShape); 4] = [
    (DType::Bf16, (37, 53, 40, true, 0, false, true, false)),
    (DType::Bf16, (7, 19, 13, true, 2, true, true, false)),
    (DType::F16, (130, 136, 96, true, 0, true, true, false)),
    (DType::Bf16, (300, 270, 200, true, 1, true, true, true)),
];

pub(super) fn gemm_cases(out: &mut Vec<Case>, hopper: bool) {
    let mut kernels = vec![(GemmKernel::Sm80, String::new())];
    if hopper {
        kernels.extend(SM90_VARIANTS.iter().map(|v| (GemmKernel::Sm90(*v), format!("sm90_{}_", v.label()))));
    }
    for (kernel, infix) in kernels {
        let name = |dt: DType, k: usize| {
            let unaligned = if kernel == GemmKernel::Sm80 && k % 8 != 0 { "unaligned_" } else { "" };
            format!("gemm_{infix}{unaligned}{}", dt.suffix())
        };
        // The Hopper variants need K a multiple of 8.
        let runs = |s: &GemmShape| kernel == GemmKernel::Sm80 || s.2 % 8 == 0;
        for (dt, shape) in GEMM_SHAPES.into_iter().filter(|(_, s)| runs(s)) {
            out.push(gemm_case(dt, shape, kernel, name(dt, shape.2)));
        }
        for (dt, shape) in STATS_SHAPES.into_iter().filter(|(_, s)| runs(s)) {
            out.push(gemm_stats_case(dt, shape, kernel, name(dt, shape.2)));
        }
    }
}

fn shape_label((m, n, k, bias, act, ls, res, norm): GemmShape) -> String {
    format!(
        "{m}x{n}x{k}{}{}{}{}{}",
        if norm { " norm" } else { "" },
        if bias { " +b" } else { "" },
        ["", " gelu", " qgelu"][act as usize],
        if ls { " *ls" } else { "" },
        if res { " +res" } else { "" }
    )
}

/// Random operands of one case, on the host (rounded to the storage type) and on the device.
struct Operands {
    a: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    s: Vec<f32>,
    r0: Vec<f32>,
    /// (mean, rstd) pairs of rows with a mean, and column sums about as large as k values of W.
    stats: Vec<f32>,
    col_sum: Vec<f32>,
    dev: [GpuBuffer; 6],
    /// The output; it holds the residual for an in-place case, else NaN.
    c: GpuBuffer,
}

impl Operands {
    fn new(dev: &GpuDevice, rng: &mut ChaCha8Rng, dt: DType, (m, n, k, .., res, _): GemmShape) -> Result<Operands> {
        let a = random(rng, m * k, -1.0, 1.0, dt);
        let w = random(rng, n * k, -1.0, 1.0, dt);
        let b = random(rng, n, -0.5, 0.5, dt);
        let s = random(rng, n, 0.5, 1.5, dt);
        let r0 = random(rng, m * n, -1.0, 1.0, dt);
        let (mean, rstd) = (random(rng, m, -1.0, 1.0, DType::F32), random(rng, m, 0.5, 2.0, DType::F32));
        let stats: Vec<f32> = mean.iter().zip(&rstd).flat_map(|(&a, &b)| [a, b]).collect();
        let col_sum = random(rng, n, -3.0, 3.0, DType::F32);
        let bufs = [
            dev.upload(&a, dt)?,
            dev.upload(&w, dt)?,
            dev.upload(&b, dt)?,
            dev.upload(&s, dt)?,
            dev.upload(&stats, DType::F32)?,
            dev.upload(&col_sum, DType::F32)?,
        ];
        let c = if res { dev.upload(&r0, dt)? } else { poisoned(dev, dt, m * n)? };
        Ok(Operands { a, w, b, s, r0, stats, col_sum, dev: bufs, c })
    }

    fn gemm(&self, (m, n, k, bias, act, ls, res, norm): GemmShape, kernel: GemmKernel) -> Gemm<'_> {
        let [a, w, b, s, stats, col_sum] = &self.dev;
        let acts = [Activation::None, Activation::Gelu, Activation::QuickGelu];
        let mut g = Gemm::new(m, n, k, a, w, &self.c).act(acts[act as usize]).kernel(kernel);
        if norm {
            g = g.row_norm(stats, col_sum);
        }
        if bias {
            g = g.bias(b);
        }
        if ls {
            g = g.layer_scale(s);
        }
        if res {
            g = g.residual(&self.c, n);
        }
        g
    }

    fn reference(&self, (m, n, k, bias, act, ls, res, norm): GemmShape) -> Vec<f64> {
        let e = r::GemmRef {
            row_norm: norm.then_some((&self.stats[..], &self.col_sum[..])),
            bias: bias.then_some(&self.b[..]),
            act,
            layer_scale: ls.then_some(&self.s[..]),
            residual: res.then_some(&self.r0[..]),
        };
        r::gemm(m, n, k, &self.a, &self.w, &e)
    }
}

fn gemm_case(dt: DType, shape: GemmShape, kernel: GemmKernel, name: String) -> Case {
    let name = if shape.7 { format!("lnfold_{name}") } else { name };
    case(
        "gemm",
        name,
        shape_label(shape),
        tol(dt),
        Box::new(move |dev, rng| {
            let ops = Operands::new(dev, rng, dt, shape)?;
            ops.gemm(shape, kernel).launch(dev)?;
            Ok((dev.download(&ops.c)?, ops.reference(shape)))
        }),
    )
}

/// The statistics a GEMM writes for its output rows, merged, against those of the output as it was stored (f64).
fn gemm_stats_case(dt: DType, shape: GemmShape, kernel: GemmKernel, name: String) -> Case {
    let (m, n, ..) = shape;
    case(
        "gemm",
        format!("lnstats_{name}"),
        shape_label(shape),
        1e-5,
        Box::new(move |dev, rng| {
            let ops = Operands::new(dev, rng, dt, shape)?;
            let g = ops.gemm(shape, kernel);
            let width = g.partial_width(dev)?;
            let partials = poisoned(dev, DType::F32, 2 * m * n.div_ceil(width))?;
            g.row_partials(&partials).launch(dev)?;
            let stats = poisoned(dev, DType::F32, 2 * m)?;
            ops::layernorm::merge_partials(dev, m, n, width, &partials, &stats, 1e-6)?;
            Ok((dev.download(&stats)?, r::row_stats(m, n, &dev.download(&ops.c)?, 1e-6)))
        }),
    )
}

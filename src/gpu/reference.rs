//! CPU references for the GPU kernels, in f64, on inputs already rounded to the kernel's storage type. They
//! are the oracles of the emulator tests and of `cpeal selftest`; the model code has its own f32 ops.

pub fn gelu(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| gelu1(v as f64)).collect()
}

pub fn gelu1(v: f64) -> f64 {
    0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))
}

pub fn quick_gelu1(v: f64) -> f64 {
    v / (1.0 + (-1.702 * v).exp())
}

pub fn quick_gelu(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| quick_gelu1(v as f64)).collect()
}

/// erf to ~1e-15 (series for |x| < 3, continued fraction beyond).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        let (mut term, mut sum, x2) = (a, a, a * a);
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = exp(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + …))))
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

pub fn layernorm(rows: usize, cols: usize, x: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let (mean, rstd) = mean_rstd(row, eps);
        y.extend((0..cols).map(|j| (row[j] as f64 - mean) * rstd * gamma[j] as f64 + beta[j] as f64));
    }
    y
}

/// (mean, 1/sqrt(var + eps)) of each row, flattened: what `layernorm_stats_*` write.
pub fn row_stats(rows: usize, cols: usize, x: &[f32], eps: f64) -> Vec<f64> {
    (0..rows).flat_map(|r| <[f64; 2]>::from(mean_rstd(&x[r * cols..(r + 1) * cols], eps))).collect()
}

fn mean_rstd(row: &[f32], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Row softmax of scale·x; causal rows keep keys j <= (r % q_len) + cols − q_len, masked entries 0.
pub fn softmax(rows: usize, cols: usize, q_len: usize, x: &[f32], scale: f64, causal: bool) -> Vec<f64> {
    let mut y = vec![0.0; rows * cols];
    for r in 0..rows {
        let limit = if causal { ((r % q_len) + cols - q_len + 1).min(cols) } else { cols };
        let row = &x[r * cols..r * cols + limit];
        let m = row.iter().map(|&v| v as f64 * scale).fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|&v| (v as f64 * scale - m).exp()).sum();
        for j in 0..limit {
            y[r * cols + j] = (row[j] as f64 * scale - m).exp() / s;
        }
    }
    y
}

pub fn argmax(rows: usize, cols: usize, x: &[f32]) -> Vec<f64> {
    (0..rows)
        .map(|r| {
            let row = &x[r * cols..(r + 1) * cols];
            let mut bi = 0;
            for j in 1..cols {
                if row[j] > row[bi] {
                    bi = j;
                }
            }
            bi as f64
        })
        .collect()
}

/// The GEMM epilogue's inputs besides A and W (contiguous [m, k], [n, k]).
pub struct GemmRef<'a> {
    /// Per-row (mean, rstd) pairs and per-column sums: v ↦ rstd·(v − mean·col_sum) before the bias.
    pub row_norm: Option<(&'a [f32], &'a [f32])>,
    pub bias: Option<&'a [f32]>,
    /// 0 none, 1 gelu, 2 quick_gelu.
    pub act: u8,
    pub layer_scale: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
}

/// c[m, n] = residual + layer_scale · act(norm(a·wᵀ) + bias), all contiguous.
pub fn gemm(m: usize, n: usize, k: usize, a: &[f32], w: &[f32], e: &GemmRef) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut v: f64 = (0..k).map(|p| a[i * k + p] as f64 * w[j * k + p] as f64).sum();
            if let Some((stats, col_sum)) = e.row_norm {
                v = stats[2 * i + 1] as f64 * (v - stats[2 * i] as f64 * col_sum[j] as f64);
            }
            v += e.bias.map_or(0.0, |b| b[j] as f64);
            v = match e.act {
                1 => gelu1(v),
                2 => quick_gelu1(v),
                _ => v,
            };
            v *= e.layer_scale.map_or(1.0, |s| s[j] as f64);
            v += e.residual.map_or(0.0, |r| r[i * n + j] as f64);
            c[i * n + j] = v;
        }
    }
    c
}

/// Multi-head attention on contiguous [b, t, heads·d] q, k, v; causal keeps keys j <= i + tk − tq.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    b: usize,
    heads: usize,
    tq: usize,
    tk: usize,
    d: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scale: f64,
    causal: bool,
) -> Vec<f64> {
    let w = heads * d;
    let mut o = vec![0.0; b * tq * w];
    for bi in 0..b {
        for h in 0..heads {
            for i in 0..tq {
                let keys = if causal { (i + tk).saturating_sub(tq) + 1 } else { tk }.min(tk);
                let qi = &q[(bi * tq + i) * w + h * d..][..d];
                let s: Vec<f64> = (0..keys)
                    .map(|j| {
                        let kj = &k[(bi * tk + j) * w + h * d..][..d];
                        scale * qi.iter().zip(kj).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let p: Vec<f64> = s.iter().map(|&x| (x - m).exp()).collect();
                let z: f64 = p.iter().sum();
                for (j, &pj) in p.iter().enumerate() {
                    let vj = &v[(bi * tk + j) * w + h * d..][..d];
                    for c in 0..d {
                        o[(bi * tq + i) * w + h * d + c] += pj / z * vj[c] as f64;
                    }
                }
            }
        }
    }
    o
}

/// im2col of [b, c, h, w] images for a stride-p convolution: [b·(h/p)·(w/p), c·p·p] in (c, ky, kx) order.
pub fn patch_im2col(b: usize, c: usize, h: usize, w: usize, p: usize, ldc: usize, img: &[f32]) -> Vec<f64> {
    let (nh, nw) = (h / p, w / p);
    let mut out = Vec::with_capacity(b * nh * nw * ldc);
    for bi in 0..b {
        for py in 0..nh {
            for px in 0..nw {
                for ci in 0..c {
                    for ky in 0..p {
                        for kx in 0..p {
                            out.push(img[((bi * c + ci) * h + py * p + ky) * w + px * p + kx] as f64);
                        }
                    }
                }
                out.resize(out.len() + ldc - c * p * p, 0.0);
            }
        }
    }
    out
}

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// (index, weight) taps of output `o` along an axis of `n` inputs (PyTorch bicubic, align_corners=False).
fn taps(o: usize, n: usize, scale: f64, antialias: bool) -> Vec<(usize, f64)> {
    if antialias {
        let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
        let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        let center = scale * (o as f64 + 0.5);
        let first = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64).min(n as i64) as usize;
        let w: Vec<f64> = (first..end).map(|j| cubic((j as f64 - center + 0.5) * inv, -0.5)).collect();
        let total: f64 = w.iter().sum();
        (first..end).zip(w).map(|(j, wj)| (j, if total != 0.0 { wj / total } else { 0.0 })).collect()
    } else {
        let src = (o as f64 + 0.5) * scale - 0.5;
        let f = src.floor();
        let t = src - f;
        (0..4)
            .map(|i| {
                let j = (f as i64 - 1 + i as i64).clamp(0, n as i64 - 1) as usize;
                (j, cubic(t + 1.0 - i as f64, -0.75))
            })
            .collect()
    }
}

/// Bicubic resampling of a channels-last [hi, wi, d] grid to [ho, wo, d] (coordinate scales in/out, or
/// 1/scale_factor), as PyTorch's interpolate(mode="bicubic", align_corners=False[, antialias=True]).
#[allow(clippy::too_many_arguments)]
pub fn interp_bicubic(
    d: usize,
    hi: usize,
    wi: usize,
    ho: usize,
    wo: usize,
    x: &[f32],
    scale_h: f64,
    scale_w: f64,
    antialias: bool,
) -> Vec<f64> {
    let mut y = vec![0.0; ho * wo * d];
    for oy in 0..ho {
        let ty = taps(oy, hi, scale_h, antialias);
        for ox in 0..wo {
            let tx = taps(ox, wi, scale_w, antialias);
            for c in 0..d {
                let mut acc = 0.0;
                for &(sy, wy) in &ty {
                    for &(sx, wx) in &tx {
                        acc += wy * wx * x[(sy * wi + sx) * d + c] as f64;
                    }
                }
                y[(oy * wo + ox) * d + c] = acc;
            }
        }
    }
    y
}

/// [b, 1+r+n, d] tokens: row 0 of each item is cls + pos[0], rows 1 … r the register tokens (`reg`, r rows, no
/// position), then patch t is patches[t] + pos[1 + t].
#[allow(clippy::too_many_arguments)]
pub fn assemble_tokens(
    b: usize,
    n: usize,
    d: usize,
    patches: &[f32],
    cls: &[f32],
    pos: &[f32],
    reg: &[f32],
) -> Vec<f64> {
    let r = reg.len() / d.max(1);
    let mut y = Vec::with_capacity(b * (1 + r + n) * d);
    for bi in 0..b {
        y.extend((0..d).map(|j| cls[j] as f64 + pos[j] as f64));
        y.extend(reg.iter().map(|&v| v as f64));
        for t in 0..n {
            y.extend((0..d).map(|j| patches[(bi * n + t) * d + j] as f64 + pos[(1 + t) * d + j] as f64));
        }
    }
    y
}

/// y[r] = table[ids[r]] + pos[r % t]; a row whose id is outside 0 … vocab−1 is NaN.
pub fn embedding(t: usize, d: usize, ids: &[i64], table: &[f32], vocab: usize, pos: &[f32]) -> Vec<f64> {
    let mut y = Vec::with_capacity(ids.len() * d);
    for (r, &id) in ids.iter().enumerate() {
        if id < 0 || id as usize >= vocab {
            y.extend(std::iter::repeat_n(f64::NAN, d));
        } else {
            y.extend((0..d).map(|j| table[id as usize * d + j] as f64 + pos[(r % t) * d + j] as f64));
        }
    }
    y
}

/// Each row of [rows, d] divided by max(its L2 norm, f32::MIN_POSITIVE).
pub fn l2_normalize(rows: usize, d: usize, x: &[f32]) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * d);
    for row in x.chunks(d).take(rows) {
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt().max(f32::MIN_POSITIVE as f64);
        y.extend(row.iter().map(|&v| v as f64 / norm));
    }
    y
}

/// Rows of the [rows, d_a] and [rows, d_b] matrices side by side: [rows, d_a + d_b].
pub fn concat_cols(rows: usize, d_a: usize, a: &[f32], d_b: usize, b: &[f32]) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * (d_a + d_b));
    for r in 0..rows {
        y.extend(a[r * d_a..][..d_a].iter().chain(&b[r * d_b..][..d_b]).map(|&v| v as f64));
    }
    y
}

/// Per row of logits [rows, c]: (entropy −Σp ln p, 1 − max p, −(p₁ − p₂), −1 for c = 1), flattened [rows, 3].
pub fn uncertainty_scores(rows: usize, c: usize, logits: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * 3);
    for row in logits.chunks_exact(c).take(rows) {
        let m = row.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let mut p: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp() / z).collect();
        let entropy = -p.iter().filter(|&&v| v > 0.0).map(|&v| v * v.ln()).sum::<f64>();
        p.sort_by(|a, b| b.total_cmp(a));
        let margin = if c < 2 { -1.0 } else { -(p[0] - p[1]) };
        out.extend([entropy, 1.0 - p[0], margin]);
    }
    out
}

/// The top k of `scores` (rows with `skip` set left out), best first, ties to the lower index.
pub fn topk(scores: &[f32], skip: &[bool], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).filter(|&i| !skip[i]).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// min(mindist[i], ‖x_i − x_centre‖²) over features [n, d]; the centre's entry becomes −1.
pub fn mindist_update(n: usize, d: usize, x: &[f32], mindist: &[f32], centre: usize) -> Vec<f64> {
    let xc = &x[centre * d..(centre + 1) * d];
    (0..n)
        .map(|i| {
            let d2: f64 = x[i * d..(i + 1) * d].iter().zip(xc).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
            if i == centre {
                -1.0
            } else {
                (mindist[i] as f64).min(d2)
            }
        })
        .collect()
}

/// BADGE's d2 update: min(d2[i], ‖g_i − g_c‖²) with g = q ⊗ h formed explicitly (q [n, c], h [n, d]); the
/// centre's entry becomes −1.
pub fn badge_d2_update(n: usize, c: usize, d: usize, q: &[f32], h: &[f32], d2: &[f32], centre: usize) -> Vec<f64> {
    let g = |i: usize| -> Vec<f64> {
        let (qi, hi) = (&q[i * c..(i + 1) * c], &h[i * d..(i + 1) * d]);
        qi.iter().flat_map(|&a| hi.iter().map(move |&b| a as f64 * b as f64)).collect()
    };
    let gc = g(centre);
    (0..n)
        .map(|i| {
            let dist: f64 = g(i).iter().zip(&gc).map(|(a, b)| (a - b).powi(2)).sum();
            if i == centre {
                -1.0
            } else {
                (d2[i] as f64).min(dist)
            }
        })
        .collect()
}

/// ‖out − ref‖ / ‖ref‖ and max |out − ref|; NaN or ∞ anywhere in `out` gives (∞, ∞).
pub fn compare(out: &[f32], reference: &[f64]) -> (f64, f64) {
    if out.len() != reference.len() || out.iter().any(|v| !v.is_finite()) {
        return (f64::INFINITY, f64::INFINITY);
    }
    let (mut num, mut den, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    for (&o, &r) in out.iter().zip(reference) {
        let d = o as f64 - r;
        num += d * d;
        den += r * r;
        max_abs = max_abs.max(d.abs());
    }
    ((num / den.max(1e-300)).sqrt(), max_abs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_known_values() {
        for (x, e) in
            [(0.5, 0.5204998778130465), (1.0, 0.8427007929497149), (2.5, 0.999593047982555), (3.5, 0.9999992569016276)]
        {
            assert!((super::erf(x) - e).abs() < 1e-13, "erf({x})");
            assert!((super::erf(-x) + e).abs() < 1e-13);
        }
    }
}

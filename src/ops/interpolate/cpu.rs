/// Keys' cubic convolution weights for the 4 taps around a fractional offset `t` in [0, 1), A = −0.75.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index along one axis: its source indices and their weights.
type Taps = Vec<(Vec<usize>, Vec<f64>)>;

/// PyTorch's bicubic taps (align_corners=False): the 4 clamped source indices around (o + 0.5)·scale − 0.5.
fn taps(input: usize, output: usize) -> Taps {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let src = (o as f64 + 0.5) * scale - 0.5;
            let base = src.floor();
            let idx = (0..4).map(|i| (base as i64 - 1 + i).clamp(0, input as i64 - 1) as usize).collect();
            (idx, cubic_weights(src - base).to_vec())
        })
        .collect()
}

/// PyTorch's antialiased bicubic taps (`_upsample_bicubic2d_aa`): around the centre (o + 0.5)·scale, a support of
/// 2·max(scale, 1) inputs, Keys' kernel with A = −0.5 stretched by max(scale, 1), weights normalised to sum 1.
fn taps_antialiased(input: usize, output: usize) -> Taps {
    const A: f64 = -0.5;
    let kernel = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let stretch = scale.max(1.0);
    (0..output)
        .map(|o| {
            let centre = scale * (o as f64 + 0.5);
            // Truncation toward zero before the clamp, as PyTorch does.
            let first = ((centre - 2.0 * stretch + 0.5) as i64).max(0) as usize;
            let end = ((centre + 2.0 * stretch + 0.5) as i64).min(input as i64) as usize;
            let idx: Vec<usize> = (first..end).collect();
            let w: Vec<f64> = idx.iter().map(|&j| kernel((j as f64 - centre + 0.5) / stretch)).collect();
            let total: f64 = w.iter().sum();
            (idx, w.iter().map(|v| if total != 0.0 { v / total } else { 0.0 }).collect())
        })
        .collect()
}

pub(super) fn bicubic(grid: &[f32], [h, w, d]: [usize; 3], [oh, ow]: [usize; 2], antialias: bool) -> Vec<f32> {
    let (ty, tx) =
        if antialias { (taps_antialiased(h, oh), taps_antialiased(w, ow)) } else { (taps(h, oh), taps(w, ow)) };
    let mut out = vec![0f32; oh * ow * d];
    let mut acc = vec![0f64; d];
    for (oy, (iy, wy)) in ty.iter().enumerate() {
        for (ox, (ix, wx)) in tx.iter().enumerate() {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (yy, wyy) in iy.iter().zip(wy) {
                for (xx, wxx) in ix.iter().zip(wx) {
                    let src = &grid[(yy * w + xx) * d..][..d];
                    let wgt = wyy * wxx;
                    acc.iter_mut().zip(src).for_each(|(a, s)| *a += wgt * *s as f64);
                }
            }
            let dst = &mut out[(oy * ow + ox) * d..][..d];
            dst.iter_mut().zip(&acc).for_each(|(o, a)| *o = *a as f32);
        }
    }
    out
}

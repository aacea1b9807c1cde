/// Keys' cubic convolution weights for the 4 taps around a fractional offset `t` in [0, 1), A = −0.75.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index: the 4 clamped source indices and their weights along one axis.
fn taps(input: usize, output: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let src = (o as f64 + 0.5) * scale - 0.5;
            let base = src.floor();
            let idx = std::array::from_fn(|i| (base as i64 - 1 + i as i64).clamp(0, input as i64 - 1) as usize);
            (idx, cubic_weights(src - base))
        })
        .collect()
}

pub(super) fn bicubic(grid: &[f32], [h, w, d]: [usize; 3], [oh, ow]: [usize; 2]) -> Vec<f32> {
    let (ty, tx) = (taps(h, oh), taps(w, ow));
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

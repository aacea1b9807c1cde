//! Pillow-exact resampling of 8-bit images (`Image.resize` with `reducing_gap=None`), which is what the
//! transformers image processors call: separable convolution, horizontal pass first, filter support
//! widened by the scale when downscaling (antialias), coefficients in 22-bit fixed point, intermediate and
//! final values rounded and clipped to u8. Ported from Pillow's `libImaging/Resample.c`.

/// Pillow's `Image.Resampling` filters that checkpoints use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// PIL `BILINEAR` (2): triangle, support 1.
    Bilinear,
    /// PIL `BICUBIC` (3): Keys cubic with a = -0.5, support 2.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear if x < 1.0 => 1.0 - x,
            Filter::Bicubic if x < 1.0 => ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0,
            Filter::Bicubic if x < 2.0 => (((x - 5.0) * x + 8.0) * x - 4.0) * A,
            _ => 0.0,
        }
    }
}

const A: f64 = -0.5;
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output position: first input index and fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `(int)` in C truncates toward zero; negative values are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            *kx = filter.weight((x as f64 + xmin as f64 - center + 0.5) / filterscale);
            ww += *kx;
        }
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = w * (1u64 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, ksize, weights }
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes interleaved `channels`-channel u8 pixels from `w×h` to `out_w×out_h`.
pub fn resize_u8(
    src: &[u8],
    (w, h): (usize, usize),
    channels: usize,
    (out_w, out_h): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    let mut cur = src.to_vec();
    let mut cur_w = w;
    if out_w != w {
        cur = horizontal(&cur, (w, h), channels, out_w, filter);
        cur_w = out_w;
    }
    if out_h != h {
        cur = vertical(&cur, (cur_w, h), channels, out_h, filter);
    }
    cur
}

fn horizontal(src: &[u8], (w, h): (usize, usize), c: usize, out_w: usize, filter: Filter) -> Vec<u8> {
    let co = coefficients(w, out_w, filter);
    let mut out = vec![0u8; out_w * h * c];
    for y in 0..h {
        let row = &src[y * w * c..(y + 1) * w * c];
        let out_row = &mut out[y * out_w * c..(y + 1) * out_w * c];
        for (xx, &(xmin, xmax)) in co.bounds.iter().enumerate() {
            let k = &co.weights[xx * co.ksize..xx * co.ksize + xmax];
            for ch in 0..c {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (x, &kx) in k.iter().enumerate() {
                    ss += row[(xmin + x) * c + ch] as i64 * kx as i64;
                }
                out_row[xx * c + ch] = clip8(ss);
            }
        }
    }
    out
}

fn vertical(src: &[u8], (w, h): (usize, usize), c: usize, out_h: usize, filter: Filter) -> Vec<u8> {
    let co = coefficients(h, out_h, filter);
    let stride = w * c;
    let mut out = vec![0u8; stride * out_h];
    let mut acc = vec![0i64; stride];
    for (yy, &(ymin, ymax)) in co.bounds.iter().enumerate() {
        let k = &co.weights[yy * co.ksize..yy * co.ksize + ymax];
        acc.fill(1 << (PRECISION_BITS - 1));
        // row by row, so the inner loop runs over contiguous memory
        for (y, &ky) in k.iter().enumerate() {
            let row = &src[(ymin + y) * stride..(ymin + y + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as i64 * ky as i64;
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant_at_any_scale() {
        for &(w, h, ow, oh) in &[(10, 7, 3, 5), (4, 4, 9, 13), (28, 28, 224, 224), (300, 200, 224, 149)] {
            let src = vec![137u8; w * h * 3];
            for f in [Filter::Bilinear, Filter::Bicubic] {
                let out = resize_u8(&src, (w, h), 3, (ow, oh), f);
                assert_eq!(out.len(), ow * oh * 3);
                assert!(out.iter().all(|&v| v == 137), "{f:?} {w}x{h}->{ow}x{oh}");
            }
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 7), (7, 100), (224, 224), (256, 224)] {
            let co = coefficients(i, o, Filter::Bicubic);
            for (xx, &(_, n)) in co.bounds.iter().enumerate() {
                let s: i64 = co.weights[xx * co.ksize..xx * co.ksize + n].iter().map(|&v| v as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= n as i64, "{i}->{o} at {xx}: {s}");
            }
        }
    }
}

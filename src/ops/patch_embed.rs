//! Patch embedding: a stride-`P` convolution with a `P×P` kernel as im2col + `linear`.
//! pixels `[B, C, H, W]`, weight `[D, C, P, P]` → `[B, (H/P)·(W/P), D]` in row-major patch order, as
//! `Conv2d(...).flatten(2).transpose(1, 2)` in transformers (trailing pixels that do not fill a patch are
//! dropped, like the convolution does).

use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

use super::{linear, par_rows, Epilogue};

pub fn patch_embed(pixels: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let [b, c, h, w] = pixels.dims::<4>("patch_embed")?;
    let [d, wc, p, p2] = weight.dims::<4>("patch_embed")?;
    if wc != c || p != p2 || p == 0 || h < p || w < p {
        return Err(Error::shape(
            "patch_embed",
            format!("pixel_values {:?} against patch weight {:?}", pixels.shape(), weight.shape()),
        ));
    }
    let (gh, gw) = (h / p, w / p);
    let cols = match pixels.storage() {
        Storage::Cpu(_) => Tensor::from_vec(im2col(pixels.cpu_slice()?, [b, c, h, w], p), &[b, gh * gw, c * p * p])?,
        Storage::Gpu(_) => {
            let dtype = weight.gpu().map(|g| g.buffer.dtype()).unwrap_or(crate::gpu::DType::Bf16);
            super::gpu::im2col(pixels, [b, c, h, w], p, dtype)?
        }
    };
    let flat_weight = weight.reshape(&[d, c * p * p])?;
    linear(&cols, &flat_weight, Epilogue::bias(bias))
}

/// `[B, C, H, W]` → `[B·nP, C·P·P]`, each row one patch in (channel, row, column) order.
fn im2col(px: &[f32], [b, c, h, w]: [usize; 4], p: usize) -> Vec<f32> {
    let (gh, gw) = (h / p, w / p);
    let width = c * p * p;
    let mut out = vec![0f32; b * gh * gw * width];
    par_rows(&mut out, width, |row, dst| {
        let (bi, patch) = (row / (gh * gw), row % (gh * gw));
        let (py, pxi) = (patch / gw, patch % gw);
        for ci in 0..c {
            for ky in 0..p {
                let src = &px[((bi * c + ci) * h + py * p + ky) * w + pxi * p..][..p];
                dst[(ci * p + ky) * p..][..p].copy_from_slice(src);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{rand_vec, rel_err};

    #[test]
    fn matches_direct_convolution() {
        for (b, c, h, w, d, p, seed) in [(1, 1, 2, 2, 1, 2, 1), (2, 3, 9, 7, 5, 3, 2), (1, 3, 16, 16, 4, 8, 3)] {
            let px = rand_vec(b * c * h * w, seed, 1.0);
            let wt = rand_vec(d * c * p * p, seed + 1, 1.0);
            let bias = rand_vec(d, seed + 2, 1.0);
            let (gh, gw) = (h / p, w / p);
            let mut want = vec![0f64; b * gh * gw * d];
            for bi in 0..b {
                for y in 0..gh {
                    for x in 0..gw {
                        for o in 0..d {
                            let mut s = bias[o] as f64;
                            for ci in 0..c {
                                for ky in 0..p {
                                    for kx in 0..p {
                                        s += px[((bi * c + ci) * h + y * p + ky) * w + x * p + kx] as f64
                                            * wt[((o * c + ci) * p + ky) * p + kx] as f64;
                                    }
                                }
                            }
                            want[((bi * gh + y) * gw + x) * d + o] = s;
                        }
                    }
                }
            }
            let y = patch_embed(
                &Tensor::from_vec(px, &[b, c, h, w]).unwrap(),
                &Tensor::from_vec(wt, &[d, c, p, p]).unwrap(),
                Some(&Tensor::from_vec(bias, &[d]).unwrap()),
            )
            .unwrap();
            assert_eq!(y.shape(), &[b, gh * gw, d]);
            assert!(rel_err(&y.to_vec().unwrap(), &want) < 1e-6);
        }
    }
}

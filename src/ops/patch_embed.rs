//! Patch embedding: a stride-`P` convolution with a `P×P` kernel as im2col + `linear`.
//! pixels `[B, C, H, W]`, weight `[D, C, P, P]` → `[B, (H/P)·(W/P), D]` in row-major patch order, as
//! `Conv2d(...).flatten(2).transpose(1, 2)` in transformers (trailing pixels that do not fill a patch are
//! dropped, like the convolution does).

use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

use super::{linear, par_rows, Epilogue};

/// The conv weight `[D, C, P, P]` as the patch GEMM's `[D, K]` (K = C·P·P in (channel, row, column) order). On a
/// GPU, K is padded with zero columns to a multiple of 8, so that the GEMM takes its aligned kernels (DINOv2's
/// 3·14·14 = 588 would not). Made once per model: a padded weight is a new device tensor.
pub fn patch_gemm_weight(weight: &Tensor) -> Result<Tensor> {
    crate::autograd::untracked("patch_gemm_weight", &[weight])?;
    let [d, c, p, p2] = weight.dims::<4>("patch_embed")?;
    if p != p2 || p == 0 {
        return Err(Error::shape("patch_embed", format!("patch weight {:?} is not [D, C, P, P]", weight.shape())));
    }
    let k = c * p * p;
    let Some(gpu) = weight.gpu() else { return weight.reshape(&[d, k]) };
    let padded = k.next_multiple_of(8);
    if padded == k {
        return weight.reshape(&[d, k]);
    }
    let values = weight.to_vec()?;
    let mut rows = vec![0f32; d * padded];
    for (dst, src) in rows.chunks_mut(padded).zip(values.chunks(k)) {
        dst[..k].copy_from_slice(src);
    }
    Tensor::from_vec(rows, &[d, padded])?.to_device_as(&weight.device(), gpu.buffer.dtype())
}

/// pixels `[B, C, H, W]` and `gemm_weight` from [`patch_gemm_weight`] (`[D, K']`, K' ≥ C·P·P) for patches of
/// `p` → `[B, (H/P)·(W/P), D]`.
pub fn patch_embed(pixels: &Tensor, gemm_weight: &Tensor, p: usize, bias: Option<&Tensor>) -> Result<Tensor> {
    crate::autograd::untracked("patch_embed", &[pixels, gemm_weight].into_iter().chain(bias).collect::<Vec<_>>())?;
    let [b, c, h, w] = pixels.dims::<4>("patch_embed")?;
    let [_, width] = gemm_weight.dims::<2>("patch_embed")?;
    let k = c * p * p; // the weight's columns, exact or padded to a multiple of 8
    if p == 0 || h < p || w < p || (width != k && width != k.next_multiple_of(8)) {
        return Err(Error::shape(
            "patch_embed",
            format!(
                "pixel_values {:?} against patches of {p} and a patch weight {:?}",
                pixels.shape(),
                gemm_weight.shape()
            ),
        ));
    }
    let (gh, gw) = (h / p, w / p);
    let cols = match pixels.storage() {
        Storage::Cpu(_) => Tensor::from_vec(im2col(pixels.cpu_slice()?, [b, c, h, w], p, width), &[b, gh * gw, width])?,
        Storage::Gpu(_) => {
            let dtype = gemm_weight.gpu().map(|g| g.buffer.dtype()).unwrap_or(crate::gpu::DType::Bf16);
            super::gpu::im2col(pixels, [b, c, h, w], p, width, dtype)?
        }
    };
    linear(&cols, gemm_weight, Epilogue::bias(bias))
}

/// `[B, C, H, W]` → `[B·nP, width]`, each row one patch in (channel, row, column) order, then zeros.
fn im2col(px: &[f32], [b, c, h, w]: [usize; 4], p: usize, width: usize) -> Vec<f32> {
    let (gh, gw) = (h / p, w / p);
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
            let weight = patch_gemm_weight(&Tensor::from_vec(wt, &[d, c, p, p]).unwrap()).unwrap();
            let y = patch_embed(
                &Tensor::from_vec(px, &[b, c, h, w]).unwrap(),
                &weight,
                p,
                Some(&Tensor::from_vec(bias, &[d]).unwrap()),
            )
            .unwrap();
            assert_eq!(y.shape(), &[b, gh * gw, d]);
            assert!(rel_err(&y.to_vec().unwrap(), &want) < 1e-6);
        }
    }

    #[test]
    fn pixels_with_other_channels_than_the_weight_are_an_error() {
        let weight =
            patch_gemm_weight(&Tensor::from_vec(vec![0.5; 4 * 3 * 14 * 14], &[4, 3, 14, 14]).unwrap()).unwrap();
        let gray = Tensor::from_vec(vec![0.25; 28 * 28], &[1, 1, 28, 28]).unwrap();
        let err = patch_embed(&gray, &weight, 14, None).unwrap_err().to_string();
        assert!(err.contains("patch_embed") && err.contains("[1, 1, 28, 28]") && err.contains("[4, 588]"), "{err}");
    }
}

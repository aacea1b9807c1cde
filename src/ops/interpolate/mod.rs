//! Bicubic resampling of a position-embedding grid `[h, w, D]` → `[h2, w2, D]`, with exactly the semantics of
//! PyTorch's `interpolate(mode="bicubic", align_corners=False, size=(h2, w2))` that transformers uses for ViT
//! and DINOv2: source coordinate (dst + 0.5)·(in/out) − 0.5, cubic convolution with A = −0.75, edge indices
//! clamped.

mod cpu;

use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

pub fn interpolate_bicubic(grid: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    crate::autograd::untracked("interpolate_bicubic", &[grid])?;
    resample(grid, out_h, out_w, false)
}

/// The same with `antialias=True` (transformers' `Dinov2WithRegistersModel`): when shrinking, each output
/// averages every input under a kernel stretched by the scale; PyTorch's `_upsample_bicubic2d_aa` semantics.
pub fn interpolate_bicubic_antialiased(grid: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    crate::autograd::untracked("interpolate_bicubic_antialiased", &[grid])?;
    resample(grid, out_h, out_w, true)
}

fn resample(grid: &Tensor, out_h: usize, out_w: usize, antialias: bool) -> Result<Tensor> {
    let [h, w, d] = grid.dims::<3>("interpolate_bicubic")?;
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Err(Error::shape("interpolate_bicubic", format!("{h}x{w} -> {out_h}x{out_w}")));
    }
    match grid.storage() {
        Storage::Cpu(_) => {
            let out = cpu::bicubic(grid.cpu_slice()?, [h, w, d], [out_h, out_w], antialias);
            Tensor::from_vec(out, &[out_h, out_w, d])
        }
        // Resampled grids are computed once per input size and cached by the caller, so the host does it.
        Storage::Gpu(g) => {
            let dtype = g.buffer.dtype();
            let host = resample(&grid.to_device(&crate::Device::Cpu)?, out_h, out_w, antialias)?;
            host.to_device_as(&grid.device(), dtype)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{rand_vec, rel_err};

    /// Written from the definition (Keys' cubic convolution, A = −0.75), independently of `cpu.rs`.
    fn kernel(x: f64) -> f64 {
        let a = -0.75;
        let x = x.abs();
        if x <= 1.0 {
            (a + 2.0) * x.powi(3) - (a + 3.0) * x.powi(2) + 1.0
        } else if x < 2.0 {
            a * x.powi(3) - 5.0 * a * x.powi(2) + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    }

    fn reference(g: &[f32], h: usize, w: usize, d: usize, oh: usize, ow: usize) -> Vec<f64> {
        let mut out = vec![0f64; oh * ow * d];
        for oy in 0..oh {
            let sy = (oy as f64 + 0.5) * h as f64 / oh as f64 - 0.5;
            for ox in 0..ow {
                let sx = (ox as f64 + 0.5) * w as f64 / ow as f64 - 0.5;
                for dy in -1i64..=2 {
                    let iy = sy.floor() as i64 + dy;
                    let wy = kernel(sy - iy as f64);
                    for dx in -1i64..=2 {
                        let ix = sx.floor() as i64 + dx;
                        let wx = kernel(sx - ix as f64);
                        let (cy, cx) = (iy.clamp(0, h as i64 - 1) as usize, ix.clamp(0, w as i64 - 1) as usize);
                        for c in 0..d {
                            out[(oy * ow + ox) * d + c] += wy * wx * g[(cy * w + cx) * d + c] as f64;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_cubic_convolution_definition_up_and_down() {
        for (h, w, d, oh, ow, seed) in
            [(4, 4, 3, 6, 6, 1), (37, 37, 5, 16, 16, 2), (5, 7, 2, 11, 3, 3), (2, 2, 1, 1, 1, 4)]
        {
            let g = rand_vec(h * w * d, seed, 1.0);
            let y = interpolate_bicubic(&Tensor::from_vec(g.clone(), &[h, w, d]).unwrap(), oh, ow).unwrap();
            let err = rel_err(&y.to_vec().unwrap(), &reference(&g, h, w, d, oh, ow));
            assert!(err < 1e-6, "{h}x{w} -> {oh}x{ow}: {err}");
        }
    }

    #[test]
    fn antialiased_matches_the_gpu_oracle_up_and_down() {
        // `gpu::reference::interp_bicubic` is the float64 oracle of kernels/interp.cu, written separately.
        for (h, w, d, oh, ow, seed) in [(37, 37, 3, 16, 16, 5), (4, 4, 2, 3, 5, 6), (6, 9, 2, 13, 2, 7)] {
            let g = rand_vec(h * w * d, seed, 1.0);
            let y = interpolate_bicubic_antialiased(&Tensor::from_vec(g.clone(), &[h, w, d]).unwrap(), oh, ow).unwrap();
            let (sh, sw) = (h as f64 / oh as f64, w as f64 / ow as f64);
            let want = crate::gpu::reference::interp_bicubic(d, h, w, oh, ow, &g, sh, sw, true);
            let err = rel_err(&y.to_vec().unwrap(), &want);
            assert!(err < 1e-6, "{h}x{w} -> {oh}x{ow}: {err}");
        }
    }

    #[test]
    fn same_size_is_identity() {
        let g = rand_vec(3 * 3 * 2, 9, 1.0);
        let y = interpolate_bicubic(&Tensor::from_vec(g.clone(), &[3, 3, 2]).unwrap(), 3, 3).unwrap();
        for (a, b) in y.to_vec().unwrap().iter().zip(&g) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}

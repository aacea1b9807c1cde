//! Launcher for `kernels/interp.cu`: bicubic resampling of position-embedding grids.

use super::{check, int, stride_grid};
use crate::error::{Error, Result};
use crate::gpu::{GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Where output coordinates map to in the input (PyTorch: `size=` gives in/out, `scale_factor=` gives 1/factor).
#[derive(Clone, Copy, Debug)]
pub enum Scale {
    /// interpolate(size=(ho, wo)): scale = in/out per axis.
    FromSizes,
    /// interpolate(scale_factor=(fh, fw)): scale = 1/f per axis.
    Factor(f64, f64),
}

/// y [ho, wo, d] = bicubic(x [hi, wi, d]) (channels-last), PyTorch semantics with align_corners=False; with
/// `antialias`, PyTorch's antialiased bicubic (DINOv2 in transformers).
#[allow(clippy::too_many_arguments)]
pub fn interp_bicubic(
    dev: &GpuDevice,
    d: usize,
    (hi, wi): (usize, usize),
    (ho, wo): (usize, usize),
    x: &GpuBuffer,
    y: &GpuBuffer,
    scale: Scale,
    antialias: bool,
) -> Result<()> {
    let dt = x.dtype();
    let kernel = format!("interp_bicubic_{}", dt.suffix());
    if d == 0 || hi == 0 || wi == 0 || ho == 0 || wo == 0 {
        return Err(Error::kernel(&kernel, "empty grid"));
    }
    check(&kernel, "x", x, dt, hi * wi * d)?;
    check(&kernel, "y", y, dt, ho * wo * d)?;
    let (sh, sw) = match scale {
        Scale::FromSizes => (hi as f64 / ho as f64, wi as f64 / wo as f64),
        Scale::Factor(fh, fw) => (1.0 / fh, 1.0 / fw),
    };
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "D", d)?) //   int D
        .i32(int(&kernel, "Hi", hi)?) // int Hi
        .i32(int(&kernel, "Wi", wi)?) // int Wi
        .i32(int(&kernel, "Ho", ho)?) // int Ho
        .i32(int(&kernel, "Wo", wo)?) // int Wo
        .buf(x) //                       const T* x
        .buf(y) //                       T* y
        .f32(sh as f32) //               float scale_h
        .f32(sw as f32) //               float scale_w
        .i32(antialias as i32); //       int antialias
                                // SAFETY: x holds hi·wi·d and y ho·wo·d elements of T (checked); signature (5 × int, const T*, T*, 2 × float, int).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(ho * wo * d), 256), &mut args) }
}

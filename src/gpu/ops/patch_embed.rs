//! Launcher for `kernels/patch_embed.cu`: im2col of the images for the patch-embedding GEMM.

use super::{check, int, stride_grid};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// cols[b·nh·nw, ldc] = patches of img [b, c, h, w] (f32), nh = h/p, nw = w/p, in cols' dtype, each row's columns
/// past c·p·p zero. Multiply by the conv weight viewed as [dim, c·p·p] (columns padded alike: see
/// `ops::patch_gemm_weight`) to get the patch tokens.
#[allow(clippy::too_many_arguments)]
pub fn patch_im2col(
    dev: &GpuDevice,
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    p: usize,
    ldc: usize,
    img: &GpuBuffer,
    cols: &GpuBuffer,
) -> Result<()> {
    let kernel = format!("patch_im2col_{}", cols.dtype().suffix());
    if p == 0 || h < p || w < p {
        return Err(Error::kernel(&kernel, format!("patch {p} does not fit a {h}x{w} image")));
    }
    if ldc < c * p * p {
        return Err(Error::kernel(&kernel, format!("row stride {ldc} is shorter than a patch's {} values", c * p * p)));
    }
    let n = b * (h / p) * (w / p) * ldc;
    check(&kernel, "img", img, DType::F32, b * c * h * w)?;
    check(&kernel, "cols", cols, cols.dtype(), n)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "B", b)?) //  int B
        .i32(int(&kernel, "C", c)?) //  int C
        .i32(int(&kernel, "Hi", h)?) // int Hi
        .i32(int(&kernel, "Wi", w)?) // int Wi
        .i32(int(&kernel, "P", p)?) //  int P
        .i32(int(&kernel, "ldc", ldc)?) // int ldc
        .buf(img) //                    const float* img
        .buf(cols); //                  T* cols
                    // SAFETY: img holds b·c·h·w floats and cols the n outputs (checked); signature (6 × int, const float*, T*).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(n), 256), &mut args) }
}

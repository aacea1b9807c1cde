//! Launchers for `kernels/elementwise.cu`: gelu, quick_gelu, tanh, add (also f32 + 16-bit), scale, cast.

use super::{check, int, stride_grid};
use crate::error::Result;
use crate::gpu::{GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

fn unary(dev: &GpuDevice, op: &str, x: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    let kernel = format!("{op}_{}", x.dtype().suffix());
    let n = x.len();
    check(&kernel, "y", y, x.dtype(), n)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "n", n)?) // int n
        .buf(x) //                     const T* x
        .buf(y); //                    T* y
                 // SAFETY: x and y hold n elements of the kernel's T (checked above); the signature is (int, const T*, T*).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(n), 256), &mut args) }
}

/// y = gelu(x) (erf form). x and y have the same dtype; y has at least x.len() elements.
pub fn gelu(dev: &GpuDevice, x: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    unary(dev, "gelu", x, y)
}

/// y = tanh(x).
pub fn tanh(dev: &GpuDevice, x: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    unary(dev, "tanh", x, y)
}

/// y = x·sigmoid(1.702·x).
pub fn quick_gelu(dev: &GpuDevice, x: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    unary(dev, "quick_gelu", x, y)
}

/// y = a + b of length a.len(); y has a's dtype, and b has it too or is 16-bit with a in f32 (a block's output
/// added to an f32 residual stream: `add_f32_<b>`).
pub fn add(dev: &GpuDevice, a: &GpuBuffer, b: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    let kernel = match (a.dtype(), b.dtype()) {
        (da, db) if da == db => format!("add_{}", da.suffix()),
        (da, db) => format!("add_{}_{}", da.suffix(), db.suffix()),
    };
    let n = a.len();
    check(&kernel, "b", b, b.dtype(), n)?;
    check(&kernel, "y", y, a.dtype(), n)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "n", n)?) // int n
        .buf(a) //                     const T* a
        .buf(b) //                     const B* b
        .buf(y); //                    T* y
                 // SAFETY: a, y hold n elements of T, b n of B; signature (int, const T*, const B*, T*). A dtype
                 // pair with no kernel is a lookup error.
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(n), 256), &mut args) }
}

/// y = s·x.
pub fn scale(dev: &GpuDevice, x: &GpuBuffer, y: &GpuBuffer, s: f32) -> Result<()> {
    let kernel = format!("scale_{}", x.dtype().suffix());
    let n = x.len();
    check(&kernel, "y", y, x.dtype(), n)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "n", n)?) // int n
        .buf(x) //                     const T* x
        .buf(y) //                     T* y
        .f32(s); //                    float s
                 // SAFETY: x, y hold n elements of T; signature (int, const T*, T*, float).
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(n), 256), &mut args) }
}

/// y = x converted to y's dtype (round to nearest even). Same dtype on both sides is an error.
pub fn cast(dev: &GpuDevice, x: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    let kernel = format!("cast_{}_{}", x.dtype().suffix(), y.dtype().suffix());
    let n = x.len();
    check(&kernel, "y", y, y.dtype(), n)?;
    let mut args = KernelArgs::new();
    args.i32(int(&kernel, "n", n)?) // int n
        .buf(x) //                     const S* x
        .buf(y); //                    D* y
                 // SAFETY: x holds n S, y n D; signature (int, const S*, D*). An unknown dtype pair is a lookup error.
    unsafe { dev.launch(&kernel, LaunchConfig::linear(stride_grid(n), 256), &mut args) }
}

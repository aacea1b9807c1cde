//! Typed launchers, one file per kernel family in `kernels/`. Each checks dtypes and lengths (an error names
//! the kernel and the tensor), picks grid/block/shared bytes, packs the arguments in the order of the C
//! signature and launches. The same code drives the CUDA and the emulated device.

pub mod attention;
pub mod elementwise;
pub mod gemm;
pub mod interp;
pub mod layernorm;
pub mod patch_embed;
pub mod pool;
pub mod select;
pub mod softmax;
pub mod tokens;

use super::{DType, GpuBuffer};
use crate::error::{Error, Result};

/// `buf` must hold `dtype` and at least `len` elements.
pub(crate) fn check(kernel: &str, tensor: &str, buf: &GpuBuffer, dtype: DType, len: usize) -> Result<()> {
    if buf.dtype() != dtype {
        return Err(Error::kernel(kernel, format!("`{tensor}` is {:?}, expected {dtype:?}", buf.dtype())));
    }
    if buf.len() < len {
        return Err(Error::kernel(kernel, format!("`{tensor}` has {} elements, needs {len}", buf.len())));
    }
    Ok(())
}

/// A size as the kernels' `int`.
pub(crate) fn int(kernel: &str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::kernel(kernel, format!("`{what}` = {v} does not fit in an int")))
}

/// Blocks for a grid-stride loop over n elements with 256 threads a block.
pub(crate) fn stride_grid(n: usize) -> u32 {
    n.div_ceil(256).clamp(1, 4096) as u32
}

/// A row count as a grid dimension (at most 2^31 − 1 blocks in x).
pub(crate) fn row_grid(kernel: &str, rows: usize) -> Result<u32> {
    if rows == 0 || rows > i32::MAX as usize {
        return Err(Error::kernel(kernel, format!("{rows} rows")));
    }
    Ok(rows as u32)
}

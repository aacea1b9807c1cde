//! Typed launchers, one file per kernel family in `kernels/`. Each checks dtypes and lengths (an error names
//! the kernel and the tensor), picks grid/block/shared bytes, packs the arguments in the order of the C
//! signature and launches. The same code drives the CUDA and the emulated device.

pub mod attention;
pub mod badge;
pub mod coreset;
pub mod elementwise;
pub mod gemm;
pub mod gemm_sm90;
pub mod interp;
pub mod layernorm;
pub mod patch_embed;
pub mod pool;
pub mod select;
pub mod softmax;
pub mod tokens;
pub mod topk;

use std::sync::OnceLock;

use super::{DType, GpuBuffer};
use crate::error::{Error, Result};

/// What an environment variable that forces a kernel choice holds, read once into `cell`: None when unset, the
/// choice whose label matches, or an error naming the variable and listing the labels.
pub(crate) fn forced_choice<T: Clone>(
    cell: &OnceLock<std::result::Result<Option<T>, String>>,
    var: &str,
    choices: impl FnOnce() -> Vec<(String, T)>,
) -> Result<Option<T>> {
    forced_setting(cell, var, |value| {
        let choices = choices();
        let labels: Vec<&str> = choices.iter().map(|c| c.0.as_str()).collect();
        let unknown = format!("unknown value `{value}`; one of {}", labels.join(", "));
        choices.iter().find(|c| c.0 == value).map(|c| c.1.clone()).ok_or(unknown)
    })
}

/// An environment variable that forces kernel choices, read once into `cell` and parsed by `parse`: None when
/// unset, else what `parse` makes of it, or its error with the variable's name.
pub(crate) fn forced_setting<T: Clone>(
    cell: &OnceLock<std::result::Result<Option<T>, String>>,
    var: &str,
    parse: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let forced = cell.get_or_init(|| std::env::var(var).ok().map(|value| parse(&value)).transpose());
    forced.clone().map_err(|e| Error::invalid(var, e))
}

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

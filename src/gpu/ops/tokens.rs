// TEMPORARY local stand-in, never committed: replaced by the kern branch.
use crate::error::{Error, Result};
use crate::gpu::{GpuBuffer, GpuDevice};
#[allow(clippy::too_many_arguments)]
pub fn assemble_tokens(
    _: &GpuDevice,
    _: usize,
    _: usize,
    _: usize,
    _: &GpuBuffer,
    _: &GpuBuffer,
    _: &GpuBuffer,
    _: &GpuBuffer,
) -> Result<()> {
    Err(Error::invalid("x", "y"))
}
#[allow(clippy::too_many_arguments)]
pub fn embedding(
    _: &GpuDevice,
    _: usize,
    _: usize,
    _: usize,
    _: &GpuBuffer,
    _: &GpuBuffer,
    _: usize,
    _: &GpuBuffer,
    _: &GpuBuffer,
) -> Result<()> {
    Err(Error::invalid("x", "y"))
}
pub fn l2_normalize(_: &GpuDevice, _: usize, _: usize, _: &GpuBuffer, _: &GpuBuffer) -> Result<()> {
    Err(Error::invalid("x", "y"))
}
pub fn copy_cols(_: &GpuDevice, _: usize, _: usize, _: &GpuBuffer, _: usize, _: usize, _: &GpuBuffer) -> Result<()> {
    Err(Error::invalid("x", "y"))
}

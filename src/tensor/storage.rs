//! Where a tensor's values live.

use std::sync::Arc;

use memmap2::Mmap;

use crate::device::Device;
use crate::gpu::{GpuBuffer, GpuDevice};

/// Device-specific storage. Each backend adds one variant.
#[derive(Clone)]
pub enum Storage {
    Cpu(CpuStorage),
    /// A buffer on a CUDA device or on the `cuda-emu` emulator (bf16 activations and weights; f32 inputs).
    Gpu(GpuStorage),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(g) => Device::Gpu(g.device.clone()),
        }
    }
}

#[derive(Clone)]
pub struct GpuStorage {
    pub device: GpuDevice,
    pub buffer: GpuBuffer,
}

/// f32 values in host memory: owned, or borrowed zero-copy from a memory-mapped file.
#[derive(Clone)]
pub enum CpuStorage {
    Owned(Arc<Vec<f32>>),
    /// `len` f32 values at `byte_offset` (4-byte aligned) inside `map`.
    Mapped {
        map: Arc<Mmap>,
        byte_offset: usize,
        len: usize,
    },
}

impl CpuStorage {
    pub fn owned(data: Vec<f32>) -> Self {
        CpuStorage::Owned(Arc::new(data))
    }

    pub fn as_slice(&self) -> &[f32] {
        match self {
            CpuStorage::Owned(v) => v.as_slice(),
            CpuStorage::Mapped { map, byte_offset, len } => {
                let bytes = &map[*byte_offset..*byte_offset + len * 4];
                bytemuck::cast_slice(bytes)
            }
        }
    }
}

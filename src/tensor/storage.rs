//! Where a tensor's values live.

use std::sync::Arc;

use memmap2::Mmap;

use crate::device::Device;

/// Device-specific storage. Each backend adds one variant.
#[derive(Clone)]
pub enum Storage {
    Cpu(CpuStorage),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }
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

//! Devices a tensor can live on, and how the CLI's `--device` is resolved.
//!
//! `cpu` is the f32 reference backend (rayon + gemm). `cuda` runs the NVRTC-compiled kernels of `kernels/*.cu`
//! on an NVIDIA GPU; `cuda-emu` runs the same sources compiled by g++ on the CPU (builds with the `cuda-emu`
//! feature). Both GPU kinds are a `GpuDevice`; asking for one that is not there is an error, never a panic.

use crate::error::Result;
use crate::gpu::{DType, GpuDevice};

#[derive(Clone, Debug)]
pub enum Device {
    Cpu,
    Gpu(GpuDevice),
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => a.same_as(b),
            _ => false,
        }
    }
}

/// `--dtype`: how a GPU stores weights and activations (math is f32 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StorageDtype {
    #[default]
    Bf16,
    F16,
}

impl From<StorageDtype> for DType {
    fn from(d: StorageDtype) -> DType {
        match d {
            StorageDtype::Bf16 => DType::Bf16,
            StorageDtype::F16 => DType::F16,
        }
    }
}

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    Cpu,
    Cuda,
    CudaEmu,
    Auto,
}

impl Device {
    /// Resolve a request to a device. `auto` takes the first CUDA GPU when a driver and a GPU are present, else
    /// the CPU, and says which on stderr.
    pub fn open(kind: DeviceKind) -> Result<Device> {
        match kind {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => Ok(Device::Gpu(GpuDevice::cuda(0)?)),
            DeviceKind::CudaEmu => Ok(Device::Gpu(GpuDevice::emu()?)),
            DeviceKind::Auto => match GpuDevice::cuda(0) {
                Ok(gpu) => {
                    eprintln!("device: cuda ({})", gpu.name());
                    Ok(Device::Gpu(gpu))
                }
                Err(why) => {
                    eprintln!("device: cpu ({why})");
                    Ok(Device::Cpu)
                }
            },
        }
    }

    /// `open` with the GPU storage dtype chosen by `--dtype` (ignored on the CPU, which is f32).
    pub fn open_with(kind: DeviceKind, dtype: StorageDtype) -> Result<Device> {
        Ok(match Device::open(kind)? {
            Device::Gpu(g) => Device::Gpu(g.with_storage(dtype.into())?),
            cpu => cpu,
        })
    }

    /// How weights and activations are stored here: f32 on the CPU, bf16 on a GPU (f32 accumulation).
    pub fn storage_dtype(&self) -> DType {
        match self {
            Device::Cpu => DType::F32,
            Device::Gpu(g) => g.storage_dtype(),
        }
    }

    /// Waits until all work queued on this device is done (a no-op on the CPU, whose ops are synchronous).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(g) => g.synchronize(),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu".to_string(),
            Device::Gpu(g) => g.name(),
        }
    }
}

//! Devices a tensor can live on, and how the CLI's `--device` is resolved.
//!
//! `cpu` is the f32 reference backend (rayon + gemm). The `cuda` backend (NVRTC-compiled kernels from
//! `kernels/*.cu`) and `cuda-emu` (the same sources compiled by g++ and run on the CPU) plug in here as further
//! variants; until they are built, asking for them is a clear `DeviceUnavailable` error, never a panic.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
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
    /// Resolve a request to a device. `auto` falls back to the CPU when no CUDA device can be opened and says so
    /// on stderr.
    pub fn open(kind: DeviceKind) -> Result<Device> {
        match kind {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => Err(Error::DeviceUnavailable {
                device: "cuda".into(),
                reason: "this build has no CUDA backend yet".into(),
            }),
            DeviceKind::CudaEmu => Err(Error::DeviceUnavailable {
                device: "cuda-emu".into(),
                reason: "this build has no CUDA emulation backend yet".into(),
            }),
            DeviceKind::Auto => {
                eprintln!("device: cpu (no CUDA backend in this build)");
                Ok(Device::Cpu)
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
        }
    }
}

//! `Tensor`: a shape over contiguous, row-major f32 storage that lives on one device.
//!
//! Storage is shared (`Arc`) and immutable once built, so cloning and reshaping are free. On the CPU a tensor is
//! either owned or a zero-copy view into a memory-mapped checkpoint. Device backends add their own storage
//! variants; ops dispatch on the variant so that model code is written once.

mod storage;

pub use storage::{CpuStorage, GpuStorage, Storage};

use std::sync::Arc;

use crate::autograd::Node;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::DType;

#[derive(Clone)]
pub struct Tensor {
    storage: Storage,
    shape: Vec<usize>,
    /// Where the tensor came from when a gradient must flow through it (`crate::autograd`); `None` for frozen
    /// weights and everything computed from them alone.
    node: Option<Arc<Node>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.device())
    }
}

impl Tensor {
    /// A CPU tensor that owns `data`; errors if the element count does not match the shape.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if data.len() != numel {
            return Err(Error::shape("from_vec", format!("{} values for shape {shape:?}", data.len())));
        }
        Ok(Tensor { storage: Storage::Cpu(CpuStorage::owned(data)), shape: shape.to_vec(), node: None })
    }

    pub(crate) fn from_storage(storage: Storage, shape: Vec<usize>) -> Tensor {
        Tensor { storage, shape, node: None }
    }

    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    pub(crate) fn with_node(mut self, node: Arc<Node>) -> Tensor {
        self.node = Some(node);
        self
    }

    /// Whether gradients flow through this tensor: it is a variable (`variable`) or was computed from one.
    pub fn is_tracked(&self) -> bool {
        self.node.is_some()
    }

    /// The same values with no gradient history: a constant to whatever is computed from it.
    pub fn detach(&self) -> Tensor {
        Tensor { storage: self.storage.clone(), shape: self.shape.clone(), node: None }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the last dimension (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Number of rows when the tensor is viewed as `[numel / last_dim, last_dim]`.
    pub fn rows(&self) -> usize {
        self.numel() / self.last_dim().max(1)
    }

    pub fn device(&self) -> Device {
        self.storage.device()
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The same storage under another shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return Err(Error::shape("reshape", format!("{:?} -> {shape:?}", self.shape)));
        }
        let out = Tensor { storage: self.storage.clone(), shape: shape.to_vec(), node: None };
        Ok(crate::autograd::record(out, &[self], || crate::autograd::Reshape::of(self)))
    }

    /// The values of a CPU tensor, borrowed. Device tensors must be copied with `to_vec`.
    pub fn cpu_slice(&self) -> Result<&[f32]> {
        match &self.storage {
            Storage::Cpu(s) => Ok(s.as_slice()),
            Storage::Gpu(_) => Err(Error::invalid("tensor", "values are on the GPU; copy them with to_vec")),
        }
    }

    /// The device buffer of a GPU tensor.
    pub fn gpu(&self) -> Option<&GpuStorage> {
        match &self.storage {
            Storage::Gpu(g) => Some(g),
            Storage::Cpu(_) => None,
        }
    }

    /// A host copy of the values, whatever the device.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Cpu(s) => Ok(s.as_slice().to_vec()),
            Storage::Gpu(g) => g.device.download(&g.buffer),
        }
    }

    /// This tensor on `device`, exactly (f32 on a GPU); no copy when it is already there.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        self.to_device_as(device, DType::F32)
    }

    /// This tensor on `device`, stored as `dtype` there (the CPU always holds f32).
    pub fn to_device_as(&self, device: &Device, dtype: DType) -> Result<Tensor> {
        match (device, &self.storage) {
            (Device::Cpu, Storage::Cpu(_)) => Ok(self.clone()),
            (Device::Gpu(d), Storage::Gpu(g)) if g.buffer.dtype() == dtype && d.same_as(&g.device) => Ok(self.clone()),
            (Device::Cpu, Storage::Gpu(_)) => Tensor::from_vec(self.to_vec()?, &self.shape),
            (Device::Gpu(d), storage) => {
                // Host tensors (weights in an mmap included) are encoded straight from their slice: no extra copy.
                let buffer = match storage {
                    Storage::Cpu(c) => d.upload(c.as_slice(), dtype)?,
                    Storage::Gpu(_) => d.upload(&self.to_vec()?, dtype)?,
                };
                Ok(Tensor::from_storage(Storage::Gpu(GpuStorage { device: d.clone(), buffer }), self.shape.clone()))
            }
        }
    }

    /// Dimensions as a fixed-size array, or a shape error naming `op`.
    pub fn dims<const N: usize>(&self, op: &'static str) -> Result<[usize; N]> {
        <[usize; N]>::try_from(self.shape.as_slice())
            .map_err(|_| Error::shape(op, format!("expected rank {N}, got shape {:?}", self.shape)))
    }
}

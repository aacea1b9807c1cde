//! The GPU backend: hand-written kernels from `kernels/*.cu`, launched on a real GPU through the CUDA driver
//! (`cuda`, kernels compiled by NVRTC) or on the CPU by the `cuda-emu` emulator (the same sources compiled by
//! g++ against `kernels/emu.h`). Both runtimes sit behind one [`GpuDevice`] handle and share every launcher in
//! [`ops`]: grid, block, shared-memory bytes and `void**` argument packing are identical.
//!
//! ```no_run
//! # fn main() -> cpeal::Result<()> {
//! use cpeal::gpu::{DType, GpuDevice};
//! let dev = GpuDevice::emu()?; // or GpuDevice::cuda(0)?
//! let x = dev.upload(&[1.0, -2.0, 3.0], DType::Bf16)?;
//! let y = dev.alloc(DType::Bf16, 3)?;
//! cpeal::gpu::ops::elementwise::gelu(&dev, &x, &y)?;
//! println!("{:?}", dev.download(&y)?);
//! # Ok(()) }
//! ```

mod args;
pub mod cublas;
pub mod cuda;
pub mod emu;
mod emu_memory;
pub mod nvrtc;
pub mod nvrtc_check;
pub mod occupancy;
pub mod ops;
mod pinned;
mod profile;
pub mod reference;
pub mod scan;
pub mod selftest;
pub mod sources;
mod transfer;

use std::ffi::c_void;
use std::sync::Arc;

pub use args::KernelArgs;

use crate::error::{Error, Result};

/// Element type of a [`GpuBuffer`]. Kernels compute in f32 whatever the storage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    Bf16,
    F16,
    /// 32-bit signed integers (indices); host values are converted to and from f32.
    I32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::Bf16 | DType::F16 => 2,
        }
    }

    /// The suffix of kernel names (`layernorm_fwd_bf16`).
    pub fn suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::I32 => "i32",
        }
    }

    /// Host f32 values in this storage type (round to nearest even).
    pub fn encode(self, data: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; data.len() * self.size()];
        self.encode_into(data, &mut out);
        out
    }

    /// `encode` into `out`, which holds exactly `data.len()` elements of this type.
    pub fn encode_into(self, data: &[f32], out: &mut [u8]) {
        assert_eq!(out.len(), data.len() * self.size(), "encode_into: output length");
        match self {
            DType::F32 => out.copy_from_slice(bytemuck::cast_slice(data)),
            DType::Bf16 => {
                for (o, &v) in out.chunks_exact_mut(2).zip(data) {
                    o.copy_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes());
                }
            }
            DType::F16 => {
                for (o, &v) in out.chunks_exact_mut(2).zip(data) {
                    o.copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
                }
            }
            DType::I32 => {
                for (o, &v) in out.chunks_exact_mut(4).zip(data) {
                    o.copy_from_slice(&(v as i32).to_le_bytes());
                }
            }
        }
    }

    /// Bytes of this storage type back to f32.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        let mut out = vec![0f32; bytes.len() / self.size()];
        self.decode_into(bytes, &mut out);
        out
    }

    /// `decode` into `out`, which receives exactly `bytes.len() / size` values.
    pub fn decode_into(self, bytes: &[u8], out: &mut [f32]) {
        assert_eq!(out.len(), bytes.len() / self.size(), "decode_into: output length");
        match self {
            DType::F32 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            DType::Bf16 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
            }
            DType::F16 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
            }
            DType::I32 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32;
                }
            }
        }
    }

    /// Round f32 values through this type (what a kernel storing in this type produces at best).
    pub fn round(self, data: &[f32]) -> Vec<f32> {
        self.decode(&self.encode(data))
    }
}

/// Grid, block and dynamic shared memory of one launch, as `cuLaunchKernel` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

impl LaunchConfig {
    /// A 1-D grid of `grid` blocks of `block` threads, no dynamic shared memory.
    pub fn linear(grid: u32, block: u32) -> Self {
        LaunchConfig { grid: (grid, 1, 1), block: (block, 1, 1), shared_bytes: 0 }
    }
}

/// What a device runtime provides; pointers are device addresses (host addresses under emulation).
pub(crate) trait Runtime: Send + Sync {
    fn name(&self) -> String;
    fn is_emu(&self) -> bool {
        false
    }
    /// The device's `sm_XY`; None under emulation.
    fn arch(&self) -> Option<String> {
        None
    }
    /// A TMA descriptor (CUtensorMap) for a row-major [rows, cols] 16-bit matrix at `ptr` with row stride `ld`
    /// elements, read in boxes of `box_rows` x 64 columns into the 128-byte swizzle. Hopper GPUs only.
    fn tensor_map_2d(&self, _map: &TensorMapSpec) -> Result<[u64; 16]> {
        Err(Error::invalid("tensor map", format!("{} has no tensor memory accelerator", self.name())))
    }
    /// Streaming multiprocessors: the grid of a persistent kernel.
    fn sm_count(&self) -> u32;
    /// Compiles every kernel file for this device ahead of use, in parallel, into the kernel cache (a cold
    /// cache then costs the slowest file, not the sum). Nothing to do under emulation.
    fn precompile(&self) -> Result<()> {
        Ok(())
    }
    /// How many clusters of `kernel` (whose `__cluster_dims__` gives their size) can run at once with `cfg`'s
    /// block and shared memory: the grid of a persistent kernel in clusters. The emulator has no limit but
    /// its SM count (clusters of 2).
    fn max_active_clusters(&self, _kernel: &str, _cfg: &LaunchConfig) -> Result<u32> {
        Ok(self.sm_count().div_ceil(2))
    }
    /// Blocks of `kernel` under `cfg` that one SM holds at once: the driver's count on a GPU, registers and static
    /// shared memory included. The emulator has none to give: `occupancy::check` holds its launches to the
    /// sm_90 and sm_80 limits itself.
    fn resident_blocks(&self, kernel: &str, _cfg: &LaunchConfig) -> Result<u32> {
        Err(Error::kernel(kernel, format!("{} counts no resident blocks", self.name())))
    }
    fn alloc(&self, bytes: usize) -> Result<u64>;
    /// # Safety
    /// `ptr` came from `alloc(bytes)` of this runtime and is not used afterwards.
    unsafe fn free(&self, ptr: u64, bytes: usize);
    /// Copies `bytes` bytes to `dst`, ordered after all queued work. `fill(offset, chunk)` writes source bytes
    /// `offset..offset + chunk.len()` into `chunk`; chunks come in order and never split an element. Returns
    /// once `fill` has run for every chunk; the copy may still be in flight.
    fn upload(&self, dst: u64, bytes: usize, fill: transfer::Fill) -> Result<()>;
    /// Copies `bytes` bytes from `src` once all queued work is done; `sink(offset, chunk)` receives source
    /// bytes `offset..offset + chunk.len()`, in order and never splitting an element.
    fn download(&self, src: u64, bytes: usize, sink: transfer::Sink) -> Result<()>;
    fn fill_bytes(&self, dst: u64, bytes: usize, value: u8) -> Result<()>;
    /// # Safety
    /// `params` point at values matching the kernel's C signature; pointers in them are live allocations of
    /// this runtime that are large enough for what the kernel touches.
    unsafe fn launch(&self, kernel: &str, cfg: &LaunchConfig, params: &mut [*mut c_void]) -> Result<()>;
    /// `launch`, profiled under `<kernel> <tag>` where the runtime profiles.
    ///
    /// # Safety
    /// As `launch`.
    unsafe fn launch_tagged(
        &self,
        kernel: &str,
        _tag: &str,
        cfg: &LaunchConfig,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.launch(kernel, cfg, params) }
    }
    fn synchronize(&self) -> Result<()>;
}

/// A GPU (or emulated GPU): a cheap, clonable handle.
#[derive(Clone)]
pub struct GpuDevice {
    rt: Arc<dyn Runtime>,
    /// How models store weights and activations on this device (bf16 by default, f16 as an option).
    storage: DType,
    /// Every kernel launched through this device and its clones: what a run used (`launched_kernels`).
    launched: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// The launches whose occupancy was checked against their launch bounds (`occupancy::check`).
    occupancy_checked: Arc<occupancy::Checked>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuDevice({})", self.rt.name())
    }
}

impl GpuDevice {
    /// CUDA device `ordinal` through the driver API; kernels compiled by NVRTC on first use.
    pub fn cuda(ordinal: usize) -> Result<Self> {
        Ok(Self::over(Arc::new(cuda::CudaRuntime::new(ordinal)?)))
    }

    /// The CPU emulator (needs the `cuda-emu` feature; otherwise `DeviceUnavailable`).
    pub fn emu() -> Result<Self> {
        Ok(Self::over(Arc::new(emu::EmuRuntime::new()?)))
    }

    fn over(rt: Arc<dyn Runtime>) -> Self {
        GpuDevice { rt, storage: DType::Bf16, launched: Default::default(), occupancy_checked: Default::default() }
    }

    /// The names of the kernels launched so far through this device (and its clones), sorted: which variants
    /// the automatic choices and the `CPEAL_*` settings actually gave.
    pub fn launched_kernels(&self) -> Vec<String> {
        self.launched.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// e.g. `cuda:0 (NVIDIA H100, sm_90)` or `cuda-emu`.
    pub fn name(&self) -> String {
        self.rt.name()
    }

    /// Whether this is the CPU emulator.
    /// The same device with models stored as `dtype` (bf16 or f16).
    pub fn with_storage(mut self, dtype: DType) -> Result<GpuDevice> {
        if !matches!(dtype, DType::Bf16 | DType::F16) {
            return Err(Error::invalid("--dtype", format!("{dtype:?}: GPU storage is bf16 or f16")));
        }
        self.storage = dtype;
        Ok(self)
    }

    pub fn storage_dtype(&self) -> DType {
        self.storage
    }

    /// Whether both handles drive the same runtime instance.
    pub fn same_as(&self, other: &GpuDevice) -> bool {
        Arc::ptr_eq(&self.rt, &other.rt)
    }

    pub fn is_emu(&self) -> bool {
        self.rt.is_emu()
    }

    /// A TMA descriptor for `buf` viewed as a row-major [rows, cols] matrix (Hopper only): see [`TensorMapSpec`].
    pub fn tensor_map_2d(
        &self,
        buf: &GpuBuffer,
        rows: usize,
        cols: usize,
        ld: usize,
        box_rows: usize,
    ) -> Result<[u64; 16]> {
        if !matches!(buf.dtype(), DType::Bf16 | DType::F16) || ld < cols || buf.len() < (rows.max(1) - 1) * ld + cols {
            return Err(Error::invalid("tensor map", format!("{rows}x{cols} (ld {ld}) does not fit {buf:?}")));
        }
        let spec = TensorMapSpec { ptr: buf.ptr(), bf16: buf.dtype() == DType::Bf16, rows, cols, ld, box_rows };
        spec.check()?;
        self.rt.tensor_map_2d(&spec)
    }

    /// The GPU's compute capability as `sm_XY`; None for the emulator.
    pub fn arch(&self) -> Option<String> {
        self.rt.arch()
    }

    /// Whether the Hopper kernels (`kernels/*_sm90.cu`) run here: on an sm_90 GPU, and in the emulator.
    pub fn runs_hopper_kernels(&self) -> bool {
        self.is_emu() || self.arch().as_deref() == Some("sm_90")
    }

    /// Streaming multiprocessors (the emulator reports 3, so that each block of a persistent kernel takes
    /// several tiles in tests).
    pub fn sm_count(&self) -> u32 {
        self.rt.sm_count()
    }

    /// Compiles every kernel file for this device into the kernel cache now, in parallel (a GPU's first run).
    pub fn precompile(&self) -> Result<()> {
        self.rt.precompile()
    }

    /// Clusters of `kernel` that fit the device at once with `cfg`'s block and shared memory (at least 1).
    pub fn max_active_clusters(&self, kernel: &str, cfg: &LaunchConfig) -> Result<u32> {
        self.rt.max_active_clusters(kernel, cfg).map(|n| n.max(1))
    }

    /// An uninitialised buffer of `len` elements.
    pub fn alloc(&self, dtype: DType, len: usize) -> Result<GpuBuffer> {
        let bytes = len * dtype.size();
        let ptr = self.rt.alloc(bytes)?;
        Ok(GpuBuffer { alloc: Arc::new(Allocation { rt: self.rt.clone(), ptr, bytes }), offset: 0, dtype, len })
    }

    /// Copy host f32 values to a new buffer of type `dtype`. Returns once `data` has been read; on CUDA the copy
    /// itself may still be queued, ordered before any later work.
    pub fn upload(&self, data: &[f32], dtype: DType) -> Result<GpuBuffer> {
        let buf = self.alloc(dtype, data.len())?;
        let size = dtype.size();
        self.rt.upload(buf.ptr(), buf.bytes(), &mut |offset, chunk| {
            transfer::encode_par(dtype, &data[offset / size..][..chunk.len() / size], chunk)
        })?;
        Ok(buf)
    }

    /// Copy bytes already in `dtype`'s device layout (little-endian f32, bf16, f16 or i32) to a new buffer, e.g.
    /// half-precision data as stored on disk; `bytes.len()` must be a multiple of the element size.
    pub fn upload_bytes(&self, bytes: &[u8], dtype: DType) -> Result<GpuBuffer> {
        if bytes.len() % dtype.size() != 0 {
            return Err(Error::invalid("upload", format!("{} bytes are not whole {dtype:?} elements", bytes.len())));
        }
        let buf = self.alloc(dtype, bytes.len() / dtype.size())?;
        self.rt.upload(buf.ptr(), bytes.len(), &mut |offset, chunk| {
            chunk.copy_from_slice(&bytes[offset..][..chunk.len()])
        })?;
        Ok(buf)
    }

    /// An I32 buffer holding `data` exactly (`upload` converts from f32, exact only up to 2^24).
    pub fn upload_i32(&self, data: &[i32]) -> Result<GpuBuffer> {
        self.upload_bytes(bytemuck::cast_slice(data), DType::I32)
    }

    /// Copy an I32 buffer back to the host exactly (waits for pending work).
    pub fn download_i32(&self, buf: &GpuBuffer) -> Result<Vec<i32>> {
        if buf.dtype() != DType::I32 {
            return Err(Error::invalid("download_i32", format!("the buffer holds {:?}", buf.dtype())));
        }
        let mut out = vec![0i32; buf.len()];
        self.rt.download(buf.ptr(), buf.bytes(), &mut |offset, chunk| {
            for (o, c) in out[offset / 4..].iter_mut().zip(chunk.chunks_exact(4)) {
                *o = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        })?;
        Ok(out)
    }

    /// Copy a buffer back to the host as f32 (waits for pending work).
    pub fn download(&self, buf: &GpuBuffer) -> Result<Vec<f32>> {
        let (dtype, size) = (buf.dtype(), buf.dtype().size());
        let mut out = vec![0f32; buf.len()];
        self.rt.download(buf.ptr(), buf.bytes(), &mut |offset, chunk| {
            transfer::decode_par(dtype, chunk, &mut out[offset / size..][..chunk.len() / size])
        })?;
        Ok(out)
    }

    /// Fill with all-ones bytes: NaN in f32, bf16 and f16. Tests poison outputs with this before a launch.
    pub fn poison(&self, buf: &GpuBuffer) -> Result<()> {
        self.rt.fill_bytes(buf.ptr(), buf.bytes(), 0xff)
    }

    /// Launch `kernel` with `args` packed as for `cuLaunchKernel`.
    ///
    /// # Safety
    /// `args` must match the kernel's C signature in order and type, and every buffer it names must be large
    /// enough for the elements the kernel touches under `cfg`. Typed launchers in [`ops`] check this.
    pub unsafe fn launch(&self, kernel: &str, cfg: LaunchConfig, args: &mut KernelArgs) -> Result<()> {
        let (g, b) = (cfg.grid, cfg.block);
        if g.0 == 0 || g.1 == 0 || g.2 == 0 || b.0 * b.1 * b.2 == 0 || b.0 * b.1 * b.2 > 1024 {
            return Err(Error::kernel(kernel, format!("invalid launch {cfg:?}")));
        }
        let mut launched = self.launched.lock().unwrap_or_else(|p| p.into_inner());
        if !launched.contains(kernel) {
            launched.insert(kernel.to_string());
        }
        drop(launched);
        occupancy::check(&*self.rt, kernel, &cfg, &self.occupancy_checked)?;
        let tag = args.take_tag();
        let mut params = args.params();
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match &tag {
                Some(tag) => self.rt.launch_tagged(kernel, tag, &cfg, &mut params),
                None => self.rt.launch(kernel, &cfg, &mut params),
            }
        }
    }

    /// Wait for all launched work.
    pub fn synchronize(&self) -> Result<()> {
        self.rt.synchronize()
    }
}

/// What a TMA descriptor describes: a row-major [rows, cols] bf16/f16 matrix at device address `ptr` with a row
/// stride of `ld` elements, loaded in boxes of `box_rows` rows x 64 columns (128 bytes, the swizzle width).
#[derive(Clone, Copy, Debug)]
pub struct TensorMapSpec {
    pub ptr: u64,
    pub bf16: bool,
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
    pub box_rows: usize,
}

impl TensorMapSpec {
    /// cuTensorMapEncodeTiled's rules for this map (16-byte aligned base and row stride, boxes of 1 to 256 rows),
    /// checked on every runtime, so that the emulator refuses what the driver would.
    pub fn check(&self) -> Result<()> {
        let fault = |what: String| Err(Error::invalid("tensor map", format!("{what}: {self:?}")));
        if self.ptr % 16 != 0 {
            return fault(format!("base address {:#x} is not 16-byte aligned", self.ptr));
        }
        if (self.ld * 2) % 16 != 0 {
            return fault(format!("row stride of {} bytes is not a multiple of 16", self.ld * 2));
        }
        if self.rows == 0 || self.cols == 0 || !(1..=256).contains(&self.box_rows) {
            return fault("empty matrix, or a box of other than 1 to 256 rows".into());
        }
        Ok(())
    }
}

/// One device allocation, freed when the last buffer viewing it goes away.
struct Allocation {
    rt: Arc<dyn Runtime>,
    ptr: u64,
    bytes: usize,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: ptr came from rt.alloc(bytes) and the last view of it is going away.
        unsafe { self.rt.free(self.ptr, self.bytes) }
    }
}

/// `len` elements of one dtype in device memory: a whole allocation or a view into one ([`GpuBuffer::slice`]).
/// Clones share the allocation.
#[derive(Clone)]
pub struct GpuBuffer {
    alloc: Arc<Allocation>,
    /// Offset of element 0 from the allocation's start, in elements of `dtype`.
    offset: usize,
    dtype: DType,
    len: usize,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({:?} x {} at +{})", self.dtype, self.len, self.offset)
    }
}

impl GpuBuffer {
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn bytes(&self) -> usize {
        self.len * self.dtype.size()
    }
    /// The device address of element 0 (a host address under emulation).
    pub fn ptr(&self) -> u64 {
        self.alloc.ptr + (self.offset * self.dtype.size()) as u64
    }

    /// A view of elements `start .. start + len` sharing this allocation, e.g. the k part of a fused qkv
    /// projection (then pass the fused row stride to the kernel).
    pub fn slice(&self, start: usize, len: usize) -> Result<GpuBuffer> {
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Error::invalid("GpuBuffer::slice", format!("{start}..{start}+{len} outside 0..{}", self.len)));
        }
        Ok(GpuBuffer { alloc: self.alloc.clone(), offset: self.offset + start, dtype: self.dtype, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_without_a_driver_is_an_error_not_a_panic() {
        let r = GpuDevice::cuda(0);
        // SAFETY: only tries to dlopen libcuda.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            assert!(matches!(r, Err(Error::DeviceUnavailable { .. })));
        }
        assert!(matches!(GpuDevice::cuda(usize::MAX >> 1), Err(Error::DeviceUnavailable { .. })));
    }

    #[test]
    fn dtype_round_trips() {
        let v = [1.0f32, -2.5, 3.140625, 65504.0];
        for dt in [DType::F32, DType::Bf16, DType::F16] {
            assert_eq!(dt.decode(&dt.encode(&v)), dt.round(&v));
            assert_eq!(dt.round(&dt.round(&v)), dt.round(&v));
        }
        assert_eq!(DType::I32.round(&[7.0, -3.0]), vec![7.0, -3.0]);
    }

    #[cfg(feature = "cuda-emu")]
    #[test]
    fn slices_view_the_same_allocation() {
        let dev = GpuDevice::emu().unwrap();
        let b = dev.upload(&[1.0, 2.0, 3.0, 4.0, 5.0], DType::F32).unwrap();
        let s = b.slice(1, 3).unwrap();
        assert_eq!(s.ptr(), b.ptr() + 4);
        assert_eq!(dev.download(&s).unwrap(), vec![2.0, 3.0, 4.0]);
        assert_eq!(dev.download(&s.slice(2, 1).unwrap()).unwrap(), vec![4.0]);
        assert!(b.slice(3, 3).is_err() && b.slice(usize::MAX, 2).is_err());
        drop(b);
        assert_eq!(dev.download(&s).unwrap(), vec![2.0, 3.0, 4.0], "a view keeps the allocation alive");
    }

    #[cfg(feature = "cuda-emu")]
    #[test]
    fn large_copies_round_trip_exactly() {
        let dev = GpuDevice::emu().unwrap();
        let v: Vec<f32> = (0..(transfer::CHUNK / 2 + 3)).map(|i| (i % 4099) as f32 * 0.731 - 1500.0).collect();
        for dt in [DType::F32, DType::Bf16, DType::F16] {
            let b = dev.upload(&v, dt).unwrap();
            assert!(dev.download(&b).unwrap() == dt.round(&v), "{dt:?}");
        }
        assert!(dev.download(&dev.upload(&[], DType::Bf16).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn kernel_args_pack_values_in_order() {
        let mut a = KernelArgs::new();
        a.i32(-5).f32(1.5).u32(7);
        let p = a.params();
        // SAFETY: each pointer points at an 8-byte slot holding the value pushed.
        unsafe {
            assert_eq!(*(p[0] as *const i32), -5);
            assert_eq!(*(p[1] as *const f32), 1.5);
            assert_eq!(*(p[2] as *const u32), 7);
        }
    }

    #[test]
    fn a_tensor_map_is_one_parameter_of_128_contiguous_bytes() {
        let words: [u64; 16] = std::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1));
        let mut a = KernelArgs::new();
        a.i32(3).tensor_map(&words).i32(9).tensor_map(&words).f32(2.0);
        assert_eq!(a.len(), 5);
        let p = a.params();
        assert_eq!(p.len(), 5);
        // SAFETY: p[1] and p[3] point at 16 consecutive slots; the others at one slot each.
        unsafe {
            assert_eq!(*(p[0] as *const i32), 3);
            assert_eq!(std::slice::from_raw_parts(p[1] as *const u64, 16), &words);
            assert_eq!(*(p[2] as *const i32), 9);
            assert_eq!(std::slice::from_raw_parts(p[3] as *const u64, 16), &words);
            assert_eq!(*(p[4] as *const f32), 2.0);
        }
    }
}

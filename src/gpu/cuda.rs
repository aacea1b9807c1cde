//! The CUDA runtime over cudarc's driver layer. Kernel files are compiled by NVRTC on first use, straight to
//! CUBIN for the device's own `sm_XY` (no PTX-version skew with the driver), cached on disk under
//! `$XDG_CACHE_HOME/cpeal/kernels` (else `~/.cache/cpeal/kernels`) keyed by source hash + arch + NVRTC
//! version, and loaded once per process. All work goes to the legacy default stream of the primary context;
//! host copies go through pinned memory asynchronously on that stream (`pinned.rs`).

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::path::PathBuf;
use std::sync::Mutex;

use cudarc::driver::{result, sys};

use super::pinned::Copies;
use super::profile::Profiler;
use super::transfer::{Fill, Sink};
use super::{nvrtc, sources, LaunchConfig, Runtime, TensorMapSpec};
use crate::error::{Error, Result};

pub struct CudaRuntime {
    ordinal: usize,
    ctx: sys::CUcontext,
    name: String,
    arch: String,
    max_smem_optin: i32,
    sm_count: u32,
    functions: Mutex<HashMap<String, sys::CUfunction>>,
    modules: Mutex<HashMap<&'static str, sys::CUmodule>>,
    /// `max_active_clusters` per (kernel, threads per block, shared bytes): asked once, not per launch.
    clusters: Mutex<HashMap<(String, u32, u32), u32>>,
    profiler: Option<Profiler>,
    /// Pinned staging for host copies (see `pinned.rs`).
    copies: Copies,
}

// SAFETY: CUcontext/CUmodule/CUfunction are driver handles usable from any thread once the context is made
// current there (every entry point below does so); the maps are behind mutexes.
unsafe impl Send for CudaRuntime {}
// SAFETY: as above.
unsafe impl Sync for CudaRuntime {}

fn unavailable(reason: impl Into<String>) -> Error {
    Error::DeviceUnavailable { device: "cuda".into(), reason: reason.into() }
}

pub(super) fn drv(what: &str, e: result::DriverError) -> Error {
    Error::invalid("cuda", format!("{what}: {e:?}"))
}

impl CudaRuntime {
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only tries to dlopen libcuda; cudarc panics on any call if it is missing, hence this guard.
        if !unsafe { sys::is_culib_present() } {
            return Err(unavailable("libcuda.so not found (no NVIDIA driver)"));
        }
        result::init().map_err(|e| unavailable(format!("cuInit: {e:?}")))?;
        let count = result::device::get_count().map_err(|e| unavailable(format!("cuDeviceGetCount: {e:?}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(unavailable(format!("device {ordinal} requested, {count} present")));
        }
        let dev = result::device::get(ordinal as i32).map_err(|e| unavailable(format!("cuDeviceGet: {e:?}")))?;
        let attr = |a| {
            // SAFETY: dev came from device::get.
            unsafe { result::device::get_attribute(dev, a) }.map_err(|e| drv("cuDeviceGetAttribute", e))
        };
        use sys::CUdevice_attribute::*;
        let major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let max_smem_optin = attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
        let sm_count = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32;
        if major < 8 {
            return Err(unavailable(format!("compute capability {major}.{minor}; the kernels need sm_80 or newer")));
        }
        nvrtc::load()?;
        // SAFETY: dev is valid; the primary context is retained for the life of the process.
        let ctx = unsafe { result::primary_ctx::retain(dev) }.map_err(|e| drv("cuDevicePrimaryCtxRetain", e))?;
        let gpu = result::device::get_name(dev).unwrap_or_else(|_| "unknown GPU".into());
        keep_pool_memory(dev);
        Ok(CudaRuntime {
            ordinal,
            ctx,
            name: gpu,
            arch: format!("sm_{major}{minor}"),
            max_smem_optin,
            sm_count,
            functions: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            clusters: Mutex::new(HashMap::new()),
            profiler: Profiler::from_env(),
            copies: Copies::default(),
        })
    }

    /// Launches `kernel`, profiled as `span`.
    ///
    /// # Safety
    /// `params` match the kernel's signature (`Runtime::launch`).
    unsafe fn launch_as(&self, kernel: &str, span: &str, cfg: &LaunchConfig, params: &mut [*mut c_void]) -> Result<()> {
        let f = self.function_for(kernel, cfg)?;
        // SAFETY: params match the kernel signature (caller's contract); null stream = legacy default stream.
        self.timed(span, || unsafe {
            result::launch_kernel(f, cfg.grid, cfg.block, cfg.shared_bytes, std::ptr::null_mut(), params)
        })
        .map_err(|e| Error::kernel(kernel, format!("cuLaunchKernel {cfg:?}: {e:?}")))
    }

    /// The loaded `kernel`, allowed `cfg`'s dynamic shared memory, in the bound context.
    fn function_for(&self, kernel: &str, cfg: &LaunchConfig) -> Result<sys::CUfunction> {
        self.bind()?;
        let f = self.function(kernel)?;
        if cfg.shared_bytes > 48 * 1024 {
            if cfg.shared_bytes as i32 > self.max_smem_optin {
                return Err(Error::kernel(
                    kernel,
                    format!("{} bytes of shared memory; the device allows {}", cfg.shared_bytes, self.max_smem_optin),
                ));
            }
            let attr = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
            // SAFETY: f is a loaded function.
            unsafe { result::function::set_function_attribute(f, attr, cfg.shared_bytes as i32) }
                .map_err(|e| Error::kernel(kernel, format!("cuFuncSetAttribute: {e:?}")))?;
        }
        Ok(f)
    }

    /// Runs `work`, bracketed by profiling events when `CPEAL_PROFILE` is on.
    fn timed<T>(&self, name: &str, work: impl FnOnce() -> T) -> T {
        match &self.profiler {
            Some(p) => p.span(name, work),
            None => work(),
        }
    }

    fn bind(&self) -> Result<()> {
        // SAFETY: ctx is a retained primary context.
        unsafe { result::ctx::set_current(self.ctx) }.map_err(|e| drv("cuCtxSetCurrent", e))
    }

    fn function(&self, kernel: &str) -> Result<sys::CUfunction> {
        if let Some(f) = self.functions.lock().unwrap_or_else(|p| p.into_inner()).get(kernel) {
            return Ok(*f);
        }
        let src = sources::file_of(kernel).ok_or_else(|| Error::kernel(kernel, "not defined in any kernels/*.cu"))?;
        let module = self.module(src)?;
        let cname = CString::new(kernel).map_err(|_| Error::kernel(kernel, "name contains NUL"))?;
        // SAFETY: module is loaded and never unloaded.
        let f = unsafe { result::module::get_function(module, cname) }
            .map_err(|e| Error::kernel(kernel, format!("cuModuleGetFunction: {e:?}")))?;
        self.functions.lock().unwrap_or_else(|p| p.into_inner()).insert(kernel.to_string(), f);
        Ok(f)
    }

    fn module(&self, src: &'static sources::KernelSource) -> Result<sys::CUmodule> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(src.file) {
            return Ok(*m);
        }
        let cubin = self.cubin(src)?;
        // SAFETY: cubin is a complete CUBIN image for this device's arch; the driver copies it.
        let m = unsafe { result::module::load_data(cubin.as_ptr() as *const c_void) }
            .map_err(|e| Error::kernel(src.file, format!("cuModuleLoadData: {e:?}")))?;
        modules.insert(src.file, m);
        Ok(m)
    }

    /// CUBIN of a kernel file for this device: from the disk cache, else compiled by NVRTC and cached.
    fn cubin(&self, src: &sources::KernelSource) -> Result<Vec<u8>> {
        let (maj, min) = nvrtc::load()?;
        let target = super::scan::nvrtc_target(src.file, &self.arch)
            .ok_or_else(|| Error::kernel(src.file, format!("has no code for {} (Hopper only)", self.arch)))?;
        let text = sources::expand(src.file, src.text, sources::HEADERS);
        let key = sources::fnv1a(text.as_bytes());
        let stem = src.file.trim_end_matches(".cu");
        let path = cache_dir().map(|d| d.join(format!("{stem}-{target}-nvrtc{maj}.{min}-{key:016x}.cubin")));
        if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
            return Ok(bytes);
        }
        let compiled = nvrtc::compile_cubin(src.file, &text, &nvrtc::base_options(&target))?;
        if let Some(p) = path {
            // A failed cache write only costs a recompile next time.
            let _ = std::fs::create_dir_all(p.parent().unwrap_or(&p)).and_then(|_| write_atomic(&p, &compiled.cubin));
        }
        Ok(compiled.cubin)
    }
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// `$XDG_CACHE_HOME/cpeal/kernels` or `$HOME/.cache/cpeal/kernels`.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cpeal").join("kernels"))
}

impl Runtime for CudaRuntime {
    fn name(&self) -> String {
        format!("cuda:{} ({}, {})", self.ordinal, self.name, self.arch)
    }

    fn arch(&self) -> Option<String> {
        Some(self.arch.clone())
    }

    /// Every kernel file with code for this device's arch through `cubin`, on the rayon pool (NVRTC compiles
    /// independent programs concurrently).
    fn precompile(&self) -> Result<()> {
        use rayon::prelude::*;
        sources::SOURCES
            .par_iter()
            .filter(|src| super::scan::nvrtc_target(src.file, &self.arch).is_some())
            .try_for_each(|src| self.cubin(src).map(drop))
    }

    fn max_active_clusters(&self, kernel: &str, cfg: &LaunchConfig) -> Result<u32> {
        let key = (kernel.to_string(), cfg.block.0 * cfg.block.1 * cfg.block.2, cfg.shared_bytes);
        if let Some(&n) = self.clusters.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(n);
        }
        let f = self.function_for(kernel, cfg)?;
        // No cluster attribute: the kernel's own __cluster_dims__ apply.
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid.0,
            gridDimY: cfg.grid.1,
            gridDimZ: cfg.grid.2,
            blockDimX: cfg.block.0,
            blockDimY: cfg.block.1,
            blockDimZ: cfg.block.2,
            sharedMemBytes: cfg.shared_bytes,
            hStream: std::ptr::null_mut(),
            attrs: std::ptr::null_mut(),
            numAttrs: 0,
        };
        let mut clusters: std::ffi::c_int = 0;
        // SAFETY: f is a loaded function of the bound context; config lives for the call.
        unsafe { sys::cuOccupancyMaxActiveClusters(&mut clusters, f, &config) }
            .result()
            .map_err(|e| Error::kernel(kernel, format!("cuOccupancyMaxActiveClusters: {e:?}")))?;
        let n = clusters.max(0) as u32;
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).insert(key, n);
        Ok(n)
    }

    fn resident_blocks(&self, kernel: &str, cfg: &LaunchConfig) -> Result<u32> {
        let f = self.function_for(kernel, cfg)?;
        let threads = (cfg.block.0 * cfg.block.1 * cfg.block.2) as std::ffi::c_int;
        let mut blocks: std::ffi::c_int = 0;
        // SAFETY: f is a loaded function of the bound context.
        unsafe { sys::cuOccupancyMaxActiveBlocksPerMultiprocessor(&mut blocks, f, threads, cfg.shared_bytes as usize) }
            .result()
            .map_err(|e| Error::kernel(kernel, format!("cuOccupancyMaxActiveBlocksPerMultiprocessor: {e:?}")))?;
        Ok(blocks.max(0) as u32)
    }

    fn sm_count(&self) -> u32 {
        self.sm_count
    }

    fn tensor_map_2d(&self, t: &TensorMapSpec) -> Result<[u64; 16]> {
        use sys::*;
        self.bind()?;
        let dtype = if t.bf16 {
            CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
        } else {
            CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16
        };
        let dims = [t.cols as u64, t.rows as u64]; // innermost first
        let strides = [(t.ld * 2) as u64]; // bytes, for every dimension but the innermost
        let boxes = [64u32, t.box_rows as u32];
        let unit = [1u32, 1];
        let mut map = CUtensorMap { opaque: [0; 16] };
        // SAFETY: every array has the rank's length; ptr is a live device allocation; the driver validates the
        // alignment (16 bytes) and stride (multiple of 16 bytes) rules and reports a violation as an error.
        let r = unsafe {
            cuTensorMapEncodeTiled(
                &mut map,
                dtype,
                2,
                t.ptr as *mut c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                boxes.as_ptr(),
                unit.as_ptr(),
                CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        if r != CUresult::CUDA_SUCCESS {
            return Err(Error::invalid("tensor map", format!("cuTensorMapEncodeTiled({t:?}): {r:?}")));
        }
        Ok(map.opaque)
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        self.bind()?;
        // Stream-ordered allocation from the device's pool: no device-wide synchronisation, unlike cuMemAlloc /
        // cuMemFree, so allocating and dropping activations inside a forward never stalls the host.
        // SAFETY: context is current; a zero-byte request is rounded up to one byte; null = legacy default stream.
        unsafe { result::malloc_async(std::ptr::null_mut(), bytes.max(1)) }
            .map_err(|e| drv(&format!("cuMemAllocAsync({bytes} bytes)"), e))
    }

    unsafe fn free(&self, ptr: u64, _bytes: usize) {
        if self.bind().is_ok() {
            // SAFETY: ptr came from malloc_async (caller's contract); the free is ordered after all work already
            // queued on the legacy default stream. A failure here cannot be reported from Drop.
            let _ = unsafe { result::free_async(ptr, std::ptr::null_mut()) };
        }
    }

    fn upload(&self, dst: u64, bytes: usize, fill: Fill) -> Result<()> {
        self.bind()?;
        self.copies.upload(self.profiler.as_ref(), dst, bytes, fill)
    }

    fn download(&self, src: u64, bytes: usize, sink: Sink) -> Result<()> {
        if bytes == 0 {
            return self.synchronize(); // still "after all queued work"
        }
        self.bind()?;
        self.copies.download(self.profiler.as_ref(), src, bytes, sink)
    }

    fn fill_bytes(&self, dst: u64, bytes: usize, value: u8) -> Result<()> {
        self.bind()?;
        // SAFETY: dst is an allocation of `bytes` bytes.
        unsafe { result::memset_d8_sync(dst, value, bytes) }.map_err(|e| drv("cuMemsetD8", e))
    }

    unsafe fn launch(&self, kernel: &str, cfg: &LaunchConfig, params: &mut [*mut c_void]) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.launch_as(kernel, kernel, cfg, params) }
    }

    unsafe fn launch_tagged(
        &self,
        kernel: &str,
        tag: &str,
        cfg: &LaunchConfig,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        let span = if self.profiler.is_some() { format!("{kernel} {tag}") } else { String::new() };
        // SAFETY: forwarded from this function's contract.
        unsafe { self.launch_as(kernel, &span, cfg, params) }
    }

    fn synchronize(&self) -> Result<()> {
        self.bind()?;
        result::ctx::synchronize().map_err(|e| drv("cuCtxSynchronize", e))
    }
}

impl Drop for CudaRuntime {
    fn drop(&mut self) {
        // The fields dropped after this (pinned staging, events) need the context current on this thread.
        let _ = self.bind();
        if let Some(p) = &self.profiler {
            if self.synchronize().is_ok() {
                p.report();
            }
        }
    }
}

/// Let the device's default memory pool keep freed memory instead of returning it to the driver at every
/// synchronisation, so steady-state forwards allocate from the pool. Best effort: an error leaves the default.
fn keep_pool_memory(dev: sys::CUdevice) {
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: dev is a valid device; pool is written by the driver on success.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, dev) == sys::CUresult::CUDA_SUCCESS {
            let mut threshold: u64 = u64::MAX;
            let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
            let _ = sys::cuMemPoolSetAttribute(pool, attr, &mut threshold as *mut u64 as *mut std::ffi::c_void);
        }
    }
}

//! The `cuda-emu` runtime: device memory is aligned host memory and a launch calls the g++-compiled
//! trampoline of the kernel (built by `build.rs` from `kernels/*.cu` + `kernels/emu.h`), which unpacks the same
//! `void**` arguments as `cuLaunchKernel` and runs the grid block by block, the threads of a block as fibers.

use std::ffi::c_void;

use super::transfer::{Fill, Sink};
use super::{LaunchConfig, Runtime, TensorMapSpec};
use crate::error::{Error, Result};

pub struct EmuRuntime {
    _private: (),
}

#[cfg(not(feature = "cuda-emu"))]
impl EmuRuntime {
    pub fn new() -> Result<Self> {
        Err(Error::DeviceUnavailable {
            device: "cuda-emu".into(),
            reason: "this build lacks the `cuda-emu` cargo feature (cargo build --features cuda-emu)".into(),
        })
    }
}

#[cfg(feature = "cuda-emu")]
impl EmuRuntime {
    pub fn new() -> Result<Self> {
        Ok(EmuRuntime { _private: () })
    }
}

#[cfg(feature = "cuda-emu")]
mod ffi {
    use std::ffi::{c_char, c_int, c_uint, c_void};
    extern "C" {
        pub fn cpeal_emu_lookup(name: *const c_char) -> *mut c_void;
        pub fn cpeal_emu_launch(
            entry: *mut c_void,
            grid: *const c_uint,
            block: *const c_uint,
            shared_bytes: c_uint,
            args: *mut *mut c_void,
            err: *mut c_char,
            errlen: usize,
        ) -> c_int;
    }
}

const ALIGN: usize = 256;

/// The most dynamic shared memory a block may opt in to on the GPUs cpeal targets (an H100's or H200's 227 KiB):
/// a launch asking for more fails here as it would there.
pub const SHARED_BYTES_OPTIN: u32 = 232_448;

fn layout(bytes: usize) -> std::alloc::Layout {
    // ALIGN is a power of two and bytes.max(1) rounded up cannot overflow for any real allocation size.
    std::alloc::Layout::from_size_align(bytes.max(1), ALIGN).expect("allocation size fits a Layout")
}

impl Runtime for EmuRuntime {
    fn name(&self) -> String {
        "cuda-emu".into()
    }

    fn is_emu(&self) -> bool {
        true
    }

    fn sm_count(&self) -> u32 {
        3
    }

    /// The emulator's own tensor-map layout (read by `tma_load_2d` in `kernels/emu_sm90.h`): magic, base
    /// address, rows, columns, row stride, box rows, box columns (64), element bytes (2).
    fn tensor_map_2d(&self, t: &TensorMapSpec) -> Result<[u64; 16]> {
        const MAGIC: u64 = u64::from_le_bytes(*b"CPEALTMA");
        let mut words = [0u64; 16];
        let fields = [MAGIC, t.ptr, t.rows as u64, t.cols as u64, t.ld as u64, t.box_rows as u64, 64, 2];
        words[..fields.len()].copy_from_slice(&fields);
        Ok(words)
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        // SAFETY: the layout has non-zero size.
        let p = unsafe { std::alloc::alloc(layout(bytes)) };
        if p.is_null() {
            return Err(Error::invalid("cuda-emu", format!("out of host memory allocating {bytes} bytes")));
        }
        Ok(p as u64)
    }

    unsafe fn free(&self, ptr: u64, bytes: usize) {
        // SAFETY: ptr came from alloc(bytes) with the same layout (caller's contract).
        unsafe { std::alloc::dealloc(ptr as *mut u8, layout(bytes)) }
    }

    fn upload(&self, dst: u64, bytes: usize, fill: Fill) -> Result<()> {
        // SAFETY: dst is an allocation of at least `bytes` bytes (GpuDevice::upload allocates it so) and no
        // launch runs while this borrow lives (launches are synchronous here).
        fill(0, unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, bytes) });
        Ok(())
    }

    fn download(&self, src: u64, bytes: usize, sink: Sink) -> Result<()> {
        // SAFETY: src is an allocation of at least `bytes` bytes (the buffer's own size), not written meanwhile.
        sink(0, unsafe { std::slice::from_raw_parts(src as *const u8, bytes) });
        Ok(())
    }

    fn fill_bytes(&self, dst: u64, bytes: usize, value: u8) -> Result<()> {
        // SAFETY: dst is an allocation of `bytes` bytes.
        unsafe { std::ptr::write_bytes(dst as *mut u8, value, bytes) };
        Ok(())
    }

    #[cfg(feature = "cuda-emu")]
    unsafe fn launch(&self, kernel: &str, cfg: &LaunchConfig, params: &mut [*mut c_void]) -> Result<()> {
        if cfg.shared_bytes > SHARED_BYTES_OPTIN {
            let msg = format!("{} bytes of shared memory; the device allows {SHARED_BYTES_OPTIN}", cfg.shared_bytes);
            return Err(Error::kernel(kernel, msg));
        }
        let cname = std::ffi::CString::new(kernel).map_err(|_| Error::kernel(kernel, "name contains NUL"))?;
        // SAFETY: cname is a valid C string; the lookup only reads it.
        let entry = unsafe { ffi::cpeal_emu_lookup(cname.as_ptr()) };
        if entry.is_null() {
            return Err(Error::kernel(kernel, "not in the emulator build (no such kernel in kernels/*.cu)"));
        }
        let grid = [cfg.grid.0, cfg.grid.1, cfg.grid.2];
        let block = [cfg.block.0, cfg.block.1, cfg.block.2];
        let mut err = vec![0 as std::ffi::c_char; 512];
        // SAFETY: entry is a trampoline from the registry; params match its signature (caller's contract).
        let rc = unsafe {
            ffi::cpeal_emu_launch(
                entry,
                grid.as_ptr(),
                block.as_ptr(),
                cfg.shared_bytes,
                params.as_mut_ptr(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc != 0 {
            // SAFETY: the emulator writes a NUL-terminated message into err (zero-filled, so terminated anyway).
            let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            return Err(Error::kernel(kernel, format!("emulated launch failed: {msg}")));
        }
        Ok(())
    }

    #[cfg(not(feature = "cuda-emu"))]
    unsafe fn launch(&self, kernel: &str, _cfg: &LaunchConfig, _params: &mut [*mut c_void]) -> Result<()> {
        Err(Error::kernel(kernel, "this build lacks the `cuda-emu` feature"))
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

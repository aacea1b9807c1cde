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
        pub fn cpeal_emu_bank_count(on: c_int);
        pub fn cpeal_emu_bank_sites(out: *mut CpealBankSite, cap: usize) -> usize;
    }

    /// kernels/emu_banks.h's `CpealBankSite`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct CpealBankSite {
        pub file: [c_char; 64],
        pub line: c_int,
        pub bytes: c_int,
        pub store: c_int,
        pub instructions: std::ffi::c_long,
        pub wavefronts: std::ffi::c_long,
        pub ideal: std::ffi::c_long,
        pub divergent: std::ffi::c_long,
    }
}

/// One shared-memory access site of a kernel, as the emulator's bank model (kernels/emu_banks.h) counted it over
/// the launches of [`count_banks`]: warp instructions, the wavefronts they would take on the GPU, and the fewest
/// their bytes allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankSite {
    pub kernel: String,
    /// `file:line` of the access (the caller's line for ldmatrix, cp.async, lds and sts).
    pub site: String,
    pub bytes: u32,
    pub store: bool,
    pub instructions: u64,
    pub wavefronts: u64,
    pub ideal: u64,
    /// Warp instructions whose lanes had reached different sites (divergent code), left out of the counts.
    pub divergent: u64,
}

#[cfg(feature = "cuda-emu")]
thread_local! {
    /// The sites counted so far on this OS thread, while [`count_banks`] runs.
    static BANK_SITES: std::cell::RefCell<Option<Vec<BankSite>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the emulator's bank model on for the emulated launches it makes on this thread, and returns its
/// result with every kernel's access sites (summed per kernel and site, in launch order).
#[cfg(feature = "cuda-emu")]
pub fn count_banks<R>(f: impl FnOnce() -> R) -> (R, Vec<BankSite>) {
    BANK_SITES.with(|s| *s.borrow_mut() = Some(Vec::new()));
    // SAFETY: plain flag on this thread's emulator state.
    unsafe { ffi::cpeal_emu_bank_count(1) };
    let r = f();
    // SAFETY: as above.
    unsafe { ffi::cpeal_emu_bank_count(0) };
    (r, BANK_SITES.with(|s| s.borrow_mut().take()).unwrap_or_default())
}

/// After a launch of `kernel`: move the emulator's counts into this thread's list, if it is counting.
#[cfg(feature = "cuda-emu")]
fn collect_bank_sites(kernel: &str) {
    BANK_SITES.with(|sites| {
        let mut sites = sites.borrow_mut();
        let Some(list) = sites.as_mut() else { return };
        // SAFETY: a null buffer with capacity 0 only asks for the count (the sites stay, unless there are none).
        let n = unsafe { ffi::cpeal_emu_bank_sites(std::ptr::null_mut(), 0) };
        let mut raw = vec![
            ffi::CpealBankSite {
                file: [0; 64],
                line: 0,
                bytes: 0,
                store: 0,
                instructions: 0,
                wavefronts: 0,
                ideal: 0,
                divergent: 0
            };
            n
        ];
        // SAFETY: raw holds n sites, the count the emulator just reported.
        let got = unsafe { ffi::cpeal_emu_bank_sites(raw.as_mut_ptr(), raw.len()) };
        for r in raw.iter().take(got.min(n)) {
            // SAFETY: the emulator writes a NUL-terminated name into the zeroed 64-byte buffer.
            let file = unsafe { std::ffi::CStr::from_ptr(r.file.as_ptr()) }.to_string_lossy();
            let site = format!("{file}:{}", r.line);
            let entry = match list.iter_mut().find(|s| {
                s.kernel == kernel && s.site == site && s.bytes == r.bytes as u32 && s.store == (r.store != 0)
            }) {
                Some(e) => e,
                None => {
                    list.push(BankSite {
                        kernel: kernel.to_string(),
                        site,
                        bytes: r.bytes as u32,
                        store: r.store != 0,
                        instructions: 0,
                        wavefronts: 0,
                        ideal: 0,
                        divergent: 0,
                    });
                    list.last_mut().expect("just pushed")
                }
            };
            entry.instructions += r.instructions as u64;
            entry.wavefronts += r.wavefronts as u64;
            entry.ideal += r.ideal as u64;
            entry.divergent += r.divergent as u64;
        }
    });
}

/// The most dynamic shared memory a block may opt in to on the GPUs cpeal targets (an H100's or H200's 227 KiB):
/// a launch asking for more fails here as it would there.
pub const SHARED_BYTES_OPTIN: u32 = 232_448;

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
        // All-ones bytes, ending at a faulting page (`emu_memory`): reads of what nothing wrote, and accesses
        // past the buffer, fail here rather than pass.
        let p = super::emu_memory::alloc(bytes)
            .ok_or_else(|| Error::invalid("cuda-emu", format!("out of host memory allocating {bytes} bytes")))?;
        Ok(p as u64)
    }

    unsafe fn free(&self, ptr: u64, bytes: usize) {
        // SAFETY: ptr came from alloc(bytes) (caller's contract).
        unsafe { super::emu_memory::free(ptr as *mut u8, bytes) }
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
        let rc = super::emu_memory::naming_faults(kernel, || unsafe {
            ffi::cpeal_emu_launch(
                entry,
                grid.as_ptr(),
                block.as_ptr(),
                cfg.shared_bytes,
                params.as_mut_ptr(),
                err.as_mut_ptr(),
                err.len(),
            )
        });
        collect_bank_sites(kernel);
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

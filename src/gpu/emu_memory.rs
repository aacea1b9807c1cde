//! Host memory of the emulator's device allocations. Each allocation is its size rounded up to `ALIGN` bytes,
//! placed to end exactly at a page that faults on any access (Unix). A kernel that reads or writes past its
//! buffer (by more than the rounding to 16 bytes, one vector load) stops there, at the faulting instruction,
//! instead of reading a neighbour's bytes or corrupting them and passing. That is stricter than a GPU, whose
//! allocations start 256-byte aligned and whose reads past an end within the allocation granularity return
//! garbage without a fault. The fault is reported on stderr with the kernel's name ([`naming_faults`]) before
//! the process dies of it. Fresh memory is filled with all-ones bytes.

// Without the emulator's launches, the fault report has nothing to name.
#![cfg_attr(not(feature = "cuda-emu"), allow(dead_code))]

/// Alignment of every allocation's start and of its end: one 16-byte vector, the widest access of any kernel
/// (a GPU's allocations are 256-byte aligned; kernels ask for no more than 16).
pub const ALIGN: usize = 16;

/// The size an allocation of `bytes` takes: at least one `ALIGN` unit.
fn rounded(bytes: usize) -> usize {
    bytes.max(1).div_ceil(ALIGN) * ALIGN
}

#[cfg(unix)]
mod imp {
    use super::{rounded, RUNNING};
    use std::sync::OnceLock;

    /// The handlers of SIGSEGV and SIGBUS before ours, to hand a fault on to.
    static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();
    const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

    /// Installs `on_fault` for SIGSEGV and SIGBUS once per process.
    pub fn install_fault_report() {
        PREVIOUS.get_or_init(|| {
            SIGNALS.map(|sig| {
                // SAFETY: zeroed sigaction structs are valid; sigaction only reads `ours` and writes `previous`.
                unsafe {
                    let mut ours: libc::sigaction = std::mem::zeroed();
                    ours.sa_sigaction = on_fault as *const () as usize;
                    ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                    libc::sigemptyset(&mut ours.sa_mask);
                    let mut previous: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(sig, &ours, &mut previous);
                    previous
                }
            })
        });
    }

    /// Writes which emulated kernel faulted (if one is running on this thread), puts the previous handler back
    /// and returns: the faulting access runs again and the previous handler (Rust's, or the default action)
    /// deals with it. Only async-signal-safe calls.
    extern "C" fn on_fault(sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        let (name, len) = RUNNING.with(|r| r.get());
        if len > 0 {
            let parts: [&[u8]; 3] = [
                b"cuda-emu: kernel ",
                &name[..len],
                b" touched memory outside its buffers (past an allocation's end, or unmapped)\n",
            ];
            for part in parts {
                // SAFETY: write(2) is async-signal-safe; the buffer is valid for its length.
                unsafe { libc::write(2, part.as_ptr() as *const libc::c_void, part.len()) };
            }
        }
        if let (Some(previous), Some(i)) = (PREVIOUS.get(), SIGNALS.iter().position(|&s| s == sig)) {
            // SAFETY: sigaction is async-signal-safe; previous[i] is the handler this signal had before ours.
            unsafe { libc::sigaction(sig, &previous[i], std::ptr::null_mut()) };
        }
    }

    fn page() -> usize {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as usize
        } else {
            4096
        }
    }

    /// Pages of data before the guard page.
    fn data_bytes(bytes: usize) -> usize {
        rounded(bytes).div_ceil(page()) * page()
    }

    pub fn alloc(bytes: usize) -> Option<*mut u8> {
        let (data, page) = (data_bytes(bytes), page());
        // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base as *mut u8;
        // SAFETY: the guard page lies inside the mapping just made.
        if unsafe { libc::mprotect(base.add(data) as *mut libc::c_void, page, libc::PROT_NONE) } != 0 {
            // SAFETY: base and the length are the mapping's own.
            unsafe { libc::munmap(base as *mut libc::c_void, data + page) };
            return None;
        }
        // SAFETY: data ≥ rounded(bytes), so the start stays inside the mapping.
        Some(unsafe { base.add(data - rounded(bytes)) })
    }

    /// # Safety
    /// `ptr` came from `alloc(bytes)` with the same `bytes`, and is not used afterwards.
    pub unsafe fn free(ptr: *mut u8, bytes: usize) {
        let data = data_bytes(bytes);
        // SAFETY: alloc placed ptr at base + data − rounded(bytes) in a mapping of data + one page.
        unsafe {
            let base = ptr.sub(data - rounded(bytes));
            libc::munmap(base as *mut libc::c_void, data + page());
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::{rounded, ALIGN};

    pub fn install_fault_report() {}

    fn layout(bytes: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(rounded(bytes), ALIGN).expect("allocation size fits a Layout")
    }

    pub fn alloc(bytes: usize) -> Option<*mut u8> {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout(bytes)) };
        (!p.is_null()).then_some(p)
    }

    /// # Safety
    /// `ptr` came from `alloc(bytes)` with the same `bytes`, and is not used afterwards.
    pub unsafe fn free(ptr: *mut u8, bytes: usize) {
        // SAFETY: the caller's contract; the layout is alloc's.
        unsafe { std::alloc::dealloc(ptr, layout(bytes)) }
    }
}

/// Runs `launch` (an emulated launch of `kernel`, on this thread) so that a fault inside it names the kernel on
/// stderr before the process dies of it: the guard pages stop a kernel, and this says which.
pub fn naming_faults<T>(kernel: &str, launch: impl FnOnce() -> T) -> T {
    imp::install_fault_report();
    let mut name = [0u8; NAME_BYTES];
    let len = kernel.len().min(NAME_BYTES);
    name[..len].copy_from_slice(&kernel.as_bytes()[..len]);
    RUNNING.with(|r| r.set((name, len)));
    let out = launch();
    RUNNING.with(|r| r.set(([0; NAME_BYTES], 0)));
    out
}

/// Bytes of a kernel's name kept for the fault report.
const NAME_BYTES: usize = 96;

thread_local! {
    /// The kernel this thread is running under emulation (its name's bytes and length; 0 when none). Plain data
    /// with a constant initialiser, so the fault handler can read it.
    static RUNNING: std::cell::Cell<([u8; NAME_BYTES], usize)> = const { std::cell::Cell::new(([0; NAME_BYTES], 0)) };
}

/// `bytes` of fresh emulated device memory, all-ones bytes (NaN, and −1 as i32), so that a kernel reading what
/// nothing wrote fails rather than passing on memory that happened to be zero. None when the host has no memory.
pub fn alloc(bytes: usize) -> Option<*mut u8> {
    let p = imp::alloc(bytes)?;
    // SAFETY: p starts rounded(bytes) ≥ bytes writable bytes.
    unsafe { std::ptr::write_bytes(p, 0xff, rounded(bytes)) };
    Some(p)
}

/// # Safety
/// `ptr` came from [`alloc`] with the same `bytes`, and is not used afterwards.
pub unsafe fn free(ptr: *mut u8, bytes: usize) {
    // SAFETY: the caller's contract.
    unsafe { imp::free(ptr, bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_filled_and_end_at_the_rounding() {
        for bytes in [1usize, 255, 256, 4000, 4096, 4097, 100_000] {
            let p = alloc(bytes).expect("host memory");
            assert_eq!(p as usize % ALIGN, 0, "{bytes} bytes");
            // SAFETY: the allocation holds rounded(bytes) bytes.
            let all = unsafe { std::slice::from_raw_parts(p, rounded(bytes)) };
            assert!(all.iter().all(|&b| b == 0xff), "{bytes} bytes");
            // SAFETY: p came from alloc(bytes).
            unsafe { free(p, bytes) };
        }
    }

    /// The byte past the rounding faults: a child process that touches it dies of a signal.
    #[cfg(unix)]
    #[test]
    fn a_read_past_the_rounding_faults() {
        // SAFETY: fork in a test process; the child only reads memory and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let p = alloc(300).expect("host memory");
            // SAFETY: deliberately out of bounds: the child must die here.
            let v = unsafe { std::ptr::read_volatile(p.add(rounded(300))) };
            // SAFETY: _exit is always safe to call; reaching it means no fault.
            unsafe { libc::_exit(v as i32 + 100) };
        }
        let mut status = 0;
        // SAFETY: pid is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status), "the read past the end did not fault (status {status})");
    }
}

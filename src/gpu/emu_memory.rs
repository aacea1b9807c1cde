//! Host memory of the emulator's device allocations. Each allocation is its size rounded up to `ALIGN` bytes,
//! placed to end exactly at a page that faults on any access (Unix). A kernel that reads or writes past its
//! buffer (by more than the rounding to 16 bytes, one vector load) stops there, at the faulting instruction,
//! instead of reading a neighbour's bytes or corrupting them and passing. That is stricter than a GPU, whose
//! allocations start 256-byte aligned and whose reads past an end within the allocation granularity return
//! garbage without a fault. Fresh memory is filled with all-ones bytes.

/// Alignment of every allocation's start and of its end: one 16-byte vector, the widest access of any kernel
/// (a GPU's allocations are 256-byte aligned; kernels ask for no more than 16).
pub const ALIGN: usize = 16;

/// The size an allocation of `bytes` takes: at least one `ALIGN` unit.
fn rounded(bytes: usize) -> usize {
    bytes.max(1).div_ceil(ALIGN) * ALIGN
}

#[cfg(unix)]
mod imp {
    use super::rounded;

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

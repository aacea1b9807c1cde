//! Device↔host copies of the CUDA runtime through pinned (page-locked) host memory, asynchronous on the legacy
//! default stream. A copy from pageable memory is staged by the driver and, host→device, waits for the stream
//! to drain first; from pinned memory `cuMemcpy{HtoD,DtoH}Async` is a plain DMA ordered on the stream.
//!
//! - Downloads, and uploads over [`SMALL_MAX`] bytes, go in [`CHUNK`]-byte pieces through [`SLOTS`] (two)
//!   pinned staging slots, piece k of a download in slot k % 2. A download queues the copy of piece k+1
//!   before converting piece k, so conversion and DMA overlap; an upload converts piece k while piece k−1 is
//!   in flight and returns without waiting.
//! - Small uploads (index lists, token ids inside a forward) take a region of a pinned ring and return at
//!   once; the host waits only if a whole ring of uploads is still queued ahead of the device.
//!
//! Invariant: the host reads or writes a pinned byte only after synchronising an event recorded on the stream
//! after the last copy that used that byte. Ordering between copies and kernels is the stream's own. Staging
//! and ring live as long as the runtime; dropping them waits for their events before freeing the memory.

use std::ffi::c_void;
use std::sync::Mutex;

use cudarc::driver::{result, sys};

use super::cuda::drv;
use super::profile::Profiler;
use super::transfer::{chunks, download_steps, Fill, Ring, Sink, Step, CHUNK, SLOTS};
use crate::error::Result;

/// Uploads up to this many bytes go through the ring, larger ones through the staging slots.
pub(crate) const SMALL_MAX: usize = 64 << 10;
/// Bytes of the small-upload ring.
const RING: usize = 1 << 20;

/// The stream all work goes to: the legacy default stream.
fn stream() -> sys::CUstream {
    std::ptr::null_mut()
}

/// `bytes` bytes of pinned host memory, zeroed, freed on drop.
struct PinnedHost {
    ptr: *mut u8,
    bytes: usize,
}

// SAFETY: plain host memory; all access goes through `&self`/`&mut self` under the owner's mutex.
unsafe impl Send for PinnedHost {}

impl PinnedHost {
    fn new(bytes: usize) -> Result<Self> {
        // SAFETY: the context is current (callers bind first); flags 0 = pinned, cached, this context.
        let ptr = unsafe { result::malloc_host(bytes, 0) }.map_err(|e| drv(&format!("cuMemHostAlloc({bytes})"), e))?;
        // SAFETY: the driver returned `bytes` writable bytes; zeroing makes them valid `u8`s to slice.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) };
        Ok(PinnedHost { ptr: ptr as *mut u8, bytes })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: ptr holds `bytes` initialised bytes for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the borrow unique on the host.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        // SAFETY: ptr came from malloc_host; the owner has waited for every copy that used it.
        if let Err(e) = unsafe { result::free_host(self.ptr as *mut c_void) } {
            eprintln!("warning: cuMemFreeHost of {} pinned bytes failed: {e:?}", self.bytes);
        }
    }
}

/// A driver event without timing, destroyed on drop.
struct Event(sys::CUevent);

// SAFETY: a driver handle, usable from any thread with the context current.
unsafe impl Send for Event {}

impl Event {
    fn new() -> Result<Self> {
        result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map(Event)
            .map_err(|e| drv("cuEventCreate", e))
    }

    /// Marks the point after all work queued so far.
    fn record(&self) -> Result<()> {
        // SAFETY: the event is live.
        unsafe { result::event::record(self.0, stream()) }.map_err(|e| drv("cuEventRecord", e))
    }

    /// Blocks until the recorded work is done (at once if never recorded).
    fn synchronize(&self) -> Result<()> {
        // SAFETY: the event is live.
        unsafe { result::event::synchronize(self.0) }.map_err(|e| drv("cuEventSynchronize", e))
    }

    fn is_done(&self) -> Result<bool> {
        // SAFETY: the event is live.
        match unsafe { result::event::query(self.0) } {
            Ok(()) => Ok(true),
            Err(result::DriverError(sys::CUresult::CUDA_ERROR_NOT_READY)) => Ok(false),
            Err(e) => Err(drv("cuEventQuery", e)),
        }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: destroyed once; the driver releases it when pending work completes.
        let _ = unsafe { result::event::destroy(self.0) };
    }
}

fn timed<T>(prof: Option<&Profiler>, name: &str, work: impl FnOnce() -> T) -> T {
    match prof {
        Some(p) => p.span(name, work),
        None => work(),
    }
}

struct Slot {
    host: PinnedHost,
    /// Recorded after the last copy through this slot.
    done: Event,
}

/// CHUNK-byte slots for large copies.
struct Staging {
    slots: Vec<Slot>,
    /// Slot of the next upload piece.
    next: usize,
}

impl Staging {
    fn new() -> Result<Self> {
        let slots = (0..SLOTS).map(|_| Ok(Slot { host: PinnedHost::new(CHUNK)?, done: Event::new()? }));
        Ok(Staging { slots: slots.collect::<Result<_>>()?, next: 0 })
    }

    fn upload(&mut self, prof: Option<&Profiler>, dst: u64, bytes: usize, fill: Fill) -> Result<()> {
        for r in chunks(bytes, CHUNK) {
            let slot = &mut self.slots[self.next];
            self.next = (self.next + 1) % SLOTS;
            slot.done.synchronize()?;
            let host = &mut slot.host.bytes_mut()[..r.len()];
            fill(r.start, host);
            // SAFETY: dst + r is inside the destination allocation; host is pinned and stays untouched until
            // slot.done (recorded next) completes.
            timed(prof, "[copy host->device]", || unsafe {
                result::memcpy_htod_async(dst + r.start as u64, host, stream())
            })
            .map_err(|e| drv("cuMemcpyHtoDAsync", e))?;
            slot.done.record()?;
        }
        Ok(())
    }

    /// Queues the copy of `src + r` into slot `s`. The host finished with that slot before (it converted the
    /// piece two back, or an upload filled it synchronously); the device orders it after earlier copies.
    fn fetch(&mut self, prof: Option<&Profiler>, s: usize, src: u64, r: std::ops::Range<usize>) -> Result<()> {
        let slot = &mut self.slots[s];
        let host = &mut slot.host.bytes_mut()[..r.len()];
        // SAFETY: src + r is inside the source allocation; host is pinned and read only after slot.done.
        timed(prof, "[copy device->host]", || unsafe {
            result::memcpy_dtoh_async(host, src + r.start as u64, stream())
        })
        .map_err(|e| drv("cuMemcpyDtoHAsync", e))?;
        slot.done.record()
    }

    fn download(&mut self, prof: Option<&Profiler>, src: u64, bytes: usize, sink: Sink) -> Result<()> {
        let parts: Vec<_> = chunks(bytes, CHUNK).collect();
        for step in download_steps(parts.len()) {
            match step {
                Step::Fetch(k) => self.fetch(prof, k % SLOTS, src, parts[k].clone())?,
                Step::Convert(k) => {
                    let slot = &self.slots[k % SLOTS];
                    slot.done.synchronize()?;
                    sink(parts[k].start, &slot.host.bytes()[..parts[k].len()]);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for slot in &self.slots {
            let _ = slot.done.synchronize();
        }
    }
}

/// Pinned ring for small uploads: each region is held until the event recorded after its copy completes.
struct UploadRing {
    host: PinnedHost,
    ring: Ring<Event>,
    /// Events of retired regions, for reuse.
    spare: Vec<Event>,
}

impl UploadRing {
    fn new() -> Result<Self> {
        Ok(UploadRing { host: PinnedHost::new(RING)?, ring: Ring::new(RING), spare: Vec::new() })
    }

    fn upload(&mut self, prof: Option<&Profiler>, dst: u64, bytes: usize, fill: Fill) -> Result<()> {
        let spare = &mut self.spare;
        self.ring.retire(Event::is_done, |e| spare.push(e))?;
        let start = self.ring.reserve(bytes, |e| {
            let waited = e.synchronize();
            spare.push(e);
            waited
        })?;
        // Taken before the copy, so that once it is queued nothing but recording can fail.
        let done = match self.spare.pop() {
            Some(e) => e,
            None => Event::new()?,
        };
        let host = &mut self.host.bytes_mut()[start..start + bytes];
        fill(0, host);
        // SAFETY: dst holds `bytes` bytes; the region stays reserved until `done` completes.
        timed(prof, "[copy host->device]", || unsafe { result::memcpy_htod_async(dst, host, stream()) })
            .map_err(|e| drv("cuMemcpyHtoDAsync", e))?;
        done.record()?;
        self.ring.commit(start..start + bytes, done);
        Ok(())
    }
}

impl Drop for UploadRing {
    fn drop(&mut self) {
        for e in self.ring.drain() {
            let _ = e.synchronize();
        }
    }
}

/// The pinned memory of one runtime, allocated on first use. Callers make the context current.
#[derive(Default)]
pub(crate) struct Copies {
    staging: Mutex<Option<Staging>>,
    ring: Mutex<Option<UploadRing>>,
}

impl Copies {
    pub fn upload(&self, prof: Option<&Profiler>, dst: u64, bytes: usize, fill: Fill) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        settle_on_error(if bytes <= SMALL_MAX {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            get_or_create(&mut ring, UploadRing::new).and_then(|r| r.upload(prof, dst, bytes, fill))
        } else {
            let mut staging = self.staging.lock().unwrap_or_else(|p| p.into_inner());
            get_or_create(&mut staging, Staging::new).and_then(|s| s.upload(prof, dst, bytes, fill))
        })
    }

    /// Returns once `sink` has seen every byte, so after all work queued before the call.
    pub fn download(&self, prof: Option<&Profiler>, src: u64, bytes: usize, sink: Sink) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let mut staging = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        settle_on_error(get_or_create(&mut staging, Staging::new).and_then(|s| s.download(prof, src, bytes, sink)))
    }
}

fn get_or_create<T>(slot: &mut Option<T>, make: impl FnOnce() -> Result<T>) -> Result<&mut T> {
    if slot.is_none() {
        *slot = Some(make()?);
    }
    Ok(slot.as_mut().expect("just filled"))
}

/// After a failed step a queued copy may still use pinned memory that no event covers: drain the stream
/// (best effort; a broken context runs nothing anyway) before the error goes up.
fn settle_on_error(r: Result<()>) -> Result<()> {
    if r.is_err() {
        // SAFETY: synchronising the legacy default stream of the current context.
        let _ = unsafe { sys::cuStreamSynchronize(stream()) };
    }
    r
}

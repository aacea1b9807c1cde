//! Opt-in per-kernel timing on real CUDA: with `CPEAL_PROFILE=1`, every launch and copy is bracketed by device
//! events, and when the device is dropped a table (kernel, calls, total ms, share) goes to stderr. Events
//! serialise nothing that the single stream did not already serialise, so the shares are honest; the absolute
//! total includes one event pair per launch.

use std::collections::HashMap;
use std::sync::Mutex;

use cudarc::driver::{result, sys};

pub(crate) struct Profiler {
    spans: Mutex<Vec<(String, sys::CUevent, sys::CUevent)>>,
}

impl Profiler {
    /// A profiler when `CPEAL_PROFILE` is set to anything but `0`.
    pub fn from_env() -> Option<Profiler> {
        match std::env::var("CPEAL_PROFILE") {
            Ok(v) if v != "0" && !v.is_empty() => Some(Profiler { spans: Mutex::new(Vec::new()) }),
            _ => None,
        }
    }

    /// Records an event before and after `work` on the legacy default stream, under `name`.
    pub fn span<T>(&self, name: &str, work: impl FnOnce() -> T) -> T {
        let create = || result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).ok();
        let (Some(start), Some(end)) = (create(), create()) else { return work() };
        // SAFETY: events were just created in the current context; null = legacy default stream.
        unsafe { result::event::record(start, std::ptr::null_mut()).ok() };
        let out = work();
        // SAFETY: as above.
        unsafe { result::event::record(end, std::ptr::null_mut()).ok() };
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).push((name.to_string(), start, end));
        out
    }

    /// Sums the spans per name and prints the table; the caller has synchronised the context.
    pub fn report(&self) {
        let spans = std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()));
        let mut per_name: HashMap<String, (usize, f64)> = HashMap::new();
        for (name, start, end) in spans {
            // SAFETY: both events were recorded and the context synchronised; each is destroyed once here.
            let ms = unsafe { result::event::elapsed(start, end) }.unwrap_or(0.0) as f64;
            unsafe {
                result::event::destroy(start).ok();
                result::event::destroy(end).ok();
            }
            let entry = per_name.entry(name).or_default();
            entry.0 += 1;
            entry.1 += ms;
        }
        let total: f64 = per_name.values().map(|v| v.1).sum();
        let mut rows: Vec<_> = per_name.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        eprintln!("\nCPEAL_PROFILE: {total:.2} ms on the device in all\n| kernel | calls | total ms | share |\n|---|---|---|---|");
        for (name, (calls, ms)) in rows {
            eprintln!("| {name} | {calls} | {ms:.3} | {:.1}% |", 100.0 * ms / total.max(1e-9));
        }
    }
}

//! Host-side pieces of device↔host copies that need no GPU: how a copy is split into chunks, how a pinned
//! upload ring hands out regions, and the (parallel) conversion between f32 and a storage type per chunk.
//! The CUDA runtime drives them through pinned memory (`gpu/pinned.rs`); the emulator converts in place.

use std::collections::VecDeque;
use std::ops::Range;

use rayon::prelude::*;

use super::DType;
use crate::error::{Error, Result};

/// Writes source bytes `offset..offset + chunk.len()` into `chunk`.
pub(crate) type Fill<'a> = &'a mut dyn FnMut(usize, &mut [u8]);
/// Receives bytes `offset..offset + chunk.len()` of a download.
pub(crate) type Sink<'a> = &'a mut dyn FnMut(usize, &[u8]);

/// Bytes per chunk of a large copy through pinned staging. A multiple of every element size, so no element
/// straddles two chunks; small enough that converting chunk i overlaps the copy of chunk i+1 well.
pub(crate) const CHUNK: usize = 8 << 20;
const _: () = assert!(CHUNK % 16 == 0);

/// Byte ranges `0..total` in order, each `chunk` long but the last.
pub(crate) fn chunks(total: usize, chunk: usize) -> impl Iterator<Item = Range<usize>> {
    assert!(chunk > 0, "chunks: zero chunk size");
    (0..total.div_ceil(chunk)).map(move |i| i * chunk..((i + 1) * chunk).min(total))
}

/// Staging slots of a large copy; piece k of a copy goes through slot k % SLOTS.
pub(crate) const SLOTS: usize = 2;

/// One step of a download through the staging slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Queue the device → slot copy of piece k.
    Fetch(usize),
    /// Wait for piece k's copy, then convert it out of its slot.
    Convert(usize),
}

/// The order of a download of `pieces` pieces: piece k+1 is queued before piece k is converted, so the copy of
/// one overlaps the conversion of the other, and a slot is refilled only after its last piece was converted.
pub(crate) fn download_steps(pieces: usize) -> impl Iterator<Item = Step> {
    let first = (pieces > 0).then_some(Step::Fetch(0));
    first.into_iter().chain((0..pieces).flat_map(move |k| {
        let next = (k + 1 < pieces).then_some(Step::Fetch(k + 1));
        next.into_iter().chain([Step::Convert(k)])
    }))
}

/// Elements converted per rayon task; below this a chunk converts on the calling thread.
const PAR_MIN: usize = 1 << 16;

/// `dtype.encode_into`, spread over the rayon pool for large chunks.
pub(crate) fn encode_par(dtype: DType, data: &[f32], out: &mut [u8]) {
    let size = dtype.size();
    if data.len() <= PAR_MIN {
        return dtype.encode_into(data, out);
    }
    out.par_chunks_mut(PAR_MIN * size).zip(data.par_chunks(PAR_MIN)).for_each(|(o, d)| dtype.encode_into(d, o));
}

/// `dtype.decode_into`, spread over the rayon pool for large chunks.
pub(crate) fn decode_par(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let size = dtype.size();
    if out.len() <= PAR_MIN {
        return dtype.decode_into(bytes, out);
    }
    out.par_chunks_mut(PAR_MIN).zip(bytes.par_chunks(PAR_MIN * size)).for_each(|(o, b)| dtype.decode_into(b, o));
}

/// Start alignment of ring regions.
const RING_ALIGN: usize = 256;

/// Regions of a ring of `cap` bytes handed out in order, each held until the token `E` committed with it says
/// the device is done with it. Tokens complete in commit order (one stream), so waiting for the oldest pending
/// region first never waits longer than waiting for the one actually in the way.
pub(crate) struct Ring<E> {
    cap: usize,
    head: usize,
    pending: VecDeque<(Range<usize>, E)>,
}

impl<E> Ring<E> {
    pub fn new(cap: usize) -> Self {
        Ring { cap, head: 0, pending: VecDeque::new() }
    }

    /// The start of a region of `n` bytes that no pending region overlaps. Pending regions in the way are
    /// handed to `wait` (oldest first), which must block until the device is done with them.
    pub fn reserve(&mut self, n: usize, mut wait: impl FnMut(E) -> Result<()>) -> Result<usize> {
        let len = n.max(1).next_multiple_of(RING_ALIGN);
        if len > self.cap {
            return Err(Error::invalid("pinned ring", format!("{n} bytes requested of a {}-byte ring", self.cap)));
        }
        if self.head + len > self.cap {
            self.head = 0;
        }
        let start = self.head;
        while self.pending.iter().any(|(r, _)| r.start < start + len && start < r.end) {
            let (_, token) = self.pending.pop_front().expect("an overlapping region is pending");
            wait(token)?;
        }
        self.head = start + len;
        Ok(start)
    }

    /// Marks `region` (from `reserve`) busy until `token` completes.
    pub fn commit(&mut self, region: Range<usize>, token: E) {
        self.pending.push_back((region, token));
    }

    /// Drops the oldest pending regions for which `done` says the device has finished, handing their tokens to
    /// `recycle`; stops at the first unfinished one.
    pub fn retire(&mut self, mut done: impl FnMut(&E) -> Result<bool>, mut recycle: impl FnMut(E)) -> Result<()> {
        while let Some((_, token)) = self.pending.front() {
            if !done(token)? {
                break;
            }
            let (_, token) = self.pending.pop_front().expect("front exists");
            recycle(token);
        }
        Ok(())
    }

    /// All pending tokens, oldest first; the ring is empty afterwards.
    pub fn drain(&mut self) -> impl Iterator<Item = E> + '_ {
        self.pending.drain(..).map(|(_, token)| token)
    }

    #[cfg(test)]
    fn pending_regions(&self) -> Vec<Range<usize>> {
        self.pending.iter().map(|(r, _)| r.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range_in_order() {
        assert_eq!(chunks(0, 8).count(), 0);
        assert_eq!(chunks(8, 8).collect::<Vec<_>>(), vec![0..8]);
        assert_eq!(chunks(9, 8).collect::<Vec<_>>(), vec![0..8, 8..9]);
        assert_eq!(chunks(20, 6).collect::<Vec<_>>(), vec![0..6, 6..12, 12..18, 18..20]);
        for (total, chunk) in [(1, 1), (77, 10), (CHUNK * 3 + 2, CHUNK), (CHUNK - 2, CHUNK)] {
            let parts: Vec<_> = chunks(total, chunk).collect();
            assert_eq!(parts.first().map_or(0, |r| r.start), 0);
            assert_eq!(parts.last().map_or(0, |r| r.end), total);
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
            assert!(parts.iter().all(|r| !r.is_empty() && r.len() <= chunk));
        }
    }

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.37).collect()
    }

    /// A download split into chunks (odd element counts included) and decoded chunk by chunk into place, as
    /// the runtimes do, equals the unsplit decode; likewise for uploads.
    #[test]
    fn chunked_conversion_equals_unsplit() {
        let n = 3 * PAR_MIN + 1237;
        let data = values(n);
        for dtype in [DType::F32, DType::Bf16, DType::F16, DType::I32] {
            let size = dtype.size();
            let bytes = dtype.encode(&data);
            let whole = dtype.decode(&bytes);
            for chunk_elems in [1, 3, 1001, PAR_MIN + 3, n] {
                let mut out = vec![f32::NAN; n];
                for r in chunks(bytes.len(), chunk_elems * size) {
                    decode_par(dtype, &bytes[r.clone()], &mut out[r.start / size..r.end / size]);
                }
                assert_eq!(
                    out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    whole.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
                let mut enc = vec![0xAAu8; bytes.len()];
                for r in chunks(enc.len(), chunk_elems * size) {
                    let (lo, hi) = (r.start / size, r.end / size);
                    encode_par(dtype, &data[lo..hi], &mut enc[r]);
                }
                assert_eq!(enc, bytes, "{dtype:?} in chunks of {chunk_elems}");
            }
        }
    }

    /// Replays the download order against two slots: a slot is refilled only once its piece was converted,
    /// each conversion finds its own piece, pieces convert in order, and piece k+1 is in flight while k converts.
    #[test]
    fn download_steps_never_overwrite_an_unconverted_slot() {
        for pieces in 0..7 {
            let mut slots: [Option<(usize, bool)>; SLOTS] = [None; SLOTS];
            let (mut converted, mut fetched) = (Vec::new(), Vec::new());
            for step in download_steps(pieces) {
                match step {
                    Step::Fetch(k) => {
                        assert!(slots[k % SLOTS].is_none_or(|(_, done)| done), "{pieces}: piece {k} overwrites");
                        slots[k % SLOTS] = Some((k, false));
                        fetched.push(k);
                    }
                    Step::Convert(k) => {
                        assert_eq!(slots[k % SLOTS], Some((k, false)), "{pieces}: piece {k} not in its slot");
                        slots[k % SLOTS] = Some((k, true));
                        assert!(k + 1 == pieces || fetched.contains(&(k + 1)), "{pieces}: no overlap at {k}");
                        converted.push(k);
                    }
                }
            }
            assert_eq!(converted, (0..pieces).collect::<Vec<_>>());
            assert_eq!(fetched, (0..pieces).collect::<Vec<_>>());
        }
    }

    fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
        a.start < b.end && b.start < a.end
    }

    #[test]
    fn ring_regions_never_overlap_pending_ones() {
        let mut ring = Ring::<u32>::new(4096);
        let mut waited = Vec::new();
        let sizes = [1usize, 300, 1000, 5, 2000, 700, 4096, 17, 256, 3000, 1, 1, 999];
        for (token, n) in (0u32..).zip(sizes) {
            let start = ring
                .reserve(n, |t| {
                    waited.push(t);
                    Ok(())
                })
                .unwrap();
            let region = start..start + n;
            assert!(region.end <= 4096 && start % RING_ALIGN == 0);
            assert!(ring.pending_regions().iter().all(|p| !overlaps(p, &region)), "{region:?} overlaps");
            ring.commit(region, token);
        }
        assert!(waited.windows(2).all(|w| w[0] < w[1]), "waits go oldest first: {waited:?}");
        assert!(ring.reserve(4097, |_| Ok(())).is_err());
    }

    #[test]
    fn ring_waits_only_when_wrapping_onto_pending_regions() {
        let mut ring = Ring::<u32>::new(1024);
        let mut waited = Vec::new();
        for t in 0..4 {
            let s = ring
                .reserve(256, |t| {
                    waited.push(t);
                    Ok(())
                })
                .unwrap();
            assert_eq!(s, 256 * t as usize);
            ring.commit(s..s + 256, t);
        }
        assert!(waited.is_empty());
        // Retire what is done (tokens 0 and 1), then wrap: region 0 is free, no wait.
        let mut recycled = Vec::new();
        ring.retire(|&t| Ok(t < 2), |t| recycled.push(t)).unwrap();
        assert_eq!(recycled, vec![0, 1]);
        let s = ring
            .reserve(300, |t| {
                waited.push(t);
                Ok(())
            })
            .unwrap();
        assert_eq!((s, waited.len()), (0, 0));
        ring.commit(s..s + 300, 4);
        // The next region runs into token 2's bytes: it waits for 2 only.
        let s = ring
            .reserve(256, |t| {
                waited.push(t);
                Ok(())
            })
            .unwrap();
        assert_eq!((s, waited.clone()), (512, vec![2]));
        ring.commit(s..s + 256, 5);
        assert_eq!(ring.drain().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(ring.pending_regions().is_empty());
    }

    #[test]
    fn a_failed_wait_is_reported() {
        let mut ring = Ring::<u32>::new(512);
        let s = ring.reserve(512, |_| Ok(())).unwrap();
        ring.commit(s..s + 512, 0);
        assert!(ring.reserve(8, |_| Err(Error::invalid("test", "device lost"))).is_err());
    }
}

//! Launchers for `kernels/coreset.cu`: k-center greedy on the device. Each centre (a labelled row, or the
//! farthest row after the previous centre) takes two launches and no host round trip: the pick stays on the
//! device until [`Coreset::centres`] downloads them all. Rows the new centre provably cannot come closer to are
//! skipped without reading their features, as on the CPU.

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Threads (8 warps) in a block of the coreset kernels.
const THREADS: u32 = 256;
/// Blocks per SM of `coreset_update_*`: 8 of 256 threads fill an SM's 2048.
const UPDATE_BLOCKS_PER_SM: u32 = 8;

/// The device state of k-center greedy over `features` [n, d] with room for `slots` centres.
pub struct Coreset<'a> {
    n: usize,
    d: usize,
    features: &'a GpuBuffer,
    slots: usize,
    /// The row of each slot's centre (−1: none, once no row was left).
    centres: GpuBuffer,
    /// Squared distances from the newest centre to each earlier one.
    cdist: GpuBuffer,
    /// Each row's squared distance to its nearest centre (−1 for centres, +∞ before any).
    mindist: GpuBuffer,
    /// The slot of each row's nearest centre (−1 before any).
    nearest: GpuBuffer,
    /// Per slot, the farthest active row after it, packed (0: none); two I32 words a slot.
    best: GpuBuffer,
    /// `coreset_centre_<dtype>` and `coreset_update_<dtype>` for the features' type.
    kernels: [String; 2],
}

impl<'a> Coreset<'a> {
    /// The state before any centre: rows with `labelled[i]` inactive (−1) from the start, the others at +∞.
    pub fn new(dev: &GpuDevice, d: usize, features: &'a GpuBuffer, labelled: &[bool], slots: usize) -> Result<Self> {
        let n = labelled.len();
        let dt = features.dtype().suffix();
        let kernels = [format!("coreset_centre_{dt}"), format!("coreset_update_{dt}")];
        let kernel = &kernels[1];
        if n == 0 || slots == 0 {
            return Err(Error::kernel(kernel, format!("{n} rows and {slots} centre slots")));
        }
        check(kernel, "features", features, features.dtype(), n * d)?;
        int(kernel, "n", n)?;
        int(kernel, "slots", slots)?;
        let start: Vec<f32> = labelled.iter().map(|&l| if l { -1.0 } else { f32::INFINITY }).collect();
        Ok(Coreset {
            n,
            d,
            features,
            slots,
            centres: dev.alloc(DType::I32, slots)?,
            cdist: dev.alloc(DType::F32, slots)?,
            mindist: dev.upload(&start, DType::F32)?,
            nearest: dev.upload(&vec![-1.0; n], DType::I32)?,
            best: dev.upload(&vec![0.0; 2 * slots], DType::I32)?,
            kernels,
        })
    }

    /// Makes slot `s` a centre: row `given`, or with None the farthest active row after slot s − 1 (none when
    /// no row was left, or s = 0). Slots are added in order.
    pub fn add(&self, dev: &GpuDevice, s: usize, given: Option<usize>) -> Result<()> {
        let [centre, update] = &self.kernels;
        if s >= self.slots {
            return Err(Error::kernel(centre, format!("slot {s} of {}", self.slots)));
        }
        let given = match given {
            Some(row) if row >= self.n => return Err(Error::kernel(centre, format!("row {row} of {}", self.n))),
            Some(row) => row as i32,
            None => -1,
        };
        let mut args = KernelArgs::new();
        args.i32(int(centre, "D", self.d)?) //  int D
            .buf(self.features) //                const T* x
            .buf(&self.centres) //                int* centres
            .buf(&self.cdist) //                  float* cdist
            .buf(&self.best) //                   const unsigned long long* best
            .i32(s as i32) //                     int s (< slots, checked to fit an int)
            .i32(given); //                       int given
        let grid = s.div_ceil((THREADS / 32) as usize).max(1) as u32;
        // SAFETY: signature (int, const T*, int*, float*, const unsigned long long*, int, int); features hold
        // n·d values, centres, cdist and best (two words each) `slots` entries, and s < slots.
        unsafe { dev.launch(centre, LaunchConfig::linear(grid, THREADS), &mut args)? };
        let mut args = KernelArgs::new();
        args.i32(int(update, "N", self.n)?) //   int N
            .i32(int(update, "D", self.d)?) //   int D
            .buf(self.features) //                const T* x
            .buf(&self.centres) //                const int* centres
            .buf(&self.cdist) //                  const float* cdist
            .buf(&self.mindist) //                float* mindist
            .buf(&self.nearest) //                int* nearest
            .buf(&self.best) //                   unsigned long long* best
            .i32(s as i32); //                    int s
        let grid = (self.n.div_ceil((THREADS / 32) as usize) as u32).min(dev.sm_count() * UPDATE_BLOCKS_PER_SM).max(1);
        // SAFETY: signature (int, int, const T*, const int*, const float*, float*, int*, unsigned long long*,
        // int); mindist and nearest hold n entries, the others as above.
        unsafe { dev.launch(update, LaunchConfig::linear(grid, THREADS), &mut args) }
    }

    /// The rows of slots `from..` in order, up to the first slot that found no row.
    pub fn centres(&self, dev: &GpuDevice, from: usize) -> Result<Vec<usize>> {
        if from >= self.slots {
            return Ok(Vec::new());
        }
        let rows = dev.download_i32(&self.centres.slice(from, self.slots - from)?)?;
        Ok(rows.into_iter().take_while(|&r| r >= 0).map(|r| r as usize).collect())
    }

    /// Each row's squared distance to its nearest centre (−1 for centres).
    pub fn mindist(&self) -> &GpuBuffer {
        &self.mindist
    }
}

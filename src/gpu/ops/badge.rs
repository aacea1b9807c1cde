//! Launchers for `kernels/badge.cu`: BADGE's k-means++ seeding on the device. The first centre is given (the
//! row of largest ‖g‖², from [`Badge::norm2`]); every next one is drawn on the device from uniforms drawn on the
//! host beforehand, two launches a centre and no host round trip until [`Badge::centres`] downloads them all.
//! f64 arrays live in I32 buffers of two words an element.

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Threads (8 warps) in a block of the BADGE kernels (`BADGE_THREADS`).
const THREADS: u32 = 256;
/// Blocks per SM of `badge_update_*`: its launch bound (`BADGE_UPDATE_BLOCKS`, 64 registers a thread), so
/// that the grid is one wave.
const UPDATE_BLOCKS_PER_SM: u32 = 4;
/// A slot's row when every active D² was 0 (`UNIFORM_REST`): the rest are uniform draws, made on the host.
pub const UNIFORM_REST: i32 = -2;

/// The device state of BADGE's seeding over features [n, d] and residuals q = p − onehot(argmax p) [n, c].
pub struct Badge<'a> {
    n: usize,
    c: usize,
    d: usize,
    features: &'a GpuBuffer,
    q: GpuBuffer,
    /// ‖q_i‖²‖h_i‖² (f64).
    norm2: GpuBuffer,
    /// The row of each slot's centre (−1: not drawn, `UNIFORM_REST`: the host draws from here on).
    centres: GpuBuffer,
    /// Squared gradient distances from the newest centre to each earlier one (f64).
    cdist: GpuBuffer,
    /// Each row's D² (f64; −1 for centres and labelled rows, +∞ before any centre).
    d2: GpuBuffer,
    /// The slot of each row's nearest centre (−1 before any).
    nearest: GpuBuffer,
    /// Per block of `badge_update_*`, the sum of its rows' D² (f64).
    block_sums: GpuBuffer,
    /// Blocks of `badge_update_*` that have arrived (zero between launches).
    state: GpuBuffer,
    /// The uniform of each slot's draw of the next (f64).
    us: GpuBuffer,
    slots: usize,
    grid: u32,
    rows_per_block: usize,
    /// `badge_centre_<dtype>` and `badge_update_<dtype>` for the features' type.
    kernels: [String; 2],
}

impl<'a> Badge<'a> {
    /// The state before any centre: rows with `labelled[i]` take no part; `us[s]` draws the centre of slot
    /// s + 1, so there are `us.len() + 1` slots. Launches `badge_norms_*`.
    pub fn new(
        dev: &GpuDevice,
        d: usize,
        features: &'a GpuBuffer,
        q: &[f32],
        labelled: &[bool],
        us: &[f64],
    ) -> Result<Self> {
        let (n, slots) = (labelled.len(), us.len() + 1);
        let dt = features.dtype().suffix();
        let norms = format!("badge_norms_{dt}");
        if n == 0 || q.len() % n != 0 {
            return Err(Error::kernel(&norms, format!("{n} rows and {} residuals", q.len())));
        }
        let c = q.len() / n;
        check(&norms, "features", features, features.dtype(), n * d)?;
        int(&norms, "n", n)?;
        int(&norms, "slots", slots)?;
        let grid = (n.div_ceil((THREADS / 32) as usize) as u32).min(dev.sm_count() * UPDATE_BLOCKS_PER_SM).max(1);
        let start: Vec<f64> = labelled.iter().map(|&l| if l { -1.0 } else { f64::INFINITY }).collect();
        let padded: Vec<f64> = us.iter().copied().chain([0.0]).collect();
        let state = Badge {
            n,
            c,
            d,
            features,
            q: dev.upload(q, DType::F32)?,
            norm2: dev.alloc(DType::I32, 2 * n)?,
            centres: dev.upload_i32(&vec![-1; slots])?,
            cdist: dev.alloc(DType::I32, 2 * slots)?,
            d2: upload_f64(dev, &start)?,
            nearest: dev.upload_i32(&vec![-1; n])?,
            block_sums: dev.alloc(DType::I32, 2 * grid as usize)?,
            state: dev.upload_i32(&[0])?,
            us: upload_f64(dev, &padded)?,
            slots,
            grid,
            rows_per_block: n.div_ceil(grid as usize),
            kernels: [format!("badge_centre_{dt}"), format!("badge_update_{dt}")],
        };
        let mut args = KernelArgs::new();
        args.i32(n as i32) //                    int N
            .i32(int(&norms, "C", c)?) //        int C
            .i32(int(&norms, "D", d)?) //        int D
            .buf(&state.q) //                    const float* q
            .buf(features) //                    const T* h
            .buf(&state.norm2); //               double* norm2
                                // SAFETY: signature (int, int, int, const float*, const T*, double*); q holds n·c values, the features
                                // n·d and norm2 2n words.
        unsafe { dev.launch(&norms, LaunchConfig::linear(grid, THREADS), &mut args)? };
        Ok(state)
    }

    /// ‖g_i‖² = ‖q_i‖²‖h_i‖² of every row (f64 from f32 inner products, as on the CPU).
    pub fn norm2(&self, dev: &GpuDevice) -> Result<Vec<f64>> {
        download_f64(dev, &self.norm2)
    }

    /// Makes `first` the centre of slot 0; [`Badge::add`] then takes the slots in order.
    pub fn start(&mut self, dev: &GpuDevice, first: usize) -> Result<()> {
        if first >= self.n {
            return Err(Error::kernel(&self.kernels[0], format!("row {first} of {}", self.n)));
        }
        let mut rows = vec![-1; self.slots];
        rows[0] = first as i32;
        self.centres = dev.upload_i32(&rows)?;
        Ok(())
    }

    /// Makes `first` the centre of slot 0 and draws every other slot.
    pub fn seed(&mut self, dev: &GpuDevice, first: usize) -> Result<()> {
        self.start(dev, first)?;
        (0..self.slots).try_for_each(|s| self.add(dev, s))
    }

    /// Slot `s`'s centre (given, or drawn by slot s − 1) takes its part: two launches, the second drawing slot
    /// s + 1. Slots are added in order, after [`Badge::start`].
    pub fn add(&self, dev: &GpuDevice, s: usize) -> Result<()> {
        let [centre, update] = &self.kernels;
        if s >= self.slots {
            return Err(Error::kernel(centre, format!("slot {s} of {}", self.slots)));
        }
        let mut args = KernelArgs::new();
        args.i32(int(centre, "C", self.c)?) //  int C
            .i32(int(centre, "D", self.d)?) //  int D
            .buf(&self.q) //                     const float* q
            .buf(self.features) //               const T* h
            .buf(&self.norm2) //                 const double* norm2
            .buf(&self.centres) //               const int* centres
            .buf(&self.cdist) //                 double* cdist
            .i32(s as i32); //                   int s (< slots, checked to fit an int)
        let grid = s.div_ceil((THREADS / 32) as usize).max(1) as u32;
        // SAFETY: signature (int, int, const float*, const T*, const double*, const int*, double*, int); centres
        // hold `slots` rows, cdist 2·slots words, and s < slots.
        unsafe { dev.launch(centre, LaunchConfig::linear(grid, THREADS), &mut args)? };
        let mut args = KernelArgs::new();
        args.i32(self.n as i32) //                int N
            .i32(self.c as i32) //                int C
            .i32(self.d as i32) //                int D
            .i32(self.rows_per_block as i32) //   int R
            .buf(&self.q) //                      const float* q
            .buf(self.features) //                const T* h
            .buf(&self.norm2) //                  const double* norm2
            .buf(&self.centres) //                int* centres
            .buf(&self.cdist) //                  const double* cdist
            .buf(&self.d2) //                     double* d2
            .buf(&self.nearest) //                int* nearest
            .buf(&self.block_sums) //             double* block_sums
            .buf(&self.state) //                  unsigned* state
            .buf(&self.us) //                     const double* us
            .i32(s as i32) //                     int s
            .i32(self.slots as i32); //           int slots
                                     // SAFETY: signature (4 × int, const float*, const T*, const double*, int*, const double*, double*, int*,
                                     // double*, unsigned*, const double*, int, int); d2 and nearest hold n entries, block_sums one per block
                                     // of `grid`, whose blocks of rows_per_block rows cover n; us one per slot.
        unsafe { dev.launch(update, LaunchConfig::linear(self.grid, THREADS), &mut args) }
    }

    /// The row of every slot in order: a row, −1 (not drawn) or [`UNIFORM_REST`].
    pub fn centres(&self, dev: &GpuDevice) -> Result<Vec<i32>> {
        dev.download_i32(&self.centres)
    }

    /// Each row's D² to its nearest centre (−1 for centres and labelled rows).
    pub fn d2(&self, dev: &GpuDevice) -> Result<Vec<f64>> {
        download_f64(dev, &self.d2)
    }
}

/// f64 values into an I32 buffer of two words each (the kernels read them as `double`).
fn upload_f64(dev: &GpuDevice, v: &[f64]) -> Result<GpuBuffer> {
    dev.upload_bytes(bytemuck::cast_slice(v), DType::I32)
}

fn download_f64(dev: &GpuDevice, buf: &GpuBuffer) -> Result<Vec<f64>> {
    Ok(bytemuck::pod_collect_to_vec(&dev.download_i32(buf)?))
}

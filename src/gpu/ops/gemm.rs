//! Launcher for `kernels/gemm.cu` and, on Hopper, `kernels/gemm_sm90.cu` and `kernels/gemm_persistent_sm90.cu`:
//! C = residual + layer_scale ⊙ act(norm(A·Wᵀ) + bias), bf16 or f16; `norm` is a folded LayerNorm (optional).

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Block tile edge and shared bytes of `gemm.cu` (GEMM_BM = GEMM_BN, GEMM_SMEM_BYTES).
const TILE: usize = 128;
const SMEM_BYTES: u32 = 3 * (128 + 128) * 40 * 2;

/// Which kernel computes a GEMM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmKernel {
    /// The fastest that applies: `gemm_sm90.cu` on an sm_90 device with aligned operands, else `gemm.cu`.
    #[default]
    Auto,
    /// `gemm.cu` (mma.sync; every device, the emulator included).
    Sm80,
    /// One of `gemm_sm90.cu`'s [`SM90_VARIANTS`]. Needs an sm_90 device and aligned operands.
    Sm90(Sm90Variant),
}

/// How a `gemm_sm90.cu` kernel feeds its wgmma.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm90Feed {
    /// cp.async from every thread (256 threads).
    CpAsync,
    /// The tensor memory accelerator, driven by one thread of a producer warpgroup that idles otherwise (384).
    Tma,
    /// TMA from one producer warp after the consumers (288 threads, two blocks per SM).
    TmaLean,
    /// Persistent ping-pong: one block per SM walks the tiles; a producer warpgroup feeds two consumer
    /// warpgroups that take alternate 128 x 128 tiles, one's epilogue under the other's main loop (384).
    PingPong,
    /// The same with the consumers' main loops taking turns on the tensor cores (named barriers).
    PingPongOrdered,
    /// Persistent cooperative: 256 x 128 block tiles, both consumer warpgroups on each (sharing its W tile).
    Cooperative,
}

/// A `gemm_sm90.cu` kernel: block tile 128 x `bn` (per consumer warpgroup for `PingPong`), a `stages`-deep
/// operand pipeline, fed as `feed` says; with `multicast` (persistent kernels), in clusters of two blocks on the
/// two column halves of a tile twice as wide, which share its A rows by TMA multicast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm90Variant {
    pub bn: usize,
    pub stages: usize,
    pub feed: Sm90Feed,
    pub multicast: bool,
}

impl Sm90Variant {
    const fn new(bn: usize, stages: usize, feed: Sm90Feed) -> Self {
        Sm90Variant { bn, stages, feed, multicast: false }
    }

    const fn in_clusters(self) -> Self {
        Sm90Variant { multicast: true, ..self }
    }

    /// `n128s3`, `tma-n128s5`, `tmaw-n128s3`, `pp-n128s5`, `ppo-n128s5`, `coop-n128s4`, and `ppomc-n128s5`,
    /// `coopmc-n128s4` in clusters: the kernel name's middle and the `CPEAL_GEMM_SM90` value.
    pub fn label(&self) -> String {
        let feed = match self.feed {
            Sm90Feed::CpAsync => "",
            Sm90Feed::Tma => "tma",
            Sm90Feed::TmaLean => "tmaw",
            Sm90Feed::PingPong => "pp",
            Sm90Feed::PingPongOrdered => "ppo",
            Sm90Feed::Cooperative => "coop",
        };
        let tile = format!("n{}s{}", self.bn, self.stages);
        match (feed, self.multicast) {
            ("", _) => tile,
            (feed, true) => format!("{feed}mc-{tile}"),
            (feed, false) => format!("{feed}-{tile}"),
        }
    }

    fn kernel_name(&self, dt: DType) -> String {
        format!("gemm_sm90_{}_{}", self.label().replace('-', "_"), dt.suffix())
    }

    fn threads(&self) -> u32 {
        match self.feed {
            Sm90Feed::CpAsync => 256,
            Sm90Feed::TmaLean => 288,
            _ => 384,
        }
    }

    fn uses_tma(&self) -> bool {
        self.feed != Sm90Feed::CpAsync
    }

    /// Rows of a block tile: 256 for the cooperative kernels (a 128-row tile per consumer), else 128.
    fn block_rows(&self) -> usize {
        if self.feed == Sm90Feed::Cooperative {
            2 * TILE
        } else {
            TILE
        }
    }

    /// Rows of A's TMA boxes: half a block tile in clusters (each block loads one half), else 128.
    fn a_box_rows(&self) -> usize {
        if self.multicast {
            self.block_rows() / 2
        } else {
            TILE
        }
    }

    /// Operand stages, 1 KiB to align the first tile to the swizzle period, the TMA variants' two barriers per
    /// stage, and the persistent consumers' epilogue buffers (128 rows x (CW + 8) f32 each; CW = 32 columns
    /// per chunk, 16 for the cooperative kernel).
    fn shared_bytes(&self) -> u32 {
        let stages = (self.block_rows() + self.bn) * 128 * self.stages + 1024;
        let barriers = if self.uses_tma() { 16 * self.stages } else { 0 };
        let park = if self.persistent() { 2 * 128 * (self.store_cols() + 8) * 4 } else { 0 };
        (stages + barriers + park) as u32
    }

    /// Grid for an m x n output: one block per tile, or for the persistent kernels one per SM (at most one per
    /// tile); with multicast, a cluster of two blocks per pair of column tiles (the launch caps it at the
    /// clusters that fit at once).
    fn grid(&self, m: usize, n: usize, sm_count: u32) -> (usize, usize) {
        let (tiles_n, tiles_m) = (n.div_ceil(self.bn), m.div_ceil(self.block_rows()));
        if self.multicast {
            (2 * tiles_n.div_ceil(2) * tiles_m, 1)
        } else if self.persistent() {
            ((tiles_n * tiles_m).min(sm_count as usize), 1)
        } else {
            (tiles_n, tiles_m)
        }
    }

    /// Columns one `g90_store` call covers: the window of the row statistics the epilogue writes
    /// (`Gemm::row_partials`), and for the persistent kernels the columns parked per epilogue chunk.
    fn store_cols(&self) -> usize {
        match self.feed {
            Sm90Feed::PingPong | Sm90Feed::PingPongOrdered => 32,
            Sm90Feed::Cooperative => 16,
            _ => self.bn,
        }
    }

    fn persistent(&self) -> bool {
        matches!(self.feed, Sm90Feed::PingPong | Sm90Feed::PingPongOrdered | Sm90Feed::Cooperative)
    }
}

/// The variants compiled in `gemm_sm90.cu` and `gemm_persistent_sm90.cu` (the persistent ones).
pub const SM90_VARIANTS: [Sm90Variant; 11] = [
    Sm90Variant::new(128, 3, Sm90Feed::CpAsync),
    Sm90Variant::new(128, 4, Sm90Feed::CpAsync),
    Sm90Variant::new(256, 4, Sm90Feed::CpAsync),
    Sm90Variant::new(128, 5, Sm90Feed::Tma),
    Sm90Variant::new(256, 3, Sm90Feed::Tma),
    Sm90Variant::new(128, 3, Sm90Feed::TmaLean),
    Sm90Variant::new(128, 5, Sm90Feed::PingPong),
    Sm90Variant::new(128, 5, Sm90Feed::PingPongOrdered),
    Sm90Variant::new(128, 4, Sm90Feed::Cooperative),
    Sm90Variant::new(128, 5, Sm90Feed::PingPongOrdered).in_clusters(),
    Sm90Variant::new(128, 4, Sm90Feed::Cooperative).in_clusters(),
];

/// The Hopper variant `Auto` picks for an m x n x k GEMM. Measured on an H100 (bench/results/gpu-check-*.md
/// and gpu-gemm-notes-2026-11-25.md, ViT-B/16 shapes at batch 64 and 256): the lean TMA kernel (two blocks per
/// SM) wins at K = 768 (qkv 460–481 TFLOP/s, fc1 351–385, proj 350–455); on long K (fc2, K = 3072) the
/// five-stage TMA kernel (521–522). `CPEAL_GEMM_SM90=<label>` forces a variant (for benchmarks; on the emulator
/// too, which otherwise keeps `gemm.cu`), `=off` keeps `gemm.cu`.
fn auto_sm90(k: usize, emu: bool) -> Result<Option<Sm90Variant>> {
    if let Some(forced) = forced_sm90()? {
        return Ok(forced);
    }
    if emu {
        return Ok(None);
    }
    Ok(Some(if k >= 2048 {
        Sm90Variant::new(128, 5, Sm90Feed::Tma)
    } else {
        Sm90Variant::new(128, 3, Sm90Feed::TmaLean)
    }))
}

/// `CPEAL_GEMM_SM90`, read once: None when unset, Some(None) for `off`, Some(Some(v)) for a variant's label.
fn forced_sm90() -> Result<Option<Option<Sm90Variant>>> {
    static FORCED: std::sync::OnceLock<std::result::Result<Option<Option<Sm90Variant>>, String>> =
        std::sync::OnceLock::new();
    super::forced_choice(&FORCED, "CPEAL_GEMM_SM90", || {
        let variants = SM90_VARIANTS.iter().map(|v| (v.label(), Some(*v)));
        std::iter::once(("off".to_string(), None)).chain(variants).collect()
    })
}

/// The window of `Gemm::row_partials` for a Hopper variant, or for `gemm.cu` (None): its warp tile's 32 columns.
fn partial_width(variant: Option<Sm90Variant>) -> usize {
    variant.map_or(32, |v| v.store_cols())
}

/// The activation of the epilogue (the kernel's `act`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    None = 0,
    Gelu = 1,
    QuickGelu = 2,
}

/// One GEMM: `c[m, n] = residual[m, n] + layer_scale[n] · act(norm(Σ_k a[m, k]·w[n, k]) + bias[n])`, where
/// `norm(v) = rstd[m]·(v − mean[m]·col_sum[n])` with `row_norm` (a LayerNorm folded in: see `GemmEpi` in
/// `kernels/common.cuh`), else `v`.
/// Matrices are row-major with leading dimensions (elements) `lda`, `ldw`, `ldc`, `ldr`; the residual may be
/// the output buffer itself when `ldr == ldc`.
#[derive(Clone, Copy)]
pub struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: &'a GpuBuffer,
    pub lda: usize,
    pub w: &'a GpuBuffer,
    pub ldw: usize,
    pub c: &'a GpuBuffer,
    pub ldc: usize,
    pub bias: Option<&'a GpuBuffer>,
    pub act: Activation,
    pub layer_scale: Option<&'a GpuBuffer>,
    pub residual: Option<&'a GpuBuffer>,
    pub ldr: usize,
    /// f32 (mean, rstd) per row `[m, 2]` and f32 `col_sum` `[n]`.
    pub row_norm: Option<(&'a GpuBuffer, &'a GpuBuffer)>,
    /// Output: f32 `[m, ceil(n / partial_width), 2]`, each row's mean and centred sum of squares per window.
    pub row_partials: Option<&'a GpuBuffer>,
    pub kernel: GemmKernel,
}

impl<'a> Gemm<'a> {
    /// Contiguous a [m, k], w [n, k], c [m, n]; no epilogue terms.
    pub fn new(m: usize, n: usize, k: usize, a: &'a GpuBuffer, w: &'a GpuBuffer, c: &'a GpuBuffer) -> Self {
        Gemm {
            m,
            n,
            k,
            a,
            lda: k,
            w,
            ldw: k,
            c,
            ldc: n,
            bias: None,
            act: Activation::None,
            layer_scale: None,
            residual: None,
            ldr: n,
            row_norm: None,
            row_partials: None,
            kernel: GemmKernel::Auto,
        }
    }

    pub fn bias(mut self, b: &'a GpuBuffer) -> Self {
        self.bias = Some(b);
        self
    }

    pub fn act(mut self, act: Activation) -> Self {
        self.act = act;
        self
    }

    pub fn layer_scale(mut self, s: &'a GpuBuffer) -> Self {
        self.layer_scale = Some(s);
        self
    }

    /// Add `r` ([m, n], leading dimension `ldr`).
    pub fn residual(mut self, r: &'a GpuBuffer, ldr: usize) -> Self {
        self.residual = Some(r);
        self.ldr = ldr;
        self
    }

    /// Normalise each row before the bias: `rstd[m]·(v − mean[m]·col_sum[n])`, `stats` holding f32 (mean, rstd)
    /// pairs (`layernorm::row_stats`), `col_sum` f32.
    pub fn row_norm(mut self, stats: &'a GpuBuffer, col_sum: &'a GpuBuffer) -> Self {
        self.row_norm = Some((stats, col_sum));
        self
    }

    /// Also write the statistics of each output row, per window of `partial_width` columns, into `partials`
    /// (f32, `m · ceil(n / partial_width) · 2`): the LayerNorm of the next GEMM then needs only
    /// `layernorm::merge_partials`, not a pass over C.
    pub fn row_partials(mut self, partials: &'a GpuBuffer) -> Self {
        self.row_partials = Some(partials);
        self
    }

    /// The window of `row_partials` for the kernel this GEMM runs on `dev`.
    pub fn partial_width(&self, dev: &GpuDevice) -> Result<usize> {
        Ok(partial_width(self.sm90_variant(dev, self.a.dtype())?))
    }

    /// Compute with this kernel instead of the automatic choice.
    pub fn kernel(mut self, kernel: GemmKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The Hopper variant this GEMM runs on `dev`, or None for `gemm.cu`.
    fn sm90_variant(&self, dev: &GpuDevice, dt: DType) -> Result<Option<Sm90Variant>> {
        let hopper = dev.runs_hopper_kernels() && self.aligned();
        Ok(match self.kernel {
            GemmKernel::Auto => auto_sm90(self.k, dev.is_emu())?.filter(|_| hopper),
            GemmKernel::Sm80 => None,
            GemmKernel::Sm90(v) => {
                let name = v.kernel_name(dt);
                if !SM90_VARIANTS.contains(&v) {
                    return Err(Error::kernel(&name, "no such variant"));
                }
                if !hopper {
                    return Err(Error::kernel(
                        &name,
                        "needs an sm_90 device (or the emulator) and 16-byte aligned operands",
                    ));
                }
                Some(v)
            }
        })
    }

    /// Whether the cp.async path applies (K and strides multiples of 8 elements; buffers are 256-byte aligned).
    fn aligned(&self) -> bool {
        self.k % 8 == 0 && self.lda % 8 == 0 && self.ldw % 8 == 0 && self.a.ptr() % 16 == 0 && self.w.ptr() % 16 == 0
    }

    fn check(&self, kernel: &str, dt: DType, partial_width: usize) -> Result<()> {
        let (m, n, k) = (self.m, self.n, self.k);
        if m == 0 || n == 0 || k == 0 {
            return Err(Error::kernel(kernel, format!("empty GEMM {m}x{n}x{k}")));
        }
        if self.lda < k || self.ldw < k || self.ldc < n || (self.residual.is_some() && self.ldr < n) {
            return Err(Error::kernel(kernel, "a leading dimension is smaller than its row"));
        }
        check(kernel, "a", self.a, dt, (m - 1) * self.lda + k)?;
        check(kernel, "w", self.w, dt, (n - 1) * self.ldw + k)?;
        check(kernel, "c", self.c, dt, (m - 1) * self.ldc + n)?;
        if let Some(b) = self.bias {
            check(kernel, "bias", b, dt, n)?;
        }
        if let Some(s) = self.layer_scale {
            check(kernel, "layer_scale", s, dt, n)?;
        }
        if let Some((stats, col_sum)) = self.row_norm {
            check(kernel, "row_stats", stats, DType::F32, 2 * m)?;
            check(kernel, "col_sum", col_sum, DType::F32, n)?;
        }
        if let Some(partials) = self.row_partials {
            check(kernel, "row_partials", partials, DType::F32, 2 * m * n.div_ceil(partial_width))?;
        }
        if let Some(r) = self.residual {
            check(kernel, "residual", r, dt, (m - 1) * self.ldr + n)?;
            if r.ptr() == self.c.ptr() && self.ldr != self.ldc {
                return Err(Error::kernel(kernel, "an in-place residual needs ldr == ldc"));
            }
        }
        Ok(())
    }

    /// The kernel `launch` runs on `dev`: a Hopper variant's `gemm_sm90_<label>_<dtype>`, or `gemm_<dtype>` /
    /// `gemm_unaligned_<dtype>`.
    pub fn kernel_name(&self, dev: &GpuDevice) -> Result<String> {
        let dt = self.a.dtype();
        Ok(self.name_of(self.sm90_variant(dev, dt)?, dt))
    }

    fn name_of(&self, variant: Option<Sm90Variant>, dt: DType) -> String {
        match variant {
            Some(v) => v.kernel_name(dt),
            None => format!("{}_{}", if self.aligned() { "gemm" } else { "gemm_unaligned" }, dt.suffix()),
        }
    }

    /// Launch on `dev`.
    pub fn launch(&self, dev: &GpuDevice) -> Result<()> {
        let dt = self.a.dtype();
        if !matches!(dt, DType::Bf16 | DType::F16) {
            return Err(Error::kernel("gemm", format!("{dt:?} storage; the GEMM takes bf16 or f16")));
        }
        let variant = self.sm90_variant(dev, dt)?;
        let kernel = self.name_of(variant, dt);
        let (tile_n, threads, smem) = match variant {
            Some(v) => (v.bn, v.threads(), v.shared_bytes()),
            None => (TILE, 256, SMEM_BYTES),
        };
        self.check(&kernel, dt, partial_width(variant))?;
        let (grid_x, grid_y) = match variant {
            Some(v) => v.grid(self.m, self.n, dev.sm_count()),
            None => (self.n.div_ceil(tile_n), self.m.div_ceil(TILE)),
        };
        let grid_x = u32::try_from(grid_x).map_err(|_| Error::kernel(&kernel, "N too large"))?;
        let grid_y = u32::try_from(grid_y).ok().filter(|&g| g < 65536);
        let grid_y =
            grid_y.ok_or_else(|| Error::kernel(&kernel, format!("M = {} needs more than 65535 row tiles", self.m)))?;
        let mut cfg = LaunchConfig { grid: (grid_x, grid_y, 1), block: (threads, 1, 1), shared_bytes: smem };
        if variant.is_some_and(|v| v.multicast) {
            // Persistent clusters must all be resident at once: a cluster left waiting would start only when
            // another has finished all its tiles.
            cfg.grid.0 = cfg.grid.0.min(2 * dev.max_active_clusters(&kernel, &cfg)?);
        }
        let mut args = KernelArgs::new();
        args.tag(format!("{}x{}x{}", self.m, self.n, self.k)); // profiles tell qkv, proj, fc1 and fc2 apart
        args.i32(int(&kernel, "M", self.m)?) //   int M
            .i32(int(&kernel, "N", self.n)?) //   int N
            .i32(int(&kernel, "K", self.k)?); //  int K
        if let Some(v) = variant.filter(|v| v.uses_tma()) {
            let amap = dev.tensor_map_2d(self.a, self.m, self.k, self.lda, v.a_box_rows())?;
            let wmap = dev.tensor_map_2d(self.w, self.n, self.k, self.ldw, v.bn)?;
            args.i32(int(&kernel, "ldr", self.ldr)?) // int ldr
                .i32(int(&kernel, "ldc", self.ldc)?) //  int ldc
                .tensor_map(&amap) //                    TmaMap amap
                .tensor_map(&wmap); //                   TmaMap wmap
        } else {
            args.i32(int(&kernel, "lda", self.lda)?) // int lda
                .i32(int(&kernel, "ldw", self.ldw)?) //  int ldw
                .i32(int(&kernel, "ldr", self.ldr)?) //  int ldr
                .i32(int(&kernel, "ldc", self.ldc)?) //  int ldc
                .buf(self.a) //                          const T* A
                .buf(self.w); //                         const T* W
        }
        args.opt_buf(self.bias) //         const T* bias (nullable)
            .opt_buf(self.residual) //     const T* residual (nullable)
            .opt_buf(self.layer_scale) //  const T* layer_scale (nullable)
            .opt_buf(self.row_norm.map(|r| r.0)) // const float* row_stats (nullable)
            .opt_buf(self.row_norm.map(|r| r.1)) // const float* col_sum (nullable with row_stats)
            .buf(self.c) //                T* C
            .opt_buf(self.row_partials) // float* row_partials (nullable)
            .i32(self.act as i32); //      int act
                                   // SAFETY: every buffer holds what its leading dimension and the sizes require (checked above); the
                                   // signatures are (7 × int, 5 × const T*, 2 × const float*, T*, float*, int) and, for TMA, (5 × int,
                                   // 2 × TmaMap, 3 × const T*, 2 × const float*, T*, float*, int); the aligned and Hopper variants are chosen
                                   // only when their preconditions hold. The TMA descriptors address A and W, which `args` does not
                                   // keep alive: they are borrowed by `self` for this call.
        unsafe { dev.launch(&kernel, cfg, &mut args) }
    }
}

//! Launcher for `kernels/gemm.cu` and, on Hopper, `kernels/gemm_sm90.cu` and `kernels/gemm_persistent_sm90.cu`:
//! C = residual + layer_scale ⊙ act(norm(A·Wᵀ) + bias), bf16 or f16; `norm` is a folded LayerNorm (optional).

use super::gemm_sm90::auto_sm90;
pub use super::gemm_sm90::{GemmRole, Multicast, Sm90Feed, Sm90Variant, SM90_VARIANTS};
use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Block tile edge and shared bytes of `gemm.cu` (GEMM_BM = GEMM_BN, GEMM_SMEM_BYTES).
const TILE: usize = 128;
const SMEM_BYTES: u32 = 3 * (128 + 128) * 32 * 2; // 3 stages of 128 × 32 A and W tiles, rows unpadded (swizzled)

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

    /// Which ViT-B/16 GEMM this one resembles (it picks the automatic Hopper variant).
    pub fn role(&self) -> GemmRole {
        GemmRole::of(self.n, self.k, self.act)
    }

    /// The Hopper variant this GEMM runs on `dev`, or None for `gemm.cu`.
    fn sm90_variant(&self, dev: &GpuDevice, dt: DType) -> Result<Option<Sm90Variant>> {
        let hopper = dev.runs_hopper_kernels() && self.aligned();
        Ok(match self.kernel {
            GemmKernel::Auto => auto_sm90(self.role(), dev.is_emu())?.filter(|_| hopper),
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
        if variant.is_some_and(|v| v.clustered()) {
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
            let wmap = dev.tensor_map_2d(self.w, self.n, self.k, self.ldw, v.w_box_rows())?;
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

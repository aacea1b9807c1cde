//! Launcher for `kernels/gemm.cu`: C = residual + layer_scale ⊙ act(A·Wᵀ + bias), bf16 or f16.

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Block tile edge and shared bytes of `gemm.cu` (GEMM_BM = GEMM_BN, GEMM_SMEM_BYTES).
const TILE: usize = 128;
const SMEM_BYTES: u32 = 3 * (128 + 128) * 40 * 2;

/// The activation of the epilogue (the kernel's `act`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    None = 0,
    Gelu = 1,
    QuickGelu = 2,
}

/// One GEMM: `c[m, n] = residual[m, n] + layer_scale[n] · act(Σ_k a[m, k]·w[n, k] + bias[n])`.
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

    /// Whether the cp.async path applies (K and strides multiples of 8 elements; buffers are 256-byte aligned).
    fn aligned(&self) -> bool {
        self.k % 8 == 0 && self.lda % 8 == 0 && self.ldw % 8 == 0 && self.a.ptr() % 16 == 0 && self.w.ptr() % 16 == 0
    }

    fn check(&self, kernel: &str, dt: DType) -> Result<()> {
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
        if let Some(r) = self.residual {
            check(kernel, "residual", r, dt, (m - 1) * self.ldr + n)?;
            if r.ptr() == self.c.ptr() && self.ldr != self.ldc {
                return Err(Error::kernel(kernel, "an in-place residual needs ldr == ldc"));
            }
        }
        Ok(())
    }

    /// Launch on `dev`.
    pub fn launch(&self, dev: &GpuDevice) -> Result<()> {
        let dt = self.a.dtype();
        let variant = if self.aligned() { "gemm" } else { "gemm_unaligned" };
        let kernel = format!("{variant}_{}", dt.suffix());
        if !matches!(dt, DType::Bf16 | DType::F16) {
            return Err(Error::kernel(&kernel, format!("{dt:?} storage; the GEMM takes bf16 or f16")));
        }
        self.check(&kernel, dt)?;
        let grid_x = u32::try_from(self.n.div_ceil(TILE)).map_err(|_| Error::kernel(&kernel, "N too large"))?;
        let grid_y = u32::try_from(self.m.div_ceil(TILE)).ok().filter(|&g| g < 65536);
        let grid_y =
            grid_y.ok_or_else(|| Error::kernel(&kernel, format!("M = {} needs more than 65535 row tiles", self.m)))?;
        let cfg = LaunchConfig { grid: (grid_x, grid_y, 1), block: (256, 1, 1), shared_bytes: SMEM_BYTES };
        let mut args = KernelArgs::new();
        args.i32(int(&kernel, "M", self.m)?) //       int M
            .i32(int(&kernel, "N", self.n)?) //       int N
            .i32(int(&kernel, "K", self.k)?) //       int K
            .i32(int(&kernel, "lda", self.lda)?) //   int lda
            .i32(int(&kernel, "ldw", self.ldw)?) //   int ldw
            .i32(int(&kernel, "ldr", self.ldr)?) //   int ldr
            .i32(int(&kernel, "ldc", self.ldc)?) //   int ldc
            .buf(self.a) //                           const T* A
            .buf(self.w) //                           const T* W
            .opt_buf(self.bias) //                    const T* bias (nullable)
            .opt_buf(self.residual) //                const T* residual (nullable)
            .opt_buf(self.layer_scale) //             const T* layer_scale (nullable)
            .buf(self.c) //                           T* C
            .i32(self.act as i32); //                 int act
                                   // SAFETY: every buffer holds what its leading dimension and the sizes require (checked above); the
                                   // signature is (7 × int, 5 × const T*, T*, int); the aligned variant is chosen only when its
                                   // preconditions hold.
        unsafe { dev.launch(&kernel, cfg, &mut args) }
    }
}

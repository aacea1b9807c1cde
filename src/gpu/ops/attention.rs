//! Launcher for `kernels/attention.cu`: fused multi-head attention forward (flash-attention style on tensor
//! cores for the compiled head dims, otherwise the generic CUDA-core kernel).

use super::{check, int};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuBuffer, GpuDevice, KernelArgs, LaunchConfig};

/// Head dims with a compiled kernel (ViT-S/B/L and DINOv2: 64; CLIP ViT-H: 80; 96; 128).
pub const HEAD_DIMS: [usize; 4] = [64, 80, 96, 128];

/// Largest head dim of the generic (CUDA-core) kernel, which takes every other head dim, stride and alignment.
pub const GENERIC_MAX_HEAD_DIM: usize = 256;

/// `o[b, i, h·D..] = softmax(scale · q_i·kᵀ) v` for every batch b and head h. q, k, v, o are [batch, len, ·]
/// row-major with row strides `ld_*` (elements); head h occupies columns h·D … h·D+D−1 of a row.
#[derive(Clone, Copy)]
pub struct Attention<'a> {
    pub batch: usize,
    pub heads: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub head_dim: usize,
    pub q: &'a GpuBuffer,
    pub ld_q: usize,
    pub k: &'a GpuBuffer,
    pub ld_k: usize,
    pub v: &'a GpuBuffer,
    pub ld_v: usize,
    pub o: &'a GpuBuffer,
    pub ld_o: usize,
    pub scale: f32,
    /// Query i sees keys j <= i + k_len − q_len (the text tower's mask).
    pub causal: bool,
    /// Which tensor-core kernel runs for head dim 64 (see [`AttentionKernel`]).
    pub kernel: AttentionKernel,
}

/// The tensor-core attention kernels of head dim 64. The candidates are opt-in until measured on a GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionKernel {
    /// `CPEAL_ATTENTION=<label>` when set (for benchmarks), else `Tiled`.
    #[default]
    Auto,
    /// Every key tile 64 wide and masked (`attention_fwd_d64_*`, as tuned on an H100).
    Tiled,
    /// The last, partial key tile in 16-key steps and whole tiles unmasked (`attention_fwd_tail16_d64_*`).
    Tail16,
    /// Tail16 at four blocks per SM on sm_90 (128 registers; `attention_fwd_tail16x4_d64_*`).
    Tail16x4,
    /// Tail16 with one block per (batch, head) and a warp per 16 queries, up to [`WIDE_MAX_QUERIES`]
    /// (`attention_fwd_tail16w_d64_*`); longer sequences run `Tail16` when it comes from `CPEAL_ATTENTION`.
    Tail16w,
    /// Hopper's warpgroup instructions (`kernels/attention_sm90.cu`, `attention_fwd_wgmma_d64_*`): 128 queries a
    /// block, scores and p·v by wgmma, the last key block in 16-key steps. Needs an sm_90 device (or the
    /// emulator); elsewhere a `CPEAL_ATTENTION=wgmma` runs `Tiled`.
    Wgmma,
}

/// Most queries the `Tail16w` kernel takes (13 warps of 16: its launch bound of 416 threads).
pub const WIDE_MAX_QUERIES: usize = 208;

/// Depth of the `Wgmma` kernel's K / V ring (`ATW_STAGES` in `kernels/attention_sm90.cu`).
const WGMMA_STAGES: usize = 4;

impl AttentionKernel {
    pub const ALL: [AttentionKernel; 5] = [
        AttentionKernel::Tiled,
        AttentionKernel::Tail16,
        AttentionKernel::Tail16x4,
        AttentionKernel::Tail16w,
        AttentionKernel::Wgmma,
    ];

    /// `tiled`, `tail16`, `tail16x4`, `tail16w`, `wgmma`: the `CPEAL_ATTENTION` value; the kernel name's prefix for the candidates.
    pub fn label(self) -> &'static str {
        match self {
            AttentionKernel::Auto => "auto",
            AttentionKernel::Tiled => "tiled",
            AttentionKernel::Tail16 => "tail16",
            AttentionKernel::Tail16x4 => "tail16x4",
            AttentionKernel::Tail16w => "tail16w",
            AttentionKernel::Wgmma => "wgmma",
        }
    }

    /// `CPEAL_ATTENTION`, read once: None when unset; an unknown value is an error that lists the labels.
    fn forced() -> Result<Option<AttentionKernel>> {
        static FORCED: std::sync::OnceLock<std::result::Result<Option<AttentionKernel>, String>> =
            std::sync::OnceLock::new();
        super::forced_choice(&FORCED, "CPEAL_ATTENTION", || {
            AttentionKernel::ALL.iter().map(|k| (k.label().to_string(), *k)).collect()
        })
    }

    /// The kernel name's part after `attention_fwd_`, before `d<D>`: empty for `Tiled`, else `<label>_`.
    pub fn prefix(self) -> String {
        match self {
            AttentionKernel::Auto | AttentionKernel::Tiled => String::new(),
            k => format!("{}_", k.label()),
        }
    }
}

impl<'a> Attention<'a> {
    /// Self-attention over [batch, len, heads·head_dim] outputs of three projections; scale 1/√head_dim.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        heads: usize,
        len: usize,
        head_dim: usize,
        q: &'a GpuBuffer,
        k: &'a GpuBuffer,
        v: &'a GpuBuffer,
        o: &'a GpuBuffer,
    ) -> Self {
        let ld = heads * head_dim;
        Attention {
            batch,
            heads,
            q_len: len,
            k_len: len,
            head_dim,
            q,
            ld_q: ld,
            k,
            ld_k: ld,
            v,
            ld_v: ld,
            o,
            ld_o: ld,
            scale: 1.0 / (head_dim as f32).sqrt(),
            causal: false,
            kernel: AttentionKernel::Auto,
        }
    }

    pub fn causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Run this kernel (a candidate, `Tail16*`, needs head dim 64 on tensor cores).
    pub fn kernel(mut self, kernel: AttentionKernel) -> Self {
        self.kernel = kernel;
        self
    }

    fn check(&self, kernel: &str, dt: DType) -> Result<()> {
        let width = self.heads * self.head_dim;
        if self.batch == 0 || self.heads == 0 || self.q_len == 0 || self.k_len == 0 {
            return Err(Error::kernel(kernel, "empty batch, heads or sequence"));
        }
        if self.batch > 65535 || self.heads > 65535 {
            return Err(Error::kernel(kernel, "batch and heads must each be at most 65535"));
        }
        for (name, buf, ld, len) in self.tensors() {
            if ld < width {
                return Err(Error::kernel(kernel, format!("`{name}`: row stride {ld} must be >= {width}")));
            }
            check(kernel, name, buf, dt, (self.batch * len - 1) * ld + width)?;
        }
        Ok(())
    }

    /// (name, buffer, row stride, rows per batch item) of q, k, v and o.
    fn tensors(&self) -> [(&'static str, &'a GpuBuffer, usize, usize); 4] {
        [
            ("q", self.q, self.ld_q, self.q_len),
            ("k", self.k, self.ld_k, self.k_len),
            ("v", self.v, self.ld_v, self.k_len),
            ("o", self.o, self.ld_o, self.q_len),
        ]
    }

    /// (queries per block, threads, shared bytes) of the kernel `chosen` (None: the generic one).
    fn block_shape(&self, chosen: Option<AttentionKernel>) -> (usize, usize, usize) {
        let padded_row = (self.head_dim + 8) * 2; // attention.cu pads shared rows by 8 elements
        match chosen {
            // Q rows, and four K and V tiles of 64 rows.
            Some(AttentionKernel::Tail16w) => {
                let rows = self.q_len.div_ceil(16) * 16;
                (rows, rows * 2, (rows + 4 * 64) * padded_row)
            }
            // 1024 bytes of alignment slack, two swizzled Q tiles, the K and V rings (kernels/attention_sm90.cu).
            Some(AttentionKernel::Wgmma) => (128, 256, 1024 + (2 + 2 * WGMMA_STAGES) * 64 * 128),
            // Q, and two K and V tiles of 64 rows.
            Some(_) => (64, 128, 5 * 64 * padded_row),
            None => (4, 128, 0),
        }
    }

    /// Whether the tensor-core kernel applies: a compiled head dim, 16-bit storage, every row stride a multiple
    /// of 8 and every pointer 16-byte aligned (cp.async of 16-byte chunks).
    pub fn uses_tensor_cores(&self) -> bool {
        HEAD_DIMS.contains(&self.head_dim)
            && matches!(self.q.dtype(), DType::Bf16 | DType::F16)
            && self.tensors().iter().all(|&(_, buf, ld, _)| ld % 8 == 0 && buf.ptr() % 16 == 0)
    }

    /// The tensor-core kernel for head dim 64 on `dev`: `self.kernel`, with `Auto` resolved (an unknown
    /// `CPEAL_ATTENTION` is reported by `launch`; a forced `tail16w` on a sequence too long for it runs `tail16`,
    /// a forced `wgmma` off Hopper the tiled kernel).
    fn resolved(&self, dev: &GpuDevice) -> AttentionKernel {
        match self.kernel {
            AttentionKernel::Auto => match AttentionKernel::forced().ok().flatten() {
                Some(AttentionKernel::Tail16w) if self.q_len > WIDE_MAX_QUERIES => AttentionKernel::Tail16,
                Some(AttentionKernel::Wgmma) if !dev.runs_hopper_kernels() => AttentionKernel::Tiled,
                forced => forced.unwrap_or(AttentionKernel::Tiled),
            },
            k => k,
        }
    }

    /// The tensor-core kernel `launch` runs on `dev`; None for the generic one.
    fn tensor_core_kernel(&self, dev: &GpuDevice) -> Option<AttentionKernel> {
        let kernel = if self.head_dim == 64 { self.resolved(dev) } else { AttentionKernel::Tiled };
        self.uses_tensor_cores().then_some(kernel)
    }

    /// The kernel `launch` runs on `dev`: `attention_fwd_d<D>_<dtype>` (`attention_fwd_<label>_d64_<dtype>` for
    /// a candidate) or, when [`Self::uses_tensor_cores`] is false, the generic `attention_fwd_generic_<dtype>`
    /// (head dims 1 … [`GENERIC_MAX_HEAD_DIM`]).
    pub fn kernel_name(&self, dev: &GpuDevice) -> String {
        self.name_of(self.tensor_core_kernel(dev))
    }

    fn name_of(&self, chosen: Option<AttentionKernel>) -> String {
        let dt = self.q.dtype().suffix();
        match chosen {
            Some(kernel) => format!("attention_fwd_{}d{}_{dt}", kernel.prefix(), self.head_dim),
            None => format!("attention_fwd_generic_{dt}"),
        }
    }

    pub fn launch(&self, dev: &GpuDevice) -> Result<()> {
        let dt = self.q.dtype();
        let chosen = self.tensor_core_kernel(dev);
        let kernel = self.name_of(chosen);
        if dt == DType::I32 {
            return Err(Error::kernel(&kernel, "i32 storage; attention takes bf16, f16 or f32"));
        }
        self.check(&kernel, dt)?;
        let fast = chosen.is_some();
        AttentionKernel::forced()?;
        let candidate = !matches!(self.kernel, AttentionKernel::Auto | AttentionKernel::Tiled);
        if candidate && !(fast && self.head_dim == 64) {
            let label = self.kernel.label();
            return Err(Error::kernel(&kernel, format!("the {label} kernel is for head dim 64 on tensor cores")));
        }
        if chosen == Some(AttentionKernel::Wgmma) && !dev.runs_hopper_kernels() {
            return Err(Error::kernel(&kernel, "the wgmma kernel needs an sm_90 GPU"));
        }
        if fast && !(self.scale > 0.0 && self.scale.is_finite()) {
            // The kernel takes the maximum of raw scores as the maximum of scaled ones.
            return Err(Error::kernel(&kernel, format!("scale {} must be positive and finite", self.scale)));
        }
        if !fast && !(1..=GENERIC_MAX_HEAD_DIM).contains(&self.head_dim) {
            return Err(Error::kernel(
                &kernel,
                format!("head dim {} outside 1..={GENERIC_MAX_HEAD_DIM}", self.head_dim),
            ));
        }
        if chosen == Some(AttentionKernel::Tail16w) && self.q_len > WIDE_MAX_QUERIES {
            return Err(Error::kernel(&kernel, format!("{} queries; tail16w takes {WIDE_MAX_QUERIES}", self.q_len)));
        }
        let (rows_per_block, threads, shared_bytes) = self.block_shape(chosen);
        let grid_x = u32::try_from(self.q_len.div_ceil(rows_per_block))
            .map_err(|_| Error::kernel(&kernel, "q_len too large"))?;
        let cfg = LaunchConfig {
            grid: (grid_x, self.heads as u32, self.batch as u32),
            block: (threads as u32, 1, 1),
            shared_bytes: shared_bytes as u32,
        };
        let mut args = KernelArgs::new();
        // Profiles tell the attention calls apart by batch x heads x queries x keys x head dim.
        args.tag(format!("{}x{}x{}x{}x{}", self.batch, self.heads, self.q_len, self.k_len, self.head_dim));
        args.i32(int(&kernel, "B", self.batch)?) //   int B
            .i32(int(&kernel, "H", self.heads)?) //   int H
            .i32(int(&kernel, "Tq", self.q_len)?) //  int Tq
            .i32(int(&kernel, "Tk", self.k_len)?) //  int Tk
            .i32(int(&kernel, "ld_q", self.ld_q)?) // int ld_q
            .i32(int(&kernel, "ld_k", self.ld_k)?) // int ld_k
            .i32(int(&kernel, "ld_v", self.ld_v)?) // int ld_v
            .i32(int(&kernel, "ld_o", self.ld_o)?); // int ld_o
        if !fast {
            args.i32(self.head_dim as i32); //        int D (generic kernel only)
        }
        args.buf(self.q) //                           const T* q
            .buf(self.k) //                           const T* k
            .buf(self.v) //                           const T* v
            .buf(self.o) //                           T* o
            .f32(self.scale) //                       float scale
            .i32(self.causal as i32); //              int causal
                                      // SAFETY: buffers hold batch·len rows of their strides (checked); the fast kernels only run when strides
                                      // and pointers meet their cp.async alignment. Signatures: (8 × int, 3 × const T*, T*, float, int), the
                                      // generic one with `int D` after the 8 sizes.
        unsafe { dev.launch(&kernel, cfg, &mut args) }
    }
}

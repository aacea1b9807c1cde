//! f32 GEMM for the CPU backend: C[M, N] = A[M, K] · B[K, N] with B packed ahead of time into 16-column panels
//! (`PackedB`), an AVX2 + FMA 6 × 16 micro-kernel (`avx2.rs`), cache blocking (blocks of `MC` rows of A read in
//! place from L2, each B panel slice reused by all their micro-tiles) and rows split over rayon's threads. An
//! optional epilogue (`Fused`: bias, GELU, layer scale, residual) is applied to each tile in registers as it is
//! stored.
//!
//! Weights are packed once (`nn::Linear` keeps the packed copy next to the tensor); attention packs its K and V
//! per head. Big products (a batch through a linear layer) take one level of Strassen's algorithm instead
//! (`strassen.rs`: 7/8 of the multiplications; the seven sums of B's quadrants are made at the first such call
//! and kept, 1.75 times the packed weight; `CPEAL_STRASSEN=off` never uses it). Its rows depend on the rows
//! they are batched with at the level of rounding (~1e-6 relative); the classical path is batch-invariant. On CPUs without AVX2/FMA (or with `CPEAL_SGEMM=off`) `available()` is false and callers use the
//! `gemm` crate instead.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod pack;
mod peak;
mod strassen;
#[cfg(test)]
mod tests;

pub use pack::PackedB;
pub use peak::fma_peak_gflops;

use crate::ops::Activation;

/// Rows of a micro-tile.
pub(crate) const MR: usize = 6;
/// Columns of a micro-tile, and of a packed B panel (one 64-byte line per k).
pub(crate) const NR: usize = 16;
/// Longest pass over K. A K up to this is done in one pass (C written once); a longer one in equal passes of at
/// most `KC_SPLIT`. Measured on Zen 3 (32 KiB L1, 512 KiB L2): one long pass beats 256-deep ones, which reload
/// and store C tiles once per pass (DINOv2's K = 1536 gains 2-5% from one pass; ViT-B's 3072 does not).
const KC_MAX: usize = 1536;
const KC_SPLIT: usize = 768;
/// Rows of A per block for passes up to 768 deep: 72 rows × 768 × 4 bytes = 221 KiB stay in L2 while each B
/// panel slice is reused by 12 micro-tiles. Deeper passes take proportionally fewer rows (`m_block`).
const MC: usize = 72;

/// Rows of A per block for a pass `kc` deep (a multiple of `MR`).
fn m_block(kc: usize) -> usize {
    if kc <= KC_SPLIT {
        MC
    } else {
        (MC * KC_SPLIT / kc / MR).max(1) * MR
    }
}

/// Depth of each pass over K.
fn k_pass(k: usize) -> usize {
    if k <= KC_MAX {
        k
    } else {
        k.div_ceil(k.div_ceil(KC_SPLIT))
    }
}

/// Whether the AVX2 kernel runs on this CPU (and is not switched off with `CPEAL_SGEMM=off`).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let off = std::env::var("CPEAL_SGEMM").is_ok_and(|v| v == "off" || v == "0");
        #[cfg(target_arch = "x86_64")]
        let cpu = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let cpu = false;
        cpu && !off
    })
}

/// What is done to each final value C[i, j] before it is stored, in this order: + `bias[j]`, `activation`
/// (None, Gelu or QuickGelu), · `scale[j]`, + `residual[i·N + j]` (a matrix shaped like C).
#[derive(Clone, Copy)]
pub struct Fused<'a> {
    pub bias: Option<&'a [f32]>,
    pub activation: Activation,
    pub scale: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
}

impl Fused<'_> {
    pub const NONE: Fused<'static> = Fused { bias: None, activation: Activation::None, scale: None, residual: None };

    /// As raw pointers for output rows `n` long.
    fn epilogue(&self, n: usize) -> Epilogue {
        let ptr = |v: Option<&[f32]>| v.map_or(std::ptr::null(), |v| v.as_ptr());
        Epilogue {
            bias: ptr(self.bias),
            scale: ptr(self.scale),
            residual: ptr(self.residual),
            ld_residual: n,
            activation: self.activation,
        }
    }

    /// Whether the kernel can apply it (it has no tanh).
    pub fn supported(&self) -> bool {
        self.activation != Activation::Tanh
    }
}

/// `Fused` as raw pointers (null where absent), the residual at row 0 of a `gemm_rows` call.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue {
    bias: *const f32,
    scale: *const f32,
    residual: *const f32,
    ld_residual: usize,
    activation: Activation,
}

impl Epilogue {
    pub(crate) const NONE: Epilogue = Epilogue {
        bias: std::ptr::null(),
        scale: std::ptr::null(),
        residual: std::ptr::null(),
        ld_residual: 0,
        activation: Activation::None,
    };

    /// The epilogue of the block of C that starts at row `i`, column `j` (residual rows stay `ld_residual` apart).
    fn at(&self, i: usize, j: usize) -> Epilogue {
        let at = |p: *const f32, offset: usize| if p.is_null() { p } else { p.wrapping_add(offset) };
        Epilogue {
            bias: at(self.bias, j),
            scale: at(self.scale, j),
            residual: at(self.residual, i * self.ld_residual + j),
            ..*self
        }
    }

    fn is_identity(&self) -> bool {
        self.bias.is_null() && self.scale.is_null() && self.residual.is_null() && self.activation == Activation::None
    }

    /// C[i, j] after the product (`v`), done one value at a time (edge tiles).
    unsafe fn apply(&self, v: f32, i: usize, j: usize) -> f32 {
        let mut v = v;
        if !self.bias.is_null() {
            v += *self.bias.add(j);
        }
        v = self.activation.apply(v);
        if !self.scale.is_null() {
            v *= *self.scale.add(j);
        }
        if !self.residual.is_null() {
            v += *self.residual.add(i * self.ld_residual + j);
        }
        v
    }
}

/// A raw pointer that rayon tasks share; each task touches a disjoint set of rows.
#[derive(Clone, Copy)]
struct Shared<T>(T);
// SAFETY: used only for pointers into buffers whose rows are split between tasks without overlap, or read only.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

/// out[M, N] = x[M, K] · B then `fused`, rows split over rayon's threads. Requires `available()` and
/// `fused.supported()`.
pub fn matmul(out: &mut [f32], x: &[f32], m: usize, b: &PackedB, fused: &Fused) {
    assert_eq!(out.len(), m * b.n(), "sgemm::matmul: out is not M x N");
    // SAFETY: out holds M × N values.
    unsafe { matmul_to(out.as_mut_ptr(), x, m, b, fused) }
}

/// `matmul` into a new vector. It is not zero-filled first (the kernel writes every element before anything
/// reads it), which saves a pass over memory as large as the output.
pub fn matmul_new(x: &[f32], m: usize, b: &PackedB, fused: &Fused) -> Vec<f32> {
    let len = m * b.n();
    let mut out = Vec::with_capacity(len);
    // SAFETY: the capacity holds M × N values, all of which `matmul_to` writes (and never reads) before the
    // length is set.
    unsafe {
        matmul_to(out.as_mut_ptr(), x, m, b, fused);
        out.set_len(len);
    }
    out
}

/// # Safety
/// `out` must be writable for M × N values; they are written, never read.
unsafe fn matmul_to(out: *mut f32, x: &[f32], m: usize, b: &PackedB, fused: &Fused) {
    use rayon::prelude::*;
    let (n, k) = (b.n(), b.k());
    assert!(available() && x.len() == m * k, "sgemm::matmul: x is not M x K, or no AVX2");
    assert!(fused.supported(), "sgemm::matmul: no tanh in the kernel");
    let vector_ok = |v: Option<&[f32]>| v.is_none_or(|v| v.len() == n);
    assert!(vector_ok(fused.bias) && vector_ok(fused.scale), "sgemm::matmul: bias or scale is not N long");
    assert!(fused.residual.is_none_or(|r| r.len() == m * n), "sgemm::matmul: residual is not M x N");
    if m == 0 || n == 0 {
        return;
    }
    let epilogue = fused.epilogue(n);
    if strassen::chosen(m, n, k) {
        return strassen::matmul_to(out, x, m, b, &epilogue);
    }
    let tasks = if m * n * k < 1 << 18 { 1 } else { rayon::current_num_threads().clamp(1, m.div_ceil(MR)) };
    let rows = m.div_ceil(tasks).next_multiple_of(MR);
    let (o, a, e) = (Shared(out), Shared(x.as_ptr()), Shared(epilogue));
    (0..m.div_ceil(rows)).into_par_iter().for_each(|t| {
        let (o, a, e) = (o, a, e);
        let (r0, r1) = (t * rows, ((t + 1) * rows).min(m));
        // SAFETY: rows r0..r1 of x, out and the residual lie inside the slices checked above; tasks own disjoint
        // rows of out; bias and scale hold N values.
        unsafe { gemm_rows(r1 - r0, a.0.add(r0 * k), k, b, o.0.add(r0 * n), n, &e.0.at(r0, 0)) }
    });
}

/// C[m, N] (row stride `ldc`) = A[m, K] (row stride `lda`, unit column stride) · B, then `epilogue`, on the
/// calling thread. A is read in place (only a ragged last group of rows is copied).
///
/// # Safety
/// `available()` must be true; `a` must be readable for `m` rows of K values `lda` apart and `c` writable for
/// `m` rows of N values `ldc` apart, not overlapping `a`; the epilogue's pointers must cover N columns (and m
/// rows for the residual); its activation must not be tanh.
pub(crate) unsafe fn gemm_rows(
    m: usize,
    a: *const f32,
    lda: usize,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    epilogue: &Epilogue,
) {
    gemm_rows_to(m, a, lda, b, &Output { c, ldc, accumulate: false, epilogue, second: None });
}

/// How the product also reaches a second block of C (see `Output::second`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecondMode {
    Store,
    Add,
    Subtract,
}

/// Where `gemm_rows_to` puts A · B: C (`c`, rows `ldc` apart) = A · B, or C += A · B when `accumulate`, then the
/// epilogue; and, when `second` is given, the bare product A · B stored into, added to or subtracted from a
/// second matrix (`c`, `ldc`) as well. With a second destination K must fit one pass (`KC_MAX`).
pub(crate) struct Output<'a> {
    pub c: *mut f32,
    pub ldc: usize,
    pub accumulate: bool,
    pub epilogue: &'a Epilogue,
    pub second: Option<(*mut f32, usize, SecondMode)>,
}

/// `gemm_rows` into an `Output`.
///
/// # Safety
/// As `gemm_rows`, and the second destination (if any) writable for `m` rows of N values, overlapping nothing.
pub(crate) unsafe fn gemm_rows_to(m: usize, a: *const f32, lda: usize, b: &PackedB, out: &Output) {
    #[cfg(target_arch = "x86_64")]
    gemm_rows_x86(m, a, lda, b, out);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, a, lda, b, out);
        unreachable!("sgemm::available() is false off x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn gemm_rows_x86(m: usize, a: *const f32, lda: usize, b: &PackedB, out: &Output) {
    use avx2::{kernel_6x16, ASource, SecondTile, TileEpilogue, TileOut};
    let (n, k) = (b.n(), b.k());
    let (c, ldc, e) = (out.c, out.ldc, out.epilogue);
    if m == 0 || n == 0 {
        return;
    }
    let fused = !e.is_identity();
    if k == 0 {
        assert!(out.second.is_none() && !out.accumulate, "sgemm: K = 0 with a second destination");
        for i in 0..m {
            for j in 0..n {
                *c.add(i * ldc + j) = e.apply(0.0, i, j);
            }
        }
        return;
    }
    let kc_max = k_pass(k);
    assert!(out.second.is_none() || kc_max == k, "sgemm: a second destination needs K in one pass");
    // The last m % 6 rows, packed into one zero-padded panel per pass (6 rows read in place would run past A).
    let full = m - m % MR;
    let mut tail = vec![0f32; if full < m { MR * kc_max } else { 0 }];
    let mut tile = [0f32; MR * NR];
    let at = |p: *const f32, offset: usize| if p.is_null() { p } else { p.add(offset) };
    for pc in (0..k).step_by(kc_max) {
        let kc = kc_max.min(k - pc);
        let (first, last) = (pc == 0, pc + kc == k);
        let accumulate = !first || out.accumulate;
        if full < m {
            pack::pack_a_panel(&mut tail[..MR * kc], a.add(full * lda + pc), lda, m - full, kc);
        }
        let mc_max = m_block(kc);
        for ic in (0..m).step_by(mc_max) {
            let mc = mc_max.min(m - ic);
            for jr in 0..n.div_ceil(NR) {
                let (j0, nr) = (jr * NR, NR.min(n - jr * NR));
                let bp = b.panel(jr).add(pc * NR);
                for ir in (ic..ic + mc).step_by(MR) {
                    let mr = MR.min(m - ir);
                    let ap = if ir < full {
                        ASource::Rows(a.add(ir * lda + pc), lda)
                    } else {
                        ASource::Packed(tail.as_ptr())
                    };
                    let cp = c.add(ir * ldc + j0);
                    let second =
                        out.second.map(|(c2, ldc2, mode)| SecondTile { c: c2.add(ir * ldc2 + j0), ldc: ldc2, mode });
                    if mr == MR && nr == NR {
                        let tile_epilogue = TileEpilogue {
                            bias: at(e.bias, j0),
                            scale: at(e.scale, j0),
                            res: at(e.residual, ir * e.ld_residual + j0),
                            ldr: e.ld_residual,
                            act: e.activation,
                        };
                        let epilogue = (last && fused).then_some(&tile_epilogue);
                        let second = second.as_ref();
                        kernel_6x16(kc, ap, bp, &TileOut { c: cp, ldc, accumulate, epilogue, second });
                    } else {
                        // Edge tile: compute all 6 × 16 into `tile`, then store or add the valid part.
                        let to_tile =
                            TileOut { c: tile.as_mut_ptr(), ldc: NR, accumulate: false, epilogue: None, second: None };
                        kernel_6x16(kc, ap, bp, &to_tile);
                        for r in 0..mr {
                            for (j, t) in tile[r * NR..][..nr].iter().enumerate() {
                                if let Some(s) = &second {
                                    let dst = s.c.add(r * s.ldc + j);
                                    *dst = match s.mode {
                                        SecondMode::Store => *t,
                                        SecondMode::Add => *dst + t,
                                        SecondMode::Subtract => *dst - t,
                                    };
                                }
                                let dst = cp.add(r * ldc + j);
                                let v = if accumulate { *dst + t } else { *t };
                                *dst = if last && fused { e.apply(v, ir + r, j0 + j) } else { v };
                            }
                        }
                    }
                }
            }
        }
    }
}

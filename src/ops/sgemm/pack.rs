//! Packed operands. B `[K, N]` becomes ⌈N/16⌉ panels of K lines, line p of panel j holding B[p, 16j..16j+16]
//! (zero past N) in one 64-byte-aligned cache line, so the kernel reads B with aligned loads in k order. The
//! kernel reads A in place, except the last `M mod 6` rows, which are copied into a zero-padded 6-row panel.

use super::{MR, NR};

/// One k-row of a B panel: 16 values, one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; NR]);

/// B `[K, N]` in 16-column panels for `super::gemm_rows`.
#[derive(Clone, Default)]
pub struct PackedB {
    lines: Vec<Line>,
    k: usize,
    n: usize,
    /// Sums of B's quadrants for `super::strassen`, made on first use (1.75 times the size of B).
    strassen: std::sync::OnceLock<Box<[PackedB; 7]>>,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedB(k={}, n={})", self.k, self.n)
    }
}

impl PackedB {
    /// B = Wᵀ for a row-major weight W `[N, K]` (`nn.Linear` layout).
    pub fn from_weight_t(w: &[f32], n: usize, k: usize) -> PackedB {
        assert_eq!(w.len(), n * k, "PackedB::from_weight_t: {} values for [{n}, {k}]", w.len());
        let mut p = PackedB::default();
        // SAFETY: B[p, j] = w[j·K + p] stays inside w for p < K, j < N.
        unsafe { p.pack(w.as_ptr(), k, n, 1, k) };
        p
    }

    /// Repack in place (reusing the allocation): B[p, j] = `src[p·rs_k + j·rs_n]` for p < `k`, j < `n`.
    ///
    /// # Safety
    /// Every such element must be readable.
    pub(crate) unsafe fn pack(&mut self, src: *const f32, k: usize, n: usize, rs_k: usize, rs_n: usize) {
        use rayon::prelude::*;
        let panels = n.div_ceil(NR);
        // Old contents are overwritten below (a last, partial panel is zeroed first), so no zero-fill here.
        self.lines.resize(panels * k, Line([0.0; NR]));
        self.k = k;
        self.n = n;
        self.strassen = std::sync::OnceLock::new();
        if k == 0 {
            return;
        }
        let src = src as usize; // a plain address, so that rayon tasks may share it
        let pack_panel = |jp: usize, panel: &mut [Line]| {
            let src = src as *const f32;
            let (j0, nr) = (jp * NR, NR.min(n - jp * NR));
            if nr < NR {
                panel.fill(Line([0.0; NR]));
            }
            if rs_n == 1 && nr == NR {
                for (p, line) in panel.iter_mut().enumerate() {
                    line.0 = std::ptr::read_unaligned(src.add(p * rs_k + j0) as *const [f32; NR]);
                }
            } else if rs_n == 1 {
                for (p, line) in panel.iter_mut().enumerate() {
                    line.0[..nr].copy_from_slice(std::slice::from_raw_parts(src.add(p * rs_k + j0), nr));
                }
            } else {
                // Line by line: 16 columns (for Wᵀ and Kᵀ, 16 rows of the source) read side by side.
                let cols: [*const f32; NR] = std::array::from_fn(|c| src.add((j0 + c.min(nr - 1)) * rs_n));
                #[cfg(target_arch = "x86_64")]
                if rs_k == 1 && nr == NR && super::available() {
                    crate::ops::simd::transpose_rows_16(panel.as_mut_ptr() as *mut f32, &cols, k);
                    return;
                }
                for (p, line) in panel.iter_mut().enumerate() {
                    for (v, col) in line.0[..nr].iter_mut().zip(&cols) {
                        *v = *col.add(p * rs_k);
                    }
                }
            }
        };
        if n * k >= 1 << 18 {
            self.lines.par_chunks_mut(k).enumerate().for_each(|(jp, panel)| pack_panel(jp, panel));
        } else {
            self.lines.chunks_mut(k).enumerate().for_each(|(jp, panel)| pack_panel(jp, panel));
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<Line>()
    }

    /// Σ sign · quadrant, over `terms` of (row half, column half, sign): B's quadrant (qk, qn) is
    /// B[qk·K/2.., qn·N/2..] of [K/2, N/2]. Requires K even and N a multiple of 32 (quadrants made of whole
    /// panels).
    pub(super) fn combine(&self, terms: &[(usize, usize, f32)]) -> PackedB {
        assert!(self.k % 2 == 0 && self.n % (2 * NR) == 0, "PackedB::combine: {self:?} has no whole quadrants");
        let (k2, n2) = (self.k / 2, self.n / 2);
        let mut lines = vec![Line([0.0; NR]); n2 / NR * k2];
        for (jp, panel) in lines.chunks_mut(k2).enumerate() {
            for &(qk, qn, sign) in terms {
                let src = &self.lines[(qn * n2 / NR + jp) * self.k + qk * k2..][..k2];
                for (dst, src) in panel.iter_mut().zip(src) {
                    dst.0.iter_mut().zip(&src.0).for_each(|(d, s)| *d += sign * s);
                }
            }
        }
        PackedB { lines, k: k2, n: n2, strassen: Default::default() }
    }

    /// The seven quadrant sums of `super::strassen`, made on the first call.
    pub(super) fn strassen_parts(&self) -> &[PackedB; 7] {
        self.strassen.get_or_init(|| Box::new(super::strassen::B_TERMS.map(|terms| self.combine(terms))))
    }

    /// Start of panel `j` (columns 16j..16j+16), K lines of 16 values.
    pub(super) fn panel(&self, j: usize) -> *const f32 {
        self.lines[j * self.k..].as_ptr() as *const f32
    }
}

/// Pack `rows` (< 6) rows of A (`lda` apart, `kc` values each) into one 6-row panel `dst` (`6 · kc` values),
/// element (r, p) at `p·6 + r`, zero past the last row.
///
/// # Safety
/// The rows must be readable for `kc` values.
pub(super) unsafe fn pack_a_panel(dst: &mut [f32], a: *const f32, lda: usize, rows: usize, kc: usize) {
    dst.fill(0.0);
    for r in 0..rows {
        let src = std::slice::from_raw_parts(a.add(r * lda), kc);
        for (p, v) in src.iter().enumerate() {
            dst[p * MR + r] = *v;
        }
    }
}

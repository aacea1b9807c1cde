//! A plain matrix product over the gemm crate, reading either operand as stored or as its transpose (no copy):
//! the products of the backward passes, whose shapes and layouts vary too much for one packed kernel.

/// How a matrix operand is stored: as its own row-major values, or as the row-major values of its transpose.
#[derive(Clone, Copy)]
pub enum Layout {
    RowMajor,
    Transposed,
}

/// a·b with a `[m, k]` and b `[k, n]` each read through `Layout` (no transpose is copied), giving `[m, n]`.
/// The gemm crate over rayon: for the backward's products, whose shapes vary too much for one packing.
pub fn matmul(a: &[f32], a_layout: Layout, b: &[f32], b_layout: Layout, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    assert!(a.len() == m * k && b.len() == k * n);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    // (row stride, column stride) of each operand as the logical [rows, cols] matrix.
    let strides = |layout, rows: usize, cols: usize| match layout {
        Layout::RowMajor => (cols as isize, 1),
        Layout::Transposed => (1, rows as isize),
    };
    let ((a_rs, a_cs), (b_rs, b_cs)) = (strides(a_layout, m, k), strides(b_layout, k, n));
    // SAFETY: out is [m, n] row-major; a and b hold m·k and k·n values, and the strides above address each
    // logical element exactly once within them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            if m * n * k < 1 << 18 {
                gemm::Parallelism::None
            } else {
                gemm::Parallelism::Rayon(rayon::current_num_threads())
            },
        );
    }
    out
}

//! Tensor operations. Each op has a directory (or a file when it is small): the public function that checks
//! shapes and dispatches on the tensor's device, the CPU reference in `cpu.rs`, and its tests. Device kernels
//! (`kernels/*.cu`) are launched from `crate::gpu`; backward passes live beside the forward.
//!
//! The CPU backend is f32 throughout and is the oracle every other backend is tested against.

pub mod attention;
pub mod elementwise;
pub mod gather;
mod gpu;
pub mod interpolate;
pub mod layer_norm;
pub mod linear;
pub mod loss;
pub mod math;
pub(crate) mod matmul;
pub mod patch_embed;
pub mod prompt;
pub mod sgemm;
#[cfg(target_arch = "x86_64")]
mod simd;

pub use attention::attention;
pub use elementwise::{add, l2_normalize, scale, Activation};
pub use gather::{assemble_tokens, concat_last, embedding, mean_tokens, select_rows};
pub use interpolate::{interpolate_bicubic, interpolate_bicubic_antialiased};
pub use layer_norm::{layer_norm, layer_norm_stats};
pub use linear::{linear, linear_packed, linear_with_row_stats, pack_weight, Epilogue, LoraDropout, LoraTerm, RowNorm};
pub use loss::{calibration_loss, CalibWeighting, CalibrationLoss, LossTerms};
pub use patch_embed::{patch_embed, patch_gemm_weight};
pub use prompt::prompt_embedding;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Ensure `t` has exactly `expected` dims, naming `op` and the tensor `what` otherwise.
pub(crate) fn expect_shape(op: &'static str, what: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(Error::shape(op, format!("{what} has shape {:?}, expected {expected:?}", t.shape())));
    }
    Ok(())
}

/// Rayon-parallel loop over `rows` contiguous rows of `width` values of `out`.
pub(crate) fn par_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if width == 0 {
        return;
    }
    out.par_chunks_mut(width).enumerate().for_each(|(r, row)| f(r, row));
}

#[cfg(test)]
pub(crate) mod test_util {
    use rand::{Rng, SeedableRng};

    /// Deterministic non-zero random values in [-scale, scale].
    pub fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    }

    /// Maclaurin series for |x| ≤ 3 (no cancellation trouble there), asymptotic erfc beyond.
    pub fn erf64(x: f64) -> f64 {
        let a = x.abs();
        if a > 3.0 {
            let x2 = a * a;
            let series = 1.0 - 1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2);
            let erfc = (-x2).exp() / (a * std::f64::consts::PI.sqrt()) * series;
            return x.signum() * (1.0 - erfc);
        }
        let (mut sum, mut term) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    /// Central-difference gradient of `f` at `x`, in float64: the reference every backward is checked against
    /// (with `f` a float64 forward written in the test).
    pub fn fd_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let mut xs = x.to_vec();
        (0..x.len())
            .map(|i| {
                let h = 1e-6 * x[i].abs().max(1.0);
                xs[i] = x[i] + h;
                let up = f(&xs);
                xs[i] = x[i] - h;
                let down = f(&xs);
                xs[i] = x[i];
                (up - down) / (2.0 * h)
            })
            .collect()
    }

    pub fn to_f64(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| v as f64).collect()
    }

    /// Σ a ⊙ b: a float64 output against an upstream gradient, the scalar whose derivative `fd_grad` takes.
    pub fn weighted_sum(a: &[f64], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| x * *y as f64).sum()
    }

    /// ‖a − b‖ / ‖b‖ with b in float64.
    pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den.max(1e-300)).sqrt()
    }
}

//! Branch-free f32 `exp` and `erf` that the compiler vectorises, for the CPU backend's hot loops (softmax,
//! GELU). Both are within a few ulp of the exact functions; the tests below check them against f64.

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding and subtracting it rounds an f32 to the nearest integer without a libm call.
const ROUND_MAGIC: f32 = 12_582_912.0;

#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2ⁿ from the integer in the low bits of `shifted` (all values near ROUND_MAGIC share its exponent), not from
    // `n as i32`, whose saturating conversion does not vectorise.
    let n_int = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    f32::from_bits(n_int.wrapping_add(127) << 23) * p
}

/// erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4]: the coefficients of P and Q, highest power first.
pub(crate) const ERF_P: [f32; 7] =
    [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2];
pub(crate) const ERF_Q: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2];

/// Rational approximation of erf on [−4, 4] (beyond, erf is ±1 in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ERF_P[1..].iter().fold(ERF_P[0], |p, c| p * x2 + c);
    let q = ERF_Q[1..].iter().fold(ERF_Q[0], |q, c| q * x2 + c);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::erf64;

    #[test]
    fn exp_is_within_a_few_ulp() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(((got - want) / want).abs() < 4e-7, "x={x}: {got} vs {want}");
        }
    }

    #[test]
    fn erf_is_within_six_ulp_of_one_absolute() {
        for i in -700..=700 {
            let x = i as f32 / 100.0;
            let err = (erf(x) as f64 - erf64(x as f64)).abs();
            assert!(err < 4e-7, "x={x}: error {err}");
        }
    }
}

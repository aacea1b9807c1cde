//! Branch-free f32 `exp` and `erf` that the compiler vectorises, for the CPU backend's hot loops (softmax,
//! GELU). Both are within a few ulp of the exact functions; the tests below check them against f64.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding and subtracting it rounds an f32 to the nearest integer without a libm call.
const ROUND_MAGIC: f32 = 12_582_912.0;

#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    f32::from_bits(((n as i32 + 127) << 23) as u32) * p
}

/// Rational approximation of erf on [−4, 4] (beyond, erf is ±1 in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_6e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329e-3;
    let q = q * x2 - 1.426_474e-2;
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

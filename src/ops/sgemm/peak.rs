//! The FMA peak of this CPU, measured: the most f32 GFLOP/s any GEMM kernel can reach on these threads, which
//! the CPU benchmarks report their numbers against (`cpeal bench cpu-peak`).

/// GFLOP/s of an AVX2 FMA loop (12 independent accumulators, so neither latency nor loads limit it) run by
/// every rayon thread at once for about `seconds`; `None` without AVX2/FMA.
pub fn fma_peak_gflops(seconds: f64) -> Option<f64> {
    use rayon::prelude::*;
    if !super::available() {
        return None;
    }
    let threads = rayon::current_num_threads();
    let start = std::time::Instant::now();
    let flops: f64 = (0..threads)
        .into_par_iter()
        .map(|_| {
            let mut flops = 0.0;
            while start.elapsed().as_secs_f64() < seconds {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `available()` checked AVX2 and FMA.
                unsafe {
                    flops += fma_loop(1 << 20);
                }
            }
            flops
        })
        .sum();
    Some(flops / start.elapsed().as_secs_f64() / 1e9)
}

/// Runs `iters` rounds of 12 independent 8-lane FMAs; returns the flops done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iters: usize) -> f64 {
    use std::arch::x86_64::*;
    let mut acc: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(i as f32 * 1e-3));
    let (b, c) = (_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-5));
    for _ in 0..iters {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    // Keep the result alive so the loop is not removed.
    std::hint::black_box(&acc);
    (iters * 12 * 8 * 2) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_positive_where_the_kernel_runs() {
        match super::fma_peak_gflops(0.05) {
            Some(g) => assert!(g.is_finite() && g > 0.1, "{g} GFLOP/s"),
            None => assert!(!super::super::available()),
        }
    }
}

//! CPU op throughput on the block shapes of ViT-B/16 (batch 8 × 197 tokens) and DINOv2-S/14 (batch 8 × 257
//! tokens at 224 px): the four GEMMs of a block (with a bias + GELU epilogue), each with one thread and with all
//! of rayon's threads, and attention. Correctness is asserted in the unit tests; this only times. Throughput
//! "elements" are FLOPs (classical ones, also when Strassen's level does 7/8 of them). `CPEAL_SGEMM=off` times
//! the gemm-crate path instead of cpeal's kernel; `CPEAL_STRASSEN=off` the kernel without Strassen's level.

use cpeal::ops::{self, Activation, Epilogue};
use cpeal::Tensor;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn rand(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0) - 0.5).collect()
}

/// (model label, tokens per image, hidden, intermediate); batch 8.
const MODELS: [(&str, usize, usize, usize); 2] = [("vit_b16", 197, 768, 3072), ("dinov2_s14", 257, 384, 1536)];

fn linear_shapes(c: &mut Criterion) {
    let all = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for (model, tokens, d, f) in MODELS {
        let m = 8 * tokens;
        let mut group = c.benchmark_group(format!("linear_{model}"));
        group.sample_size(10);
        for (name, n, k) in [("qkv", 3 * d, d), ("out", d, d), ("fc1", f, d), ("fc2", d, f)] {
            let x = Tensor::from_vec(rand(m * k, 1), &[m, k]).unwrap();
            let w = Tensor::from_vec(rand(n * k, 2), &[n, k]).unwrap();
            let b = Tensor::from_vec(rand(n, 3), &[n]).unwrap();
            // As nn::Linear runs it: Wᵀ packed once, outside the timed loop (None where the gemm crate is used).
            let packed = ops::pack_weight(&w);
            let epilogue = Epilogue::bias(Some(&b)).with_activation(Activation::Gelu);
            let run = || ops::linear_packed(&x, &w, packed.as_ref(), epilogue).unwrap();
            group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            group.bench_function(format!("{name}_{n}x{k}_t{all}"), |bench| bench.iter(run));
            group.bench_function(format!("{name}_{n}x{k}_t1"), |bench| bench.iter(|| one.install(run)));
        }
        group.finish();
    }
}

fn attention_shapes(c: &mut Criterion) {
    for (model, t, d, _) in MODELS {
        let (b, heads) = (8, d / 64);
        let qkv = Tensor::from_vec(rand(b * t * 3 * d, 4), &[b, t, 3 * d]).unwrap();
        let mut group = c.benchmark_group(format!("attention_{model}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements((4 * b * t * t * d) as u64));
        group.bench_function(format!("{heads}_heads_{t}_tokens"), |bench| {
            bench.iter(|| ops::attention(&qkv, heads, false).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, linear_shapes, attention_shapes);
criterion_main!(benches);

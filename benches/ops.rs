//! CPU op throughput on ViT-B/16 shapes (batch 8 × 197 tokens): the GEMMs of a block and attention.
//! Correctness is asserted in the unit tests; this only times.

use cpeal::ops::{self, Activation, Epilogue};
use cpeal::Tensor;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn rand(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0) - 0.5).collect()
}

fn linear_shapes(c: &mut Criterion) {
    let m = 8 * 197;
    let mut group = c.benchmark_group("linear_vit_b16");
    group.sample_size(10);
    for (name, n, k) in [
        ("qkv_2304x768", 2304, 768),
        ("out_768x768", 768, 768),
        ("fc1_3072x768", 3072, 768),
        ("fc2_768x3072", 768, 3072),
    ] {
        let x = Tensor::from_vec(rand(m * k, 1), &[m, k]).unwrap();
        let w = Tensor::from_vec(rand(n * k, 2), &[n, k]).unwrap();
        let b = Tensor::from_vec(rand(n, 3), &[n]).unwrap();
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| ops::linear(&x, &w, Epilogue::bias(Some(&b)).with_activation(Activation::Gelu)).unwrap())
        });
    }
    group.finish();
}

fn attention_shapes(c: &mut Criterion) {
    let (b, t, d) = (8, 197, 768);
    let qkv = Tensor::from_vec(rand(b * t * 3 * d, 4), &[b, t, 3 * d]).unwrap();
    let mut group = c.benchmark_group("attention_vit_b16");
    group.sample_size(10);
    group.throughput(Throughput::Elements((4 * b * t * t * d) as u64));
    group.bench_function("12_heads_197_tokens", |bench| bench.iter(|| ops::attention(&qkv, 12, false).unwrap()));
    group.finish();
}

criterion_group!(benches, linear_shapes, attention_shapes);
criterion_main!(benches);

//! criterion benches for the portable kernels. Throughput is reported in bytes touched (memory-bound
//! kernels) or elements; compare against `benches/compare/` for peer ratios.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shoal_engine::AlignedVec;
use shoal_engine::kernels::optim::{self, AdamParams};
use shoal_engine::kernels::sparse::{self, Bags};
use shoal_engine::kernels::{self, Activation, activation, loss};
use shoal_engine::model::SplitMix;

fn data(len: usize, seed: u64) -> AlignedVec {
    let mut rng = SplitMix::new(seed);
    let mut v = AlignedVec::zeros(len);
    v.iter_mut().for_each(|x| *x = rng.uniform(-1.0, 1.0));
    v
}

fn blas1(c: &mut Criterion) {
    let mut g = c.benchmark_group("blas1");
    for &n in &[1 << 12, 1 << 20] {
        let (x, mut y) = (data(n, 1), data(n, 2));
        g.throughput(Throughput::Bytes((2 * n * 4) as u64));
        g.bench_with_input(BenchmarkId::new("dot", n), &n, |b, _| {
            b.iter(|| kernels::dot(black_box(&x), black_box(&y)))
        });
        g.bench_with_input(BenchmarkId::new("axpy", n), &n, |b, _| {
            b.iter(|| kernels::axpy(0.5, black_box(&x), &mut y))
        });
        g.throughput(Throughput::Bytes((n * 4) as u64));
        g.bench_with_input(BenchmarkId::new("norm2", n), &n, |b, _| b.iter(|| kernels::norm2(black_box(&x))));
    }
    g.finish();
}

fn weighted_sum(c: &mut Criterion) {
    let mut g = c.benchmark_group("weighted_sum");
    g.sample_size(20);
    for &(n, p) in &[(8usize, 1usize << 16), (32, 1 << 20)] {
        let inputs: Vec<AlignedVec> = (0..n).map(|i| data(p, i as u64)).collect();
        let views: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let w: Vec<f32> = (0..n).map(|i| 1.0 / (i + 1) as f32).collect();
        let mut out = AlignedVec::zeros(p);
        g.throughput(Throughput::Bytes((n * p * 4) as u64));
        g.bench_with_input(BenchmarkId::new(format!("n{n}"), p), &p, |b, _| {
            b.iter(|| kernels::weighted_sum(black_box(&views), &w, &mut out))
        });
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("activation");
    let n = 1 << 16;
    let (z, da) = (data(n, 3), data(n, 4));
    let (mut a, mut dz) = (AlignedVec::zeros(n), AlignedVec::zeros(n));
    g.throughput(Throughput::Elements(n as u64));
    for act in Activation::ALL {
        g.bench_function(BenchmarkId::new("forward", act), |b| {
            b.iter(|| activation::forward(act, black_box(&z), &mut a))
        });
        activation::forward(act, &z, &mut a);
        g.bench_function(BenchmarkId::new("backward", act), |b| {
            b.iter(|| activation::backward(act, black_box(&z), &a, &da, &mut dz))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("loss");
    let (rows, classes) = (256, 10);
    let logits = data(rows * classes, 5);
    let labels: Vec<u32> = (0..rows as u32).map(|r| r % classes as u32).collect();
    let mut grad = AlignedVec::zeros(rows * classes);
    g.throughput(Throughput::Elements((rows * classes) as u64));
    g.bench_function("softmax_ce_256x10", |b| {
        b.iter(|| loss::softmax_cross_entropy(black_box(&logits), classes, &labels, &mut grad).unwrap())
    });
    let targets: Vec<f32> = (0..rows * classes).map(|i| (i % 2) as f32).collect();
    g.bench_function("sigmoid_bce_2560", |b| {
        b.iter(|| loss::sigmoid_bce(black_box(&logits), &targets, &mut grad).unwrap())
    });
    g.finish();
}

fn optimizers(c: &mut Criterion) {
    let mut g = c.benchmark_group("optimizer");
    let n = 1 << 18;
    let gr = data(n, 6);
    let (mut w, mut m, mut v) = (data(n, 7), AlignedVec::zeros(n), AlignedVec::zeros(n));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("sgd", |b| b.iter(|| optim::sgd(&mut w, black_box(&gr), 0.01)));
    g.bench_function("momentum", |b| b.iter(|| optim::momentum(&mut w, black_box(&gr), &mut m, 0.01, 0.9)));
    g.bench_function("adagrad", |b| b.iter(|| optim::adagrad(&mut w, black_box(&gr), &mut m, 0.01, 1e-8)));
    g.bench_function("adam", |b| {
        b.iter(|| optim::adam(&mut w, black_box(&gr), &mut m, &mut v, AdamParams::default(), 10))
    });
    g.finish();
}

fn sparse_rows(c: &mut Criterion) {
    let mut g = c.benchmark_group("sparse");
    let (rows, dim) = (1 << 20, 16);
    let table = data(rows * dim, 8);
    let mut rng = SplitMix::new(9);
    let ids: Vec<u32> = (0..4096).map(|_| rng.below(rows) as u32).collect();
    let mut out = AlignedVec::zeros(ids.len() * dim);
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("gather_4096x16", |b| b.iter(|| sparse::gather_rows(black_box(&table), dim, &ids, &mut out)));
    let lists: Vec<Vec<u64>> = (0..512).map(|_| (0..8).map(|_| rng.next_u64()).collect()).collect();
    let bags = Bags::from_lists(&lists);
    let mut pooled = AlignedVec::zeros(bags.len() * dim);
    g.throughput(Throughput::Elements(bags.ids.len() as u64));
    g.bench_function("embedding_bag_512x8x16", |b| {
        b.iter(|| sparse::embedding_bag_sum(black_box(&table), dim, &bags, &mut pooled))
    });
    g.finish();
}

criterion_group!(benches, blas1, weighted_sum, elementwise, optimizers, sparse_rows);
criterion_main!(benches);

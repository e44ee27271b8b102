//! criterion benches for GEMM: every instruction-set path this CPU has, the three backprop forms, and the
//! shapes of the 784-256-128-10 training step. Throughput is in FLOPs (2·m·n·k).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shoal_engine::Isa;
use shoal_engine::gemm::{MatRef, gemm_with};
use shoal_engine::model::SplitMix;

fn matrix(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix::new(seed);
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn square(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_square");
    g.sample_size(10);
    for &n in &[128usize, 256, 512, 1024] {
        let (a, b) = (matrix(n * n, 1), matrix(n * n, 2));
        let mut out = vec![0.0; n * n];
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        for isa in Isa::supported().into_iter().filter(|&i| i != Isa::Scalar || n <= 256) {
            g.bench_with_input(BenchmarkId::new(isa.name(), n), &n, |bch, _| {
                bch.iter(|| gemm_with(isa, 1.0, MatRef::new(black_box(&a), n, n), MatRef::new(&b, n, n), 0.0, &mut out))
            });
        }
    }
    g.finish();
}

fn training_shapes(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_mlp_step");
    let isa = Isa::active();
    // (name, m, k, n, form): forward X·W, weight gradient Xᵀ·dZ, input gradient dZ·Wᵀ.
    let shapes = [
        ("fwd_784x256", 256, 784, 256, 0),
        ("dw_784x256", 784, 256, 256, 1),
        ("fwd_256x128", 256, 256, 128, 0),
        ("dx_128x256", 256, 128, 256, 2),
        ("fwd_128x10", 256, 128, 10, 0),
    ];
    for (name, m, k, n, form) in shapes {
        let (a, b) = (matrix(m * k, 3), matrix(k * n, 4));
        let mut out = vec![0.0; m * n];
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        g.bench_function(name, |bch| {
            bch.iter(|| {
                let (av, bv) = match form {
                    0 => (MatRef::new(&a, m, k), MatRef::new(&b, k, n)),
                    1 => (MatRef::new(&a, k, m).t(), MatRef::new(&b, k, n)),
                    _ => (MatRef::new(&a, m, k), MatRef::new(&b, n, k).t()),
                };
                gemm_with(isa, 1.0, black_box(av), bv, 0.0, &mut out)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, square, training_shapes);
criterion_main!(benches);

//! GEMM on every instruction-set path this CPU has, in the three forms backprop uses, against the oracle.

mod common;

use proptest::prelude::*;
use shoal_engine::gemm::{MatRef, gemm_with};
use shoal_engine::model::SplitMix;
use shoal_engine::{Isa, oracle};

#[derive(Clone, Copy, Debug)]
enum Form {
    /// A·B
    NN,
    /// Aᵀ·B (A stored k x m)
    TN,
    /// A·Bᵀ (B stored n x k)
    NT,
}

fn check(isa: Isa, form: Form, m: usize, k: usize, n: usize, beta: f32, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = SplitMix::new(seed);
    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0) * 2f32.powi(rng.below(20) as i32 - 10)).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let c0: Vec<f32> = (0..m * n).map(|_| if beta == 0.0 { f32::NAN } else { rng.uniform(-1.0, 1.0) }).collect();
    let (av, bv) = match form {
        Form::NN => (MatRef::new(&a, m, k), MatRef::new(&b, k, n)),
        Form::TN => (MatRef::new(&a, k, m).t(), MatRef::new(&b, k, n)),
        Form::NT => (MatRef::new(&a, m, k), MatRef::new(&b, n, k).t()),
    };
    let alpha = 0.75;
    let mut got = c0.clone();
    gemm_with(isa, alpha, av, bv, beta, &mut got);
    let mut want = c0.clone();
    oracle::gemm(m, k, n, alpha, av.data(), av.strides(), bv.data(), bv.strides(), beta, &mut want);
    // Bound: k rounding steps on the sum of |a||b| terms, plus the beta·C term.
    let abs_a: Vec<f32> = a.iter().map(|x| x.abs()).collect();
    let abs_b: Vec<f32> = b.iter().map(|x| x.abs()).collect();
    let mut mag = vec![0.0; m * n];
    oracle::gemm(m, k, n, alpha, &abs_a, av.strides(), &abs_b, bv.strides(), 0.0, &mut mag);
    for i in 0..m * n {
        let old = if beta == 0.0 { 0.0 } else { (beta * c0[i]).abs() as f64 };
        let bound = common::sum_bound(k + 2, mag[i] as f64 + old);
        prop_assert!(
            (got[i] as f64 - want[i] as f64).abs() <= bound,
            "{isa} {form:?} m={m} k={k} n={n} beta={beta}: c[{i}] = {} want {}",
            got[i],
            want[i]
        );
    }
    Ok(())
}

fn forms() -> impl Strategy<Value = Form> {
    prop_oneof![Just(Form::NN), Just(Form::TN), Just(Form::NT)]
}

fn betas() -> impl Strategy<Value = f32> {
    prop_oneof![Just(0.0f32), Just(1.0), Just(-0.5)]
}

proptest! {
    /// Small shapes: every edge-tile combination of the 12x32 and 6x16 microkernels.
    #[test]
    fn small_shapes(m in 0usize..=48, k in 0usize..=40, n in 0usize..=72, form in forms(), beta in betas(), seed in any::<u64>()) {
        for isa in Isa::supported() {
            check(isa, form, m, k, n, beta, seed)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.min(24), ..ProptestConfig::default() })]
    /// Shapes that cross the KC slab, several MC blocks and the multi-threaded path.
    #[test]
    fn blocked_shapes(m in 100usize..=460, k in 250usize..=530, n in 30usize..=100, form in forms(), beta in betas(), seed in any::<u64>()) {
        for isa in Isa::supported() {
            check(isa, form, m, k, n, beta, seed)?;
        }
    }
}

#[test]
fn every_supported_path_is_exercised() {
    let supported = Isa::supported();
    assert!(supported.contains(&Isa::Scalar));
    // On the x86-64-v3 baseline the AVX2 path must exist; this test documents which paths ran.
    if cfg!(target_arch = "x86_64") {
        assert!(supported.contains(&Isa::Avx2Fma), "the default build targets x86-64-v3");
    }
    eprintln!("GEMM paths tested on this CPU: {supported:?}");
}

#[test]
fn parallel_and_single_threaded_results_are_identical() {
    // Row blocks never change the per-element summation order, so thread count must not change bits.
    let (m, k, n) = (300, 300, 200);
    let mut rng = SplitMix::new(7);
    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    for isa in Isa::supported() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![0.0; m * n];
            pool.install(|| gemm_with(isa, 1.0, MatRef::new(&a, m, k), MatRef::new(&b, k, n), 0.0, &mut c));
            c
        };
        assert_eq!(run(1), run(2), "{isa}");
    }
}

#[test]
fn deep_k_crosses_several_packed_panels() {
    // k > SLABS_PER_PANEL · KC = 1024: B is packed and consumed in more than one panel, and only the first
    // slab of the first panel may overwrite C.
    for isa in Isa::supported() {
        for form in [Form::NN, Form::TN, Form::NT] {
            for beta in [0.0, 1.0, -0.5] {
                check(isa, form, 40, 1300, 50, beta, 11).unwrap();
            }
        }
    }
}

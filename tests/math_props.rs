//! The vector `exp` and `tanh` against f64 over their whole range, and their edge cases.

use proptest::prelude::*;
use shoal_engine::kernels::math::{exp_slice, tanh_slice};

fn ulps(got: f32, want: f64) -> f64 {
    let w = want as f32;
    if got == w {
        return 0.0;
    }
    (got as f64 - want).abs() / (f32::EPSILON as f64 * want.abs().max(f32::MIN_POSITIVE as f64))
}

proptest! {
    #[test]
    fn exp_is_within_3_ulp(xs in prop::collection::vec(-87.3f32..88.7, 1..64)) {
        let mut out = vec![0.0; xs.len()];
        exp_slice(&xs, &mut out);
        for (x, y) in xs.iter().zip(&out) {
            let e = ulps(*y, (*x as f64).exp());
            prop_assert!(e <= 3.0, "exp({x}) = {y}: {e:.2} ulp");
        }
    }

    #[test]
    fn tanh_is_within_3_ulp(xs in prop::collection::vec(prop_oneof![-1.0f32..1.0, -12.0f32..12.0, -1e-6f32..1e-6], 1..64)) {
        let mut out = vec![0.0; xs.len()];
        tanh_slice(&xs, &mut out);
        for (x, y) in xs.iter().zip(&out) {
            let e = ulps(*y, (*x as f64).tanh());
            prop_assert!(e <= 3.0, "tanh({x}) = {y}: {e:.2} ulp");
        }
    }
}

#[test]
fn worst_case_errors_over_a_dense_sweep() {
    let xs: Vec<f32> = (0..2_000_001).map(|i| -87.3 + i as f32 * (176.0 / 2_000_000.0)).collect();
    let mut out = vec![0.0; xs.len()];
    exp_slice(&xs, &mut out);
    let worst = xs.iter().zip(&out).map(|(x, y)| ulps(*y, (*x as f64).exp())).fold(0.0, f64::max);
    let ts: Vec<f32> = (0..2_000_001).map(|i| -9.0 + i as f32 * (18.0 / 2_000_000.0)).collect();
    let mut tout = vec![0.0; ts.len()];
    tanh_slice(&ts, &mut tout);
    let tworst = ts.iter().zip(&tout).map(|(x, y)| ulps(*y, (*x as f64).tanh())).fold(0.0, f64::max);
    eprintln!("worst exp error {worst:.2} ulp, worst tanh error {tworst:.2} ulp");
    assert!(worst <= 3.0 && tworst <= 3.0);
}

#[test]
fn edge_cases() {
    let xs = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 89.0, -88.0, -1000.0, 0.0, -0.0];
    let mut out = [0.0; 8];
    exp_slice(&xs, &mut out);
    assert!(out[0].is_nan());
    assert_eq!(&out[1..], &[f32::INFINITY, 0.0, f32::INFINITY, 0.0, 0.0, 1.0, 1.0]);
    tanh_slice(&xs, &mut out);
    assert!(out[0].is_nan());
    assert_eq!(&out[1..6], &[1.0, -1.0, 1.0, -1.0, -1.0]);
    assert_eq!((out[6].to_bits(), out[7].to_bits()), (0.0f32.to_bits(), (-0.0f32).to_bits()));
}

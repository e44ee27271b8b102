//! A register-blocked block of dot products: the R x C dot products of R rows with C others.
//!
//! One dot product loads two vectors per FMA, so it is bound by loads at half the FMA rate. A 4 x 2
//! block loads six vectors for eight FMAs, which is what makes Krum's Gram matrix compute-bound
//! instead of load-bound. The oracle is `oracle::dot` per pair.

use super::lanes::{LANES, f32x8, load};

/// `out[i][j] = a[i] · b[j]` for four rows `a` and two rows `b`, all of one length. Eight accumulators
/// and five operands fit the 16 AVX2 registers.
pub fn dots_block(a: [&[f32]; 4], b: [&[f32]; 2]) -> [[f32; 2]; 4] {
    let len = a[0].len();
    assert!(a.iter().chain(&b).all(|s| s.len() == len), "dots_block: slices of different lengths");
    let full = len - len % LANES;
    let [a0, a1, a2, a3] = a.map(|s| s[..full].chunks_exact(LANES));
    let [b0, b1] = b.map(|s| s[..full].chunks_exact(LANES));
    let mut acc = [[f32x8::ZERO; 2]; 4];
    for (((x0, x1), (x2, x3)), (y0, y1)) in a0.zip(a1).zip(a2.zip(a3)).zip(b0.zip(b1)) {
        let (y0, y1) = (load(y0), load(y1));
        for (row, x) in acc.iter_mut().zip([x0, x1, x2, x3]) {
            let x = load(x);
            row[0] = x.mul_add(y0, row[0]);
            row[1] = x.mul_add(y1, row[1]);
        }
    }
    let mut out = [[0.0f32; 2]; 4];
    for i in 0..4 {
        for j in 0..2 {
            let tail: f32 = (full..len).map(|t| a[i][t] * b[j][t]).sum();
            out[i][j] = acc[i][j].reduce_add() + tail;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_cell_is_the_oracle_dot(len in 0usize..300, offset in 0usize..8, seed in any::<u64>()) {
            let mut rng = crate::model::SplitMix::new(seed);
            let rows: Vec<Vec<f32>> = (0..8).map(|_| (0..len + offset).map(|_| rng.uniform(-2.0, 2.0)).collect()).collect();
            let a = [0, 1, 2, 3].map(|i| &rows[i][offset..]);
            let b = [4, 5].map(|i| &rows[i][offset..]);
            let got = dots_block(a, b);
            for i in 0..4 {
                for j in 0..2 {
                    let want = crate::oracle::dot(a[i], b[j]);
                    prop_assert!((got[i][j] as f64 - want).abs() <= 1e-4 * (1.0 + len as f64), "{i},{j}: {} vs {want}", got[i][j]);
                }
            }
        }
    }
}

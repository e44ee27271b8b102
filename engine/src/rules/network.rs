//! Sorting N values per coordinate, 8 coordinates at a time, with a sorting network of lane-wise
//! min/max: every comparator sorts the same pair of inputs for 8 coordinates at once, with no branches.
//!
//! The network is Batcher's odd-even merge sort for the next power of two above N; comparators that touch
//! a position ≥ N are dropped, which is exact because those positions would hold +∞ padding that never
//! moves down.

/// The comparator list (i < j: after it, position i holds the smaller value) for `n` values.
pub fn batcher_pairs(n: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    let size = n.next_power_of_two();
    let mut p = 1;
    while p < size {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < size {
                for i in 0..k.min(size - j - k) {
                    let (a, b) = (i + j, i + j + k);
                    if a / (2 * p) == b / (2 * p) && b < n {
                        pairs.push((a, b));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_sort_every_zero_one_input_up_to_16() {
        // The 0-1 principle: a comparator network sorts all inputs iff it sorts all 0/1 inputs.
        for n in 1..=16 {
            let pairs = batcher_pairs(n);
            for bits in 0u32..(1 << n) {
                let mut v: Vec<u32> = (0..n).map(|i| (bits >> i) & 1).collect();
                for &(a, b) in &pairs {
                    if v[a] > v[b] {
                        v.swap(a, b);
                    }
                }
                assert!(v.windows(2).all(|w| w[0] <= w[1]), "n={n} input {bits:b}");
            }
        }
    }
}

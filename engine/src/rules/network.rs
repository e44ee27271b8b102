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

/// The comparators of `pairs` (a network over `n` values) that can affect a position `needed` selects:
/// walking backwards, a comparator matters if it writes a position still needed, and then both its
/// inputs are needed. The median of 32 needs 157 of Batcher's 191 comparators.
pub fn pruned(pairs: &[(usize, usize)], n: usize, needed: impl Fn(usize) -> bool) -> Vec<(usize, usize)> {
    let mut live: Vec<bool> = (0..n).map(needed).collect();
    let mut kept: Vec<(usize, usize)> = pairs
        .iter()
        .rev()
        .filter(|&&(a, b)| {
            let matters = live[a] || live[b];
            if matters {
                live[a] = true;
                live[b] = true;
            }
            matters
        })
        .copied()
        .collect();
    kept.reverse();
    kept
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

    #[test]
    fn pruned_networks_still_place_the_needed_positions() {
        // By the 0-1 principle again: for every 0/1 input, the kept comparators put the right value at every
        // needed position (the middle for a median, an inner window for a trimmed mean).
        for n in 1..=16 {
            let full = batcher_pairs(n);
            let windows = [((n - 1) / 2, n / 2 + 1), (n / 4, n - n / 4)];
            for (lo, hi) in windows {
                let kept = pruned(&full, n, |i| (lo..hi).contains(&i));
                assert!(kept.len() <= full.len());
                for bits in 0u32..(1 << n) {
                    let mut v: Vec<u32> = (0..n).map(|i| (bits >> i) & 1).collect();
                    let mut want = v.clone();
                    want.sort();
                    for &(a, b) in &kept {
                        if v[a] > v[b] {
                            v.swap(a, b);
                        }
                    }
                    assert_eq!(v[lo..hi], want[lo..hi], "n={n} window {lo}..{hi} input {bits:b}");
                }
            }
        }
        assert_eq!(pruned(&batcher_pairs(32), 32, |i| i == 15 || i == 16).len(), 157);
    }
}

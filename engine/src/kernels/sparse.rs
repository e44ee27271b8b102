//! Sparse rows: gather, scatter-add, hashed ids, the sum-pooled embedding bag, and coalesced row gradients.
//!
//! Categorical features arrive as u64 ids (a hashed string, a raw id of any size). A table has a fixed
//! number of rows, and [`row_of`] maps an id to its row with a strong 64-bit mixer, so adjacent ids don't
//! land in adjacent rows and collisions are those of a uniform hash.

use super::blas1::axpy;

/// Copies table rows `rows[k]` (each `dim` floats) into `out[k]`.
pub fn gather_rows(table: &[f32], dim: usize, rows: &[u32], out: &mut [f32]) {
    assert_eq!(out.len(), rows.len() * dim, "gather_rows: output must hold rows.len() * dim floats");
    for (&r, o) in rows.iter().zip(out.chunks_exact_mut(dim.max(1))) {
        let r = r as usize;
        o.copy_from_slice(&table[r * dim..(r + 1) * dim]);
    }
}

/// Adds `src[k]` into table row `rows[k]`; repeated rows accumulate.
pub fn scatter_add_rows(table: &mut [f32], dim: usize, rows: &[u32], src: &[f32]) {
    assert_eq!(src.len(), rows.len() * dim, "scatter_add_rows: source must hold rows.len() * dim floats");
    if dim == 0 {
        return;
    }
    for (&r, s) in rows.iter().zip(src.chunks_exact(dim)) {
        let r = r as usize;
        axpy(1.0, s, &mut table[r * dim..(r + 1) * dim]);
    }
}

/// The splitmix64 finaliser: a bijective mix with full avalanche.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The table row a feature id lives in.
#[inline]
pub fn row_of(id: u64, num_rows: usize) -> u32 {
    debug_assert!(num_rows > 0 && num_rows <= u32::MAX as usize + 1);
    // Multiply-shift range reduction: unbiased enough and no division.
    ((mix64(id) as u128 * num_rows as u128) >> 64) as u32
}

/// Bags of feature ids in CSR form: bag `b` holds `ids[offsets[b]..offsets[b + 1]]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bags {
    pub offsets: Vec<usize>,
    pub ids: Vec<u64>,
}

impl Bags {
    pub fn from_lists(lists: &[Vec<u64>]) -> Self {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut ids = Vec::new();
        offsets.push(0);
        for l in lists {
            ids.extend_from_slice(l);
            offsets.push(ids.len());
        }
        Self { offsets, ids }
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bag(&self, b: usize) -> &[u64] {
        &self.ids[self.offsets[b]..self.offsets[b + 1]]
    }
}

/// Sum-pooled embedding bag: `out[b] = Σ_{id ∈ bag b} table[row_of(id)]`. An empty bag gives zeros.
pub fn embedding_bag_sum(table: &[f32], dim: usize, bags: &Bags, out: &mut [f32]) {
    assert_eq!(out.len(), bags.len() * dim, "embedding_bag_sum: output must hold bags * dim floats");
    assert!(dim > 0 && table.len().is_multiple_of(dim), "embedding_bag_sum: table length is not a multiple of dim");
    let num_rows = table.len() / dim;
    for (b, o) in out.chunks_exact_mut(dim).enumerate() {
        o.fill(0.0);
        for &id in bags.bag(b) {
            let r = row_of(id, num_rows) as usize;
            axpy(1.0, &table[r * dim..(r + 1) * dim], o);
        }
    }
}

/// The gradient of [`embedding_bag_sum`]: each bag's output gradient flows into every row it touched.
pub fn embedding_bag_backward(num_rows: usize, dim: usize, bags: &Bags, dout: &[f32]) -> SparseGrad {
    assert_eq!(dout.len(), bags.len() * dim, "embedding_bag_backward: gradient must hold bags * dim floats");
    let mut rows = Vec::with_capacity(bags.ids.len());
    let mut values = Vec::with_capacity(bags.ids.len() * dim);
    for (b, g) in dout.chunks_exact(dim.max(1)).enumerate().take(bags.len()) {
        for &id in bags.bag(b) {
            rows.push(row_of(id, num_rows));
            values.extend_from_slice(g);
        }
    }
    SparseGrad::coalesce(dim, &rows, &values)
}

/// Gradient rows of a sparse table, sorted by row with every row present once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseGrad {
    dim: usize,
    rows: Vec<u32>,
    values: Vec<f32>,
}

impl SparseGrad {
    /// Sums the values of repeated rows and sorts by row.
    pub fn coalesce(dim: usize, rows: &[u32], values: &[f32]) -> Self {
        assert_eq!(values.len(), rows.len() * dim, "coalesce: values must hold rows.len() * dim floats");
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&k| rows[k]);
        let mut out = SparseGrad { dim, rows: Vec::new(), values: Vec::new() };
        for k in order {
            let src = &values[k * dim..(k + 1) * dim];
            if out.rows.last() == Some(&rows[k]) {
                let start = out.values.len() - dim;
                axpy(1.0, src, &mut out.values[start..]);
            } else {
                out.rows.push(rows[k]);
                out.values.extend_from_slice(src);
            }
        }
        out
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn rows(&self) -> &[u32] {
        &self.rows
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// (row, gradient of that row) pairs in row order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[f32])> {
        self.rows.iter().copied().zip(self.values.chunks_exact(self.dim.max(1)))
    }
}

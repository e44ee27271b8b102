//! The in-memory id -> row index of a sparse table: open addressing with linear probing.
//!
//! The index is not stored: open rebuilds it from the id pages of the committed chunks (one page per
//! 512 rows). Keeping it off the disk means an insert dirties one chunk, not a random page of an
//! on-disk hash table, so a commit after many random inserts copies and syncs far fewer bytes.

/// Marks an empty slot (a table never holds `u32::MAX` rows).
const EMPTY: u32 = u32::MAX;
/// Grow when more than 7/10 of the slots are taken.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 10;

pub struct IdIndex {
    ids: Vec<u64>,
    rows: Vec<u32>,
    len: usize,
}

/// Spreads an id over the table: feature ids are often hashes already, but sequential ids are common
/// too, and linear probing needs their low bits mixed (the murmur3 finalizer).
fn mix(id: u64) -> u64 {
    let mut x = id ^ (id >> 33);
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl IdIndex {
    /// An index with room for `rows` ids before it grows.
    pub fn with_capacity(rows: usize) -> Self {
        let slots = (rows * MAX_LOAD_DEN / MAX_LOAD_NUM + 1).next_power_of_two().max(16);
        Self { ids: vec![0; slots], rows: vec![EMPTY; slots], len: 0 }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes of memory the index holds.
    pub fn heap_bytes(&self) -> usize {
        self.ids.len() * 12
    }

    fn slot_of(&self, id: u64) -> Result<usize, usize> {
        let mask = self.ids.len() - 1;
        let mut at = mix(id) as usize & mask;
        loop {
            if self.rows[at] == EMPTY {
                return Err(at);
            }
            if self.ids[at] == id {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    pub fn get(&self, id: u64) -> Option<u32> {
        self.slot_of(id).ok().map(|at| self.rows[at])
    }

    /// Adds `id -> row`, or returns the row `id` already has.
    pub fn insert(&mut self, id: u64, row: u32) -> Result<(), u32> {
        match self.get_or_insert(id, row) {
            existing if existing == row => Ok(()),
            existing => Err(existing),
        }
    }

    /// The row of `id`; an absent id is given `row` (one probe sequence either way).
    pub fn get_or_insert(&mut self, id: u64, row: u32) -> u32 {
        debug_assert!(row != EMPTY);
        if (self.len + 1) * MAX_LOAD_DEN > self.ids.len() * MAX_LOAD_NUM {
            self.grow();
        }
        match self.slot_of(id) {
            Ok(at) => self.rows[at],
            Err(at) => {
                self.ids[at] = id;
                self.rows[at] = row;
                self.len += 1;
                row
            }
        }
    }

    fn grow(&mut self) {
        let mut bigger = Self { ids: vec![0; self.ids.len() * 2], rows: vec![EMPTY; self.ids.len() * 2], len: 0 };
        for (&id, &row) in self.ids.iter().zip(&self.rows) {
            if row != EMPTY {
                let at = bigger.slot_of(id).expect_err("ids are unique");
                bigger.ids[at] = id;
                bigger.rows[at] = row;
            }
        }
        bigger.len = self.len;
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn behaves_like_a_hash_map(ids in proptest::collection::vec(prop_oneof![0u64..64, any::<u64>()], 0..2000)) {
            let mut index = IdIndex::with_capacity(0);
            let mut model = HashMap::new();
            for (n, &id) in ids.iter().enumerate() {
                let row = model.len() as u32;
                match model.get(&id) {
                    Some(&r) => prop_assert_eq!(index.insert(id, row), Err(r)),
                    None => {
                        prop_assert_eq!(index.insert(id, row), Ok(()));
                        model.insert(id, row);
                    }
                }
                prop_assert_eq!(index.get(ids[n / 2]), model.get(&ids[n / 2]).copied());
            }
            prop_assert_eq!(index.len(), model.len());
            for (&id, &row) in &model {
                prop_assert_eq!(index.get(id), Some(row));
            }
            prop_assert_eq!(index.get(u64::MAX - 1).is_some(), model.contains_key(&(u64::MAX - 1)));
        }
    }
}

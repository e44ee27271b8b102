//! Payload checksums: XXH3-64 with seed 0, the hash the wire protocol names (a Python worker computes it
//! with the `xxhash` package). The code is the `shoal-checksum` crate, which the parameter store shares;
//! this module keeps its names in the bus's API.

pub use shoal_checksum::{Xxh3Stream, label, xxh3, xxh3_reference};

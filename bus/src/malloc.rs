//! glibc `malloc` settings for a process that moves large messages.
//!
//! libzmq allocates a fresh buffer with the C allocator for every message it receives. glibc's defaults
//! tune themselves for small, short-lived blocks. A megabyte buffer is first served by `mmap` and returned
//! with `munmap`, until a dynamic threshold adapts. The memory at the top of each heap is given back to the
//! kernel as soon as 128 KiB are free. So the I/O thread keeps faulting fresh zero pages in and the
//! kernel keeps zeroing them. `perf` showed those faults inside libzmq's receive copies. Two settings stop
//! it: blocks up to [`MMAP_THRESHOLD`] come from the heap, and up to [`TRIM_THRESHOLD`] of free memory
//! stays with the process. The cost is that memory once used for messages is kept for reuse and not returned.
//! A training process holds parameters and optimizer state many times that size anyway.
//!
//! Measured on a tcp push of 1 MiB tensors between two processes (docs/benchmarks.md): raw libzmq and shoal
//! framing both run faster, and shoal's framing, which holds each message a little longer while it
//! verifies the checksum, gains the most.
//!
//! With `sockopt`, this module holds the bus crate's only `unsafe` code.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Largest block served from the heap rather than by its own `mmap`: 32 MiB, the most older glibc
/// versions accept (twice the 16 MiB tensors the benchmarks push).
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory a heap keeps before giving it back to the kernel (256 MiB).
pub const TRIM_THRESHOLD: usize = 256 << 20;

/// Applies [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`] to this process's C allocator. Call it once, early
/// in `main`, before threads start. Returns whether the settings took (always `false` where the C library
/// is not glibc). An operator's `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` environment variable
/// is respected: then nothing is changed. So is `SHOAL_MALLOC=default`, which keeps glibc's defaults.
pub fn tune_for_large_messages() -> bool {
    if left_to_the_operator() {
        return false;
    }
    let done = set(MMAP_THRESHOLD, TRIM_THRESHOLD);
    TUNED.store(done, Ordering::Relaxed);
    done
}

/// Whether the environment keeps the allocator's settings out of shoal's hands: `MALLOC_MMAP_THRESHOLD_`
/// or `MALLOC_TRIM_THRESHOLD_` set, or `SHOAL_MALLOC=default`.
pub fn left_to_the_operator() -> bool {
    std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
        || std::env::var("SHOAL_MALLOC").is_ok_and(|v| v == "default")
}

/// Whether [`tune_for_large_messages`] has changed this process's allocator settings.
pub fn tuned() -> bool {
    TUNED.load(Ordering::Relaxed)
}

static TUNED: AtomicBool = AtomicBool::new(false);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(mmap_threshold: usize, trim_threshold: usize) -> bool {
    let as_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` only adjusts glibc's allocator parameters. It is thread-safe (it takes the arena
    // lock) and takes plain integers; both values are in range for `c_int`.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(mmap_threshold)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(trim_threshold)) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_: usize, _: usize) -> bool {
    false
}

//! `shoal info`: what this build runs on this machine.

use std::fmt::Write;

use shoal_engine::{Isa, isa_report};

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

pub fn report() -> String {
    let r = isa_report();
    let supported: Vec<&str> = r.gemm_supported.iter().map(|i| i.name()).collect();
    let mut s = String::new();
    let _ = writeln!(s, "shoal {} ({} {})", env!("CARGO_PKG_VERSION"), std::env::consts::OS, std::env::consts::ARCH);
    let _ = writeln!(s, "cpu                   {}", cpu_model());
    let _ = writeln!(
        s,
        "gemm                  {} (chosen at run time; this CPU supports: {}{})",
        r.gemm.label(),
        supported.join(", "),
        if r.gemm < r.gemm_supported[0] { "; lowered by SHOAL_ISA" } else { "" }
    );
    for family in ["blas-1 / aggregation", "activations / losses", "optimizers", "sparse rows"] {
        let _ = writeln!(s, "{family:<22}{} (compiled in, wide::f32x8)", r.portable);
    }
    let _ = writeln!(s, "rayon threads         {} (set RAYON_NUM_THREADS to change)", rayon::current_num_threads());
    let _ = writeln!(s, "bus protocol          {}.{}", shoal_bus::PROTOCOL_VERSION.0, shoal_bus::PROTOCOL_VERSION.1);
    let _ = writeln!(s, "checksums             XXH3-64 (wire frames, store), {}", shoal_bus::checksum::label());
    let malloc = if shoal_bus::malloc::tuned() {
        format!(
            "glibc, tuned for large messages (mmap above {} MiB, trim above {} MiB)",
            shoal_bus::malloc::MMAP_THRESHOLD >> 20,
            shoal_bus::malloc::TRIM_THRESHOLD >> 20
        )
    } else {
        "the C library's defaults (SHOAL_MALLOC=default, MALLOC_*_ set, or not glibc)".to_string()
    };
    let _ = writeln!(s, "allocator             {malloc}");
    let _ = writeln!(s, "plugin ABI            {}", shoal_plugins::ABI_VERSION);
    debug_assert!(Isa::ALL.contains(&r.gemm));
    s
}

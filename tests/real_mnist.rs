//! Training on the real MNIST. When the data folder is empty the test runs the same pinned, hash-checked
//! fetch step as `shoal data fetch` (pip + the registry), so a fresh clone's `cargo test` covers it too.

use std::path::PathBuf;

use shoal::data::DataDir;
use shoal::data::fetch::fetch_all;
use shoal::data::mnist::Mnist;
use shoal::demo::{DemoConfig, run};

fn data_dir() -> PathBuf {
    std::env::var_os("SHOAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"))
}

#[test]
fn mlp_reaches_97_percent_on_real_mnist() {
    let dir = DataDir(data_dir());
    if !Mnist::is_converted(&dir.mnist()) {
        fetch_all(&dir, &mut |line| eprintln!("{line}")).unwrap_or_else(|e| panic!("fetching MNIST: {e}"));
    }
    let data = Mnist::load(&dir.mnist()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((data.train.len(), data.val.len(), data.test.len()), (50_000, 10_000, 10_000));
    // Every digit is present in every split, in a plausible share.
    for split in [&data.train, &data.test] {
        let mut counts = [0usize; 10];
        split.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&c| c * 100 > split.len() * 8), "{counts:?}");
    }
    let cfg = DemoConfig { epochs: 4, ..DemoConfig::default() };
    let report = run(&data, &cfg, |_| {}).unwrap();
    assert!(report.test_accuracy >= 0.97, "test accuracy {}", report.test_accuracy);
}

#[test]
fn adult_loads_encoded_and_split_and_a_corrupt_file_is_named() {
    use shoal::data::Samples;
    use shoal::data::adult::Adult;
    let dir = DataDir(data_dir());
    if !dir.adult().exists() {
        fetch_all(&dir, &mut |line| eprintln!("{line}")).unwrap_or_else(|e| panic!("fetching: {e}"));
    }
    let a = Adult::load(&dir.adult()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.train.len() + a.val.len() + a.test.len(), 48_842);
    assert_eq!((a.train.len(), a.val.len()), (34_189, 4_884));
    let dim = a.train.dim;
    assert_eq!(a.features.len(), dim);
    assert!(a.features.iter().any(|f| f == "marital-status=Never-married"), "{:?}", &a.features[..10]);
    // The published share of incomes above 50K is 23.9%.
    let positive = a.train.labels.iter().filter(|&&l| l == 1).count() as f64 / a.train.len() as f64;
    assert!((positive - 0.239).abs() < 0.01, "{positive}");
    // Numeric features are standardized on the train split; each categorical block is one-hot.
    for k in 0..6 {
        let mean: f64 = a.train.x.chunks_exact(dim).map(|r| r[k] as f64).sum::<f64>() / a.train.len() as f64;
        assert!(mean.abs() < 1e-3, "feature {k} mean {mean}");
    }
    for row in a.test.x.chunks_exact(dim) {
        assert!(row.iter().all(|v| v.is_finite()));
        assert_eq!(row[6..].iter().filter(|&&v| v == 1.0).count(), 8, "one value per categorical column");
    }
    let bad = std::env::temp_dir().join(format!("adult-bad-{}.parquet", std::process::id()));
    std::fs::write(&bad, b"not parquet at all").unwrap();
    let e = Adult::load(&bad).unwrap_err().to_string();
    assert!(e.contains(&bad.display().to_string()) && e.contains("parquet"), "{e}");
    let _ = std::fs::remove_file(&bad);
}

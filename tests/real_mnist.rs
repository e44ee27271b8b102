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

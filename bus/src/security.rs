//! Authenticated, encrypted tcp links: CURVE keypairs per node, an allowlist of public keys, and the ZAP
//! handler that enforces it.
//!
//! Every node has a CURVE keypair (`shoal keygen`). The node that binds (the master, a server shard) is
//! the CURVE server; nodes that connect are CURVE clients and must know the server's public key, so they
//! authenticate the server too. The server's ZAP handler accepts a client only if its public key is on
//! the allowlist, and answers with the node id that key belongs to as the ZAP user id. libzmq stamps that
//! id on every message from the connection (`User-Id`), and [`crate::transport::recv`] drops a message
//! whose header claims another sender: a node's id is bound to its key. Domain enforcement
//! (`ZMQ_ZAP_ENFORCE_DOMAIN`) means no handler, no connection.
//!
//! Key files are text so they can be read and copied by hand:
//!
//! ```text
//! node-7.pub                      node-7.key (mode 0600)
//! shoal-curve-public v1           shoal-curve-secret v1
//! node 7                          node 7
//! public <40 z85 chars>           public <40 z85 chars>
//!                                 secret <40 z85 chars>
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The ZAP domain shoal's servers use.
pub const ZAP_DOMAIN: &str = "shoal";
/// Where libzmq looks for the ZAP handler of a context (RFC 27).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("this libzmq has no CURVE support (it was built without libsodium); see docs/protocol.md, \"Security\"")]
    NoCurve,
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: {reason}")]
    BadKeyFile { path: PathBuf, reason: String },
    #[error("{path}: the secret key file is readable by group or others (mode {mode:o}); chmod 600 it")]
    OpenSecret { path: PathBuf, mode: u32 },
    #[error("{dir}: no node-*.pub files, so no node could connect")]
    EmptyAllowlist { dir: PathBuf },
    #[error("{op}: {cause}")]
    Zmq { op: &'static str, cause: zmq::Error },
}

fn zmq_err(op: &'static str) -> impl FnOnce(zmq::Error) -> SecurityError {
    move |cause| SecurityError::Zmq { op, cause }
}

/// Whether the linked libzmq can do CURVE.
pub fn curve_available() -> bool {
    zmq::has("curve").unwrap_or(false)
}

/// A node's CURVE keypair, both keys in Z85 text (40 characters).
#[derive(Clone, PartialEq, Eq)]
pub struct Keypair {
    pub node: u32,
    pub public: String,
    secret: String,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keypair").field("node", &self.node).field("public", &self.public).finish_non_exhaustive()
    }
}

impl Keypair {
    pub fn generate(node: u32) -> Result<Self, SecurityError> {
        if !curve_available() {
            return Err(SecurityError::NoCurve);
        }
        let pair = zmq::CurveKeyPair::new().map_err(zmq_err("generate a CURVE keypair"))?;
        let z85 = |k: &[u8]| zmq::z85_encode(k).expect("32 bytes always encode to z85");
        Ok(Self { node, public: z85(&pair.public_key), secret: z85(&pair.secret_key) })
    }

    pub fn public_path(dir: &Path, node: u32) -> PathBuf {
        dir.join(format!("node-{node}.pub"))
    }

    pub fn secret_path(dir: &Path, node: u32) -> PathBuf {
        dir.join(format!("node-{node}.key"))
    }

    /// Writes `node-N.pub` and `node-N.key` (mode 0600, never overwritten) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), SecurityError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).map_err(|cause| SecurityError::Io { path: dir.into(), cause })?;
        let secret_path = Self::secret_path(dir, self.node);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| SecurityError::Io { path, cause }
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .map_err(io(&secret_path))?;
        write!(f, "shoal-curve-secret v1\nnode {}\npublic {}\nsecret {}\n", self.node, self.public, self.secret)
            .and_then(|()| f.sync_all())
            .map_err(io(&secret_path))?;
        let public_path = Self::public_path(dir, self.node);
        std::fs::write(&public_path, format!("shoal-curve-public v1\nnode {}\npublic {}\n", self.node, self.public))
            .map_err(io(&public_path))?;
        Ok((public_path, secret_path))
    }

    /// Reads `node-N.key` from `dir`, refusing a file others can read.
    pub fn load(dir: &Path, node: u32) -> Result<Self, SecurityError> {
        use std::os::unix::fs::PermissionsExt;
        let path = Self::secret_path(dir, node);
        let meta = std::fs::metadata(&path).map_err(|cause| SecurityError::Io { path: path.clone(), cause })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecurityError::OpenSecret { path, mode });
        }
        let fields = read_key_file(&path, "shoal-curve-secret v1", &["node", "public", "secret"])?;
        let pair = Self { node: fields.node, public: fields.values[1].clone(), secret: fields.values[2].clone() };
        if pair.node != node {
            return Err(bad(&path, format!("names node {}, expected node {node}", pair.node)));
        }
        Ok(pair)
    }

    /// Makes `socket` the CURVE server side of its links: clients must present an allowlisted key, which
    /// the ZAP handler of the socket's context checks (see [`ZapHandler`]).
    pub fn serve_on(&self, socket: &mut zmq::Socket) -> Result<(), SecurityError> {
        socket.set_curve_server(true).map_err(zmq_err("set CURVE_SERVER"))?;
        socket.set_curve_secretkey(self.secret.as_bytes()).map_err(zmq_err("set CURVE_SECRETKEY"))?;
        socket.set_zap_domain(ZAP_DOMAIN).map_err(zmq_err("set ZAP_DOMAIN"))?;
        crate::sockopt::set_zap_enforce_domain(socket, true).map_err(zmq_err("set ZAP_ENFORCE_DOMAIN"))
    }

    /// Makes `socket` a CURVE client that only talks to the server holding `server_public`.
    pub fn connect_with(&self, socket: &zmq::Socket, server_public: &str) -> Result<(), SecurityError> {
        socket.set_curve_serverkey(server_public.as_bytes()).map_err(zmq_err("set CURVE_SERVERKEY"))?;
        socket.set_curve_publickey(self.public.as_bytes()).map_err(zmq_err("set CURVE_PUBLICKEY"))?;
        socket.set_curve_secretkey(self.secret.as_bytes()).map_err(zmq_err("set CURVE_SECRETKEY"))
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> SecurityError {
    SecurityError::BadKeyFile { path: path.into(), reason: reason.into() }
}

struct KeyFields {
    node: u32,
    /// The values of the expected keys, in order; `values[0]` is the node id's text.
    values: Vec<String>,
}

fn read_key_file(path: &Path, magic: &str, keys: &[&str]) -> Result<KeyFields, SecurityError> {
    let text = std::fs::read_to_string(path).map_err(|cause| SecurityError::Io { path: path.into(), cause })?;
    let mut lines = text.lines();
    if lines.next() != Some(magic) {
        return Err(bad(path, format!("does not start with `{magic}`")));
    }
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        let line = lines.next().ok_or_else(|| bad(path, format!("ends before the `{key}` line")))?;
        let value = line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| bad(path, format!("expected a `{key} ...` line, found `{line}`")))?;
        values.push(value.trim().to_string());
    }
    let node = values[0].parse().map_err(|_| bad(path, format!("`{}` is not a node id", values[0])))?;
    for (key, value) in keys.iter().zip(&values).skip(1) {
        match zmq::z85_decode(value) {
            Ok(bytes) if bytes.len() == 32 => {}
            _ => return Err(bad(path, format!("the {key} key is not 40 characters of Z85"))),
        }
    }
    Ok(KeyFields { node, values })
}

/// Which public keys may connect, and as which node.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    by_key: HashMap<[u8; 32], u32>,
}

impl Allowlist {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn allow(&mut self, node: u32, public: &str) -> Result<(), SecurityError> {
        let bytes = zmq::z85_decode(public).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
        let key = bytes.ok_or_else(|| bad(Path::new("<allowlist>"), "a public key is not 40 characters of Z85"))?;
        self.by_key.insert(key, node);
        Ok(())
    }

    /// Every `node-*.pub` in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, SecurityError> {
        let mut list = Self::new();
        let entries = std::fs::read_dir(dir).map_err(|cause| SecurityError::Io { path: dir.into(), cause })?;
        for entry in entries {
            let path = entry.map_err(|cause| SecurityError::Io { path: dir.into(), cause })?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("node-") && name.ends_with(".pub") {
                let fields = read_key_file(&path, "shoal-curve-public v1", &["node", "public"])?;
                list.allow(fields.node, &fields.values[1])?;
            }
        }
        if list.by_key.is_empty() {
            return Err(SecurityError::EmptyAllowlist { dir: dir.into() });
        }
        Ok(list)
    }

    /// The public key of `node`, Z85 (a client needs the server's).
    pub fn public_of(&self, node: u32) -> Option<String> {
        self.by_key.iter().find(|(_, n)| **n == node).map(|(k, _)| zmq::z85_encode(k).expect("32 bytes"))
    }

    fn node_of(&self, key: &[u8]) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// What the ZAP handler decided so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZapStats {
    pub accepted: u64,
    pub rejected: u64,
}

/// The ZAP handler of one ZeroMQ context: a thread answering libzmq's authentication requests from the
/// allowlist. Keep it alive as long as the context's CURVE server sockets; dropping it stops the thread.
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    /// Binds the context's ZAP endpoint (once per context) and starts answering.
    pub fn start(ctx: &zmq::Context, allowlist: Allowlist) -> Result<Self, SecurityError> {
        let socket = ctx.socket(zmq::REP).map_err(zmq_err("create the ZAP socket"))?;
        socket.set_linger(0).map_err(zmq_err("set LINGER"))?;
        socket.bind(ZAP_ENDPOINT).map_err(zmq_err("bind the ZAP handler"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let rejected = Arc::new(AtomicU64::new(0));
        let (s, a, r) = (Arc::clone(&stop), Arc::clone(&accepted), Arc::clone(&rejected));
        let thread = std::thread::Builder::new()
            .name("shoal-zap".into())
            .spawn(move || serve_zap(&socket, &allowlist, &s, &a, &r))
            .map_err(|cause| SecurityError::Io { path: "<zap thread>".into(), cause })?;
        Ok(Self { stop, accepted, rejected, thread: Some(thread) })
    }

    pub fn stats(&self) -> ZapStats {
        ZapStats { accepted: self.accepted.load(Ordering::Relaxed), rejected: self.rejected.load(Ordering::Relaxed) }
    }
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers ZAP requests (RFC 27: version, request id, domain, address, identity, mechanism, credentials)
/// until `stop` is set.
fn serve_zap(
    socket: &zmq::Socket,
    allowlist: &Allowlist,
    stop: &AtomicBool,
    accepted: &AtomicU64,
    rejected: &AtomicU64,
) {
    let poll_every = Duration::from_millis(50);
    while !stop.load(Ordering::Relaxed) {
        match socket.poll(zmq::POLLIN, poll_every.as_millis() as i64) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(frames) = socket.recv_multipart(0) else { return };
        let version = frames.first().cloned().unwrap_or_default();
        let request_id = frames.get(1).cloned().unwrap_or_default();
        let domain = frames.get(2).map(Vec::as_slice).unwrap_or_default();
        let mechanism = frames.get(5).map(Vec::as_slice).unwrap_or_default();
        let node = match (version.as_slice(), domain, mechanism, frames.get(6)) {
            (b"1.0", d, b"CURVE", Some(key)) if d == ZAP_DOMAIN.as_bytes() => allowlist.node_of(key),
            _ => None,
        };
        let (status, text, user) = match node {
            Some(n) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                ("200", "OK", n.to_string())
            }
            None => {
                rejected.fetch_add(1, Ordering::Relaxed);
                ("400", "key not on the allowlist", String::new())
            }
        };
        let reply: [&[u8]; 6] = [b"1.0", &request_id, status.as_bytes(), text.as_bytes(), user.as_bytes(), b""];
        if socket.send_multipart(reply, 0).is_err() {
            return;
        }
    }
}

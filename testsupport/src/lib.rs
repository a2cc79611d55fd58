//! Test support shared by every test that needs a real server or a stand-in.
//!
//! * [`mongodb_uri`] finds the MongoDB-wire server (`MEETBOT_TEST_MONGODB_URI`, set by
//!   `scripts/test.sh`) or starts a private mongoeco server for this test process.
//! * [`amqp_url`] finds RabbitMQ (`MEETBOT_TEST_AMQP_URL`, default the machine's 127.0.0.1:5672).
//! * [`unique`] gives each test its own database prefix and queue names so tests run in parallel.
//! * [`keyvault`] is a stand-in for the Azure Key Vault keys REST API (no emulator exists).
//! * [`janus`] runs the real Janus in a network namespace the test creates, with WebRTC publishers.
//! * [`kube`] is a stand-in for the Kubernetes batch/v1 Jobs and Pods API (no API server here).
//! * [`oidc`] runs a real OpenID provider (node-oidc-provider over HTTPS with a test CA).

pub mod ai;
pub mod audio_sink;
pub mod browser;
pub mod delivery;
pub mod egress;
pub mod google;
pub mod graph;
pub mod janus;
pub mod keyvault;
pub mod kube;
pub mod oidc;
pub mod otlp;
pub mod procstat;
pub mod redaction_corpora;
pub mod speech;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Every byte of every file under `dir`, subdirectories included (an embedded store keeps
/// each tenant in `tenants/<id>.sqlite3`): what someone holding the disk would read.
///
/// The files are read by a child process (`cat`): closing any descriptor of a file drops all of
/// this process's POSIX locks on it, and SQLite relies on those locks, so reading a database
/// this process has open would break its connection.
pub fn raw_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    raw_file_bytes(&files)
}

/// The bytes of `files` (those that exist), read by a child process: closing a descriptor of a
/// SQLite file in this process would drop this process's POSIX locks on it.
pub fn raw_file_bytes(files: &[PathBuf]) -> Vec<u8> {
    let files: Vec<&PathBuf> = files.iter().filter(|f| f.exists()).collect();
    if files.is_empty() {
        return Vec::new();
    }
    let out = std::process::Command::new("cat")
        .args(&files)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("cat runs");
    out.stdout
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A short unique name: `<prefix><12 hex>`, valid as a database prefix, queue name or tenant name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The workspace root (where `Cargo.lock` is).
/// schemathesis from PyPI: `MEETBOT_TEST_SCHEMATHESIS`, else the venv scripts/test.sh makes.
pub fn schemathesis() -> PathBuf {
    std::env::var_os("MEETBOT_TEST_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-env/schemathesis/bin/schemathesis"))
}

pub fn workspace_root() -> PathBuf {
    let mut p = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    p.pop();
    p
}

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .map(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
        .unwrap_or(false)
}

/// The AMQP URL of the real RabbitMQ the tests use. Panics with what to do if it is not running.
pub fn amqp_url() -> String {
    let url = std::env::var("MEETBOT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let hostport = url
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    assert!(
        reachable(&hostport),
        "RabbitMQ is not reachable at {hostport}: start it with `rabbitmq-server -detached` (scripts/test.sh does)"
    );
    url
}

struct Mongo {
    uri: String,
    _child: Option<Child>,
}

static MONGO: OnceLock<Mutex<Mongo>> = OnceLock::new();

/// The URI of a MongoDB-wire server for tests: the shared one from `MEETBOT_TEST_MONGODB_URI`, or
/// a private mongoeco server started for this process (it exits when this process does).
pub fn mongodb_uri() -> String {
    let m = MONGO.get_or_init(|| {
        if let Ok(uri) = std::env::var("MEETBOT_TEST_MONGODB_URI") {
            return Mutex::new(Mongo { uri, _child: None });
        }
        let (uri, child) = start_mongoeco().unwrap_or_else(|e| panic!("{e}"));
        Mutex::new(Mongo {
            uri,
            _child: Some(child),
        })
    });
    m.lock().unwrap_or_else(|p| p.into_inner()).uri.clone()
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start_mongoeco() -> anyhow::Result<(String, Child)> {
    let root = workspace_root();
    let python = std::env::var("MEETBOT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/test-env/mongo/bin/python"));
    anyhow::ensure!(
        python.exists(),
        "no MongoDB-wire test server: {} is missing; run `bash scripts/test.sh` (it installs mongoeco) or set MEETBOT_TEST_MONGODB_URI",
        python.display()
    );
    let port = free_port();
    let child = Command::new(&python)
        .arg(root.join("testsupport/mongoeco/serve.py"))
        .args(["--port", &port.to_string(), "--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while !reachable(&addr) {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "mongoeco did not start on {addr} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((format!("mongodb://{addr}/?directConnection=true"), child))
}

/// Closes (server side, like a broker restart would) every RabbitMQ connection whose client
/// properties mention `name`, via `rabbitmqctl`. Returns how many were closed.
pub fn rabbitmq_close_connections(name: &str) -> anyhow::Result<usize> {
    // Text output: one connection per line, `<pid>\t<client properties>`; the pid is in the form
    // close_connection accepts (the JSON formatter prints a form it does not).
    let out = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--quiet",
            "--no-table-headers",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl list_connections failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((pid, props)) = line.split_once('\t') else {
            continue;
        };
        if props.contains(&format!("\"{name}\"")) {
            let st = Command::new("rabbitmqctl")
                .args([
                    "close_connection",
                    pid.trim(),
                    "closed by a meetbot fault test",
                    "--quiet",
                ])
                .status()?;
            if st.success() {
                closed += 1;
            }
        }
    }
    Ok(closed)
}

/// Bearer tokens a calendar stand-in accepts: its fixed test token, tokens accepted one by one,
/// and (when set) any token a real OAuth provider says is active.
#[derive(Clone, Default)]
pub(crate) struct Bearer {
    pub(crate) tokens: Vec<String>,
    pub(crate) introspector: Option<oidc::Introspector>,
}

impl Bearer {
    /// Whether `headers` carry `Authorization: Bearer T` with an accepted T (call without locks
    /// held: introspection is a request).
    pub(crate) async fn allows(self, fixed: &str, headers: &axum::http::HeaderMap) -> bool {
        let Some(t) = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        if t == fixed || self.tokens.iter().any(|x| x == t) {
            return true;
        }
        match self.introspector {
            Some(i) => i.active(t).await,
            None => false,
        }
    }
}

/// Serves `app` on a free 127.0.0.1 port until the returned task is dropped with its owner.
pub async fn serve_on_loopback(
    app: axum::Router,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port for a stand-in");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

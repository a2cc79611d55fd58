//! Delivery peers: a real SMTP server (npm `maildev` 3, SMTP in, received mail as JSON at
//! `/api/email`), a stand-in for Slack's Web API `chat.postMessage` that answers as scripted
//! (429 with Retry-After, 500, `ok: false` errors) and records what it accepted, and a webhook
//! receiver that checks signatures.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use meetbot_delivery::webhook;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Real maildev on 127.0.0.1, stopped (by PID) when dropped; its mail kept in a temporary
/// directory so a restart keeps what it received.
pub struct MailDev {
    pub smtp_port: u16,
    pub web_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pkg: PathBuf,
}

impl MailDev {
    pub async fn start() -> anyhow::Result<MailDev> {
        let pkg = crate::oidc::npm_package("maildev", "node_modules/maildev/package.json")?;
        let mut m = MailDev {
            smtp_port: free_port(),
            web_port: free_port(),
            dir: tempfile::tempdir()?,
            child: None,
            pkg,
        };
        m.run().await?;
        Ok(m)
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let child = Command::new(crate::oidc::node())
            .arg(self.pkg.join("node_modules/maildev/dist/bin/maildev.js"))
            .args(["--smtp", &self.smtp_port.to_string()])
            .args(["--web", &self.web_port.to_string()])
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1"])
            .arg("--mail-directory")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start maildev: {e}"))?;
        self.child = Some(child);
        for _ in 0..100 {
            let smtp = tokio::net::TcpStream::connect(("127.0.0.1", self.smtp_port)).await;
            if smtp.is_ok() && self.emails().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("maildev did not start on 127.0.0.1:{}", self.smtp_port)
    }

    /// Stops the server (its mail stays in its directory).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.run().await
    }

    /// Every email it holds (maildev's JSON: `headers`, `subject`, `text`, `html`, `envelope`).
    pub async fn emails(&self) -> anyhow::Result<Vec<Value>> {
        Ok(
            reqwest::get(format!("http://127.0.0.1:{}/api/email", self.web_port))
                .await?
                .error_for_status()?
                .json()
                .await?,
        )
    }
}

impl Drop for MailDev {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One scripted answer of the Slack stand-in.
#[derive(Clone, Debug)]
pub enum SlackAnswer {
    /// HTTP 429 with `Retry-After: <secs>`.
    RateLimited(u64),
    ServerError,
    /// `200 {"ok": false, "error": <code>}`.
    Error(&'static str),
}

#[derive(Default)]
struct SlackState {
    script: VecDeque<SlackAnswer>,
    accepted: Vec<Value>,
    refused: u32,
}

/// Slack Web API stand-in: `POST /api/chat.postMessage` (JSON body, `Authorization: Bearer`),
/// answering from its script first, then `{"ok": true, "ts": ...}`.
pub struct SlackStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<SlackState>>,
    token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlackStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn post_message(
    State((state, token)): State<(Arc<Mutex<SlackState>>, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {token}"))
    {
        s.refused += 1;
        return axum::Json(serde_json::json!({"ok": false, "error": "invalid_auth"}))
            .into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return axum::Json(serde_json::json!({"ok": false, "error": "invalid_json"}))
            .into_response();
    };
    if v["channel"].as_str().is_none_or(str::is_empty) {
        return axum::Json(serde_json::json!({"ok": false, "error": "channel_not_found"}))
            .into_response();
    }
    match s.script.pop_front() {
        Some(SlackAnswer::RateLimited(secs)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "",
        )
            .into_response(),
        Some(SlackAnswer::ServerError) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Some(SlackAnswer::Error(code)) => {
            axum::Json(serde_json::json!({"ok": false, "error": code})).into_response()
        }
        None => {
            let n = s.accepted.len();
            s.accepted.push(v.clone());
            axum::Json(serde_json::json!({
                "ok": true,
                "channel": v["channel"],
                "ts": format!("1700000000.{n:06}"),
            }))
            .into_response()
        }
    }
}

impl SlackStandIn {
    pub async fn start(token: &str) -> SlackStandIn {
        let state: Arc<Mutex<SlackState>> = Arc::default();
        let app = axum::Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .with_state((state.clone(), token.to_string()));
        let (addr, task) = crate::serve_on_loopback(app).await;
        SlackStandIn {
            addr,
            state,
            token: token.into(),
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Answers to give (in order) before accepting again.
    pub fn script(&self, answers: impl IntoIterator<Item = SlackAnswer>) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .script
            .extend(answers);
    }

    /// The request bodies it accepted.
    pub fn accepted(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accepted
            .clone()
    }
}

/// What the webhook receiver got: (signature valid, idempotency key, JSON body).
pub type Received = (bool, String, Value);

/// A webhook endpoint checking `X-Meetbot-Signature` with `secret` as a receiver would
/// (`meetbot_delivery::webhook::verify`, timestamps within 5 minutes); it answers 500 to the
/// first `fail_first` requests.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    secret: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookReceiver {
    pub async fn start(secret: &str, fail_first: u32) -> WebhookReceiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fails = Arc::new(Mutex::new(fail_first));
        let secret = Arc::new(Mutex::new(secret.to_string()));
        let (g, shared) = (got.clone(), secret.clone());
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (g, fails) = (g.clone(), fails.clone());
                let secret = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
                async move {
                    {
                        let mut f = fails.lock().unwrap_or_else(|p| p.into_inner());
                        if *f > 0 {
                            *f -= 1;
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        }
                    }
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let ts = h(webhook::TIMESTAMP_HEADER).parse::<i64>().unwrap_or(0);
                    let ok = webhook::verify(
                        &secret,
                        ts,
                        &body,
                        &h(webhook::SIGNATURE_HEADER),
                        chrono::Utc::now().timestamp(),
                        Duration::from_secs(300),
                    );
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    g.lock().unwrap_or_else(|p| p.into_inner()).push((
                        ok,
                        h(webhook::IDEMPOTENCY_HEADER),
                        v,
                    ));
                    if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    }
                }
            }),
        );
        let (addr, task) = crate::serve_on_loopback(app).await;
        WebhookReceiver {
            addr,
            got,
            secret,
            task,
        }
    }

    /// Verifies from now on with `secret` (the one a tenant was just given).
    pub fn set_secret(&self, secret: &str) {
        *self.secret.lock().unwrap_or_else(|p| p.into_inner()) = secret.to_string();
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

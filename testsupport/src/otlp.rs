//! A real OpenTelemetry backend for trace tests: Arize Phoenix (PyPI `arize-phoenix`, Elastic
//! License 2.0; installed by scripts/test.sh in its own venv, `MEETBOT_TEST_PHOENIX` names its
//! `phoenix` program). It takes OTLP over HTTP at `/v1/traces` and answers what it stored on its
//! REST API (`/v1/projects/default/spans`).
//!
//! Start it inside the test's network namespace ([`crate::janus::in_netns`]): its gRPC
//! receiver binds every interface of the namespace, and nothing it might try to reach beyond
//! loopback exists there. Its own usage telemetry is switched off.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Phoenix {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The `phoenix` program: `MEETBOT_TEST_PHOENIX`, else scripts/test.sh's venv.
pub fn program() -> PathBuf {
    std::env::var("MEETBOT_TEST_PHOENIX")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::workspace_root().join("target/test-env/phoenix/bin/phoenix"))
}

impl Phoenix {
    /// Starts Phoenix on free loopback ports; [`Phoenix::ready`] waits until it answers.
    pub fn start() -> Self {
        let program = program();
        assert!(
            program.exists(),
            "Phoenix is not installed at {} (bash scripts/test.sh --setup-only installs it)",
            program.display()
        );
        let dir = tempfile::tempdir().expect("a working directory for Phoenix");
        let port = crate::free_port();
        let child = Command::new(&program)
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", dir.path())
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", port.to_string())
            .env("PHOENIX_GRPC_PORT", crate::free_port().to_string())
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Phoenix {
            child,
            port,
            _dir: dir,
        }
    }

    /// Waits (up to 90 s: it is a large Python program) until Phoenix's REST API answers.
    pub async fn ready(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..360 {
            if let Ok(r) = client
                .get(format!("{}/v1/projects", self.url()))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("Phoenix exited at start ({st})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "Phoenix did not answer on 127.0.0.1:{} within 90 s",
            self.port
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What `telemetry.otlp_endpoint` is set to (the exporter adds `/v1/traces`).
    pub fn otlp_endpoint(&self) -> String {
        self.url()
    }

    /// Every span Phoenix stored, as its REST API gives them (`context.trace_id`, `name`,
    /// `attributes`, `parent_id`, ...), all pages.
    pub async fn spans(&self) -> Vec<Value> {
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            // (Phoenix's cursors are base64 ids: URL-safe apart from '=', escaped here.)
            let url = match &cursor {
                Some(c) => format!(
                    "{}/v1/projects/default/spans?limit=1000&cursor={}",
                    self.url(),
                    c.replace('=', "%3D")
                        .replace('+', "%2B")
                        .replace('/', "%2F")
                ),
                None => format!("{}/v1/projects/default/spans?limit=1000", self.url()),
            };
            let page: Value = match client.get(url).send().await {
                Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
                _ => return out,
            };
            out.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The ops server every service runs: `/healthz` (the process is alive), `/readyz` (every
//! dependency answered its check just now) and `/metrics` (Prometheus text format).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A named readiness check: `Ok` when the dependency answers.
pub struct ReadinessCheck {
    pub name: String,
    pub check: Box<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        ReadinessCheck {
            name: name.into(),
            check: Box::new(move || Box::pin(f())),
        }
    }
}

/// What the ops server serves.
#[derive(Clone)]
pub struct Ops {
    service: String,
    registry: Arc<Mutex<Registry>>,
    checks: Arc<Vec<ReadinessCheck>>,
}

impl Ops {
    pub fn new(
        service: impl Into<String>,
        registry: Registry,
        checks: Vec<ReadinessCheck>,
    ) -> Self {
        Ops {
            service: service.into(),
            registry: Arc::new(Mutex::new(registry)),
            checks: Arc::new(checks),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Binds `addr` and serves until `shutdown` resolves. Returns the bound address via `bound`.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen for the ops server on {addr}: {e}"),
            )
        })?;
        let local = listener.local_addr()?;
        let app = self.router();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        Ok((local, handle))
    }
}

async fn healthz(State(ops): State<Ops>) -> impl IntoResponse {
    (StatusCode::OK, format!("ok {}\n", ops.service))
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let mut body = String::new();
    let mut ready = true;
    for c in ops.checks.iter() {
        let r = tokio::time::timeout(Duration::from_secs(5), (c.check)())
            .await
            .unwrap_or_else(|_| Err("timed out after 5 s".into()));
        match r {
            Ok(()) => body.push_str(&format!("ok {}\n", c.name)),
            Err(e) => {
                ready = false;
                body.push_str(&format!("FAIL {}: {}\n", c.name, e));
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    let mut out = String::new();
    let encoded = {
        let reg = ops.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &reg)
    };
    match encoded {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response(),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let status = buf[9..12].parse().unwrap();
        (status, buf)
    }

    #[tokio::test]
    async fn readyz_fails_with_the_failing_dependency_named_and_metrics_are_prometheus_text() {
        let mut reg = Registry::default();
        let c: Counter = Counter::default();
        reg.register("meetbot_test_events", "events seen", c.clone());
        c.inc();
        let ops = Ops::new(
            "test",
            reg,
            vec![
                ReadinessCheck::new("store", || async { Ok(()) }),
                ReadinessCheck::new("rabbitmq", || async {
                    Err("connection refused".to_string())
                }),
            ],
        );
        let (addr, _h) = ops
            .serve("127.0.0.1:0".parse().unwrap(), std::future::pending())
            .await
            .unwrap();
        let (s, _) = get(addr, "/healthz").await;
        assert_eq!(s, 200);
        let (s, body) = get(addr, "/readyz").await;
        assert_eq!(s, 503);
        assert!(
            body.contains("ok store") && body.contains("FAIL rabbitmq: connection refused"),
            "{body}"
        );
        let (s, body) = get(addr, "/metrics").await;
        assert_eq!(s, 200);
        assert!(body.contains("meetbot_test_events_total 1"), "{body}");
    }
}

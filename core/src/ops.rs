//! The ops server every service runs: `/healthz` (the process is alive), `/readyz` (every
//! dependency answered its check just now) and `/metrics` (Prometheus text format); and the
//! process's stop ([`Shutdown`]): one signal fanned out to every part, and a bound on how long
//! stopping may take.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

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

/// Exit code of a service that did not stop within `ops.shutdown_grace_seconds` of its stop
/// signal, or was told to stop a second time (decision 0040).
pub const EXIT_NOT_STOPPED: u8 = 5;

/// One stop for a whole process, fanned out to every part of it.
///
/// Given once (SIGTERM, SIGINT, or [`Shutdown::trigger`]) and seen by every waiter, whether it
/// began waiting before or after: a part started after the signal stops at once instead of
/// waiting for a change that already happened. Parts name themselves while they run
/// ([`Shutdown::part`], [`Shutdown::track`]), so a process that overruns its grace can say
/// which part did not stop ([`Shutdown::finish`]).
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    /// Whether the stop was given.
    stopping: watch::Sender<bool>,
    /// How often it was given (a second Ctrl-C means "now").
    told: watch::Sender<u32>,
    why: Mutex<Option<String>>,
    parts: Mutex<BTreeMap<u64, String>>,
    next: AtomicU64,
}

/// A part of the process that is running; dropping it says the part stopped.
#[must_use = "the part counts as running only while this guard lives"]
pub struct Part {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Part {
    fn drop(&mut self) {
        lock(&self.inner.parts).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stop was given and the work did not end in time.
#[derive(Debug, thiserror::Error)]
pub enum NotStopped {
    #[error(
        "did not stop within {} s of {why} (ops.shutdown_grace_seconds); still running: {}; exiting anyway (raise the grace if this work needs longer)",
        grace.as_secs_f64(),
        list(running)
    )]
    Grace {
        grace: Duration,
        why: String,
        running: Vec<String>,
    },
    #[error(
        "told to stop again {:.1} s after {why}; exiting without waiting for: {}",
        after.as_secs_f64(),
        list(running)
    )]
    Again {
        after: Duration,
        why: String,
        running: Vec<String>,
    },
}

fn list(running: &[String]) -> String {
    if running.is_empty() {
        "its start-up".into()
    } else {
        running.join(", ")
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A stop given only by [`Shutdown::trigger`].
    pub fn new() -> Self {
        Shutdown {
            inner: Arc::new(Inner {
                stopping: watch::channel(false).0,
                told: watch::channel(0).0,
                why: Mutex::new(None),
                parts: Mutex::new(BTreeMap::new()),
                next: AtomicU64::new(0),
            }),
        }
    }

    /// A stop given by SIGTERM or SIGINT (every time: the second one counts too). The handlers
    /// are in place when this returns, so from then on neither signal kills the process
    /// outright. Must be called inside a Tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let stop = Self::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let s = stop.clone();
        tokio::spawn(async move {
            loop {
                let why = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = int.recv() => "SIGINT",
                    else => return,
                };
                s.trigger(why);
            }
        });
        Ok(stop)
    }

    /// Gives the stop (`why` names what gave it, for the messages). A second call counts as
    /// being told again.
    pub fn trigger(&self, why: &str) {
        lock(&self.inner.why).get_or_insert_with(|| why.to_string());
        self.inner.told.send_modify(|n| *n += 1);
        self.inner.stopping.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    /// What gave the stop ("SIGTERM", "SIGINT", ...), once given.
    pub fn why(&self) -> Option<String> {
        lock(&self.inner.why).clone()
    }

    /// Resolves once the stop is given (at once if it already was).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.inner.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Resolves once the stop is given a second time.
    fn told_again(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.inner.told.subscribe();
        async move {
            let _ = rx.wait_for(|n| *n > 1).await;
        }
    }

    /// The stop as a watch receiver for code that waits with `changed()`: it sees the change
    /// even when the stop was given before this call.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        let mut rx = self.inner.stopping.subscribe();
        if *rx.borrow() {
            rx.mark_changed();
        }
        rx
    }

    /// Names a running part until the guard is dropped.
    pub fn part(&self, name: impl Into<String>) -> Part {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.parts).insert(id, name.into());
        Part {
            inner: self.inner.clone(),
            id,
        }
    }

    /// `work`, named `name` from now until it ends (or is dropped).
    pub fn track<N: Into<String>, F: Future>(
        &self,
        name: N,
        work: F,
    ) -> impl Future<Output = F::Output> + use<N, F> {
        let part = self.part(name);
        async move {
            let out = work.await;
            drop(part);
            out
        }
    }

    /// The parts running now, in the order they started.
    pub fn running(&self) -> Vec<String> {
        lock(&self.inner.parts).values().cloned().collect()
    }

    /// Runs `work` to its end; once the stop is given it has `grace` to end, and none if the
    /// stop is given again. Otherwise says what was still running.
    pub async fn finish<F: Future>(
        &self,
        work: F,
        grace: Duration,
    ) -> Result<F::Output, NotStopped> {
        tokio::pin!(work);
        tokio::select! {
            r = &mut work => return Ok(r),
            _ = self.stopped() => {}
        }
        let since = tokio::time::Instant::now();
        let why = || self.why().unwrap_or_else(|| "the stop".into());
        tokio::select! {
            biased;
            r = &mut work => Ok(r),
            _ = self.told_again() => Err(NotStopped::Again {
                after: since.elapsed(),
                why: why(),
                running: self.running(),
            }),
            _ = tokio::time::sleep(grace) => Err(NotStopped::Grace {
                grace,
                why: why(),
                running: self.running(),
            }),
        }
    }
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
    async fn a_stop_given_before_a_part_starts_waiting_is_seen_by_that_part() {
        let stop = Shutdown::new();
        let early = stop.stopped();
        let mut early_rx = stop.receiver();
        stop.trigger("SIGTERM");
        let mut late_rx = stop.receiver();
        let within = Duration::from_secs(1);
        tokio::time::timeout(within, early)
            .await
            .expect("an earlier waiter");
        tokio::time::timeout(within, stop.stopped())
            .await
            .expect("a later waiter");
        tokio::time::timeout(within, early_rx.changed())
            .await
            .expect("an earlier receiver")
            .unwrap();
        tokio::time::timeout(within, late_rx.changed())
            .await
            .expect("a receiver made after the stop")
            .unwrap();
        assert_eq!(stop.why().as_deref(), Some("SIGTERM"));
    }

    #[tokio::test]
    async fn work_that_stops_within_the_grace_finishes_and_parts_leave_the_list_when_they_end() {
        let stop = Shutdown::new();
        let s = stop.clone();
        let work = stop.track("scheduler", async move {
            s.stopped().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            7
        });
        assert_eq!(stop.running(), vec!["scheduler".to_string()]);
        let trigger = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.trigger("SIGINT");
        });
        let r = stop.finish(work, Duration::from_secs(5)).await;
        assert_eq!(r.unwrap(), 7);
        assert!(stop.running().is_empty(), "{:?}", stop.running());
    }

    #[tokio::test]
    async fn work_that_overruns_the_grace_is_given_up_and_the_part_that_did_not_stop_is_named() {
        let stop = Shutdown::new();
        let _api = stop.part("API");
        let stuck = stop.track("transcriber server", std::future::pending::<()>());
        stop.trigger("SIGTERM");
        let started = std::time::Instant::now();
        let err = stop
            .finish(stuck, Duration::from_millis(300))
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("did not stop within 0.3 s of SIGTERM")
                && msg.contains("still running: API, transcriber server"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_second_stop_gives_up_at_once() {
        let stop = Shutdown::new();
        stop.trigger("SIGINT");
        let again = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            again.trigger("SIGINT");
        });
        let started = std::time::Instant::now();
        let err = stop
            .finish(std::future::pending::<()>(), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, NotStopped::Again { .. }), "{err}");
        assert!(err.to_string().contains("its start-up"), "{err}");
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

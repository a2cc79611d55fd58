//! The launcher's control endpoint for its bots (decision 0032). A bot holds no store
//! credentials: it reports its lifecycle here and asks here whether to leave, with the control
//! token of its ticket ([`crate::ticket`]).
//!
//! - `GET  /v1/bots/{tenant}/{job}`: `{"state": "...", "leave": bool}`;
//! - `POST /v1/bots/{tenant}/{job}/events`: a bot event (`{"kind":"in_call"}`, `{"kind":"done"}`,
//!   `{"kind":"failed","reason":"..."}`, ...): `in_call` moves the job to `joined`, `done` to
//!   `done`, `failed` to `failed` (compare-and-set; a job that moved on, e.g. stopped by a person,
//!   stays as it is), and the event is published on the broker where there is one.
//!
//! Every request needs `Authorization: Bearer <control token>`, checked against the SHA-256 the
//! job's current ticket record keeps (constant time) and its expiry; any replica can check it, and
//! a relaunch's new ticket revokes the old bot's token. A wrong token, another job's token, an
//! expired or revoked one and an unknown job all get the same 401, so the endpoint is no oracle.

use crate::ticket::control_digest;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use meetbot_core::TenantId;
use meetbot_core::model::{BotJob, BotJobState};
use meetbot_queue::{BotEvent, EventKind, JobQueue};
use meetbot_scheduler::jobs::{live, transition};
use meetbot_store::{Store, StoreError};
use std::sync::Arc;

/// Requests the control endpoint serves at once.
pub const MAX_IN_FLIGHT: usize = 32;

/// Reasons longer than this are cut (they are stored in the job's history).
const MAX_REASON_CHARS: usize = 500;

/// When each job's bot last reached this endpoint with its current token: how a launcher that
/// restarted tells a bot an earlier launcher started (still asking every second) from a lost
/// one ([`crate::consumer`]).
#[derive(Clone, Default)]
pub struct Heartbeats(Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>);

impl Heartbeats {
    /// Records that `job`'s bot reached the endpoint now.
    pub fn seen(&self, job: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded by the jobs that reach it; entries older than an hour are dropped.
        if m.len() > 10_000 {
            m.retain(|_, at| at.elapsed() < std::time::Duration::from_secs(3600));
        }
        m.insert(job.to_string(), std::time::Instant::now());
    }

    /// When `job`'s bot was last heard from.
    pub fn last(&self, job: &str) -> Option<std::time::Instant> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(job)
            .copied()
    }
}

#[derive(Clone)]
pub struct Control {
    store: Arc<dyn Store>,
    queue: Option<Arc<dyn JobQueue>>,
    in_flight: Arc<tokio::sync::Semaphore>,
    heartbeats: Heartbeats,
}

impl Control {
    pub fn new(store: Arc<dyn Store>, queue: Option<Arc<dyn JobQueue>>) -> Self {
        Control {
            store,
            queue,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            heartbeats: Heartbeats::default(),
        }
    }

    /// Records each authorised request in `heartbeats` (shared with the launch consumer).
    pub fn with_heartbeats(mut self, heartbeats: Heartbeats) -> Self {
        self.heartbeats = heartbeats;
        self
    }

    /// The routes, with a 4 KiB body limit and at most [`MAX_IN_FLIGHT`] requests served at
    /// once (more wait), so a bot flooding its launcher cannot take the store with it.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/v1/bots/{tenant}/{job}", get(status))
            .route("/v1/bots/{tenant}/{job}/events", post(event))
            .layer(DefaultBodyLimit::max(4096))
            .with_state(self)
    }
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "this bot's control token is required and must be its job's current one",
    )
        .into_response()
}

fn unavailable(e: StoreError) -> Response {
    tracing::warn!(error = %e, "bot control: store unreadable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "job state unreadable; try again",
    )
        .into_response()
}

/// The job, when `headers` carry its current ticket's control token.
async fn authorized(
    c: &Control,
    headers: &HeaderMap,
    tenant: &str,
    job: &str,
) -> Result<(TenantId, BotJob), Response> {
    let Some(token) = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return Err(refused());
    };
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return Err(refused());
    };
    let j = match c.store.get_bot_job(&tenant, job).await {
        Ok(Some(j)) => j.value,
        Ok(None) | Err(StoreError::UnknownTenant(_)) => return Err(refused()),
        Err(e) => return Err(unavailable(e)),
    };
    let Some(rec) = &j.ticket else {
        return Err(refused());
    };
    let ok = aws_lc_rs::constant_time::verify_slices_are_equal(
        control_digest(token).as_bytes(),
        rec.control_sha256.as_bytes(),
    )
    .is_ok();
    if !ok || rec.expires_at <= Utc::now() {
        return Err(refused());
    }
    c.heartbeats.seen(job);
    Ok((tenant, j))
}

async fn status(
    State(c): State<Control>,
    Path((tenant, job)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Ok(_permit) = c.in_flight.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let (tenant, j) = match authorized(&c, &headers, &tenant, &job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let meeting_stopped =
        match meetbot_scheduler::stop::meeting_stopped(&*c.store, &tenant, &j.meeting_id).await {
            Ok(s) => s.is_some(),
            Err(e) => return unavailable(e),
        };
    let leave = meeting_stopped || !matches!(j.state, BotJobState::Launched | BotJobState::Joined);
    Json(crate::ticket::ControlStatus {
        state: j.state.name().to_string(),
        leave,
    })
    .into_response()
}

async fn event(
    State(c): State<Control>,
    Path((tenant, job)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(_permit) = c.in_flight.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let (tenant, j) = match authorized(&c, &headers, &tenant, &job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let kind: EventKind = match serde_json::from_slice(&body) {
        Ok(k) => k,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a bot event ({e}); send {{\"kind\": \"in_call\"}} and the like"),
            )
                .into_response();
        }
    };
    // A job that is over takes no more reports (a bot looping its events after the end).
    if !live(&j.state) {
        return (
            StatusCode::CONFLICT,
            "the job is over: it takes no more reports; leave",
        )
            .into_response();
    }
    let kind = match kind {
        EventKind::Queued | EventKind::Withdrawn(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "a bot reports joining, waiting_room, in_call, recording, leaving, done or failed",
            )
                .into_response();
        }
        EventKind::Failed(r) => EventKind::Failed(clean_reason(&r)),
        k => k,
    };
    let to = match &kind {
        EventKind::InCall => Some(BotJobState::Joined),
        EventKind::Done => Some(BotJobState::Done),
        EventKind::Failed(r) => Some(BotJobState::Failed(r.clone())),
        _ => None,
    };
    if let Some(to) = to
        && let Err(e) = set_state(&*c.store, &tenant, &j.id, to).await
    {
        return unavailable(e);
    }
    if let Some(q) = &c.queue {
        let ev = BotEvent::new(tenant.clone(), j.id.clone(), j.meeting_id.clone(), kind);
        if let Err(e) = q.publish_event(&ev).await {
            tracing::warn!(job = %j.id, error = %e, "bot event not published");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// A bot's failure reason as it may be stored, shown and logged: no control or bidirectional
/// formatting characters (which could forge lines or reorder text where it is shown), at most
/// [`MAX_REASON_CHARS`].
fn clean_reason(r: &str) -> String {
    r.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
            if c.is_control() || bidi { ' ' } else { c }
        })
        .take(MAX_REASON_CHARS)
        .collect()
}

/// Moves the job to `to` (compare-and-set, retried on conflict; a job that cannot make that
/// move, e.g. one a person stopped, is left as it is). The one way the launcher side moves a
/// job: the consumer's failures and the bots' reports.
pub async fn set_state(
    store: &dyn Store,
    t: &TenantId,
    job_id: &str,
    to: BotJobState,
) -> Result<(), StoreError> {
    loop {
        let Some(cur) = store.get_bot_job(t, job_id).await? else {
            return Ok(());
        };
        let mut j = cur.value.clone();
        if transition(&mut j, to.clone(), Utc::now()).is_err() {
            return Ok(());
        }
        match store.update_bot_job(t, &j, cur.version).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Serves the control endpoint on `listener` until `shutdown` resolves: over TLS (rustls,
/// aws-lc-rs) with `tls`, else plain HTTP (loopback, `meetbot dev`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Control,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, control.router())
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let handle = axum_server::Handle::new();
    let on_stop = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_stop.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    axum_server::from_tcp_rustls(
        listener.into_std()?,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )?
    .handle(handle)
    .serve(control.router().into_make_service())
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_reason_cannot_forge_lines_or_reorder_text_and_is_cut() {
        let r = clean_reason("left\n2026-12-06 INFO job done\u{202E}gnp.exe\u{0007}");
        assert!(
            !r.contains('\n') && !r.contains('\u{202E}') && !r.contains('\u{0007}'),
            "{r:?}"
        );
        assert!(r.starts_with("left 2026-12-06 INFO job done"));
        assert_eq!(
            clean_reason(&"x".repeat(10_000)).chars().count(),
            MAX_REASON_CHARS
        );
    }
}

//! The REST API customers and their teams use (`meetbot api`).
//!
//! * [`router`] builds the axum app: request ids, per-address rate limits, a body size limit,
//!   JSON errors for everything (also unknown routes and bad methods), and the routes in
//!   [`routes`], described by the OpenAPI document served at `/v1/openapi.json` ([`openapi`]).
//! * [`auth`]: session tokens and API keys -> [`auth::Caller`] (tenant, role, scopes).
//! * [`oidc`]: sign-in with OpenID Connect (Google, Microsoft, any conforming provider).
//! * Everything a caller reads comes from their own tenant's database; an id from another tenant
//!   is simply not found there (404, never 403, so nothing leaks about other tenants).

pub mod auth;
pub mod error;
pub mod export;
pub mod limits;
pub mod oidc;
pub mod openapi;
pub mod person;
pub mod routes;
pub mod signin_link;
mod totp;

use crate::error::{ApiError, REQUEST_ID};
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use meetbot_calendar_sync::worker::SyncWorker;
use meetbot_store::vault::Tenants;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the API needs to know about its deployment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub public_url: String,
    pub session_idle: chrono::Duration,
    pub session_max: chrono::Duration,
    pub body_limit: usize,
    pub cookie_secure: bool,
    /// Speech engines tenants may choose (`transcriber.offered_engines`).
    pub speech_engines: Vec<String>,
    /// How long an export and its download link live.
    pub export_ttl: chrono::Duration,
    /// The largest export archive (compressed bytes): an export's memory bound.
    pub export_max_bytes: usize,
    /// How long an export's one-per-tenant lease lasts unrenewed (renewed every third of it
    /// while the export runs; frees the tenant this long after a process died mid-export).
    pub export_lease_ttl: std::time::Duration,
    /// The transcriber's transcript retention when a tenant sets none
    /// (`transcriber.transcript_retention_days`; None: kept until deleted).
    pub default_transcript_days: Option<u32>,
}

impl Settings {
    pub fn from_config(c: &meetbot_core::config::Config) -> Self {
        let speech_engines = c.transcriber.offered_engines.keys().cloned().collect();
        let default_transcript_days = (c.transcriber.transcript_retention_days > 0)
            .then_some(c.transcriber.transcript_retention_days);
        let c = &c.api;
        Settings {
            speech_engines,
            default_transcript_days,
            export_ttl: chrono::Duration::hours(24),
            export_max_bytes: crate::export::DEFAULT_MAX_EXPORT_BYTES,
            export_lease_ttl: crate::export::LEASE_TTL,
            public_url: c.public_url.trim_end_matches('/').to_string(),
            session_idle: chrono::Duration::seconds(c.session_idle_seconds as i64),
            session_max: chrono::Duration::seconds(c.session_max_seconds as i64),
            body_limit: c.body_limit_bytes,
            cookie_secure: c.cookie_secure,
        }
    }
}

pub struct Api {
    pub tenants: Arc<Tenants>,
    pub settings: Settings,
    pub oidc: oidc::Oidc,
    pub limits: limits::Limits,
    /// Calendar connect and disconnect (the calendar-sync OAuth flow); `None`: not offered.
    pub calendars: Option<Arc<SyncWorker>>,
    /// Where stopping a bot is announced to launchers (`withdrawn` events). `None`: bots still
    /// find their job stopped at their next look (every second).
    pub queue: Option<Arc<dyn meetbot_queue::JobQueue>>,
    /// One-time sign-in links (`meetbot dev` makes one for its demo owner). `None`: links are
    /// not offered (every deployment but `meetbot dev`).
    pub sign_in_links: Option<signin_link::SignInLinks>,
}

pub type AppState = Arc<Api>;

/// The whole API as an axum app. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so the per-address limit sees clients.
pub fn router(api: AppState) -> Router {
    app(api, Router::new())
}

/// The API with `extra` routes (the web app) served beside it, under the same limits, request
/// ids and no-store headers.
pub fn app(api: AppState, extra: Router<AppState>) -> Router {
    let body_limit = api.settings.body_limit;
    routes::routes()
        .merge(extra)
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                ApiError::BadRequest("this route does not take that method".into()),
            )
                .into_response()
        })
        .layer(middleware::from_fn_with_state(api.clone(), rate_limit))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |req, next| {
            request_id(req, next, body_limit)
        }))
        .layer(middleware::from_fn(no_store))
        .with_state(api)
}

/// Every answer of this API is personal data or carries a credential (a session token at
/// sign-in, an API key, an export link, a webhook secret or TOTP secret shown once): no cache,
/// shared or private, may keep it, and no browser may sniff it into another type.
async fn no_store(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    resp
}

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| s.to_string())
}

/// Gives every request an id (the client's `x-request-id` if sane, else a new UUIDv7), runs it
/// with that id in scope for error bodies, and echoes it in the response.
async fn request_id(req: Request, next: Next, body_limit: usize) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(valid_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    // Rejections made below our handlers (the body limit) become our error body too.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE
        && resp.headers().get("content-type").map(|v| v.as_bytes()) != Some(b"application/json")
    {
        resp = REQUEST_ID
            .scope(id.clone(), async {
                ApiError::TooLarge(body_limit).into_response()
            })
            .await;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn rate_limit(State(api): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        let ip = api.limits.client_ip(addr.ip(), req.headers());
        if let Err(e) = api.limits.ip(ip) {
            return e.into_response();
        }
        req.extensions_mut().insert(limits::ClientIp(ip));
    }
    next.run(req).await
}

/// Serves the API on `listener` until `stop` resolves.
pub async fn serve(
    api: AppState,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(api.clone());
    serve_app(api, app, listener, stop).await
}

/// Told to long-lived responses (live transcripts) when the server begins to stop, so that
/// they end and the graceful shutdown does not wait on them.
#[derive(Clone)]
pub struct Stopping(pub tokio::sync::watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the server is stopping.
    pub async fn stopped(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// Serves `app` (built by [`app`] or [`router`] over `api`) on `listener` until `stop`
/// resolves; open live streams are ended first.
pub async fn serve_app(
    api: AppState,
    app: Router,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let app = app.layer(axum::Extension(Stopping(stopping_rx)));
    let stop = async move {
        stop.await;
        let _ = stopping_tx.send(true);
    };
    let sweeper = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                api.limits.sweep();
            }
        })
    };
    let r = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await;
    sweeper.abort();
    r
}

//! The push webhooks: Microsoft Graph change notifications and Google channel notifications.
//!
//! * `POST ...?validationToken=X` (subscription creation and lifecycle validation): answers 200
//!   `text/plain` with X, as Graph requires within 10 s.
//! * `POST` with `{"value": [notification, ...]}`: each notification's `clientState` is checked
//!   in constant time against the sealed secret of the subscription's connection; accepted ones
//!   become sync triggers (a `lifecycleEvent` becomes a renewal or resubscription). Answers 202 at
//!   once; unknown subscriptions and wrong secrets are counted and dropped, not retried.
//! * Google: headers name the channel and carry its token, checked the same way; answers 200.

use crate::worker::{SubscriptionIndex, Trigger};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use meetbot_core::model::CalendarConnection;
use meetbot_store::vault::Tenants;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

#[derive(Default)]
pub struct WebhookCounters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub unknown: AtomicU64,
}

#[derive(Clone)]
pub struct WebhookState {
    pub tenants: Arc<Tenants>,
    pub index: SubscriptionIndex,
    pub triggers: mpsc::Sender<Trigger>,
    pub counters: Arc<WebhookCounters>,
}

/// Routes: `/webhooks/microsoft` (notifications), `/webhooks/microsoft/lifecycle`, `/webhooks/google`.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/webhooks/microsoft", post(notify))
        .route("/webhooks/microsoft/lifecycle", post(notify))
        .route("/webhooks/google", post(google_notify))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

/// The longest `validationToken` echoed (Graph's are well under this).
pub const MAX_VALIDATION_TOKEN: usize = 1024;

async fn notify(
    State(st): State<WebhookState>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(token) = q.get("validationToken") {
        // Echoed to whoever asks: only as plain text a browser will not sniff into HTML or
        // script, and only of the size Graph's tokens have.
        if token.len() > MAX_VALIDATION_TOKEN {
            return (
                StatusCode::BAD_REQUEST,
                [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
                "validationToken is too long",
            )
                .into_response();
        }
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; sandbox",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            token.clone(),
        )
            .into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let Some(items) = v.get("value").and_then(Value::as_array) else {
        return (StatusCode::BAD_REQUEST, "body has no `value` array").into_response();
    };
    for it in items {
        if let Some(trigger) = check(&st, it).await {
            st.counters.accepted.fetch_add(1, Ordering::Relaxed);
            if st.triggers.try_send(trigger).is_err() {
                // The worker is busy; its next poll will sync anyway.
                tracing::warn!("sync trigger dropped: worker queue full");
            }
        }
    }
    StatusCode::ACCEPTED.into_response()
}

/// The trigger for one Graph notification, if it is genuine.
async fn check(st: &WebhookState, it: &Value) -> Option<Trigger> {
    let sub = it.get("subscriptionId").and_then(Value::as_str)?;
    let given = it.get("clientState").and_then(Value::as_str).unwrap_or("");
    let (tenant, connection) = verify(st, sub, given).await?;
    Some(match it.get("lifecycleEvent").and_then(Value::as_str) {
        Some("reauthorizationRequired") => Trigger::Renew { tenant, connection },
        Some("subscriptionRemoved") => Trigger::Resubscribe { tenant, connection },
        _ => Trigger::Sync { tenant, connection },
    })
}

/// The connection a push channel belongs to, if `given` is that channel's secret (compared in
/// constant time). Unknown channels and wrong secrets are counted.
async fn verify(
    st: &WebhookState,
    channel: &str,
    given: &str,
) -> Option<(meetbot_core::TenantId, String)> {
    let Some((tenant, connection)) = st.index.read().await.get(channel).cloned() else {
        st.counters.unknown.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let conn = st
        .tenants
        .store()
        .get_connection(&tenant, &connection)
        .await
        .ok()??;
    let push = conn.push.as_ref()?;
    let vault = st.tenants.vault(&tenant).await.ok()?;
    let expected = vault
        .open::<CalendarConnection>(&conn.id, "push_client_state", &push.client_state)
        .ok()?;
    if push.id != channel || !meetbot_crypto::constant_time_eq(given.as_bytes(), &expected) {
        st.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(tenant = %tenant, "notification with a wrong channel secret rejected");
        return None;
    }
    Some((tenant, connection))
}

/// Google push: the notification is in the headers (`X-Goog-Channel-ID`, `X-Goog-Channel-Token`,
/// `X-Goog-Resource-State`); `sync` is the handshake after `events.watch`, anything else a change.
async fn google_notify(State(st): State<WebhookState>, headers: HeaderMap) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(channel), Some(state)) = (h("x-goog-channel-id"), h("x-goog-resource-state")) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing X-Goog-Channel-ID or X-Goog-Resource-State",
        )
            .into_response();
    };
    let token = h("x-goog-channel-token").unwrap_or_default();
    if let Some((tenant, connection)) = verify(&st, &channel, &token).await
        && state != "sync"
    {
        st.counters.accepted.fetch_add(1, Ordering::Relaxed);
        if st
            .triggers
            .try_send(Trigger::Sync { tenant, connection })
            .is_err()
        {
            tracing::warn!("sync trigger dropped: worker queue full");
        }
    }
    StatusCode::OK.into_response()
}

/// `GET /oauth/callback?code&state` (or `?error&state`): where the provider sends the user's
/// browser back. Only the browser that began the consent, signed in to meetbot as the person who
/// began it, can finish it (its binding and session cookies; the API sets both on the same
/// public host). Answers a short HTML page; the page never shows tokens or addresses.
/// `cookie_secure` is `api.cookie_secure`: with it, the binding cookie is the `__Host-` one.
pub fn oauth_router(worker: Arc<crate::worker::SyncWorker>, cookie_secure: bool) -> Router {
    Router::new()
        .route("/oauth/callback", axum::routing::get(oauth_callback))
        .layer(axum::Extension(CookieSecure(cookie_secure)))
        .with_state(worker)
}

/// Whether binding cookies are `Secure` (and so `__Host-` named).
#[derive(Clone, Copy)]
struct CookieSecure(bool);

async fn oauth_callback(
    State(worker): State<Arc<crate::worker::SyncWorker>>,
    axum::Extension(CookieSecure(secure)): axum::Extension<CookieSecure>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use meetbot_store::browser::{
        OAUTH_BINDING_COOKIE, SESSION_COOKIE, binding_cookie_name, clear_binding_cookie, cookie,
    };
    let cookies = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
    };
    // The binding is single-use: the browser forgets it whatever the outcome.
    let clear = clear_binding_cookie(OAUTH_BINDING_COOKIE, uri.path(), secure);
    let binding_name = binding_cookie_name(OAUTH_BINDING_COOKIE, secure);
    let page = |status: StatusCode, title: &str, text: &str| {
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1><p>{}</p>",
            html_escape::encode_text(text)
        );
        (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::SET_COOKIE, clear.as_str()),
            ],
            body,
        )
            .into_response()
    };
    let Some(state) = q.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Calendar not connected",
            "The provider's answer has no state parameter. Start connecting the calendar again.",
        );
    };
    let presented = crate::oauth::Presented {
        binding: cookie(cookies(), &binding_name),
        session: cookie(cookies(), SESSION_COOKIE),
    };
    match worker
        .connect(
            state,
            q.get("code").map(String::as_str),
            q.get("error").map(String::as_str),
            presented,
        )
        .await
    {
        Ok((_, c)) if c.status == meetbot_core::model::ConnectionStatus::AwaitingApproval => page(
            StatusCode::ACCEPTED,
            "Calendar awaiting approval",
            "The calendar account you allowed is not the address meetbot knows you by. \
             Nothing is read from it until an admin of your organisation approves it.",
        ),
        Ok(_) => page(
            StatusCode::OK,
            "Calendar connected",
            "meetbot can now see your meetings. You can close this window.",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "calendar connection failed");
            page(
                StatusCode::BAD_REQUEST,
                "Calendar not connected",
                &e.to_string(),
            )
        }
    }
}

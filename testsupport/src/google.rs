//! A stand-in for Google Calendar API v3 `GET /calendar/v3/calendars/primary/events`, following
//! the documented behaviour: a full listing takes `timeMin`/`timeMax` (not together with
//! `syncToken`); pages of `maxResults` link on with `nextPageToken`; the last page carries
//! `nextSyncToken`; an incremental listing (`syncToken`) returns what changed since, deleted
//! events as `{"id", "status": "cancelled"}`; an expired token answers `410` with reason
//! `fullSyncRequired`; throttling answers `429` with `Retry-After`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "google-stand-in-token";

#[derive(Clone)]
struct Channel {
    address: String,
    token: String,
    resource_id: String,
    expires_ms: i64,
    messages: u64,
}

#[derive(Default)]
struct Cal {
    channels: BTreeMap<String, Channel>,
    stopped: u64,
    events: BTreeMap<String, (Value, u64, bool)>,
    seq: u64,
    forgotten_below: u64,
    throttle_next: u32,
    requests: u64,
    /// Bearer tokens accepted besides `TOKEN` (e.g. ones a real OAuth server issued).
    bearer: crate::Bearer,
    /// The account's address (Graph `/me/calendar` owner, Google primary list `summary`).
    owner: Option<String>,
    /// Every page links to another, past the last event too (a hostile or broken provider).
    endless: bool,
}

pub struct GoogleStandIn {
    pub addr: SocketAddr,
    cal: Arc<Mutex<Cal>>,
    _task: tokio::task::JoinHandle<()>,
}

impl GoogleStandIn {
    pub async fn start() -> Self {
        let cal = Arc::new(Mutex::new(Cal::default()));
        let app = axum::Router::new()
            .route("/calendar/v3/calendars/primary/events", get(list))
            .route(
                "/calendar/v3/calendars/primary/events/watch",
                axum::routing::post(watch),
            )
            .route("/calendar/v3/channels/stop", axum::routing::post(stop))
            .with_state(cal.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        GoogleStandIn {
            addr,
            cal,
            _task: task,
        }
    }

    /// The root URL to configure the client with.
    pub fn root_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Accepts `token` as a bearer token from now on.
    pub fn accept_token(&self, token: &str) {
        self.lock().bearer.tokens.push(token.to_string());
    }

    /// Stops accepting `token` (as when the provider revokes it).
    pub fn refuse_token(&self, token: &str) {
        self.lock().bearer.tokens.retain(|t| t != token);
    }

    /// Accepts the tokens a real OAuth provider says are active (RFC 7662 introspection).
    pub fn accept_tokens_of(&self, i: crate::oidc::Introspector) {
        self.lock().bearer.introspector = Some(i);
    }

    /// Sets the account's address the stand-in reports.
    pub fn set_owner(&self, address: &str) {
        self.lock().owner = Some(address.to_string());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cal> {
        self.cal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or replaces an event, and notifies every live channel.
    pub fn upsert(&self, event: Value) {
        {
            let mut c = self.lock();
            c.seq += 1;
            let seq = c.seq;
            let id = event["id"].as_str().expect("event id").to_string();
            c.events.insert(id, (event, seq, false));
        }
        self.notify("exists");
    }

    pub fn delete(&self, id: &str) {
        {
            let mut c = self.lock();
            c.seq += 1;
            let seq = c.seq;
            if let Some(e) = c.events.get_mut(id) {
                e.1 = seq;
                e.2 = true;
            }
        }
        self.notify("exists");
    }

    /// Google's notification: an empty POST whose headers say which channel and what happened.
    fn notify(&self, state: &str) {
        let now = Utc::now().timestamp_millis();
        let mut c = self.lock();
        for (id, ch) in c.channels.iter_mut().filter(|(_, ch)| ch.expires_ms > now) {
            ch.messages += 1;
            post_headers(
                ch.address.clone(),
                id.clone(),
                ch.token.clone(),
                ch.resource_id.clone(),
                state.to_string(),
                ch.messages,
            );
        }
    }

    /// Sends a notification for `channel_id` with a wrong token (a forgery).
    pub fn send_forged(&self, channel_id: &str) {
        let Some(ch) = self.lock().channels.get(channel_id).cloned() else {
            return;
        };
        post_headers(
            ch.address,
            channel_id.to_string(),
            "forged".into(),
            ch.resource_id,
            "exists".into(),
            99,
        );
    }

    /// Live channels: id -> expiry (ms since the epoch).
    pub fn channels(&self) -> Vec<(String, i64)> {
        self.lock()
            .channels
            .iter()
            .map(|(k, v)| (k.clone(), v.expires_ms))
            .collect()
    }

    pub fn stopped(&self) -> u64 {
        self.lock().stopped
    }

    pub fn event(&self, id: &str) -> Option<Value> {
        self.lock()
            .events
            .get(id)
            .filter(|e| !e.2)
            .map(|e| e.0.clone())
    }

    pub fn live_ids(&self) -> Vec<String> {
        self.lock()
            .events
            .iter()
            .filter(|(_, e)| !e.2)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn forget_sync_tokens(&self) {
        let mut c = self.lock();
        c.seq += 1;
        c.forgotten_below = c.seq;
    }

    pub fn throttle_next(&self, n: u32) {
        self.lock().throttle_next = n;
    }

    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// From now on every page links to a next one, empty once the events run out: a round
    /// that follows the links never ends.
    pub fn endless_pages(&self) {
        self.lock().endless = true;
    }
}

fn err(status: StatusCode, reason: &str, message: &str) -> Response {
    let code = status.as_u16();
    (status, Json(json!({"error": {"code": code, "message": message, "errors": [{"domain": "global", "reason": reason, "message": message}]}})))
        .into_response()
}

fn start_of(ev: &Value) -> Option<DateTime<Utc>> {
    let s = ev.pointer("/start/dateTime")?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn list(
    State(cal): State<Arc<Mutex<Cal>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ok = authorized(&cal, &headers).await;
    let mut c = cal.lock().unwrap_or_else(|p| p.into_inner());
    c.requests += 1;
    if !ok {
        return err(StatusCode::UNAUTHORIZED, "authError", "Invalid Credentials");
    }
    if c.throttle_next > 0 {
        c.throttle_next -= 1;
        let body = json!({"error": {"code": 429, "message": "Rate Limit Exceeded", "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded"}]}});
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(body),
        )
            .into_response();
    }
    let max: usize = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(250)
        .clamp(1, 2500);
    // Page tokens: "<since>~<snapshot>~<offset>~<timeMin>~<timeMax>"; sync tokens: "s<snapshot>~<timeMin>~<timeMax>".
    let (since, snapshot, offset, window) = if let Some(p) = q.get("pageToken") {
        let parts: Vec<&str> = p.split('~').collect();
        let parsed = (|| {
            Some((
                parts.first()?.parse::<u64>().ok()?,
                parts.get(1)?.parse::<u64>().ok()?,
                parts.get(2)?.parse::<usize>().ok()?,
                (parts.get(3)?.to_string(), parts.get(4)?.to_string()),
            ))
        })();
        match parsed {
            Some(x) => x,
            None => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "Invalid page token value.",
                );
            }
        }
    } else if let Some(s) = q.get("syncToken") {
        if q.contains_key("timeMin") || q.contains_key("timeMax") {
            return err(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Sync token cannot be used with timeMin or timeMax.",
            );
        }
        let parts: Vec<&str> = s.trim_start_matches('s').split('~').collect();
        let Some(snapshot) = parts.first().and_then(|x| x.parse::<u64>().ok()) else {
            return err(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Invalid sync token value.",
            );
        };
        if snapshot < c.forgotten_below {
            return err(
                StatusCode::GONE,
                "fullSyncRequired",
                "Sync token is no longer valid, a full sync is required.",
            );
        }
        let window = (
            parts.get(1).unwrap_or(&"").to_string(),
            parts.get(2).unwrap_or(&"").to_string(),
        );
        (snapshot, c.seq, 0, window)
    } else {
        (
            0,
            c.seq,
            0,
            (
                q.get("timeMin").cloned().unwrap_or_default(),
                q.get("timeMax").cloned().unwrap_or_default(),
            ),
        )
    };
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let (lo, hi) = (parse(&window.0), parse(&window.1));
    let in_window = |ev: &Value| {
        start_of(ev).is_some_and(|t| lo.is_none_or(|l| t >= l) && hi.is_none_or(|h| t < h))
    };
    let mut items: Vec<Value> = Vec::new();
    for (id, (ev, seq, deleted)) in &c.events {
        if *seq <= since || *seq > snapshot {
            continue;
        }
        if !*deleted && in_window(ev) {
            items.push(ev.clone());
        } else if since > 0 {
            items.push(
                json!({"kind": "calendar#event", "etag": "\"0\"", "id": id, "status": "cancelled"}),
            );
        }
    }
    let page: Vec<Value> = items.iter().skip(offset).take(max).cloned().collect();
    let summary = c
        .owner
        .clone()
        .unwrap_or_else(|| "user@example.test".into());
    let mut body = json!({"kind": "calendar#events", "summary": summary, "timeZone": "UTC", "accessRole": "owner", "items": page});
    if offset + max < items.len() || c.endless {
        body["nextPageToken"] = json!(format!(
            "{since}~{snapshot}~{}~{}~{}",
            offset + max,
            window.0,
            window.1
        ));
    } else {
        body["nextSyncToken"] = json!(format!("s{snapshot}~{}~{}", window.0, window.1));
    }
    Json(body).into_response()
}

fn post_headers(
    address: String,
    id: String,
    token: String,
    resource: String,
    state: String,
    n: u64,
) {
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(address)
            .header("X-Goog-Channel-ID", id)
            .header("X-Goog-Channel-Token", token)
            .header("X-Goog-Resource-ID", resource)
            .header(
                "X-Goog-Resource-URI",
                "https://www.googleapis.com/calendar/v3/calendars/primary/events?alt=json",
            )
            .header("X-Goog-Resource-State", state)
            .header("X-Goog-Message-Number", n.to_string())
            .send()
            .await;
    });
}

/// `POST .../events/watch`: opens a channel (Google sends a `sync` message at once).
async fn watch(
    State(cal): State<Arc<Mutex<Cal>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&cal, &headers).await {
        return err(StatusCode::UNAUTHORIZED, "authError", "Invalid Credentials");
    }
    let (Some(id), Some(address)) = (
        body.get("id").and_then(Value::as_str),
        body.get("address").and_then(Value::as_str),
    ) else {
        return err(
            StatusCode::BAD_REQUEST,
            "required",
            "Required: id and address",
        );
    };
    if body.get("type").and_then(Value::as_str) != Some("web_hook") {
        return err(StatusCode::BAD_REQUEST, "invalid", "Invalid channel type");
    }
    let max = Utc::now().timestamp_millis() + 7 * 24 * 3600 * 1000;
    let expires_ms = body
        .get("expiration")
        .and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .or_else(|| v.as_i64())
        })
        .unwrap_or(max)
        .min(max);
    let mut c = cal.lock().unwrap_or_else(|p| p.into_inner());
    if c.channels.contains_key(id) {
        return err(
            StatusCode::BAD_REQUEST,
            "channelIdNotUnique",
            "Channel id not unique",
        );
    }
    let ch = Channel {
        address: address.into(),
        token: body
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        resource_id: format!("ret{}", c.channels.len() + 1),
        expires_ms,
        messages: 1,
    };
    post_headers(
        ch.address.clone(),
        id.into(),
        ch.token.clone(),
        ch.resource_id.clone(),
        "sync".into(),
        1,
    );
    let out = json!({"kind": "api#channel", "id": id, "resourceId": ch.resource_id, "resourceUri": "https://www.googleapis.com/calendar/v3/calendars/primary/events?alt=json", "token": ch.token, "expiration": expires_ms.to_string()});
    c.channels.insert(id.into(), ch);
    Json(out).into_response()
}

/// `POST .../channels/stop` with `{id, resourceId}`: 204, or 404 for an unknown channel.
async fn stop(
    State(cal): State<Arc<Mutex<Cal>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&cal, &headers).await {
        return err(StatusCode::UNAUTHORIZED, "authError", "Invalid Credentials");
    }
    let id = body.get("id").and_then(Value::as_str).unwrap_or("");
    let resource = body.get("resourceId").and_then(Value::as_str).unwrap_or("");
    let mut c = cal.lock().unwrap_or_else(|p| p.into_inner());
    match c.channels.get(id) {
        Some(ch) if ch.resource_id == resource => {
            c.channels.remove(id);
            c.stopped += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => err(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Channel '{id}' not found for project"),
        ),
    }
}

/// `Authorization: Bearer T` with T = `TOKEN` or a token accepted with `accept_token`.
async fn authorized(cal: &Mutex<Cal>, headers: &HeaderMap) -> bool {
    let bearer = cal.lock().unwrap_or_else(|p| p.into_inner()).bearer.clone();
    bearer.allows(TOKEN, headers).await
}

//! A stand-in for Microsoft Graph's `GET /v1.0/me/calendarView/delta`, following the documented
//! behaviour: an initial round needs `startDateTime`/`endDateTime`; pages hold at most
//! `Prefer: odata.maxpagesize` events and link on with `@odata.nextLink` (`$skiptoken`); the last
//! page carries `@odata.deltaLink` (`$deltatoken`); an incremental round returns what changed
//! since, with deleted (or moved out of the window) events as `{"id", "@removed": {"reason"}}`;
//! a forgotten sync state answers `410 Gone` (`SyncStateNotFound`), throttling `429` with
//! `Retry-After`, a wrong token `401` (`InvalidAuthenticationToken`).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "graph-stand-in-token";

#[derive(Clone)]
struct Sub {
    url: String,
    lifecycle_url: String,
    client_state: String,
    expires: DateTime<Utc>,
}

#[derive(Default)]
struct Cal {
    subs: BTreeMap<String, Sub>,
    sub_seq: u64,
    renewals: u64,
    /// id -> (event JSON, change sequence, deleted)
    events: BTreeMap<String, (Value, u64, bool)>,
    seq: u64,
    /// Delta tokens below this sequence are forgotten (410).
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

pub struct GraphStandIn {
    pub addr: SocketAddr,
    cal: Arc<Mutex<Cal>>,
    _task: tokio::task::JoinHandle<()>,
}

impl GraphStandIn {
    pub async fn start() -> Self {
        let cal = Arc::new(Mutex::new(Cal::default()));
        let app = axum::Router::new()
            .route("/v1.0/me/calendarView/delta", get(delta))
            .route("/v1.0/me/calendar", get(me_calendar))
            .route("/v1.0/subscriptions", axum::routing::post(create_sub))
            .route(
                "/v1.0/subscriptions/{id}",
                axum::routing::patch(renew_sub).delete(delete_sub),
            )
            .with_state(cal.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        GraphStandIn {
            addr,
            cal,
            _task: task,
        }
    }

    /// The base URL to configure the client with.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1.0", self.addr)
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

    /// Creates or replaces an event (Graph JSON with UTC `start`/`end`), and notifies subscribers.
    pub fn upsert(&self, event: Value) {
        let id = event["id"].as_str().expect("event id").to_string();
        {
            let mut c = self.lock();
            c.seq += 1;
            let seq = c.seq;
            c.events.insert(id.clone(), (event, seq, false));
        }
        self.notify_change(&id, "updated");
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
        self.notify_change(id, "deleted");
    }

    /// Sends a change notification to every live subscription, as Graph does.
    fn notify_change(&self, event_id: &str, change: &str) {
        let subs: Vec<(String, Sub)> = self
            .lock()
            .subs
            .iter()
            .filter(|(_, s)| s.expires > Utc::now())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, sub) in subs {
            let body = json!({"value": [{
                "subscriptionId": id,
                "subscriptionExpirationDateTime": sub.expires.to_rfc3339(),
                "changeType": change,
                "resource": format!("Users/00000000-0000-0000-0000-000000000001/Events/{event_id}"),
                "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": format!("Users/1/Events/{event_id}"), "id": event_id},
                "clientState": sub.client_state,
                "tenantId": "00000000-0000-0000-0000-000000000002"
            }]});
            post_later(sub.url.clone(), body);
        }
    }

    /// Sends a lifecycle notification (`reauthorizationRequired`, `missed`, `subscriptionRemoved`).
    pub fn send_lifecycle(&self, subscription_id: &str, event: &str) {
        let Some(sub) = self.lock().subs.get(subscription_id).cloned() else {
            return;
        };
        let body = json!({"value": [{
            "subscriptionId": subscription_id,
            "subscriptionExpirationDateTime": sub.expires.to_rfc3339(),
            "tenantId": "00000000-0000-0000-0000-000000000002",
            "clientState": sub.client_state,
            "lifecycleEvent": event
        }]});
        post_later(sub.lifecycle_url, body);
    }

    /// Sends a notification for `subscription_id` with a made-up clientState (a forgery).
    pub fn send_forged(&self, subscription_id: &str) {
        let Some(sub) = self.lock().subs.get(subscription_id).cloned() else {
            return;
        };
        let body = json!({"value": [{"subscriptionId": subscription_id, "changeType": "updated", "clientState": "forged", "resource": "Users/1/Events/x"}]});
        post_later(sub.url, body);
    }

    /// Live subscriptions: id -> expiry.
    pub fn subscriptions(&self) -> Vec<(String, DateTime<Utc>)> {
        self.lock()
            .subs
            .iter()
            .map(|(k, v)| (k.clone(), v.expires))
            .collect()
    }

    pub fn renewals(&self) -> u64 {
        self.lock().renewals
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

    /// Every delta token handed out so far stops working (as after Graph's retention period).
    pub fn forget_sync_states(&self) {
        let mut c = self.lock();
        c.seq += 1;
        c.forgotten_below = c.seq;
    }

    /// The next `n` requests get `429 Too Many Requests` with `Retry-After: 1`.
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

fn err(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message, "innerError": {"date": Utc::now().to_rfc3339()}}}))).into_response()
}

fn start_of(ev: &Value) -> Option<DateTime<Utc>> {
    let s = ev.pointer("/start/dateTime")?.as_str()?;
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

fn parse_window(s: &str, e: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some((
        DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc),
        DateTime::parse_from_rfc3339(e).ok()?.with_timezone(&Utc),
    ))
}

async fn delta(
    State(cal): State<Arc<Mutex<Cal>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ok = authorized(&cal, &headers).await;
    let mut c = cal.lock().unwrap_or_else(|p| p.into_inner());
    c.requests += 1;
    if !ok {
        return err(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
    }
    if c.throttle_next > 0 {
        c.throttle_next -= 1;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], Json(json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}})))
            .into_response();
    }
    let page_size = headers
        .get("prefer")
        .and_then(|h| h.to_str().ok())
        .and_then(|p| {
            p.split(',').find_map(|x| {
                x.trim()
                    .strip_prefix("odata.maxpagesize=")?
                    .parse::<usize>()
                    .ok()
            })
        })
        .unwrap_or(10)
        .max(1);
    // Tokens are opaque to clients: "<since>.<snapshot>.<offset>.<start>.<end>".
    let (since, snapshot, offset, window) = if let Some(tok) =
        q.get("$skiptoken").or_else(|| q.get("$deltatoken"))
    {
        let parts: Vec<&str> = tok.split('~').collect();
        let parsed = (|| {
            let since: u64 = parts.first()?.parse().ok()?;
            let snapshot: u64 = parts.get(1)?.parse().ok()?;
            let offset: usize = parts.get(2)?.parse().ok()?;
            let window = parse_window(parts.get(3)?, parts.get(4)?)?;
            Some((since, snapshot, offset, window))
        })();
        let Some((since, snapshot, offset, window)) = parsed else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidParameter",
                "The token is malformed.",
            );
        };
        if q.contains_key("$deltatoken") {
            // A delta token starts a new round at the current state.
            if snapshot < c.forgotten_below {
                return err(
                    StatusCode::GONE,
                    "SyncStateNotFound",
                    "The sync state generation is not found.",
                );
            }
            (snapshot, c.seq, 0, window)
        } else {
            (since, snapshot, offset, window)
        }
    } else {
        let (Some(s), Some(e)) = (q.get("startDateTime"), q.get("endDateTime")) else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
            );
        };
        let Some(window) = parse_window(s, e) else {
            return err(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidParameter",
                "startDateTime or endDateTime is not a valid date-time.",
            );
        };
        (0, c.seq, 0, window)
    };
    let in_window = |ev: &Value| start_of(ev).is_some_and(|t| t >= window.0 && t < window.1);
    let mut changes: Vec<Value> = Vec::new();
    for (id, (ev, seq, deleted)) in &c.events {
        // Only changes in (since, snapshot]: later ones belong to the next round.
        if *seq <= since || *seq > snapshot {
            continue;
        }
        if !*deleted && in_window(ev) {
            changes.push(ev.clone());
        } else if since > 0 {
            changes.push(json!({"@odata.type": "#microsoft.graph.event", "id": id, "@removed": {"reason": "deleted"}}));
        }
    }
    let page: Vec<Value> = changes
        .iter()
        .skip(offset)
        .take(page_size)
        .cloned()
        .collect();
    let base = format!(
        "http://{}/v1.0/me/calendarView/delta",
        headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
    );
    let w = format!(
        "{}~{}",
        window.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        window.1.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut body = json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)", "value": page});
    if offset + page_size < changes.len() || c.endless {
        body["@odata.nextLink"] = json!(format!(
            "{base}?$skiptoken={since}~{snapshot}~{}~{w}",
            offset + page_size
        ));
    } else {
        body["@odata.deltaLink"] = json!(format!("{base}?$deltatoken={since}~{snapshot}~0~{w}"));
    }
    Json(body).into_response()
}

fn post_later(url: String, body: Value) {
    tokio::spawn(async move {
        let _ = reqwest::Client::new().post(url).json(&body).send().await;
    });
}

/// Graph's validation handshake: POST `<url>?validationToken=<t>`; the endpoint must answer 200
/// with exactly `<t>` as text within 10 seconds.
async fn validate(url: &str) -> bool {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let Ok(mut u) = url::Url::parse(url) else {
        return false;
    };
    u.query_pairs_mut().append_pair("validationToken", &token);
    let resp = reqwest::Client::new()
        .post(u)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    match resp {
        Ok(r) if r.status() == 200 => r.text().await.map(|t| t == token).unwrap_or(false),
        _ => false,
    }
}

/// Graph's cap for Outlook event subscriptions.
const MAX_MINUTES: i64 = 4230;

fn sub_json(id: &str, s: &Sub) -> Value {
    json!({"id": id, "resource": "me/events", "changeType": "created,updated,deleted", "notificationUrl": s.url,
           "lifecycleNotificationUrl": s.lifecycle_url, "expirationDateTime": s.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
}

fn expiry(v: &Value) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(v.get("expirationDateTime")?.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    Some(t.min(Utc::now() + chrono::Duration::minutes(MAX_MINUTES)))
}

async fn create_sub(
    State(cal): State<Arc<Mutex<Cal>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&cal, &headers).await {
        return err(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
    }
    let (Some(url), Some(lifecycle), Some(expires)) = (
        body.get("notificationUrl").and_then(Value::as_str),
        body.get("lifecycleNotificationUrl").and_then(Value::as_str),
        expiry(&body),
    ) else {
        return err(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "notificationUrl, lifecycleNotificationUrl and expirationDateTime are required.",
        );
    };
    if !validate(url).await || !validate(lifecycle).await {
        return err(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "Subscription validation request failed. Response must exactly match validationToken query parameter.",
        );
    }
    let sub = Sub {
        url: url.into(),
        lifecycle_url: lifecycle.into(),
        client_state: body
            .get("clientState")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        expires,
    };
    let mut c = cal.lock().unwrap_or_else(|p| p.into_inner());
    c.sub_seq += 1;
    let id = format!("7f105c7d-2dc5-4530-97cd-4e7a{:08x}", c.sub_seq);
    let out = sub_json(&id, &sub);
    c.subs.insert(id, sub);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn renew_sub(
    State(cal): State<Arc<Mutex<Cal>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&cal, &headers).await {
        return err(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
    }
    let Some(expires) = expiry(&body) else {
        return err(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "expirationDateTime is required.",
        );
    };
    let mut c = cal.lock().unwrap_or_else(|p| p.into_inner());
    c.renewals += 1;
    let Some(s) = c.subs.get_mut(&id) else {
        return err(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The object was not found.",
        );
    };
    s.expires = expires;
    let out = sub_json(&id, s);
    Json(out).into_response()
}

async fn delete_sub(
    State(cal): State<Arc<Mutex<Cal>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&cal, &headers).await {
        return err(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
    }
    match cal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .subs
        .remove(&id)
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The object was not found.",
        ),
    }
}

/// `Authorization: Bearer T` with T = `TOKEN` or a token accepted with `accept_token`.
async fn authorized(cal: &Mutex<Cal>, headers: &HeaderMap) -> bool {
    let bearer = cal.lock().unwrap_or_else(|p| p.into_inner()).bearer.clone();
    bearer.allows(TOKEN, headers).await
}

/// `GET /me/calendar`: the user's default calendar, with its owner.
async fn me_calendar(State(cal): State<Arc<Mutex<Cal>>>, headers: HeaderMap) -> Response {
    if !authorized(&cal, &headers).await {
        return err(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
    }
    let owner = cal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .owner
        .clone()
        .unwrap_or_else(|| "user@example.test".into());
    Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('me')/calendar/$entity",
        "id": "AAMkAGI2TGuLAAA=",
        "name": "Calendar",
        "color": "auto",
        "canShare": true,
        "canViewPrivateItems": true,
        "canEdit": true,
        "owner": {"name": "Calendar Owner", "address": owner}
    }))
    .into_response()
}

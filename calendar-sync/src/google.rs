//! Google Calendar through google-calendar3 (base URL configurable): `events.list` over a window
//! with `singleEvents=true`, then incremental rounds with `syncToken`; `410 Gone` means the token
//! expired and a full round is needed. Events are normalised by `normalize::google_event`.

use crate::normalize::{NormalizedEvent, ParseError, google_event};
use chrono::{DateTime, Utc};
use google_calendar3::{CalendarHub, common, hyper_rustls, hyper_util};
use std::time::Duration;

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

pub const GOOGLE_ROOT: &str = "https://www.googleapis.com/";

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    #[error("Google refused the access token (401): refresh it or ask the user to reconnect")]
    Unauthorized,
    #[error("Google is throttling this connection (HTTP {status}); retry after {retry_after:?}")]
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("Google's sync token expired (410): a full resync is needed")]
    ResyncRequired,
    #[error("Google request failed: {0}")]
    Http(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// One full or incremental round.
#[derive(Debug)]
pub struct GoogleRound {
    pub events: Vec<NormalizedEvent>,
    /// Where the next round starts: Google's `nextSyncToken`, or when `cut` a continuation
    /// (the `nextPageToken` this round stopped at, with the listing it belongs to).
    pub next: String,
    pub pages: u32,
    /// The round stopped at its budget before Google's last page.
    pub cut: bool,
}

/// The rest of a round cut at its budget: the page to ask for next and the listing it pages
/// through (a page token is only valid with the request it came from). Stored as JSON, which
/// no Google sync token looks like (they are base64).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Continuation {
    page: String,
    /// An incremental round's sync token; `None` for a full listing over `from`..`to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sync: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Continuation {
    fn read(cursor: &str) -> Option<Self> {
        if cursor.starts_with('{') {
            serde_json::from_str(cursor).ok()
        } else {
            None
        }
    }
}

#[derive(Clone)]
pub struct GoogleClient {
    client: common::Client<Connector>,
    root: String,
    page_size: i32,
}

/// Records the status and `Retry-After` of a failed response (the hub keeps only the body).
#[derive(Default)]
struct Failure {
    status: u16,
    retry_after: Option<Duration>,
}

impl common::Delegate for Failure {
    fn http_failure(
        &mut self,
        resp: &common::Response,
        _err: Option<&serde_json::Value>,
    ) -> common::Retry {
        self.status = resp.status().as_u16();
        self.retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        common::Retry::Abort
    }
}

impl GoogleClient {
    /// `root` is `GOOGLE_ROOT` in production, a stand-in's URL in tests.
    pub fn new(root: &str) -> Result<Self, GoogleError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| GoogleError::Http(format!("loading the system's root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let root = if root.ends_with('/') {
            root.to_string()
        } else {
            format!("{root}/")
        };
        Ok(GoogleClient {
            client,
            root,
            page_size: 250,
        })
    }

    pub fn with_page_size(mut self, n: i32) -> Self {
        self.page_size = n.clamp(1, 2500);
        self
    }

    fn hub(&self, token: &str) -> CalendarHub<Connector> {
        let mut hub = CalendarHub::new(self.client.clone(), token.to_string());
        hub.root_url(self.root.clone());
        hub.base_url(format!("{}calendar/v3/", self.root));
        hub
    }

    /// A full round over `[from, to)` (no `cursor`), an incremental one from a sync token, or
    /// the rest of a cut round from its continuation, reading at most `max_events` events: it
    /// stops following `nextPageToken` at the [`PageBudget`](crate::sync::PageBudget) and hands
    /// back a continuation, so the sync token is never advanced past what was read.
    pub async fn events_round(
        &self,
        token: &str,
        cursor: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_events: usize,
    ) -> Result<GoogleRound, GoogleError> {
        let budget = crate::sync::PageBudget::new(self.page_size as usize, max_events);
        let hub = self.hub(token);
        let (mut page, sync_token, from, to) = match cursor {
            None => (None, None, from, to),
            Some(c) if c.starts_with('{') => match Continuation::read(c) {
                Some(k) => (Some(k.page), k.sync, k.from, k.to),
                // Not one this client wrote: start over with a full round.
                None => return Err(GoogleError::ResyncRequired),
            },
            Some(t) => (None, Some(t.to_string()), from, to),
        };
        let resumed = page.is_some();
        let mut events = Vec::new();
        let mut pages: u32 = 0;
        loop {
            pages += 1;
            let mut failure = Failure::default();
            let mut call = hub
                .events()
                .list("primary")
                .single_events(true)
                .max_results(budget.page_size as i32);
            call = match &sync_token {
                Some(t) => call.sync_token(t),
                None => call.time_min(from).time_max(to),
            };
            if let Some(p) = &page {
                call = call.page_token(p);
            }
            let result = call.delegate(&mut failure).doit().await;
            let list = match result {
                Ok((_, list)) => list,
                // A stored page token Google no longer takes: the round starts over.
                Err(e) if resumed && pages == 1 && status_of(&e, &failure) == 400 => {
                    return Err(GoogleError::ResyncRequired);
                }
                Err(e) => return Err(classify(e, &failure)),
            };
            for ev in list.items.unwrap_or_default() {
                let v = serde_json::to_value(&ev)
                    .map_err(|e| GoogleError::Http(format!("re-encoding an event: {e}")))?;
                events.push(google_event(&v)?);
            }
            if let Some(next) = list.next_page_token {
                if budget.spent(pages, events.len()) {
                    let rest = Continuation {
                        page: next,
                        sync: sync_token,
                        from,
                        to,
                    };
                    let next = serde_json::to_string(&rest)
                        .map_err(|e| GoogleError::Http(format!("encoding a continuation: {e}")))?;
                    return Ok(GoogleRound {
                        events,
                        next,
                        pages,
                        cut: true,
                    });
                }
                page = Some(next);
                continue;
            }
            let next_sync_token = list
                .next_sync_token
                .ok_or_else(|| GoogleError::Http("last page without nextSyncToken".into()))?;
            return Ok(GoogleRound {
                events,
                next: next_sync_token,
                pages,
                cut: false,
            });
        }
    }
}

impl GoogleClient {
    /// The account's address: the `summary` of the primary calendar's event list, which Google
    /// sets to the account's email (reachable with calendar.events.readonly; no profile scope).
    pub async fn account_address(&self, token: &str) -> Result<String, GoogleError> {
        let hub = self.hub(token);
        let mut failure = Failure::default();
        let (_, list) = hub
            .events()
            .list("primary")
            .max_results(1)
            .time_min(Utc::now())
            .delegate(&mut failure)
            .doit()
            .await
            .map_err(|e| classify(e, &failure))?;
        list.summary
            .filter(|s| s.contains('@'))
            .map(|s| s.to_ascii_lowercase())
            .ok_or_else(|| GoogleError::Http("primary calendar has no address summary".into()))
    }
}

/// A Google push channel (`events.watch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchChannel {
    pub id: String,
    pub resource_id: String,
    pub expires_at: DateTime<Utc>,
}

impl GoogleClient {
    /// Opens a push channel on the primary calendar's events: Google POSTs to `address` with
    /// `X-Goog-Channel-Token: token` on every change. Channels cannot be renewed: open a new one
    /// before this one expires and stop the old one.
    pub async fn watch(
        &self,
        token: &str,
        channel_id: &str,
        address: &str,
        channel_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<WatchChannel, GoogleError> {
        let hub = self.hub(token);
        let req = google_calendar3::api::Channel {
            id: Some(channel_id.to_string()),
            type_: Some("web_hook".into()),
            address: Some(address.to_string()),
            token: Some(channel_token.to_string()),
            expiration: Some(expires_at.timestamp_millis()),
            ..Default::default()
        };
        let mut failure = Failure::default();
        let (_, ch) = hub
            .events()
            .watch(req, "primary")
            .delegate(&mut failure)
            .doit()
            .await
            .map_err(|e| classify(e, &failure))?;
        let resource_id = ch
            .resource_id
            .ok_or_else(|| GoogleError::Http("watch answered without resourceId".into()))?;
        let expires_at = ch
            .expiration
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(expires_at);
        Ok(WatchChannel {
            id: ch.id.unwrap_or_else(|| channel_id.to_string()),
            resource_id,
            expires_at,
        })
    }

    /// Stops a push channel; one Google no longer knows counts as stopped.
    pub async fn stop(
        &self,
        token: &str,
        channel_id: &str,
        resource_id: &str,
    ) -> Result<(), GoogleError> {
        let hub = self.hub(token);
        let req = google_calendar3::api::Channel {
            id: Some(channel_id.to_string()),
            resource_id: Some(resource_id.to_string()),
            ..Default::default()
        };
        let mut failure = Failure::default();
        match hub.channels().stop(req).delegate(&mut failure).doit().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(e, &failure) {
                GoogleError::Http(m) if failure.status == 404 || m.contains("404") => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// The HTTP status of a failed call (the hub keeps it in different places).
fn status_of(e: &common::Error, f: &Failure) -> u16 {
    match e {
        common::Error::BadRequest(v) => v
            .pointer("/error/code")
            .and_then(serde_json::Value::as_u64)
            .map(|c| c as u16)
            .unwrap_or(f.status),
        common::Error::Failure(r) => r.status().as_u16(),
        _ => f.status,
    }
}

fn classify(e: common::Error, f: &Failure) -> GoogleError {
    let status = status_of(&e, f);
    match status {
        401 => GoogleError::Unauthorized,
        410 => GoogleError::ResyncRequired,
        403 | 429 | 500..=599 if status != 403 || is_rate_limit(&e) => GoogleError::Throttled {
            status,
            retry_after: f.retry_after,
        },
        _ => GoogleError::Http(match e {
            common::Error::BadRequest(v) => format!(
                "HTTP {status}: {}",
                v.pointer("/error/message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
            ),
            other => other.to_string().lines().next().unwrap_or("").to_string(),
        }),
    }
}

/// Google answers rate limits with 403 `rateLimitExceeded` / `userRateLimitExceeded` too.
fn is_rate_limit(e: &common::Error) -> bool {
    matches!(e, common::Error::BadRequest(v) if v.to_string().contains("RateLimitExceeded") || v.to_string().contains("rateLimitExceeded"))
}

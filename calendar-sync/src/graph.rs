//! Microsoft Graph, as a typed reqwest client (graph-rs-sdk returns untyped JSON and refuses
//! non-Microsoft hosts): `GET /me/calendarView/delta` with `@odata.nextLink` paging and
//! `@odata.deltaLink` resume. Times are requested in UTC (`Prefer: outlook.timezone="UTC"`).

use crate::normalize::{NormalizedEvent, ParseError, graph_event};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use url::Url;

pub const GRAPH_BASE: &str = "https://graph.microsoft.com/v1.0";

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("Graph refused the access token (401): refresh it or ask the user to reconnect")]
    Unauthorized,
    #[error("Graph is throttling this connection (HTTP {status}); retry after {retry_after:?}")]
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("Graph no longer knows this sync state (410): a full resync is needed")]
    ResyncRequired,
    #[error("Graph does not know this resource (404)")]
    NotFound,
    #[error("Graph request failed: {0}")]
    Http(String),
    #[error("Graph answered something unexpected: {0}")]
    Protocol(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The result of following a delta round to its end, or to its page budget.
#[derive(Debug)]
pub struct DeltaRound {
    pub events: Vec<NormalizedEvent>,
    /// Where the next round starts: the `@odata.deltaLink`, or when `cut` the
    /// `@odata.nextLink` this round stopped at (the rest of the same round).
    pub next: String,
    pub pages: u32,
    /// The round stopped at its budget before Graph's last page.
    pub cut: bool,
}

/// A Graph change-notification subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub expires_at: DateTime<Utc>,
}

fn subscription(v: &Value) -> Result<Subscription, GraphError> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::Protocol("subscription without id".into()))?;
    let exp = v
        .get("expirationDateTime")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(|| {
            GraphError::Protocol("subscription without a valid expirationDateTime".into())
        })?;
    Ok(Subscription {
        id: id.to_string(),
        expires_at: exp.with_timezone(&Utc),
    })
}

#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    page_size: u32,
}

impl GraphClient {
    /// `base` is Graph's (`GRAPH_BASE`) or, in tests, a stand-in's.
    pub fn new(http: reqwest::Client, base: &str) -> Result<Self, GraphError> {
        let base = Url::parse(base.trim_end_matches('/'))
            .map_err(|e| GraphError::Protocol(format!("bad base URL: {e}")))?;
        Ok(GraphClient {
            http,
            base,
            page_size: 50,
        })
    }

    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, 1000);
        self
    }

    /// A full round over `[from, to)` (`resume = None`) or an incremental one from a deltaLink
    /// (or the rest of a cut round from its nextLink), reading at most `max_events` events: it
    /// stops following nextLinks at the [`PageBudget`](crate::sync::PageBudget) and hands back
    /// the nextLink, so nothing past what was read is skipped.
    pub async fn calendar_view_delta(
        &self,
        token: &str,
        resume: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_events: usize,
    ) -> Result<DeltaRound, GraphError> {
        let budget = crate::sync::PageBudget::new(self.page_size as usize, max_events);
        let mut url = match resume {
            Some(link) => self.own_link(link)?,
            None => {
                let mut u = self.base.clone();
                u.path_segments_mut()
                    .map_err(|_| GraphError::Protocol("base URL cannot have a path".into()))?
                    .extend(["me", "calendarView", "delta"]);
                u.query_pairs_mut()
                    .append_pair(
                        "startDateTime",
                        &from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    )
                    .append_pair(
                        "endDateTime",
                        &to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    );
                u
            }
        };
        let mut events = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            let page = self
                .send_paged(
                    reqwest::Method::GET,
                    url.clone(),
                    token,
                    None,
                    budget.page_size,
                )
                .await?;
            let items = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| GraphError::Protocol("delta page without a `value` array".into()))?;
            for item in items {
                events.push(graph_event(item)?);
            }
            if let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) {
                url = self.own_link(next)?;
                if budget.spent(pages, events.len()) {
                    return Ok(DeltaRound {
                        events,
                        next: next.to_string(),
                        pages,
                        cut: true,
                    });
                }
                continue;
            }
            if let Some(delta) = page.get("@odata.deltaLink").and_then(Value::as_str) {
                self.own_link(delta)?;
                return Ok(DeltaRound {
                    events,
                    next: delta.to_string(),
                    pages,
                    cut: false,
                });
            }
            return Err(GraphError::Protocol(
                "delta page with neither nextLink nor deltaLink".into(),
            ));
        }
    }

    /// A link Graph handed back, checked to point at the same service before a token goes to it.
    fn own_link(&self, link: &str) -> Result<Url, GraphError> {
        let u = Url::parse(link).map_err(|e| GraphError::Protocol(format!("bad link: {e}")))?;
        if u.origin() != self.base.origin() || !u.path().starts_with(self.base.path()) {
            return Err(GraphError::Protocol(
                "a paging link points outside the Graph base URL; refusing to send the token there"
                    .into(),
            ));
        }
        Ok(u)
    }

    fn url(&self, segments: &[&str]) -> Result<Url, GraphError> {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .map_err(|_| GraphError::Protocol("base URL cannot have a path".into()))?
            .extend(segments);
        Ok(u)
    }

    /// Creates a subscription to the user's event changes. Graph first POSTs a `validationToken`
    /// to `notification_url`, which must echo it (see `webhook`).
    pub async fn create_subscription(
        &self,
        token: &str,
        notification_url: &str,
        lifecycle_url: &str,
        client_state: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Subscription, GraphError> {
        let body = serde_json::json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": "me/events",
            "expirationDateTime": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "clientState": client_state,
        });
        let v = self
            .send(
                reqwest::Method::POST,
                self.url(&["subscriptions"])?,
                token,
                Some(body),
            )
            .await?;
        subscription(&v)
    }

    /// Moves a subscription's expiry.
    pub async fn renew_subscription(
        &self,
        token: &str,
        id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Subscription, GraphError> {
        let body = serde_json::json!({"expirationDateTime": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
        let v = self
            .send(
                reqwest::Method::PATCH,
                self.url(&["subscriptions", id])?,
                token,
                Some(body),
            )
            .await?;
        subscription(&v)
    }

    /// Deletes a subscription; one Graph no longer has counts as deleted.
    pub async fn delete_subscription(&self, token: &str, id: &str) -> Result<(), GraphError> {
        match self
            .send(
                reqwest::Method::DELETE,
                self.url(&["subscriptions", id])?,
                token,
                None,
            )
            .await
        {
            Ok(_) | Err(GraphError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The address of the signed-in user's calendar owner (`GET /me/calendar`, allowed by
    /// Calendars.Read; no User.Read scope needed).
    pub async fn account_address(&self, token: &str) -> Result<String, GraphError> {
        let url = Url::parse(&format!("{}/me/calendar", self.base))
            .map_err(|e| GraphError::Protocol(e.to_string()))?;
        let v = self.get(token, url).await?;
        v.pointer("/owner/address")
            .and_then(Value::as_str)
            .filter(|a| a.contains('@'))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| GraphError::Protocol("calendar without owner.address".into()))
    }

    async fn get(&self, token: &str, url: Url) -> Result<Value, GraphError> {
        self.send(reqwest::Method::GET, url, token, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, GraphError> {
        self.send_paged(method, url, token, body, self.page_size as usize)
            .await
    }

    async fn send_paged(
        &self,
        method: reqwest::Method,
        url: Url,
        token: &str,
        body: Option<Value>,
        page_size: usize,
    ) -> Result<Value, GraphError> {
        let mut req = self.http.request(method, url).bearer_auth(token).header(
            "Prefer",
            format!("outlook.timezone=\"UTC\", odata.maxpagesize={page_size}"),
        );
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| GraphError::Http(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match status {
            200 | 201 => resp
                .json::<Value>()
                .await
                .map_err(|e| GraphError::Protocol(e.without_url().to_string())),
            202 | 204 => Ok(Value::Null),
            401 => Err(GraphError::Unauthorized),
            404 => Err(GraphError::NotFound),
            410 => Err(GraphError::ResyncRequired),
            429 | 500..=599 => Err(GraphError::Throttled {
                status,
                retry_after,
            }),
            other => {
                let code = resp
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| {
                        v.pointer("/error/code")
                            .and_then(Value::as_str)
                            .map(String::from)
                    })
                    .unwrap_or_default();
                Err(GraphError::Http(format!("HTTP {other} {code}")))
            }
        }
    }
}

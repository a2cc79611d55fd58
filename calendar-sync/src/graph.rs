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
    #[error("Graph request failed: {0}")]
    Http(String),
    #[error("Graph answered something unexpected: {0}")]
    Protocol(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The result of following a delta round to its end.
#[derive(Debug)]
pub struct DeltaRound {
    pub events: Vec<NormalizedEvent>,
    /// Where the next incremental round starts.
    pub delta_link: String,
    pub pages: u32,
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

    /// A full round over `[from, to)` (`resume = None`) or an incremental one from a deltaLink.
    pub async fn calendar_view_delta(
        &self,
        token: &str,
        resume: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<DeltaRound, GraphError> {
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
            let page = self.get(token, url.clone()).await?;
            let items = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| GraphError::Protocol("delta page without a `value` array".into()))?;
            for item in items {
                events.push(graph_event(item)?);
            }
            if let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) {
                url = self.own_link(next)?;
                continue;
            }
            if let Some(delta) = page.get("@odata.deltaLink").and_then(Value::as_str) {
                self.own_link(delta)?;
                return Ok(DeltaRound {
                    events,
                    delta_link: delta.to_string(),
                    pages,
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

    async fn get(&self, token: &str, url: Url) -> Result<Value, GraphError> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(token)
            .header(
                "Prefer",
                format!(
                    "outlook.timezone=\"UTC\", odata.maxpagesize={}",
                    self.page_size
                ),
            )
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
            200 => resp
                .json::<Value>()
                .await
                .map_err(|e| GraphError::Protocol(e.without_url().to_string())),
            401 => Err(GraphError::Unauthorized),
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

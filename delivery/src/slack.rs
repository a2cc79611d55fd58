//! Slack: Web API `chat.postMessage` (https://api.slack.com/methods/chat.postMessage) with
//! Block Kit, a bot token per tenant, and the base URL configurable (a stand-in in tests).
//! The idempotency key goes in the message's metadata (`event_type` `meetbot_summary`).

use crate::notice::Notice;
use crate::{Notifier, NotifyError, retry_after, transport};
use async_trait::async_trait;
use meetbot_core::model::DeliveryChannel;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// `error` values of an `ok: false` answer worth trying again.
const TEMPORARY: &[&str] = &[
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

pub struct SlackNotifier {
    http: reqwest::Client,
    base_url: String,
    token: SecretString,
}

impl SlackNotifier {
    /// `base_url` is `https://slack.com` in production.
    pub fn new(base_url: &str, token: SecretString) -> Result<SlackNotifier, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| NotifyError::Permanent(format!("HTTP client: {e}")))?;
        Ok(SlackNotifier {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
        })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn channel(&self) -> DeliveryChannel {
        DeliveryChannel::Slack
    }

    async fn send(
        &self,
        channel: &str,
        notice: &Notice,
        idempotency_key: &str,
    ) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "channel": channel,
            "text": notice.text(),
            "blocks": notice.slack_blocks(),
            "unfurl_links": false,
            "metadata": {
                "event_type": "meetbot_summary",
                "event_payload": {"idempotency_key": idempotency_key, "meeting_id": notice.meeting_id},
            },
        });
        let r = self
            .http
            .post(format!("{}/api/chat.postMessage", self.base_url))
            .bearer_auth(self.token.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = r.status();
        if status.as_u16() == 429 {
            return Err(NotifyError::Retry {
                reason: "Slack rate limit (429)".into(),
                after: retry_after(r.headers()),
            });
        }
        if status.is_server_error() {
            return Err(NotifyError::Retry {
                reason: format!("Slack answered {}", status.as_u16()),
                after: retry_after(r.headers()),
            });
        }
        if !status.is_success() {
            return Err(NotifyError::Permanent(format!(
                "Slack answered {}",
                status.as_u16()
            )));
        }
        let after = retry_after(r.headers());
        let v: serde_json::Value = r.json().await.map_err(|_| NotifyError::Retry {
            reason: "Slack's answer is not JSON".into(),
            after: None,
        })?;
        if v["ok"] == true {
            return Ok(());
        }
        let err = v["error"].as_str().unwrap_or("unknown_error");
        // Slack's error codes are fixed identifiers: safe to keep.
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        if TEMPORARY.contains(&err) {
            Err(NotifyError::Retry {
                reason: format!("Slack error {code}"),
                after,
            })
        } else {
            Err(NotifyError::Permanent(format!("Slack error {code}")))
        }
    }
}

//! Delivery: what customers receive after a meeting.
//!
//! * [`Notifier`] is the seam: one implementation per channel: [`slack::SlackNotifier`] (Web
//!   API `chat.postMessage` with Block Kit), [`email::SmtpNotifier`] (lettre; HTML + plain
//!   text), [`webhook::WebhookNotifier`] (JSON signed with HMAC-SHA256 over timestamp + body).
//! * [`notice::Notice`] is what is said (a meeting's summary), rendered by each channel.
//! * [`outbox::Outbox`] keeps every delivery in the tenant's store (target and message sealed)
//!   under an idempotency key, sends what is due, retries temporary failures with exponential
//!   backoff and jitter, gives up after a limit with the reason visible, and never sends a
//!   delivery again once it is recorded as sent, whatever restarts in between.

pub mod email;
pub mod hold;
pub mod notice;
pub mod outbox;
pub mod service;
pub mod slack;
pub mod webhook;

use async_trait::async_trait;
use meetbot_core::model::DeliveryChannel;
use notice::Notice;
use std::time::Duration;

/// Why a send did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Worth trying again (rate limit, 5xx, connection refused), after `after` where the
    /// service said so (Retry-After).
    #[error("temporary failure: {reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Trying again will not help (bad token, unknown channel, malformed address).
    #[error("refused: {0}")]
    Permanent(String),
}

/// One delivery channel.
#[async_trait]
pub trait Notifier: Send + Sync {
    fn channel(&self) -> DeliveryChannel;

    /// Sends `notice` to `target` (a Slack channel id, an email address, a webhook URL).
    /// `idempotency_key` travels with the message where the channel can carry it (Slack message
    /// metadata, the email's Message-ID, the webhook's `Idempotency-Key` header) so a receiver
    /// can recognise a repeat.
    async fn send(
        &self,
        target: &str,
        notice: &Notice,
        idempotency_key: &str,
    ) -> Result<(), NotifyError>;
}

/// Seconds in a `Retry-After` header (the delay form; dates are treated as absent).
pub(crate) fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// A reqwest error as a temporary failure, without the URL (it may hold a secret).
pub(crate) fn transport(e: reqwest::Error) -> NotifyError {
    NotifyError::Retry {
        reason: meetbot_egress::failure_kind(&e).into(),
        after: None,
    }
}

//! The outbox: every delivery a record in the tenant's store, sent exactly once.
//!
//! A delivery is enqueued under an idempotency key (meeting, channel, target): enqueuing it
//! again is a no-op. A round takes what is due, claims each by compare-and-set (state
//! `sending`, with a claim that lapses), sends it, and records the outcome by compare-and-set
//! on the claim: `sent`, or `pending` again after an exponential backoff with jitter (or the
//! service's Retry-After), or `gave_up` with the reason once the attempts are spent or the
//! target refused for good. A sent delivery is never taken again; two senders never hold the
//! same claim. Only a sender dying between the send and its record leaves a claim to lapse
//! and the delivery to go again (its idempotency key lets the receiver drop it).
//!
//! A delivery is attempted as soon as it is queued: a new one wakes this outbox's worker
//! ([`crate::service::run`]), which runs a round for its tenant at once, claims by
//! compare-and-set like any other round. The worker's poll (`delivery.poll_seconds`) stays the
//! safety net: retries after their backoff, lapsed claims, and deliveries queued by another
//! process (decision 0038).

use crate::notice::Notice;
use crate::slack::SlackNotifier;
use crate::{Notifier, NotifyError};
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{Delivery, DeliveryChannel, DeliveryState};
use meetbot_store::vault::{Tenants, VaultError};
use meetbot_store::{Store, StoreError, Versioned};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("delivery {0}: its message cannot be read: {1}")]
    Corrupt(String, String),
}

/// When to try again and when to stop.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The first retry's delay; each further one doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Attempts in all before giving up.
    pub max_attempts: u32,
    /// How long a claim holds before another sender may take the delivery.
    pub claim: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(30 * 60),
            max_attempts: 10,
            claim: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based): full jitter over
    /// `base * 2^(attempt-1)` capped at `max_delay`, and never less than the service's
    /// Retry-After.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        let d = half + Duration::from_millis(jitter);
        d.max(retry_after.unwrap_or_default())
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub sent: u32,
    pub retrying: u32,
    pub gave_up: u32,
    /// Claimed by another sender meanwhile.
    pub skipped: u32,
}

pub struct Outbox {
    store: Arc<dyn Store>,
    pub(crate) tenants: Arc<Tenants>,
    notifiers: HashMap<&'static str, Arc<dyn Notifier>>,
    /// Slack's base URL, for tenants with their own bot token.
    tenant_slack: Option<String>,
    /// The egress client of tenants' own webhook senders (none: one with an empty allow-list).
    webhook_egress: Option<meetbot_egress::Egress>,
    policy: RetryPolicy,
    wake: Wake,
}

/// Tenants with deliveries queued since the worker last looked, and the signal that wakes it.
/// A wake is never lost: the tenant stays in `due` until the worker takes it, and `Notify`
/// keeps one permit when the worker is busy with a round.
#[derive(Default)]
struct Wake {
    due: Mutex<HashSet<TenantId>>,
    notify: tokio::sync::Notify,
}

/// The stable key of one delivery: meeting, channel, and a digest of the target.
pub fn idempotency_key(meeting_id: &str, channel: DeliveryChannel, target: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, target.as_bytes());
    format!(
        "summary:{meeting_id}:{}:{}",
        channel.name(),
        &hex::encode(d.as_ref())[..16]
    )
}

fn id_of(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    format!("dl-{}", &hex::encode(d.as_ref())[..24])
}

impl Outbox {
    pub fn new(store: Arc<dyn Store>, tenants: Arc<Tenants>, policy: RetryPolicy) -> Outbox {
        Outbox {
            store,
            tenants,
            notifiers: HashMap::new(),
            tenant_slack: None,
            webhook_egress: None,
            policy,
            wake: Wake::default(),
        }
    }

    /// Asks this outbox's worker ([`crate::service::run`]) to run `t`'s due deliveries now
    /// instead of at its next poll. [`Outbox::enqueue`] does this for every new delivery.
    pub fn wake(&self, t: &TenantId) {
        self.wake
            .due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t.clone());
        self.wake.notify.notify_one();
    }

    /// The tenants woken since the last call (emptied).
    pub(crate) fn take_woken(&self) -> Vec<TenantId> {
        let mut due = self.wake.due.lock().unwrap_or_else(|e| e.into_inner());
        due.drain().collect()
    }

    /// Resolves once a tenant is woken (at once when one was woken while nobody waited).
    pub(crate) async fn woken(&self) {
        self.wake.notify.notified().await
    }

    /// Tenants' own webhook senders (a tenant with its own signing secret) send through
    /// `egress`; without it, through one that reaches public https addresses only.
    pub fn with_webhook_egress(mut self, egress: meetbot_egress::Egress) -> Outbox {
        self.webhook_egress = Some(egress);
        self
    }

    /// Sends `channel`'s deliveries through `n`.
    pub fn with(mut self, n: Arc<dyn Notifier>) -> Outbox {
        self.notifiers.insert(n.channel().name(), n);
        self
    }

    /// Slack deliveries of a tenant with its own bot token (sealed in its settings) go through
    /// Slack at `base_url` with that token; other tenants use the deployment's sender.
    pub fn with_tenant_slack(mut self, base_url: &str) -> Outbox {
        self.tenant_slack = Some(base_url.to_string());
        self
    }

    /// The tenant's own senders: Slack where it has a bot token (and tenant Slack senders are
    /// on), webhooks where it has its own signing secret. Looked up once per round.
    async fn tenant_senders(
        &self,
        t: &TenantId,
        due: &[Versioned<Delivery>],
    ) -> Result<HashMap<&'static str, Arc<dyn Notifier>>, OutboxError> {
        let mut own: HashMap<&'static str, Arc<dyn Notifier>> = HashMap::new();
        let needs = |c: DeliveryChannel| due.iter().any(|d| d.value.channel == c);
        let (slack, webhook) = (
            needs(DeliveryChannel::Slack),
            needs(DeliveryChannel::Webhook),
        );
        if !slack && !webhook {
            return Ok(own);
        }
        let Some(settings) = self.store.get_tenant_settings(t).await? else {
            return Ok(own);
        };
        let d = &settings.delivery;
        let vault = self.tenants.vault(t).await?;
        let open = |field: &str, sealed| {
            vault.open_string::<meetbot_core::model::TenantSettings>("settings", field, sealed)
        };
        if slack
            && let (Some(base), Some(sealed)) = (&self.tenant_slack, &d.slack_token)
            && let Ok(n) = SlackNotifier::new(base, open("delivery_slack_token", sealed)?.into())
        {
            own.insert(DeliveryChannel::Slack.name(), Arc::new(n));
        }
        if webhook
            && let Some(sealed) = &d.webhook_secret
            && let Some(egress) = match &self.webhook_egress {
                Some(e) => Some(e.clone()),
                None => crate::webhook::WebhookNotifier::egress::<&str>(&[]).ok(),
            }
        {
            let n = crate::webhook::WebhookNotifier::new(
                open("delivery_webhook_secret", sealed)?.into(),
                egress,
            );
            own.insert(DeliveryChannel::Webhook.name(), Arc::new(n));
        }
        Ok(own)
    }

    /// Puts `notice` for `target` in `t`'s outbox, due now, and wakes the worker to send it.
    /// `Ok(false)`: it was already there, or its meeting is deleted or a person stopped its bot
    /// (then nothing is put in).
    pub async fn enqueue(
        &self,
        t: &TenantId,
        channel: DeliveryChannel,
        target: &str,
        notice: &Notice,
    ) -> Result<bool, OutboxError> {
        if let Some(why) =
            meetbot_scheduler::stop::meeting_stopped(&*self.store, t, &notice.meeting_id).await?
        {
            tracing::info!(tenant = %t, meeting = %notice.meeting_id, why, "delivery not enqueued");
            return Ok(false);
        }
        let key = idempotency_key(&notice.meeting_id, channel, target);
        let id = id_of(&key);
        let vault = self.tenants.vault(t).await?;
        let message = serde_json::to_vec(notice)
            .map_err(|e| OutboxError::Corrupt(id.clone(), e.to_string()))?;
        let now = Utc::now();
        let d = Delivery {
            target: vault.seal::<Delivery>(&id, "target", target.as_bytes())?,
            message: vault.seal::<Delivery>(&id, "message", &message)?,
            id,
            idempotency_key: key,
            meeting_id: notice.meeting_id.clone(),
            channel,
            state: DeliveryState::Pending,
            attempts: 0,
            next_at: now,
            last_error: None,
            created_at: now,
        };
        let new = self.store.insert_delivery(t, &d).await?;
        if new {
            self.wake(t);
        }
        Ok(new)
    }

    /// One pass over `t`'s due deliveries (at most `limit`).
    pub async fn run_once(&self, t: &TenantId, limit: u32) -> Result<Round, OutboxError> {
        let now = Utc::now();
        let mut due = self.store.due_deliveries(t, "pending", now, limit).await?;
        // Claims that lapsed: their sender died mid-attempt.
        due.extend(self.store.due_deliveries(t, "sending", now, limit).await?);
        let own = self.tenant_senders(t, &due).await?;
        let mut round = Round::default();
        for d in due {
            let span = meetbot_core::meeting_span!(
                "delivery.attempt",
                t,
                &d.value.meeting_id,
                delivery = %d.value.id,
                channel = ?d.value.channel,
                attempt = d.value.attempts + 1
            );
            match self.attempt(t, d, now, &own).instrument(span).await? {
                Outcome::Sent => round.sent += 1,
                Outcome::Retrying => round.retrying += 1,
                Outcome::GaveUp => round.gave_up += 1,
                Outcome::Skipped => round.skipped += 1,
            }
        }
        Ok(round)
    }

    async fn attempt(
        &self,
        t: &TenantId,
        d: Versioned<Delivery>,
        now: DateTime<Utc>,
        own: &HashMap<&'static str, Arc<dyn Notifier>>,
    ) -> Result<Outcome, OutboxError> {
        let mut claim = d.value.clone();
        claim.state = DeliveryState::Sending;
        claim.attempts += 1;
        claim.next_at = now + chrono::Duration::from_std(self.policy.claim).unwrap_or_default();
        let claimed = match self.store.update_delivery(t, &claim, d.version).await {
            Ok(v) => v,
            Err(StoreError::Conflict { .. }) => return Ok(Outcome::Skipped),
            Err(e) => return Err(e.into()),
        };
        // Checked right before each send: a meeting deleted or stopped since the enqueue sends
        // nothing.
        let stopped =
            meetbot_scheduler::stop::meeting_stopped(&*self.store, t, &claim.meeting_id).await?;
        let result = match own
            .get(claim.channel.name())
            .or(self.notifiers.get(claim.channel.name()))
        {
            _ if stopped.is_some() => Err(NotifyError::Permanent(format!(
                "not sent: {}",
                stopped.unwrap_or_default()
            ))),
            None => Err(NotifyError::Permanent(format!(
                "no {} sender is configured",
                claim.channel.name()
            ))),
            Some(n) => {
                let vault = self.tenants.vault(t).await?;
                let target = vault.open_string::<Delivery>(&claim.id, "target", &claim.target)?;
                let message = vault.open::<Delivery>(&claim.id, "message", &claim.message)?;
                let notice: Notice = serde_json::from_slice(&message)
                    .map_err(|e| OutboxError::Corrupt(claim.id.clone(), e.to_string()))?;
                n.send(&target, &notice, &claim.idempotency_key).await
            }
        };
        let mut done = claim.clone();
        let outcome = match result {
            Ok(()) => {
                done.state = DeliveryState::Sent { at: Utc::now() };
                done.last_error = None;
                Outcome::Sent
            }
            Err(NotifyError::Retry { reason, after })
                if done.attempts < self.policy.max_attempts =>
            {
                done.state = DeliveryState::Pending;
                done.next_at = Utc::now()
                    + chrono::Duration::from_std(self.policy.delay(done.attempts, after))
                        .unwrap_or_default();
                done.last_error = Some(reason);
                Outcome::Retrying
            }
            Err(NotifyError::Retry { reason, .. }) => {
                done.state = DeliveryState::GaveUp {
                    reason: format!("{} attempts failed; the last: {reason}", done.attempts),
                };
                done.last_error = Some(reason);
                Outcome::GaveUp
            }
            Err(NotifyError::Permanent(reason)) => {
                done.state = DeliveryState::GaveUp {
                    reason: reason.clone(),
                };
                done.last_error = Some(reason);
                Outcome::GaveUp
            }
        };
        tracing::info!(
            delivery = %done.id,
            channel = done.channel.name(),
            attempt = done.attempts,
            state = done.state.name(),
            "delivery attempt"
        );
        match self.store.update_delivery(t, &done, claimed).await {
            Ok(_) => Ok(outcome),
            // Our claim lapsed and another sender took it: it records its own outcome.
            Err(StoreError::Conflict { .. }) => Ok(Outcome::Skipped),
            Err(e) => Err(e.into()),
        }
    }
}

enum Outcome {
    Sent,
    Retrying,
    GaveUp,
    Skipped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() {
        let p = RetryPolicy {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        for attempt in 1..=10 {
            let full =
                Duration::from_secs(2 * (1u64 << (attempt - 1))).min(Duration::from_secs(60));
            for _ in 0..50 {
                let d = p.delay(attempt, None);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        assert!(p.delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        // Huge attempt numbers neither overflow nor pass the cap.
        assert!(p.delay(u32::MAX, None) <= Duration::from_secs(60));
    }

    #[test]
    fn the_key_names_meeting_and_channel_and_hides_the_target() {
        let k = idempotency_key("m1", DeliveryChannel::Email, "sarah@example.com");
        assert!(k.starts_with("summary:m1:email:"));
        assert!(!k.contains("sarah"));
        assert_eq!(
            k,
            idempotency_key("m1", DeliveryChannel::Email, "sarah@example.com")
        );
        assert_ne!(
            k,
            idempotency_key("m1", DeliveryChannel::Email, "bob@example.com")
        );
    }
}

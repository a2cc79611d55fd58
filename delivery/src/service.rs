//! The delivery service: the deployment's senders from configuration, a tenant's targets from
//! its sealed settings, enqueuing a summary for every target, and the worker that runs the
//! outbox of every tenant.

use crate::email::{SmtpNotifier, SmtpSecurity, SmtpSettings};
use crate::notice::Notice;
use crate::outbox::{Outbox, OutboxError, RetryPolicy};
use crate::slack::SlackNotifier;
use crate::webhook::WebhookNotifier;
use crate::{Notifier, NotifyError};
use meetbot_core::TenantId;
use meetbot_core::config::DeliveryConfig;
use meetbot_core::model::{DeliveryChannel, TenantSettings, TenantStatus, User};
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use std::sync::Arc;
use std::time::Duration;

/// The senders `cfg` configures (Slack with a token, email with a relay, webhooks with a
/// secret); a channel without one has no sender, and its deliveries give up saying so.
/// Webhooks go through `egress` ([`WebhookNotifier::egress`]).
pub fn senders(
    cfg: &DeliveryConfig,
    egress: &meetbot_egress::Egress,
) -> Result<Vec<Arc<dyn Notifier>>, NotifyError> {
    let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
    if let Some(token) = &cfg.slack_token {
        out.push(Arc::new(SlackNotifier::new(
            &cfg.slack_base_url,
            token.clone().into(),
        )?));
    }
    if let Some(host) = &cfg.smtp_host {
        out.push(Arc::new(SmtpNotifier::new(&SmtpSettings {
            host: host.clone(),
            port: cfg.smtp_port,
            security: match cfg.smtp_security.as_str() {
                "none" => SmtpSecurity::None,
                "tls" => SmtpSecurity::Tls,
                _ => SmtpSecurity::StartTls,
            },
            username: cfg.smtp_username.clone(),
            password: cfg.smtp_password.clone().map(Into::into),
            from: cfg.from.clone(),
            timeout: Duration::from_secs(30),
        })?));
    }
    if let Some(dir) = &cfg.email_dir {
        out.push(Arc::new(crate::email::FileNotifier::new(dir, &cfg.from)?));
    }
    if let Some(secret) = &cfg.webhook_secret {
        out.push(Arc::new(WebhookNotifier::new(
            secret.clone().into(),
            egress.clone(),
        )));
    }
    Ok(out)
}

/// An outbox over `store` sending through the senders `cfg` configures; webhooks (the
/// deployment's and the tenants' own) reach internal addresses only inside `allow_private`
/// (`egress.allow_private`).
pub fn outbox(
    store: Arc<dyn Store>,
    tenants: Arc<Tenants>,
    cfg: &DeliveryConfig,
    allow_private: &[String],
) -> Result<Outbox, NotifyError> {
    let egress = WebhookNotifier::egress(allow_private)?;
    let policy = RetryPolicy {
        max_attempts: cfg.max_attempts,
        ..RetryPolicy::default()
    };
    Ok(senders(cfg, &egress)?
        .into_iter()
        .fold(Outbox::new(store, tenants, policy), |o, n| o.with(n))
        .with_tenant_slack(&cfg.slack_base_url)
        .with_webhook_egress(egress))
}

/// A tenant's targets, opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub slack_channel: Option<String>,
    pub emails: Vec<String>,
    pub webhook_url: Option<String>,
}

impl Targets {
    /// `t`'s targets from its settings (none when it has no settings).
    pub async fn of(
        store: &dyn Store,
        tenants: &Tenants,
        t: &TenantId,
    ) -> Result<Targets, OutboxError> {
        let Some(s) = store.get_tenant_settings(t).await? else {
            return Ok(Targets::default());
        };
        let vault = tenants.vault(t).await?;
        let d = &s.delivery;
        let emails = match &d.emails {
            Some(e) => vault
                .open_string::<TenantSettings>("settings", "delivery_emails", e)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            None => Vec::new(),
        };
        let webhook_url = match &d.webhook_url {
            Some(u) => {
                Some(vault.open_string::<TenantSettings>("settings", "delivery_webhook_url", u)?)
            }
            None => None,
        };
        Ok(Targets {
            slack_channel: d.slack_channel.clone(),
            emails,
            webhook_url,
        })
    }
}

/// The own addresses of the people whose calendars asked a bot for meeting `meeting_id` (every
/// copy of it in the tenant's calendars that still wants one) and who asked for summaries by
/// email (`UserSettings::summary_email`). One who declined, or whose rules did not want the
/// meeting, gets nothing; nor does the owner of another copy whose address the meeting's own
/// attendee list does not name (a copy forged with the same link and UID proves nothing).
pub async fn invitees_by_email(
    store: &dyn Store,
    tenants: &Tenants,
    t: &TenantId,
    meeting_id: &str,
) -> Result<Vec<String>, OutboxError> {
    let Some(m) = store.get_meeting(t, meeting_id).await? else {
        return Ok(Vec::new());
    };
    let vault = tenants.vault(t).await?;
    let people = meetbot_store::retention::people_of(&vault, &m)?;
    let holder = m.id.clone();
    let copies = match &m.meeting_ref {
        Some(r) => store.meetings_with_ref(t, r).await?,
        None => vec![m],
    };
    let mut out = Vec::new();
    for c in copies {
        if c.deleted_at.is_some() || !c.wants_bot {
            continue;
        }
        let Some(conn) = c.connection_id.as_deref() else {
            continue;
        };
        let Some(conn) = store.get_connection(t, conn).await? else {
            continue;
        };
        let asked = store
            .get_user_settings(t, &conn.user_id)
            .await?
            .is_some_and(|s| s.summary_email);
        if !asked {
            continue;
        }
        let Some(user) = store.get_user(t, &conn.user_id).await? else {
            continue;
        };
        let email = vault.open_string::<User>(&user.id, "email", &user.email)?;
        if c.id != holder && !people.iter().any(|p| p.eq_ignore_ascii_case(&email)) {
            continue;
        }
        if !out.contains(&email) {
            out.push(email);
        }
    }
    Ok(out)
}

impl Outbox {
    /// Enqueues `notice` for every target of `t` and the own address of every invitee who asked
    /// for it ([`invitees_by_email`]); returns how many deliveries are new.
    pub async fn enqueue_summary(
        &self,
        store: &dyn Store,
        tenants: &Tenants,
        t: &TenantId,
        notice: &Notice,
    ) -> Result<u32, OutboxError> {
        let targets = Targets::of(store, tenants, t).await?;
        let mut all: Vec<(DeliveryChannel, String)> = Vec::new();
        if let Some(c) = targets.slack_channel {
            all.push((DeliveryChannel::Slack, c));
        }
        all.extend(
            targets
                .emails
                .into_iter()
                .map(|e| (DeliveryChannel::Email, e)),
        );
        if let Some(u) = targets.webhook_url {
            all.push((DeliveryChannel::Webhook, u));
        }
        for e in invitees_by_email(store, tenants, t, &notice.meeting_id).await? {
            if !all
                .iter()
                .any(|(c, x)| *c == DeliveryChannel::Email && x.eq_ignore_ascii_case(&e))
            {
                all.push((DeliveryChannel::Email, e));
            }
        }
        let mut new = 0;
        for (channel, target) in all {
            if self.enqueue(t, channel, &target, notice).await? {
                new += 1;
            }
        }
        Ok(new)
    }
}

/// Runs the outbox of every active tenant every `every` until `stop` resolves, and the outbox
/// of a woken tenant ([`Outbox::wake`], every new delivery) at once. Wake-ups do not move the
/// poll: it stays the safety net for retries, lapsed claims and other processes' deliveries.
pub async fn run(
    outbox: Arc<Outbox>,
    store: Arc<dyn Store>,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut next_poll = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_poll {
            // Woken tenants are all in this round too.
            outbox.take_woken();
            match store.list_tenants().await {
                Ok(ts) => {
                    for t in ts.iter().filter(|t| t.status == TenantStatus::Active) {
                        round(&outbox, &*store, &t.id).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list tenants for delivery"),
            }
            next_poll = tokio::time::Instant::now() + every;
        }
        let woken = outbox.take_woken();
        if !woken.is_empty() {
            for t in &woken {
                round(&outbox, &*store, t).await;
            }
            continue;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep_until(next_poll) => {}
            _ = outbox.woken() => {}
        }
    }
}

/// One tenant's round: its due deliveries, then (a customer-held-key tenant) its delivered
/// meetings sealed to its key.
async fn round(outbox: &Outbox, store: &dyn Store, t: &TenantId) {
    match outbox.run_once(t, 100).await {
        Ok(r) if r.sent + r.gave_up > 0 => {
            tracing::info!(tenant = %t, sent = r.sent, retrying = r.retrying, gave_up = r.gave_up, "delivery round")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(tenant = %t, error = %e, "delivery round failed"),
    }
    if let Err(e) = crate::hold::hold_delivered(store, &outbox.tenants, t).await {
        tracing::warn!(tenant = %t, error = %e, "customer-key sealing failed");
    }
}

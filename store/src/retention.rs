//! Retention: records whose `expires_at` has passed are hidden from every read at once (both
//! engines filter on it) and removed by a purge. MongoDB's TTL indexes also remove them (within
//! about a minute); the embedded store has only this purge, which deletes with SQLite's
//! `secure_delete` on and truncates the WAL, so the bytes leave the file too.
//!
//! [`run`] purges every active tenant every `every`, under a lease so that one replica does it
//! at a time, and logs and audits each purge that removed something (counts only).

use crate::vault::{TenantVault, Tenants, VaultError};
use crate::{Result, Store};
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{
    AuditEvent, Meeting, RetentionRule, TenantSettings, TenantStatus, retention_days,
};
use std::sync::Arc;
use std::time::Duration;

const LEASE: &str = "retention-purge";

/// The retention rules in a tenant's settings, opened.
pub fn rules_of(vault: &TenantVault, s: &TenantSettings) -> Result<Vec<RetentionRule>, VaultError> {
    let Some(sealed) = &s.retention_rules else {
        return Ok(Vec::new());
    };
    let raw = vault.open::<TenantSettings>("settings", "retention_rules", sealed)?;
    serde_json::from_slice(&raw).map_err(|e| VaultError::Malformed(format!("retention rules: {e}")))
}

/// The addresses of a meeting's organizer and attendees.
pub fn people_of(vault: &TenantVault, m: &Meeting) -> Result<Vec<String>, VaultError> {
    let raw = vault.open::<Meeting>(&m.id, "attendees", &m.attendees)?;
    let people: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    Ok(people["attendees"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["email"].as_str())
        .chain(people["organizer"].as_str())
        .map(str::to_string)
        .collect())
}

/// A tenant's retention policy: its days and its rules, opened once.
pub struct Policy {
    rules: Vec<RetentionRule>,
    transcript_days: Option<u32>,
    summary_days: Option<u32>,
}

impl Policy {
    /// The policy of a tenant's `settings` (`default_transcript_days`: the transcriber's, when
    /// the tenant set none).
    pub fn of(
        vault: &TenantVault,
        settings: Option<&TenantSettings>,
        default_transcript_days: Option<u32>,
    ) -> Result<Policy, VaultError> {
        Ok(Policy {
            rules: match settings {
                Some(s) => rules_of(vault, s)?,
                None => Vec::new(),
            },
            transcript_days: settings
                .and_then(|s| s.transcript_retention_days)
                .or(default_transcript_days),
            summary_days: settings.and_then(|s| s.summary_retention_days),
        })
    }

    /// Days a meeting's transcript and summary are kept; `None`: until deleted. The meeting is
    /// read only when there are rules to match.
    pub async fn days_for_meeting(
        &self,
        store: &dyn Store,
        vault: &TenantVault,
        t: &TenantId,
        meeting_id: &str,
    ) -> Result<(Option<u32>, Option<u32>), VaultError> {
        let (people, series) = match (
            self.rules.is_empty(),
            store.get_meeting(t, meeting_id).await?,
        ) {
            (false, Some(m)) => (people_of(vault, &m)?, m.series_id),
            _ => (Vec::new(), None),
        };
        Ok(retention_days(
            self.transcript_days,
            self.summary_days,
            &self.rules,
            &people,
            series.as_deref(),
        ))
    }
}

/// When a record stored at `created` expires under `days` (`None`: never).
pub fn expiry(created: DateTime<Utc>, days: Option<u32>) -> Option<DateTime<Utc>> {
    days.map(|d| created + chrono::Duration::days(i64::from(d)))
}

/// Stamps every transcript and summary of a tenant with the expiry its current policy gives
/// (from when each was stored), so a changed policy reaches what is already held; the purge
/// then removes what is past it. Returns how many records changed.
pub async fn restamp(
    tenants: &Tenants,
    t: &TenantId,
    default_transcript_days: Option<u32>,
) -> Result<u64, VaultError> {
    let store = tenants.store();
    let vault = tenants.vault(t).await?;
    let settings = store.get_tenant_settings(t).await?;
    let policy = Policy::of(&vault, settings.as_ref(), default_transcript_days)?;
    // A meeting's transcript and summary share its days: each meeting is read once.
    let mut days = std::collections::HashMap::new();
    let mut days_of = async |meeting_id: &str| -> Result<(Option<u32>, Option<u32>), VaultError> {
        if let Some(d) = days.get(meeting_id) {
            return Ok(*d);
        }
        let d = policy
            .days_for_meeting(&**store, &vault, t, meeting_id)
            .await?;
        days.insert(meeting_id.to_string(), d);
        Ok(d)
    };
    let mut changed = 0;
    for mut tr in store.list_transcripts(t).await? {
        let want = expiry(tr.created_at, days_of(&tr.meeting_id).await?.0);
        if tr.expires_at != want {
            tr.expires_at = want;
            store.put_transcript(t, &tr).await?;
            changed += 1;
        }
    }
    for mut sm in store.list_summaries(t).await? {
        let want = expiry(sm.created_at, days_of(&sm.meeting_id).await?.1);
        if sm.expires_at != want {
            sm.expires_at = want;
            store.put_summary(t, &sm).await?;
            changed += 1;
        }
    }
    if changed > 0 {
        tracing::info!(tenant = %t, records = changed, "retention policy applied to stored records");
    }
    Ok(changed)
}

/// What one tenant's purge removed, per collection (only collections with removals).
pub type Purged = Vec<(String, u64)>;

/// How long a soft-deleted session can be restored before the purge erases it.
pub const RECOVERY_WINDOW: chrono::Duration = chrono::Duration::days(30);

/// Purges every active tenant once: expired records, and sessions soft-deleted longer than
/// [`RECOVERY_WINDOW`] ago (each with its deletion receipt); returns the tenants where
/// something was removed.
pub async fn purge_all(store: &dyn Store, now: DateTime<Utc>) -> Result<Vec<(TenantId, Purged)>> {
    let mut out = Vec::new();
    for t in store.list_tenants().await? {
        if t.status != TenantStatus::Active {
            continue;
        }
        let mut removed: Purged = store
            .purge_expired(&t.id, now)
            .await?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        let erased = crate::erase::purge_deleted(store, &t.id, now - RECOVERY_WINDOW).await?;
        if !erased.is_empty() {
            removed.push(("deleted_sessions".into(), erased.len() as u64));
        }
        if removed.is_empty() {
            continue;
        }
        let what = removed
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(tenant = %t.id, removed = %what, "retention purge");
        store
            .append_audit(
                &t.id,
                &AuditEvent::new("system:retention", "retention.purge", what),
            )
            .await?;
        out.push((t.id, removed));
    }
    Ok(out)
}

/// Purges every `every` until `stop` resolves (one replica at a time, by lease).
pub async fn run(
    store: Arc<dyn Store>,
    every: Duration,
    holder: String,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        match store.try_lease(LEASE, &holder, every * 3).await {
            Ok(true) => {
                if let Err(e) = purge_all(&*store, Utc::now()).await {
                    tracing::warn!(error = %e, "retention purge failed; retried next round");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "retention lease unavailable"),
        }
    }
    let _ = store.release_lease(LEASE, &holder).await;
}

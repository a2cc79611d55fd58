//! Retention: records whose `expires_at` has passed are hidden from every read at once (both
//! engines filter on it) and removed by a purge. MongoDB's TTL indexes also remove them (within
//! about a minute); the embedded store has only this purge, which deletes with SQLite's
//! `secure_delete` on and truncates the WAL, so the bytes leave the file too.
//!
//! [`run`] purges every active tenant every `every`, under a lease so that one replica does it
//! at a time, and logs and audits each purge that removed something (counts only).

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{AuditEvent, TenantStatus};
use std::sync::Arc;
use std::time::Duration;

const LEASE: &str = "retention-purge";

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

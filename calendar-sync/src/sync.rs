//! One sync round of a Microsoft calendar connection: incremental from its stored deltaLink (or
//! full over the window), a full resync when Graph has forgotten the state, the events applied to
//! the tenant store, and the new deltaLink saved on the connection.

use crate::apply::{ApplyError, ApplyReport, Target, apply};
use crate::graph::{GraphClient, GraphError};
use crate::rules::AutoJoinRules;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::CalendarConnection;
use meetbot_store::StoreError;
use meetbot_store::vault::{Tenants, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("calendar connection {0} not found")]
    NoConnection(String),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub full: bool,
    /// A stored deltaLink was refused (410) and a full round replaced it.
    pub resynced: bool,
    pub events: u64,
    pub pages: u32,
    pub applied: ApplyReport,
}

/// Runs one round for connection `connection_id` of `tenant`.
pub async fn sync_microsoft(
    graph: &GraphClient,
    tenants: &Tenants,
    tenant: &TenantId,
    connection_id: &str,
    rules: &AutoJoinRules,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<SyncReport, SyncError> {
    let store = tenants.store();
    let mut conn: CalendarConnection = store
        .get_connection(tenant, connection_id)
        .await?
        .ok_or_else(|| SyncError::NoConnection(connection_id.into()))?;
    let vault = tenants.vault(tenant).await?;
    let token = vault.open::<CalendarConnection>(&conn.id, "access_token", &conn.access_token)?;
    let token = String::from_utf8_lossy(&token).into_owned();
    let user_email =
        vault.open::<CalendarConnection>(&conn.id, "account_email", &conn.account_email)?;
    let user_email = String::from_utf8_lossy(&user_email).into_owned();

    let mut report = SyncReport {
        full: conn.sync_cursor.is_none(),
        ..Default::default()
    };
    let round = match graph
        .calendar_view_delta(&token, conn.sync_cursor.as_deref(), window.0, window.1)
        .await
    {
        Err(GraphError::ResyncRequired) => {
            tracing::info!(tenant = %tenant, connection = %conn.id, "sync state gone (410); full resync");
            report.full = true;
            report.resynced = true;
            graph
                .calendar_view_delta(&token, None, window.0, window.1)
                .await?
        }
        other => other?,
    };
    report.events = round.events.len() as u64;
    report.pages = round.pages;
    let target = Target {
        tenants,
        tenant,
        connection_id: &conn.id,
        user_email: &user_email,
        rules,
    };
    report.applied = apply(&target, &round.events).await?;
    conn.sync_cursor = Some(round.delta_link);
    conn.updated_at = Utc::now();
    store.put_connection(tenant, &conn).await?;
    Ok(report)
}

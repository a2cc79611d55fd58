//! One sync round of a calendar connection: incremental from its stored cursor (Graph deltaLink,
//! Google syncToken) or full over the window, a full resync when the provider has forgotten the
//! cursor, the events applied to the tenant store, and the new cursor saved on the connection.

use crate::apply::{ApplyError, ApplyReport, Target, apply};
use crate::google::{GoogleClient, GoogleError};
use crate::graph::{GraphClient, GraphError};
use crate::normalize::NormalizedEvent;
use crate::rules::AutoJoinRules;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::CalendarConnection;
use meetbot_store::StoreError;
use meetbot_store::vault::{Tenants, VaultError};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    #[error("calendar connection {0} not found")]
    NoConnection(String),
    #[error("the stored auto-join rules of user {0} are unreadable: {1}")]
    Rules(String, String),
    #[error(transparent)]
    Ics(#[from] crate::ics::IcsError),
}

impl SyncError {
    /// The provider asked to slow down: its status and how long to wait, if it said.
    pub fn throttled(&self) -> Option<(u16, Option<Duration>)> {
        match self {
            SyncError::Graph(GraphError::Throttled {
                status,
                retry_after,
            })
            | SyncError::Google(GoogleError::Throttled {
                status,
                retry_after,
            }) => Some((*status, *retry_after)),
            _ => None,
        }
    }

    /// The provider refused the access token (401).
    pub fn unauthorized(&self) -> bool {
        matches!(
            self,
            SyncError::Graph(GraphError::Unauthorized)
                | SyncError::Google(GoogleError::Unauthorized)
        )
    }

    fn resync_required(&self) -> bool {
        matches!(
            self,
            SyncError::Graph(GraphError::ResyncRequired)
                | SyncError::Google(GoogleError::ResyncRequired)
        )
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub full: bool,
    /// A stored cursor was refused (410) and a full round replaced it.
    pub resynced: bool,
    pub events: u64,
    pub pages: u32,
    pub applied: ApplyReport,
}

/// The provider client a round runs on.
#[derive(Clone, Copy)]
pub enum Provider<'a> {
    Microsoft(&'a GraphClient),
    Google(&'a GoogleClient),
    /// An ICS feed: the connection's "token" is the feed's address.
    Ics(&'a crate::ics::IcsClient),
}

struct Round {
    events: Vec<NormalizedEvent>,
    cursor: String,
    pages: u32,
    /// The events are the whole calendar in the window: meetings missing from them are gone.
    snapshot: bool,
}

async fn round(
    p: Provider<'_>,
    token: &str,
    cursor: Option<&str>,
    window: (DateTime<Utc>, DateTime<Utc>),
    user_email: &str,
) -> Result<Round, SyncError> {
    Ok(match p {
        Provider::Ics(c) => match c.fetch(token, cursor).await? {
            crate::ics::Fetched::Unchanged => Round {
                events: vec![],
                cursor: cursor.unwrap_or_default().to_string(),
                pages: 1,
                snapshot: false,
            },
            crate::ics::Fetched::Changed { text, cursor } => Round {
                events: crate::ics::parse_feed(&text, user_email, window)
                    .map_err(crate::ics::IcsError::Parse)?,
                cursor,
                pages: 1,
                snapshot: true,
            },
        },
        Provider::Microsoft(g) => {
            let r = g
                .calendar_view_delta(token, cursor, window.0, window.1)
                .await?;
            Round {
                events: r.events,
                cursor: r.delta_link,
                pages: r.pages,
                snapshot: false,
            }
        }
        Provider::Google(g) => {
            let r = g.events_round(token, cursor, window.0, window.1).await?;
            Round {
                events: r.events,
                cursor: r.next_sync_token,
                pages: r.pages,
                snapshot: false,
            }
        }
    })
}

/// Runs one round for connection `connection_id` of `tenant` with `token` (the stored access
/// token when `None`). The connection's user's own auto-join rules apply; `default_rules` where
/// the user has none.
pub async fn sync_connection(
    provider: Provider<'_>,
    tenants: &Tenants,
    tenant: &TenantId,
    connection_id: &str,
    token: Option<SecretString>,
    default_rules: &AutoJoinRules,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<SyncReport, SyncError> {
    let store = tenants.store();
    let mut conn: CalendarConnection = store
        .get_connection(tenant, connection_id)
        .await?
        .ok_or_else(|| SyncError::NoConnection(connection_id.into()))?;
    let vault = tenants.vault(tenant).await?;
    let token = match token {
        Some(t) => t.expose_secret().to_string(),
        None => {
            vault.open_string::<CalendarConnection>(&conn.id, "access_token", &conn.access_token)?
        }
    };
    let rules = crate::rules::rules_for(tenants, tenant, &conn.user_id)
        .await?
        .unwrap_or_else(|| default_rules.clone());
    let rules = &rules;
    let user_email =
        vault.open_string::<CalendarConnection>(&conn.id, "account_email", &conn.account_email)?;

    let mut report = SyncReport {
        full: conn.sync_cursor.is_none(),
        ..Default::default()
    };
    let mut r = match round(
        provider,
        &token,
        conn.sync_cursor.as_deref(),
        window,
        &user_email,
    )
    .await
    {
        Err(e) if e.resync_required() => {
            tracing::info!(tenant = %tenant, connection = %conn.id, "sync cursor gone (410); full resync");
            report.full = true;
            report.resynced = true;
            round(provider, &token, None, window, &user_email).await?
        }
        other => other?,
    };
    if r.snapshot {
        // A meeting of this connection in the window that the snapshot no longer has was
        // deleted from the calendar.
        let present: std::collections::HashSet<&str> =
            r.events.iter().map(|e| e.instance_id.as_str()).collect();
        let mut gone = Vec::new();
        for m in store
            .list_meetings(tenant, Some(window.0), Some(window.1))
            .await?
        {
            if m.connection_id.as_deref() == Some(conn.id.as_str())
                && m.status != meetbot_core::model::MeetingStatus::Cancelled
                && !present.contains(m.event_instance_id.as_str())
            {
                gone.push(crate::normalize::NormalizedEvent::removal(
                    conn.provider,
                    m.event_instance_id.clone(),
                ));
            }
        }
        r.events.extend(gone);
    }
    report.events = r.events.len() as u64;
    report.pages = r.pages;
    let target = Target {
        tenants,
        tenant,
        connection_id: &conn.id,
        user_email: &user_email,
        rules,
    };
    report.applied = apply(&target, &r.events).await?;
    conn.sync_cursor = Some(r.cursor);
    conn.updated_at = Utc::now();
    store.put_connection(tenant, &conn).await?;
    Ok(report)
}

/// [`sync_connection`] for a Microsoft connection.
pub async fn sync_microsoft(
    graph: &GraphClient,
    tenants: &Tenants,
    tenant: &TenantId,
    connection_id: &str,
    rules: &AutoJoinRules,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<SyncReport, SyncError> {
    sync_connection(
        Provider::Microsoft(graph),
        tenants,
        tenant,
        connection_id,
        None,
        rules,
        window,
    )
    .await
}

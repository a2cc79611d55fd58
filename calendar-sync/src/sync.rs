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
    /// A cap on one round's work was reached (any provider): the round is refused.
    #[error(transparent)]
    Limit(crate::normalize::ParseError),
    #[error("this user has {0} calendar connections already (the limit): disconnect one first")]
    TooManyConnections(usize),
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

    /// Why the round failed, as shown on the connection: no addresses, no event contents.
    pub fn reason(&self) -> String {
        use crate::ics::IcsError;
        use crate::normalize::ParseError;
        match self {
            SyncError::Ics(IcsError::Parse(ParseError::Field { field, .. })) => {
                format!("ICS feed: an event's {field} cannot be read")
            }
            SyncError::Ics(IcsError::Parse(ParseError::Json(_))) => {
                "ICS feed: not an iCalendar feed".into()
            }
            SyncError::Ics(e) => e.to_string(),
            SyncError::Limit(e) => e.to_string(),
            e if e.throttled().is_some() => {
                "the calendar provider asked to slow down; retried later".into()
            }
            e if e.unauthorized() => "the calendar provider refused the access token".into(),
            SyncError::OAuth(_) => "the calendar's authorization failed; reconnect it".into(),
            _ => "the calendar could not be synced; it is retried at the next poll".into(),
        }
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
    /// The round stopped at its cap before the provider's last page; the stored cursor
    /// continues it (see [`continues_a_cut_round`]).
    pub cut: bool,
    /// Events of an ICS feed that could not be read: left as they were (not taken for
    /// deleted), each error naming the UID and field; the rest of the feed was applied.
    pub skipped: Vec<String>,
}

/// The provider client a round runs on.
#[derive(Clone, Copy)]
pub enum Provider<'a> {
    Microsoft(&'a GraphClient),
    Google(&'a GoogleClient),
    /// An ICS feed: the connection's "token" is the feed's address.
    Ics(&'a crate::ics::IcsClient),
}

/// What one round may cost: the caps that keep one calendar from taking a worker's memory and
/// time (and with it every other tenant's sync).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundLimits {
    /// Reading an ICS feed.
    pub feed: crate::ics::FeedLimits,
    /// Events (and removals) one round may apply, for every provider.
    pub max_events: usize,
}

impl Default for RoundLimits {
    fn default() -> Self {
        RoundLimits {
            feed: crate::ics::FeedLimits::default(),
            max_events: 10_000,
        }
    }
}

/// How a Google or Graph round pages within [`RoundLimits::max_events`]: pages of at most
/// `min(client page size, max_events)` events, and at most `max_events / that` pages (at least
/// one). An honest provider's round so never reads more than `max_events` events, and short or
/// empty pages cannot make it follow links for ever: at the budget it stops following the next
/// link and the round's cursor becomes that link, so the next round reads on from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBudget {
    pub page_size: usize,
    pub max_pages: u32,
}

impl PageBudget {
    pub fn new(page_size: usize, max_events: usize) -> Self {
        let max_events = max_events.max(1);
        let page_size = page_size.clamp(1, max_events);
        PageBudget {
            page_size,
            max_pages: u32::try_from(max_events / page_size)
                .unwrap_or(u32::MAX)
                .max(1),
        }
    }

    /// After `pages` pages holding `events` events, no further page may be read.
    pub fn spent(&self, pages: u32, events: usize) -> bool {
        pages >= self.max_pages || events >= self.page_size * self.max_pages as usize
    }
}

/// Marks a stored cursor that continues a round cut at its budget (a nextLink, or a Google
/// continuation) rather than starting a new one: the worker polls such a connection even while
/// push is live, since no change notification will come for what is still unread.
const CUT: &str = "cut:";

/// The connection's stored cursor continues a round cut at its cap.
pub fn continues_a_cut_round(cursor: Option<&str>) -> bool {
    cursor.is_some_and(|c| c.starts_with(CUT))
}

struct Round {
    events: Vec<NormalizedEvent>,
    cursor: String,
    pages: u32,
    /// The events are the whole calendar in the window: meetings missing from them are gone.
    snapshot: bool,
    /// Stopped at the page budget; `cursor` continues it.
    cut: bool,
    /// A snapshot's events that could not be read (their meetings are kept as they are).
    unreadable: crate::ics::Feed,
}

async fn round(
    p: Provider<'_>,
    token: &str,
    cursor: Option<&str>,
    window: (DateTime<Utc>, DateTime<Utc>),
    user_email: &str,
    limits: &RoundLimits,
) -> Result<Round, SyncError> {
    let cursor = cursor.map(|c| c.strip_prefix(CUT).unwrap_or(c));
    Ok(match p {
        Provider::Ics(c) => match c.fetch(token, cursor).await? {
            crate::ics::Fetched::Unchanged => Round {
                events: vec![],
                cursor: cursor.unwrap_or_default().to_string(),
                pages: 1,
                snapshot: false,
                cut: false,
                unreadable: Default::default(),
            },
            crate::ics::Fetched::Changed { text, cursor } => {
                // Parsed on a blocking thread (bounded by `limits.feed`), so a slow feed does
                // not hold up the runtime; a panic in a parser is this feed's error, not the
                // worker's end.
                let (user, feed) = (user_email.to_string(), limits.feed);
                let mut read = tokio::task::spawn_blocking(move || {
                    crate::ics::read_feed_within(&text, &user, window, feed)
                })
                .await
                .map_err(|_| {
                    crate::ics::IcsError::Parse(crate::normalize::ParseError::Shape {
                        provider: "ics",
                        detail: "the feed could not be read".into(),
                    })
                })?
                .map_err(crate::ics::IcsError::Parse)?;
                Round {
                    events: std::mem::take(&mut read.events),
                    cursor,
                    pages: 1,
                    snapshot: true,
                    cut: false,
                    unreadable: read,
                }
            }
        },
        Provider::Microsoft(g) => {
            let r = g
                .calendar_view_delta(token, cursor, window.0, window.1, limits.max_events)
                .await?;
            Round {
                events: r.events,
                cursor: r.next,
                pages: r.pages,
                snapshot: false,
                cut: r.cut,
                unreadable: Default::default(),
            }
        }
        Provider::Google(g) => {
            let r = g
                .events_round(token, cursor, window.0, window.1, limits.max_events)
                .await?;
            Round {
                events: r.events,
                cursor: r.next,
                pages: r.pages,
                snapshot: false,
                cut: r.cut,
                unreadable: Default::default(),
            }
        }
    })
}

/// Runs one round for connection `connection_id` of `tenant` with `token` (the stored access
/// token when `None`). The connection's user's own auto-join rules apply; `default_rules` where
/// the user has none. Within the default [`RoundLimits`].
pub async fn sync_connection(
    provider: Provider<'_>,
    tenants: &Tenants,
    tenant: &TenantId,
    connection_id: &str,
    token: Option<SecretString>,
    default_rules: &AutoJoinRules,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<SyncReport, SyncError> {
    sync_connection_within(
        provider,
        tenants,
        tenant,
        connection_id,
        token,
        default_rules,
        window,
        &RoundLimits::default(),
    )
    .await
}

/// [`sync_connection`] within `limits`: a round over a cap is refused before anything of it
/// is applied (the stored cursor stays, so the next round sees the calendar again). Google and
/// Graph rounds stop following pages at their [`PageBudget`] instead: what was read is applied
/// and the cursor saved is where reading stopped (never the sync token or deltaLink past it),
/// so the next round reads on; only a page larger than asked for can still pass the cap, and
/// that round is refused.
#[allow(clippy::too_many_arguments)]
pub async fn sync_connection_within(
    provider: Provider<'_>,
    tenants: &Tenants,
    tenant: &TenantId,
    connection_id: &str,
    token: Option<SecretString>,
    default_rules: &AutoJoinRules,
    window: (DateTime<Utc>, DateTime<Utc>),
    limits: &RoundLimits,
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
        limits,
    )
    .await
    {
        Err(e) if e.resync_required() => {
            tracing::info!(tenant = %tenant, connection = %conn.id, "sync cursor gone (410); full resync");
            report.full = true;
            report.resynced = true;
            round(provider, &token, None, window, &user_email, limits).await?
        }
        other => other?,
    };
    let too_many = || {
        SyncError::Limit(crate::normalize::ParseError::Limit {
            what: "events in one sync round",
            limit: limits.max_events,
        })
    };
    if r.events.len() > limits.max_events {
        return Err(too_many());
    }
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
                && !r.unreadable.is_unreadable(&m.event_instance_id)
            {
                gone.push(crate::normalize::NormalizedEvent::removal(
                    conn.provider,
                    m.event_instance_id.clone(),
                ));
            }
        }
        r.events.extend(gone);
        if r.events.len() > limits.max_events {
            return Err(too_many());
        }
    }
    report.events = r.events.len() as u64;
    report.skipped = r
        .unreadable
        .errors
        .iter()
        .take(20)
        .map(|e| e.to_string())
        .collect();
    if !r.unreadable.errors.is_empty() {
        // Counts only: the errors name UIDs, which the connection's record keeps.
        tracing::warn!(
            tenant = %tenant,
            connection = %conn.id,
            unreadable = r.unreadable.errors.len(),
            "events of the feed could not be read and were left as they were; the rest was synced"
        );
    }
    report.pages = r.pages;
    report.cut = r.cut;
    if r.cut {
        // Ids and counts only.
        tracing::warn!(
            tenant = %tenant,
            connection = %conn.id,
            events = report.events,
            pages = report.pages,
            "sync round stopped at its cap (calendar.max_events_per_round); the next round reads on from there"
        );
    }
    let target = Target {
        tenants,
        tenant,
        connection_id: &conn.id,
        user_email: &user_email,
        rules,
    };
    report.applied = apply(&target, &r.events).await?;
    conn.sync_cursor = Some(if r.cut {
        format!("{CUT}{}", r.cursor)
    } else {
        r.cursor
    });
    conn.updated_at = Utc::now();
    conn.last_sync = Some(meetbot_core::model::SyncOutcome {
        at: conn.updated_at,
        events: report.events,
        error: None,
        skipped: report.skipped.clone(),
    });
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

#[cfg(test)]
mod tests {
    use super::PageBudget;
    use proptest::prelude::*;

    proptest! {
        /// Full pages of the size asked for never take a round past its cap, and every round
        /// reads at least one page; any provider's answer costs at most `max_pages` requests.
        #[test]
        fn a_page_budget_keeps_an_honest_providers_round_within_the_cap(
            page in 1usize..3000,
            cap in 1usize..50_000,
        ) {
            let b = PageBudget::new(page, cap);
            prop_assert!(b.page_size >= 1 && b.page_size <= page.min(cap));
            prop_assert!(b.max_pages >= 1);
            prop_assert!(b.page_size * b.max_pages as usize <= cap);
            // Short or empty pages end the round at the page count all the same.
            prop_assert!(b.spent(b.max_pages, 0));
            prop_assert!(!b.spent(b.max_pages - 1, 0) || b.max_pages == 1);
        }
    }
}

//! Per-user auto-join rules: which meetings get a bot. Every "no" carries its reason, which is
//! recorded with the meeting so a user can see why a bot did not come.

use crate::normalize::{NormalizedEvent, Response};
use crate::sync::SyncError;
use meetbot_core::TenantId;
use meetbot_core::model::{MeetingStatus, UserSettings};
use meetbot_store::vault::Tenants;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// Every meeting with a link.
    #[default]
    AllWithLink,
    /// Only meetings the user organises.
    OrganizedByMe,
    /// Only meetings with at least one attendee outside the user's organisation.
    WithExternalAttendees,
    /// Only meetings the user has accepted.
    AcceptedOnly,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AutoJoinRules {
    pub mode: JoinMode,
    /// If not empty, the title must contain one of these (case-insensitive).
    pub include_keywords: Vec<String>,
    /// The title must contain none of these (case-insensitive); wins over `include_keywords`.
    pub exclude_keywords: Vec<String>,
    /// The user's organisation's email domains (for `WithExternalAttendees`); the user's own
    /// domain always counts as internal.
    pub internal_domains: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub join: bool,
    pub reason: String,
}

impl Decision {
    fn no(reason: impl Into<String>) -> Self {
        Decision {
            join: false,
            reason: reason.into(),
        }
    }
}

fn domain(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

impl AutoJoinRules {
    /// Whether a bot should join `ev` for the user whose address is `user_email`.
    pub fn decide(&self, ev: &NormalizedEvent, user_email: &str) -> Decision {
        let user = user_email.to_ascii_lowercase();
        if ev.removed || ev.status == MeetingStatus::Cancelled {
            return Decision::no("cancelled");
        }
        if ev.link.is_none() {
            return Decision::no("no meeting link");
        }
        if ev.all_day {
            return Decision::no("all-day event");
        }
        if ev.self_response == Response::Declined {
            return Decision::no("you declined");
        }
        let title = ev.title.to_lowercase();
        if let Some(k) = self
            .exclude_keywords
            .iter()
            .find(|k| !k.is_empty() && title.contains(&k.to_lowercase()))
        {
            return Decision::no(format!("title contains excluded keyword {k:?}"));
        }
        if !self.include_keywords.is_empty()
            && !self
                .include_keywords
                .iter()
                .any(|k| title.contains(&k.to_lowercase()))
        {
            return Decision::no("title contains none of the included keywords");
        }
        let organizer_is_user = ev.organizer_email.as_deref() == Some(user.as_str())
            || ev
                .attendees
                .iter()
                .any(|a| a.organizer && (a.is_self || a.email == user));
        match self.mode {
            JoinMode::AllWithLink => {}
            JoinMode::OrganizedByMe if !organizer_is_user => {
                return Decision::no("you do not organise it");
            }
            JoinMode::OrganizedByMe => {}
            JoinMode::WithExternalAttendees => {
                let own = domain(&user).to_string();
                let internal = |d: &str| {
                    d == own
                        || self
                            .internal_domains
                            .iter()
                            .any(|i| i.eq_ignore_ascii_case(d))
                };
                if !ev
                    .attendees
                    .iter()
                    .any(|a| !a.resource && !internal(domain(&a.email)))
                {
                    return Decision::no("no external attendees");
                }
            }
            JoinMode::AcceptedOnly => {
                if !(ev.self_response == Response::Accepted || organizer_is_user) {
                    return Decision::no("you have not accepted");
                }
            }
        }
        Decision {
            join: true,
            reason: "matches your auto-join rules".into(),
        }
    }
}

/// The auto-join rules `user_id` saved, if any (sealed in the user's settings).
pub async fn rules_for(
    tenants: &Tenants,
    t: &TenantId,
    user_id: &str,
) -> Result<Option<AutoJoinRules>, SyncError> {
    let Some(s) = tenants.store().get_user_settings(t, user_id).await? else {
        return Ok(None);
    };
    let vault = tenants.vault(t).await?;
    let json = vault.open_string::<UserSettings>(user_id, "auto_join", &s.auto_join)?;
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| SyncError::Rules(user_id.into(), e.to_string()))
}

/// Sets whether `user_id` gets the summaries of their meetings by email; their auto-join rules
/// stay as they are (the default ones, sealed, if they never saved any).
pub async fn save_summary_email(
    tenants: &Tenants,
    t: &TenantId,
    user_id: &str,
    on: bool,
) -> Result<(), SyncError> {
    let store = tenants.store();
    let s = match store.get_user_settings(t, user_id).await? {
        Some(s) => UserSettings {
            summary_email: on,
            updated_at: chrono::Utc::now(),
            ..s
        },
        None => {
            let vault = tenants.vault(t).await?;
            let json = serde_json::to_vec(&AutoJoinRules::default())
                .map_err(|e| SyncError::Rules(user_id.into(), e.to_string()))?;
            UserSettings {
                user_id: user_id.into(),
                auto_join: vault.seal::<UserSettings>(user_id, "auto_join", &json)?,
                summary_email: on,
                updated_at: chrono::Utc::now(),
            }
        }
    };
    store.put_user_settings(t, &s).await?;
    Ok(())
}

/// Saves `user_id`'s auto-join rules; the next sync round of each of the user's calendars
/// re-decides every meeting under them.
pub async fn save_rules(
    tenants: &Tenants,
    t: &TenantId,
    user_id: &str,
    rules: &AutoJoinRules,
) -> Result<(), SyncError> {
    let vault = tenants.vault(t).await?;
    let json =
        serde_json::to_vec(rules).map_err(|e| SyncError::Rules(user_id.into(), e.to_string()))?;
    let store = tenants.store();
    let s = UserSettings {
        user_id: user_id.into(),
        auto_join: vault.seal::<UserSettings>(user_id, "auto_join", &json)?,
        summary_email: store
            .get_user_settings(t, user_id)
            .await?
            .is_some_and(|s| s.summary_email),
        updated_at: chrono::Utc::now(),
    };
    store.put_user_settings(t, &s).await?;
    // Unchanged events are not re-sent by an incremental round: the next round of each of the
    // user's calendars is a full one, so every meeting is decided again under the new rules.
    for mut c in store.list_connections(t).await? {
        if c.user_id == user_id && c.sync_cursor.is_some() {
            c.sync_cursor = None;
            store.put_connection(t, &c).await?;
        }
    }
    Ok(())
}

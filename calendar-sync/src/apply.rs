//! Applying normalised events of one calendar connection to the tenant's store: each event
//! instance becomes one meeting record (same id on every sync), sealed, with the user's auto-join
//! decision; removed instances are marked cancelled. The scheduler reads the result.

use crate::normalize::{Attendee, NormalizedEvent, Response};
use crate::rules::AutoJoinRules;
use chrono::Utc;
use meetbot_core::TenantId;
use meetbot_core::model::{Meeting, MeetingStatus};
use meetbot_store::StoreError;
use meetbot_store::vault::{TenantVault, Tenants, VaultError};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// Whose calendar the events come from.
pub struct Target<'a> {
    pub tenants: &'a Tenants,
    pub tenant: &'a TenantId,
    pub connection_id: &'a str,
    /// The connected user's address (for "organised by me", "external attendees").
    pub user_email: &'a str,
    pub rules: &'a AutoJoinRules,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub written: u64,
    pub cancelled: u64,
    pub unchanged: u64,
    /// Removals of instances this store never had.
    pub ignored: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event {0} has no start time")]
    NoStart(String),
}

/// The meeting id of an event instance of a connection: stable across syncs.
pub fn meeting_id(connection_id: &str, instance_id: &str) -> String {
    let name = format!("{connection_id}\u{0}{instance_id}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// The people of a meeting as sealed in `Meeting::attendees`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct People {
    pub organizer: Option<String>,
    pub attendees: Vec<SealedAttendee>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedAttendee {
    pub email: String,
    pub name: Option<String>,
    pub response: String,
    pub organizer: bool,
}

fn people(ev: &NormalizedEvent) -> People {
    let resp = |a: &Attendee| {
        serde_json::to_value(a.response)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    People {
        organizer: ev.organizer_email.clone(),
        attendees: ev
            .attendees
            .iter()
            .filter(|a| !a.resource)
            .map(|a| SealedAttendee {
                email: a.email.clone(),
                name: a.name.clone(),
                response: resp(a),
                organizer: a.organizer,
            })
            .collect(),
    }
}

/// A stored meeting as the auto-join rules see an event (for previewing rules on meetings
/// already synced): its title, link, people and the user's own answer, as stored. `user_email`
/// is the calendar's user.
pub fn event_of(m: &Meeting, o: &OpenedMeeting, user_email: &str) -> NormalizedEvent {
    // As `people` stores it (the serialised name).
    let resp = |s: &str| match s {
        "accepted" => Response::Accepted,
        "tentative" => Response::Tentative,
        "declined" => Response::Declined,
        "needs_action" => Response::NeedsAction,
        _ => Response::None,
    };
    let me = user_email.to_lowercase();
    let attendees: Vec<Attendee> = o
        .people
        .attendees
        .iter()
        .map(|a| Attendee {
            email: a.email.to_lowercase(),
            name: a.name.clone(),
            response: resp(&a.response),
            organizer: a.organizer,
            is_self: a.email.eq_ignore_ascii_case(&me),
            resource: false,
        })
        .collect();
    let self_response = attendees
        .iter()
        .find(|a| a.is_self)
        .map_or(Response::None, |a| a.response);
    NormalizedEvent {
        provider: meetbot_core::model::CalendarProvider::Ics,
        instance_id: m.event_instance_id.clone(),
        series_id: m.series_id.clone(),
        title: o.title.clone(),
        starts_at: Some(m.starts_at),
        ends_at: Some(m.ends_at),
        time_zone: None,
        all_day: m.all_day,
        status: m.status,
        organizer_email: o.people.organizer.as_ref().map(|e| e.to_lowercase()),
        attendees,
        self_response,
        link: o.join_url.as_ref().map(|u| crate::links::MeetingLink {
            url: u.clone(),
            platform: m.platform.unwrap_or(meetbot_core::model::Platform::Unknown),
        }),
        removed: false,
        uid: None,
        original_start: None,
        source_updated_at: None,
    }
}

/// The plaintext of a stored meeting, for comparing and for readers with access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedMeeting {
    pub title: String,
    pub join_url: Option<String>,
    pub people: People,
}

pub fn open_meeting(v: &TenantVault, m: &Meeting) -> Result<OpenedMeeting, VaultError> {
    let title = v.open_string::<Meeting>(&m.id, "title", &m.title)?;
    let join_url = match &m.join_url {
        Some(u) => Some(v.open_string::<Meeting>(&m.id, "join_url", u)?),
        None => None,
    };
    let raw = v.open::<Meeting>(&m.id, "attendees", &m.attendees)?;
    let people = serde_json::from_slice(&raw).unwrap_or(People {
        organizer: None,
        attendees: vec![],
    });
    Ok(OpenedMeeting {
        title,
        join_url,
        people,
    })
}

/// The meeting itself, the same for its copy in every invitee's calendar (`Meeting::meeting_ref`):
/// the call (canonical join link) with the invitation's UID and, for an occurrence of a series,
/// its original start; without a UID, the call and the start.
pub async fn meeting_ref(
    tenants: &Tenants,
    tenant: &TenantId,
    link: &str,
    ev: &NormalizedEvent,
    starts_at: chrono::DateTime<Utc>,
) -> Result<String, VaultError> {
    let call = crate::links::canonical(link);
    // An occurrence of a series without its original start (a provider that did not send it)
    // is told apart from its siblings by its start: they share the UID.
    let (uid, when) = match (&ev.uid, ev.original_start) {
        (Some(uid), Some(original)) => (uid.as_str(), Some(original.timestamp())),
        (Some(uid), None) if ev.series_id.is_none() => (uid.as_str(), None),
        (Some(uid), None) => (uid.as_str(), Some(starts_at.timestamp())),
        (None, _) => ("", Some(starts_at.timestamp())),
    };
    let when = when.map(|w| w.to_string()).unwrap_or_default();
    tenants
        .blind_index(
            tenant,
            "meeting/v1",
            &[call.as_bytes(), uid.as_bytes(), when.as_bytes()],
        )
        .await
}

/// Writes `events` into the tenant store.
pub async fn apply(t: &Target<'_>, events: &[NormalizedEvent]) -> Result<ApplyReport, ApplyError> {
    let store = t.tenants.store();
    let vault = t.tenants.vault(t.tenant).await?;
    let mut rep = ApplyReport::default();
    for ev in events {
        let id = meeting_id(t.connection_id, &ev.instance_id);
        let existing = store.get_meeting(t.tenant, &id).await?;
        // A session deleted by its tenant stays deleted whatever its calendar event does.
        if existing.as_ref().is_some_and(|m| m.deleted_at.is_some()) {
            rep.unchanged += 1;
            continue;
        }
        if ev.removed && ev.starts_at.is_none() {
            match existing {
                Some(mut m) if m.status != MeetingStatus::Cancelled => {
                    m.status = MeetingStatus::Cancelled;
                    m.wants_bot = false;
                    m.join_reason = Some("cancelled".into());
                    m.updated_at = Utc::now();
                    let span = meetbot_core::meeting_span!(
                        "calendar.meeting",
                        t.tenant,
                        &m.id,
                        change = "cancelled",
                        wants_bot = false
                    );
                    store.put_meeting(t.tenant, &m).instrument(span).await?;
                    rep.cancelled += 1;
                }
                Some(_) => rep.unchanged += 1,
                None => rep.ignored += 1,
            }
            continue;
        }
        let starts_at = ev
            .starts_at
            .ok_or_else(|| ApplyError::NoStart(ev.instance_id.clone()))?;
        let decision = t.rules.decide(ev, t.user_email);
        let opened_new = OpenedMeeting {
            title: ev.title.clone(),
            join_url: ev.link.as_ref().map(|l| l.url.clone()),
            people: people(ev),
        };
        let ends_at = ev.ends_at.unwrap_or(starts_at);
        let meeting_ref = match &ev.link {
            Some(l) => Some(meeting_ref(t.tenants, t.tenant, &l.url, ev, starts_at).await?),
            None => None,
        };
        if let Some(old) = &existing {
            // (A new provider stamp alone is no change: some feeds restamp every event on
            // every fetch.)
            let same_plain = old.starts_at == starts_at
                && old.meeting_ref == meeting_ref
                && old.ends_at == ends_at
                && old.all_day == ev.all_day
                && old.status == ev.status
                && old.series_id == ev.series_id
                && old.platform == ev.platform()
                && old.wants_bot == decision.join
                && old.join_reason.as_deref() == Some(decision.reason.as_str());
            if same_plain && open_meeting(&vault, old)? == opened_new {
                rep.unchanged += 1;
                continue;
            }
        }
        let people_json = serde_json::to_vec(&opened_new.people).unwrap_or_default();
        let m = Meeting {
            title: vault.seal::<Meeting>(&id, "title", ev.title.as_bytes())?,
            attendees: vault.seal::<Meeting>(&id, "attendees", &people_json)?,
            join_url: match &opened_new.join_url {
                Some(u) => Some(vault.seal::<Meeting>(&id, "join_url", u.as_bytes())?),
                None => None,
            },
            id,
            connection_id: Some(t.connection_id.to_string()),
            event_instance_id: ev.instance_id.clone(),
            series_id: ev.series_id.clone(),
            starts_at,
            ends_at,
            all_day: ev.all_day,
            status: ev.status,
            platform: ev.platform(),
            wants_bot: decision.join,
            join_reason: Some(decision.reason),
            requested_by: None,
            deleted_at: None,
            meeting_ref,
            // A stamp from the future (a feed's clock, or a feed written to win) counts as now.
            source_updated_at: ev.source_updated_at.map(|at| at.min(Utc::now())),
            updated_at: Utc::now(),
        };
        let span = meetbot_core::meeting_span!(
            "calendar.meeting",
            t.tenant,
            &m.id,
            change = if existing.is_some() { "changed" } else { "new" },
            status = ?m.status,
            wants_bot = m.wants_bot
        );
        store.put_meeting(t.tenant, &m).instrument(span).await?;
        if m.status == MeetingStatus::Cancelled {
            rep.cancelled += 1;
        } else {
            rep.written += 1;
        }
    }
    Ok(rep)
}

/// Withdraws bots from the connection's meetings that have not ended (on disconnect): they stay
/// in the store, marked as not wanting a bot, with `reason`; the scheduler withdraws their jobs.
pub async fn withdraw_connection(
    tenants: &Tenants,
    t: &TenantId,
    connection_id: &str,
    reason: &str,
) -> Result<u64, ApplyError> {
    let store = tenants.store();
    let now = Utc::now();
    let mut n = 0;
    for mut m in store.list_meetings(t, None, None).await? {
        if m.connection_id.as_deref() != Some(connection_id) || m.ends_at <= now || !m.wants_bot {
            continue;
        }
        m.wants_bot = false;
        m.join_reason = Some(reason.to_string());
        m.updated_at = now;
        store.put_meeting(t, &m).await?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod preview_tests {
    use super::*;
    use crate::normalize::Response;

    #[test]
    fn a_stored_meeting_reads_back_with_every_answer_and_the_users_own() {
        for r in [
            Response::Accepted,
            Response::Tentative,
            Response::Declined,
            Response::NeedsAction,
            Response::None,
        ] {
            let stored = serde_json::to_value(r)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string();
            let o = OpenedMeeting {
                title: "Weekly".into(),
                join_url: Some("https://zoom.us/j/1".into()),
                people: People {
                    organizer: Some("Boss@Clinic.test".into()),
                    attendees: vec![SealedAttendee {
                        email: "Me@Clinic.test".into(),
                        name: None,
                        response: stored,
                        organizer: false,
                    }],
                },
            };
            let now = Utc::now();
            let nothing = || meetbot_core::model::Sealed {
                key_version: 1,
                nonce: vec![],
                ciphertext: vec![],
            };
            let m = Meeting {
                id: "m1".into(),
                connection_id: None,
                event_instance_id: "e1".into(),
                series_id: None,
                title: nothing(),
                starts_at: now,
                ends_at: now,
                all_day: false,
                status: MeetingStatus::Confirmed,
                platform: None,
                join_url: None,
                attendees: nothing(),
                wants_bot: true,
                join_reason: None,
                requested_by: None,
                deleted_at: None,
                meeting_ref: None,
                source_updated_at: None,
                updated_at: now,
            };
            let ev = event_of(&m, &o, "me@clinic.test");
            assert_eq!(ev.self_response, r, "{r:?}");
            assert!(ev.attendees[0].is_self);
            assert_eq!(ev.organizer_email.as_deref(), Some("boss@clinic.test"));
            assert!(ev.link.is_some());
        }
    }
}

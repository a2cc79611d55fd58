//! Meetings, bots, transcripts, summaries and deliveries. Sealed fields are opened only for a
//! caller who may see the meeting; reading a transcript or a summary is audited.

use super::{Json, Path, Query, Visibility, audit, paginate, wire};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use meetbot_calendar_sync::apply::{OpenedMeeting, open_meeting};
use meetbot_core::model::{
    BotJob, BotJobState, BotRuleOverrides, DeliveryState, Meeting, MeetingStatus, Role, StateChange,
};
use meetbot_store::JobFilter;
use meetbot_store::vault::TenantVault;
use meetbot_transcriber::transcript::TranscriptDoc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct Person {
    pub email: String,
    pub name: Option<String>,
    /// accepted, declined, tentative, needs_action, ...
    pub response: String,
    pub organizer: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MeetingOut {
    pub id: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// confirmed, tentative or cancelled.
    pub status: String,
    /// zoom, google_meet, teams, webex, jitsi, janus, web_rtc, unknown.
    pub platform: Option<String>,
    pub wants_bot: bool,
    /// Why a bot will or will not join.
    pub join_reason: Option<String>,
    pub organizer: Option<String>,
    pub people: Vec<Person>,
    /// Only for admins and the meeting's owner: it may carry a passcode.
    pub join_url: Option<String>,
    /// The calendar's id of the recurring event this meeting is one of (retention rules name
    /// a series by it).
    pub series_id: Option<String>,
    /// The meeting's newest bot, if it has one.
    pub bot: Option<BotOut>,
}

#[derive(Serialize, ToSchema)]
pub struct MeetingPage {
    pub items: Vec<MeetingOut>,
    pub next_cursor: Option<String>,
}

fn people_of(o: &OpenedMeeting) -> Vec<String> {
    o.people
        .organizer
        .iter()
        .cloned()
        .chain(o.people.attendees.iter().map(|a| a.email.clone()))
        .collect()
}

fn meeting_out(m: &Meeting, o: OpenedMeeting, show_link: bool) -> MeetingOut {
    MeetingOut {
        id: m.id.clone(),
        title: o.title,
        starts_at: m.starts_at,
        ends_at: m.ends_at,
        status: wire(&m.status),
        platform: m.platform.as_ref().map(wire),
        series_id: m.series_id.clone(),
        wants_bot: m.wants_bot,
        join_reason: m.join_reason.clone(),
        organizer: o.people.organizer,
        people: o
            .people
            .attendees
            .into_iter()
            .map(|a| Person {
                email: a.email,
                name: a.name,
                response: a.response,
                organizer: a.organizer,
            })
            .collect(),
        join_url: if show_link { o.join_url } else { None },
        bot: None,
    }
}

/// The newest job (by join time) of meeting `id`.
pub(super) async fn newest_job(
    api: &AppState,
    t: &meetbot_core::TenantId,
    id: &str,
) -> ApiResult<Option<BotJob>> {
    let jobs = api
        .tenants
        .store()
        .find_bot_jobs(t, &JobFilter::of_meeting(id))
        .await?;
    Ok(jobs.into_iter().map(|j| j.value).max_by_key(|j| j.join_at))
}

/// The newest bot of meeting `id` (by join time).
async fn newest_bot(api: &AppState, c: &Caller, id: &str) -> ApiResult<Option<BotOut>> {
    Ok(newest_job(api, &c.tenant, id).await?.as_ref().map(bot_out))
}

/// The meeting `id` and the tenant's vault, if the caller may see the meeting.
pub(super) async fn seen(
    api: &AppState,
    c: &Caller,
    id: &str,
) -> ApiResult<(Meeting, OpenedMeeting, std::sync::Arc<TenantVault>)> {
    let vis = Visibility::of(api, c).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let (m, o) = visible_meeting(api, c, &vis, &vault, id).await?;
    Ok((m, o, vault))
}

/// The copy of `m` under which its session (bot, transcript, summary, deliveries) is kept: `m`
/// itself, or, for a meeting in several invitees' calendars, the copy holding its one bot, when
/// the caller may see that copy too (an attendee of it). Sharing a reference gives nothing by
/// itself: anyone can put an event with a known link and UID in their own calendar.
pub(super) async fn session_of(api: &AppState, c: &Caller, m: &Meeting) -> ApiResult<String> {
    let store = api.tenants.store();
    let holds = |id: String| async move {
        let jobs = store
            .find_bot_jobs(&c.tenant, &JobFilter::of_meeting(&id))
            .await?;
        let held = jobs.iter().any(|j| {
            !matches!(
                j.value.state,
                BotJobState::Cancelled | BotJobState::Skipped(_)
            )
        });
        Ok::<_, ApiError>(held.then_some(id))
    };
    let Some(mref) = m.meeting_ref.as_deref() else {
        return Ok(m.id.clone());
    };
    if let Some(id) = holds(m.id.clone()).await? {
        return Ok(id);
    }
    let vis = Visibility::of(api, c).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    for copy in store.meetings_with_ref(&c.tenant, mref).await? {
        if copy.id == m.id || copy.deleted_at.is_some() {
            continue;
        }
        if !vis.sees(&copy, &people_of(&open_meeting(&vault, &copy)?)) {
            continue;
        }
        if let Some(id) = holds(copy.id).await? {
            return Ok(id);
        }
    }
    Ok(m.id.clone())
}

/// The meeting, if the caller may see it (404 otherwise, as if it did not exist).
async fn visible_meeting(
    api: &AppState,
    c: &Caller,
    vis: &Visibility,
    vault: &TenantVault,
    id: &str,
) -> ApiResult<(Meeting, OpenedMeeting)> {
    let m = api
        .tenants
        .store()
        .get_meeting(&c.tenant, id)
        .await?
        .ok_or(ApiError::NotFound("meeting"))?;
    if m.deleted_at.is_some() {
        return Err(ApiError::NotFound("meeting"));
    }
    let o = open_meeting(vault, &m)?;
    if !vis.sees(&m, &people_of(&o)) {
        return Err(ApiError::NotFound("meeting"));
    }
    Ok((m, o))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MeetingQuery {
    /// Meetings starting at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Meetings starting before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Only meetings whose title, organizer or people contain this (case-insensitive).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// `asc` (default: earliest first) or `desc` (latest first).
    pub order: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Whether meeting `o` matches the search `q` (lower-cased): in its title or among its people.
fn matches(o: &OpenedMeeting, q: &str) -> bool {
    o.title.to_lowercase().contains(q)
        || people_of(o).iter().any(|p| p.to_lowercase().contains(q))
        || o.people.attendees.iter().any(|a| {
            a.name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains(q))
        })
}

/// Meetings the caller may see, by start time.
#[utoipa::path(get, path = "/v1/meetings", tag = "meetings", params(MeetingQuery),
    responses((status = 200, body = MeetingPage)))]
pub async fn list_meetings(
    State(api): State<AppState>,
    c: Caller,
    Query(q): Query<MeetingQuery>,
) -> ApiResult<Json<MeetingPage>> {
    c.require(Role::Member, "meetings:read")?;
    let search = match q.q.as_deref().map(str::trim) {
        Some(s) if s.chars().count() > 200 => {
            return Err(ApiError::BadRequest(
                "q is longer than 200 characters".into(),
            ));
        }
        Some("") | None => None,
        Some(s) => Some(s.to_lowercase()),
    };
    let desc = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(ApiError::BadRequest("order: use asc or desc".into())),
    };
    let vis = Visibility::of(&api, &c).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let show_link = c.role() >= Role::Admin;
    // Only what decides visibility or a search is opened for every meeting: a meeting the caller
    // owns (every one, for admins) is opened only if it lands on the page.
    let mut visible: Vec<(Meeting, Option<OpenedMeeting>)> = Vec::new();
    for m in api
        .tenants
        .store()
        .list_meetings(&c.tenant, q.from, q.to)
        .await?
    {
        if m.deleted_at.is_some() {
            continue;
        }
        if search.is_none() && vis.owns(&m) {
            visible.push((m, None));
            continue;
        }
        let o = open_meeting(&vault, &m)?;
        if vis.sees(&m, &people_of(&o)) && search.as_deref().is_none_or(|s| matches(&o, s)) {
            visible.push((m, Some(o)));
        }
    }
    // A meeting in several calendars the caller sees is listed once: the copy from the caller's
    // own calendar when there is one, else the first.
    let mut keep: std::collections::HashMap<String, (String, bool)> = Default::default();
    for (m, _) in &visible {
        if let Some(r) = &m.meeting_ref {
            let own = vis.owns(m);
            match keep.get(r) {
                Some((_, true)) => {}
                Some((_, false)) if !own => {}
                _ => {
                    keep.insert(r.clone(), (m.id.clone(), own));
                }
            }
        }
    }
    let mut items = Vec::new();
    for (m, o) in visible {
        if let Some(r) = &m.meeting_ref
            && keep.get(r).is_some_and(|(id, _)| *id != m.id)
        {
            continue;
        }
        let at = m.starts_at.timestamp_millis();
        let key = format!(
            "{:015}\u{0}{}",
            if desc {
                10i64.pow(14) - at
            } else {
                at + 10i64.pow(14)
            },
            m.id
        );
        items.push((key, (m, o)));
    }
    let (page, next_cursor) = paginate(items, q.limit, q.cursor.as_deref())?;
    let mut items = Vec::with_capacity(page.len());
    for (m, o) in page {
        let o = match o {
            Some(o) => o,
            None => open_meeting(&vault, &m)?,
        };
        // A meeting in several calendars has its one bot on one copy: the page shows that bot,
        // as the meeting's own page does.
        let session = match m.meeting_ref {
            Some(_) => session_of(&api, &c, &m).await?,
            None => m.id.clone(),
        };
        let mut out = meeting_out(&m, o, show_link);
        out.bot = newest_bot(&api, &c, &session).await?;
        items.push(out);
    }
    Ok(Json(MeetingPage { items, next_cursor }))
}

/// One meeting with its people.
#[utoipa::path(get, path = "/v1/meetings/{id}", tag = "meetings", params(("id" = String, Path)),
    responses((status = 200, body = MeetingOut)))]
pub async fn get_meeting(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<MeetingOut>> {
    c.require(Role::Member, "meetings:read")?;
    let (m, o, _) = seen(&api, &c, &id).await?;
    let owner =
        c.role() >= Role::Admin || m.requested_by.as_deref() == c.user().map(|u| u.id.as_str());
    let session = session_of(&api, &c, &m).await?;
    let mut out = meeting_out(&m, o, owner);
    out.bot = newest_bot(&api, &c, &session).await?;
    Ok(Json(out))
}

#[derive(Serialize, ToSchema)]
pub struct Segment {
    /// The name the meeting showed, when it told.
    pub speaker: Option<String>,
    /// The stream's participant id (opaque).
    pub participant: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// One participant's stay in the call as the bot saw it, on the transcript's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Stay {
    /// The stream's participant id (opaque).
    pub participant: String,
    /// The name the meeting showed, when it told.
    pub name: Option<String>,
    pub joined_ms: u64,
    /// None: still in the call when the bot left.
    pub left_ms: Option<u64>,
}

impl From<meetbot_transcriber::presence::Presence> for Stay {
    fn from(p: meetbot_transcriber::presence::Presence) -> Self {
        Stay {
            participant: p.participant,
            name: p.name,
            joined_ms: p.joined_ms,
            left_ms: p.left_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TranscriptOut {
    pub meeting_id: String,
    pub language: String,
    pub engine: String,
    pub created_at: DateTime<Utc>,
    /// When retention removes it (none: kept until deleted).
    pub expires_at: Option<DateTime<Utc>>,
    pub segments: Vec<Segment>,
    /// Who was in the call as the bot saw them join and leave, in the order they joined.
    pub participants: Vec<Stay>,
    /// Customer-held key mode: the transcript sealed to the tenant's own key (ASCII-armored
    /// age); `segments` is then empty. Open it with `meetbot decrypt --identity FILE`.
    pub customer_sealed: Option<String>,
}

/// The meeting's transcript, opened for the caller (audited).
#[utoipa::path(get, path = "/v1/meetings/{id}/transcript", tag = "meetings",
    params(("id" = String, Path)), responses((status = 200, body = TranscriptOut)))]
pub async fn get_transcript(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TranscriptOut>> {
    c.require(Role::Member, "transcripts:read")?;
    let (m, _, vault) = seen(&api, &c, &id).await?;
    let session = session_of(&api, &c, &m).await?;
    let tr = api
        .tenants
        .store()
        .transcript_for_meeting(&c.tenant, &session)
        .await?
        .ok_or(ApiError::NotFound("transcript"))?;
    audit(&api, &c, "transcript.read", &format!("meeting:{}", m.id)).await?;
    if let Some(held) = tr.held {
        return Ok(Json(TranscriptOut {
            meeting_id: m.id,
            language: String::new(),
            engine: String::new(),
            created_at: tr.created_at,
            expires_at: tr.expires_at,
            segments: vec![],
            participants: vec![],
            customer_sealed: Some(held),
        }));
    }
    let doc = TranscriptDoc::open(&vault, &tr).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(TranscriptOut {
        customer_sealed: None,
        meeting_id: m.id,
        language: doc.language,
        engine: doc.engine,
        created_at: tr.created_at,
        expires_at: tr.expires_at,
        segments: doc
            .segments
            .into_iter()
            .map(|s| Segment {
                speaker: s.speaker,
                participant: s.participant,
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                text: s.text,
            })
            .collect(),
        participants: doc.presence.into_iter().map(Stay::from).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ActionItem {
    pub owner: Option<String>,
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct SummaryOut {
    pub meeting_id: String,
    pub created_at: DateTime<Utc>,
    pub overview: String,
    pub decisions: Vec<String>,
    pub action_items: Vec<ActionItem>,
    pub topics: Vec<String>,
    /// Customer-held key mode: the summary sealed to the tenant's own key (the other fields
    /// are then empty).
    pub customer_sealed: Option<String>,
}

/// The meeting's summary, opened for the caller (audited).
#[utoipa::path(get, path = "/v1/meetings/{id}/summary", tag = "meetings",
    params(("id" = String, Path)), responses((status = 200, body = SummaryOut)))]
pub async fn get_summary(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<SummaryOut>> {
    c.require(Role::Member, "transcripts:read")?;
    let (m, _, vault) = seen(&api, &c, &id).await?;
    let session = session_of(&api, &c, &m).await?;
    let s = api
        .tenants
        .store()
        .summary_for_meeting(&c.tenant, &session)
        .await?
        .ok_or(ApiError::NotFound("summary"))?;
    if let Some(held) = s.held {
        audit(&api, &c, "summary.read", &format!("meeting:{}", m.id)).await?;
        return Ok(Json(SummaryOut {
            meeting_id: m.id,
            created_at: s.created_at,
            overview: String::new(),
            decisions: vec![],
            action_items: vec![],
            topics: vec![],
            customer_sealed: Some(held),
        }));
    }
    let doc = super::open_summary(&vault, &s)?;
    audit(&api, &c, "summary.read", &format!("meeting:{}", m.id)).await?;
    Ok(Json(SummaryOut {
        customer_sealed: None,
        meeting_id: m.id,
        created_at: s.created_at,
        overview: doc.overview,
        decisions: doc.decisions,
        action_items: doc
            .action_items
            .into_iter()
            .map(|a| ActionItem {
                owner: a.owner,
                text: a.text,
            })
            .collect(),
        topics: doc.topics,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    /// slack, email or webhook (the target itself is not shown).
    pub channel: String,
    /// pending, sending, sent or gave_up.
    pub state: String,
    pub sent_at: Option<DateTime<Utc>>,
    /// Why it was given up.
    pub reason: Option<String>,
    pub attempts: u32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryOut>,
}

/// Where the meeting's summary went, and how that went.
#[utoipa::path(get, path = "/v1/meetings/{id}/deliveries", tag = "meetings",
    params(("id" = String, Path)), responses((status = 200, body = DeliveryList)))]
pub async fn list_deliveries(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryList>> {
    c.require(Role::Member, "meetings:read")?;
    let (m, _, _) = seen(&api, &c, &id).await?;
    let session = session_of(&api, &c, &m).await?;
    let items = api
        .tenants
        .store()
        .list_deliveries(&c.tenant, Some(&session))
        .await?
        .into_iter()
        .map(|d| {
            let d = d.value;
            let (sent_at, reason) = match &d.state {
                DeliveryState::Sent { at } => (Some(*at), None),
                DeliveryState::GaveUp { reason } => (None, Some(reason.clone())),
                _ => (None, None),
            };
            DeliveryOut {
                id: d.id,
                channel: d.channel.name().into(),
                state: d.state.name().into(),
                sent_at,
                reason,
                attempts: d.attempts,
                next_at: d.next_at,
                last_error: d.last_error,
            }
        })
        .collect();
    Ok(Json(DeliveryList { items }))
}

// ---- bots ----

#[derive(Serialize, ToSchema)]
pub struct StateOut {
    /// scheduled, dispatched, launched, joined, done, failed, skipped, cancelled.
    pub state: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct BotOut {
    pub id: String,
    pub meeting_id: String,
    pub join_at: DateTime<Utc>,
    pub state: String,
    pub reason: Option<String>,
    /// Every state the bot went through, oldest first.
    pub timeline: Vec<StateOut>,
}

#[derive(Serialize, ToSchema)]
pub struct BotPage {
    pub items: Vec<BotOut>,
    pub next_cursor: Option<String>,
}

fn reason(s: &BotJobState) -> Option<String> {
    match s {
        BotJobState::Failed(r) | BotJobState::Skipped(r) => Some(r.clone()),
        BotJobState::Stopped(by) => Some(format!("stopped by {by}")),
        _ => None,
    }
}

fn bot_out(j: &BotJob) -> BotOut {
    BotOut {
        id: j.id.clone(),
        meeting_id: j.meeting_id.clone(),
        join_at: j.join_at,
        state: j.state.name().into(),
        reason: reason(&j.state),
        timeline: j
            .history
            .iter()
            .map(|StateChange { state, at }| StateOut {
                state: state.name().into(),
                reason: reason(state),
                at: *at,
            })
            .collect(),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BotQuery {
    /// Only bots in this state.
    pub state: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

const STATES: &[&str] = &[
    "scheduled",
    "dispatched",
    "launched",
    "joined",
    "done",
    "failed",
    "skipped",
    "cancelled",
    "stopped",
];

/// Bots of the meetings the caller may see, latest join time first.
#[utoipa::path(get, path = "/v1/bots", tag = "bots", params(BotQuery),
    responses((status = 200, body = BotPage)))]
pub async fn list_bots(
    State(api): State<AppState>,
    c: Caller,
    Query(q): Query<BotQuery>,
) -> ApiResult<Json<BotPage>> {
    c.require(Role::Member, "meetings:read")?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(*STATES.iter().find(|x| **x == s).ok_or_else(|| {
            ApiError::BadRequest(format!("state: use one of {}", STATES.join(", ")))
        })?),
    };
    let vis = Visibility::of(&api, &c).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let store = api.tenants.store();
    let jobs = store
        .find_bot_jobs(
            &c.tenant,
            &JobFilter {
                state,
                ..Default::default()
            },
        )
        .await?;
    let mut seen = std::collections::HashMap::<String, bool>::new();
    let mut items = Vec::new();
    for j in jobs {
        let j = j.value;
        let ok = match seen.get(&j.meeting_id) {
            Some(ok) => *ok,
            None => {
                let ok = match store.get_meeting(&c.tenant, &j.meeting_id).await? {
                    Some(m) if m.deleted_at.is_some() => false,
                    Some(m) => vis.sees(&m, &people_of(&open_meeting(&vault, &m)?)),
                    None => c.role() >= Role::Admin,
                };
                seen.insert(j.meeting_id.clone(), ok);
                ok
            }
        };
        if ok {
            // Latest first: the key sorts descending join times ascending.
            let key = format!(
                "{:015}\u{0}{}",
                10i64.pow(14) - j.join_at.timestamp_millis(),
                j.id
            );
            items.push((key, bot_out(&j)));
        }
    }
    let (items, next_cursor) = paginate(items, q.limit, q.cursor.as_deref())?;
    Ok(Json(BotPage { items, next_cursor }))
}

/// One bot and its status timeline.
#[utoipa::path(get, path = "/v1/bots/{id}", tag = "bots", params(("id" = String, Path)),
    responses((status = 200, body = BotOut)))]
pub async fn get_bot(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BotOut>> {
    c.require(Role::Member, "meetings:read")?;
    let job = api
        .tenants
        .store()
        .get_bot_job(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("bot"))?
        .value;
    seen(&api, &c, &job.meeting_id).await.map_err(|e| match e {
        ApiError::NotFound(_) => ApiError::NotFound("bot"),
        other => other,
    })?;
    Ok(Json(bot_out(&job)))
}

/// Makes a bot leave its meeting now (or not go at all). The job is stopped, recording who
/// stopped it; the bot leaves within seconds, and nothing of the meeting is stored or
/// delivered: its audio and text so far are dropped. The bot's owner (the member who requested
/// it, or whose calendar the meeting is on) and admins; others who see the meeting get 403.
#[utoipa::path(post, path = "/v1/bots/{id}/leave", tag = "bots", params(("id" = String, Path)),
    responses((status = 200, body = BotOut)))]
pub async fn leave_bot(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BotOut>> {
    c.require(Role::Member, "bots:write")?;
    let store = api.tenants.store();
    let job = store
        .get_bot_job(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("bot"))?
        .value;
    let vis = Visibility::of(&api, &c).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let (m, _) = visible_meeting(&api, &c, &vis, &vault, &job.meeting_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound("bot"),
            other => other,
        })?;
    // The bot of a meeting in several invitees' calendars is each one's: whoever owns a copy
    // (and may see the copy holding the bot, checked above) can make it leave.
    let owns_a_copy = match &m.meeting_ref {
        Some(r) if !vis.owns(&m) => store
            .meetings_with_ref(&c.tenant, r)
            .await?
            .iter()
            .any(|x| x.deleted_at.is_none() && vis.owns(x)),
        _ => vis.owns(&m),
    };
    if !owns_a_copy {
        return Err(ApiError::Forbidden(
            "only the bot's owner (who requested it, or whose calendar the meeting is on) or an admin can make it leave".into(),
        ));
    }
    use meetbot_scheduler::stop::{Stopped, stop_job};
    let stopped = stop_job(
        &**store,
        api.queue.as_deref(),
        &c.tenant,
        &id,
        &c.actor(),
        "a person made the bot leave",
    )
    .await?;
    match stopped {
        Stopped::Now { job, .. } => {
            audit(&api, &c, "bot.leave", &format!("bot:{id}")).await?;
            Ok(Json(bot_out(&job)))
        }
        Stopped::Already(job) => Ok(Json(bot_out(&job))),
        Stopped::Ended(job) => Err(ApiError::Conflict(format!(
            "the bot is {}: it is not in a meeting and will not join one",
            job.state.name()
        ))),
        Stopped::Unknown => Err(ApiError::NotFound("bot")),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewBot {
    /// The meeting's join link (https).
    #[schema(pattern = "^https?://[^/]+", max_length = 2048)]
    pub meeting_url: String,
    /// When to join (RFC 3339); default now. At most 90 days ahead.
    pub join_at: Option<DateTime<Utc>>,
    /// What the meeting is called in the API (default "Ad-hoc meeting").
    #[schema(max_length = 200)]
    pub title: Option<String>,
    /// The name participants see for this bot (1 to 64 characters).
    #[schema(min_length = 1, max_length = 64)]
    pub bot_name: Option<String>,
}

/// Sends a bot to a meeting by its link, now or at a given time.
#[utoipa::path(post, path = "/v1/bots", tag = "bots", request_body = NewBot,
    responses((status = 202, body = BotOut)))]
pub async fn create_bot(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<NewBot>,
) -> ApiResult<(StatusCode, Json<BotOut>)> {
    c.require(Role::Member, "bots:write")?;
    let url = url::Url::parse(body.meeting_url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
        .ok_or_else(|| ApiError::BadRequest("meeting_url is not an http(s) link".into()))?;
    let now = Utc::now();
    let join_at = body.join_at.unwrap_or(now).max(now);
    if join_at > now + chrono::Duration::days(90) {
        return Err(ApiError::BadRequest(
            "join_at is more than 90 days ahead".into(),
        ));
    }
    let title = body.title.unwrap_or_else(|| "Ad-hoc meeting".into());
    if title.chars().count() > 200 {
        return Err(ApiError::BadRequest(
            "title is longer than 200 characters".into(),
        ));
    }
    let rules = BotRuleOverrides {
        display_name: body.bot_name,
        ..Default::default()
    };
    rules.validate().map_err(ApiError::BadRequest)?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let id = meetbot_core::ids::new_record_id();
    let instance = format!("adhoc-{id}");
    let meeting = Meeting {
        id: id.clone(),
        connection_id: None,
        event_instance_id: instance.clone(),
        series_id: None,
        title: vault.seal::<Meeting>(&id, "title", title.as_bytes())?,
        starts_at: join_at,
        ends_at: join_at + chrono::Duration::hours(1),
        all_day: false,
        status: MeetingStatus::Confirmed,
        platform: Some(
            meetbot_calendar_sync::links::classify(&url)
                .unwrap_or(meetbot_core::model::Platform::Unknown),
        ),
        join_url: Some(vault.seal::<Meeting>(&id, "join_url", url.as_str().as_bytes())?),
        attendees: vault.seal::<Meeting>(
            &id,
            "attendees",
            b"{\"organizer\":null,\"attendees\":[]}",
        )?,
        wants_bot: true,
        join_reason: Some("requested through the API".into()),
        requested_by: c.user().map(|u| u.id.clone()),
        deleted_at: None,
        meeting_ref: None,
        source_updated_at: None,
        updated_at: now,
    };
    // The job first, under the key the scheduler would use: when it reads the meeting, it finds
    // the job armed and leaves it be.
    let job = BotJob {
        bot_rules: (rules != BotRuleOverrides::default()).then_some(rules),
        ticket: None,
        ..BotJob::scheduled(
            &id,
            meetbot_scheduler::jobs::idempotency_key(&c.tenant, &instance, join_at),
            join_at,
        )
    };
    let store = api.tenants.store();
    store.insert_bot_job(&c.tenant, &job).await?;
    store.put_meeting(&c.tenant, &meeting).await?;
    audit(&api, &c, "bot.request", &format!("bot:{}", job.id)).await?;
    Ok((StatusCode::ACCEPTED, Json(bot_out(&job))))
}

// ---- deletion ----

#[derive(Serialize, ToSchema)]
pub struct ReceiptOut {
    pub id: String,
    /// session, transcript or tenant.
    pub scope: String,
    /// What was erased (`meeting:<id>`, a tenant id).
    pub target: String,
    /// Who asked (`user:<id>`, `key:<id>`, `system:retention`).
    pub requested_by: String,
    pub erased_at: DateTime<Utc>,
    /// Records removed, per collection.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Data-key versions destroyed (account erasure).
    pub keys_destroyed: Vec<String>,
    /// SHA-256 over the receipt's content.
    pub digest: String,
    /// Whether the digest matches the content now.
    pub verified: bool,
}

impl From<&meetbot_core::model::DeletionReceipt> for ReceiptOut {
    fn from(r: &meetbot_core::model::DeletionReceipt) -> Self {
        ReceiptOut {
            id: r.id.clone(),
            scope: r.scope.clone(),
            target: r.target.clone(),
            requested_by: r.requested_by.clone(),
            erased_at: r.erased_at,
            counts: r.counts.iter().cloned().collect(),
            keys_destroyed: r.keys_destroyed.clone(),
            digest: r.digest.clone(),
            verified: meetbot_store::vault::verify_receipt(r),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeletionOut {
    pub meeting_id: String,
    /// When it was hidden (soft deletion).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Until when an owner can restore it; after that the purge erases it.
    pub restorable_until: Option<DateTime<Utc>>,
    /// The receipt of a permanent erasure.
    pub receipt: Option<ReceiptOut>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Erase now instead of hiding for the recovery window (owners only).
    pub permanently: Option<bool>,
}

/// Deletes a session (meeting, transcript, summary, deliveries, bots): hidden at once and
/// restorable by an owner for 30 days, then erased with a receipt; or erased now.
#[utoipa::path(delete, path = "/v1/meetings/{id}", tag = "privacy",
    params(("id" = String, Path), DeleteQuery), responses((status = 200, body = DeletionOut)))]
pub async fn delete_meeting(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<DeletionOut>> {
    c.person()?;
    let permanently = q.permanently.unwrap_or(false);
    c.require(
        if permanently {
            Role::Owner
        } else {
            Role::Admin
        },
        "meetings:delete",
    )?;
    let store = api.tenants.store();
    let mut m = store
        .get_meeting(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("meeting"))?;
    // Its bots stop first (the one in the call too): they leave, and the transcriber and the
    // outbox keep and send nothing of it.
    if m.deleted_at.is_none() || permanently {
        meetbot_scheduler::stop::stop_meeting(
            &**store,
            api.queue.as_deref(),
            &c.tenant,
            &id,
            &c.actor(),
            "the meeting was deleted",
        )
        .await?;
    }
    if permanently {
        let r = meetbot_store::erase::erase_session(&**store, &c.tenant, &id, &c.actor())
            .await?
            .ok_or(ApiError::NotFound("meeting"))?;
        audit(&api, &c, "session.erase", &format!("meeting:{id}")).await?;
        return Ok(Json(DeletionOut {
            meeting_id: id,
            deleted_at: Some(r.erased_at),
            restorable_until: None,
            receipt: Some((&r).into()),
        }));
    }
    if m.deleted_at.is_some() {
        return Err(ApiError::NotFound("meeting"));
    }
    let now = Utc::now();
    m.deleted_at = Some(now);
    m.wants_bot = false;
    m.join_reason = Some("deleted".into());
    m.updated_at = now;
    store.put_meeting(&c.tenant, &m).await?;
    // Nothing of a deleted session goes out any more.
    for d in store.list_deliveries(&c.tenant, Some(&id)).await? {
        if matches!(
            d.value.state,
            DeliveryState::Pending | DeliveryState::Sending
        ) {
            let mut x = d.value.clone();
            x.state = DeliveryState::GaveUp {
                reason: "the meeting was deleted".into(),
            };
            let _ = store.update_delivery(&c.tenant, &x, d.version).await;
        }
    }
    audit(&api, &c, "session.delete", &format!("meeting:{id}")).await?;
    Ok(Json(DeletionOut {
        meeting_id: id,
        deleted_at: Some(now),
        restorable_until: Some(now + meetbot_store::retention::RECOVERY_WINDOW),
        receipt: None,
    }))
}

/// Restores a deleted session within its recovery window (owners).
#[utoipa::path(post, path = "/v1/meetings/{id}/restore", tag = "privacy",
    params(("id" = String, Path)), responses((status = 200, body = MeetingOut)))]
pub async fn restore_meeting(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<MeetingOut>> {
    c.person()?;
    c.require(Role::Owner, "meetings:delete")?;
    let store = api.tenants.store();
    let mut m = store
        .get_meeting(&c.tenant, &id)
        .await?
        .filter(|m| m.deleted_at.is_some())
        .ok_or(ApiError::NotFound("deleted meeting"))?;
    m.deleted_at = None;
    m.join_reason = Some("restored".into());
    m.updated_at = Utc::now();
    store.put_meeting(&c.tenant, &m).await?;
    audit(&api, &c, "session.restore", &format!("meeting:{id}")).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let o = open_meeting(&vault, &m)?;
    Ok(Json(meeting_out(&m, o, true)))
}

/// Erases a meeting's transcript now, with a receipt (admins and owners).
#[utoipa::path(delete, path = "/v1/meetings/{id}/transcript", tag = "privacy",
    params(("id" = String, Path)), responses((status = 200, body = ReceiptOut)))]
pub async fn delete_transcript(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReceiptOut>> {
    c.person()?;
    c.require(Role::Admin, "meetings:delete")?;
    let (m, _, _) = seen(&api, &c, &id).await?;
    // The transcript this copy shows: its own, or the one of the copy that held the bot.
    let session = session_of(&api, &c, &m).await?;
    let r = meetbot_store::erase::erase_transcript(
        &**api.tenants.store(),
        &c.tenant,
        &session,
        &c.actor(),
    )
    .await?
    .ok_or(ApiError::NotFound("transcript"))?;
    audit(&api, &c, "transcript.erase", &format!("meeting:{}", m.id)).await?;
    Ok(Json((&r).into()))
}

#[derive(Serialize, ToSchema)]
pub struct ReceiptList {
    pub items: Vec<ReceiptOut>,
}

/// The tenant's deletion receipts, oldest first (admins and owners).
#[utoipa::path(get, path = "/v1/privacy/deletions", tag = "privacy",
    responses((status = 200, body = ReceiptList)))]
pub async fn list_deletions(
    State(api): State<AppState>,
    c: Caller,
) -> ApiResult<Json<ReceiptList>> {
    c.person()?;
    c.require(Role::Admin, "meetings:delete")?;
    let items = api
        .tenants
        .store()
        .deletion_receipts(Some(&c.tenant))
        .await?
        .iter()
        .map(ReceiptOut::from)
        .collect();
    Ok(Json(ReceiptList { items }))
}

#[derive(Deserialize, ToSchema)]
pub struct ClientErasure {
    /// The client's (external contact's) email address.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
}

/// Erases every session the client attended (owners), with a receipt that names the client
/// only by a hash.
#[utoipa::path(post, path = "/v1/privacy/clients/erase", tag = "privacy",
    request_body = ClientErasure, responses((status = 200, body = ReceiptOut)))]
pub async fn erase_client(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<ClientErasure>,
) -> ApiResult<Json<ReceiptOut>> {
    c.person()?;
    c.require(Role::Owner, "meetings:delete")?;
    if !meetbot_delivery::email::is_address(body.email.trim()) {
        return Err(ApiError::BadRequest("email is not an email address".into()));
    }
    let r = meetbot_store::erase::erase_client(&api.tenants, &c.tenant, &body.email, &c.actor())
        .await?;
    audit(&api, &c, "client.erase", &r.target).await?;
    Ok(Json((&r).into()))
}

#[derive(Deserialize, ToSchema)]
pub struct AccountErasure {
    /// The tenant id, repeated: the erasure cannot be undone.
    pub confirm: String,
}

/// Erases the whole account (owners): its keys destroyed first, then its database dropped;
/// the receipt stays in the deletion log. Every token of the tenant stops working.
#[utoipa::path(delete, path = "/v1/account", tag = "privacy", request_body = AccountErasure,
    responses((status = 200, body = ReceiptOut)))]
pub async fn erase_account(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<AccountErasure>,
) -> ApiResult<Json<ReceiptOut>> {
    c.person()?;
    c.require(Role::Owner, "meetings:delete")?;
    if body.confirm != c.tenant.as_str() {
        return Err(ApiError::BadRequest(
            "confirm must repeat the tenant id: this cannot be undone".into(),
        ));
    }
    let r = api.tenants.erase(&c.tenant, &c.actor()).await?;
    tracing::info!(tenant = %c.tenant, receipt = %r.id, "account erased");
    Ok(Json((&r).into()))
}

#[derive(Deserialize, ToSchema)]
pub struct PersonErasure {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// The name meetings show for them, if the calendar did not carry it.
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// The right to erasure for one person (owners): their attendee records, their speech
/// segments ("[erased]") and their name in summaries, across the tenant, with a receipt.
#[utoipa::path(post, path = "/v1/privacy/people/erase", tag = "privacy",
    request_body = PersonErasure, responses((status = 200, body = ReceiptOut)))]
pub async fn erase_person(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<PersonErasure>,
) -> ApiResult<Json<ReceiptOut>> {
    c.person()?;
    c.require(Role::Owner, "meetings:delete")?;
    if !meetbot_delivery::email::is_address(body.email.trim()) {
        return Err(ApiError::BadRequest("email is not an email address".into()));
    }
    let name = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::BadRequest(
            "name is longer than 200 characters".into(),
        ));
    }
    let r =
        crate::person::erase_person(&api.tenants, &c.tenant, &body.email, name, &c.actor()).await?;
    audit(&api, &c, "person.erase", &r.target).await?;
    Ok(Json((&r).into()))
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntryOut {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// `user:<id>` or `key:<id>` (opaque).
    pub actor: String,
    pub action: String,
    /// What it was done to (opaque ids).
    pub target: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    /// Every entry is linked to the one before by its hash, none is missing or altered, and
    /// the last matches the separately kept head.
    pub intact: bool,
    /// Entries checked.
    pub entries: u64,
    /// What is wrong with the chain, if it is broken.
    pub problem: Option<String>,
    /// The newest entries (at most 100), newest first.
    pub recent: Vec<AuditEntryOut>,
}

/// The tenant's audit log: the chain's state, checked now, and its newest entries (admins).
#[utoipa::path(get, path = "/v1/privacy/audit", tag = "privacy",
    responses((status = 200, body = AuditOut)))]
pub async fn audit_log(State(api): State<AppState>, c: Caller) -> ApiResult<Json<AuditOut>> {
    c.person()?;
    c.require(Role::Admin, "settings:read")?;
    let store = api.tenants.store();
    let (intact, entries, problem) = match meetbot_store::audit::verify(&**store, &c.tenant).await?
    {
        Ok(r) => (true, r.entries, None),
        Err(b) => (false, 0, Some(b.to_string())),
    };
    let mut recent: Vec<AuditEntryOut> = store
        .audit_records(&c.tenant)
        .await?
        .into_iter()
        .filter_map(|(_, body)| {
            serde_json::from_value::<meetbot_core::model::AuditEvent>(body).ok()
        })
        .map(|e| AuditEntryOut {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
        })
        .collect();
    recent.sort_by_key(|e| std::cmp::Reverse(e.seq));
    recent.truncate(100);
    Ok(Json(AuditOut {
        intact,
        entries,
        problem,
        recent,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct KeyVersionOut {
    pub version: u32,
    /// Which key provider wrapped it: `local` (a key file) or `azure-key-vault`.
    pub provider: String,
    /// The key-encryption key that wraps it (a key file's fingerprint, or a Key Vault key id).
    pub kek_id: String,
    pub algorithm: String,
    pub created_at: DateTime<Utc>,
    /// New seals use this version.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct KeysOut {
    /// The tenant's data key versions, newest first: every sealed field of the tenant is
    /// sealed under one of them, and each is stored only wrapped by its key-encryption key.
    pub data_keys: Vec<KeyVersionOut>,
    /// Customer-held key mode: the age recipient delivered meetings are sealed to (the
    /// service cannot open those).
    pub customer_key: Option<String>,
}

/// Under which keys the tenant's data is sealed (admins).
#[utoipa::path(get, path = "/v1/privacy/keys", tag = "privacy",
    responses((status = 200, body = KeysOut)))]
pub async fn list_keys_sealing(State(api): State<AppState>, c: Caller) -> ApiResult<Json<KeysOut>> {
    c.person()?;
    c.require(Role::Admin, "settings:read")?;
    let store = api.tenants.store();
    let current = store
        .get_tenant(&c.tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?
        .current_key_version;
    let mut data_keys: Vec<KeyVersionOut> = store
        .wrapped_keys(&c.tenant)
        .await?
        .into_iter()
        .map(|k| KeyVersionOut {
            current: k.version == current,
            version: k.version,
            provider: k.provider,
            kek_id: k.kek_id,
            algorithm: k.algorithm,
            created_at: k.created_at,
        })
        .collect();
    data_keys.sort_by_key(|k| std::cmp::Reverse(k.version));
    let customer_key = store
        .get_tenant_settings(&c.tenant)
        .await?
        .and_then(|s| s.customer_key);
    Ok(Json(KeysOut {
        data_keys,
        customer_key,
    }))
}

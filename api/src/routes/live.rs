//! `GET /v1/meetings/{id}/live`: the transcript as it is made, as server-sent events.
//!
//! The transcriber stores each utterance as a sealed part the moment it is recognised
//! (decision 0041); this route reads the meeting's parts once a second and sends the segments
//! it has not sent yet. It streams only while a bot is launching or in the call; otherwise it
//! says where the bot stands and closes, and the browser's `EventSource` comes back after the
//! `retry` it was given. A stream also closes when its bot's job ends (`done`), after
//! [`MAX_STREAM`] (the client reconnects; segments carry ids to deduplicate), and when the
//! server stops.

use super::data::{newest_job, seen, session_of};
use super::{Path, audit};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{AppState, Stopping};
use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use meetbot_core::TenantId;
use meetbot_core::model::{BotJobState, Role};
use serde::Serialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::ToSchema;

/// How long one stream lasts at most; the client reconnects.
pub const MAX_STREAM: Duration = Duration::from_secs(600);
/// How often the meeting's parts are read.
const POLL: Duration = Duration::from_secs(1);
/// When to come back (ms), told to the client for a meeting with no bot in the call yet.
const RETRY_MS: u64 = 5000;
/// How often (in polls) a stream checks again that its viewer may still see the meeting and
/// that their session still exists.
const RECHECK_EVERY: u32 = 10;
/// Live streams one process serves at once; more are answered 503 (each polls the store).
pub const MAX_STREAMS: usize = 512;

static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One stream counted while it lives.
struct Counted;

impl Counted {
    fn take() -> Option<Counted> {
        use std::sync::atomic::Ordering;
        let n = STREAMS.fetch_add(1, Ordering::AcqRel);
        if n >= MAX_STREAMS {
            STREAMS.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Counted)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// One recognised utterance, as the `segment` event's data.
#[derive(Serialize, ToSchema)]
pub struct LiveSegment {
    /// Stable across reconnects: skip one already shown.
    pub id: String,
    /// The name the meeting showed, when it told.
    pub speaker: Option<String>,
    pub participant: String,
    /// Since the meeting's first bot stream began (a relaunched bot's lines continue its
    /// clock); lines are shown in this order.
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// The `people` event's data: who is in the call so far, as the bot saw them join and leave
/// (every stay, in the order they joined; sent again whenever it changes).
#[derive(Serialize, ToSchema)]
pub struct LivePeople {
    pub people: Vec<super::data::Stay>,
}

/// The `status` event's data: where the meeting's bot stands.
#[derive(Serialize, ToSchema)]
pub struct LiveStatus {
    /// none, scheduled, dispatched, launched, joined, done, failed, skipped, cancelled, stopped.
    pub bot: String,
    /// Whether segments are coming (a bot is launching or in the call).
    pub live: bool,
}

/// The meeting's transcript as it is made: `status` events (where the bot stands), `segment`
/// events (each new utterance, JSON), `people` events (who is in the call, when it changes),
/// and `done` once the bot has left.
#[utoipa::path(get, path = "/v1/meetings/{id}/live", tag = "meetings",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream",
        description = "events `status` (LiveStatus), `segment` (LiveSegment), `people` (LivePeople), `done`")))]
pub async fn live_transcript(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    stopping: Option<Extension<Stopping>>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    c.require(Role::Member, "transcripts:read")?;
    let (m, _, _) = seen(&api, &c, &id).await?;
    let session = session_of(&api, &c, &m).await?;
    let counted = Counted::take().ok_or_else(|| {
        ApiError::Unavailable(
            "too many live transcripts are open on this server; retry in a moment".into(),
        )
    })?;
    audit(&api, &c, "transcript.live", &format!("meeting:{}", m.id)).await?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let stopping = stopping.map(|Extension(s)| s);
    tokio::spawn(async move {
        let _counted = counted;
        let follow = follow(api, c, id, session, tx);
        let stopped = async move {
            match stopping {
                Some(s) => s.stopped().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = follow => {}
            _ = stopped => {}
            _ = tokio::time::sleep(MAX_STREAM) => {}
        }
    });
    Ok(Sse::new(rx).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Whether `c` may still read meeting `id`: their session still exists and the meeting is
/// still theirs to see (not deleted, their role unchanged).
async fn still_allowed(api: &AppState, c: &Caller, id: &str) -> bool {
    if let crate::auth::Who::User { session, .. } = &c.who {
        match api
            .tenants
            .store()
            .get_session(&c.tenant, &session.id)
            .await
        {
            Ok(Some(s)) if s.expires_at > chrono::Utc::now() => {}
            _ => return false,
        }
        match api
            .tenants
            .store()
            .get_user(&c.tenant, &session.user_id)
            .await
        {
            Ok(Some(u)) if u.role == c.role() => {}
            _ => return false,
        }
    }
    seen(api, c, id).await.is_ok()
}

/// Where the meeting's newest bot stands (`None`: it has none).
async fn bot_state(api: &AppState, t: &TenantId, meeting: &str) -> ApiResult<Option<BotJobState>> {
    Ok(newest_job(api, t, meeting).await?.map(|j| j.state))
}

fn is_live(s: &BotJobState) -> bool {
    matches!(
        s,
        BotJobState::Dispatched | BotJobState::Launched | BotJobState::Joined
    )
}

/// Sends the meeting's segments as they are stored until its bot is no longer live, the client
/// is gone, or the viewer may no longer see the meeting.
async fn follow(
    api: AppState,
    c: Caller,
    id: String,
    meeting: String,
    mut tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    let t = c.tenant.clone();
    let mut sent = Read::default();
    let mut last_status: Option<String> = None;
    let mut polls = 0u32;
    loop {
        if tx.is_closed() {
            return;
        }
        if polls > 0 && polls.is_multiple_of(RECHECK_EVERY) && !still_allowed(&api, &c, &id).await {
            return;
        }
        let state = match bot_state(&api, &t, &meeting).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tenant = %t, meeting = %meeting, error = %e, "live transcript: reading the bot failed");
                return;
            }
        };
        let live = state.as_ref().is_some_and(is_live);
        let name = state.as_ref().map_or("none", |s| s.name()).to_string();
        if last_status.as_deref() != Some(name.as_str()) {
            let data = serde_json::to_string(&LiveStatus {
                bot: name.clone(),
                live,
            })
            .unwrap_or_default();
            let mut ev = Event::default().event("status").data(data);
            if polls == 0 {
                ev = ev.retry(Duration::from_millis(RETRY_MS));
            }
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
            last_status = Some(name);
        }
        polls += 1;
        match segments(&api, &t, &meeting, &mut sent).await {
            Ok((new, people)) => {
                if people
                    && let Ok(data) = serde_json::to_string(&LivePeople {
                        people: sent.stays(),
                    })
                    && tx
                        .send(Ok(Event::default().event("people").data(data)))
                        .await
                        .is_err()
                {
                    return;
                }
                for s in new {
                    let Ok(data) = serde_json::to_string(&s) else {
                        continue;
                    };
                    let ev = Event::default().event("segment").id(s.id).data(data);
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %t, meeting = %meeting, error = %e, "live transcript: reading the parts failed");
                return;
            }
        }
        if !live {
            // An ended bot is final (the page shows the stored transcript); one not yet
            // launched is come back to after `retry`.
            if state.as_ref().is_some_and(|s| s.is_terminal()) {
                let _ = tx.send(Ok(Event::default().event("done").data("{}"))).await;
            }
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What a live stream has read of the meeting's parts.
#[derive(Default)]
struct Read {
    parts: HashSet<String>,
    /// Who is in the call so far, on the meeting's clock.
    people: Vec<meetbot_transcriber::presence::Presence>,
}

impl Read {
    fn stays(&self) -> Vec<super::data::Stay> {
        self.people
            .iter()
            .cloned()
            .map(super::data::Stay::from)
            .collect()
    }
}

/// The parts of `meeting` not read yet, opened: their segments in the order they were said,
/// and whether who is in the call changed.
async fn segments(
    api: &AppState,
    t: &TenantId,
    meeting: &str,
    read: &mut Read,
) -> ApiResult<(Vec<LiveSegment>, bool)> {
    use meetbot_transcriber::presence::{merge_presence, name};
    let parts = api
        .tenants
        .store()
        .transcript_parts(t, meeting, None)
        .await?;
    if parts.iter().all(|p| read.parts.contains(&p.id)) {
        return Ok((vec![], false));
    }
    let vault = api.tenants.vault(t).await?;
    // One clock for the meeting: from its first stream's start (a relaunched bot's stream
    // starts later and its lines continue that clock).
    let zero = parts
        .iter()
        .map(|p| p.stream_started_at)
        .min()
        .unwrap_or_default();
    let mut out = Vec::new();
    let before = read.people.clone();
    for p in parts {
        if !read.parts.insert(p.id.clone()) {
            continue;
        }
        let body = meetbot_transcriber::parts::open(&vault, &p)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let offset = (p.stream_started_at - zero).num_milliseconds().max(0) as u64;
        let mut here = body.presence;
        for s in &mut here {
            s.joined_ms += offset;
            s.left_ms = s.left_ms.map(|l| l + offset);
        }
        name(&mut here, &body.names);
        merge_presence(&mut read.people, here);
        for (i, s) in body.segments.into_iter().enumerate() {
            let speaker = s
                .speaker
                .or_else(|| body.names.get(&s.participant).cloned());
            out.push((
                offset + s.start_ms,
                LiveSegment {
                    id: format!("{}.{i}", p.id),
                    speaker,
                    participant: s.participant,
                    start_ms: offset + s.start_ms,
                    end_ms: offset + s.end_ms,
                    text: s.text,
                },
            ));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    Ok((
        out.into_iter().map(|(_, s)| s).collect(),
        read.people != before,
    ))
}

/// What the live route would send first for meeting `id`: where its bot stands, the segments
/// stored so far and who is in the call (for a page that shows them without JavaScript).
pub async fn live_so_far(
    api: &AppState,
    c: &Caller,
    id: &str,
) -> ApiResult<(LiveStatus, Vec<LiveSegment>, Vec<super::data::Stay>)> {
    c.require(Role::Member, "transcripts:read")?;
    let (m, _, _) = seen(api, c, id).await?;
    let session = session_of(api, c, &m).await?;
    let state = bot_state(api, &c.tenant, &session).await?;
    let status = LiveStatus {
        bot: state.as_ref().map_or("none", |s| s.name()).to_string(),
        live: state.as_ref().is_some_and(is_live),
    };
    if !status.live {
        return Ok((status, vec![], vec![]));
    }
    let mut read = Read::default();
    let (segs, _) = segments(api, &c.tenant, &session, &mut read).await?;
    if !segs.is_empty() || !read.people.is_empty() {
        audit(api, c, "transcript.live", &format!("meeting:{}", m.id)).await?;
    }
    Ok((status, segs, read.stays()))
}

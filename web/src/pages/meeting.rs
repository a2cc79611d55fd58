//! A meeting's page: what it is and who is in it, the bot and its timeline, the live
//! transcript while the bot is in the call, the summary, the transcript, where the summary
//! went; and the controls: stop the bot, delete the transcript, delete the session (and
//! restore it within the recovery window).

use super::meetings::{bot_words, platform_name};
use super::{Chrome, When, clock, render};
use crate::viewer::{CsrfForm, Form, Viewer, WebError};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use meetbot_api::AppState;
use meetbot_api::error::ApiError;
use meetbot_api::routes::{self, BotOut, DeliveryOut, LiveSegment, Person, Stay, SummaryOut};
use meetbot_core::model::Role;
use serde::Deserialize;

pub struct Line {
    pub id: String,
    /// Where in the meeting (ms): lines are kept in this order.
    pub at_ms: u64,
    pub speaker: String,
    pub at: String,
    pub text: String,
}

/// One participant's stay in the call.
pub struct Here {
    pub who: String,
    pub joined: String,
    pub left: String,
}

pub struct Step {
    pub state: String,
    pub reason: Option<String>,
    pub when: When,
}

pub struct Sent {
    pub channel: String,
    pub state: String,
    pub when: Option<When>,
    pub attempts: u32,
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "meeting.html")]
struct MeetingPage {
    chrome: Chrome,
    csrf: String,
    id: String,
    title: String,
    starts: When,
    ends: When,
    platform: String,
    organizer: Option<String>,
    people: Vec<Person>,
    /// Who was (or is) in the call, as the bot saw them join and leave.
    stays: Vec<Here>,
    bot_text: String,
    badge: &'static str,
    bot: Option<BotOut>,
    timeline: Vec<Step>,
    /// The bot may be stopped (it has not ended) and this person may stop it.
    can_stop: bool,
    live: bool,
    live_lines: Vec<Line>,
    /// The bot is in the call or has just left and the summary is not stored yet: the page
    /// looks again by itself (with JavaScript).
    summary_pending: bool,
    summary: Option<SummaryOut>,
    transcript: Option<Vec<Line>>,
    /// Sealed to the tenant's own key: not readable here.
    customer_sealed: bool,
    transcript_expires: Option<When>,
    deliveries: Vec<Sent>,
    admin: bool,
}

fn speaker(s: Option<String>, participant: &str) -> String {
    s.unwrap_or_else(|| {
        let short: String = participant.chars().take(6).collect();
        format!("Speaker {short}")
    })
}

fn live_line(s: LiveSegment) -> Line {
    Line {
        speaker: speaker(s.speaker, &s.participant),
        at: clock(s.start_ms),
        at_ms: s.start_ms,
        text: s.text,
        id: s.id,
    }
}

fn here(s: Stay, live: bool) -> Here {
    Here {
        who: speaker(s.name, &s.participant),
        joined: clock(s.joined_ms),
        left: match s.left_ms {
            Some(l) => clock(l),
            None if live => "in the call".into(),
            None => "stayed until the bot left".into(),
        },
    }
}

/// Not found (no transcript yet, no summary yet) is an answer, not a failure.
fn optional<T>(r: Result<T, ApiError>) -> Result<Option<T>, WebError> {
    match r {
        Ok(x) => Ok(Some(x)),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn page(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let c = &v.caller;
    let m = routes::get_meeting(State(api.clone()), c.clone(), routes::Path(id.clone()))
        .await?
        .0;
    let (status, so_far, people_now) = routes::live_so_far(&api, c, &id).await?;
    let summary = optional(
        routes::get_summary(State(api.clone()), c.clone(), routes::Path(id.clone()))
            .await
            .map(|j| j.0),
    )?;
    let transcript = optional(
        routes::get_transcript(State(api.clone()), c.clone(), routes::Path(id.clone()))
            .await
            .map(|j| j.0),
    )?;
    let deliveries =
        routes::list_deliveries(State(api.clone()), c.clone(), routes::Path(id.clone()))
            .await?
            .0
            .items;
    let owns = match api.tenants.store().get_meeting(&c.tenant, &id).await {
        Ok(Some(stored)) => routes::Visibility::of(&api, c).await?.owns(&stored),
        _ => false,
    };
    let (bot_text, badge) = bot_words(m.wants_bot, m.join_reason.as_deref(), m.bot.as_ref());
    let can_stop = m.bot.as_ref().is_some_and(|b| {
        matches!(
            b.state.as_str(),
            "scheduled" | "dispatched" | "launched" | "joined"
        )
    }) && (owns || v.role() >= Role::Admin);
    let just_left = m.bot.as_ref().is_some_and(|b| {
        b.state == "done"
            && b.timeline
                .last()
                .is_some_and(|s| chrono::Utc::now() - s.at < chrono::Duration::minutes(10))
    });
    let summary_pending = summary.is_none() && (status.live || just_left);
    let customer_sealed = transcript
        .as_ref()
        .is_some_and(|t| t.customer_sealed.is_some());
    let transcript_expires = transcript.as_ref().and_then(|t| t.expires_at).map(When::of);
    let stays: Vec<Here> = if status.live {
        people_now.into_iter().map(|s| here(s, true)).collect()
    } else {
        transcript
            .as_ref()
            .map(|t| {
                t.participants
                    .iter()
                    .cloned()
                    .map(|s| here(s, false))
                    .collect()
            })
            .unwrap_or_default()
    };
    let transcript = transcript.filter(|t| t.customer_sealed.is_none()).map(|t| {
        t.segments
            .into_iter()
            .enumerate()
            .map(|(i, s)| Line {
                id: i.to_string(),
                at_ms: s.start_ms,
                speaker: speaker(s.speaker, &s.participant),
                at: clock(s.start_ms),
                text: s.text,
            })
            .collect()
    });
    let page = MeetingPage {
        chrome: Chrome::of(&v, m.title.clone(), "meetings"),
        csrf: v.csrf.clone(),
        admin: v.is_admin(),
        starts: When::of(m.starts_at),
        ends: When::of(m.ends_at),
        platform: platform_name(m.platform.as_deref()),
        organizer: m.organizer.clone(),
        timeline: m
            .bot
            .as_ref()
            .map(|b| {
                b.timeline
                    .iter()
                    .map(|s| Step {
                        state: s.state.clone(),
                        reason: s.reason.clone(),
                        when: When::of(s.at),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        bot_text,
        badge,
        can_stop,
        live: status.live,
        summary_pending,
        live_lines: so_far.into_iter().map(live_line).collect(),
        summary: summary.filter(|s| s.customer_sealed.is_none()),
        customer_sealed,
        transcript,
        transcript_expires,
        deliveries: deliveries.into_iter().map(sent).collect(),
        title: m.title,
        people: m.people,
        stays,
        bot: m.bot,
        id: m.id,
    };
    Ok(render(&page))
}

fn sent(d: DeliveryOut) -> Sent {
    Sent {
        channel: match d.channel.as_str() {
            "slack" => "Slack",
            "email" => "Email",
            "webhook" => "Webhook",
            _ => "Other",
        }
        .into(),
        state: match d.state.as_str() {
            "pending" => "waiting to send",
            "sending" => "sending",
            "sent" => "sent",
            "gave_up" => "not sent",
            _ => "unknown",
        }
        .into(),
        when: d.sent_at.map(When::of),
        attempts: d.attempts,
        problem: d.reason.or(d.last_error),
    }
}

#[derive(Deserialize)]
pub struct StopForm {
    csrf: String,
    bot: String,
}

/// Stop the bot now: it leaves the call; nothing more of the meeting is kept or sent.
pub async fn stop(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<StopForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    // The bot must be this meeting's: a form naming another meeting's bot is refused.
    let m = routes::get_meeting(
        State(api.clone()),
        v.caller.clone(),
        routes::Path(id.clone()),
    )
    .await?
    .0;
    if m.bot.as_ref().is_none_or(|b| b.id != f.bot) {
        return Err(ApiError::NotFound("bot").into());
    }
    routes::leave_bot(State(api), v.caller, routes::Path(f.bot)).await?;
    Ok(Redirect::to(&format!("/app/meetings/{id}")).into_response())
}

pub async fn delete_transcript(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    routes::delete_transcript(State(api), v.caller, routes::Path(id.clone())).await?;
    Ok(Redirect::to(&format!("/app/meetings/{id}")).into_response())
}

/// Deletes the session (restorable within the recovery window), then shows how to restore it.
pub async fn delete(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    routes::delete_meeting(
        State(api),
        v.caller,
        routes::Path(id.clone()),
        routes::Query(routes::DeleteQuery { permanently: None }),
    )
    .await?;
    Ok(Redirect::to(&format!("/app/meetings/{id}/restore")).into_response())
}

#[derive(Template)]
#[template(path = "restore.html")]
struct RestorePage {
    chrome: Chrome,
    csrf: String,
    id: String,
    deleted: When,
    until: When,
    can_restore: bool,
}

/// A deleted session: when it goes for good, and (owners) the restore button.
pub async fn restore_page(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    v.require_admin()?;
    let m = api
        .tenants
        .store()
        .get_meeting(&v.caller.tenant, &id)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound("deleted meeting"))?;
    let Some(at) = m.deleted_at else {
        return Ok(Redirect::to(&format!("/app/meetings/{id}")).into_response());
    };
    Ok(render(&RestorePage {
        chrome: Chrome::of(&v, "Session deleted", "meetings"),
        csrf: v.csrf.clone(),
        can_restore: v.role() >= Role::Owner,
        deleted: When::of(at),
        until: When::of(at + meetbot_api::routes::RECOVERY_WINDOW),
        id,
    }))
}

pub async fn restore(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    routes::restore_meeting(State(api), v.caller, routes::Path(id.clone())).await?;
    Ok(Redirect::to(&format!("/app/meetings/{id}")).into_response())
}

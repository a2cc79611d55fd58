//! The meetings page (upcoming, live, past; search; pages) and sending a bot to a link now.

use super::{Chrome, When, render};
use crate::viewer::{Form, Viewer, WebError};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};
use meetbot_api::AppState;
use meetbot_api::error::ApiError;
use meetbot_api::routes::{self, BotOut, MeetingOut};
use serde::Deserialize;

pub struct Row {
    pub id: String,
    pub title: String,
    pub when: When,
    pub platform: String,
    pub people: usize,
    pub bot: String,
    /// A short state word for the badge (also in the text: nothing by colour alone).
    pub badge: &'static str,
}

/// What the bot will do or did, and why, in words.
pub fn bot_words(
    m_wants: bool,
    reason: Option<&str>,
    bot: Option<&BotOut>,
) -> (String, &'static str) {
    match bot {
        Some(b) => match b.state.as_str() {
            "scheduled" | "dispatched" => (
                format!("Bot joins at {}", b.join_at.format("%H:%M UTC, %-d %b")),
                "armed",
            ),
            "launched" => ("Bot is joining".into(), "live"),
            "joined" => ("Bot is in the call".into(), "live"),
            "done" => ("Bot attended".into(), "done"),
            "failed" => (
                format!(
                    "Bot could not join: {}",
                    b.reason.as_deref().unwrap_or("no reason given")
                ),
                "problem",
            ),
            "skipped" => (
                format!(
                    "Skipped: {}",
                    b.reason.as_deref().unwrap_or("no reason given")
                ),
                "off",
            ),
            "stopped" => ("Bot was stopped".into(), "off"),
            _ => ("Bot cancelled".into(), "off"),
        },
        None if m_wants => (
            "Bot will join (armed shortly before the start)".into(),
            "armed",
        ),
        None => (
            format!(
                "No bot: {}",
                reason.unwrap_or("your auto-join rules do not select it")
            ),
            "off",
        ),
    }
}

fn row(m: MeetingOut) -> Row {
    let (bot, badge) = bot_words(m.wants_bot, m.join_reason.as_deref(), m.bot.as_ref());
    Row {
        when: When::of(m.starts_at),
        platform: platform_name(m.platform.as_deref()),
        people: m.people.len(),
        title: m.title,
        id: m.id,
        bot,
        badge,
    }
}

pub fn platform_name(p: Option<&str>) -> String {
    match p {
        Some("zoom") => "Zoom",
        Some("google_meet") => "Google Meet",
        Some("teams") => "Microsoft Teams",
        Some("webex") => "Webex",
        Some("jitsi") => "Jitsi",
        Some("janus") | Some("web_rtc") => "Web room",
        Some(_) => "Other",
        None => "No link",
    }
    .to_string()
}

pub struct LiveRow {
    pub meeting_id: String,
    pub title: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "meetings.html")]
struct MeetingsPage {
    chrome: Chrome,
    view: String,
    q: String,
    from: String,
    to: String,
    live: Vec<LiveRow>,
    rows: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    view: Option<String>,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

fn date(field: &str, s: Option<&str>) -> Result<Option<NaiveDate>, WebError> {
    match s.map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                ApiError::BadRequest(format!("{field}: give a date as YYYY-MM-DD")).into()
            }),
    }
}

/// `/app/`: the meetings the person may see.
pub async fn list(
    State(api): State<AppState>,
    v: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let view = match q.view.as_deref() {
        None | Some("") | Some("upcoming") => "upcoming",
        Some("past") => "past",
        Some("all") => "all",
        Some(_) => {
            return Err(ApiError::BadRequest("view: upcoming, past or all".into()).into());
        }
    };
    let from_day = date("from", q.from.as_deref())?;
    let to_day = date("to", q.to.as_deref())?;
    let now = Utc::now();
    let mut from = from_day
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    let mut to = to_day
        .and_then(|d| d.succ_opt())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    match view {
        // Under way too: a meeting that began in the last hour is still on.
        "upcoming" => {
            from = Some(from.map_or(now - chrono::Duration::hours(1), |f| {
                f.max(now - chrono::Duration::hours(1))
            }))
        }
        "past" => to = Some(to.map_or(now, |t| t.min(now))),
        _ => {}
    }
    let search = q.q.clone().unwrap_or_default();
    let page = routes::list_meetings(
        State(api.clone()),
        v.caller.clone(),
        routes::Query(routes::MeetingQuery {
            from,
            to,
            q: (!search.trim().is_empty()).then(|| search.clone()),
            order: Some(if view == "past" { "desc" } else { "asc" }.into()),
            limit: Some(25),
            cursor: q.cursor.clone().filter(|c| !c.is_empty()),
        }),
    )
    .await?
    .0;
    let mut live = Vec::new();
    if q.cursor.is_none() {
        for state in ["joined", "launched"] {
            let bots = routes::list_bots(
                State(api.clone()),
                v.caller.clone(),
                routes::Query(routes::BotQuery {
                    state: Some(state.into()),
                    limit: Some(20),
                    cursor: None,
                }),
            )
            .await?
            .0;
            for b in bots.items {
                let title = match routes::get_meeting(
                    State(api.clone()),
                    v.caller.clone(),
                    routes::Path(b.meeting_id.clone()),
                )
                .await
                {
                    Ok(m) => m.0.title,
                    Err(_) => continue,
                };
                live.push(LiveRow {
                    meeting_id: b.meeting_id,
                    title,
                    state: if state == "joined" {
                        "in the call"
                    } else {
                        "joining"
                    }
                    .into(),
                });
            }
        }
    }
    let next = page.next_cursor.map(|c| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("view", view);
        if !search.is_empty() {
            s.append_pair("q", &search);
        }
        if let Some(f) = &q.from {
            s.append_pair("from", f);
        }
        if let Some(t) = &q.to {
            s.append_pair("to", t);
        }
        s.append_pair("cursor", &c);
        format!("/app/?{}", s.finish())
    });
    Ok(render(&MeetingsPage {
        chrome: Chrome::of(&v, "Meetings", "meetings"),
        view: view.into(),
        q: search,
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        live,
        rows: page.items.into_iter().map(row).collect(),
        next,
    }))
}

#[derive(Template)]
#[template(path = "new_bot.html")]
struct NewBotPage {
    chrome: Chrome,
    csrf: String,
}

pub async fn new_bot_page(v: Viewer) -> Response {
    render(&NewBotPage {
        csrf: v.csrf.clone(),
        chrome: Chrome::of(&v, "Send a bot", "send"),
    })
}

#[derive(Deserialize)]
pub struct NewBotForm {
    csrf: String,
    meeting_url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    bot_name: String,
}

/// Sends a bot to a link now (the API's `POST /v1/bots`), then shows its meeting.
pub async fn new_bot(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<NewBotForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    let blank = |s: String| {
        let t = s.trim().to_string();
        (!t.is_empty()).then_some(t)
    };
    let (_, bot) = routes::create_bot(
        State(api),
        v.caller,
        routes::Json(routes::NewBot {
            meeting_url: f.meeting_url,
            join_at: None,
            title: blank(f.title),
            bot_name: blank(f.bot_name),
        }),
    )
    .await?;
    Ok(Redirect::to(&format!("/app/meetings/{}", bot.0.meeting_id)).into_response())
}

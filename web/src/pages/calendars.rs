//! Calendars: the person's connections (Google, Microsoft, ICS feeds), connecting and
//! disconnecting them, and their auto-join rules.

use super::{Chrome, When, json_of, list, render};
use crate::viewer::{CsrfForm, Form, Viewer, WebError};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use meetbot_api::AppState;
use meetbot_api::error::ApiError;
use meetbot_api::routes::{self, CalendarOut, Rules};
use serde::Deserialize;

pub struct Cal {
    pub id: String,
    pub provider: String,
    pub account: String,
    pub state: String,
    pub error: Option<String>,
    pub synced: Option<When>,
    pub events: Option<u64>,
    pub mine: bool,
}

fn cal(c: CalendarOut, me: &str) -> Cal {
    Cal {
        provider: match c.provider.as_str() {
            "google" => "Google Calendar",
            "microsoft" => "Microsoft Outlook",
            "ics" => "ICS feed",
            _ => "Calendar",
        }
        .into(),
        mine: c.user_id == me,
        account: c.account_email,
        state: c.state.replace('_', " "),
        error: c.error,
        synced: c.last_synced_at.map(When::of),
        events: c.events,
        id: c.id,
    }
}

#[derive(Template)]
#[template(path = "calendars.html")]
struct CalendarsPage {
    chrome: Chrome,
    csrf: String,
    calendars: Vec<Cal>,
    mode: String,
    include: String,
    exclude: String,
    domains: String,
    notice: Option<String>,
    /// What the rules in the form would do (not saved), when previewed.
    preview: Option<Vec<PreviewRow>>,
}

pub struct PreviewRow {
    pub meeting_id: String,
    pub title: String,
    pub when: When,
    pub join: bool,
    pub reason: String,
}

pub async fn page(State(api): State<AppState>, v: Viewer) -> Result<Response, WebError> {
    show(api, v, None, None).await
}

async fn show(
    api: AppState,
    v: Viewer,
    notice: Option<String>,
    draft: Option<(Rules, Vec<PreviewRow>)>,
) -> Result<Response, WebError> {
    let me = v.caller.person()?.id.clone();
    let list = routes::list_calendars(State(api.clone()), v.caller.clone())
        .await?
        .0
        .items;
    let (rules, preview) = match draft {
        Some((r, p)) => (r, Some(p)),
        None => (
            routes::get_rules(State(api), v.caller.clone()).await?.0,
            None,
        ),
    };
    let mode = routes::wire(&rules.mode);
    Ok(render(&CalendarsPage {
        chrome: Chrome::of(&v, "Calendars", "calendars"),
        csrf: v.csrf.clone(),
        calendars: list.into_iter().map(|c| cal(c, &me)).collect(),
        mode,
        include: rules.include_keywords.join(", "),
        exclude: rules.exclude_keywords.join(", "),
        domains: rules.internal_domains.join(", "),
        notice,
        preview,
    }))
}

#[derive(Deserialize)]
pub struct IcsForm {
    csrf: String,
    feed_url: String,
}

/// Connects an ICS feed (the API checks the address: no private networks, http(s) only).
pub async fn connect_ics(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<IcsForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    routes::connect_ics(
        State(api),
        v.caller,
        routes::Json(routes::ConnectIcs {
            feed_url: f.feed_url,
        }),
    )
    .await?;
    Ok(Redirect::to("/app/calendars").into_response())
}

#[derive(Deserialize)]
pub struct ProviderForm {
    csrf: String,
    provider: String,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    chrome: Chrome,
    provider: &'static str,
    url: String,
}

/// Starts the provider's consent (calendar scopes only) and sends the person on with a link:
/// the consent is bound to this browser by the cookie set here.
pub async fn connect(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<ProviderForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    let (kind, name) = match f.provider.as_str() {
        "google" => (routes::CalendarKind::Google, "Google"),
        "microsoft" => (routes::CalendarKind::Microsoft, "Microsoft"),
        _ => return Err(ApiError::BadRequest("provider: google or microsoft".into()).into()),
    };
    let chrome = Chrome::of(&v, format!("Connect {name}"), "calendars");
    let resp = routes::connect_calendar(
        State(api),
        v.caller,
        routes::Json(routes::ConnectCalendar { provider: kind }),
    )
    .await?;
    let cookies: Vec<_> = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let consent = json_of(resp, "consent").await?;
    let url = consent["authorization_url"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| ApiError::Internal("the consent has no address".into()))?
        .to_string();
    let mut page = render(&ConsentPage {
        chrome,
        provider: name,
        url,
    });
    for c in cookies {
        page.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(page)
}

pub async fn disconnect(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    routes::disconnect_calendar(State(api), v.caller, routes::Path(id)).await?;
    Ok(Redirect::to("/app/calendars").into_response())
}

#[derive(Deserialize)]
pub struct RulesForm {
    csrf: String,
    mode: String,
    #[serde(default)]
    include: String,
    #[serde(default)]
    exclude: String,
    #[serde(default)]
    domains: String,
    /// "preview": show what the rules would do, without saving them.
    #[serde(default)]
    action: String,
}

pub async fn save_rules(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<RulesForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    let draft = || -> Result<Rules, WebError> {
        serde_json::from_value(serde_json::json!({
            "mode": f.mode,
            "include_keywords": list(&f.include),
            "exclude_keywords": list(&f.exclude),
            "internal_domains": list(&f.domains),
        }))
        .map_err(|_| ApiError::BadRequest("mode: choose one of the listed rules".into()).into())
    };
    if f.action == "preview" {
        let items =
            routes::preview_rules(State(api.clone()), v.caller.clone(), routes::Json(draft()?))
                .await?
                .0
                .items;
        let rows = items
            .into_iter()
            .map(|i| PreviewRow {
                meeting_id: i.meeting_id,
                title: i.title,
                when: When::of(i.starts_at),
                join: i.join,
                reason: i.reason,
            })
            .collect();
        return show(
            api,
            v,
            Some("A preview: these rules are not saved yet.".into()),
            Some((draft()?, rows)),
        )
        .await;
    }
    routes::put_rules(State(api.clone()), v.caller.clone(), routes::Json(draft()?)).await?;
    show(
        api,
        v,
        Some("Your auto-join rules are saved; the meetings page shows what they select.".into()),
        None,
    )
    .await
}

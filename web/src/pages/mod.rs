//! The pages, one module per part of the app, and what every page shares: the frame
//! ([`Chrome`]: title and navigation), rendering, the static assets and times.

pub mod admin;
pub mod calendars;
pub mod meeting;
pub mod meetings;
pub mod settings;
pub mod signin;

use crate::viewer::{Viewer, WebError};
use askama::Template;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use meetbot_api::error::ApiError;

/// The frame of a page: its title and, for a signed-in person, the navigation.
pub struct Chrome {
    pub title: String,
    pub nav: Option<Nav>,
}

pub struct Nav {
    /// Which entry is this page: meetings, send, calendars, people, settings, privacy.
    pub here: &'static str,
    pub admin: bool,
    pub role: &'static str,
    pub csrf: String,
}

impl Chrome {
    /// A page for `v`, under the navigation entry `here`.
    pub fn of(v: &Viewer, title: impl Into<String>, here: &'static str) -> Self {
        Chrome {
            title: title.into(),
            nav: Some(Nav {
                here,
                admin: v.is_admin(),
                role: v.role().name(),
                csrf: v.csrf.clone(),
            }),
        }
    }

    /// A page with no navigation (sign-in, errors).
    pub fn bare(title: impl Into<String>) -> Self {
        Chrome {
            title: title.into(),
            nav: None,
        }
    }
}

/// A template as an HTML response.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub heading: &'static str,
    pub message: String,
    pub request_id: String,
}

pub async fn not_found() -> WebError {
    WebError::Api(ApiError::NotFound("page"))
}

const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");

/// `/app/static/{file}`: the stylesheet and the script, built into the binary.
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.css" => ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response(),
        "app.js" => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            JS,
        )
            .into_response(),
        _ => WebError::Api(ApiError::NotFound("file")).into_response(),
    }
}

/// A form field holding a list: entries separated by commas or lines, trimmed, blanks dropped.
pub fn list(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// The JSON body of an API handler's response (`what` names it in the error), for the handlers
/// that answer with a whole response (a cookie beside the body).
pub async fn json_of(resp: Response, what: &str) -> Result<serde_json::Value, WebError> {
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the {what}: {e}")))?;
    Ok(serde_json::from_slice(&body)
        .map_err(|e| ApiError::Internal(format!("reading the {what}: {e}")))?)
}

/// An instant as pages show it: UTC on the server (the script shows it in local time), with
/// the machine-readable form for `<time datetime>`.
pub struct When {
    pub iso: String,
    pub text: String,
}

impl When {
    pub fn of(t: DateTime<Utc>) -> Self {
        When {
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            text: t.format("%a %-d %b %Y, %H:%M UTC").to_string(),
        }
    }
}

/// `m:ss` (or `h:mm:ss`) from milliseconds.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_read_as_minutes_and_seconds_then_hours() {
        assert_eq!(clock(0), "0:00");
        assert_eq!(clock(61_500), "1:01");
        assert_eq!(clock(3_723_000), "1:02:03");
    }
}

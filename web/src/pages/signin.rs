//! Signing in and out: the configured OpenID providers, `meetbot dev`'s one-time link, and the
//! TOTP code a session may owe.

use super::{Chrome, render};
use crate::viewer::{CsrfForm, Form, Viewer, WebError, csrf_token};
use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use meetbot_api::AppState;
use meetbot_api::auth::{Caller, PendingCaller, Who};
use meetbot_api::error::ApiError;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    providers: Vec<String>,
    tenant: String,
    links: bool,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    tenant: Option<String>,
}

/// The sign-in page; a person already signed in goes to their meetings.
pub async fn page(State(api): State<AppState>, mut parts: axum::http::request::Parts) -> Response {
    if Caller::from_request_parts(&mut parts, &api).await.is_ok() {
        return Redirect::to("/app/").into_response();
    }
    let q = Query::<SignInQuery>::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or(SignInQuery { tenant: None });
    render(&SignInPage {
        chrome: Chrome::bare("Sign in"),
        providers: api.oidc.names(),
        tenant: q.tenant.unwrap_or_default().chars().take(64).collect(),
        links: api.sign_in_links.is_some(),
    })
}

#[derive(Deserialize)]
pub struct StartQuery {
    provider: String,
    tenant: String,
}

/// To the provider's sign-in (the API's login route, which binds the sign-in to this browser).
pub async fn start(
    State(api): State<AppState>,
    Query(q): Query<StartQuery>,
) -> Result<Response, WebError> {
    if !api.oidc.names().contains(&q.provider) {
        return Err(ApiError::NotFound("sign-in provider").into());
    }
    let tenant = q.tenant.trim();
    if tenant.parse::<meetbot_core::TenantId>().is_err() {
        return Err(ApiError::BadRequest(
            "the organisation id is not one meetbot makes: ask your admin for your sign-in link"
                .into(),
        )
        .into());
    }
    let to = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("tenant", tenant)
        .finish();
    Ok(Redirect::to(&format!("/v1/auth/{}/login?{to}", q.provider)).into_response())
}

/// `meetbot dev`'s one-time link: a session for the demo owner, from this machine only.
pub async fn link(
    State(api): State<AppState>,
    Path(secret): Path<String>,
    parts: axum::http::request::Parts,
) -> Result<Response, WebError> {
    let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied() else {
        return Err(ApiError::Forbidden("the client's address is unknown".into()).into());
    };
    let (_, session) = meetbot_api::signin_link::redeem(&api, &secret, peer.ip()).await?;
    let cookie = meetbot_api::routes::session_cookie(&api, &session.token);
    let mut resp = Redirect::to(if session.mfa_required {
        "/app/sign-in/totp"
    } else {
        "/app/"
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    chrome: Chrome,
    csrf: String,
}

fn pending_csrf(c: &Caller) -> Result<String, WebError> {
    match &c.who {
        Who::User { session, .. } => Ok(csrf_token(&session.id)),
        Who::Key(_) => Err(WebError::SignIn),
    }
}

async fn pending(
    api: &AppState,
    parts: &mut axum::http::request::Parts,
) -> Result<Caller, WebError> {
    match PendingCaller::from_request_parts(parts, api).await {
        Ok(PendingCaller(c)) => Ok(c),
        Err(ApiError::Unauthorized(_)) => Err(WebError::SignIn),
        Err(e) => Err(e.into()),
    }
}

/// The page asking for the session's TOTP code.
pub async fn totp_page(
    State(api): State<AppState>,
    mut parts: axum::http::request::Parts,
) -> Result<Response, WebError> {
    let c = pending(&api, &mut parts).await?;
    if let Who::User { session, .. } = &c.who
        && session.mfa_passed
    {
        return Ok(Redirect::to("/app/").into_response());
    }
    Ok(render(&TotpPage {
        chrome: Chrome::bare("Your code"),
        csrf: pending_csrf(&c)?,
    }))
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

pub async fn totp_submit(
    State(api): State<AppState>,
    mut parts: axum::http::request::Parts,
    Form(f): Form<CodeForm>,
) -> Result<Response, WebError> {
    let c = pending(&api, &mut parts).await?;
    crate::viewer::check_token(&pending_csrf(&c)?, &f.csrf)?;
    meetbot_api::routes::totp_verify(
        State(api),
        PendingCaller(c),
        meetbot_api::routes::Json(meetbot_api::routes::CodeIn {
            code: f.code.trim().to_string(),
        }),
    )
    .await?;
    Ok(Redirect::to("/app/").into_response())
}

/// Ends the session and forgets the cookie.
pub async fn sign_out(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    meetbot_api::routes::logout(State(api), PendingCaller(v.caller)).await?;
    let mut resp = Redirect::to("/app/sign-in").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("meetbot_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(resp)
}

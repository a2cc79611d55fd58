//! Who is looking at a page, and the forms they send.
//!
//! * [`Viewer`]: the API's [`Caller`] from the session cookie, with every factor given. No
//!   session: to the sign-in page; a TOTP code owed: to the code page. API keys are for
//!   programs: the web app refuses them.
//! * CSRF: every form carries `csrf`, the SHA-256 of a fixed label and the session's id (itself
//!   the hash of the secret in the HttpOnly cookie): another site can neither read nor make it,
//!   and it changes with every session. [`Viewer::check`] compares it in constant time.
//! * [`WebError`]: any failure as an HTML page with the API's status and message and the
//!   request id, never a stack of JSON in a person's browser.

use crate::pages::{Chrome, ErrorPage, render};
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use meetbot_api::AppState;
use meetbot_api::auth::{Caller, Who};
use meetbot_api::error::ApiError;
use meetbot_core::model::Role;
use sha2::{Digest, Sha256};

/// A person signed in to the web app.
pub struct Viewer {
    pub caller: Caller,
    /// This session's form token.
    pub csrf: String,
}

/// Refuses `presented` unless it is `expected` (compared in constant time).
pub fn check_token(expected: &str, presented: &str) -> Result<(), WebError> {
    let ok = presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(WebError::Api(ApiError::Forbidden(
            "this form is out of date or was not sent from this app's page: reload the page \
             and try again"
                .into(),
        )))
    }
}

/// The form token of session `session_id`.
pub fn csrf_token(session_id: &str) -> String {
    hex::encode(Sha256::digest(
        format!("meetbot web form\u{0}{session_id}").as_bytes(),
    ))
}

impl Viewer {
    pub fn role(&self) -> Role {
        self.caller.role()
    }

    pub fn is_admin(&self) -> bool {
        self.role() >= Role::Admin
    }

    /// Refuses a form whose token is not this session's.
    pub fn check(&self, presented: &str) -> Result<(), WebError> {
        check_token(&self.csrf, presented)
    }

    /// An admin page: a member gets a 403 page.
    pub fn require_admin(&self) -> Result<(), WebError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(WebError::Api(ApiError::Forbidden(
                "this page is for the organisation's admins and owners".into(),
            )))
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, api: &AppState) -> Result<Self, WebError> {
        // Only the cookie: a bearer token is a program's, and pages are for people.
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Err(WebError::Api(ApiError::Forbidden(
                "the web app is for people signed in in a browser; programs use /v1 with their \
                 token"
                    .into(),
            )));
        }
        match Caller::from_request_parts(parts, api).await {
            Ok(caller) => {
                let Who::User { session, .. } = &caller.who else {
                    return Err(WebError::SignIn);
                };
                let csrf = csrf_token(&session.id);
                Ok(Viewer { caller, csrf })
            }
            Err(ApiError::Unauthorized(_)) => Err(WebError::SignIn),
            Err(ApiError::MfaRequired) => Err(WebError::Redirect("/app/sign-in/totp".into())),
            Err(e) => Err(WebError::Api(e)),
        }
    }
}

/// A form that carries nothing but its token (a button: stop, delete, revoke, sign out).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// A form body, with a bad one answered by an error page.
#[derive(FromRequest)]
#[from_request(via(axum::Form), rejection(WebError))]
pub struct Form<T>(pub T);

/// What a page answers when it cannot show what was asked.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in (or the session ended): to the sign-in page.
    SignIn,
    /// Somewhere else first (the TOTP page).
    Redirect(String),
    Api(ApiError),
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        WebError::Api(e)
    }
}

impl From<FormRejection> for WebError {
    fn from(e: FormRejection) -> Self {
        WebError::Api(ApiError::BadRequest(format!(
            "the form could not be read: {}",
            e.body_text()
        )))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn => Redirect::to("/app/sign-in").into_response(),
            WebError::Redirect(to) => Redirect::to(&to).into_response(),
            WebError::Api(e) => {
                let status = e.status();
                let heading = match status {
                    StatusCode::FORBIDDEN => "You do not have access to this",
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::BAD_REQUEST => "That did not work",
                    StatusCode::CONFLICT => "That cannot be done now",
                    StatusCode::UNAUTHORIZED => "Sign-in needed",
                    StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                    s if s.is_server_error() => "Something went wrong on our side",
                    _ => "That did not work",
                };
                let message = match &e {
                    ApiError::NotFound(what) => format!(
                        "There is no {what} here, or it is not yours to see. It may have been \
                         deleted."
                    ),
                    ApiError::Internal(_) => {
                        tracing::error!(error = %e, "a page failed");
                        "The server could not finish this. Try again in a moment; if it keeps \
                         happening, give your admin the request id below."
                            .to_string()
                    }
                    other => other.to_string(),
                };
                let page = ErrorPage {
                    chrome: Chrome::bare(heading),
                    heading,
                    message,
                    request_id: meetbot_api::error::current_request_id(),
                };
                (status, render(&page)).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_tokens_are_64_hex_digits_and_differ_per_session() {
        let a = csrf_token("session-a");
        assert_ne!(a, csrf_token("session-b"));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn only_the_exact_token_passes() {
        let a = csrf_token("session-a");
        assert!(check_token(&a, &a).is_ok());
        assert!(check_token(&a, &csrf_token("session-b")).is_err());
        assert!(check_token(&a, &a[..63]).is_err());
        assert!(check_token(&a, "").is_err());
        let mut flipped = a.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert!(check_token(&a, std::str::from_utf8(&flipped).unwrap()).is_err());
    }
}

//! The web app for the tenant's people (`/app/`), served by the API's own service.
//!
//! * Pages are rendered on the server (askama templates in `templates/`, escaped by default) from
//!   the API's own handlers and services: what a page shows is what the API would answer the
//!   same person, with the same roles, visibility and audit entries.
//! * Sessions are the API's (`meetbot_session` cookie); every form carries a CSRF token bound to
//!   the session ([`viewer`]); every page is sent with a strict Content-Security-Policy (scripts
//!   and styles only from `/app/static/`, no inline script), `frame-ancestors 'none'` and
//!   `Cache-Control: no-store`.
//! * JavaScript only improves: local times and the live transcript (server-sent events from
//!   `GET /v1/meetings/{id}/live`). Every page reads and works with it off.

mod pages;
pub mod viewer;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use meetbot_api::AppState;

/// The policy every page is sent with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The web app's routes (`/` and `/app/...`), to serve beside the API
/// (`meetbot_api::app(api, meetbot_web::routes())`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/", get(pages::meetings::list))
        .route("/app/static/{file}", get(pages::asset))
        .route("/app/sign-in", get(pages::signin::page))
        .route("/app/sign-in/start", get(pages::signin::start))
        .route("/app/sign-in/link/{secret}", get(pages::signin::link))
        .route(
            "/app/sign-in/totp",
            get(pages::signin::totp_page).post(pages::signin::totp_submit),
        )
        .route("/app/sign-out", post(pages::signin::sign_out))
        .route("/app/meetings/{id}", get(pages::meeting::page))
        .route("/app/meetings/{id}/stop", post(pages::meeting::stop))
        .route(
            "/app/meetings/{id}/transcript/delete",
            post(pages::meeting::delete_transcript),
        )
        .route("/app/meetings/{id}/delete", post(pages::meeting::delete))
        .route(
            "/app/meetings/{id}/restore",
            get(pages::meeting::restore_page).post(pages::meeting::restore),
        )
        .route(
            "/app/bots/new",
            get(pages::meetings::new_bot_page).post(pages::meetings::new_bot),
        )
        .route("/app/calendars", get(pages::calendars::page))
        .route("/app/calendars/ics", post(pages::calendars::connect_ics))
        .route("/app/calendars/connect", post(pages::calendars::connect))
        .route(
            "/app/calendars/{id}/disconnect",
            post(pages::calendars::disconnect),
        )
        .route("/app/calendars/rules", post(pages::calendars::save_rules))
        .route("/app/people", get(pages::admin::people))
        .route("/app/people/add", post(pages::admin::add_person))
        .route("/app/people/{id}/role", post(pages::admin::change_role))
        .route("/app/people/{id}/remove", post(pages::admin::remove_person))
        .route("/app/api-keys", post(pages::admin::create_key))
        .route("/app/api-keys/{id}/revoke", post(pages::admin::revoke_key))
        .route("/app/privacy", get(pages::admin::privacy))
        .route("/app/privacy/erase", post(pages::admin::erase))
        .route("/app/privacy/export", post(pages::admin::start_export))
        .route(
            "/app/privacy/exports/{id}",
            get(pages::admin::export_status),
        )
        .route("/app/settings", get(pages::settings::page))
        .route("/app/settings/{part}", post(pages::settings::save))
        .route("/app/{*rest}", get(pages::not_found).post(pages::not_found))
        .route("/app", get(|| async { Redirect::to("/app/") }))
        .route("/", get(|| async { Redirect::to("/app/") }))
        .layer(middleware::from_fn(security_headers))
}

/// Headers of every page and asset of the web app.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

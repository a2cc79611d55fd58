//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa) and served at
//! `/v1/openapi.json`. Every operation also lists the error answers all routes share.

use crate::error::ErrorBody;
use crate::routes;
use axum::response::IntoResponse;
use std::sync::LazyLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meetbot API",
        description = "Meetings, bots, transcripts, summaries and settings of one tenant. \
            Authenticate with a session token (OpenID Connect sign-in) or an API key as \
            `Authorization: Bearer`. Errors: `{\"error\": {\"code\", \"message\", \"request_id\"}}`."
    ),
    paths(
        routes::providers, routes::login, routes::callback, routes::logout, routes::totp_verify,
        routes::me, routes::totp_enrol, routes::totp_confirm, routes::totp_remove,
        routes::get_rules, routes::preview_rules, routes::put_rules, routes::get_my_delivery, routes::put_my_delivery,
        routes::list_users, routes::add_user, routes::get_user, routes::change_role,
        routes::remove_user,
        routes::list_keys, routes::create_key, routes::revoke_key,
        routes::list_calendars, routes::connect_calendar, routes::connect_ics, routes::disconnect_calendar,
        routes::approve_calendar,
        routes::list_meetings, routes::get_meeting, routes::get_transcript, routes::live_transcript, routes::get_summary,
        routes::list_deliveries,
        routes::list_bots, routes::get_bot, routes::create_bot, routes::leave_bot,
        routes::get_settings, routes::patch_settings,
        routes::delete_meeting, routes::restore_meeting, routes::delete_transcript,
        routes::list_deletions, routes::erase_client, routes::erase_account,
        routes::erase_person, routes::audit_log, routes::list_keys_sealing,
        crate::export::start_export, crate::export::export_status, crate::export::download_export, crate::export::download_export_form,
    ),
    components(schemas(ErrorBody, routes::LiveSegment, routes::LiveStatus, routes::LivePeople)),
    modifiers(&Security, &SharedErrors),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Adds to every operation the error answers any route may give.
struct SharedErrors;

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

impl Modify for SharedErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = (path.starts_with("/v1/auth/")
                && !path.ends_with("/logout")
                && !path.ends_with("/totp"))
                || path.ends_with("/download");
            for op in [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                let mut shared = vec![
                    ("400", "the request is malformed"),
                    ("404", "not found, or not the caller's to see"),
                    ("405", "the route does not take this method"),
                    ("409", "conflicts with the current state"),
                    ("413", "the body is too large"),
                    ("429", "rate limited; see Retry-After"),
                    ("500", "internal error"),
                    ("503", "a server meetbot depends on is unavailable"),
                ];
                if !public || path.ends_with("/callback") {
                    shared.push(("401", "not signed in, or the session or key is not valid"));
                    shared.push(("403", "the role, scope or second factor is missing"));
                }
                for (status, description) in shared {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
});

/// The OpenAPI document of this API.
pub async fn document() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

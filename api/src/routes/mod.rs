//! The routes, grouped as the OpenAPI document tags them.
//!
//! Every route but sign-in and the document itself takes a [`Caller`]; what a caller may see is
//! decided here, once per kind of record:
//! * owner > admin > member; API keys act with an admin's reach, limited by their scopes;
//! * a member sees only the meetings they own (their calendars, their ad-hoc bots) or attend,
//!   and the bots, transcripts, summaries and deliveries of those meetings only.

mod account;
mod data;
mod live;
mod settings;

pub use account::*;
pub use data::*;
pub use live::*;
pub use settings::*;

/// How long a deleted session can be restored.
pub use meetbot_store::retention::RECOVERY_WINDOW;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use axum::routing::{delete, get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use meetbot_core::model::{AuditEvent, Meeting, Role};
use std::collections::HashSet;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/openapi.json", get(crate::openapi::document))
        .route("/v1/auth/providers", get(providers))
        .route("/v1/auth/{provider}/login", get(login))
        .route("/v1/auth/callback", get(callback))
        .route("/v1/auth/totp", post(totp_verify))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/me/totp", post(totp_enrol).delete(totp_remove))
        .route("/v1/me/totp/confirm", post(totp_confirm))
        .route("/v1/me/auto-join-rules", get(get_rules).put(put_rules))
        .route("/v1/me/auto-join-rules/preview", post(preview_rules))
        .route("/v1/me/delivery", get(get_my_delivery).put(put_my_delivery))
        .route("/v1/users", get(list_users).post(add_user))
        .route(
            "/v1/users/{id}",
            get(get_user).patch(change_role).delete(remove_user),
        )
        .route("/v1/api-keys", get(list_keys).post(create_key))
        .route("/v1/api-keys/{id}", delete(revoke_key))
        .route("/v1/calendars", get(list_calendars).post(connect_calendar))
        .route("/v1/calendars/ics", post(connect_ics))
        .route("/v1/calendars/{id}", delete(disconnect_calendar))
        .route("/v1/calendars/{id}/approve", post(approve_calendar))
        .route("/v1/meetings", get(list_meetings))
        .route("/v1/meetings/{id}", get(get_meeting).delete(delete_meeting))
        .route("/v1/meetings/{id}/restore", post(restore_meeting))
        .route(
            "/v1/meetings/{id}/transcript",
            get(get_transcript).delete(delete_transcript),
        )
        .route("/v1/privacy/deletions", get(list_deletions))
        .route("/v1/privacy/audit", get(audit_log))
        .route("/v1/privacy/keys", get(list_keys_sealing))
        .route("/v1/privacy/clients/erase", post(erase_client))
        .route("/v1/privacy/people/erase", post(erase_person))
        .route("/v1/account", delete(erase_account))
        .route("/v1/privacy/export", post(crate::export::start_export))
        .route(
            "/v1/privacy/exports/{id}",
            get(crate::export::export_status),
        )
        .route(
            "/v1/privacy/exports/{id}/download",
            get(crate::export::download_export).post(crate::export::download_export_form),
        )
        .route("/v1/meetings/{id}/summary", get(get_summary))
        .route("/v1/meetings/{id}/live", get(live_transcript))
        .route("/v1/meetings/{id}/deliveries", get(list_deliveries))
        .route("/v1/bots", get(list_bots).post(create_bot))
        .route("/v1/bots/{id}", get(get_bot))
        .route("/v1/bots/{id}/leave", post(leave_bot))
        .route("/v1/settings", get(get_settings).patch(patch_settings))
}

/// An enum's serialised name (`"confirmed"`, `"google_meet"`), as the API shows it.
pub fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// A stored summary's document, opened with the tenant's key.
pub(crate) fn open_summary(
    vault: &meetbot_store::vault::TenantVault,
    s: &meetbot_core::model::Summary,
) -> ApiResult<meetbot_transcriber::summarize::SummaryDoc> {
    let raw = vault.open::<meetbot_core::model::Summary>(&s.id, "body", &s.body)?;
    serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(format!("summary {}: {e}", s.id)))
}

/// JSON bodies, with rejections in our error body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// One page of `items` sorted by their key; the cursor is the last key handed out. `limit` is
/// 1 to 200 (default 50); `cursor` is the previous page's `next_cursor`.
pub fn paginate<T>(
    mut items: Vec<(String, T)>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit {limit} is out of range 1..=200"
        )));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let after = match cursor {
        Some(c) => Some(
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("cursor is not one this API handed out".into())
                })?,
        ),
        None => None,
    };
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .collect();
    let more = rest.len() > limit as usize;
    rest.truncate(limit as usize);
    let next = more
        .then(|| rest.last().map(|(k, _)| URL_SAFE_NO_PAD.encode(k)))
        .flatten();
    Ok((rest.into_iter().map(|(_, v)| v).collect(), next))
}

/// Appends to the tenant's audit log (actors and targets are opaque ids).
pub async fn audit(api: &AppState, c: &Caller, action: &str, target: &str) -> ApiResult<()> {
    api.tenants
        .store()
        .append_audit(&c.tenant, &AuditEvent::new(c.actor(), action, target))
        .await?;
    Ok(())
}

/// Which meetings a caller may see: all for admins and keys; for a member, those of their own
/// calendars, their ad-hoc requests, or with them among the people.
pub struct Visibility {
    member: Option<Member>,
}

struct Member {
    user_id: String,
    email: String,
    connections: HashSet<String>,
}

impl Visibility {
    pub async fn of(api: &AppState, c: &Caller) -> ApiResult<Self> {
        if c.role() >= Role::Admin {
            return Ok(Visibility { member: None });
        }
        let user = c.person()?;
        let vault = api.tenants.vault(&c.tenant).await?;
        let email = vault
            .open_string::<meetbot_core::model::User>(&user.id, "email", &user.email)?
            .to_lowercase();
        let connections = api
            .tenants
            .store()
            .list_connections(&c.tenant)
            .await?
            .into_iter()
            .filter(|x| x.user_id == user.id)
            .map(|x| x.id)
            .collect();
        Ok(Visibility {
            member: Some(Member {
                user_id: user.id.clone(),
                email,
                connections,
            }),
        })
    }

    /// Whether the caller owns meeting `m`'s bots: admins and keys all of them; a member
    /// those they requested or of their own calendars (attending is not enough).
    pub fn owns(&self, m: &Meeting) -> bool {
        let Some(me) = &self.member else { return true };
        m.requested_by.as_deref() == Some(me.user_id.as_str())
            || m.connection_id
                .as_ref()
                .is_some_and(|c| me.connections.contains(c))
    }

    /// `people` is the meeting's opened attendee list (organizer first).
    pub fn sees(&self, m: &Meeting, people: &[String]) -> bool {
        let Some(me) = &self.member else { return true };
        m.requested_by.as_deref() == Some(me.user_id.as_str())
            || m.connection_id
                .as_ref()
                .is_some_and(|c| me.connections.contains(c))
            || people.iter().any(|p| p.eq_ignore_ascii_case(&me.email))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let items: Vec<(String, u32)> = (0..7u32).rev().map(|i| (format!("k{i}"), i)).collect();
        let mut cursor: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let (page, next) = paginate(items.clone(), Some(3), cursor.as_deref()).unwrap();
            seen.extend(page);
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn bad_limits_and_cursors_are_refused() {
        assert!(matches!(
            paginate::<u8>(vec![], Some(0), None),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            paginate::<u8>(vec![], None, Some("%%%")),
            Err(ApiError::BadRequest(_))
        ));
    }
}

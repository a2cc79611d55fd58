//! The admins' pages: people and API keys, and privacy (deletion receipts with their
//! verification, the audit chain's state and its newest entries).

use super::{Chrome, When, json_of, render};
use crate::viewer::{CsrfForm, Form, Viewer, WebError};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use meetbot_api::AppState;
use meetbot_api::error::ApiError;
use meetbot_api::routes::{self, ApiKeyOut, UserOut};
use serde::Deserialize;

pub struct PersonRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub mfa: bool,
    pub signed_in: bool,
    pub since: When,
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub scopes: String,
    pub state: String,
    pub last_used: Option<When>,
    pub expires: When,
    pub active: bool,
}

fn person(u: UserOut) -> PersonRow {
    PersonRow {
        id: u.id.clone(),
        role: routes::wire(&u.role),
        email: u.email,
        mfa: u.mfa_enrolled,
        signed_in: u.signed_in_before,
        since: When::of(u.created_at),
    }
}

fn key(k: ApiKeyOut) -> KeyRow {
    let now = chrono::Utc::now();
    let (state, active) = if k.revoked_at.is_some() {
        ("revoked", false)
    } else if k.expires_at <= now {
        ("expired", false)
    } else {
        ("active", true)
    };
    KeyRow {
        scopes: k.scopes.join(", "),
        state: state.into(),
        active,
        last_used: k.last_used_at.map(When::of),
        expires: When::of(k.expires_at),
        name: k.name,
        id: k.id,
    }
}

#[derive(Template)]
#[template(path = "people.html")]
struct PeoplePage {
    chrome: Chrome,
    csrf: String,
    people: Vec<PersonRow>,
    keys: Vec<KeyRow>,
    /// A key just made: its token, shown this once.
    new_token: Option<String>,
    can_add_owner: bool,
    /// This viewer's own user id (they cannot remove themselves here).
    me: String,
}

async fn people_page(
    api: AppState,
    v: Viewer,
    new_token: Option<String>,
) -> Result<Response, WebError> {
    v.require_admin()?;
    let users = routes::list_users(State(api.clone()), v.caller.clone())
        .await?
        .0
        .items;
    let keys = routes::list_keys(State(api), v.caller.clone())
        .await?
        .0
        .items;
    Ok(render(&PeoplePage {
        chrome: Chrome::of(&v, "People and API keys", "people"),
        csrf: v.csrf.clone(),
        people: users.into_iter().map(person).collect(),
        keys: keys.into_iter().map(key).collect(),
        new_token,
        can_add_owner: v.role() >= meetbot_core::model::Role::Owner,
        me: v.caller.person()?.id.clone(),
    }))
}

pub async fn people(State(api): State<AppState>, v: Viewer) -> Result<Response, WebError> {
    people_page(api, v, None).await
}

#[derive(Deserialize)]
pub struct AddForm {
    csrf: String,
    email: String,
    role: String,
}

pub async fn add_person(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<AddForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    v.require_admin()?;
    let role = serde_json::from_value(serde_json::Value::String(f.role))
        .map_err(|_| ApiError::BadRequest("role: owner, admin or member".into()))?;
    routes::add_user(
        State(api),
        v.caller,
        routes::Json(routes::NewUser {
            email: f.email.trim().to_string(),
            role,
        }),
    )
    .await?;
    Ok(Redirect::to("/app/people").into_response())
}

#[derive(Deserialize)]
pub struct KeyForm {
    csrf: String,
    name: String,
    #[serde(default)]
    meetings_read: Option<String>,
    #[serde(default)]
    transcripts_read: Option<String>,
    #[serde(default)]
    bots_write: Option<String>,
    #[serde(default)]
    settings_read: Option<String>,
    #[serde(default)]
    settings_write: Option<String>,
    #[serde(default)]
    days: Option<String>,
}

/// Makes an API key and shows its token once, on the page that answers the form.
pub async fn create_key(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<KeyForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    v.require_admin()?;
    let mut scopes = Vec::new();
    for (on, name) in [
        (&f.meetings_read, "meetings:read"),
        (&f.transcripts_read, "transcripts:read"),
        (&f.bots_write, "bots:write"),
        (&f.settings_read, "settings:read"),
        (&f.settings_write, "settings:write"),
    ] {
        if on.is_some() {
            scopes.push(serde_json::Value::String(name.into()));
        }
    }
    let days =
        match f.days.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(d.parse::<u32>().map_err(|_| {
                ApiError::BadRequest("days: a whole number of days, 1 to 365".into())
            })?),
        };
    let body: routes::NewApiKey = serde_json::from_value(serde_json::json!({
        "name": f.name,
        "scopes": scopes,
        "expires_in_days": days,
    }))
    .map_err(|e| ApiError::BadRequest(format!("the key could not be made: {e}")))?;
    let (_, made) =
        routes::create_key(State(api.clone()), v.caller.clone(), routes::Json(body)).await?;
    people_page(api, v, Some(made.0.token)).await
}

pub async fn revoke_key(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    v.require_admin()?;
    routes::revoke_key(State(api), v.caller, routes::Path(id)).await?;
    Ok(Redirect::to("/app/people").into_response())
}

pub struct Receipt {
    pub scope: String,
    pub target: String,
    pub when: When,
    pub counts: String,
    pub keys: usize,
    pub digest: String,
    pub verified: bool,
}

pub struct KeyRow2 {
    pub version: u32,
    pub provider: String,
    pub kek: String,
    pub algorithm: String,
    pub since: When,
    pub current: bool,
}

pub struct Entry {
    pub seq: u64,
    pub when: When,
    pub actor: String,
    pub action: String,
    pub target: String,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage {
    chrome: Chrome,
    csrf: String,
    notice: Option<String>,
    is_owner: bool,
    receipts: Vec<Receipt>,
    keys: Vec<KeyRow2>,
    customer_key: Option<String>,
    intact: bool,
    entries: u64,
    problem: Option<String>,
    recent: Vec<Entry>,
}

pub async fn privacy(State(api): State<AppState>, v: Viewer) -> Result<Response, WebError> {
    privacy_page(api, v, None).await
}

async fn privacy_page(
    api: AppState,
    v: Viewer,
    notice: Option<String>,
) -> Result<Response, WebError> {
    v.require_admin()?;
    let receipts = routes::list_deletions(State(api.clone()), v.caller.clone())
        .await?
        .0
        .items;
    let audit = routes::audit_log(State(api.clone()), v.caller.clone())
        .await?
        .0;
    let keys = routes::list_keys_sealing(State(api), v.caller.clone())
        .await?
        .0;
    Ok(render(&PrivacyPage {
        chrome: Chrome::of(&v, "Privacy", "privacy"),
        csrf: v.csrf.clone(),
        notice,
        is_owner: v.role() >= meetbot_core::model::Role::Owner,
        receipts: receipts
            .into_iter()
            .rev()
            .map(|r| Receipt {
                scope: r.scope,
                target: r.target,
                when: When::of(r.erased_at),
                counts: r
                    .counts
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
                    .collect::<Vec<_>>()
                    .join(", "),
                keys: r.keys_destroyed.len(),
                digest: r.digest.chars().take(16).collect(),
                verified: r.verified,
            })
            .collect(),
        keys: keys
            .data_keys
            .into_iter()
            .map(|k| KeyRow2 {
                version: k.version,
                provider: k.provider,
                kek: k.kek_id,
                algorithm: k.algorithm,
                since: When::of(k.created_at),
                current: k.current,
            })
            .collect(),
        customer_key: keys.customer_key,
        intact: audit.intact,
        entries: audit.entries,
        problem: audit.problem,
        recent: audit
            .recent
            .into_iter()
            .take(50)
            .map(|e| Entry {
                seq: e.seq,
                when: When::of(e.at),
                actor: e.actor,
                action: e.action,
                target: e.target,
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
pub struct EraseForm {
    csrf: String,
    /// person or client.
    kind: String,
    email: String,
    #[serde(default)]
    name: String,
}

/// Erases a person (their attendance, speech and name) or a client (every session they
/// attended), owners only, and shows the receipt on the privacy page.
pub async fn erase(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<EraseForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    v.require_admin()?;
    let email = f.email.trim().to_string();
    let r = match f.kind.as_str() {
        "person" => {
            let name = f.name.trim();
            routes::erase_person(
                State(api.clone()),
                v.caller.clone(),
                routes::Json(routes::PersonErasure {
                    email,
                    name: (!name.is_empty()).then(|| name.to_string()),
                }),
            )
            .await?
            .0
        }
        "client" => {
            routes::erase_client(
                State(api.clone()),
                v.caller.clone(),
                routes::Json(routes::ClientErasure { email }),
            )
            .await?
            .0
        }
        _ => return Err(ApiError::BadRequest("kind: person or client".into()).into()),
    };
    let notice = format!(
        "Erased. Receipt {} ({}), {}.",
        r.id,
        r.scope,
        if r.verified {
            "verified"
        } else {
            "NOT verified"
        }
    );
    privacy_page(api, v, Some(notice)).await
}

#[derive(Template)]
#[template(path = "export.html")]
struct ExportPage {
    chrome: Chrome,
    id: String,
    state: String,
    done: u64,
    total: u64,
    expires: When,
    /// The download link, in the answer that started the export only.
    link: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct ExportForm {
    csrf: String,
    #[serde(default)]
    email: String,
}

/// Starts an export (the tenant, or one person) and shows its progress and, this once, its
/// download link.
pub async fn start_export(
    State(api): State<AppState>,
    v: Viewer,
    Form(f): Form<ExportForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    v.require_admin()?;
    let email = f.email.trim().to_string();
    let resp = meetbot_api::export::start_export(
        State(api),
        v.caller.clone(),
        routes::Json(meetbot_api::export::ExportRequest {
            email: (!email.is_empty()).then_some(email),
        }),
    )
    .await?;
    export_page(&v, &json_of(resp, "export").await?)
}

fn export_page(v: &Viewer, e: &serde_json::Value) -> Result<Response, WebError> {
    let expires = e["expires_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| ApiError::Internal("the export has no expiry".into()))?;
    Ok(render(&ExportPage {
        chrome: Chrome::of(v, "Export", "privacy"),
        id: e["id"].as_str().unwrap_or_default().to_string(),
        state: e["state"].as_str().unwrap_or_default().to_string(),
        done: e["done"].as_u64().unwrap_or(0),
        total: e["total"].as_u64().unwrap_or(0),
        expires: When::of(expires),
        link: e["download_url"].as_str().map(String::from),
        error: e["error"].as_str().map(String::from),
    }))
}

/// An export's progress (its link is not shown again).
pub async fn export_status(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    v.require_admin()?;
    let e = meetbot_api::export::export_status(State(api), v.caller.clone(), routes::Path(id))
        .await?
        .0;
    let json = serde_json::to_value(&e).map_err(|e| ApiError::Internal(e.to_string()))?;
    export_page(&v, &json)
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

/// Changes a person's role (owners; their sessions end so it applies at once).
pub async fn change_role(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<RoleForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    v.require_admin()?;
    let body: routes::RoleChange = serde_json::from_value(serde_json::json!({ "role": f.role }))
        .map_err(|_| ApiError::BadRequest("role: owner, admin or member".into()))?;
    routes::change_role(State(api), v.caller, routes::Path(id), routes::Json(body)).await?;
    Ok(Redirect::to("/app/people").into_response())
}

/// Removes a person (owners): their sessions end and their API keys are revoked.
pub async fn remove_person(
    State(api): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    v.check(&f.csrf)?;
    v.require_admin()?;
    routes::remove_user(State(api), v.caller, routes::Path(id)).await?;
    Ok(Redirect::to("/app/people").into_response())
}

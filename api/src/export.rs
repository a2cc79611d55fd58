//! Exports (`POST /v1/privacy/export`): everything the tenant holds, or everything about one
//! person, as a gzip'd tar archive: `export.json` (machine-readable) and one
//! `transcripts/<meeting>.txt` per transcript. Built in the background with progress, kept
//! sealed in the tenant's store, downloaded through a link whose token names the tenant and is
//! stored only as a hash; gone (record and link) when it expires.

use crate::AppState;
use crate::auth::{Caller, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::routes::{Json, Path, Query, audit};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use meetbot_calendar_sync::apply::open_meeting;
use meetbot_core::TenantId;
use meetbot_core::model::{Export, Role, Summary, User};
use meetbot_store::JobFilter;
use meetbot_transcriber::summarize::SummaryDoc;
use meetbot_transcriber::transcript::TranscriptDoc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
pub struct ExportRequest {
    /// Export only what concerns this person (the meetings they attended, their user record);
    /// without it, everything the tenant holds.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportOut {
    pub id: String,
    /// running, ready or failed.
    pub state: String,
    /// Meetings written so far, of `total`.
    pub done: u64,
    pub total: u64,
    pub created_at: DateTime<Utc>,
    /// The export and its download link are gone from this instant.
    pub expires_at: DateTime<Utc>,
    /// Only in the answer that started the export: works once `state` is ready.
    pub download_url: Option<String>,
    pub error: Option<String>,
}

fn out(e: &Export, download_url: Option<String>) -> ExportOut {
    ExportOut {
        id: e.id.clone(),
        state: e.state.clone(),
        done: e.done,
        total: e.total,
        created_at: e.created_at,
        expires_at: e.expires_at,
        download_url,
        error: e.error.clone(),
    }
}

/// Starts an export (admins and owners).
#[utoipa::path(post, path = "/v1/privacy/export", tag = "privacy", request_body = ExportRequest,
    responses((status = 202, body = ExportOut)))]
pub async fn start_export(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<ExportRequest>,
) -> ApiResult<(StatusCode, Json<ExportOut>)> {
    c.person()?;
    c.require(Role::Admin, "meetings:export")?;
    let email = match body.email.as_deref().map(str::trim) {
        Some(e) if meetbot_delivery::email::is_address(e) => Some(e.to_lowercase()),
        Some(_) => return Err(ApiError::BadRequest("email is not an email address".into())),
        None => None,
    };
    let secret = meetbot_crypto::random_hex(32).map_err(|e| ApiError::Internal(e.to_string()))?;
    let token = format!("mbx_{}_{secret}", c.tenant);
    let now = Utc::now();
    let e = Export {
        id: meetbot_core::ids::new_record_id(),
        scope: if email.is_some() { "person" } else { "tenant" }.into(),
        person_hash: email
            .as_ref()
            .map(|m| sha256_hex(format!("{}:{m}", c.tenant).as_bytes())),
        state: "running".into(),
        done: 0,
        total: 0,
        requested_by: c.actor(),
        download_hash: sha256_hex(secret.as_bytes()),
        created_at: now,
        expires_at: now + api.settings.export_ttl,
        archive: None,
        error: None,
    };
    api.tenants.store().put_export(&c.tenant, &e).await?;
    audit(&api, &c, "export.start", &format!("export:{}", e.id)).await?;
    let url = format!(
        "{}/v1/privacy/exports/{}/download?token={token}",
        api.settings.public_url, e.id
    );
    let (job, t) = (e.clone(), c.tenant.clone());
    let worker = api.clone();
    tokio::spawn(async move {
        let mut job = job;
        if let Err(err) = build(&worker, &t, &mut job, email.as_deref()).await {
            tracing::warn!(tenant = %t, export = %job.id, error = %err, "export failed");
            job.state = "failed".into();
            job.error = Some(err.to_string());
            let _ = worker.tenants.store().put_export(&t, &job).await;
        }
    });
    Ok((StatusCode::ACCEPTED, Json(out(&e, Some(url)))))
}

/// An export's progress (admins and owners).
#[utoipa::path(get, path = "/v1/privacy/exports/{id}", tag = "privacy",
    params(("id" = String, Path)), responses((status = 200, body = ExportOut)))]
pub async fn export_status(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ExportOut>> {
    c.person()?;
    c.require(Role::Admin, "meetings:export")?;
    let e = api
        .tenants
        .store()
        .get_export(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("export"))?;
    Ok(Json(out(&e, None)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The token of the download link.
    pub token: String,
}

/// Downloads a ready export with its link's token (no session needed; the link expires).
#[utoipa::path(get, path = "/v1/privacy/exports/{id}/download", tag = "privacy", security(()),
    params(("id" = String, Path), DownloadQuery),
    responses((status = 200, description = "the archive (application/gzip, a tar)")))]
pub async fn download_export(
    State(api): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let gone = || ApiError::NotFound("export (the link is wrong or has expired)");
    let mut parts = q.token.splitn(3, '_');
    let (Some("mbx"), Some(t), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(gone());
    };
    let t: TenantId = t.parse().map_err(|_| gone())?;
    api.limits.tenant(&t)?;
    let store = api.tenants.store();
    let e = match store.get_export(&t, &id).await {
        Ok(Some(e)) => e,
        Ok(None) | Err(meetbot_store::StoreError::UnknownTenant(_)) => return Err(gone()),
        Err(err) => return Err(err.into()),
    };
    if !meetbot_crypto::constant_time_eq(
        e.download_hash.as_bytes(),
        sha256_hex(secret.as_bytes()).as_bytes(),
    ) {
        return Err(gone());
    }
    let Some(sealed) = &e.archive else {
        return Err(ApiError::Conflict(format!(
            "the export is {}: see GET /v1/privacy/exports/{id}",
            e.state
        )));
    };
    let vault = api.tenants.vault(&t).await?;
    let bytes = vault.open::<Export>(&e.id, "archive", sealed)?;
    store
        .append_audit(
            &t,
            &meetbot_core::model::AuditEvent::new(
                format!("link:export:{id}"),
                "export.download",
                format!("export:{id}"),
            ),
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"meetbot-export-{id}.tar.gz\""),
            ),
        ],
        bytes.to_vec(),
    )
        .into_response())
}

fn add(tar: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(Utc::now().timestamp().max(0) as u64);
    h.set_cksum();
    tar.append_data(&mut h, name, data)
}

fn text_of(doc: &TranscriptDoc) -> String {
    doc.segments
        .iter()
        .map(|s| {
            let secs = s.start_ms / 1000;
            format!(
                "[{:02}:{:02}] {}: {}\n",
                secs / 60,
                secs % 60,
                s.speaker.as_deref().unwrap_or(&s.participant),
                s.text
            )
        })
        .collect()
}

/// Builds the archive, updating progress as it goes, and stores it sealed.
async fn build(
    api: &AppState,
    t: &TenantId,
    job: &mut Export,
    email: Option<&str>,
) -> ApiResult<()> {
    let store = api.tenants.store();
    let vault = api.tenants.vault(t).await?;
    let internal = |e: std::io::Error| ApiError::Internal(e.to_string());
    let mut meetings = store.list_meetings(t, None, None).await?;
    meetings.retain(|m| m.deleted_at.is_none());
    job.total = meetings.len() as u64;
    store.put_export(t, job).await?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut out_meetings = Vec::new();
    for (i, m) in meetings.iter().enumerate() {
        let o = open_meeting(&vault, m)?;
        let attended = email.is_none_or(|e| {
            o.people
                .organizer
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(e))
                || o.people
                    .attendees
                    .iter()
                    .any(|a| a.email.eq_ignore_ascii_case(e))
        });
        if attended {
            let transcript = match store.transcript_for_meeting(t, &m.id).await? {
                // Sealed to the customer's own key: exported as it is stored.
                Some(tr) if tr.held.is_some() => {
                    let held = tr.held.unwrap_or_default();
                    add(
                        &mut tar,
                        &format!("transcripts/{}.txt.age", m.id),
                        held.as_bytes(),
                    )
                    .map_err(internal)?;
                    json!({"customer_sealed": held})
                }
                Some(tr) => {
                    let doc = TranscriptDoc::open(&vault, &tr)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    add(
                        &mut tar,
                        &format!("transcripts/{}.txt", m.id),
                        text_of(&doc).as_bytes(),
                    )
                    .map_err(internal)?;
                    serde_json::to_value(&doc).unwrap_or(Value::Null)
                }
                None => Value::Null,
            };
            let summary = match store.summary_for_meeting(t, &m.id).await? {
                Some(s) if s.held.is_some() => json!({"customer_sealed": s.held}),
                Some(s) => {
                    let raw = vault.open::<Summary>(&s.id, "body", &s.body)?;
                    serde_json::from_slice::<SummaryDoc>(&raw)
                        .ok()
                        .and_then(|d| serde_json::to_value(d).ok())
                        .unwrap_or(Value::Null)
                }
                None => Value::Null,
            };
            let bots: Vec<Value> = store
                .find_bot_jobs(
                    t,
                    &JobFilter {
                        meeting_id: Some(m.id.clone()),
                        ..Default::default()
                    },
                )
                .await?
                .into_iter()
                .map(|j| json!({"id": j.value.id, "state": j.value.state, "history": j.value.history}))
                .collect();
            let deliveries: Vec<Value> = store
                .list_deliveries(t, Some(&m.id))
                .await?
                .into_iter()
                .map(|d| json!({"channel": d.value.channel, "state": d.value.state, "attempts": d.value.attempts}))
                .collect();
            out_meetings.push(json!({
                "id": m.id,
                "title": o.title,
                "starts_at": m.starts_at,
                "ends_at": m.ends_at,
                "status": m.status,
                "platform": m.platform,
                "join_url": o.join_url,
                "organizer": o.people.organizer,
                "people": o.people.attendees,
                "wants_bot": m.wants_bot,
                "join_reason": m.join_reason,
                "bots": bots,
                "transcript": transcript,
                "summary": summary,
                "deliveries": deliveries,
            }));
        }
        job.done = i as u64 + 1;
        if job.done.is_multiple_of(20) {
            store.put_export(t, job).await?;
        }
    }
    let mut users = Vec::new();
    for u in store.list_users(t).await? {
        let address = vault.open_string::<User>(&u.id, "email", &u.email)?;
        if email.is_none_or(|e| address.eq_ignore_ascii_case(e)) {
            users.push(
                json!({"id": u.id, "email": address, "role": u.role, "created_at": u.created_at}),
            );
        }
    }
    let mut doc = json!({
        "format": "meetbot-export/1",
        "tenant": t,
        "scope": job.scope,
        "exported_at": Utc::now(),
        "meetings": out_meetings,
        "users": users,
    });
    if email.is_none() {
        doc["audit"] = serde_json::to_value(store.list_audit(t).await?).unwrap_or(Value::Null);
        let targets = meetbot_delivery::service::Targets::of(&**store, &api.tenants, t)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        doc["delivery_targets"] = json!({
            "slack_channel": targets.slack_channel,
            "emails": targets.emails,
            "webhook_url": targets.webhook_url,
        });
    }
    let json = serde_json::to_vec_pretty(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    add(&mut tar, "export.json", &json).map_err(internal)?;
    let tarball = tar.into_inner().map_err(internal)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tarball).map_err(internal)?;
    let bytes = zeroize::Zeroizing::new(gz.finish().map_err(internal)?);
    job.archive = Some(vault.seal::<Export>(&job.id, "archive", &bytes)?);
    job.state = "ready".into();
    job.done = job.total;
    store.put_export(t, job).await?;
    tracing::info!(tenant = %t, export = %job.id, meetings = job.total, "export ready");
    Ok(())
}

//! Exports (`POST /v1/privacy/export`): everything the tenant holds, or everything about one
//! person, as a gzip'd tar archive: `export.json` (machine-readable) and one
//! `transcripts/<meeting>.txt` per transcript. Built in the background with progress, kept
//! sealed in the tenant's store, downloaded through a link whose token names the tenant and is
//! stored only as a hash; gone (record and link) when it expires.

use crate::AppState;
use crate::auth::{Caller, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::routes::{Json, Path, audit};
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

/// The largest export archive (compressed): the bound on an export's memory, and under the
/// 16 MiB a MongoDB document may hold once the archive is sealed and encoded.
pub const DEFAULT_MAX_EXPORT_BYTES: usize = 8 << 20;

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

/// The lease that makes exports one at a time per tenant (its holder: the running export).
fn lease_name(t: &TenantId) -> String {
    format!("export:{t}")
}

/// How long the export lease lasts without renewal (`Settings::export_lease_ttl`'s default):
/// renewed on a timer every third of it for the whole life of the export; a stopped process
/// frees it after this.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Exports built at once in this process (each within `Settings::export_max_bytes`). An export
/// waiting here holds (and renews) its tenant's lease.
pub static BUILDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Starts an export (admins and owners). One at a time per tenant: while one runs, another
/// request answers 409 naming it (and `Location` points at it).
#[utoipa::path(post, path = "/v1/privacy/export", tag = "privacy", request_body = ExportRequest,
    responses(
        (status = 202, body = ExportOut, description = "started; `download_url` works once it is ready: the token is in its fragment, sent back in the `X-Export-Token` header or a POST form"),
        (status = 409, description = "an export of this tenant is running; its id is in the message and in `Location`"),
    ))]
pub async fn start_export(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<ExportRequest>,
) -> ApiResult<Response> {
    c.person()?;
    c.require(Role::Admin, "meetings:export")?;
    let email = match body.email.as_deref().map(str::trim) {
        Some(e) if meetbot_delivery::email::is_address(e) => Some(e.to_lowercase()),
        Some(_) => return Err(ApiError::BadRequest("email is not an email address".into())),
        None => None,
    };
    let store = api.tenants.store();
    let id = meetbot_core::ids::new_record_id();
    if !store
        .try_lease(&lease_name(&c.tenant), &id, api.settings.export_lease_ttl)
        .await?
    {
        let running = store
            .lease_holder(&lease_name(&c.tenant))
            .await?
            .unwrap_or_default();
        let mut resp = ApiError::Conflict(format!(
            "export {running} of this tenant is running: wait for it (GET /v1/privacy/exports/{running})"
        ))
        .into_response();
        if let Ok(v) = header::HeaderValue::from_str(&format!("/v1/privacy/exports/{running}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(resp);
    }
    let secret = meetbot_crypto::random_hex(32).map_err(|e| ApiError::Internal(e.to_string()))?;
    let token = format!("mbx_{}_{secret}", c.tenant);
    let now = Utc::now();
    let e = Export {
        id,
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
    if let Err(err) = store.put_export(&c.tenant, &e).await {
        let _ = store.release_lease(&lease_name(&c.tenant), &e.id).await;
        return Err(err.into());
    }
    audit(&api, &c, "export.start", &format!("export:{}", e.id)).await?;
    // The token travels in the fragment: browsers never send it to a server or put it in a
    // Referer; the page at this address posts it back (see `download_page`).
    let url = format!(
        "{}/v1/privacy/exports/{}/download#token={token}",
        api.settings.public_url, e.id
    );
    let (job, t) = (e.clone(), c.tenant.clone());
    let worker = api.clone();
    tokio::spawn(async move {
        let mut job = job;
        let (store, lease, holder) = (
            worker.tenants.store().clone(),
            lease_name(&t),
            job.id.clone(),
        );
        let ttl = worker.settings.export_lease_ttl;
        // The lease is renewed on a timer for the export's whole life (waiting for a build
        // slot, the meetings, users and audit, sealing), not only while meetings are written:
        // one at a time per tenant holds however long a step takes. Ends only if lost.
        let keep = async {
            let mut every =
                tokio::time::interval((ttl / 3).max(std::time::Duration::from_millis(10)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                match store.try_lease(&lease, &holder, ttl).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // Tried again at the next tick, well before it lapses.
                    Err(e) => {
                        tracing::warn!(tenant = %t, export = %holder, error = %e, "export lease not renewed")
                    }
                }
            }
        };
        let work = async {
            match BUILDING.acquire().await {
                Ok(_permit) => build(&worker, &t, &mut job, email.as_deref()).await,
                Err(e) => Err(ApiError::Internal(e.to_string())),
            }
        };
        let result = tokio::select! {
            r = work => r,
            () = keep => Err(ApiError::Conflict(
                "another export of this tenant took over; start this one again".into(),
            )),
        };
        if let Err(err) = result {
            tracing::warn!(tenant = %t, export = %job.id, error = %err, "export failed");
            job.state = "failed".into();
            job.archive = None;
            job.error = Some(err.to_string());
            let _ = worker.tenants.store().put_export(&t, &job).await;
        }
        let _ = worker
            .tenants
            .store()
            .release_lease(&lease_name(&t), &job.id)
            .await;
    });
    Ok((StatusCode::ACCEPTED, Json(out(&e, Some(url)))).into_response())
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

/// The header a download's token goes in.
pub const TOKEN_HEADER: &str = "x-export-token";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct DownloadHeaders {
    /// The download link's token (`mbx_...`, the link's fragment after `#token=`). Without
    /// it, the answer is a page that sends the fragment's token back by POST.
    #[serde(rename = "X-Export-Token")]
    #[param(rename = "X-Export-Token")]
    pub token: Option<String>,
}

/// The page a download link opens in a browser: it reads the token from the fragment (which
/// never leaves the browser), clears it from the address bar and history, and posts it.
const DOWNLOAD_PAGE_SCRIPT: &str = "var p=new URLSearchParams(location.hash.slice(1));\
var t=p.get('token');history.replaceState(null,'',location.pathname);\
if(t){document.getElementById('t').value=t;document.getElementById('f').submit();}";

fn download_page() -> Response {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(DOWNLOAD_PAGE_SCRIPT.as_bytes()));
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
<title>meetbot export</title></head><body><form id=\"f\" method=\"post\">\
<input type=\"hidden\" name=\"token\" id=\"t\"><p>Preparing the download of your export.</p>\
<noscript>This download needs JavaScript to send the link's token; or send it in the X-Export-Token header.</noscript>\
</form><script>{DOWNLOAD_PAGE_SCRIPT}</script></body></html>"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                format!(
                    "default-src 'none'; script-src 'sha256-{hash}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
                ),
            ),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
        html,
    )
        .into_response()
}

fn token_in_query(uri: &axum::http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k.eq_ignore_ascii_case("token"))
    })
}

const QUERY_REFUSED: &str = "a download token is never taken from the URL's query (it would be \
    logged and leak through history and Referer): send it in the X-Export-Token header or as \
    the `token` field of a POST form";

/// Downloads a ready export with its link's token in the `X-Export-Token` header (no session
/// needed; the link expires). Without the header: the page a browser sees when it opens the
/// link, which posts the fragment's token. A token in the query string is refused.
#[utoipa::path(get, path = "/v1/privacy/exports/{id}/download", tag = "privacy", security(()),
    params(("id" = String, Path), DownloadHeaders),
    responses(
        (status = 200, description = "the archive (application/gzip, a tar) with the header; without it, an HTML page that posts the link's fragment token"),
        (status = 400, description = "a token in the query string (refused, never checked)"),
        (status = 404, description = "a wrong or expired token"),
    ))]
pub async fn download_export(
    State(api): State<AppState>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    ip: Option<axum::Extension<crate::limits::ClientIp>>,
    headers: header::HeaderMap,
) -> ApiResult<Response> {
    if token_in_query(&uri) {
        return Err(ApiError::BadRequest(QUERY_REFUSED.into()));
    }
    match headers.get(TOKEN_HEADER).map(|v| v.to_str()) {
        Some(Ok(token)) => deliver(&api, &id, token.trim(), ip.map(|e| e.0)).await,
        Some(Err(_)) => Err(ApiError::NotFound(
            "export (the link is wrong or has expired)",
        )),
        None => Ok(download_page()),
    }
}

/// The form the download link's page posts.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct DownloadForm {
    /// The download link's token (`mbx_...`).
    pub token: String,
}

/// Downloads a ready export with its link's token as the `token` field of a form
/// (`application/x-www-form-urlencoded`: what the link's page sends).
#[utoipa::path(post, path = "/v1/privacy/exports/{id}/download", tag = "privacy", security(()),
    params(("id" = String, Path)),
    request_body(content = DownloadForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "the archive (application/gzip, a tar)"),
        (status = 400, description = "a token in the query string (refused, never checked)"),
        (status = 404, description = "a wrong or expired token"),
    ))]
pub async fn download_export_form(
    State(api): State<AppState>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    ip: Option<axum::Extension<crate::limits::ClientIp>>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    if token_in_query(&uri) {
        return Err(ApiError::BadRequest(QUERY_REFUSED.into()));
    }
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    deliver(&api, &id, token.trim(), ip.map(|e| e.0)).await
}

/// Like `crate::auth`: the tenant named in the token is charged only once the token matched
/// (made-up `mbx_<tenant>_…` tokens cannot lock its people out); a wrong token is charged to
/// the client's address once more.
async fn deliver(
    api: &AppState,
    id: &str,
    token: &str,
    ip: Option<crate::limits::ClientIp>,
) -> ApiResult<Response> {
    let (t, e) = match matching_export(api, id, token).await {
        Ok(found) => found,
        Err(err @ ApiError::NotFound(_)) => {
            if let Some(crate::limits::ClientIp(ip)) = ip {
                api.limits.ip(ip)?;
            }
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    api.limits.tenant(&t)?;
    let Some(sealed) = &e.archive else {
        return Err(ApiError::Conflict(format!(
            "the export is {}: see GET /v1/privacy/exports/{id}",
            e.state
        )));
    };
    let store = api.tenants.store();
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

/// The export `token` opens (tenant from the token, hash compared in constant time), or 404.
async fn matching_export(api: &AppState, id: &str, token: &str) -> ApiResult<(TenantId, Export)> {
    let gone = || ApiError::NotFound("export (the link is wrong or has expired)");
    let mut parts = token.splitn(3, '_');
    let (Some("mbx"), Some(t), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(gone());
    };
    let t: TenantId = t.parse().map_err(|_| gone())?;
    let e = match api.tenants.store().get_export(&t, id).await {
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
    Ok((t, e))
}

/// The archive as it is written: tar entries straight into gzip, held compressed, never more
/// than `max` bytes.
struct Archive {
    tar: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    max: usize,
}

impl Archive {
    fn new(max: usize) -> Self {
        Archive {
            tar: tar::Builder::new(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            max,
        }
    }

    fn too_large(max: usize) -> ApiError {
        ApiError::Conflict(format!(
            "the export would be larger than {max} bytes compressed: export one person's data \
             (email) instead, or delete what is no longer needed"
        ))
    }

    /// Appends an entry of `size` bytes read from `data`.
    fn add(&mut self, name: &str, size: u64, data: impl std::io::Read) -> ApiResult<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(Utc::now().timestamp().max(0) as u64);
        h.set_cksum();
        self.tar
            .append_data(&mut h, name, data)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if self.tar.get_ref().get_ref().len() > self.max {
            return Err(Self::too_large(self.max));
        }
        Ok(())
    }

    fn finish(self) -> ApiResult<zeroize::Zeroizing<Vec<u8>>> {
        let internal = |e: std::io::Error| ApiError::Internal(e.to_string());
        let gz = self.tar.into_inner().map_err(internal)?;
        let bytes = zeroize::Zeroizing::new(gz.finish().map_err(internal)?);
        if bytes.len() > self.max {
            return Err(Self::too_large(self.max));
        }
        Ok(bytes)
    }
}

/// `export.json`, written piece by piece into its own gzip stream (so that it too is held
/// compressed), then copied into the archive as one entry of the length counted here.
struct JsonDoc {
    gz: flate2::write::GzEncoder<Vec<u8>>,
    len: u64,
    max: usize,
}

impl JsonDoc {
    fn new(max: usize) -> Self {
        JsonDoc {
            gz: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
            len: 0,
            max,
        }
    }

    fn raw(&mut self, s: &[u8]) -> ApiResult<()> {
        std::io::Write::write_all(&mut self.gz, s)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        self.len += s.len() as u64;
        if self.gz.get_ref().len() > self.max {
            return Err(Archive::too_large(self.max));
        }
        Ok(())
    }

    fn value(&mut self, v: &impl Serialize) -> ApiResult<()> {
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
        self.raw(&bytes)
    }

    /// `"key":` and the value, after a comma unless `first`.
    fn field(&mut self, first: bool, key: &str, v: &impl Serialize) -> ApiResult<()> {
        if !first {
            self.raw(b",")?;
        }
        self.value(&key)?;
        self.raw(b":")?;
        self.value(v)
    }

    fn into_archive(self, a: &mut Archive) -> ApiResult<()> {
        let compressed = zeroize::Zeroizing::new(
            self.gz
                .finish()
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        );
        a.add(
            "export.json",
            self.len,
            flate2::read::GzDecoder::new(&compressed[..]),
        )
    }
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

/// Builds the archive, updating progress as it goes, and stores it sealed. Streamed: each
/// meeting is opened, written (compressed) and dropped before the next; what is held is the
/// compressed archive and `export.json` so far (each at most `export_max_bytes`), one
/// meeting's records, and the store's listings of meeting, user and audit records.
async fn build(
    api: &AppState,
    t: &TenantId,
    job: &mut Export,
    email: Option<&str>,
) -> ApiResult<()> {
    let store = api.tenants.store();
    let vault = api.tenants.vault(t).await?;
    let max = api.settings.export_max_bytes;
    let mut meetings = store.list_meetings(t, None, None).await?;
    meetings.retain(|m| m.deleted_at.is_none());
    job.total = meetings.len() as u64;
    store.put_export(t, job).await?;
    let mut tar = Archive::new(max);
    let mut doc = JsonDoc::new(max);
    doc.raw(b"{")?;
    doc.field(true, "format", &"meetbot-export/1")?;
    doc.field(false, "tenant", t)?;
    doc.field(false, "scope", &job.scope)?;
    doc.field(false, "exported_at", &Utc::now())?;
    doc.raw(b",\"meetings\":[")?;
    let mut first = true;
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
                    tar.add(
                        &format!("transcripts/{}.txt.age", m.id),
                        held.len() as u64,
                        held.as_bytes(),
                    )?;
                    json!({"customer_sealed": held})
                }
                Some(tr) => {
                    let doc = TranscriptDoc::open(&vault, &tr)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    let text = zeroize::Zeroizing::new(text_of(&doc));
                    tar.add(
                        &format!("transcripts/{}.txt", m.id),
                        text.len() as u64,
                        text.as_bytes(),
                    )?;
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
                    &JobFilter::of_meeting(&m.id),
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
            if !first {
                doc.raw(b",")?;
            }
            first = false;
            doc.value(&json!({
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
            }))?;
        }
        job.done = i as u64 + 1;
        if job.done.is_multiple_of(20) {
            store.put_export(t, job).await?;
        }
    }
    doc.raw(b"]")?;
    drop(meetings);
    let mut users = Vec::new();
    for u in store.list_users(t).await? {
        let address = vault.open_string::<User>(&u.id, "email", &u.email)?;
        if email.is_none_or(|e| address.eq_ignore_ascii_case(e)) {
            users.push(
                json!({"id": u.id, "email": address, "role": u.role, "created_at": u.created_at}),
            );
        }
    }
    doc.field(false, "users", &users)?;
    drop(users);
    if email.is_none() {
        doc.raw(b",\"audit\":[")?;
        for (i, e) in store.list_audit(t).await?.iter().enumerate() {
            if i > 0 {
                doc.raw(b",")?;
            }
            doc.value(e)?;
        }
        doc.raw(b"]")?;
        let targets = meetbot_delivery::service::Targets::of(&**store, &api.tenants, t)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        doc.field(
            false,
            "delivery_targets",
            &json!({
                "slack_channel": targets.slack_channel,
                "emails": targets.emails,
                "webhook_url": targets.webhook_url,
            }),
        )?;
    }
    doc.raw(b"}")?;
    doc.into_archive(&mut tar)?;
    let bytes = tar.finish()?;
    job.archive = Some(vault.seal::<Export>(&job.id, "archive", &bytes)?);
    drop(bytes);
    job.state = "ready".into();
    job.done = job.total;
    store.put_export(t, job).await?;
    tracing::info!(tenant = %t, export = %job.id, meetings = job.total, "export ready");
    Ok(())
}

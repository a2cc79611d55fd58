//! Sign-in, sessions, the second factor, people and API keys.

use super::{Json, Path, Query, audit};
use crate::AppState;
use crate::auth::{self, Caller, PendingCaller, SCOPES, SESSION_COOKIE, Who};
use crate::error::{ApiError, ApiResult};
use crate::totp;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{ApiKey, Role, Session, TotpState, User};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct Providers {
    /// Names to use in `/v1/auth/{provider}/login`.
    pub providers: Vec<String>,
}

/// The sign-in providers this deployment offers.
#[utoipa::path(get, path = "/v1/auth/providers", tag = "auth", security(()),
    responses((status = 200, body = Providers)))]
pub async fn providers(State(api): State<AppState>) -> Json<Providers> {
    Json(Providers {
        providers: api.oidc.names(),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// The tenant to sign in to.
    pub tenant: String,
    /// The account to sign in with (passed to the provider; at most 254 characters).
    pub login_hint: Option<String>,
}

/// Starts a sign-in: redirects the browser to the provider (authorization code + PKCE) and sets
/// a short-lived HttpOnly binding cookie: only this browser can finish the sign-in.
#[utoipa::path(get, path = "/v1/auth/{provider}/login", tag = "auth", security(()),
    params(("provider" = String, Path, description = "a name from /v1/auth/providers"), LoginQuery),
    responses((status = 303, description = "to the provider's sign-in page")))]
pub async fn login(
    State(api): State<AppState>,
    Path(provider): Path<String>,
    Query(q): Query<LoginQuery>,
) -> ApiResult<Response> {
    let tenant: TenantId = q.tenant.parse().map_err(|_| ApiError::NotFound("tenant"))?;
    let hint = q.login_hint.filter(|h| h.len() <= 254);
    let (url, binding) = api
        .oidc
        .begin(&api.tenants, &tenant, &provider, hint.as_deref())
        .await?;
    let mut resp = Redirect::to(url.as_str()).into_response();
    let cookie = meetbot_store::browser::binding_cookie(
        meetbot_store::browser::SIGNIN_BINDING_COOKIE,
        &binding,
        &api.oidc.cookie_path(),
        api.settings.cookie_secure,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionOut {
    /// The session token: send it as `Authorization: Bearer`; it is also set as a cookie.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Idle sessions end after this many seconds.
    pub idle_timeout_seconds: i64,
    /// A TOTP code is owed before anything else (`POST /v1/auth/totp`, or enrol first).
    pub mfa_required: bool,
    pub mfa_enrolled: bool,
}

/// Where the provider sends the browser back: completes the sign-in and starts a session.
#[utoipa::path(get, path = "/v1/auth/callback", tag = "auth", security(()), params(CallbackQuery),
    responses((status = 200, body = SessionOut)))]
pub async fn callback(
    State(api): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> ApiResult<Response> {
    if let Some(e) = q.error {
        let e: String = e.chars().take(64).collect();
        return Err(ApiError::Unauthorized(format!(
            "the provider did not sign you in ({e})"
        )));
    }
    let (Some(state), Some(code)) = (q.state, q.code) else {
        return Err(ApiError::BadRequest(
            "state and code are required; start at /v1/auth/{provider}/login".into(),
        ));
    };
    let binding = meetbot_store::browser::cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        &meetbot_store::browser::binding_cookie_name(
            meetbot_store::browser::SIGNIN_BINDING_COOKIE,
            api.settings.cookie_secure,
        ),
    );
    let who = api
        .oidc
        .finish(&api.tenants, &state, &code, binding)
        .await?;
    let t = who.tenant.clone();
    let store = api.tenants.store();
    // The tenant's own choice of identity providers and domains, before any user is bound.
    auth::sign_in_allowed(
        store.get_tenant_settings(&t).await?.as_ref(),
        &who.issuer,
        &who.email,
    )?;
    let not_invited = || {
        ApiError::Forbidden(
            "this account is not a member of the tenant: ask one of its owners to add you".into(),
        )
    };
    let found = store
        .user_by_email_hash(&t, &auth::email_hash(&t, &who.email))
        .await?
        .ok_or_else(not_invited)?;
    let subject = auth::subject_hash(&who.issuer, &who.subject);
    // Bound by compare-and-set: of two first sign-ins at once, the one that binds first wins
    // and the other is refused (unless it is the same identity).
    let user = update_user_cas(&api, &t, &found.id, |u| match &u.subject_hash {
        Some(s) if *s != subject => Err(ApiError::Forbidden(
            "this address is bound to another sign-in identity".into(),
        )),
        Some(_) => Ok(false),
        None => {
            u.subject_hash = Some(subject.clone());
            Ok(true)
        }
    })
    .await?
    .ok_or_else(not_invited)?;
    let body = start_session(&api, &t, &user, "auth.sign_in").await?;
    let cookie = session_cookie(&api, &body.token);
    // A browser (it asks for HTML) goes on to the web app; API clients get the session.
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let mut resp = if wants_html {
        Redirect::to(if body.mfa_required {
            "/app/sign-in/totp"
        } else {
            "/app/"
        })
        .into_response()
    } else {
        axum::Json(body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    // The sign-in's binding is used up: the browser forgets it.
    let done = meetbot_store::browser::clear_binding_cookie(
        meetbot_store::browser::SIGNIN_BINDING_COOKIE,
        &api.oidc.cookie_path(),
        api.settings.cookie_secure,
    );
    if let Ok(v) = HeaderValue::from_str(&done) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Starts a session for `user` of tenant `t` (signed in by `how`, the audit action): a TOTP
/// code is owed first when the user has one or the tenant requires it.
pub async fn start_session(
    api: &AppState,
    t: &TenantId,
    user: &User,
    how: &str,
) -> ApiResult<SessionOut> {
    let store = api.tenants.store();
    let require_mfa = store
        .get_tenant_settings(t)
        .await?
        .is_some_and(|s| s.require_mfa);
    let enrolled = user.totp.as_ref().is_some_and(|x| x.confirmed);
    let (token, id) = auth::new_session_token(t)?;
    let now = Utc::now();
    let session = Session {
        id,
        user_id: user.id.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + api.settings.session_max,
        mfa_passed: !(enrolled || require_mfa),
        mfa_at: None,
    };
    store.put_session(t, &session).await?;
    let caller = Caller {
        tenant: t.clone(),
        who: Who::User {
            user: user.clone(),
            session: session.clone(),
        },
    };
    audit(api, &caller, how, &format!("user:{}", user.id)).await?;
    tracing::info!(tenant = %t, user = %user.id, "signed in");
    Ok(SessionOut {
        token,
        expires_at: session.expires_at,
        idle_timeout_seconds: api.settings.session_idle.num_seconds(),
        mfa_required: !session.mfa_passed,
        mfa_enrolled: enrolled,
    })
}

/// The `Set-Cookie` value that hands a browser its session `token`.
pub fn session_cookie(api: &AppState, token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        api.settings.session_max.num_seconds(),
        if api.settings.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    )
}

/// Ends this session; its token stops working at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(
    State(api): State<AppState>,
    PendingCaller(c): PendingCaller,
) -> ApiResult<Response> {
    let Who::User { session, user } = &c.who else {
        return Err(ApiError::Forbidden(
            "API keys do not sign out: revoke them with DELETE /v1/api-keys/{id}".into(),
        ));
    };
    api.tenants
        .store()
        .delete_session(&c.tenant, &session.id)
        .await?;
    audit(&api, &c, "auth.sign_out", &format!("user:{}", user.id)).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("meetbot_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
pub struct CodeIn {
    /// The 6-digit code the authenticator app shows.
    pub code: String,
}

async fn check_code(api: &AppState, c: &Caller, code: &str, confirming: bool) -> ApiResult<()> {
    let me = c.person()?;
    let store = api.tenants.store();
    let vault = api.tenants.vault(&c.tenant).await?;
    // Read, decide, write back by compare-and-set on the user's version: a concurrent request
    // that wrote first (spent the code, counted a failure) makes this one decide again on
    // what it wrote.
    for _ in 0..32 {
        let Some(current) = store.get_user_versioned(&c.tenant, &me.id).await? else {
            return Err(ApiError::Unauthorized(
                "the session has ended: sign in again".into(),
            ));
        };
        let mut u = current.value;
        let Some(state) = u.totp.as_mut() else {
            return Err(ApiError::Conflict(
                "no TOTP enrolment: start one with POST /v1/me/totp".into(),
            ));
        };
        if state.confirmed == confirming {
            return Err(ApiError::Conflict(if confirming {
                "TOTP is already confirmed".into()
            } else {
                "TOTP enrolment is not confirmed yet: POST /v1/me/totp/confirm".into()
            }));
        }
        let now = Utc::now();
        if let Some(until) = totp::locked(state, now) {
            return Err(totp_locked(until, now));
        }
        let secret =
            zeroize::Zeroizing::new(vault.open::<User>(&u.id, "totp_secret", &state.secret)?);
        let t = totp::totp(&secret, &u.id).map_err(ApiError::Internal)?;
        let unix = now.timestamp().max(0) as u64;
        let step = totp::accept(&t, code, unix, state.last_step);
        if step.is_none() && totp::spent(&t, code, unix, state.last_step) {
            return Err(ApiError::Unauthorized(
                "the code is already used: wait for the next one".into(),
            ));
        }
        let lock = match step {
            Some(step) => {
                totp::record_success(state, step);
                None
            }
            None => totp::record_failure(state, now),
        };
        u.updated_at = now;
        match store.update_user_at(&c.tenant, &u, current.version).await {
            Ok(_) => {}
            Err(meetbot_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        if step.is_none() {
            tracing::warn!(tenant = %c.tenant, user = %u.id, locked = lock.is_some(), "wrong TOTP code");
            audit(api, c, "auth.totp_failed", &format!("user:{}", u.id)).await?;
            if let Some(until) = lock {
                audit(api, c, "auth.totp_locked", &format!("user:{}", u.id)).await?;
                return Err(totp_locked(until, now));
            }
            return Err(ApiError::Unauthorized(
                "the code is wrong or already used".into(),
            ));
        }
        if let Who::User { session, .. } = &c.who {
            let mut s = session.clone();
            s.mfa_passed = true;
            s.mfa_at = Some(now);
            // Only while it exists: a sign-out (or a role change ending the user's sessions)
            // racing this check stays a sign-out.
            if !store.refresh_session(&c.tenant, &s).await? {
                return Err(ApiError::Unauthorized(
                    "the session has ended: sign in again".into(),
                ));
            }
        }
        return Ok(());
    }
    Err(ApiError::Conflict(
        "the account changed meanwhile too often: retry".into(),
    ))
}

/// Changes the stored user by compare-and-set on its version: `change` sees the current record
/// and says whether to write (or refuses); on a concurrent write it runs again on what was
/// written, so a stale copy never rolls back another request's change (TOTP `last_step`,
/// failures, lock-out, the sign-in binding). `None` when the user no longer exists.
pub(crate) async fn update_user_cas(
    api: &AppState,
    t: &TenantId,
    id: &str,
    mut change: impl FnMut(&mut User) -> ApiResult<bool>,
) -> ApiResult<Option<User>> {
    let store = api.tenants.store();
    for _ in 0..32 {
        let Some(current) = store.get_user_versioned(t, id).await? else {
            return Ok(None);
        };
        let mut u = current.value;
        if !change(&mut u)? {
            return Ok(Some(u));
        }
        u.updated_at = Utc::now();
        match store.update_user_at(t, &u, current.version).await {
            Ok(_) => return Ok(Some(u)),
            Err(meetbot_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        "the account changed meanwhile too often: retry".into(),
    ))
}

fn totp_locked(until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    ApiError::Locked(
        format!(
            "too many wrong codes: TOTP for this account is locked until {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        (until - now).num_seconds().max(1) as u64,
    )
}

/// Gives this session's second factor.
#[utoipa::path(post, path = "/v1/auth/totp", tag = "auth", request_body = CodeIn,
    responses((status = 204)))]
pub async fn totp_verify(
    State(api): State<AppState>,
    PendingCaller(c): PendingCaller,
    Json(body): Json<CodeIn>,
) -> ApiResult<StatusCode> {
    check_code(&api, &c, &body.code, false).await?;
    audit(&api, &c, "auth.totp", &c.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// Base32 secret for the authenticator app.
    pub secret: String,
    pub otpauth_url: String,
}

/// Starts TOTP enrolment: a new secret, counted once confirmed with a code.
#[utoipa::path(post, path = "/v1/me/totp", tag = "me", responses((status = 201, body = TotpEnrolment)))]
pub async fn totp_enrol(
    State(api): State<AppState>,
    PendingCaller(c): PendingCaller,
) -> ApiResult<(StatusCode, Json<TotpEnrolment>)> {
    let user = c.person()?;
    if user.totp.as_ref().is_some_and(|t| t.confirmed) {
        return Err(ApiError::Conflict(
            "TOTP is already set up; remove it first (DELETE /v1/me/totp)".into(),
        ));
    }
    let secret = zeroize::Zeroizing::new(
        hex::decode(meetbot_crypto::random_hex(20).map_err(|e| ApiError::Internal(e.to_string()))?)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    let t = totp::totp(&secret, &user.id).map_err(ApiError::Internal)?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let sealed = vault.seal::<User>(&user.id, "totp_secret", &secret)?;
    update_user_cas(&api, &c.tenant, &user.id, |u| {
        if u.totp.as_ref().is_some_and(|t| t.confirmed) {
            return Err(ApiError::Conflict(
                "TOTP is already set up; remove it first (DELETE /v1/me/totp)".into(),
            ));
        }
        u.totp = Some(TotpState {
            secret: sealed.clone(),
            confirmed: false,
            last_step: 0,
            failures: 0,
            locked_until: None,
            lockouts: 0,
        });
        Ok(true)
    })
    .await?
    .ok_or_else(|| ApiError::Unauthorized("the session has ended: sign in again".into()))?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrolment {
            secret: t.get_secret_base32(),
            otpauth_url: t.get_url(),
        }),
    ))
}

/// Confirms TOTP enrolment with a first code; this session counts as having given it.
#[utoipa::path(post, path = "/v1/me/totp/confirm", tag = "me", request_body = CodeIn,
    responses((status = 204)))]
pub async fn totp_confirm(
    State(api): State<AppState>,
    PendingCaller(c): PendingCaller,
    Json(body): Json<CodeIn>,
) -> ApiResult<StatusCode> {
    check_code(&api, &c, &body.code, true).await?;
    audit(&api, &c, "settings.totp_enrolled", &c.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes one's TOTP (not where the tenant requires it).
#[utoipa::path(delete, path = "/v1/me/totp", tag = "me", responses((status = 204)))]
pub async fn totp_remove(State(api): State<AppState>, c: Caller) -> ApiResult<StatusCode> {
    let user = c.person()?;
    let store = api.tenants.store();
    if store
        .get_tenant_settings(&c.tenant)
        .await?
        .is_some_and(|s| s.require_mfa)
    {
        return Err(ApiError::Conflict(
            "the tenant requires a second factor; it cannot be removed".into(),
        ));
    }
    update_user_cas(&api, &c.tenant, &user.id, |u| {
        u.totp = None;
        Ok(true)
    })
    .await?
    .ok_or_else(|| ApiError::Unauthorized("the session has ended: sign in again".into()))?;
    audit(&api, &c, "settings.totp_removed", &c.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Mfa {
    pub enrolled: bool,
    pub passed: bool,
    pub required_by_tenant: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub tenant: String,
    /// `user:<id>` or `key:<id>`.
    pub actor: String,
    pub role: RoleName,
    pub email: Option<String>,
    pub mfa: Option<Mfa>,
    /// API keys only.
    pub scopes: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Owner,
    Admin,
    Member,
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => RoleName::Owner,
            Role::Admin => RoleName::Admin,
            Role::Member => RoleName::Member,
        }
    }
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::Owner => Role::Owner,
            RoleName::Admin => Role::Admin,
            RoleName::Member => Role::Member,
        }
    }
}

/// Who this token is: tenant, role, and the state of the second factor.
#[utoipa::path(get, path = "/v1/me", tag = "me", responses((status = 200, body = Me)))]
pub async fn me(
    State(api): State<AppState>,
    PendingCaller(c): PendingCaller,
) -> ApiResult<Json<Me>> {
    Ok(Json(match &c.who {
        Who::User { user, session } => {
            let vault = api.tenants.vault(&c.tenant).await?;
            let required = api
                .tenants
                .store()
                .get_tenant_settings(&c.tenant)
                .await?
                .is_some_and(|s| s.require_mfa);
            Me {
                tenant: c.tenant.to_string(),
                actor: c.actor(),
                role: user.role.into(),
                email: Some(vault.open_string::<User>(&user.id, "email", &user.email)?),
                mfa: Some(Mfa {
                    enrolled: user.totp.as_ref().is_some_and(|t| t.confirmed),
                    passed: session.mfa_passed,
                    required_by_tenant: required,
                }),
                scopes: None,
            }
        }
        Who::Key(k) => Me {
            tenant: c.tenant.to_string(),
            actor: c.actor(),
            role: RoleName::Admin,
            email: None,
            mfa: None,
            scopes: Some(k.scopes.clone()),
        },
    }))
}

// ---- people ----

#[derive(Serialize, ToSchema)]
pub struct UserOut {
    pub id: String,
    pub email: String,
    pub role: RoleName,
    pub mfa_enrolled: bool,
    pub signed_in_before: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserOut>,
}

fn user_out(vault: &meetbot_store::vault::TenantVault, u: &User) -> ApiResult<UserOut> {
    Ok(UserOut {
        id: u.id.clone(),
        email: vault.open_string::<User>(&u.id, "email", &u.email)?,
        role: u.role.into(),
        mfa_enrolled: u.totp.as_ref().is_some_and(|t| t.confirmed),
        signed_in_before: u.subject_hash.is_some(),
        created_at: u.created_at,
    })
}

/// The tenant's people (admins and owners).
#[utoipa::path(get, path = "/v1/users", tag = "people", responses((status = 200, body = UserList)))]
pub async fn list_users(State(api): State<AppState>, c: Caller) -> ApiResult<Json<UserList>> {
    c.person()?;
    c.require(Role::Admin, "users")?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let mut items = api
        .tenants
        .store()
        .list_users(&c.tenant)
        .await?
        .iter()
        .map(|u| user_out(&vault, u))
        .collect::<ApiResult<Vec<_>>>()?;
    items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(Json(UserList { items }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    pub role: RoleName,
}

/// Adds a person by email address; they sign in with an identity provider account of that
/// address. Admins add members; owners add anyone.
#[utoipa::path(post, path = "/v1/users", tag = "people", request_body = NewUser,
    responses((status = 201, body = UserOut)))]
pub async fn add_user(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<UserOut>)> {
    c.person()?;
    let role: Role = body.role.into();
    c.require(
        if role == Role::Member {
            Role::Admin
        } else {
            Role::Owner
        },
        "users",
    )?;
    let u = create_user(&api, &c.tenant, &body.email, role)
        .await
        .map_err(|e| match e {
            ApiError::Conflict(_) => ApiError::Conflict("a user with this address exists".into()),
            other => other,
        })?;
    audit(&api, &c, "people.add", &format!("user:{}", u.id)).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    Ok((StatusCode::CREATED, Json(user_out(&vault, &u)?)))
}

/// Registers a user (also used by `meetbot tenant add-user` to make the first owner).
pub async fn create_user(
    api_or_tenants: &impl AsTenants,
    t: &TenantId,
    email: &str,
    role: Role,
) -> ApiResult<User> {
    let email = email.trim();
    if !meetbot_delivery::email::is_address(email) {
        return Err(ApiError::BadRequest("email is not an email address".into()));
    }
    let tenants = api_or_tenants.tenants();
    let vault = tenants.vault(t).await?;
    let id = meetbot_core::ids::new_record_id();
    let now = Utc::now();
    let u = User {
        email_hash: auth::email_hash(t, email),
        email: vault.seal::<User>(&id, "email", email.to_lowercase().as_bytes())?,
        id,
        role,
        subject_hash: None,
        totp: None,
        created_at: now,
        updated_at: now,
    };
    tenants.store().insert_user(t, &u).await?;
    Ok(u)
}

pub trait AsTenants {
    fn tenants(&self) -> &meetbot_store::vault::Tenants;
}

impl AsTenants for AppState {
    fn tenants(&self) -> &meetbot_store::vault::Tenants {
        &self.tenants
    }
}

impl AsTenants for meetbot_store::vault::Tenants {
    fn tenants(&self) -> &meetbot_store::vault::Tenants {
        self
    }
}

/// One person (admins, owners, and anyone for themselves).
#[utoipa::path(get, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path)),
    responses((status = 200, body = UserOut)))]
pub async fn get_user(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UserOut>> {
    let me = c.person()?;
    if me.id != id {
        c.require(Role::Admin, "users")?;
    }
    let u = api
        .tenants
        .store()
        .get_user(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let vault = api.tenants.vault(&c.tenant).await?;
    Ok(Json(user_out(&vault, &u)?))
}

#[derive(Deserialize, ToSchema)]
pub struct RoleChange {
    pub role: RoleName,
}

async fn owners(api: &AppState, t: &TenantId) -> ApiResult<usize> {
    Ok(api
        .tenants
        .store()
        .list_users(t)
        .await?
        .iter()
        .filter(|u| u.role == Role::Owner)
        .count())
}

/// Changes a person's role (owners); their sessions end so the new role applies at once.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path)),
    request_body = RoleChange, responses((status = 200, body = UserOut)))]
pub async fn change_role(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    Json(body): Json<RoleChange>,
) -> ApiResult<Json<UserOut>> {
    c.person()?;
    c.require(Role::Owner, "users")?;
    let store = api.tenants.store();
    let u = store
        .get_user(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let role: Role = body.role.into();
    if u.role == Role::Owner && role != Role::Owner && owners(&api, &c.tenant).await? <= 1 {
        return Err(ApiError::Conflict(
            "the tenant's last owner cannot be demoted".into(),
        ));
    }
    // Compare-and-set: the role is written onto the current record, not onto the copy read
    // above (which a concurrent TOTP check may have outdated).
    let mut changed = false;
    let u = update_user_cas(&api, &c.tenant, &id, |cur| {
        changed = cur.role != role;
        cur.role = role;
        Ok(changed)
    })
    .await?
    .ok_or(ApiError::NotFound("user"))?;
    if changed {
        store.delete_user_sessions(&c.tenant, &u.id).await?;
        if role < auth::KEY_HOLDER_ROLE {
            revoke_keys_of(&api, &c, &u.id).await?;
        }
        audit(
            &api,
            &c,
            &format!("people.role.{}", role.name()),
            &format!("user:{id}"),
        )
        .await?;
    }
    let vault = api.tenants.vault(&c.tenant).await?;
    Ok(Json(user_out(&vault, &u)?))
}

/// Removes a person (owners) and ends their sessions.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path)),
    responses((status = 204)))]
pub async fn remove_user(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    c.person()?;
    c.require(Role::Owner, "users")?;
    let store = api.tenants.store();
    let u = store
        .get_user(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if u.role == Role::Owner && owners(&api, &c.tenant).await? <= 1 {
        return Err(ApiError::Conflict(
            "the tenant's last owner cannot be removed".into(),
        ));
    }
    store.delete_user(&c.tenant, &id).await?;
    revoke_keys_of(&api, &c, &id).await?;
    audit(&api, &c, "people.remove", &format!("user:{id}")).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- API keys ----

/// Revokes the keys `user_id` made (they were removed, or can no longer hold keys). Keys are
/// also refused at use while their creator is gone or below [`auth::KEY_HOLDER_ROLE`].
async fn revoke_keys_of(api: &AppState, c: &Caller, user_id: &str) -> ApiResult<()> {
    let store = api.tenants.store();
    for k in store.list_api_keys(&c.tenant).await? {
        if k.created_by == user_id
            && k.revoked_at.is_none()
            && revoke(api, &c.tenant, &k.id).await? == Some(true)
        {
            audit(api, c, "api_key.revoke", &format!("key:{}", k.id)).await?;
        }
    }
    Ok(())
}

/// Marks key `id` revoked by compare-and-set on its version, read again after each conflict
/// (a request recording its use in between), so neither write undoes the other. `None`: no
/// such key; `Some(false)`: it was revoked already.
async fn revoke(
    api: &AppState,
    tenant: &meetbot_core::TenantId,
    id: &str,
) -> ApiResult<Option<bool>> {
    let store = api.tenants.store();
    // Each conflict is another writer's success; uses are written at most once a minute.
    for _ in 0..8 {
        let Some(mut k) = store.get_api_key_versioned(tenant, id).await? else {
            return Ok(None);
        };
        if k.value.revoked_at.is_some() {
            return Ok(Some(false));
        }
        k.value.revoked_at = Some(Utc::now());
        match store.update_api_key_at(tenant, &k.value, k.version).await {
            Ok(_) => return Ok(Some(true)),
            Err(meetbot_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable(
        "the API key kept changing while it was being revoked: try again".into(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key stops working then (make a new one before).
    pub expires_at: DateTime<Utc>,
}

impl From<&ApiKey> for ApiKeyOut {
    fn from(k: &ApiKey) -> Self {
        ApiKeyOut {
            id: k.id.clone(),
            name: k.name.clone(),
            scopes: k.scopes.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            expires_at: k.expiry(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyOut>,
}

/// The tenant's API keys (admins and owners; the secrets are never shown again).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", responses((status = 200, body = ApiKeyList)))]
pub async fn list_keys(State(api): State<AppState>, c: Caller) -> ApiResult<Json<ApiKeyList>> {
    c.person()?;
    c.require(Role::Admin, "keys")?;
    let mut keys = api.tenants.store().list_api_keys(&c.tenant).await?;
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(Json(ApiKeyList {
        items: keys.iter().map(ApiKeyOut::from).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewApiKey {
    /// A label for people (1 to 64 characters).
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub name: String,
    /// What the key may do (at least one).
    #[schema(min_items = 1, inline)]
    pub scopes: Vec<ScopeName>,
    /// Days until the key stops working: 1 to 365 (default 90).
    #[schema(minimum = 1, maximum = 365)]
    pub expires_in_days: Option<u32>,
}

/// An API key's lifetime when none is asked for, and the longest one can be given.
pub const KEY_DEFAULT_DAYS: u32 = 90;
pub const KEY_MAX_DAYS: u32 = ApiKey::LEGACY_LIFETIME_DAYS as u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, ToSchema)]
pub enum ScopeName {
    #[serde(rename = "meetings:read")]
    MeetingsRead,
    #[serde(rename = "transcripts:read")]
    TranscriptsRead,
    #[serde(rename = "bots:write")]
    BotsWrite,
    #[serde(rename = "settings:read")]
    SettingsRead,
    #[serde(rename = "settings:write")]
    SettingsWrite,
}

impl ScopeName {
    fn name(&self) -> &'static str {
        match self {
            ScopeName::MeetingsRead => "meetings:read",
            ScopeName::TranscriptsRead => "transcripts:read",
            ScopeName::BotsWrite => "bots:write",
            ScopeName::SettingsRead => "settings:read",
            ScopeName::SettingsWrite => "settings:write",
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub key: ApiKeyOut,
    /// Shown once: send it as `Authorization: Bearer`.
    pub token: String,
}

/// Creates an API key for server-to-server calls.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey)))]
pub async fn create_key(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<NewApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let user = c.person()?;
    c.require(Role::Admin, "keys")?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::BadRequest(
            "name must be 1 to 64 characters".into(),
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::BadRequest("give at least one scope".into()));
    }
    let days = body.expires_in_days.unwrap_or(KEY_DEFAULT_DAYS);
    if !(1..=KEY_MAX_DAYS).contains(&days) {
        return Err(ApiError::BadRequest(format!(
            "expires_in_days is out of range 1..={KEY_MAX_DAYS}"
        )));
    }
    let (token, id, hash) = auth::new_api_key(&c.tenant)?;
    let mut scopes: Vec<String> = body.scopes.iter().map(|s| s.name().to_string()).collect();
    scopes.sort();
    scopes.dedup();
    debug_assert!(scopes.iter().all(|s| SCOPES.contains(&s.as_str())));
    let now = Utc::now();
    let key = ApiKey {
        id,
        name: name.to_string(),
        secret_hash: hash,
        scopes,
        created_by: user.id.clone(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
        expires_at: Some(now + chrono::Duration::days(i64::from(days))),
    };
    api.tenants.store().put_api_key(&c.tenant, &key).await?;
    audit(&api, &c, "api_key.create", &format!("key:{}", key.id)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: ApiKeyOut::from(&key),
            token,
        }),
    ))
}

/// Revokes an API key; it stops working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 204)))]
pub async fn revoke_key(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    c.person()?;
    c.require(Role::Admin, "keys")?;
    if revoke(&api, &c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("API key"))?
    {
        audit(&api, &c, "api_key.revoke", &format!("key:{id}")).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

//! Who is calling: opaque session tokens and API keys, resolved to a [`Caller`] in one tenant.
//!
//! * Session token: `mbs_<tenant>_<64 hex>`; the store keeps only the SHA-256 of the secret part
//!   (the session id). Sent as `Authorization: Bearer` or the `meetbot_session` cookie.
//! * API key: `mbk_<tenant>_<key id>_<64 hex>`; the store keeps only the SHA-256 of the secret.
//!
//! The tenant in a token only routes the lookup to that tenant's database; a forged tenant part
//! finds nothing there. Nothing here ever logs a token.

use crate::error::{ApiError, ApiResult};
use crate::{Api, AppState};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{ApiKey, Role, Session, TenantSettings, User};
use sha2::{Digest, Sha256};

/// One name for the API and calendar-sync's `/oauth/callback`, which reads it too.
pub const SESSION_COOKIE: &str = meetbot_store::browser::SESSION_COOKIE;

/// How recent an interactive proof (the sign-in, or a TOTP code in this session) must be for
/// changes that weaken the tenant's security.
pub const RECENT_SIGN_IN: chrono::Duration = chrono::Duration::minutes(10);

/// The role an API key's creator must keep for the key to work (the role that may make keys).
pub const KEY_HOLDER_ROLE: Role = Role::Admin;

/// What an API key may be allowed to do. Sessions may do all of it their role allows.
pub const SCOPES: &[&str] = &[
    "meetings:read",
    "transcripts:read",
    "bots:write",
    "settings:read",
    "settings:write",
];

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// How a user is found at sign-in without the address stored in clear.
pub fn email_hash(t: &TenantId, email: &str) -> String {
    sha256_hex(format!("{t}:{}", email.trim().to_lowercase()).as_bytes())
}

/// The identity an ID token names, as bound to a user.
pub fn subject_hash(issuer: &str, subject: &str) -> String {
    sha256_hex(format!("{issuer}\u{0}{subject}").as_bytes())
}

fn random_secret() -> ApiResult<String> {
    meetbot_crypto::random_hex(32).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A new session token and the id (hash) the store keeps.
pub fn new_session_token(t: &TenantId) -> ApiResult<(String, String)> {
    let secret = random_secret()?;
    Ok((format!("mbs_{t}_{secret}"), sha256_hex(secret.as_bytes())))
}

/// A new API key: the token (shown once), its id and the hash the store keeps.
pub fn new_api_key(t: &TenantId) -> ApiResult<(String, String, String)> {
    let id = meetbot_crypto::random_hex(8).map_err(|e| ApiError::Internal(e.to_string()))?;
    let secret = random_secret()?;
    Ok((
        format!("mbk_{t}_{id}_{secret}"),
        id,
        sha256_hex(secret.as_bytes()),
    ))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Token {
    Session {
        tenant: TenantId,
        id: String,
    },
    Key {
        tenant: TenantId,
        key_id: String,
        secret_hash: String,
    },
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Parses a presented token; `None` for anything that is not one of ours.
pub fn parse_token(s: &str) -> Option<Token> {
    let mut parts = s.split('_');
    let kind = parts.next()?;
    let tenant: TenantId = parts.next()?.parse().ok()?;
    match kind {
        // Parsed where calendar-sync's `/oauth/callback` parses it too.
        "mbs" => meetbot_store::browser::session_id(s)
            .filter(|(t, _)| *t == tenant)
            .map(|(tenant, id)| Token::Session { tenant, id }),
        "mbk" => {
            let key_id = parts.next()?;
            let secret = parts.next()?;
            (parts.next().is_none() && is_hex(key_id, 16) && is_hex(secret, 64)).then(|| {
                Token::Key {
                    tenant,
                    key_id: key_id.to_string(),
                    secret_hash: sha256_hex(secret.as_bytes()),
                }
            })
        }
        _ => None,
    }
}

/// The token a request presents: the bearer token, else the session cookie.
pub fn presented(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    for v in parts.headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for c in v.split(';') {
            if let Some((k, val)) = c.trim().split_once('=')
                && k == SESSION_COOKIE
            {
                return Some(val.to_string());
            }
        }
    }
    None
}

#[derive(Clone, Debug)]
pub enum Who {
    User { user: User, session: Session },
    Key(ApiKey),
}

/// An authenticated caller, in exactly one tenant.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: TenantId,
    pub who: Who,
}

impl Caller {
    /// API keys act for the tenant with an admin's reach, narrowed by their scopes.
    pub fn role(&self) -> Role {
        match &self.who {
            Who::User { user, .. } => user.role,
            Who::Key(_) => Role::Admin,
        }
    }

    /// An opaque actor for the audit log: `user:<id>` or `key:<id>`.
    pub fn actor(&self) -> String {
        match &self.who {
            Who::User { user, .. } => format!("user:{}", user.id),
            Who::Key(k) => format!("key:{}", k.id),
        }
    }

    pub fn user(&self) -> Option<&User> {
        match &self.who {
            Who::User { user, .. } => Some(user),
            Who::Key(_) => None,
        }
    }

    /// A person is needed (managing people, keys, calendars, one's own rules).
    pub fn person(&self) -> ApiResult<&User> {
        self.user().ok_or_else(|| {
            ApiError::Forbidden("this needs a signed-in person; API keys cannot do it".into())
        })
    }

    /// Changes that weaken the tenant's security (`what`): only an owner, in person (no API
    /// key), who proved themselves within [`RECENT_SIGN_IN`] (signed in, or gave a TOTP code).
    pub fn require_fresh_owner(&self, what: &str, now: DateTime<Utc>) -> ApiResult<()> {
        let Who::User { user, session } = &self.who else {
            return Err(ApiError::Forbidden(format!(
                "changing {what} needs an owner signed in in person; API keys cannot do it"
            )));
        };
        if user.role < Role::Owner {
            return Err(ApiError::Forbidden(format!(
                "changing {what} needs the owner role"
            )));
        }
        let proved = session
            .mfa_at
            .map_or(session.created_at, |m| m.max(session.created_at));
        if now - proved > RECENT_SIGN_IN {
            return Err(ApiError::Forbidden(format!(
                "changing {what} needs a sign-in from the last {} minutes: sign in again (or give a \
                 fresh TOTP code with POST /v1/auth/totp), then retry",
                RECENT_SIGN_IN.num_minutes()
            )));
        }
        Ok(())
    }

    /// At least `role`, and for API keys the scope too.
    pub fn require(&self, role: Role, scope: &str) -> ApiResult<()> {
        if let Who::Key(k) = &self.who
            && !k.scopes.iter().any(|s| s == scope)
        {
            return Err(ApiError::Forbidden(format!(
                "this API key lacks the {scope} scope"
            )));
        }
        if self.role() < role {
            return Err(ApiError::role(role.name()));
        }
        Ok(())
    }
}

/// A caller whose session may still owe its second factor (for the routes that settle it).
pub struct PendingCaller(pub Caller);

/// A caller with every factor given: what all other routes take.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let c = authenticate(parts, api).await?;
        if let Who::User { session, .. } = &c.who
            && !session.mfa_passed
        {
            return Err(ApiError::MfaRequired);
        }
        Ok(c)
    }
}

impl FromRequestParts<AppState> for PendingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, api).await.map(PendingCaller)
    }
}

/// Whether the tenant's sign-in policy admits this identity (an ID token's issuer and verified
/// address). No policy set: any configured provider (the user must still have been added).
pub fn sign_in_allowed(
    settings: Option<&TenantSettings>,
    issuer: &str,
    email: &str,
) -> ApiResult<()> {
    let Some(s) = settings else { return Ok(()) };
    if !s.allowed_issuers.is_empty() && !s.allowed_issuers.iter().any(|i| i == issuer) {
        return Err(ApiError::Forbidden(
            "this tenant does not accept sign-in from this identity provider: use the one your \
             organisation uses, or ask an owner"
                .into(),
        ));
    }
    let domain = email
        .trim()
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default();
    if !s.allowed_email_domains.is_empty() && !s.allowed_email_domains.contains(&domain) {
        return Err(ApiError::Forbidden(
            "this tenant does not accept addresses at this domain: sign in with your \
             organisation's account, or ask an owner"
                .into(),
        ));
    }
    Ok(())
}

/// Resolves the caller; the tenant's rate limit is charged only once they are known, and a
/// failed attempt is charged to the client address instead (made-up tokens naming a tenant
/// cannot lock its people out).
async fn authenticate(parts: &Parts, api: &Api) -> ApiResult<Caller> {
    match identify(parts, api).await {
        Ok(c) => {
            api.limits.tenant(&c.tenant)?;
            Ok(c)
        }
        Err(e @ ApiError::Unauthorized(_)) => {
            if let Some(crate::limits::ClientIp(ip)) = parts.extensions.get() {
                api.limits.ip(*ip)?;
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

async fn identify(parts: &Parts, api: &Api) -> ApiResult<Caller> {
    let token = presented(parts).ok_or_else(ApiError::unauthenticated)?;
    let Some(token) = parse_token(&token) else {
        return Err(ApiError::Unauthorized(
            "the token is not a meetbot session token or API key".into(),
        ));
    };
    let store = api.tenants.store();
    let now = Utc::now();
    match token {
        Token::Session { tenant, id } => {
            let invalid = || ApiError::Unauthorized("the session has ended: sign in again".into());
            let mut session = match store.get_session(&tenant, &id).await {
                Ok(Some(s)) => s,
                Ok(None) | Err(meetbot_store::StoreError::UnknownTenant(_)) => {
                    return Err(invalid());
                }
                Err(e) => return Err(e.into()),
            };
            if idle_expired(&session, now, api.settings.session_idle) || session.expires_at <= now {
                store.delete_session(&tenant, &id).await?;
                return Err(invalid());
            }
            let user = store
                .get_user(&tenant, &session.user_id)
                .await?
                .ok_or_else(invalid)?;
            // Refresh the idle clock, at most a few times per idle period.
            let every = (api.settings.session_idle / 4).min(chrono::Duration::seconds(60));
            if now - session.last_seen_at >= every {
                session.last_seen_at = now;
                // Only while it exists: a sign-out racing this refresh stays a sign-out.
                if !store.refresh_session(&tenant, &session).await? {
                    return Err(invalid());
                }
            }
            Ok(Caller {
                tenant,
                who: Who::User { user, session },
            })
        }
        Token::Key {
            tenant,
            key_id,
            secret_hash,
        } => {
            let invalid = || ApiError::Unauthorized("the API key is not valid".into());
            let read = match store.get_api_key_versioned(&tenant, &key_id).await {
                Ok(Some(k)) => k,
                Ok(None) | Err(meetbot_store::StoreError::UnknownTenant(_)) => {
                    return Err(invalid());
                }
                Err(e) => return Err(e.into()),
            };
            if !meetbot_crypto::constant_time_eq(
                read.value.secret_hash.as_bytes(),
                secret_hash.as_bytes(),
            ) {
                return Err(invalid());
            }
            key_usable(&read.value, now)?;
            // A key acts for the person who made it: it works only while they may hold keys.
            if store
                .get_user(&tenant, &read.value.created_by)
                .await?
                .is_none_or(|u| u.role < KEY_HOLDER_ROLE)
            {
                return Err(ApiError::Unauthorized(
                    "the API key has been revoked: its creator no longer administers the tenant"
                        .into(),
                ));
            }
            let key = record_key_use(&**store, &tenant, read, now).await?;
            Ok(Caller {
                tenant,
                who: Who::Key(key),
            })
        }
    }
}

/// Refuses a revoked or expired key.
fn key_usable(key: &ApiKey, now: DateTime<Utc>) -> ApiResult<()> {
    if key.revoked_at.is_some() {
        return Err(ApiError::Unauthorized(
            "the API key has been revoked".into(),
        ));
    }
    if key.expiry() <= now {
        return Err(ApiError::Unauthorized(
            "the API key has expired: an admin can make a new one (POST /v1/api-keys)".into(),
        ));
    }
    Ok(())
}

/// How often a key's `last_used_at` is written (at most once a minute per key).
const KEY_USE_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Records that `read` (a key as read, with its version, by a request it authenticated) was
/// used at `now`, and returns the key as it stands. The write is a compare-and-set on the
/// version read: when the key changed in between (an admin revoked it) the write fails and the
/// key is judged again as stored, so a revocation racing a request's use stays a revocation.
pub async fn record_key_use(
    store: &dyn meetbot_store::Store,
    tenant: &TenantId,
    read: meetbot_store::Versioned<ApiKey>,
    now: DateTime<Utc>,
) -> ApiResult<ApiKey> {
    let mut key = read.value;
    if key.last_used_at.is_some_and(|t| now - t < KEY_USE_EVERY) {
        return Ok(key);
    }
    key.last_used_at = Some(now);
    match store.update_api_key_at(tenant, &key, read.version).await {
        Ok(_) => Ok(key),
        Err(meetbot_store::StoreError::Conflict { .. }) => {
            // Changed meanwhile: revoked, or used by a request beside this one.
            let current = store
                .get_api_key(tenant, &key.id)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("the API key is not valid".into()))?;
            key_usable(&current, now)?;
            Ok(current)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn idle_expired(s: &Session, now: DateTime<Utc>, idle: chrono::Duration) -> bool {
    meetbot_store::browser::idle_expired(s, now, idle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_made_here_parse_back_to_their_tenant_and_hash() {
        let t: TenantId = "tenant01".parse().unwrap();
        let (tok, id) = new_session_token(&t).unwrap();
        assert_eq!(
            parse_token(&tok),
            Some(Token::Session {
                tenant: t.clone(),
                id
            })
        );
        let (tok, key_id, hash) = new_api_key(&t).unwrap();
        assert_eq!(
            parse_token(&tok),
            Some(Token::Key {
                tenant: t,
                key_id,
                secret_hash: hash
            })
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "mbs_",
            "mbs_tenant01_",
            "mbs_TENANT01_00",
            "mbs_tenant01_zz",
            &format!("mbs_tenant01_{}_x", "a".repeat(64)),
            &format!("mbk_tenant01_{}", "a".repeat(64)),
            &format!("xyz_tenant01_{}", "a".repeat(64)),
            &format!("mbs_tenant01_{}", "A".repeat(64)),
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn email_hash_ignores_case_and_spaces_but_not_the_tenant() {
        let a: TenantId = "tenant01".parse().unwrap();
        let b: TenantId = "tenant02".parse().unwrap();
        assert_eq!(
            email_hash(&a, " Ann@Example.COM"),
            email_hash(&a, "ann@example.com")
        );
        assert_ne!(
            email_hash(&a, "ann@example.com"),
            email_hash(&b, "ann@example.com")
        );
    }

    fn user(role: Role) -> User {
        let sealed = meetbot_core::model::Sealed {
            key_version: 1,
            nonce: vec![],
            ciphertext: vec![],
        };
        User {
            id: "u1".into(),
            email_hash: String::new(),
            email: sealed,
            role,
            subject_hash: None,
            totp: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn caller(role: Role, signed_in_ago: i64, mfa_ago: Option<i64>) -> Caller {
        let now = Utc::now();
        Caller {
            tenant: "tenant01".parse().unwrap(),
            who: Who::User {
                user: user(role),
                session: Session {
                    id: "s".into(),
                    user_id: "u1".into(),
                    created_at: now - chrono::Duration::minutes(signed_in_ago),
                    last_seen_at: now,
                    expires_at: now + chrono::Duration::hours(1),
                    mfa_passed: true,
                    mfa_at: mfa_ago.map(|m| now - chrono::Duration::minutes(m)),
                },
            },
        }
    }

    #[test]
    fn weakening_changes_need_an_owner_in_person_with_a_recent_proof() {
        let now = Utc::now();
        assert!(
            caller(Role::Owner, 1, None)
                .require_fresh_owner("x", now)
                .is_ok()
        );
        assert!(
            caller(Role::Owner, 60, Some(2))
                .require_fresh_owner("x", now)
                .is_ok()
        );
        match caller(Role::Owner, 11, None).require_fresh_owner("require_mfa", now) {
            Err(ApiError::Forbidden(m)) => {
                assert!(
                    m.contains("require_mfa") && m.contains("sign in again"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            caller(Role::Owner, 60, Some(30))
                .require_fresh_owner("x", now)
                .is_err()
        );
        assert!(
            caller(Role::Admin, 0, None)
                .require_fresh_owner("x", now)
                .is_err()
        );
        let key = Caller {
            tenant: "tenant01".parse().unwrap(),
            who: Who::Key(ApiKey {
                id: "k".into(),
                name: "k".into(),
                secret_hash: String::new(),
                scopes: vec!["settings:write".into()],
                created_by: "u1".into(),
                created_at: now,
                revoked_at: None,
                last_used_at: None,
                expires_at: None,
            }),
        };
        assert!(key.require_fresh_owner("x", now).is_err());
    }

    #[test]
    fn a_tenants_sign_in_policy_refuses_other_issuers_and_domains() {
        let mut s = TenantSettings::new(Default::default(), Utc::now());
        // Nothing set: anyone the tenant added, from any configured provider.
        assert!(sign_in_allowed(None, "https://idp.a", "x@any.test").is_ok());
        assert!(sign_in_allowed(Some(&s), "https://idp.a", "x@any.test").is_ok());
        s.allowed_issuers = vec!["https://idp.a".into()];
        s.allowed_email_domains = vec!["clinic.test".into()];
        assert!(sign_in_allowed(Some(&s), "https://idp.a", "Ann@Clinic.TEST").is_ok());
        assert!(sign_in_allowed(Some(&s), "https://idp.b", "ann@clinic.test").is_err());
        assert!(sign_in_allowed(Some(&s), "https://idp.a/", "ann@clinic.test").is_err());
        assert!(sign_in_allowed(Some(&s), "https://idp.a", "ann@evil.clinic.test").is_err());
        assert!(sign_in_allowed(Some(&s), "https://idp.a", "clinic.test@evil.test").is_err());
    }

    proptest! {
        #[test]
        fn any_string_parses_without_panicking(s in ".{0,200}") {
            let _ = parse_token(&s);
        }
    }
}

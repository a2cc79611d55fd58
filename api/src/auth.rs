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
use meetbot_core::model::{ApiKey, Role, Session, User};
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "meetbot_session";

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
        "mbs" => {
            let secret = parts.next()?;
            (parts.next().is_none() && is_hex(secret, 64)).then(|| Token::Session {
                tenant,
                id: sha256_hex(secret.as_bytes()),
            })
        }
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

async fn authenticate(parts: &Parts, api: &Api) -> ApiResult<Caller> {
    let token = presented(parts).ok_or_else(ApiError::unauthenticated)?;
    let Some(token) = parse_token(&token) else {
        return Err(ApiError::Unauthorized(
            "the token is not a meetbot session token or API key".into(),
        ));
    };
    let tenant = match &token {
        Token::Session { tenant, .. } | Token::Key { tenant, .. } => tenant.clone(),
    };
    api.limits.tenant(&tenant)?;
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
                store.put_session(&tenant, &session).await?;
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
            let mut key = match store.get_api_key(&tenant, &key_id).await {
                Ok(Some(k)) => k,
                Ok(None) | Err(meetbot_store::StoreError::UnknownTenant(_)) => {
                    return Err(invalid());
                }
                Err(e) => return Err(e.into()),
            };
            if !meetbot_crypto::constant_time_eq(key.secret_hash.as_bytes(), secret_hash.as_bytes())
            {
                return Err(invalid());
            }
            if key.revoked_at.is_some() {
                return Err(ApiError::Unauthorized(
                    "the API key has been revoked".into(),
                ));
            }
            if key
                .last_used_at
                .is_none_or(|t| now - t >= chrono::Duration::seconds(60))
            {
                key.last_used_at = Some(now);
                store.put_api_key(&tenant, &key).await?;
            }
            Ok(Caller {
                tenant,
                who: Who::Key(key),
            })
        }
    }
}

pub fn idle_expired(s: &Session, now: DateTime<Utc>, idle: chrono::Duration) -> bool {
    now - s.last_seen_at >= idle
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

    proptest! {
        #[test]
        fn any_string_parses_without_panicking(s in ".{0,200}") {
            let _ = parse_token(&s);
        }
    }
}

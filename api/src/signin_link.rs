//! One-time sign-in links: `meetbot dev` makes one for its demo owner at start, so that a
//! newcomer can open the web app without an identity provider.
//!
//! A link is a random 256-bit secret, kept here only as its SHA-256 and only in this process's
//! memory (a restart voids every link). It works once, for [`LINK_LIFETIME`], and only from a
//! loopback client: the address the connection comes from, never a forwarded header. A
//! deployment that does not set [`crate::Api::sign_in_links`] has no links at all.

use crate::AppState;
use crate::auth::sha256_hex;
use crate::error::{ApiError, ApiResult};
use crate::routes::SessionOut;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// How long a link works.
pub const LINK_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

struct Pending {
    tenant: TenantId,
    user_id: String,
    expires_at: DateTime<Utc>,
}

/// The links not used yet, by the SHA-256 of their secret.
#[derive(Default)]
pub struct SignInLinks {
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for SignInLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInLinks").finish_non_exhaustive()
    }
}

impl SignInLinks {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new link's secret for user `user_id` of tenant `t` (the path segment after
    /// `/app/sign-in/link/`).
    pub fn mint(&self, t: &TenantId, user_id: &str) -> ApiResult<String> {
        let secret =
            meetbot_crypto::random_hex(32).map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = Utc::now();
        let mut p = self.lock();
        p.retain(|_, x| x.expires_at > now);
        p.insert(
            sha256_hex(secret.as_bytes()),
            Pending {
                tenant: t.clone(),
                user_id: user_id.to_string(),
                expires_at: now + LINK_LIFETIME,
            },
        );
        Ok(secret)
    }

    /// The link's user, once: the link is used up whether or not it was still valid.
    fn take(&self, secret: &str, now: DateTime<Utc>) -> Option<(TenantId, String)> {
        let p = self.lock().remove(&sha256_hex(secret.as_bytes()))?;
        (p.expires_at > now).then_some((p.tenant, p.user_id))
    }
}

/// Signs in with the link `secret`, presented by a client at `peer`: a new session for the
/// link's user (a TOTP code is still owed if they have one).
pub async fn redeem(
    api: &AppState,
    secret: &str,
    peer: IpAddr,
) -> ApiResult<(TenantId, SessionOut)> {
    let unusable = || {
        ApiError::Unauthorized(
            "this sign-in link is used up, expired or unknown: restart `meetbot dev` for a new one"
                .into(),
        )
    };
    let Some(links) = &api.sign_in_links else {
        return Err(ApiError::NotFound("sign-in link"));
    };
    if !peer.is_loopback() && !peer.to_canonical().is_loopback() {
        return Err(ApiError::Forbidden(
            "sign-in links work only from this machine (a loopback address)".into(),
        ));
    }
    let (tenant, user_id) = links.take(secret, Utc::now()).ok_or_else(unusable)?;
    let user = api
        .tenants
        .store()
        .get_user(&tenant, &user_id)
        .await?
        .ok_or_else(unusable)?;
    let out = crate::routes::start_session(api, &tenant, &user, "auth.sign_in_link").await?;
    Ok((tenant, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_works_once_and_not_after_it_expires() {
        let links = SignInLinks::new();
        let t = TenantId::generate();
        let a = links.mint(&t, "u1").unwrap();
        let now = Utc::now();
        assert_eq!(links.take(&a, now), Some((t.clone(), "u1".into())));
        assert_eq!(links.take(&a, now), None, "a second use");
        let b = links.mint(&t, "u1").unwrap();
        let later = Utc::now() + LINK_LIFETIME + chrono::Duration::seconds(1);
        assert_eq!(links.take(&b, later), None, "expired");
        assert_eq!(
            links.take(&b, Utc::now()),
            None,
            "an expired link is used up too"
        );
        assert_eq!(links.take("not-a-link", now), None);
    }
}

//! What a browser presents to meetbot, shared by the API (which issues sessions and starts
//! sign-ins and calendar consents) and calendar-sync (whose `/oauth/callback` must know that the
//! browser finishing a consent is the one that began it, signed in as the person who began it):
//!
//! * the session cookie (`meetbot_session`, token `mbs_<tenant>_<64 hex>`; the store keeps the
//!   SHA-256 of the secret part as the session id) and whether a session is live;
//! * browser bindings: a fresh random secret in a short-lived, HttpOnly, SameSite=Lax cookie
//!   scoped to the flow's callback path, whose SHA-256 the pending record keeps; the callback
//!   compares in constant time.

use crate::{Result, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{Session, User};
use sha2::{Digest, Sha256};

/// The session cookie the API sets at sign-in (`Path=/`).
pub const SESSION_COOKIE: &str = "meetbot_session";
/// The binding cookie of a sign-in (`Path=` the sign-in callback's path).
pub const SIGNIN_BINDING_COOKIE: &str = "meetbot_signin";
/// The binding cookie of a calendar consent (`Path=` the calendar callback's path).
pub const OAUTH_BINDING_COOKIE: &str = "meetbot_oauth";
/// A binding cookie lives as long as its pending flow (10 minutes).
pub const BINDING_TTL_SECONDS: i64 = 600;

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A session token `mbs_<tenant>_<64 lowercase hex>` -> its tenant and session id (the SHA-256
/// of the secret part); `None` for anything else.
pub fn session_id(token: &str) -> Option<(TenantId, String)> {
    let mut parts = token.split('_');
    if parts.next()? != "mbs" {
        return None;
    }
    let tenant: TenantId = parts.next()?.parse().ok()?;
    let secret = parts.next()?;
    let hex_ok = secret.len() == 64
        && secret
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (parts.next().is_none() && hex_ok).then(|| (tenant, sha256_hex(secret.as_bytes())))
}

/// The session has been unused for `idle` or longer.
pub fn idle_expired(s: &Session, now: DateTime<Utc>, idle: Duration) -> bool {
    now - s.last_seen_at >= idle
}

/// The person signed in with session `token`, if that session is live: known in its tenant, not
/// idle for `idle`, not past its absolute expiry, every factor given, its user still there.
/// Any other token (an API key, garbage, an erased tenant) is `None`.
pub async fn signed_in(
    store: &dyn Store,
    token: &str,
    idle: Duration,
    now: DateTime<Utc>,
) -> Result<Option<(TenantId, User)>> {
    let Some((tenant, id)) = session_id(token) else {
        return Ok(None);
    };
    let session = match store.get_session(&tenant, &id).await {
        Ok(Some(s)) => s,
        Ok(None) | Err(StoreError::UnknownTenant(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if idle_expired(&session, now, idle) || session.expires_at <= now || !session.mfa_passed {
        return Ok(None);
    }
    Ok(store
        .get_user(&tenant, &session.user_id)
        .await?
        .map(|u| (tenant, u)))
}

/// The value of cookie `name` among `Cookie` header values.
pub fn cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A browser binding: the secret goes into the browser's cookie, the hash into the pending record.
pub struct Binding {
    pub secret: String,
    pub hash: String,
}

impl Binding {
    pub fn new() -> std::result::Result<Self, meetbot_crypto::CryptoError> {
        let secret = meetbot_crypto::random_hex(32)?;
        let hash = sha256_hex(secret.as_bytes());
        Ok(Binding { secret, hash })
    }
}

/// Whether the browser presented the binding whose hash the pending record keeps (constant time;
/// a missing cookie or an empty hash never matches).
pub fn binding_matches(presented: Option<&str>, hash: &str) -> bool {
    match presented {
        Some(p) if !hash.is_empty() => {
            meetbot_crypto::constant_time_eq(sha256_hex(p.as_bytes()).as_bytes(), hash.as_bytes())
        }
        _ => false,
    }
}

/// The cookie path for a callback URL: its path, or `/` when it has a character a cookie
/// attribute cannot carry.
pub fn cookie_path(callback_url: &str) -> String {
    url::Url::parse(callback_url)
        .ok()
        .map(|u| u.path().to_string())
        .filter(|p| p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic() && b != b';'))
        .unwrap_or_else(|| "/".into())
}

/// The name a binding cookie has on the wire: with `Secure`, the `__Host-` prefixed name
/// (`__Host-meetbot_oauth`), which browsers accept only from a secure origin, with `Path=/` and
/// no `Domain`, so a sibling subdomain cannot plant one (cookie tossing); the plain name only
/// without `Secure` (plain http on one machine). Read the cookie by this name too.
pub fn binding_cookie_name(name: &str, secure: bool) -> String {
    if secure {
        format!("__Host-{name}")
    } else {
        name.to_string()
    }
}

/// `Set-Cookie` value carrying a binding: HttpOnly, SameSite=Lax (the provider sends the browser
/// back with a cross-site top-level GET, which Strict would strip), 10 minutes. With `secure`:
/// `Secure`, the `__Host-` name and `Path=/` (the prefix requires it); without: sent only to
/// `path`.
pub fn binding_cookie(name: &str, secret: &str, path: &str, secure: bool) -> String {
    let (name, path, flag) = wire(name, path, secure);
    format!(
        "{name}={secret}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={BINDING_TTL_SECONDS}{flag}"
    )
}

/// `Set-Cookie` value removing a binding cookie once its flow is over (the same name and path
/// it was set with).
pub fn clear_binding_cookie(name: &str, path: &str, secure: bool) -> String {
    let (name, path, flag) = wire(name, path, secure);
    format!("{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0{flag}")
}

fn wire<'a>(name: &str, path: &'a str, secure: bool) -> (String, &'a str, &'static str) {
    if secure {
        (binding_cookie_name(name, true), "/", "; Secure")
    } else {
        (name.to_string(), path, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_matches_only_its_own_secret() {
        let a = Binding::new().unwrap();
        let b = Binding::new().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(binding_matches(Some(&a.secret), &a.hash));
        assert!(!binding_matches(Some(&b.secret), &a.hash));
        assert!(!binding_matches(None, &a.hash));
        assert!(!binding_matches(Some(""), ""));
        assert!(!binding_matches(Some(&a.secret), ""));
        // The hash itself is no key.
        assert!(!binding_matches(Some(&a.hash), &a.hash));
    }

    #[test]
    fn session_tokens_parse_to_their_tenant_and_hash_and_nothing_else_does() {
        let secret = "a".repeat(64);
        let (t, id) = session_id(&format!("mbs_tenant01_{secret}")).unwrap();
        assert_eq!(t.to_string(), "tenant01");
        assert_eq!(id, sha256_hex(secret.as_bytes()));
        for bad in [
            String::new(),
            format!("mbk_tenant01_{secret}"),
            format!("mbs_tenant01_{}", "A".repeat(64)),
            format!("mbs_tenant01_{secret}_x"),
            "mbs_tenant01_abc".into(),
        ] {
            assert!(session_id(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let h = ["a=1; meetbot_sessionx=2", "meetbot_session=tok; b=3"];
        assert_eq!(cookie(h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(h, "b"), Some("3"));
        assert_eq!(cookie(h, "c"), None);
    }

    #[test]
    fn binding_cookies_are_http_only_lax_short_lived_and_narrow() {
        let path = cookie_path("https://meetbot.example/oauth/callback?x=1");
        assert_eq!(path, "/oauth/callback");
        let c = binding_cookie(OAUTH_BINDING_COOKIE, "s3cret", &path, false);
        assert_eq!(
            c,
            "meetbot_oauth=s3cret; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age=600"
        );
        assert!(clear_binding_cookie("n", "/p", false).contains("Max-Age=0"));
        assert_eq!(cookie_path("not a url"), "/");
    }

    #[test]
    fn a_sibling_subdomain_cannot_plant_a_secure_binding_cookie_as_it_is_host_prefixed() {
        for (name, wire) in [
            (OAUTH_BINDING_COOKIE, "__Host-meetbot_oauth"),
            (SIGNIN_BINDING_COOKIE, "__Host-meetbot_signin"),
        ] {
            assert_eq!(binding_cookie_name(name, true), wire);
            // What the __Host- prefix demands: Secure, Path=/, no Domain.
            assert_eq!(
                binding_cookie(name, "s3cret", "/oauth/callback", true),
                format!("{wire}=s3cret; Path=/; HttpOnly; SameSite=Lax; Max-Age=600; Secure")
            );
            assert_eq!(
                clear_binding_cookie(name, "/oauth/callback", true),
                format!("{wire}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure")
            );
            // The callback reads only the prefixed name: a plain one (which any sibling
            // subdomain can set with Domain=) is not a binding.
            let planted = [format!("{name}=planted")];
            assert_eq!(
                cookie(
                    planted.iter().map(String::as_str),
                    &binding_cookie_name(name, true)
                ),
                None
            );
            let real = [format!("{name}=planted; {wire}=mine")];
            assert_eq!(
                cookie(
                    real.iter().map(String::as_str),
                    &binding_cookie_name(name, true)
                ),
                Some("mine")
            );
            // Without Secure (plain http on one machine): the plain name.
            assert_eq!(binding_cookie_name(name, false), name);
        }
    }
}

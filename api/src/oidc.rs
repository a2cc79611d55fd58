//! Sign-in with OpenID Connect (the openidconnect crate): authorization code with PKCE (S256),
//! `state` and `nonce`; the ID token's signature (the provider's JWKS), issuer, audience, expiry
//! and nonce are checked before anything is trusted.
//!
//! `state` is `<tenant>.<random>`: the random part names the pending sign-in, stored (nonce and
//! PKCE verifier sealed) in that tenant's database and taken once. The sign-in is bound to the
//! browser that began it: [`Oidc::begin`] returns a fresh secret for an HttpOnly cookie scoped to
//! the callback, the pending record keeps its SHA-256, and [`Oidc::finish`] refuses a callback
//! that does not bring it (login CSRF: a captured callback URL opened in another browser).

use crate::error::{ApiError, ApiResult};
use meetbot_calendar_sync::oauth::OAuthHttp;
use meetbot_core::TenantId;
use meetbot_core::model::SignInPending;
use meetbot_store::vault::Tenants;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use std::collections::BTreeMap;
use tokio::sync::RwLock;
use url::Url;

const PENDING_TTL: chrono::Duration = chrono::Duration::minutes(10);

type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

pub struct Provider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    metadata: RwLock<Option<CoreProviderMetadata>>,
}

impl Provider {
    pub fn new(issuer: &str, client_id: &str, client_secret: Option<String>) -> Self {
        Provider {
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            metadata: RwLock::new(None),
        }
    }
}

/// Who the provider says signed in.
#[derive(Debug)]
pub struct Identity {
    pub tenant: TenantId,
    pub issuer: String,
    pub subject: String,
    pub email: String,
}

pub struct Oidc {
    providers: BTreeMap<String, Provider>,
    http: OAuthHttp,
    redirect: RedirectUrl,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("{what}: {e}"))
}

impl Oidc {
    /// `redirect` is this API's `/v1/auth/callback` as browsers reach it.
    pub fn new(http: OAuthHttp, redirect: &str) -> ApiResult<Self> {
        Ok(Oidc {
            providers: BTreeMap::new(),
            http,
            redirect: RedirectUrl::new(redirect.to_string())
                .map_err(|e| ApiError::Internal(format!("redirect URL: {e}")))?,
        })
    }

    pub fn with(mut self, name: &str, p: Provider) -> Self {
        self.providers.insert(name.to_string(), p);
        self
    }

    pub fn names(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    /// The configured providers' issuers (what a tenant may name in `allowed_issuers`).
    pub fn issuers(&self) -> Vec<String> {
        self.providers.values().map(|p| p.issuer.clone()).collect()
    }

    /// The configured providers as (name, issuer), by name.
    pub fn offered(&self) -> Vec<(String, String)> {
        self.providers
            .iter()
            .map(|(n, p)| (n.clone(), p.issuer.clone()))
            .collect()
    }

    async fn client(&self, name: &str) -> ApiResult<Rp> {
        let p = self
            .providers
            .get(name)
            .ok_or(ApiError::NotFound("sign-in provider"))?;
        let cached = p.metadata.read().await.clone();
        let metadata = match cached {
            Some(m) => m,
            None => {
                let issuer = IssuerUrl::new(p.issuer.clone())
                    .map_err(|e| ApiError::Internal(format!("issuer URL: {e}")))?;
                let m = CoreProviderMetadata::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| unavailable("the sign-in provider's discovery failed", e))?;
                *p.metadata.write().await = Some(m.clone());
                m
            }
        };
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            p.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone()))
    }

    /// The path of the sign-in callback as browsers reach it: the binding cookie's `Path`.
    pub fn cookie_path(&self) -> String {
        meetbot_store::browser::cookie_path(self.redirect.as_str())
    }

    /// Starts a sign-in to `tenant` with `provider`: the URL to send the browser to, and the
    /// binding secret to set as that browser's cookie (never elsewhere).
    pub async fn begin(
        &self,
        tenants: &Tenants,
        tenant: &TenantId,
        provider: &str,
        login_hint: Option<&str>,
    ) -> ApiResult<(Url, String)> {
        let client = self.client(provider).await?;
        let vault = tenants.vault(tenant).await.map_err(|e| match e {
            meetbot_store::vault::VaultError::UnknownTenant(_)
            | meetbot_store::vault::VaultError::Store(meetbot_store::StoreError::UnknownTenant(
                _,
            )) => ApiError::NotFound("tenant"),
            other => other.into(),
        })?;
        let id = meetbot_crypto::random_hex(24).map_err(|e| ApiError::Internal(e.to_string()))?;
        let binding = meetbot_store::browser::Binding::new()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let state = format!("{tenant}.{id}");
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if let Some(h) = login_hint {
            req = req.add_extra_param("login_hint", h.to_string());
        }
        let (url, _, nonce) = req.url();
        let now = chrono::Utc::now();
        let pending = SignInPending {
            id: id.clone(),
            provider: provider.to_string(),
            nonce: vault.seal::<SignInPending>(&id, "nonce", nonce.secret().as_bytes())?,
            pkce_verifier: vault.seal::<SignInPending>(
                &id,
                "pkce_verifier",
                verifier.secret().as_bytes(),
            )?,
            browser_hash: binding.hash,
            created_at: now,
            expires_at: now + PENDING_TTL,
        };
        tenants.store().put_signin_pending(tenant, &pending).await?;
        Ok((url, binding.secret))
    }

    /// Completes a sign-in from the callback's `state` and `code`, in the browser that presents
    /// `binding` (its binding cookie).
    pub async fn finish(
        &self,
        tenants: &Tenants,
        state: &str,
        code: &str,
        binding: Option<&str>,
    ) -> ApiResult<Identity> {
        let stale = || {
            ApiError::BadRequest(
                "this sign-in is unknown, used or expired: start again at /v1/auth/{provider}/login"
                    .into(),
            )
        };
        let (tenant, id) = state.split_once('.').ok_or_else(stale)?;
        let tenant: TenantId = tenant.parse().map_err(|_| stale())?;
        let pending = match tenants.store().take_signin_pending(&tenant, id).await {
            Ok(Some(p)) => p,
            Ok(None) | Err(meetbot_store::StoreError::UnknownTenant(_)) => return Err(stale()),
            Err(e) => return Err(e.into()),
        };
        // Taken above either way: a leaked callback URL is dead after one try.
        if !meetbot_store::browser::binding_matches(binding, &pending.browser_hash) {
            tracing::warn!(tenant = %tenant, "sign-in finished in a browser that did not begin it; refused");
            return Err(stale());
        }
        let vault = tenants.vault(&tenant).await?;
        let nonce = Nonce::new(vault.open_string::<SignInPending>(id, "nonce", &pending.nonce)?);
        let verifier = PkceCodeVerifier::new(vault.open_string::<SignInPending>(
            id,
            "pkce_verifier",
            &pending.pkce_verifier,
        )?);
        let client = self.client(&pending.provider).await?;
        let refused = |what: &str| ApiError::Unauthorized(format!("sign-in refused: {what}"));
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| ApiError::Internal(format!("token endpoint: {e}")))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    refused(&format!("the provider answered {}", r.error()))
                }
                other => unavailable("the sign-in provider's token endpoint", other),
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| refused("the provider returned no ID token"))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|e| refused(&format!("the ID token is not valid ({e})")))?;
        // Absent counts as unverified: an address the provider did not vouch for could be
        // anyone's (an identity provider's admin can mint any address).
        if claims.email_verified() != Some(true) {
            return Err(refused(
                "the provider has not verified the account's email address",
            ));
        }
        let email = claims
            .email()
            .map(|e| e.as_str().to_string())
            .ok_or_else(|| refused("the ID token carries no email address"))?;
        Ok(Identity {
            tenant,
            issuer: claims.issuer().as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            email,
        })
    }
}

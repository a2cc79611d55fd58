//! OAuth 2.0 for calendar connections (oauth2 crate): authorization code with PKCE (S256) and a
//! single-use `state`, calendar scopes only, tokens sealed with the tenant key, refresh before
//! expiry, `invalid_grant` turned into "needs re-consent", and revocation on disconnect.
//!
//! Flow: [`OAuth::begin`] stores an [`OAuthPending`] (the PKCE verifier sealed, the SHA-256 of a
//! fresh browser binding secret) under the random part of `state` = `<tenant>.<nonce>` and
//! returns the provider's authorization URL and the binding, which the API sets as an HttpOnly
//! cookie in the browser that asked; the provider redirects the browser to
//! `/oauth/callback?code&state`, where [`OAuth::finish`] takes the pending record (once: a
//! replayed or expired `state` is refused), refuses unless that browser presents the binding
//! cookie and a live meetbot session of the user who began (no code is exchanged otherwise),
//! exchanges the code with the verifier and checks the granted scopes;
//! [`OAuth::store_connection`] seals and stores the tokens as a [`CalendarConnection`].
//!
//! HTTP goes through reqwest 0.13 (the workspace's one TLS stack) via [`OAuthHttp`], which never
//! follows redirects (the oauth2 crate's advice against SSRF).

use chrono::{DateTime, Duration as CDuration, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{
    AuditEvent, CalendarConnection, CalendarProvider, ConnectionStatus, OAuthPending,
};
use meetbot_store::StoreError;
use meetbot_store::browser::{Binding, binding_matches, cookie_path, signed_in};
use meetbot_store::vault::{Tenants, VaultError};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, RevocationUrl, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use url::Url;

pub const GOOGLE_CALENDAR_EVENTS_READONLY: &str =
    "https://www.googleapis.com/auth/calendar.events.readonly";
pub const GOOGLE_CALENDAR_EVENTS: &str = "https://www.googleapis.com/auth/calendar.events";
pub const MICROSOFT_CALENDARS_READ: &str = "https://graph.microsoft.com/Calendars.Read";
pub const MICROSOFT_CALENDARS_READWRITE: &str = "https://graph.microsoft.com/Calendars.ReadWrite";
/// Microsoft's scope for a refresh token (not a data scope).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The only scopes a connection may ask for: calendar events (read, or read-write) and, for
/// Microsoft, `offline_access`.
pub fn allowed_scopes(provider: CalendarProvider) -> &'static [&'static str] {
    match provider {
        CalendarProvider::Google => &[GOOGLE_CALENDAR_EVENTS_READONLY, GOOGLE_CALENDAR_EVENTS],
        CalendarProvider::Microsoft => &[
            MICROSOFT_CALENDARS_READ,
            MICROSOFT_CALENDARS_READWRITE,
            OFFLINE_ACCESS,
        ],
        CalendarProvider::Ics => &[],
    }
}

/// How long a user has between being sent to the provider and coming back.
pub const PENDING_TTL: CDuration = CDuration::minutes(10);

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "OAuth for {0:?} calendars is not configured: set calendar.google_oauth or calendar.microsoft_oauth"
    )]
    NotConfigured(CalendarProvider),
    #[error("OAuth settings invalid: {0}")]
    Config(String),
    #[error("the authorization response's state is malformed: start connecting the calendar again")]
    BadState,
    #[error(
        "this authorization was already used or has expired (10 min): start connecting the calendar again"
    )]
    UnknownState,
    #[error(
        "this authorization was not started in this browser by the signed-in person, or has expired: sign in to meetbot and start connecting the calendar again"
    )]
    NotBound,
    #[error("the user or the provider declined the authorization ({0})")]
    Denied(String),
    #[error("the provider did not grant {0}: connect again and allow calendar access")]
    ScopeNotGranted(String),
    #[error("the provider did not return a refresh token: connect again (consent must be given)")]
    NoRefreshToken,
    #[error(
        "the provider refused the refresh token (invalid_grant): the user must connect the calendar again"
    )]
    ReconsentRequired,
    #[error("the calendar connection {0} is not active ({1:?})")]
    NotActive(String, ConnectionStatus),
    #[error("the provider's token endpoint refused: {0}")]
    Provider(String),
    #[error("cannot reach the provider's token endpoint: {0}")]
    Http(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("calendar connection {0} not found")]
    NoConnection(String),
}

/// One provider's OAuth client registration and endpoints.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub auth_url: String,
    pub token_url: String,
    /// RFC 7009 endpoint (https only); Microsoft's identity platform has none.
    pub revocation_url: Option<String>,
    /// Our `/oauth/callback`, as registered with the provider.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// Extra authorization parameters (Google: `access_type=offline`, `prompt=consent`).
    pub extra_params: Vec<(String, String)>,
}

impl ProviderSettings {
    /// Google's endpoints, read-only calendar events.
    pub fn google(
        client_id: &str,
        client_secret: Option<SecretString>,
        redirect_url: &str,
    ) -> Self {
        ProviderSettings {
            client_id: client_id.into(),
            client_secret,
            auth_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            revocation_url: Some("https://oauth2.googleapis.com/revoke".into()),
            redirect_url: redirect_url.into(),
            scopes: vec![GOOGLE_CALENDAR_EVENTS_READONLY.into()],
            extra_params: vec![
                ("access_type".into(), "offline".into()),
                ("prompt".into(), "consent".into()),
                ("include_granted_scopes".into(), "false".into()),
            ],
        }
    }

    /// Microsoft identity platform v2.0 endpoints for `directory` (`common`, `organizations`
    /// or a tenant id), Calendars.Read + offline_access.
    pub fn microsoft(
        directory: &str,
        client_id: &str,
        client_secret: Option<SecretString>,
        redirect_url: &str,
    ) -> Self {
        let base = format!("https://login.microsoftonline.com/{directory}/oauth2/v2.0");
        ProviderSettings {
            client_id: client_id.into(),
            client_secret,
            auth_url: format!("{base}/authorize"),
            token_url: format!("{base}/token"),
            revocation_url: None,
            redirect_url: redirect_url.into(),
            scopes: vec![MICROSOFT_CALENDARS_READ.into(), OFFLINE_ACCESS.into()],
            extra_params: vec![],
        }
    }

    fn validate(&self, provider: CalendarProvider) -> Result<(), OAuthError> {
        let allowed = allowed_scopes(provider);
        if let Some(s) = self.scopes.iter().find(|s| !allowed.contains(&s.as_str())) {
            return Err(OAuthError::Config(format!(
                "scope {s:?} is not a calendar scope; allowed: {}",
                allowed.join(", ")
            )));
        }
        if !self.scopes.iter().any(|s| s != OFFLINE_ACCESS) {
            return Err(OAuthError::Config("no calendar scope configured".into()));
        }
        if self.client_id.is_empty() {
            return Err(OAuthError::Config("client_id is empty".into()));
        }
        for (name, u) in [
            ("auth_url", Some(&self.auth_url)),
            ("token_url", Some(&self.token_url)),
            ("revocation_url", self.revocation_url.as_ref()),
            ("redirect_url", Some(&self.redirect_url)),
        ] {
            if let Some(u) = u {
                Url::parse(u).map_err(|e| OAuthError::Config(format!("{name} {u:?}: {e}")))?;
            }
        }
        Ok(())
    }
}

type Client =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointSet>;

/// The oauth2 crate's async HTTP client over reqwest 0.13, never following redirects.
#[derive(Clone)]
pub struct OAuthHttp(reqwest::Client);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OAuthHttpError(String);

impl OAuthHttp {
    /// `builder` carries the TLS roots (e.g. a private CA); redirects are switched off here.
    pub fn new(builder: reqwest::ClientBuilder) -> Result<Self, OAuthError> {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map(OAuthHttp)
            .map_err(|e| OAuthError::Http(e.to_string()))
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = OAuthHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, OAuthHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let resp = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| OAuthHttpError(e.without_url().to_string()))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| OAuthHttpError(e.without_url().to_string()))?;
            let mut out = http::Response::new(body.to_vec());
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

/// Tokens from a completed authorization.
pub struct Granted {
    pub tenant: TenantId,
    pub user_id: String,
    pub provider: CalendarProvider,
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
}

/// What the browser finishing a consent presents: its cookies.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// The binding cookie ([`meetbot_store::browser::OAUTH_BINDING_COOKIE`]) set when it began.
    pub binding: Option<&'a str>,
    /// The meetbot session token (the `meetbot_session` cookie).
    pub session: Option<&'a str>,
}

/// A begun consent: where to send the browser, and the binding that browser must bring back.
pub struct Begun {
    pub url: Url,
    /// The secret for the binding cookie of the browser that began (never logged).
    pub binding: SecretString,
    /// The callback's path, the binding cookie's `Path`.
    pub cookie_path: String,
}

/// What a disconnect did at the provider.
#[derive(Debug, PartialEq, Eq)]
pub enum Revocation {
    /// The provider's revocation endpoint accepted the token.
    Revoked,
    /// The provider has no revocation endpoint (Microsoft): the tokens were only erased here.
    Unsupported,
}

pub struct OAuth {
    tenants: Arc<Tenants>,
    http: OAuthHttp,
    google: Option<ProviderSettings>,
    microsoft: Option<ProviderSettings>,
    /// Refresh when the access token has less than this left.
    pub refresh_before: CDuration,
    /// A session unused this long no longer finishes a consent (the API's `session_idle`).
    pub session_idle: CDuration,
}

fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

impl OAuth {
    pub fn new(tenants: Arc<Tenants>, http: OAuthHttp) -> Self {
        OAuth {
            tenants,
            http,
            google: None,
            microsoft: None,
            refresh_before: CDuration::minutes(5),
            session_idle: CDuration::minutes(30),
        }
    }

    pub fn with_provider(
        mut self,
        provider: CalendarProvider,
        settings: ProviderSettings,
    ) -> Result<Self, OAuthError> {
        settings.validate(provider)?;
        match provider {
            CalendarProvider::Google => self.google = Some(settings),
            CalendarProvider::Microsoft => self.microsoft = Some(settings),
            CalendarProvider::Ics => return Err(OAuthError::NotConfigured(provider)),
        }
        Ok(self)
    }

    pub fn configured(&self, provider: CalendarProvider) -> bool {
        self.settings(provider).is_ok()
    }

    fn settings(&self, provider: CalendarProvider) -> Result<&ProviderSettings, OAuthError> {
        match provider {
            CalendarProvider::Google => self.google.as_ref(),
            CalendarProvider::Microsoft => self.microsoft.as_ref(),
            CalendarProvider::Ics => None,
        }
        .ok_or(OAuthError::NotConfigured(provider))
    }

    fn client(
        &self,
        provider: CalendarProvider,
    ) -> Result<(Client, &ProviderSettings), OAuthError> {
        let s = self.settings(provider)?;
        let bad = |what: &str, e: url::ParseError| OAuthError::Config(format!("{what}: {e}"));
        let revocation = match &s.revocation_url {
            Some(u) => Some(RevocationUrl::new(u.clone()).map_err(|e| bad("revocation_url", e))?),
            None => None,
        };
        let mut c = BasicClient::new(ClientId::new(s.client_id.clone()))
            .set_auth_uri(AuthUrl::new(s.auth_url.clone()).map_err(|e| bad("auth_url", e))?)
            .set_token_uri(TokenUrl::new(s.token_url.clone()).map_err(|e| bad("token_url", e))?)
            .set_revocation_url_option(revocation)
            .set_redirect_uri(
                RedirectUrl::new(s.redirect_url.clone()).map_err(|e| bad("redirect_url", e))?,
            )
            // Google and Microsoft both take the client credentials in the form body.
            .set_auth_type(AuthType::RequestBody);
        if let Some(cs) = &s.client_secret {
            c = c.set_client_secret(ClientSecret::new(cs.expose_secret().to_string()));
        }
        Ok((c, s))
    }

    /// Starts connecting `user_id`'s calendar: the URL to send the user's browser to, and the
    /// binding that same browser must carry back (set it as a cookie there, never elsewhere).
    pub async fn begin(
        &self,
        tenant: &TenantId,
        user_id: &str,
        provider: CalendarProvider,
    ) -> Result<Begun, OAuthError> {
        let (client, s) = self.client(provider)?;
        let vault = self.tenants.vault(tenant).await?;
        let nonce = meetbot_crypto::random_hex(24).map_err(|e| OAuthError::Vault(e.into()))?;
        let binding = Binding::new().map_err(|e| OAuthError::Vault(e.into()))?;
        let state = format!("{tenant}.{nonce}");
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let now = Utc::now();
        let pending = OAuthPending {
            id: nonce.clone(),
            user_id: user_id.to_string(),
            provider,
            pkce_verifier: vault.seal::<OAuthPending>(
                &nonce,
                "pkce_verifier",
                verifier.secret().as_bytes(),
            )?,
            browser_hash: binding.hash,
            created_at: now,
            expires_at: now + PENDING_TTL,
        };
        self.tenants
            .store()
            .put_oauth_pending(tenant, &pending)
            .await?;
        let mut req = client
            .authorize_url(|| CsrfToken::new(state))
            .set_pkce_challenge(challenge)
            .add_scopes(s.scopes.iter().cloned().map(Scope::new));
        for (k, v) in &s.extra_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        Ok(Begun {
            url: req.url().0,
            binding: secret(binding.secret),
            cookie_path: cookie_path(&s.redirect_url),
        })
    }

    /// Whether the browser finishing `pending` is the one that began it (its binding cookie)
    /// and is signed in to the same tenant as the same person.
    async fn bound(
        &self,
        tenant: &TenantId,
        pending: &OAuthPending,
        presented: Presented<'_>,
    ) -> Result<bool, OAuthError> {
        if !binding_matches(presented.binding, &pending.browser_hash) {
            return Ok(false);
        }
        let Some(token) = presented.session else {
            return Ok(false);
        };
        let store = self.tenants.store();
        let who = signed_in(&**store, token, self.session_idle, Utc::now()).await?;
        Ok(who.is_some_and(|(t, u)| t == *tenant && u.id == pending.user_id))
    }

    /// Completes an authorization from the callback's query (`code` and `state`, or `error`) and
    /// the cookies of the browser that brought it.
    pub async fn finish(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
        presented: Presented<'_>,
    ) -> Result<Granted, OAuthError> {
        let (tenant, nonce) = state.split_once('.').ok_or(OAuthError::BadState)?;
        let tenant: TenantId = tenant.parse().map_err(|_| OAuthError::BadState)?;
        if nonce.len() != 48 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(OAuthError::BadState);
        }
        let store = self.tenants.store();
        let pending = match store.take_oauth_pending(&tenant, nonce).await {
            Ok(Some(p)) => p,
            Ok(None) | Err(StoreError::UnknownTenant(_)) => return Err(OAuthError::UnknownState),
            Err(e) => return Err(e.into()),
        };
        // Taken above either way: a state that leaked is dead after one try.
        if !self.bound(&tenant, &pending, presented).await? {
            tracing::warn!(tenant = %tenant, "calendar consent finished outside the browser or session that began it; refused");
            return Err(OAuthError::NotBound);
        }
        if let Some(e) = error {
            let e: String = e
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(OAuthError::Denied(e));
        }
        let code = code.ok_or_else(|| OAuthError::Denied("no code".into()))?;
        let vault = self.tenants.vault(&tenant).await?;
        let verifier = vault.open_string::<OAuthPending>(
            &pending.id,
            "pkce_verifier",
            &pending.pkce_verifier,
        )?;
        let (client, s) = self.client(pending.provider)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let scopes: Vec<String> = match tokens.scopes() {
            Some(granted) => granted.iter().map(|s| s.to_string()).collect(),
            None => s.scopes.clone(),
        };
        // A user may untick a scope on the consent screen (Google's granular consent).
        if let Some(missing) = s
            .scopes
            .iter()
            .filter(|x| x.as_str() != OFFLINE_ACCESS)
            .find(|x| {
                !scopes
                    .iter()
                    .any(|g| g == *x || x.ends_with(&format!("/{g}")))
            })
        {
            return Err(OAuthError::ScopeNotGranted(missing.clone()));
        }
        let refresh_token = tokens
            .refresh_token()
            .map(|r| secret(r.secret().to_string()));
        if refresh_token.is_none() {
            return Err(OAuthError::NoRefreshToken);
        }
        Ok(Granted {
            tenant,
            user_id: pending.user_id,
            provider: pending.provider,
            access_token: secret(tokens.access_token().secret().to_string()),
            refresh_token,
            expires_at: expiry(tokens.expires_in()),
            scopes,
        })
    }

    /// Stores a new connection for `granted`, its tokens and the account's address sealed, in
    /// `status` (`Active`, or `AwaitingApproval` when the account is not the user's own address).
    pub async fn store_connection(
        &self,
        granted: &Granted,
        account_email: &str,
        status: ConnectionStatus,
    ) -> Result<CalendarConnection, OAuthError> {
        let t = &granted.tenant;
        let vault = self.tenants.vault(t).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = Utc::now();
        let seal =
            |field: &str, v: &str| vault.seal::<CalendarConnection>(&id, field, v.as_bytes());
        let conn = CalendarConnection {
            id: id.clone(),
            user_id: granted.user_id.clone(),
            provider: granted.provider,
            account_email: seal("account_email", account_email)?,
            access_token: seal("access_token", granted.access_token.expose_secret())?,
            refresh_token: match &granted.refresh_token {
                Some(r) => Some(seal("refresh_token", r.expose_secret())?),
                None => None,
            },
            scopes: granted.scopes.clone(),
            access_expires_at: granted.expires_at,
            status,
            sync_cursor: None,
            push: None,
            last_sync: None,
            created_at: now,
            updated_at: now,
        };
        self.tenants.store().put_connection(t, &conn).await?;
        let action = match status {
            ConnectionStatus::AwaitingApproval => "calendar.awaiting_approval",
            _ => "calendar.connected",
        };
        self.audit(t, &granted.user_id, action, &id).await?;
        Ok(conn)
    }

    async fn audit(
        &self,
        t: &TenantId,
        actor: &str,
        action: &str,
        target: &str,
    ) -> Result<(), OAuthError> {
        let e = AuditEvent::new(actor, action, target);
        self.tenants.store().append_audit(t, &e).await?;
        Ok(())
    }

    /// The connection's access token, refreshed first when it expires within `refresh_before`
    /// (or `force`). A refused refresh token (`invalid_grant`) marks the connection
    /// `NeedsReconsent`, records it in the audit log and returns [`OAuthError::ReconsentRequired`].
    pub async fn access_token(
        &self,
        t: &TenantId,
        connection_id: &str,
        force: bool,
    ) -> Result<SecretString, OAuthError> {
        let store = self.tenants.store();
        let mut conn = store
            .get_connection(t, connection_id)
            .await?
            .ok_or_else(|| OAuthError::NoConnection(connection_id.into()))?;
        if conn.status != ConnectionStatus::Active {
            return Err(OAuthError::NotActive(conn.id, conn.status));
        }
        let vault = self.tenants.vault(t).await?;
        let due = force
            || conn
                .access_expires_at
                .is_some_and(|e| e <= Utc::now() + self.refresh_before);
        if !due || conn.refresh_token.is_none() || !self.configured(conn.provider) {
            return Ok(secret(vault.open_string::<CalendarConnection>(
                &conn.id,
                "access_token",
                &conn.access_token,
            )?));
        }
        let sealed_refresh = conn
            .refresh_token
            .clone()
            .ok_or(OAuthError::NoRefreshToken)?;
        let refresh = RefreshToken::new(vault.open_string::<CalendarConnection>(
            &conn.id,
            "refresh_token",
            &sealed_refresh,
        )?);
        let (client, _) = self.client(conn.provider)?;
        let tokens = match client
            .exchange_refresh_token(&refresh)
            .request_async(&self.http)
            .await
        {
            Ok(t) => t,
            Err(RequestTokenError::ServerResponse(e))
                if *e.error() == BasicErrorResponseType::InvalidGrant =>
            {
                conn.status = ConnectionStatus::NeedsReconsent;
                conn.updated_at = Utc::now();
                store.put_connection(t, &conn).await?;
                self.audit(t, &conn.user_id, "calendar.reconsent_required", &conn.id)
                    .await?;
                tracing::warn!(tenant = %t, connection = %conn.id, "refresh token refused (invalid_grant); connection needs re-consent");
                return Err(OAuthError::ReconsentRequired);
            }
            Err(e) => return Err(token_error(e)),
        };
        let access = tokens.access_token().secret().to_string();
        conn.access_token =
            vault.seal::<CalendarConnection>(&conn.id, "access_token", access.as_bytes())?;
        // Providers that rotate refresh tokens (Microsoft, oidc-provider) send a new one; Google
        // keeps the old one valid and sends none.
        if let Some(r) = tokens.refresh_token() {
            conn.refresh_token = Some(vault.seal::<CalendarConnection>(
                &conn.id,
                "refresh_token",
                r.secret().as_bytes(),
            )?);
        }
        conn.access_expires_at = expiry(tokens.expires_in());
        conn.updated_at = Utc::now();
        store.put_connection(t, &conn).await?;
        tracing::debug!(tenant = %t, connection = %conn.id, "access token refreshed");
        Ok(secret(access))
    }

    /// Disconnect: revokes the refresh token at the provider (where it has an endpoint), erases
    /// both tokens from the store and marks the connection `Disconnected`.
    pub async fn revoke(
        &self,
        t: &TenantId,
        connection_id: &str,
        actor: &str,
    ) -> Result<Revocation, OAuthError> {
        let store = self.tenants.store();
        let mut conn = store
            .get_connection(t, connection_id)
            .await?
            .ok_or_else(|| OAuthError::NoConnection(connection_id.into()))?;
        let vault = self.tenants.vault(t).await?;
        let mut outcome = Revocation::Unsupported;
        if let Ok((client, s)) = self.client(conn.provider)
            && s.revocation_url.is_some()
        {
            let token: StandardRevocableToken = match &conn.refresh_token {
                Some(r) => RefreshToken::new(vault.open_string::<CalendarConnection>(
                    &conn.id,
                    "refresh_token",
                    r,
                )?)
                .into(),
                None => oauth2::AccessToken::new(vault.open_string::<CalendarConnection>(
                    &conn.id,
                    "access_token",
                    &conn.access_token,
                )?)
                .into(),
            };
            client
                .revoke_token(token)
                .map_err(|e| OAuthError::Config(e.to_string()))?
                .request_async(&self.http)
                .await
                .map_err(|e| OAuthError::Provider(describe(&e)))?;
            outcome = Revocation::Revoked;
        }
        conn.access_token = vault.seal::<CalendarConnection>(&conn.id, "access_token", b"")?;
        conn.refresh_token = None;
        conn.access_expires_at = None;
        conn.sync_cursor = None;
        conn.push = None;
        conn.status = ConnectionStatus::Disconnected;
        conn.updated_at = Utc::now();
        store.put_connection(t, &conn).await?;
        self.audit(t, actor, "calendar.disconnected", &conn.id)
            .await?;
        Ok(outcome)
    }
}

fn expiry(expires_in: Option<std::time::Duration>) -> Option<DateTime<Utc>> {
    expires_in
        .and_then(|d| CDuration::from_std(d).ok())
        .map(|d| Utc::now() + d)
}

fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: &RequestTokenError<RE, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => r.to_string(),
        RequestTokenError::Request(r) => format!("request failed: {r}"),
        RequestTokenError::Parse(p, _) => format!("unreadable response: {p}"),
        RequestTokenError::Other(o) => o.clone(),
    }
}

fn token_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: RequestTokenError<RE, T>,
) -> OAuthError {
    match &e {
        RequestTokenError::Request(_) => OAuthError::Http(describe(&e)),
        _ => OAuthError::Provider(describe(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_calendar_scopes_are_refused_by_configuration() {
        let mut s = ProviderSettings::google("id", None, "https://meetbot.example/oauth/callback");
        assert!(s.validate(CalendarProvider::Google).is_ok());
        s.scopes
            .push("https://www.googleapis.com/auth/gmail.readonly".into());
        let e = s.validate(CalendarProvider::Google).unwrap_err();
        assert!(e.to_string().contains("gmail.readonly"), "{e}");
        let mut m = ProviderSettings::microsoft("common", "id", None, "https://x.example/cb");
        assert!(m.validate(CalendarProvider::Microsoft).is_ok());
        m.scopes = vec![OFFLINE_ACCESS.into()];
        assert!(m.validate(CalendarProvider::Microsoft).is_err());
        m.scopes = vec!["Mail.Read".into()];
        assert!(m.validate(CalendarProvider::Microsoft).is_err());
    }

    #[test]
    fn microsoft_endpoints_use_the_configured_directory() {
        let m = ProviderSettings::microsoft("contoso.example", "id", None, "https://x.example/cb");
        assert_eq!(
            m.token_url,
            "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token"
        );
        assert!(m.revocation_url.is_none());
    }
}

//! OAuth 2.0 end to end against a real OpenID provider (node-oidc-provider over HTTPS): the user's
//! browser goes from `OAuth::begin`'s URL through the provider's login and consent to the
//! calendar-sync `/oauth/callback`, which exchanges the code (PKCE), reads the account's address
//! from the calendar API stand-in (which checks tokens by introspection at the same provider),
//! stores the sealed tokens and runs the first sync. Then: refresh before expiry with refresh
//! token rotation, `invalid_grant` -> needs re-consent, disconnect with revocation; and the
//! refusals: declined consent, forged, malformed and replayed `state`, a request without PKCE.
//!
//! Consents begin as users begin them, through the real API (`POST /v1/calendars`) in a browser
//! signed in to meetbot (a cookie jar), on the same loopback host as the callback (cookies ignore
//! ports, as the API and `/oauth/callback` share one public host in production). The attacks:
//! a consent URL finished in another browser or by another person, and an account that is not
//! the user's own address.

use chrono::{Duration as CDuration, Utc};
use meetbot_api::routes::create_user;
use meetbot_api::{Api, Settings};
use meetbot_calendar_sync::google::GoogleClient;
use meetbot_calendar_sync::graph::GraphClient;
use meetbot_calendar_sync::oauth::{
    GOOGLE_CALENDAR_EVENTS_READONLY, MICROSOFT_CALENDARS_READ, OAuth, OAuthError, OAuthHttp,
    Presented, ProviderSettings, Revocation,
};
use meetbot_calendar_sync::rules::AutoJoinRules;
use meetbot_calendar_sync::sync::SyncError;
use meetbot_calendar_sync::webhook::oauth_router;
use meetbot_calendar_sync::worker::{SyncWorker, WorkerSettings};
use meetbot_core::TenantId;
use meetbot_core::model::*;
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use meetbot_testsupport::google::GoogleStandIn;
use meetbot_testsupport::graph::GraphStandIn;
use meetbot_testsupport::oidc::{Introspector, OidcClient, OidcProvider};
use reqwest::cookie::Jar;
use std::sync::Arc;

mod common;

/// Anna's address: her meetbot user's and, unless a test says otherwise, her calendar's.
const USER: &str = "anna@lawfirm.example";

struct World {
    op: OidcProvider,
    client: OidcClient,
    _graph: GraphStandIn,
    google: GoogleStandIn,
    tenants: Arc<Tenants>,
    store: Arc<dyn Store>,
    tenant: TenantId,
    worker: Arc<SyncWorker>,
    callback: String,
    /// The API's base URL (same loopback host as the callback, another port).
    api: String,
    /// Members Anna (USER) and Ben, and an admin, Ada.
    anna: User,
    ben: User,
    ada: User,
    _dir: tempfile::TempDir,
}

async fn world(provider: CalendarProvider) -> World {
    let (tenants, store, tenant, dir) = common::embedded_tenant("Clinic").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/oauth/callback", listener.local_addr().unwrap());
    let scope = match provider {
        CalendarProvider::Google => GOOGLE_CALENDAR_EVENTS_READONLY,
        _ => MICROSOFT_CALENDARS_READ,
    };
    let client = OidcClient {
        client_id: "meetbot-test".into(),
        client_secret: meetbot_crypto::random_hex(32).unwrap(),
        redirect_uri: callback.clone(),
        scope: format!("offline_access {scope}"),
    };
    let op = OidcProvider::start(std::slice::from_ref(&client), &[scope], 600).unwrap();
    let graph = GraphStandIn::start().await;
    let google = GoogleStandIn::start().await;
    let i = Introspector::new(&op, &client);
    graph.accept_tokens_of(i.clone());
    google.accept_tokens_of(i);
    graph.set_owner(USER);
    google.set_owner(USER);
    let secret = Some(client.client_secret.clone().into());
    let mut settings = match provider {
        CalendarProvider::Google => {
            let mut s = ProviderSettings::google(&client.client_id, secret, &callback);
            s.revocation_url = Some(op.revocation_url());
            s
        }
        // Microsoft has no revocation endpoint: the default keeps none.
        _ => ProviderSettings::microsoft("common", &client.client_id, secret, &callback),
    };
    settings.auth_url = op.auth_url();
    settings.token_url = op.token_url();
    let http =
        OAuthHttp::new(reqwest::Client::builder().tls_certs_only([op.ca.certificate()])).unwrap();
    let oauth = OAuth::new(tenants.clone(), http)
        .with_provider(provider, settings)
        .unwrap();
    let worker = Arc::new(
        SyncWorker::new(
            GraphClient::new(reqwest::Client::new(), &graph.base_url()).unwrap(),
            tenants.clone(),
            AutoJoinRules::default(),
            WorkerSettings::default(),
            Default::default(),
        )
        .with_google(GoogleClient::new(&google.root_url()).unwrap())
        .with_oauth(Arc::new(oauth)),
    );
    let app = oauth_router(worker.clone(), false);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // The API, which begins consents, on the same host.
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_base = format!("http://{}", api_listener.local_addr().unwrap());
    let mut cfg = meetbot_core::config::Config::default();
    cfg.api.public_url = api_base.clone();
    cfg.api.cookie_secure = false;
    let api = Arc::new(Api {
        tenants: tenants.clone(),
        settings: Settings::from_config(&cfg),
        oidc: meetbot_api::oidc::Oidc::new(
            OAuthHttp::new(reqwest::Client::builder()).unwrap(),
            &format!("{api_base}/v1/auth/callback"),
        )
        .unwrap(),
        limits: meetbot_api::limits::Limits::new(100_000, 100_000),
        calendars: Some(worker.clone()),
        queue: None,
        sign_in_links: None,
    });
    tokio::spawn(meetbot_api::serve(
        api,
        api_listener,
        std::future::pending(),
    ));
    let anna = create_user(&*tenants, &tenant, USER, Role::Member)
        .await
        .unwrap();
    let ben = create_user(&*tenants, &tenant, "ben@lawfirm.example", Role::Member)
        .await
        .unwrap();
    let ada = create_user(&*tenants, &tenant, "ada@lawfirm.example", Role::Admin)
        .await
        .unwrap();
    World {
        op,
        _graph: graph,
        client,
        google,
        tenants,
        store,
        tenant,
        worker,
        callback,
        api: api_base,
        anna,
        ben,
        ada,
        _dir: dir,
    }
}

impl World {
    fn oauth(&self) -> &OAuth {
        self.worker.oauth().unwrap()
    }

    async fn connections(&self) -> Vec<CalendarConnection> {
        self.store.list_connections(&self.tenant).await.unwrap()
    }

    async fn open(&self, c: &CalendarConnection, field: &str) -> String {
        let v = self.tenants.vault(&self.tenant).await.unwrap();
        let sealed = match field {
            "access_token" => c.access_token.clone(),
            "refresh_token" => c.refresh_token.clone().unwrap(),
            _ => c.account_email.clone(),
        };
        v.open_string::<CalendarConnection>(&c.id, field, &sealed)
            .unwrap()
    }

    async fn active(&self, token: &str) -> bool {
        self.op.introspect(&self.client, token).await.unwrap()["active"]
            .as_bool()
            .unwrap()
    }

    /// A live meetbot session of `user` (as a sign-in makes one): its token.
    async fn session(&self, user: &User) -> String {
        let (token, id) = meetbot_api::auth::new_session_token(&self.tenant).unwrap();
        let now = Utc::now();
        let s: Session = serde_json::from_value(serde_json::json!({
            "id": id, "user_id": user.id, "created_at": now, "last_seen_at": now,
            "expires_at": now + CDuration::hours(1), "mfa_passed": true,
        }))
        .unwrap();
        self.store.put_session(&self.tenant, &s).await.unwrap();
        token
    }

    /// Signs the browser whose cookies are `jar` in to meetbot as `user` (its session cookie).
    async fn sign_in(&self, jar: &Arc<Jar>, user: &User) {
        let token = self.session(user).await;
        jar.add_cookie_str(
            &format!("meetbot_session={token}; Path=/; HttpOnly; SameSite=Lax"),
            &self.api.parse().unwrap(),
        );
    }

    /// A browser signed in to meetbot as `user`.
    async fn browser_of(&self, user: &User) -> Arc<Jar> {
        let jar = Arc::new(Jar::default());
        self.sign_in(&jar, user).await;
        jar
    }

    /// `POST /v1/calendars` in that browser (authenticated by its session cookie): the consent
    /// URL; the binding cookie the API sets stays in the jar.
    async fn start(&self, jar: &Arc<Jar>, provider: CalendarProvider) -> url::Url {
        let kind = match provider {
            CalendarProvider::Google => "google",
            _ => "microsoft",
        };
        let r = self
            .op
            .browser(jar)
            .post(format!("{}/v1/calendars", self.api))
            .json(&serde_json::json!({ "provider": kind }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        url::Url::parse(body["authorization_url"].as_str().unwrap()).unwrap()
    }

    /// Anna connects her calendar in her own signed-in browser.
    async fn connect(&self, provider: CalendarProvider) -> CalendarConnection {
        let before: Vec<String> = self.connections().await.into_iter().map(|c| c.id).collect();
        let jar = self.browser_of(&self.anna).await;
        let url = self.start(&jar, provider).await;
        let (status, body) = self.op.browse_in(&jar, url.as_str()).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Calendar connected"), "{body}");
        self.connections()
            .await
            .into_iter()
            .find(|c| !before.contains(&c.id))
            .expect("a new connection")
    }

    async fn set_expiry(&self, id: &str, at: chrono::DateTime<Utc>) {
        let mut c = self
            .store
            .get_connection(&self.tenant, id)
            .await
            .unwrap()
            .unwrap();
        c.access_expires_at = Some(at);
        self.store.put_connection(&self.tenant, &c).await.unwrap();
    }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn google_event(id: &str) -> serde_json::Value {
    let start = Utc::now() + CDuration::hours(3);
    serde_json::json!({
        "kind": "calendar#event", "id": id, "status": "confirmed", "summary": "Intake call",
        "start": {"dateTime": start.to_rfc3339()},
        "end": {"dateTime": (start + CDuration::minutes(30)).to_rfc3339()},
        "organizer": {"email": USER, "self": true},
        "hangoutLink": "https://meet.google.com/abc-defg-hij"
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn google_calendar_connects_with_pkce_refreshes_with_rotation_needs_reconsent_and_revokes() {
    let w = world(CalendarProvider::Google).await;
    w.google.upsert(google_event("evt1"));

    // The authorization URL asks for the calendar scope only, with PKCE S256 and our state.
    let jar = w.browser_of(&w.anna).await;
    let url = w.start(&jar, CalendarProvider::Google).await;
    assert_eq!(
        param(&url, "scope").as_deref(),
        Some(GOOGLE_CALENDAR_EVENTS_READONLY)
    );
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(param(&url, "access_type").as_deref(), Some("offline"));
    let state = param(&url, "state").unwrap();
    assert!(state.starts_with(&format!("{}.", w.tenant)));

    let (status, body) = w.op.browse_in(&jar, url.as_str()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Calendar connected"), "{body}");

    // Stored: active, the account's address from the calendar API, tokens sealed.
    let conns = w.connections().await;
    assert_eq!(conns.len(), 1);
    let c = conns[0].clone();
    assert_eq!(c.status, ConnectionStatus::Active);
    assert_eq!(c.provider, CalendarProvider::Google);
    assert_eq!(c.user_id, w.anna.id);
    assert_eq!(w.open(&c, "account_email").await, USER);
    assert_eq!(c.scopes, vec![GOOGLE_CALENDAR_EVENTS_READONLY.to_string()]);
    let left = c.access_expires_at.unwrap() - Utc::now();
    assert!(left > CDuration::seconds(500) && left <= CDuration::seconds(600));
    let access = w.open(&c, "access_token").await;
    let refresh = w.open(&c, "refresh_token").await;
    assert!(w.active(&access).await && w.active(&refresh).await);
    let raw = serde_json::to_string(&c).unwrap();
    assert!(!raw.contains(&access) && !raw.contains(&refresh) && !raw.contains(USER));
    // The first sync ran with the new token.
    let meetings = w.store.list_meetings(&w.tenant, None, None).await.unwrap();
    assert_eq!(meetings.len(), 1);
    assert!(meetings[0].wants_bot);
    let audit = w.store.list_audit(&w.tenant).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "calendar.connected"));

    // The state is single-use: the same callback again is refused.
    let again = w
        .worker
        .connect(&state, Some("any-code"), None, Presented::default())
        .await;
    assert!(
        matches!(again, Err(SyncError::OAuth(OAuthError::UnknownState))),
        "{again:?}"
    );

    // Less than refresh_before (5 min) left: the next sync refreshes first. The provider
    // rotates refresh tokens: the old one is consumed, the new one stored sealed.
    w.set_expiry(&c.id, Utc::now() + CDuration::seconds(60))
        .await;
    w.worker.sync(&w.tenant, &c.id).await.unwrap().unwrap();
    let c2 = w
        .store
        .get_connection(&w.tenant, &c.id)
        .await
        .unwrap()
        .unwrap();
    let access2 = w.open(&c2, "access_token").await;
    let refresh2 = w.open(&c2, "refresh_token").await;
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh);
    assert!(w.active(&access2).await && w.active(&refresh2).await);
    assert!(
        !w.active(&refresh).await,
        "rotated refresh token still active"
    );
    assert!(c2.access_expires_at.unwrap() > Utc::now() + CDuration::seconds(500));

    // Not due: no refresh, same token.
    w.worker.sync(&w.tenant, &c.id).await.unwrap().unwrap();
    let c3 = w
        .store
        .get_connection(&w.tenant, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.open(&c3, "access_token").await, access2);

    // The user removes meetbot's access at the provider: the refresh is refused with
    // invalid_grant, the connection needs re-consent, and it is recorded.
    w.op.revoke(&w.client, &refresh2).await.unwrap();
    w.set_expiry(&c.id, Utc::now()).await;
    let r = w.worker.sync(&w.tenant, &c.id).await;
    assert!(
        matches!(r, Err(SyncError::OAuth(OAuthError::ReconsentRequired))),
        "{r:?}"
    );
    let c4 = w
        .store
        .get_connection(&w.tenant, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c4.status, ConnectionStatus::NeedsReconsent);
    let audit = w.store.list_audit(&w.tenant).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "calendar.reconsent_required" && e.target == c.id)
    );
    // Such a connection is left alone by sync until the user connects again.
    assert!(w.worker.sync(&w.tenant, &c.id).await.unwrap().is_none());

    // Connecting again gives a working connection; disconnecting it revokes at the provider,
    // erases the tokens here and withdraws the bot from its meetings.
    let n = w.connect(CalendarProvider::Google).await;
    assert_eq!(n.status, ConnectionStatus::Active);
    let n_refresh = w.open(&n, "refresh_token").await;
    let n_access = w.open(&n, "access_token").await;
    let wanted = w
        .store
        .list_meetings(&w.tenant, None, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.connection_id.as_deref() == Some(n.id.as_str()) && m.wants_bot)
        .count();
    assert_eq!(wanted, 1);
    let r = w
        .worker
        .disconnect(&w.tenant, &n.id, "user-1")
        .await
        .unwrap();
    assert_eq!(r, Some(Revocation::Revoked));
    assert!(
        !w.active(&n_refresh).await,
        "refresh token still active after revocation"
    );
    assert!(
        !w.active(&n_access).await,
        "access token of a revoked grant still active"
    );
    let d = w
        .store
        .get_connection(&w.tenant, &n.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, ConnectionStatus::Disconnected);
    assert!(d.refresh_token.is_none() && d.access_expires_at.is_none());
    assert_eq!(w.open(&d, "access_token").await, "");
    let m = w
        .store
        .list_meetings(&w.tenant, None, None)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.connection_id.as_deref() == Some(n.id.as_str()))
        .unwrap();
    assert!(!m.wants_bot);
    assert_eq!(m.join_reason.as_deref(), Some("calendar disconnected"));
}

#[tokio::test(flavor = "multi_thread")]
async fn microsoft_calendar_connects_with_offline_access_and_disconnect_erases_tokens() {
    let w = world(CalendarProvider::Microsoft).await;
    let url = w
        .start(&w.browser_of(&w.anna).await, CalendarProvider::Microsoft)
        .await;
    assert_eq!(
        param(&url, "scope").as_deref(),
        Some(format!("{MICROSOFT_CALENDARS_READ} offline_access").as_str())
    );
    let c = w.connect(CalendarProvider::Microsoft).await;
    assert_eq!(c.provider, CalendarProvider::Microsoft);
    assert_eq!(w.open(&c, "account_email").await, USER);
    assert!(c.scopes.iter().any(|s| s == MICROSOFT_CALENDARS_READ));
    let refresh = w.open(&c, "refresh_token").await;
    // A forced refresh (as after a 401) rotates the refresh token.
    let fresh = w
        .oauth()
        .access_token(&w.tenant, &c.id, true)
        .await
        .unwrap();
    assert!(w.active(secrecy::ExposeSecret::expose_secret(&fresh)).await);
    assert!(!w.active(&refresh).await);
    // No revocation endpoint: disconnect erases the tokens here and says so.
    let r = w
        .worker
        .disconnect(&w.tenant, &c.id, "user-1")
        .await
        .unwrap();
    assert_eq!(r, Some(Revocation::Unsupported));
    let d = w
        .store
        .get_connection(&w.tenant, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, ConnectionStatus::Disconnected);
    assert!(d.refresh_token.is_none());
    let e = w.oauth().access_token(&w.tenant, &c.id, false).await;
    assert!(matches!(e, Err(OAuthError::NotActive(..))), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn declined_forged_malformed_and_pkce_less_authorizations_store_nothing() {
    let w = world(CalendarProvider::Google).await;
    let http = reqwest::Client::new();

    // The user declines at the provider.
    let jar = w.browser_of(&w.anna).await;
    let url = w.start(&jar, CalendarProvider::Google).await;
    let (status, body) =
        w.op.browse_in(&jar, &format!("{url}&login_hint=decline"))
            .await
            .unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("declined the authorization (access_denied)"),
        "{body}"
    );

    // A request without PKCE is refused by the provider (it requires PKCE), and we say so.
    let mut stripped = w.start(&jar, CalendarProvider::Google).await;
    let kept: Vec<(String, String)> = stripped
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    stripped.query_pairs_mut().clear().extend_pairs(kept);
    let (status, body) = w.op.browse_in(&jar, stripped.as_str()).await.unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("declined the authorization (invalid_request)"),
        "{body}"
    );

    // A state we never issued, and one that is not even well-formed.
    let forged = format!("{}.{}", w.tenant, "ab".repeat(24));
    for (state, expect) in [
        (forged.as_str(), "already used or has expired"),
        ("not-a-state", "malformed"),
        ("UPPER.abc", "malformed"),
    ] {
        let mut u = url::Url::parse(&w.callback).unwrap();
        u.query_pairs_mut()
            .append_pair("state", state)
            .append_pair("code", "stolen-code");
        let r = http.get(u).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let body = r.text().await.unwrap();
        assert!(body.contains(expect), "{state}: {body}");
    }
    let r = http.get(&w.callback).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    assert!(w.connections().await.is_empty());
}

/// The nonce part of a consent URL's `state` (the pending record's id).
fn nonce(url: &url::Url) -> String {
    let state = param(url, "state").unwrap();
    state.split_once('.').unwrap().1.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consent_url_sent_to_someone_else_is_refused_in_their_browser_and_stores_nothing() {
    let w = world(CalendarProvider::Google).await;
    // The victim at another clinic, whose calendar the attacker wants.
    w.google.set_owner("victim@otherclinic.example");
    w.google.upsert(google_event("victim-evt"));

    // Ben starts connecting "his" calendar and sends the URL on ("please reconnect...").
    let ben = w.browser_of(&w.ben).await;
    for victim in [
        // A browser that never saw meetbot.
        Arc::new(Jar::default()),
        // Someone signed in to meetbot in their own browser (another user's cookie jar).
        w.browser_of(&w.anna).await,
    ] {
        let url = w.start(&ben, CalendarProvider::Google).await;
        let (status, body) = w.op.browse_in(&victim, url.as_str()).await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("not started in this browser") && body.contains("start connecting"),
            "{body}"
        );
        // Nothing stored, and the pending consent is gone: the leaked state is dead.
        assert!(w.connections().await.is_empty());
        assert!(
            w.store
                .take_oauth_pending(&w.tenant, &nonce(&url))
                .await
                .unwrap()
                .is_none()
        );
    }
    assert!(
        w.store
            .list_meetings(&w.tenant, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    let audit = w.store.list_audit(&w.tenant).await.unwrap();
    assert!(!audit.iter().any(|e| e.action == "calendar.connected"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_different_signed_in_person_cannot_finish_a_consent_begun_in_the_same_browser() {
    let w = world(CalendarProvider::Google).await;
    // A shared computer: Ben begins, then Anna signs in there (replacing his session cookie)
    // and finishes it: the binding cookie is right, the person is not.
    let jar = w.browser_of(&w.ben).await;
    let url = w.start(&jar, CalendarProvider::Google).await;
    w.sign_in(&jar, &w.anna).await;
    let (status, body) = w.op.browse_in(&jar, url.as_str()).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not started in this browser"), "{body}");
    assert!(w.connections().await.is_empty());
    assert!(
        w.store
            .take_oauth_pending(&w.tenant, &nonce(&url))
            .await
            .unwrap()
            .is_none()
    );

    // Signed out (the session cookie gone, the binding still there): refused as well.
    let jar = w.browser_of(&w.ben).await;
    let url = w.start(&jar, CalendarProvider::Google).await;
    jar.add_cookie_str(
        "meetbot_session=; Path=/; Max-Age=0",
        &w.api.parse().unwrap(),
    );
    let (status, body) = w.op.browse_in(&jar, url.as_str()).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(w.connections().await.is_empty());

    // The same browser and person: it works.
    let jar = w.browser_of(&w.ben).await;
    w.google.set_owner("ben@lawfirm.example");
    let url = w.start(&jar, CalendarProvider::Google).await;
    let (status, body) = w.op.browse_in(&jar, url.as_str()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let c = w.connections().await;
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].user_id.as_str(), c[0].status),
        (w.ben.id.as_str(), ConnectionStatus::Active)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_calendar_account_that_is_not_the_users_own_address_syncs_nothing_until_an_admin_approves()
 {
    let w = world(CalendarProvider::Google).await;
    // Anna consents in her own browser, but with an account that is not her address (someone
    // else's calendar she could log in to).
    w.google.set_owner("someone@otherclinic.example");
    w.google.upsert(google_event("evt-other"));
    let jar = w.browser_of(&w.anna).await;
    let url = w.start(&jar, CalendarProvider::Google).await;
    let (status, body) = w.op.browse_in(&jar, url.as_str()).await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("awaiting approval"), "{body}");
    assert!(!body.contains("someone@otherclinic.example"), "{body}");
    let conns = w.connections().await;
    assert_eq!(conns.len(), 1);
    let c = conns[0].clone();
    assert_eq!(c.status, ConnectionStatus::AwaitingApproval);
    assert_eq!(c.user_id, w.anna.id);
    assert!(c.push.is_none());
    // Until approved: no round, whatever triggers it, so no meetings (the scheduler arms bots
    // only from meetings).
    assert!(w.worker.sync(&w.tenant, &c.id).await.unwrap().is_none());
    assert_eq!(w.worker.poll().await.unwrap(), 0);
    assert!(
        w.store
            .list_meetings(&w.tenant, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    let audit = w.store.list_audit(&w.tenant).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "calendar.awaiting_approval" && e.target == c.id)
    );

    // Anna cannot approve it herself; an admin can, once.
    let http = reqwest::Client::new();
    let approve = |token: String| {
        http.post(format!("{}/v1/calendars/{}/approve", w.api, c.id))
            .bearer_auth(token)
            .send()
    };
    let r = approve(w.session(&w.anna).await).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = approve(w.session(&w.ada).await).await.unwrap();
    assert_eq!(r.status(), 200);
    let out: serde_json::Value = r.json().await.unwrap();
    assert_eq!(out["status"], "active");
    let r = approve(w.session(&w.ada).await).await.unwrap();
    assert_eq!(r.status(), 409);
    let audit = w.store.list_audit(&w.tenant).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "calendar.approve" && e.target == format!("calendar:{}", c.id))
    );
    // Now it syncs.
    w.worker.sync(&w.tenant, &c.id).await.unwrap().unwrap();
    let meetings = w.store.list_meetings(&w.tenant, None, None).await.unwrap();
    assert_eq!(meetings.len(), 1);
    assert!(meetings[0].wants_bot);
}

//! The REST API over a real embedded store, served on loopback: every route for every role and
//! for a foreign tenant, sessions (idle and absolute expiry, sign-out), API keys (scopes,
//! revocation), TOTP, limits and error bodies, sign-in against the real node-oidc-provider, and
//! schemathesis (PyPI) fuzzing the OpenAPI document.

mod common;

use common::mint;

use chrono::Utc;
use meetbot_api::auth;
use meetbot_api::limits::Limits;
use meetbot_api::oidc::{Oidc, Provider};
use meetbot_api::routes::create_user;
use meetbot_api::{Api, Settings};
use meetbot_calendar_sync::oauth::{OAuth, OAuthHttp, ProviderSettings};
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_store::vault::Tenants;
use meetbot_store::{JobFilter, Store};
use meetbot_testsupport::oidc::{OidcClient, OidcProvider};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

struct Opts {
    /// 0: any free port.
    port: u16,
    export_ttl_seconds: i64,
    export_max_bytes: usize,
    /// `Settings::export_lease_ttl`.
    export_lease_ttl: std::time::Duration,
    idle_seconds: i64,
    per_ip_per_minute: u32,
    per_tenant_per_minute: u32,
    /// `api.trusted_proxies`.
    trusted_proxies: Vec<&'static str>,
    body_limit: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            port: 0,
            export_ttl_seconds: 3600,
            export_max_bytes: meetbot_api::export::DEFAULT_MAX_EXPORT_BYTES,
            export_lease_ttl: meetbot_api::export::LEASE_TTL,
            idle_seconds: 1800,
            per_ip_per_minute: 100_000,
            per_tenant_per_minute: 100_000,
            trusted_proxies: vec![],
            body_limit: 64 * 1024,
        }
    }
}

/// Tenant A with an owner, an admin and two members, meetings, bots, a transcript and a
/// summary; tenant B with its own owner. All on one embedded store, served by the real API.
struct World {
    base: String,
    http: reqwest::Client,
    tenants: Arc<Tenants>,
    store: Arc<dyn Store>,
    a: TenantId,
    b: TenantId,
    owner: User,
    admin: User,
    member: User,
    m_own: String,
    m_attended: String,
    m_other: String,
    job_own: String,
    job_other: String,
    tokens: Tokens,
    /// An ICS feed on loopback.
    ics_url: String,
    /// Where the API announces stopped bots.
    queue: Arc<meetbot_queue::InProcessQueue>,
    _dir: tempfile::TempDir,
}

struct Tokens {
    owner: String,
    admin: String,
    member: String,
    foreign: String,
}

async fn meeting(tenants: &Tenants, t: &TenantId, conn: Option<&str>, people: &[&str]) -> String {
    let v = tenants.vault(t).await.unwrap();
    let id = new_record_id();
    let now = Utc::now();
    let people = json!({
        "organizer": people.first(),
        "attendees": people.iter().map(|e| json!({"email": e, "name": null, "response": "accepted", "organizer": false})).collect::<Vec<_>>(),
    });
    let m = Meeting {
        id: id.clone(),
        connection_id: conn.map(String::from),
        event_instance_id: format!("ev-{id}"),
        series_id: None,
        title: v
            .seal::<Meeting>(&id, "title", b"Quarterly review")
            .unwrap(),
        starts_at: now + chrono::Duration::hours(1),
        ends_at: now + chrono::Duration::hours(2),
        all_day: false,
        status: MeetingStatus::Confirmed,
        platform: Some(Platform::Zoom),
        join_url: Some(
            v.seal::<Meeting>(&id, "join_url", b"https://zoom.us/j/123?pwd=secret")
                .unwrap(),
        ),
        attendees: v
            .seal::<Meeting>(&id, "attendees", people.to_string().as_bytes())
            .unwrap(),
        wants_bot: true,
        join_reason: None,
        requested_by: None,
        deleted_at: None,
        meeting_ref: None,
        source_updated_at: None,
        updated_at: now,
    };
    tenants.store().put_meeting(t, &m).await.unwrap();
    id
}

async fn job(store: &dyn Store, t: &TenantId, meeting: &str) -> String {
    let j = BotJob::scheduled(meeting, format!("k-{meeting}"), Utc::now());
    store.insert_bot_job(t, &j).await.unwrap();
    j.id
}

/// A bot in the call of `meeting`: its job id.
async fn joined_job(store: &dyn Store, t: &TenantId, meeting: &str) -> String {
    let id = new_record_id();
    let j = meetbot_testsupport::speech::joined_job(&id, meeting, &format!("k-{id}"));
    store.insert_bot_job(t, &j).await.unwrap();
    id
}

/// Marks meetings `ids` of tenant A as copies of one meeting (as calendar sync does for one
/// invitation in several calendars).
async fn copies_of_one_meeting(w: &World, meeting_ref: &str, ids: &[&String]) {
    for id in ids {
        let mut m = w.store.get_meeting(&w.a, id).await.unwrap().unwrap();
        m.meeting_ref = Some(meeting_ref.into());
        w.store.put_meeting(&w.a, &m).await.unwrap();
    }
}

/// Stores meeting `m`'s transcript in tenant A: one second per (speaker, text), in order; each
/// speaker in the call from their first line.
async fn said(w: &World, m: &str, lines: &[(&str, &str)]) {
    use meetbot_transcriber::presence::{arrive, name};
    use meetbot_transcriber::transcript::{Segment, TranscriptDoc};
    let v = w.tenants.vault(&w.a).await.unwrap();
    let mut presence = Vec::new();
    for ((who, _), i) in lines.iter().zip(0u64..) {
        arrive(&mut presence, &format!("p-{who}"), i * 1000);
    }
    name(
        &mut presence,
        &lines
            .iter()
            .map(|(who, _)| (format!("p-{who}"), who.to_string()))
            .collect(),
    );
    let doc = TranscriptDoc {
        meeting_id: Some(m.into()),
        language: "en".into(),
        engine: "whisper".into(),
        segments: lines
            .iter()
            .zip(0u64..)
            .map(|((who, text), i)| Segment {
                participant: format!("p-{who}"),
                speaker: Some(who.to_string()),
                start_ms: i * 1000,
                end_ms: i * 1000 + 900,
                text: text.to_string(),
            })
            .collect(),
        presence,
    };
    let tr = doc.seal(&v, &format!("tr-{m}"), m, None).unwrap();
    w.store.put_transcript(&w.a, &tr).await.unwrap();
}

async fn transcript_and_summary(tenants: &Tenants, t: &TenantId, meeting: &str) {
    use meetbot_transcriber::summarize::{ActionItem, SummaryDoc};
    use meetbot_transcriber::transcript::{Segment, TranscriptDoc};
    let v = tenants.vault(t).await.unwrap();
    let doc = TranscriptDoc {
        meeting_id: Some(meeting.into()),
        language: "en".into(),
        engine: "whisper".into(),
        segments: vec![Segment {
            participant: "p1".into(),
            speaker: Some("Sarah".into()),
            start_ms: 0,
            end_ms: 1500,
            text: "Sarah will send the contract by Friday.".into(),
        }],
        presence: vec![],
    };
    let tr = doc
        .seal(&v, &format!("tr-{meeting}"), meeting, None)
        .unwrap();
    tenants.store().put_transcript(t, &tr).await.unwrap();
    let sum = SummaryDoc {
        overview: "Contract review.".into(),
        decisions: vec![],
        action_items: vec![ActionItem {
            owner: Some("Sarah".into()),
            text: "send the contract by Friday".into(),
        }],
        topics: vec!["contract".into()],
    };
    let sid = format!("sum-{meeting}");
    let body = v
        .seal::<Summary>(&sid, "body", &serde_json::to_vec(&sum).unwrap())
        .unwrap();
    tenants
        .store()
        .put_summary(
            t,
            &Summary {
                id: sid,
                meeting_id: meeting.into(),
                body,
                created_at: Utc::now(),
                expires_at: None,
                held: None,
            },
        )
        .await
        .unwrap();
}

async fn connection(tenants: &Tenants, t: &TenantId, user: &str) -> String {
    common::connection(
        tenants,
        t,
        user,
        CalendarProvider::Microsoft,
        "tok",
        "cal@clinic.test",
    )
    .await
}

async fn world_with(opts: Opts, oidc: Option<(&OidcProvider, &OidcClient)>) -> World {
    let (tenants, store, a, dir) = common::embedded_tenant("Clinic").await;
    let b = tenants.create("Law firm").await.unwrap().id;
    let owner = create_user(&*tenants, &a, "olga@clinic.test", Role::Owner)
        .await
        .unwrap();
    let admin = create_user(&*tenants, &a, "adam@clinic.test", Role::Admin)
        .await
        .unwrap();
    let member = create_user(&*tenants, &a, "mia@clinic.test", Role::Member)
        .await
        .unwrap();
    let foreign = create_user(&*tenants, &b, "bob@lawfirm.test", Role::Owner)
        .await
        .unwrap();
    let member_conn = connection(&tenants, &a, &member.id).await;
    let admin_conn = connection(&tenants, &a, &admin.id).await;
    let m_own = meeting(&tenants, &a, Some(&member_conn), &["x@partner.test"]).await;
    let m_attended = meeting(
        &tenants,
        &a,
        Some(&admin_conn),
        &["adam@clinic.test", "MIA@clinic.test"],
    )
    .await;
    let m_other = meeting(&tenants, &a, Some(&admin_conn), &["adam@clinic.test"]).await;
    transcript_and_summary(&tenants, &a, &m_attended).await;
    transcript_and_summary(&tenants, &a, &m_other).await;
    let job_own = job(&*store, &a, &m_own).await;
    let job_other = job(&*store, &a, &m_other).await;
    // B has a meeting of its own too.
    meeting(&tenants, &b, None, &["bob@lawfirm.test"]).await;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let redirect = format!("{base}/v1/auth/callback");
    let mut o = match oidc {
        Some((p, _)) => Oidc::new(
            OAuthHttp::new(reqwest::Client::builder().tls_certs_only([p.ca.certificate()]))
                .unwrap(),
            &redirect,
        )
        .unwrap(),
        None => Oidc::new(
            OAuthHttp::new(reqwest::Client::builder()).unwrap(),
            &redirect,
        )
        .unwrap(),
    };
    if let Some((p, c)) = oidc {
        o = o.with(
            "google",
            Provider::new(&p.issuer, &c.client_id, Some(c.client_secret.clone())),
        );
    }
    // Calendar connect/disconnect: the calendar-sync worker with a Google OAuth client (no
    // network is needed to start a consent or to disconnect a calendar without push).
    let graph = meetbot_calendar_sync::graph::GraphClient::new(
        reqwest::Client::new(),
        "http://127.0.0.1:9/v1.0",
    )
    .unwrap();
    let oauth = OAuth::new(
        tenants.clone(),
        OAuthHttp::new(reqwest::Client::builder()).unwrap(),
    )
    .with_provider(
        CalendarProvider::Google,
        ProviderSettings::google("cal-client", None, &format!("{base}/oauth/callback")),
    )
    .unwrap();
    // A published ICS calendar on loopback, for connecting a calendar by its feed.
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:ics-1@clinic.test\r\n\
DTSTART:20991124T090000Z\r\nDURATION:PT30M\r\nSUMMARY:Far away\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    // Served on 127.0.0.2, the only address in this world's egress allow-list (127.0.0.1 is
    // where the SSRF tests' counting listeners are).
    let (ics_addr, _) = meetbot_testsupport::egress::serve_on(
        [127, 0, 0, 2],
        0,
        axum::Router::new().route("/cal.ics", axum::routing::get(move || async move { ics })),
    )
    .await
    .unwrap();
    let ics_url = format!("http://{ics_addr}/cal.ics");
    let worker = meetbot_calendar_sync::worker::SyncWorker::new(
        graph,
        tenants.clone(),
        Default::default(),
        Default::default(),
        Default::default(),
    )
    // (Only loopback hosts: schemathesis sends any address it can make up.)
    .with_ics(
        meetbot_calendar_sync::ics::IcsClient::new(true, &["127.0.0.2/32"])
            .unwrap()
            .only_hosts(
                ["127.0.0.2", "127.0.0.1", "[::ffff:7f00:1]", "localhost"].map(String::from),
            ),
    )
    .with_oauth(Arc::new(oauth));
    // Bot stops are announced here (a test subscribes to see them).
    let queue = Arc::new(meetbot_queue::InProcessQueue::new(5));
    let api = Arc::new(Api {
        tenants: tenants.clone(),
        settings: Settings {
            public_url: base.clone(),
            session_idle: chrono::Duration::seconds(opts.idle_seconds),
            session_max: chrono::Duration::hours(12),
            body_limit: opts.body_limit,
            cookie_secure: false,
            speech_engines: vec!["whisper-base".into(), "azure".into()],
            export_ttl: chrono::Duration::seconds(opts.export_ttl_seconds),
            export_max_bytes: opts.export_max_bytes,
            export_lease_ttl: opts.export_lease_ttl,
            default_transcript_days: Some(30),
        },
        oidc: o,
        limits: Limits::new(opts.per_ip_per_minute, opts.per_tenant_per_minute).trusting(
            opts.trusted_proxies
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
        ),
        calendars: Some(Arc::new(worker)),
        queue: Some(queue.clone() as Arc<dyn meetbot_queue::JobQueue>),
        sign_in_links: None,
    });
    tokio::spawn(meetbot_api::serve(api, listener, std::future::pending()));
    let life = chrono::Duration::hours(1);
    let tokens = Tokens {
        owner: mint(&*store, &a, &owner.id, life).await,
        admin: mint(&*store, &a, &admin.id, life).await,
        member: mint(&*store, &a, &member.id, life).await,
        foreign: mint(&*store, &b, &foreign.id, life).await,
    };
    World {
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        tenants,
        store,
        a,
        b,
        owner,
        admin,
        member,
        m_own,
        m_attended,
        m_other,
        job_own,
        job_other,
        tokens,
        ics_url,
        queue,
        _dir: dir,
    }
}

/// `PATCH /v1/settings` with `patch` is refused with 400, naming `field`.
async fn settings_refused(w: &World, patch: &Value, field: &str) {
    let (s, body) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(patch),
        )
        .await;
    assert_eq!(s, 400, "{patch}: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(field),
        "{patch}: {body}"
    );
}

async fn world() -> World {
    world_with(Opts::default(), None).await
}

impl World {
    async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn fresh_member(&self, t: &TenantId) -> String {
        create_user(
            &*self.tenants,
            t,
            &format!("{}@clinic.test", new_record_id()),
            Role::Member,
        )
        .await
        .unwrap()
        .id
    }
}

/// One route call and what each caller must get: [member, admin, owner, foreign tenant's owner].
struct Case {
    method: Method,
    /// The route's template as the OpenAPI document names it.
    route: &'static str,
    path: String,
    body: Option<Value>,
    expect: [u16; 4],
}

fn case(
    method: Method,
    route: &'static str,
    path: String,
    body: Option<Value>,
    expect: [u16; 4],
) -> Case {
    Case {
        method,
        route,
        path,
        body,
        expect,
    }
}

#[tokio::test]
async fn every_route_answers_401_without_a_session_403_for_a_missing_role_and_404_across_tenants() {
    let w = world().await;
    let (ma, mo, mt) = (&w.m_own, &w.m_other, &w.m_attended);
    use Method as M;
    let cases = vec![
        case(
            M::GET,
            "/v1/me",
            "/v1/me".into(),
            None,
            [200, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/meetings",
            "/v1/meetings".into(),
            None,
            [200, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}",
            format!("/v1/meetings/{ma}"),
            None,
            [200, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}",
            format!("/v1/meetings/{mo}"),
            None,
            [404, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/transcript",
            format!("/v1/meetings/{mt}/transcript"),
            None,
            [200, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/transcript",
            format!("/v1/meetings/{mo}/transcript"),
            None,
            [404, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/summary",
            format!("/v1/meetings/{mt}/summary"),
            None,
            [200, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/summary",
            format!("/v1/meetings/{mo}/summary"),
            None,
            [404, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/live",
            format!("/v1/meetings/{mt}/live"),
            None,
            [200, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/live",
            format!("/v1/meetings/{mo}/live"),
            None,
            [404, 200, 200, 404],
        ),
        case(
            M::POST,
            "/v1/me/auto-join-rules/preview",
            "/v1/me/auto-join-rules/preview".into(),
            Some(json!({"mode": "all_with_link"})),
            [200, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/privacy/keys",
            "/v1/privacy/keys".into(),
            None,
            [403, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/privacy/audit",
            "/v1/privacy/audit".into(),
            None,
            [403, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/deliveries",
            format!("/v1/meetings/{ma}/deliveries"),
            None,
            [200, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/meetings/{id}/deliveries",
            format!("/v1/meetings/{mo}/deliveries"),
            None,
            [404, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/bots",
            "/v1/bots".into(),
            None,
            [200, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/bots/{id}",
            format!("/v1/bots/{}", w.job_own),
            None,
            [200, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/bots/{id}",
            format!("/v1/bots/{}", w.job_other),
            None,
            [404, 200, 200, 404],
        ),
        case(
            M::POST,
            "/v1/bots",
            "/v1/bots".into(),
            Some(json!({"meeting_url": "https://zoom.us/j/987"})),
            [202, 202, 202, 202],
        ),
        case(
            M::GET,
            "/v1/settings",
            "/v1/settings".into(),
            None,
            [403, 200, 200, 200],
        ),
        case(
            M::PATCH,
            "/v1/settings",
            "/v1/settings".into(),
            Some(json!({"transcript_retention_days": 30})),
            [403, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/users",
            "/v1/users".into(),
            None,
            [403, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/users/{id}",
            format!("/v1/users/{}", w.member.id),
            None,
            [200, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/users/{id}",
            format!("/v1/users/{}", w.admin.id),
            None,
            [403, 200, 200, 404],
        ),
        case(
            M::GET,
            "/v1/api-keys",
            "/v1/api-keys".into(),
            None,
            [403, 200, 200, 200],
        ),
        case(
            M::POST,
            "/v1/api-keys",
            "/v1/api-keys".into(),
            Some(json!({"name": "crm", "scopes": ["meetings:read"]})),
            [403, 201, 201, 201],
        ),
        case(
            M::GET,
            "/v1/calendars",
            "/v1/calendars".into(),
            None,
            [200, 200, 200, 200],
        ),
        case(
            M::POST,
            "/v1/calendars",
            "/v1/calendars".into(),
            Some(json!({"provider": "google"})),
            [201, 201, 201, 201],
        ),
        case(
            M::POST,
            "/v1/calendars/ics",
            "/v1/calendars/ics".into(),
            Some(json!({"feed_url": w.ics_url})),
            [202, 202, 202, 202],
        ),
        case(
            M::GET,
            "/v1/me/auto-join-rules",
            "/v1/me/auto-join-rules".into(),
            None,
            [200, 200, 200, 200],
        ),
        case(
            M::PUT,
            "/v1/me/auto-join-rules",
            "/v1/me/auto-join-rules".into(),
            Some(json!({"mode": "organized_by_me", "exclude_keywords": ["1:1"]})),
            [200, 200, 200, 200],
        ),
        case(
            M::GET,
            "/v1/me/delivery",
            "/v1/me/delivery".into(),
            None,
            [200, 200, 200, 200],
        ),
        case(
            M::PUT,
            "/v1/me/delivery",
            "/v1/me/delivery".into(),
            Some(json!({"summary_email": true})),
            [200, 200, 200, 200],
        ),
        case(
            M::POST,
            "/v1/me/totp",
            "/v1/me/totp".into(),
            None,
            [201, 201, 201, 201],
        ),
        // Confirming with a wrong code: authenticated, refused as a wrong code.
        case(
            M::POST,
            "/v1/me/totp/confirm",
            "/v1/me/totp/confirm".into(),
            Some(json!({"code": "000000"})),
            [401, 401, 401, 401],
        ),
        case(
            M::POST,
            "/v1/auth/totp",
            "/v1/auth/totp".into(),
            Some(json!({"code": "000000"})),
            [409, 409, 409, 409],
        ),
        case(
            M::DELETE,
            "/v1/me/totp",
            "/v1/me/totp".into(),
            None,
            [204, 204, 204, 204],
        ),
        case(
            M::GET,
            "/v1/privacy/deletions",
            "/v1/privacy/deletions".into(),
            None,
            [403, 200, 200, 200],
        ),
        case(
            M::POST,
            "/v1/privacy/clients/erase",
            "/v1/privacy/clients/erase".into(),
            Some(json!({"email": "nobody@nowhere.test"})),
            [403, 403, 200, 200],
        ),
        case(
            M::POST,
            "/v1/privacy/people/erase",
            "/v1/privacy/people/erase".into(),
            Some(json!({"email": "nobody@nowhere.test"})),
            [403, 403, 200, 200],
        ),
        case(
            M::POST,
            "/v1/privacy/export",
            "/v1/privacy/export".into(),
            Some(json!({})),
            [403, 202, 202, 202],
        ),
        // A wrong confirmation: the account stays (its erasure: the test below).
        case(
            M::DELETE,
            "/v1/account",
            "/v1/account".into(),
            Some(json!({"confirm": "not-the-tenant"})),
            [403, 403, 400, 400],
        ),
    ];
    // Routes that change people, keys and calendars act on fresh records per caller.
    let mut per_caller: Vec<(Method, &'static str, [u16; 4])> = vec![
        (M::POST, "/v1/users", [403, 201, 201, 201]),
        (M::PATCH, "/v1/users/{id}", [403, 403, 200, 404]),
        (M::DELETE, "/v1/users/{id}", [403, 403, 204, 404]),
        (M::DELETE, "/v1/api-keys/{id}", [403, 204, 204, 404]),
        (M::DELETE, "/v1/calendars/{id}", [404, 204, 204, 404]),
        (M::POST, "/v1/calendars/{id}/approve", [403, 200, 200, 404]),
        (M::POST, "/v1/auth/logout", [204, 204, 204, 204]),
        (M::DELETE, "/v1/meetings/{id}", [403, 200, 200, 404]),
        (M::POST, "/v1/meetings/{id}/restore", [403, 403, 200, 404]),
        (
            M::DELETE,
            "/v1/meetings/{id}/transcript",
            [403, 200, 200, 404],
        ),
        (M::GET, "/v1/privacy/exports/{id}", [403, 200, 200, 404]),
        (M::POST, "/v1/bots/{id}/leave", [200, 200, 200, 404]),
    ];
    let callers = [
        ("member", w.tokens.member.clone()),
        ("admin", w.tokens.admin.clone()),
        ("owner", w.tokens.owner.clone()),
        ("foreign", w.tokens.foreign.clone()),
    ];
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    for c in &cases {
        covered.insert((c.method.to_string(), c.route.to_string()));
        // No token, and a forged one: 401 with the error body.
        for tok in [
            None,
            Some("mbs_tenant01_nothex"),
            Some(&*format!("mbs_{}_{}", w.a, "0".repeat(64))),
        ] {
            let (s, body) = w
                .call(tok, c.method.clone(), &c.path, c.body.as_ref())
                .await;
            assert_eq!(s, 401, "{} {} with {tok:?}", c.method, c.path);
            assert_eq!(body["error"]["code"], "unauthorized");
            assert!(!body["error"]["request_id"].as_str().unwrap().is_empty());
        }
        for (i, (who, tok)) in callers.iter().enumerate() {
            let (s, body) = w
                .call(Some(tok), c.method.clone(), &c.path, c.body.as_ref())
                .await;
            assert_eq!(
                s.as_u16(),
                c.expect[i],
                "{} {} as {who}: {body}",
                c.method,
                c.path
            );
            if s.as_u16() >= 400 {
                assert!(body["error"]["code"].is_string(), "{body}");
            }
            if c.route == "/v1/privacy/export" {
                // One export at a time per tenant: the next caller's starts after this one.
                exports_idle(&w).await;
            }
        }
    }
    for (method, route, expect) in per_caller.drain(..) {
        covered.insert((method.to_string(), route.to_string()));
        for (i, (who, tok)) in callers.iter().enumerate() {
            // The record is in tenant A for everyone: the foreign owner must not reach it.
            let (path, body, tok) = match route {
                "/v1/users" => (
                    route.to_string(),
                    Some(json!({"email": format!("new-{who}@clinic.test"), "role": "member"})),
                    tok.clone(),
                ),
                "/v1/users/{id}" => {
                    let id = w.fresh_member(&w.a).await;
                    let body = (method == M::PATCH).then(|| json!({"role": "admin"}));
                    (format!("/v1/users/{id}"), body, tok.clone())
                }
                "/v1/api-keys/{id}" => {
                    let (_, created) = w
                        .call(
                            Some(&w.tokens.owner),
                            M::POST,
                            "/v1/api-keys",
                            Some(&json!({"name": "k", "scopes": ["meetings:read"]})),
                        )
                        .await;
                    (
                        format!("/v1/api-keys/{}", created["key"]["id"].as_str().unwrap()),
                        None,
                        tok.clone(),
                    )
                }
                "/v1/calendars/{id}" => {
                    let id = connection(&w.tenants, &w.a, &w.owner.id).await;
                    (format!("/v1/calendars/{id}"), None, tok.clone())
                }
                "/v1/calendars/{id}/approve" => {
                    // A member's calendar whose account is not their address.
                    let id = connection(&w.tenants, &w.a, &w.member.id).await;
                    let mut c = w.store.get_connection(&w.a, &id).await.unwrap().unwrap();
                    c.status = ConnectionStatus::AwaitingApproval;
                    w.store.put_connection(&w.a, &c).await.unwrap();
                    (format!("/v1/calendars/{id}/approve"), None, tok.clone())
                }
                "/v1/auth/logout" => {
                    // A session of its own, so the matrix's sessions live on.
                    let (t, user) = if *who == "foreign" {
                        (
                            w.b.clone(),
                            w.store.list_users(&w.b).await.unwrap()[0].id.clone(),
                        )
                    } else {
                        let u = match *who {
                            "member" => &w.member,
                            "admin" => &w.admin,
                            _ => &w.owner,
                        };
                        (w.a.clone(), u.id.clone())
                    };
                    let fresh = mint(&*w.store, &t, &user, chrono::Duration::hours(1)).await;
                    (route.to_string(), None, fresh)
                }
                "/v1/meetings/{id}" => {
                    let id = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
                    (format!("/v1/meetings/{id}"), None, tok.clone())
                }
                "/v1/meetings/{id}/restore" => {
                    let id = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
                    let mut m = w.store.get_meeting(&w.a, &id).await.unwrap().unwrap();
                    m.deleted_at = Some(Utc::now());
                    w.store.put_meeting(&w.a, &m).await.unwrap();
                    (format!("/v1/meetings/{id}/restore"), None, tok.clone())
                }
                "/v1/meetings/{id}/transcript" => {
                    let id = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
                    transcript_and_summary(&w.tenants, &w.a, &id).await;
                    (format!("/v1/meetings/{id}/transcript"), None, tok.clone())
                }
                "/v1/bots/{id}/leave" => {
                    // A bot in the call of a meeting the member asked for.
                    let id = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
                    let mut m = w.store.get_meeting(&w.a, &id).await.unwrap().unwrap();
                    m.requested_by = Some(w.member.id.clone());
                    w.store.put_meeting(&w.a, &m).await.unwrap();
                    let job = joined_job(&*w.store, &w.a, &id).await;
                    (format!("/v1/bots/{job}/leave"), None, tok.clone())
                }
                "/v1/privacy/exports/{id}" => {
                    exports_idle(&w).await;
                    let (_, e) = w
                        .call(
                            Some(&w.tokens.owner),
                            M::POST,
                            "/v1/privacy/export",
                            Some(&json!({})),
                        )
                        .await;
                    (
                        format!("/v1/privacy/exports/{}", e["id"].as_str().unwrap()),
                        None,
                        tok.clone(),
                    )
                }
                _ => unreachable!(),
            };
            let (s, _) = w.call(None, method.clone(), &path, body.as_ref()).await;
            assert_eq!(s, 401, "{method} {path} without a token");
            let (s, resp) = w
                .call(Some(&tok), method.clone(), &path, body.as_ref())
                .await;
            assert_eq!(s.as_u16(), expect[i], "{method} {path} as {who}: {resp}");
            if route == "/v1/auth/logout" {
                let (s, _) = w.call(Some(&tok), M::GET, "/v1/me", None).await;
                assert_eq!(s, 401, "a signed-out session is dead ({who})");
            }
        }
    }
    // A member sees their own and attended meetings, never the others; the foreign tenant sees
    // none of A's.
    let ids = |v: &Value| -> BTreeSet<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, mine) = w
        .call(Some(&w.tokens.member), M::GET, "/v1/meetings", None)
        .await;
    let mine = ids(&mine);
    assert!(
        mine.contains(&w.m_own) && mine.contains(&w.m_attended) && !mine.contains(&w.m_other),
        "{mine:?}"
    );
    let (_, foreign) = w
        .call(Some(&w.tokens.foreign), M::GET, "/v1/meetings", None)
        .await;
    let foreign = ids(&foreign);
    assert!(
        foreign.is_disjoint(&[w.m_own.clone(), w.m_attended.clone(), w.m_other.clone()].into())
    );
    assert!(!foreign.is_empty(), "B sees its own meetings");
    let (_, bots) = w
        .call(Some(&w.tokens.member), M::GET, "/v1/bots", None)
        .await;
    let bots: BTreeSet<String> = bots["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert!(bots.contains(&w.job_own) && !bots.contains(&w.job_other));

    // Every operation of the OpenAPI document is in this matrix, but the public sign-in ones.
    let doc: Value = w
        .http
        .get(format!("{}/v1/openapi.json", w.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let public = [
                "/v1/auth/providers",
                "/v1/auth/{provider}/login",
                "/v1/auth/callback",
                "/v1/privacy/exports/{id}/download",
            ]
            .contains(&path.as_str());
            if !public && !covered.contains(&(method.to_uppercase(), path.clone())) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "routes without RBAC cases: {missing:?}");
}

#[tokio::test]
async fn a_bot_in_the_call_leaves_at_its_owners_or_an_admins_word_recording_who_while_others_get_403_or_404()
 {
    use meetbot_queue::{EventKind, JobQueue};
    let w = world().await;
    let mut events = w.queue.subscribe_events().await.unwrap();
    // The member's own calendar meeting, one they only attend, one they cannot see.
    let own = joined_job(&*w.store, &w.a, &w.m_own).await;
    let attended = joined_job(&*w.store, &w.a, &w.m_attended).await;
    let other = joined_job(&*w.store, &w.a, &w.m_other).await;
    let leave = |job: &str| format!("/v1/bots/{job}/leave");
    let state = |job: String| {
        let (store, a) = (w.store.clone(), w.a.clone());
        async move { store.get_bot_job(&a, &job).await.unwrap().unwrap().value }
    };
    // Attending is not owning: 403. Not seeing: 404, as for another tenant and for a member
    // of the same tenant who sees none of it.
    let stranger = w.fresh_member(&w.a).await;
    let stranger = mint(&*w.store, &w.a, &stranger, chrono::Duration::hours(1)).await;
    for (tok, job, want) in [
        (&w.tokens.member, &attended, 403),
        (&w.tokens.member, &other, 404),
        (&w.tokens.foreign, &own, 404),
        (&stranger, &own, 404),
    ] {
        let (s, body) = w.call(Some(tok), Method::POST, &leave(job), None).await;
        assert_eq!(s.as_u16(), want, "{body}");
        assert_eq!(state(job.clone()).await.state, BotJobState::Joined);
    }
    // The owner makes their bot leave: stopped, with who and when; launchers are told.
    let before = Utc::now();
    let (s, body) = w
        .call(Some(&w.tokens.member), Method::POST, &leave(&own), None)
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["state"], "stopped");
    let me = format!("user:{}", w.member.id);
    assert_eq!(body["reason"], format!("stopped by {me}"));
    let job = state(own.clone()).await;
    assert_eq!(job.state, BotJobState::Stopped(me.clone()));
    let last = job.history.last().unwrap();
    assert!(last.at >= before && last.state == BotJobState::Stopped(me.clone()));
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .expect("a stop event for the launcher")
        .unwrap();
    assert_eq!(ev.job_id, own);
    assert!(matches!(ev.kind, EventKind::Withdrawn(_)), "{:?}", ev.kind);
    // Again: it stays stopped by the first.
    let (s, _) = w
        .call(Some(&w.tokens.admin), Method::POST, &leave(&own), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(state(own.clone()).await.state, BotJobState::Stopped(me));
    // An admin stops any bot; a finished one has nothing to stop.
    let (s, _) = w
        .call(Some(&w.tokens.admin), Method::POST, &leave(&attended), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        state(attended.clone()).await.state,
        BotJobState::Stopped(format!("user:{}", w.admin.id))
    );
    let mut done = BotJob::scheduled(&w.m_other, "k-done".into(), Utc::now());
    done.state = BotJobState::Done;
    w.store.insert_bot_job(&w.a, &done).await.unwrap();
    let (s, body) = w
        .call(Some(&w.tokens.owner), Method::POST, &leave(&done.id), None)
        .await;
    assert_eq!(s, 409, "{body}");
    // Deleting a meeting stops its bot in the call the same way.
    let (s, body) = w
        .call(
            Some(&w.tokens.admin),
            Method::DELETE,
            &format!("/v1/meetings/{}", w.m_other),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        state(other.clone()).await.state,
        BotJobState::Stopped(format!("user:{}", w.admin.id))
    );
    let mut seen = Vec::new();
    while let Ok(Ok(ev)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), events.next()).await
    {
        seen.push(ev.job_id.clone());
        if ev.job_id == other {
            assert!(matches!(ev.kind, EventKind::Withdrawn(_)));
            break;
        }
    }
    assert!(
        seen.contains(&other),
        "no stop event for the deleted meeting's bot: {seen:?}"
    );
}

#[tokio::test]
async fn an_idle_session_expires_after_the_timeout_and_none_outlives_its_absolute_lifetime() {
    let w = world_with(
        Opts {
            idle_seconds: 2,
            ..Default::default()
        },
        None,
    )
    .await;
    let tok = &w.tokens.member;
    // Used within the idle timeout, it stays alive past it.
    for _ in 0..3 {
        let (s, _) = w.call(Some(tok), Method::GET, "/v1/me", None).await;
        assert_eq!(s, 200);
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let (s, body) = w.call(Some(tok), Method::GET, "/v1/me", None).await;
    assert_eq!(s, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session has ended")
    );
    // The expired session is gone from the store, not just refused.
    let auth::Token::Session { id, .. } = auth::parse_token(tok).unwrap() else {
        panic!()
    };
    assert!(w.store.get_session(&w.a, &id).await.unwrap().is_none());

    // Absolute lifetime: kept busy, it still ends at expires_at.
    let short = mint(
        &*w.store,
        &w.a,
        &w.owner.id,
        chrono::Duration::milliseconds(1500),
    )
    .await;
    let (s, _) = w.call(Some(&short), Method::GET, "/v1/me", None).await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (s, _) = w.call(Some(&short), Method::GET, "/v1/me", None).await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let (s, _) = w.call(Some(&short), Method::GET, "/v1/me", None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn an_api_key_is_limited_to_its_scopes_and_stops_working_once_revoked() {
    let w = world().await;
    let (s, created) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"name": "crm sync", "scopes": ["meetings:read"]})),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let key = created["token"].as_str().unwrap().to_string();
    let id = created["key"]["id"].as_str().unwrap().to_string();
    // Only the hash is stored.
    let stored = w.store.get_api_key(&w.a, &id).await.unwrap().unwrap();
    assert!(
        !serde_json::to_string(&stored)
            .unwrap()
            .contains(key.rsplit('_').next().unwrap())
    );

    let (s, page) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        3,
        "a key reads the whole tenant"
    );
    let (s, body) = w
        .call(
            Some(&key),
            Method::GET,
            &format!("/v1/meetings/{}/transcript", w.m_other),
            None,
        )
        .await;
    assert_eq!(s, 403, "no transcripts:read scope: {body}");
    let (s, _) = w.call(Some(&key), Method::GET, "/v1/settings", None).await;
    assert_eq!(s, 403);
    let (s, _) = w.call(Some(&key), Method::GET, "/v1/users", None).await;
    assert_eq!(s, 403, "keys cannot manage people");
    let (s, _) = w
        .call(
            Some(&key),
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"name": "x", "scopes": ["meetings:read"]})),
        )
        .await;
    assert_eq!(s, 403, "keys cannot make keys");
    // A key with the other tenant's id in it finds nothing there.
    let forged = key.replacen(w.a.as_str(), w.b.as_str(), 1);
    let (s, _) = w
        .call(Some(&forged), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 401);
    // Tampered secret.
    let mut tampered = key.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let (s, _) = w
        .call(Some(&tampered), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 401);

    let (s, _) = w
        .call(
            Some(&w.tokens.admin),
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, body) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    // Unknown scopes are refused by name.
    let (s, body) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"name": "x", "scopes": ["everything"]})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant"),
        "{body}"
    );
}

fn code_now(secret_b32: &str) -> String {
    let secret = totp_rs::Secret::Encoded(secret_b32.into())
        .to_bytes()
        .unwrap();
    let t =
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "x".into()).unwrap();
    t.generate_current().unwrap()
}

#[tokio::test]
async fn totp_enrolment_then_a_tenant_requiring_it_holds_new_sessions_until_a_code_is_given() {
    let w = world().await;
    let tok = &w.tokens.member;
    let (s, enrol) = w.call(Some(tok), Method::POST, "/v1/me/totp", None).await;
    assert_eq!(s, 201);
    let secret = enrol["secret"].as_str().unwrap().to_string();
    assert!(
        enrol["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/meetbot:")
    );
    // The secret is sealed in the store.
    let raw = meetbot_testsupport::raw_bytes(w._dir.path());
    assert!(!meetbot_testsupport::contains(&raw, secret.as_bytes()));
    let (s, _) = w
        .call(
            Some(tok),
            Method::POST,
            "/v1/me/totp/confirm",
            Some(&json!({"code": "123"})),
        )
        .await;
    assert_eq!(s, 401);
    let code = code_now(&secret);
    let (s, body) = w
        .call(
            Some(tok),
            Method::POST,
            "/v1/me/totp/confirm",
            Some(&json!({"code": code})),
        )
        .await;
    assert_eq!(s, 204, "{body}");

    // The owner requires a second factor for everyone.
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(&json!({"require_mfa": true})),
        )
        .await;
    assert_eq!(s, 200);
    // A new session of the member (as sign-in makes it: factor owed).
    let (token, id) = auth::new_session_token(&w.a).unwrap();
    let now = Utc::now();
    w.store
        .put_session(
            &w.a,
            &Session {
                id,
                user_id: w.member.id.clone(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + chrono::Duration::hours(1),
                mfa_passed: false,
                mfa_at: None,
            },
        )
        .await
        .unwrap();
    let (s, body) = w
        .call(Some(&token), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 403);
    assert_eq!(body["error"]["code"], "mfa_required");
    let (s, me) = w.call(Some(&token), Method::GET, "/v1/me", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        me["mfa"],
        json!({"enrolled": true, "passed": false, "required_by_tenant": true})
    );
    // The code just used for confirming cannot be replayed.
    let (s, _) = w
        .call(
            Some(&token),
            Method::POST,
            "/v1/auth/totp",
            Some(&json!({"code": code})),
        )
        .await;
    assert_eq!(s, 401, "a used code is refused");
    // Wait for the next 30 s step for a fresh code.
    let step = Utc::now().timestamp() / 30;
    while Utc::now().timestamp() / 30 == step {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (s, body) = w
        .call(
            Some(&token),
            Method::POST,
            "/v1/auth/totp",
            Some(&json!({"code": code_now(&secret)})),
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let (s, _) = w
        .call(Some(&token), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 200);
    // Required by the tenant: it cannot be removed.
    let (s, _) = w
        .call(Some(&token), Method::DELETE, "/v1/me/totp", None)
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn errors_have_one_shape_with_the_request_id_and_limits_answer_413_and_429() {
    let w = world_with(
        Opts {
            per_ip_per_minute: 20,
            body_limit: 2048,
            ..Default::default()
        },
        None,
    )
    .await;
    let resp = w
        .http
        .get(format!("{}/v1/nowhere", w.base))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], "req-123");

    let big = json!({"meeting_url": "https://zoom.us/j/1", "title": "x".repeat(4096)});
    let (s, body) = w
        .call(Some(&w.tokens.owner), Method::POST, "/v1/bots", Some(&big))
        .await;
    assert_eq!(s, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");
    let (s, body) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/bots",
            Some(&json!({"meeting_url": 5})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/bots",
            Some(&json!({"meeting_url": "ftp://x"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            "/v1/meetings?limit=0",
            None,
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            "/v1/meetings?cursor=%25%25",
            None,
        )
        .await;
    assert_eq!(s, 400);

    let mut limited = None;
    for _ in 0..40 {
        let resp = w
            .http
            .get(format!("{}/v1/auth/providers", w.base))
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("the per-address limit answers 429 within 40 requests");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn an_ad_hoc_bot_is_armed_once_and_the_scheduler_keeps_that_job() {
    let w = world().await;
    let (s, bot) = w
        .call(Some(&w.tokens.member), Method::POST, "/v1/bots", Some(&json!({"meeting_url": "https://meet.google.com/abc-defg-hij", "bot_name": "Notes for Mia"})))
        .await;
    assert_eq!(s, 202, "{bot}");
    let id = bot["id"].as_str().unwrap();
    let meeting = bot["meeting_id"].as_str().unwrap();
    // The member owns the ad-hoc meeting and sees its link; the bot's timeline starts scheduled.
    let (s, m) = w
        .call(
            Some(&w.tokens.member),
            Method::GET,
            &format!("/v1/meetings/{meeting}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(m["platform"], "google_meet");
    assert_eq!(m["join_url"], "https://meet.google.com/abc-defg-hij");
    let (_, b) = w
        .call(
            Some(&w.tokens.member),
            Method::GET,
            &format!("/v1/bots/{id}"),
            None,
        )
        .await;
    assert_eq!(b["timeline"][0]["state"], "scheduled");
    // A scheduler pass over the tenant finds the job already armed: still exactly one.
    let queue = Arc::new(meetbot_queue::InProcessQueue::new(5));
    let cfg = meetbot_core::config::Config::default();
    let sched = meetbot_scheduler::Scheduler::new(
        w.store.clone(),
        queue,
        meetbot_scheduler::SchedulerSettings::from_config(&cfg.scheduler),
    );
    sched.pass(Utc::now()).await.unwrap();
    let jobs = w
        .store
        .find_bot_jobs(
            &w.a,
            &meetbot_store::JobFilter {
                meeting_id: Some(meeting.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].value.id, id);
    assert_eq!(
        jobs[0]
            .value
            .bot_rules
            .as_ref()
            .unwrap()
            .display_name
            .as_deref(),
        Some("Notes for Mia")
    );
    // Title and link are sealed in the store.
    let raw = meetbot_testsupport::raw_bytes(w._dir.path());
    assert!(!meetbot_testsupport::contains(&raw, b"abc-defg-hij"));
    assert!(
        meetbot_testsupport::contains(&raw, id.as_bytes()),
        "the check can fail"
    );
}

/// The real OpenID provider and the API signing in with it.
async fn sign_in_world() -> (OidcProvider, World) {
    let client = OidcClient {
        client_id: "meetbot-api".into(),
        client_secret: "api-secret-0123456789".into(),
        redirect_uri: String::new(),
        scope: "openid email".into(),
    };
    // The provider must know the API's redirect URI before the API listens: pick a free port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = OidcClient {
        redirect_uri: format!("http://127.0.0.1:{port}/v1/auth/callback"),
        ..client
    };
    let provider = OidcProvider::start(std::slice::from_ref(&client), &["email"], 300).unwrap();
    let w = world_with(
        Opts {
            port,
            ..Default::default()
        },
        Some((&provider, &client)),
    )
    .await;
    (provider, w)
}

#[tokio::test]
async fn sign_in_with_a_real_openid_provider_makes_a_session_only_for_invited_addresses() {
    let (provider, w) = sign_in_world().await;
    let login = |hint: &str| {
        format!(
            "{}/v1/auth/google/login?tenant={}&login_hint={hint}",
            w.base, w.a
        )
    };
    let resp = w.http.get(login("mia@clinic.test")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&provider.issuer));
    assert!(
        to.contains("code_challenge_method=S256") && to.contains("nonce=") && to.contains("state=")
    );
    // The sign-in is bound to this browser by a short-lived cookie only the callback sees.
    let bind = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(bind.starts_with("meetbot_signin="), "{bind}");
    for attr in [
        "; Path=/v1/auth/callback",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Max-Age=600",
    ] {
        assert!(bind.contains(attr), "{bind}");
    }
    // The browser goes from the login route through the provider and back, with its cookies.
    let (status, body) = provider.browse(&login("mia@clinic.test")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    let token = session["token"].as_str().unwrap();
    assert_eq!(session["mfa_required"], false);
    let (s, me) = w.call(Some(token), Method::GET, "/v1/me", None).await;
    assert_eq!(s, 200);
    assert_eq!(me["email"], "mia@clinic.test");
    assert_eq!(me["role"], "member");
    assert_eq!(me["actor"], format!("user:{}", w.member.id));
    // The identity is now bound to the user.
    let u = w.store.get_user(&w.a, &w.member.id).await.unwrap().unwrap();
    assert!(u.subject_hash.is_some());

    // Someone the tenant never added is refused.
    let (status, body) = provider.browse(&login("eve@elsewhere.test")).await.unwrap();
    assert_eq!(status, 403, "{body}");
    // A used state cannot be replayed (the pending sign-in is taken once), not even by the
    // browser that began it.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let back = provider
        .capture_callback(
            &jar,
            &login("mia@clinic.test"),
            &format!("{}/v1/auth/callback", w.base),
        )
        .await
        .unwrap();
    let state = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let (status, body) = provider.browse_in(&jar, &back).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = provider.browse_in(&jar, &back).await.unwrap();
    assert_eq!(status, 400);
    let (s, _) = w
        .call(
            None,
            Method::GET,
            &format!("/v1/auth/callback?state={state}&code=whatever"),
            None,
        )
        .await;
    assert_eq!(s, 400);
    // An unknown tenant or provider is not found.
    let (s, _) = w
        .call(
            None,
            Method::GET,
            "/v1/auth/google/login?tenant=nosuchtenant",
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = w
        .call(
            None,
            Method::GET,
            &format!("/v1/auth/github/login?tenant={}", w.a),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn login_csrf_a_sign_in_callback_begun_in_one_browser_and_finished_in_another_makes_no_session()
 {
    let (provider, w) = sign_in_world().await;
    let login = format!(
        "{}/v1/auth/google/login?tenant={}&login_hint=mia@clinic.test",
        w.base, w.a
    );
    let callback = format!("{}/v1/auth/callback", w.base);
    let sign_ins = || async {
        w.store
            .list_audit(&w.a)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "auth.sign_in")
            .count()
    };
    // The attacker signs in with their own account in their browser and keeps the callback URL
    // instead of following it; the victim's browser is made to open it (a link, an image, a
    // redirect): a browser that never saw meetbot, or one signed in as someone else.
    let signed_in_as_someone_else = Arc::new(reqwest::cookie::Jar::default());
    signed_in_as_someone_else.add_cookie_str(
        &format!("meetbot_session={}; Path=/", w.tokens.admin),
        &w.base.parse().unwrap(),
    );
    let never_saw_meetbot = Arc::new(reqwest::cookie::Jar::default());
    for victim in [never_saw_meetbot, signed_in_as_someone_else] {
        let attacker = Arc::new(reqwest::cookie::Jar::default());
        let captured = provider
            .capture_callback(&attacker, &login, &callback)
            .await
            .unwrap();
        let before = sign_ins().await;
        let resp = provider
            .browser(&victim)
            .get(&captured)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert!(resp.headers().get("set-cookie").is_none());
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("start again"),
            "{body}"
        );
        assert_eq!(sign_ins().await, before, "a session was made");
        // The pending sign-in is gone: not even the attacker's own browser can use it now.
        let (status, _) = provider.browse_in(&attacker, &captured).await.unwrap();
        assert_eq!(status, 400);
        assert_eq!(sign_ins().await, before);
    }
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let bin = meetbot_testsupport::schemathesis();
    assert!(
        bin.exists(),
        "{} is missing: run `bash scripts/test.sh` (it installs schemathesis) or set MEETBOT_TEST_SCHEMATHESIS",
        bin.display()
    );
    let w = world().await;
    let out = tokio::process::Command::new(&bin)
        .args([
            "run",
            &format!("{}/v1/openapi.json", w.base),
            "--url",
            &w.base,
            "--header",
            &format!("Authorization: Bearer {}", w.tokens.owner),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--exclude-path",
            "/v1/auth/logout",
            "--exclude-path",
            "/v1/account",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--workers",
            "1",
            // Hypothesis' health checks time the generator, not the API; on a loaded CI machine
            // they fail on their own (seen once: "1 error" with every check passing).
            "--suppress-health-check",
            "all",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What went wrong first (CI shows the head of a long message), then everything.
    let first = ["ERRORS", "FAILURES"]
        .iter()
        .filter_map(|h| text.find(&format!(" {h} ")))
        .min()
        .map_or("", |i| &text[i..]);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{first}\n---- the whole run ----\n{text}"
    );
    eprintln!("{text}");
    assert!(text.contains("passed") || text.contains("Passed"), "{text}");
}

#[tokio::test]
async fn settings_round_trip_with_addresses_sealed_and_only_offered_engines_accepted() {
    let w = world().await;
    let patch = json!({
        "bot": {"display_name": "Clinic notes", "alone_timeout_seconds": 120},
        "delivery": {
            "slack_channel": "C0123ABCD",
            "slack_token": "xoxb-tenant-own-token",
            "emails": ["front-desk@clinic.test", "dr-who@clinic.test"],
            "webhook_url": "https://hooks.clinic.test/meetbot"
        },
        "transcript_retention_days": 7,
        "speech_engine": "whisper-base",
        "redaction": {
            "enabled": true,
            "classes": ["NAME", "phone", "DATE"],
            "topics": {"immigration": ["visa status", "asylum"]}
        }
    });
    let (s, out) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(&patch),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let (_, got) = w
        .call(Some(&w.tokens.owner), Method::GET, "/v1/settings", None)
        .await;
    assert_eq!(got["bot"]["display_name"], "Clinic notes");
    assert_eq!(
        got["delivery"]["emails"],
        json!(["front-desk@clinic.test", "dr-who@clinic.test"])
    );
    assert_eq!(got["delivery"]["own_slack_token"], true);
    assert!(got["delivery"].get("slack_token").is_none(), "write-only");
    assert_eq!(
        got["delivery"]["webhook_url"],
        "https://hooks.clinic.test/meetbot"
    );
    assert_eq!(got["transcript_retention_days"], 7);
    assert_eq!(got["speech_engine"], "whisper-base");
    assert_eq!(got["redaction"]["enabled"], true);
    assert_eq!(
        got["redaction"]["classes"],
        json!(["NAME", "phone", "DATE"])
    );
    assert_eq!(
        got["redaction"]["topics"],
        json!({"immigration": ["visa status", "asylum"]})
    );
    assert_eq!(got["redaction"]["builtin_topics"], false);
    // What the transcriber reads is what was set.
    let stored = w.store.get_tenant_settings(&w.a).await.unwrap().unwrap();
    let r = meetbot_redact::Redactor::from_settings(stored.redaction.as_ref().unwrap(), None)
        .unwrap()
        .expect("redaction on");
    assert_eq!(
        r.redact("Dr. Okafor said her visa status changed on May 3rd; call 555-867-5309."),
        "[TOPIC:immigration]"
    );
    assert_eq!(
        r.redact("Dr. Okafor moved it to May 3rd; mail a@b.com."),
        "[NAME] moved it to [DATE]; mail a@b.com."
    );
    assert_eq!(
        got["speech_engines_offered"],
        json!(["whisper-base", "azure"])
    );
    // What the delivery outbox reads is what was set.
    let targets = meetbot_delivery::service::Targets::of(&*w.store, &w.tenants, &w.a)
        .await
        .unwrap();
    assert_eq!(targets.emails.len(), 2);
    let raw = meetbot_testsupport::raw_bytes(w._dir.path());
    for secret in [
        &b"dr-who@clinic.test"[..],
        b"xoxb-tenant-own-token",
        b"hooks.clinic.test",
    ] {
        assert!(!meetbot_testsupport::contains(&raw, secret));
    }
    assert!(
        meetbot_testsupport::contains(&raw, b"C0123ABCD"),
        "the check can fail"
    );
    // Refused, each with the field named; nothing changes.
    for (bad, field) in [
        (json!({"speech_engine": "gpt-5-audio"}), "speech_engine"),
        (
            json!({"delivery": {"emails": ["not an address"]}}),
            "delivery.emails[0]",
        ),
        (
            json!({"delivery": {"webhook_url": "http://plain.test/x"}}),
            "delivery.webhook_url",
        ),
        (
            json!({"delivery": {"slack_channel": "#general"}}),
            "delivery.slack_channel",
        ),
        (json!({"bot": {"alone_timeout_seconds": 0}}), "bot"),
        (
            json!({"transcript_retention_days": 99999}),
            "transcript_retention_days",
        ),
        (json!({"colour": "blue"}), "colour"),
        (
            json!({"redaction": {"enabled": true, "classes": ["NICKNAME"]}}),
            "redaction.classes[0]",
        ),
        (
            json!({"redaction": {"enabled": true, "topics": {"Bad Topic": ["x"]}}}),
            "redaction.topics",
        ),
        (
            json!({"redaction": {"enabled": true, "topics": {"abuse": []}}}),
            "redaction.topics",
        ),
    ] {
        settings_refused(&w, &bad, field).await;
    }
    let (_, again) = w
        .call(Some(&w.tokens.owner), Method::GET, "/v1/settings", None)
        .await;
    assert_eq!(again["speech_engine"], "whisper-base");
    assert_eq!(
        again["redaction"]["classes"],
        json!(["NAME", "phone", "DATE"])
    );
    // Turned off, the built-in topics are back in force once topics are left unset.
    let (s, off) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(&json!({"redaction": {"enabled": false}})),
        )
        .await;
    assert_eq!(s, 200, "{off}");
    assert_eq!(off["redaction"]["enabled"], false);
    assert_eq!(off["redaction"]["builtin_topics"], true);
    assert!(off["redaction"]["topics"]["abuse"].is_array());
    assert_eq!(off["redaction"]["classes"].as_array().unwrap().len(), 18);
    // Clearing.
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(&json!({"speech_engine": "", "delivery": {"emails": [], "slack_token": ""}})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, cleared) = w
        .call(Some(&w.tokens.owner), Method::GET, "/v1/settings", None)
        .await;
    assert_eq!(cleared["speech_engine"], Value::Null);
    assert_eq!(cleared["delivery"]["emails"], json!([]));
    assert_eq!(cleared["delivery"]["own_slack_token"], false);
    // Every change is in the audit log, by actor id.
    let audit = w.store.list_audit(&w.a).await.unwrap();
    assert!(
        audit
            .iter()
            .filter(|e| e.action == "settings.change")
            .count()
            >= 2
    );
    assert!(audit.iter().all(|e| !e.actor.contains('@')));
}

#[tokio::test]
async fn an_expired_transcript_is_hidden_from_the_api_at_once_and_purged_from_the_raw_store_with_a_log_entry()
 {
    use meetbot_transcriber::transcript::{Segment, TranscriptDoc};
    let w = world().await;
    let v = w.tenants.vault(&w.a).await.unwrap();
    let m = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
    let doc = TranscriptDoc {
        meeting_id: Some(m.clone()),
        language: "en".into(),
        engine: "whisper".into(),
        segments: vec![Segment {
            participant: "p1".into(),
            speaker: None,
            start_ms: 0,
            end_ms: 900,
            text: "the short lived sentence".into(),
        }],
        presence: vec![],
    };
    let id = format!("tr-{m}");
    let tr = doc
        .seal(
            &v,
            &id,
            &m,
            Some(Utc::now() + chrono::Duration::milliseconds(1500)),
        )
        .unwrap();
    w.store.put_transcript(&w.a, &tr).await.unwrap();
    let path = format!("/v1/meetings/{m}/transcript");
    let (s, body) = w
        .call(Some(&w.tokens.owner), Method::GET, &path, None)
        .await;
    assert_eq!(s, 200);
    assert!(body["expires_at"].is_string());
    // The sealed text as stored (base64 in the record).
    let sealed = serde_json::to_value(&tr.segments).unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    assert!(meetbot_testsupport::contains(
        &meetbot_testsupport::raw_bytes(w._dir.path()),
        &sealed
    ));
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    // Hidden from reads the moment it expires ...
    let (s, _) = w
        .call(Some(&w.tokens.owner), Method::GET, &path, None)
        .await;
    assert_eq!(s, 404);
    // ... and gone from the database file with the purge, which is logged.
    let purged = meetbot_store::retention::purge_all(&*w.store, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        purged,
        vec![(w.a.clone(), vec![("transcripts".to_string(), 1)])]
    );
    assert!(!meetbot_testsupport::contains(
        &meetbot_testsupport::raw_bytes(w._dir.path()),
        &sealed
    ));
    let audit = w.store.list_audit(&w.a).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "retention.purge")
        .unwrap();
    assert_eq!(
        (entry.actor.as_str(), entry.target.as_str()),
        ("system:retention", "transcripts=1")
    );
    // Nothing else expired: a second purge removes and logs nothing.
    assert!(
        meetbot_store::retention::purge_all(&*w.store, Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_deleted_session_is_hidden_at_once_restorable_by_an_owner_and_erased_with_a_receipt() {
    let w = world().await;
    let m = w.m_other.clone();
    // A delivery still pending for it.
    let outbox = meetbot_delivery::outbox::Outbox::new(
        w.store.clone(),
        w.tenants.clone(),
        Default::default(),
    );
    let notice = notice_for(&m);
    outbox
        .enqueue(&w.a, DeliveryChannel::Email, "ops@clinic.test", &notice)
        .await
        .unwrap();
    let o = &w.tokens.owner;
    let (s, del) = w
        .call(
            Some(&w.tokens.admin),
            Method::DELETE,
            &format!("/v1/meetings/{m}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{del}");
    assert!(del["restorable_until"].is_string() && del["receipt"].is_null());
    for path in [
        format!("/v1/meetings/{m}"),
        format!("/v1/meetings/{m}/transcript"),
        format!("/v1/meetings/{m}/summary"),
        format!("/v1/bots/{}", w.job_other),
    ] {
        let (s, _) = w.call(Some(o), Method::GET, &path, None).await;
        assert_eq!(s, 404, "{path} is hidden at once");
    }
    let (_, list) = w.call(Some(o), Method::GET, "/v1/meetings", None).await;
    assert!(!list.to_string().contains(&m));
    let (_, bots) = w.call(Some(o), Method::GET, "/v1/bots", None).await;
    assert!(!bots.to_string().contains(&w.job_other));
    let stored = w.store.get_meeting(&w.a, &m).await.unwrap().unwrap();
    assert!(!stored.wants_bot, "no bot for a deleted session");
    let d = &w.store.list_deliveries(&w.a, Some(&m)).await.unwrap()[0].value;
    assert!(matches!(&d.state, DeliveryState::GaveUp { reason } if reason.contains("deleted")));

    // Restored by an owner: back with its transcript.
    let (s, _) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            &format!("/v1/meetings/{m}/restore"),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = w
        .call(
            Some(o),
            Method::POST,
            &format!("/v1/meetings/{m}/restore"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{m}/transcript"),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // Erased now: nothing of it is left in the raw store but ids in the receipt.
    let sealed_title = serde_json::to_value(&stored.title).unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(meetbot_testsupport::contains(
        &meetbot_testsupport::raw_bytes(w._dir.path()),
        sealed_title.as_bytes()
    ));
    let (s, del) = w
        .call(
            Some(o),
            Method::DELETE,
            &format!("/v1/meetings/{m}?permanently=true"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{del}");
    let r = &del["receipt"];
    assert_eq!(r["scope"], "session");
    assert_eq!(r["verified"], true);
    assert_eq!(r["requested_by"], format!("user:{}", w.owner.id));
    assert_eq!(
        r["counts"],
        json!({"transcripts": 1, "transcript_parts": 0, "summaries": 1, "deliveries": 1, "bot_jobs": 1, "meetings": 1})
    );
    assert!(!meetbot_testsupport::contains(
        &meetbot_testsupport::raw_bytes(w._dir.path()),
        sealed_title.as_bytes()
    ));
    assert!(
        w.store
            .get_bot_job(&w.a, &w.job_other)
            .await
            .unwrap()
            .is_none()
    );
    let (s, _) = w
        .call(
            Some(o),
            Method::POST,
            &format!("/v1/meetings/{m}/restore"),
            None,
        )
        .await;
    assert_eq!(s, 404, "an erased session cannot come back");

    // A transcript alone.
    let (s, r) = w
        .call(
            Some(o),
            Method::DELETE,
            &format!("/v1/meetings/{}/transcript", w.m_attended),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["scope"], "transcript");
    let (s, _) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{}/transcript", w.m_attended),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{}/summary", w.m_attended),
            None,
        )
        .await;
    assert_eq!(s, 200, "the summary stays");

    // Soft-deleted past the recovery window: the purge erases it, with its own receipt.
    let (s, _) = w
        .call(
            Some(o),
            Method::DELETE,
            &format!("/v1/meetings/{}", w.m_own),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let early = meetbot_store::retention::purge_all(&*w.store, Utc::now())
        .await
        .unwrap();
    assert!(early.is_empty(), "still restorable: {early:?}");
    let later = Utc::now() + chrono::Duration::days(31);
    let purged = meetbot_store::retention::purge_all(&*w.store, later)
        .await
        .unwrap();
    // (The API sessions minted an hour long expire by then too.)
    let of_a = &purged.iter().find(|(t, _)| *t == w.a).unwrap().1;
    assert!(
        of_a.contains(&("deleted_sessions".to_string(), 1)),
        "{purged:?}"
    );
    assert!(w.store.get_meeting(&w.a, &w.m_own).await.unwrap().is_none());

    // Every receipt is listed, verifies, and none belongs to another tenant. (The purge at
    // +31 days also removed the sessions it found expired: sign in again.)
    let o = &mint(&*w.store, &w.a, &w.owner.id, chrono::Duration::hours(1)).await;
    let foreign_user = w.store.list_users(&w.b).await.unwrap()[0].id.clone();
    let foreign = mint(&*w.store, &w.b, &foreign_user, chrono::Duration::hours(1)).await;
    let (_, list) = w
        .call(Some(o), Method::GET, "/v1/privacy/deletions", None)
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|r| r["verified"] == true));
    assert_eq!(items[2]["requested_by"], "system:retention");
    let (_, theirs) = w
        .call(Some(&foreign), Method::GET, "/v1/privacy/deletions", None)
        .await;
    assert!(theirs["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_is_erased_from_every_session_they_attended_with_a_receipt_naming_them_by_hash() {
    let w = world().await;
    let also = meeting(
        &w.tenants,
        &w.a,
        None,
        &["adam@clinic.test", "X@Partner.test"],
    )
    .await;
    let (s, r) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/clients/erase",
            Some(&json!({"email": "x@partner.test"})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["scope"], "client");
    assert_eq!(r["counts"]["sessions"], 2);
    assert_eq!(r["verified"], true);
    assert!(!r.to_string().contains("partner.test"), "{r}");
    for m in [&w.m_own, &also] {
        assert!(w.store.get_meeting(&w.a, m).await.unwrap().is_none());
    }
    assert!(
        w.store
            .get_meeting(&w.a, &w.m_other)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        w.store
            .get_bot_job(&w.a, &w.job_own)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_erased_account_loses_its_keys_and_database_and_a_backup_of_its_records_cannot_be_opened()
 {
    let w = world().await;
    let file = w
        ._dir
        .path()
        .join("s")
        .join("tenants")
        .join(format!("{}.sqlite3", w.a));
    assert!(file.exists(), "{}", file.display());
    // A backup: every byte of the store's files (database and write-ahead log) as they were.
    let backup = meetbot_testsupport::raw_bytes(&w._dir.path().join("s"));
    let tr = w
        .store
        .transcript_for_meeting(&w.a, &w.m_other)
        .await
        .unwrap()
        .unwrap();
    let (s, r) = w
        .call(
            Some(&w.tokens.owner),
            Method::DELETE,
            "/v1/account",
            Some(&json!({"confirm": w.a.to_string()})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["scope"], "tenant");
    assert_eq!(r["verified"], true);
    assert!(!r["keys_destroyed"].as_array().unwrap().is_empty());
    // Every token of the tenant is dead; the other tenant is untouched.
    let (s, _) = w
        .call(Some(&w.tokens.admin), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = w
        .call(Some(&w.tokens.foreign), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 200);
    // Database gone, wrapped keys gone; the backup still holds the sealed transcript ...
    assert!(!file.exists());
    assert!(w.store.wrapped_keys(&w.a).await.unwrap().is_empty());
    let sealed = serde_json::to_value(&tr.segments).unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(meetbot_testsupport::contains(&backup, sealed.as_bytes()));
    // ... which nothing can open any more: no data key of the tenant exists.
    assert!(w.tenants.vault(&w.a).await.is_err());
    // The receipt stays in the deletion log, outside the erased database.
    let receipts = w.store.deletion_receipts(Some(&w.a)).await.unwrap();
    assert!(
        receipts
            .iter()
            .any(|x| x.scope == "tenant" && meetbot_store::vault::verify_receipt(x))
    );
}

#[tokio::test]
async fn a_person_is_erased_from_attendees_speech_and_summaries_across_the_tenant() {
    use meetbot_transcriber::summarize::{ActionItem, SummaryDoc};
    let w = world().await;
    let v = w.tenants.vault(&w.a).await.unwrap();
    let m = meeting(
        &w.tenants,
        &w.a,
        None,
        &["adam@clinic.test", "sarah.connor@partner.test"],
    )
    .await;
    said(
        &w,
        &m,
        &[
            ("Sarah Connor", "My diagnosis came back on Monday."),
            ("Adam", "Thanks Sarah, I will call you."),
        ],
    )
    .await;
    let sum = SummaryDoc {
        overview: "Sarah Connor shared her results.".into(),
        decisions: vec![],
        action_items: vec![ActionItem {
            owner: Some("Adam".into()),
            text: "call Sarah Connor back".into(),
        }],
        topics: vec![],
    };
    let sid = format!("sum-{m}");
    let body = v
        .seal::<Summary>(&sid, "body", &serde_json::to_vec(&sum).unwrap())
        .unwrap();
    w.store
        .put_summary(
            &w.a,
            &Summary {
                id: sid,
                meeting_id: m.clone(),
                body,
                created_at: Utc::now(),
                expires_at: None,
                held: None,
            },
        )
        .await
        .unwrap();

    // A meeting she did not attend, where she is mentioned by full name.
    let elsewhere = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
    said(
        &w,
        &elsewhere,
        &[("Adam", "Ask Sarah Connor about the referral.")],
    )
    .await;
    let (s, r) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/people/erase",
            Some(&json!({"email": "Sarah.Connor@partner.test", "name": "Sarah Connor"})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["scope"], "person");
    assert_eq!(r["counts"]["meetings"], 1);
    assert_eq!(r["counts"]["transcript_segments"], 1);
    assert!(!r.to_string().to_lowercase().contains("sarah"));

    let o = &w.tokens.owner;
    let (_, meeting_out) = w
        .call(Some(o), Method::GET, &format!("/v1/meetings/{m}"), None)
        .await;
    assert!(
        !meeting_out.to_string().contains("sarah.connor"),
        "{meeting_out}"
    );
    assert_eq!(meeting_out["people"].as_array().unwrap().len(), 1);
    let (_, t) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{m}/transcript"),
            None,
        )
        .await;
    assert_eq!(t["segments"][0]["text"], "[erased]");
    assert_eq!(t["segments"][0]["speaker"], "[erased]");
    assert_eq!(
        t["segments"][1]["text"],
        "Thanks [erased], I will call you."
    );
    // Who was in the call: her stay is kept, her name is not.
    let stays = t["participants"].as_array().unwrap();
    assert_eq!(stays.len(), 2, "{t}");
    assert_eq!(stays[0]["name"], "[erased]");
    assert_eq!(
        stays[0]["participant"], "[erased]",
        "an id made of the name goes too"
    );
    assert_eq!(t["segments"][0]["participant"], "[erased]");
    assert_eq!(stays[1]["name"], "Adam");
    let (_, s2) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{m}/summary"),
            None,
        )
        .await;
    assert!(!s2.to_string().contains("Sarah"), "{s2}");
    assert_eq!(s2["action_items"][0]["text"], "call [erased] back");
    // Where they did not attend, only their full name and address are replaced: another Sarah
    // keeps her first name.
    let (_, other) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{}/transcript", w.m_other),
            None,
        )
        .await;
    assert_eq!(
        other["segments"][0]["text"],
        "Sarah will send the contract by Friday."
    );
}

/// Waits until no export of tenant A (or B) runs.
async fn exports_idle(w: &World) {
    let start = std::time::Instant::now();
    for t in [&w.a, &w.b] {
        while w
            .store
            .lease_holder(&format!("export:{t}"))
            .await
            .unwrap()
            .is_some()
        {
            assert!(start.elapsed() < std::time::Duration::from_secs(20));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Downloads through a download link as an API client does: the token from the link's
/// fragment in the `X-Export-Token` header.
async fn download(w: &World, link: &str) -> reqwest::Response {
    let (url, token) = link
        .split_once("#token=")
        .expect("the token is in the fragment");
    w.http
        .get(url)
        .header("x-export-token", token)
        .send()
        .await
        .unwrap()
}

async fn finished_export(w: &World, body: Value) -> (Value, String) {
    let (s, started) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/export",
            Some(&body),
        )
        .await;
    assert_eq!(s, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let url = started["download_url"].as_str().unwrap().to_string();
    let start = std::time::Instant::now();
    loop {
        let (_, st) = w
            .call(
                Some(&w.tokens.owner),
                Method::GET,
                &format!("/v1/privacy/exports/{id}"),
                None,
            )
            .await;
        if st["state"] == "ready" {
            assert_eq!(st["done"], st["total"]);
            assert!(st["download_url"].is_null(), "the link is shown once");
            return (st, url);
        }
        assert_ne!(st["state"], "failed", "{st}");
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn unpack(gz: &[u8]) -> BTreeMap<String, String> {
    let tarball = {
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut v).unwrap();
        v
    };
    let mut a = tar::Archive::new(&tarball[..]);
    let mut files = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().to_string();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut e, &mut s).unwrap();
        files.insert(name, s);
    }
    files
}

#[tokio::test]
async fn an_export_holds_everything_as_json_and_text_behind_a_link_that_expires() {
    let w = world_with(
        Opts {
            export_ttl_seconds: 3,
            ..Default::default()
        },
        None,
    )
    .await;
    let (_, url) = finished_export(&w, json!({})).await;
    // The link works without a session; it is the credential.
    let resp = download(&w, &url).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/gzip");
    let files = unpack(&resp.bytes().await.unwrap());
    let doc: Value = serde_json::from_str(&files["export.json"]).unwrap();
    assert_eq!(doc["format"], "meetbot-export/1");
    let ids: BTreeSet<String> = doc["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        [w.m_own.clone(), w.m_attended.clone(), w.m_other.clone()].into()
    );
    assert_eq!(doc["users"].as_array().unwrap().len(), 3);
    let text = &files[&format!("transcripts/{}.txt", w.m_attended)];
    assert!(
        text.contains("[00:00] Sarah: Sarah will send the contract by Friday."),
        "{text}"
    );
    let m = doc["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == w.m_attended.as_str())
        .unwrap();
    assert_eq!(m["summary"]["action_items"][0]["owner"], "Sarah");
    assert_eq!(m["title"], "Quarterly review");
    // A wrong token, another tenant's id in it, or another export's id: not found.
    let bad = url.replace("#token=mbx_", "#token=mbx_x");
    assert_eq!(download(&w, &bad).await.status(), 404);
    let forged = url.replacen(
        &format!("#token=mbx_{}", w.a),
        &format!("#token=mbx_{}", w.b),
        1,
    );
    assert_ne!(forged, url);
    assert_eq!(download(&w, &forged).await.status(), 404);
    // The archive is sealed in the store: its text is not in the raw bytes.
    assert!(!meetbot_testsupport::contains(
        &meetbot_testsupport::raw_bytes(w._dir.path()),
        b"meetbot-export/1"
    ));
    // The download is audited.
    assert!(
        w.store
            .list_audit(&w.a)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "export.download")
    );
    // After its lifetime, the link and the export are gone.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_eq!(download(&w, &url).await.status(), 404);
}

#[tokio::test]
async fn a_persons_export_holds_only_the_meetings_they_attended_and_their_user_record() {
    let w = world().await;
    let (_, url) = finished_export(&w, json!({"email": "Mia@Clinic.test"})).await;
    let files = unpack(&download(&w, &url).await.bytes().await.unwrap());
    let doc: Value = serde_json::from_str(&files["export.json"]).unwrap();
    assert_eq!(doc["scope"], "person");
    let ids: Vec<&str> = doc["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![w.m_attended.as_str()]);
    assert_eq!(doc["users"].as_array().unwrap().len(), 1);
    assert_eq!(doc["users"][0]["email"], "mia@clinic.test");
    assert!(doc.get("audit").is_none() && doc.get("delivery_targets").is_none());
    assert_eq!(
        files.len(),
        2,
        "export.json and the one transcript: {:?}",
        files.keys()
    );
}

#[tokio::test]
async fn with_a_customer_key_delivered_meetings_are_left_only_as_ciphertext_the_service_cannot_open()
 {
    use meetbot_delivery::hold::{generate, hold_delivered, open_with};
    let w = world().await;
    let (identity, recipient) = generate();
    let set = |k: &str| json!({"customer_key": k});
    let (s, _) = w
        .call(
            Some(&w.tokens.admin),
            Method::PATCH,
            "/v1/settings",
            Some(&set(&recipient)),
        )
        .await;
    assert_eq!(s, 403, "owners only");
    let (s, body) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(&set("age1notakey")),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("customer_key")
    );
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(&set(&recipient)),
        )
        .await;
    assert_eq!(s, 200);

    // m_other's summary is still waiting to be delivered: it stays readable until then.
    let outbox = meetbot_delivery::outbox::Outbox::new(
        w.store.clone(),
        w.tenants.clone(),
        Default::default(),
    );
    let notice = notice_for(&w.m_other);
    outbox
        .enqueue(&w.a, DeliveryChannel::Email, "ops@clinic.test", &notice)
        .await
        .unwrap();
    let before = w
        .store
        .transcript_for_meeting(&w.a, &w.m_attended)
        .await
        .unwrap()
        .unwrap();
    let server_copy = serde_json::to_value(&before.segments).unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        hold_delivered(&*w.store, &w.tenants, &w.a).await.unwrap(),
        1
    );

    let o = &w.tokens.owner;
    let (s, t) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{}/transcript", w.m_attended),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(t["segments"], json!([]));
    let sealed = t["customer_sealed"].as_str().unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    // The holder opens it; the service's own copy under the tenant key is gone.
    let plain = open_with(&identity, sealed.as_bytes()).unwrap();
    assert!(String::from_utf8_lossy(&plain).contains("Sarah will send the contract by Friday."));
    let after = w
        .store
        .transcript_for_meeting(&w.a, &w.m_attended)
        .await
        .unwrap()
        .unwrap();
    let v = w.tenants.vault(&w.a).await.unwrap();
    assert_eq!(
        &v.open::<Transcript>(&after.id, "segments", &after.segments)
            .unwrap()[..],
        b"{}"
    );
    assert!(!meetbot_testsupport::contains(
        &meetbot_testsupport::raw_bytes(w._dir.path()),
        server_copy.as_bytes()
    ));
    let (_, sm) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{}/summary", w.m_attended),
            None,
        )
        .await;
    assert_eq!(sm["overview"], "");
    let sum = open_with(
        &identity,
        sm["customer_sealed"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&sum).contains("send the contract by Friday"));
    // Still waiting: readable.
    let (_, other) = w
        .call(
            Some(o),
            Method::GET,
            &format!("/v1/meetings/{}/transcript", w.m_other),
            None,
        )
        .await;
    assert!(
        other["customer_sealed"].is_null() && !other["segments"].as_array().unwrap().is_empty()
    );
    // Delivered: sealed too.
    let d = &w
        .store
        .list_deliveries(&w.a, Some(&w.m_other))
        .await
        .unwrap()[0];
    let mut sent = d.value.clone();
    sent.state = DeliveryState::Sent { at: Utc::now() };
    w.store
        .update_delivery(&w.a, &sent, d.version)
        .await
        .unwrap();
    assert_eq!(
        hold_delivered(&*w.store, &w.tenants, &w.a).await.unwrap(),
        1
    );
    assert_eq!(
        hold_delivered(&*w.store, &w.tenants, &w.a).await.unwrap(),
        0,
        "once"
    );
    // What this turns off says so: a person's erasure cannot reach inside sealed records.
    let (_, r) = w
        .call(
            Some(o),
            Method::POST,
            "/v1/privacy/people/erase",
            Some(&json!({"email": "mia@clinic.test"})),
        )
        .await;
    assert_eq!(r["counts"]["customer_sealed_untouched"], 1);
}

/// A summary notice for `meeting`, for the outbox.
fn notice_for(meeting: &str) -> meetbot_delivery::notice::Notice {
    meetbot_delivery::notice::Notice {
        meeting_id: meeting.to_string(),
        title: "Quarterly review".into(),
        overview: "o".into(),
        decisions: vec![],
        action_items: vec![],
        link: None,
    }
}

#[tokio::test]
async fn retention_rules_per_client_and_series_reach_stored_records_and_the_purge_removes_them() {
    let w = world().await;
    let client = meeting(
        &w.tenants,
        &w.a,
        None,
        &["adam@clinic.test", "Ann@Client.test"],
    )
    .await;
    let board = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
    let plain = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
    let mut m = w.store.get_meeting(&w.a, &board).await.unwrap().unwrap();
    m.series_id = Some("board-series".into());
    w.store.put_meeting(&w.a, &m).await.unwrap();
    // Each stored ten days ago, with no expiry yet.
    let ten_days_ago = Utc::now() - chrono::Duration::days(10);
    for id in [&client, &board, &plain] {
        transcript_and_summary(&w.tenants, &w.a, id).await;
        let mut tr = w
            .store
            .transcript_for_meeting(&w.a, id)
            .await
            .unwrap()
            .unwrap();
        tr.created_at = ten_days_ago;
        w.store.put_transcript(&w.a, &tr).await.unwrap();
        let mut sm = w
            .store
            .summary_for_meeting(&w.a, id)
            .await
            .unwrap()
            .unwrap();
        sm.created_at = ten_days_ago;
        w.store.put_summary(&w.a, &sm).await.unwrap();
    }
    let (_, detail) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            &format!("/v1/meetings/{board}"),
            None,
        )
        .await;
    assert_eq!(detail["series_id"], "board-series");

    let patch = json!({
        "transcript_retention_days": 30,
        "summary_retention_days": 0,
        "retention_rules": [
            {"client": "ann@client.test", "transcript_days": 7, "summary_days": 7},
            {"client": "@client.test", "transcript_days": 90},
            {"series": "board-series", "transcript_days": 365}
        ]
    });
    let (s, out) = w
        .call(
            Some(&w.tokens.admin),
            Method::PATCH,
            "/v1/settings",
            Some(&patch),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["retention_rules"].as_array().unwrap().len(), 3);
    assert_eq!(out["retention_rules"][0]["client"], "ann@client.test");
    assert_eq!(out["summary_retention_days"], 0);
    // The client's meeting: 7 days (the shortest rule covering it) are already past.
    for path in [
        format!("/v1/meetings/{client}/transcript"),
        format!("/v1/meetings/{client}/summary"),
    ] {
        let (s, _) = w
            .call(Some(&w.tokens.owner), Method::GET, &path, None)
            .await;
        assert_eq!(s, 404, "{path}");
    }
    let expiry = |id: &str| {
        let (w, id) = (&w, id.to_string());
        async move {
            let tr = w
                .store
                .get_transcript(&w.a, &format!("tr-{id}"))
                .await
                .unwrap()
                .unwrap();
            let sm = w.store.summary_for_meeting(&w.a, &id).await.unwrap();
            (tr.expires_at, sm.map(|s| s.expires_at))
        }
    };
    // The series: a year; the rest: the tenant's 30 days; summaries kept until deleted.
    assert_eq!(
        expiry(&board).await,
        (Some(ten_days_ago + chrono::Duration::days(365)), Some(None))
    );
    assert_eq!(
        expiry(&plain).await,
        (Some(ten_days_ago + chrono::Duration::days(30)), Some(None))
    );
    // Expired means gone from exports too, before the purge runs.
    let (_, url) = finished_export(&w, json!({})).await;
    let files = unpack(&download(&w, &url).await.bytes().await.unwrap());
    assert!(!files.contains_key(&format!("transcripts/{client}.txt")));
    assert!(files.contains_key(&format!("transcripts/{board}.txt")));
    // The purge removes the client's records for good, and logs it.
    let purged = meetbot_store::retention::purge_all(&*w.store, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        purged,
        vec![(
            w.a.clone(),
            vec![("transcripts".to_string(), 1), ("summaries".to_string(), 1)]
        )]
    );
    assert!(
        w.store
            .get_transcript(&w.a, &format!("tr-{client}"))
            .await
            .unwrap()
            .is_none()
    );
    // Client addresses in rules are sealed like every other address.
    let raw = meetbot_testsupport::raw_bytes(w._dir.path());
    assert!(!meetbot_testsupport::contains(&raw, b"client.test"));
    // Refused, each with the rule named; nothing changes.
    for bad in [
        json!([{"client": "not-an-address", "transcript_days": 1}]),
        json!([{"client": "a@b.test", "series": "s", "transcript_days": 1}]),
        json!([{"series": "s"}]),
        json!([{"series": "s", "summary_days": 99999}]),
    ] {
        settings_refused(&w, &json!({"retention_rules": bad}), "retention_rules[0]").await;
    }
    // Shorter for everyone: the series keeps its year, the rest follows at once.
    let (s, _) = w
        .call(
            Some(&w.tokens.admin),
            Method::PATCH,
            "/v1/settings",
            Some(&json!({"transcript_retention_days": 5})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            &format!("/v1/meetings/{plain}/transcript"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            &format!("/v1/meetings/{board}/transcript"),
            None,
        )
        .await;
    assert_eq!(s, 200);
}

/// SSRF through the API: a member connects an "ICS feed" at an internal address. Refused with
/// the one generic error, nothing stored, and nothing connected (a listener on 127.0.0.1
/// counts 0), whether the address is written as a literal or as a name.
#[tokio::test]
async fn an_ics_feed_at_a_loopback_address_is_refused_through_the_api_without_connecting() {
    let w = world().await;
    let listener = meetbot_testsupport::egress::CountingListener::start().await;
    let before = w.store.list_connections(&w.a).await.unwrap().len();
    for url in [
        format!("http://127.0.0.1:{}/cal.ics", listener.port),
        format!("https://127.0.0.1:{}/cal.ics", listener.port),
        format!("http://[::ffff:127.0.0.1]:{}/cal.ics", listener.port),
    ] {
        let (s, body) = w
            .call(
                Some(&w.tokens.member),
                Method::POST,
                "/v1/calendars/ics",
                Some(&json!({ "feed_url": url })),
            )
            .await;
        assert_eq!(s, 400, "{url}: {body}");
        assert!(
            body.to_string().contains(meetbot_egress::UNAVAILABLE),
            "{url}: {body}"
        );
    }
    assert_eq!(w.store.list_connections(&w.a).await.unwrap().len(), before);
    // A name that resolves to loopback: refused when it is looked up (in the request, or in
    // the first round if that runs in the background).
    let (s, body) = w
        .call(
            Some(&w.tokens.member),
            Method::POST,
            "/v1/calendars/ics",
            Some(&json!({ "feed_url": format!("http://localhost:{}/cal.ics", listener.port) })),
        )
        .await;
    assert!(
        (s == 400 && body.to_string().contains(meetbot_egress::UNAVAILABLE)) || s == 202,
        "{s} {body}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(listener.count(), 0, "nothing connected to 127.0.0.1");
}

// ---- identity across tenants, and brute force (issue 19, items 4 and 5) ----

/// The code `secret_b32` gives at unix time `at`.
fn code_at(secret_b32: &str, at: i64) -> String {
    let secret = totp_rs::Secret::Encoded(secret_b32.into())
        .to_bytes()
        .unwrap();
    let t =
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "x".into()).unwrap();
    t.generate(at.max(0) as u64)
}

/// A session of `user` made `age` ago, as sign-in makes it (`mfa_passed` as given).
async fn session_of(w: &World, user: &str, age: chrono::Duration, mfa_passed: bool) -> String {
    let (token, id) = auth::new_session_token(&w.a).unwrap();
    let then = Utc::now() - age;
    w.store
        .put_session(
            &w.a,
            &Session {
                id,
                user_id: user.into(),
                created_at: then,
                last_seen_at: Utc::now(),
                expires_at: Utc::now() + chrono::Duration::hours(1),
                mfa_passed,
                mfa_at: None,
            },
        )
        .await
        .unwrap();
    token
}

/// The member enrols in TOTP (confirmed with the current code); returns the secret and a new
/// session of theirs that still owes a code.
async fn member_with_totp_owed(w: &World) -> (String, String) {
    let tok = &w.tokens.member;
    let (s, enrol) = w.call(Some(tok), Method::POST, "/v1/me/totp", None).await;
    assert_eq!(s, 201, "{enrol}");
    let secret = enrol["secret"].as_str().unwrap().to_string();
    let (s, body) = w
        .call(
            Some(tok),
            Method::POST,
            "/v1/me/totp/confirm",
            Some(&json!({"code": code_now(&secret)})),
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let pending = session_of(w, &w.member.id, chrono::Duration::zero(), false).await;
    (secret, pending)
}

#[tokio::test]
async fn a_session_signed_out_while_a_totp_check_is_in_flight_stays_signed_out() {
    let w = world().await;
    // Many people, each owing a code; each signs out while giving the right one. Whichever
    // ends first, the session must be gone afterwards (the check never writes it back).
    let mut people = Vec::new();
    for i in 0..16 {
        let u = create_user(
            &*w.tenants,
            &w.a,
            &format!("racer{i}@clinic.test"),
            Role::Member,
        )
        .await
        .unwrap();
        let full = session_of(&w, &u.id, chrono::Duration::zero(), true).await;
        let (s, enrol) = w.call(Some(&full), Method::POST, "/v1/me/totp", None).await;
        assert_eq!(s, 201, "{enrol}");
        let secret = enrol["secret"].as_str().unwrap().to_string();
        // Confirmed with the previous step's code, so the current one is still unspent.
        let prev = code_at(&secret, Utc::now().timestamp() - 30);
        let (s, body) = w
            .call(
                Some(&full),
                Method::POST,
                "/v1/me/totp/confirm",
                Some(&json!({ "code": prev })),
            )
            .await;
        assert_eq!(s, 204, "{body}");
        let pending = session_of(&w, &u.id, chrono::Duration::zero(), false).await;
        people.push((secret, pending));
    }
    let races = people.iter().enumerate().map(|(i, (secret, pending))| {
        let w = &w;
        async move {
            let body = json!({ "code": code_now(secret) });
            let check = w.call(Some(pending), Method::POST, "/v1/auth/totp", Some(&body));
            let out = async {
                tokio::time::sleep(std::time::Duration::from_micros(300 * i as u64)).await;
                w.call(Some(pending), Method::POST, "/v1/auth/logout", None)
                    .await
            };
            let ((c, _), (o, body)) = tokio::join!(check, out);
            assert!([204, 401].contains(&c.as_u16()), "totp: {c}");
            assert!([204, 401].contains(&o.as_u16()), "logout: {o} {body}");
        }
    });
    futures::future::join_all(races).await;
    for (_, pending) in &people {
        let (t, id) = meetbot_store::browser::session_id(pending).unwrap();
        assert!(
            w.store.get_session(&t, &id).await.unwrap().is_none(),
            "a signed-out session came back"
        );
        let (s, _) = w.call(Some(pending), Method::GET, "/v1/me", None).await;
        assert_eq!(s, 401);
    }
}

/// A request from `client` (as a proxy would forward it) to a public route.
async fn from_client(w: &World, client: &str) -> StatusCode {
    w.http
        .get(format!("{}/v1/auth/providers", w.base))
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_get_a_fresh_bucket() {
    let w = world_with(
        Opts {
            per_ip_per_minute: 3,
            ..Default::default()
        },
        None,
    )
    .await;
    // No trusted proxy: every request is the TCP peer's, whatever the header claims.
    for i in 0..3 {
        assert_eq!(from_client(&w, &format!("127.0.0.{}", 10 + i)).await, 200);
    }
    assert_eq!(from_client(&w, "127.0.0.99").await, 429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let w = world_with(
        Opts {
            per_ip_per_minute: 3,
            trusted_proxies: vec!["127.0.0.1/32"],
            ..Default::default()
        },
        None,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(from_client(&w, "127.0.0.10").await, 200);
    }
    assert_eq!(from_client(&w, "127.0.0.10").await, 429);
    // Another client behind the same proxy is not held by the first one's bucket...
    assert_eq!(from_client(&w, "127.0.0.11").await, 200);
    // ...and a client cannot escape its bucket by writing its own header in front: the proxy
    // appends the address it saw, and the right-most untrusted one counts.
    assert_eq!(from_client(&w, "127.0.0.77, 127.0.0.10").await, 429);
}

#[tokio::test]
async fn made_up_tokens_for_a_tenant_do_not_lock_out_its_real_users() {
    let w = world_with(
        Opts {
            per_ip_per_minute: 30,
            per_tenant_per_minute: 5,
            trusted_proxies: vec!["127.0.0.1/32"],
            ..Default::default()
        },
        None,
    )
    .await;
    let forged = format!("mbs_{}_{}", w.a, "0".repeat(64));
    let attack = |tok: String| {
        w.http
            .get(format!("{}/v1/meetings", w.base))
            .header("x-forwarded-for", "127.0.0.66")
            .bearer_auth(tok)
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(attack(forged.clone()).await.unwrap().status().as_u16());
    }
    // Failed authentications cost the attacker's address (twice each), never the tenant.
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let user = w
        .http
        .get(format!("{}/v1/meetings", w.base))
        .header("x-forwarded-for", "127.0.0.77")
        .bearer_auth(&w.tokens.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 200, "the tenant's people still get in");
}

#[tokio::test]
async fn made_up_export_tokens_for_a_tenant_do_not_lock_out_its_real_users() {
    let w = world_with(
        Opts {
            per_ip_per_minute: 30,
            per_tenant_per_minute: 5,
            trusted_proxies: vec!["127.0.0.1/32"],
            ..Default::default()
        },
        None,
    )
    .await;
    // The download route needs no sign-in: anyone can post a token naming the tenant.
    let forged = format!("token=mbx_{}_x", w.a);
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let r = w
            .http
            .post(format!("{}/v1/privacy/exports/exp1/download", w.base))
            .header("x-forwarded-for", "127.0.0.66")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(forged.clone())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    // Wrong tokens cost the attacker's address (twice each), never the tenant.
    assert!(statuses[..5].iter().all(|s| *s == 404), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let user = w
        .http
        .get(format!("{}/v1/meetings", w.base))
        .header("x-forwarded-for", "127.0.0.77")
        .bearer_auth(&w.tokens.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 200, "the tenant's people still get in");
}

#[tokio::test]
async fn totp_guessing_locks_the_user_after_five_failures_and_says_when_to_retry() {
    let w = world().await;
    let (secret, pending) = member_with_totp_owed(&w).await;
    let guess = |code: String| {
        let w = &w;
        let pending = pending.clone();
        async move {
            w.call(
                Some(&pending),
                Method::POST,
                "/v1/auth/totp",
                Some(&json!({ "code": code })),
            )
            .await
        }
    };
    // Codes no clock gives now (the right one and its neighbours are skipped).
    let now = Utc::now().timestamp();
    let near: BTreeSet<String> = (-2..=2).map(|k| code_at(&secret, now + 30 * k)).collect();
    let wrong: Vec<String> = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .filter(|c| !near.contains(c))
        .take(5)
        .collect();
    for code in &wrong[..4] {
        let (s, body) = guess(code.clone()).await;
        assert_eq!(s, 401, "{body}");
    }
    let resp = w
        .http
        .post(format!("{}/v1/auth/totp", w.base))
        .bearer_auth(&pending)
        .json(&json!({"code": wrong[4]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((240..=300).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "locked");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("locked until"),
        "{body}"
    );
    // Locked: even the right code (the next step's, never used) is refused, from any session.
    let right = code_at(&secret, Utc::now().timestamp() + 30);
    let (s, _) = guess(right.clone()).await;
    assert_eq!(s, 429);
    let other = session_of(&w, &w.member.id, chrono::Duration::zero(), false).await;
    let (s, _) = w
        .call(
            Some(&other),
            Method::POST,
            "/v1/auth/totp",
            Some(&json!({ "code": right })),
        )
        .await;
    assert_eq!(s, 429, "the lock is the user's, kept in the store");
    let u = w.store.get_user(&w.a, &w.member.id).await.unwrap().unwrap();
    assert!(u.totp.unwrap().locked_until.unwrap() > Utc::now());
    let (s, _) = w
        .call(Some(&pending), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 403, "the factor is still owed");
    let audit = w.store.list_audit(&w.a).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "auth.totp_failed").count(),
        5
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "auth.totp_locked").count(),
        1
    );
}

#[tokio::test]
async fn the_same_totp_code_sent_concurrently_passes_once() {
    let w = world().await;
    let (secret, pending) = member_with_totp_owed(&w).await;
    // The next step's code: inside the window and never used.
    let code = code_at(&secret, Utc::now().timestamp() + 30);
    let sessions: Vec<String> = {
        let mut v = vec![pending];
        for _ in 0..3 {
            v.push(session_of(&w, &w.member.id, chrono::Duration::zero(), false).await);
        }
        v
    };
    let w = &w;
    let mut sends = Vec::new();
    for tok in &sessions {
        for _ in 0..2 {
            let code = code.clone();
            sends.push(async move {
                w.call(
                    Some(tok),
                    Method::POST,
                    "/v1/auth/totp",
                    Some(&json!({ "code": code })),
                )
                .await
                .0
            });
        }
    }
    let statuses = futures::future::join_all(sends).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 401),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn an_expired_api_key_is_refused() {
    let w = world().await;
    let create = |body: Value| {
        let w = &w;
        async move {
            w.call(
                Some(&w.tokens.admin),
                Method::POST,
                "/v1/api-keys",
                Some(&body),
            )
            .await
        }
    };
    // 90 days unless asked; at most 365.
    let (s, k) = create(json!({"name": "crm", "scopes": ["meetings:read"]})).await;
    assert_eq!(s, 201, "{k}");
    let expires: chrono::DateTime<Utc> = k["key"]["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - Utc::now()).num_hours();
    assert!((89 * 24..=90 * 24).contains(&days), "{days}");
    let (s, body) =
        create(json!({"name": "x", "scopes": ["meetings:read"], "expires_in_days": 366})).await;
    assert_eq!(s, 400, "{body}");
    let (s, k) =
        create(json!({"name": "short", "scopes": ["meetings:read"], "expires_in_days": 1})).await;
    assert_eq!(s, 201);
    let token = k["token"].as_str().unwrap().to_string();
    let id = k["key"]["id"].as_str().unwrap().to_string();
    let (s, _) = w
        .call(Some(&token), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 200);
    // A day later.
    let mut stored = w.store.get_api_key(&w.a, &id).await.unwrap().unwrap();
    stored.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    w.store.put_api_key(&w.a, &stored).await.unwrap();
    let (s, body) = w
        .call(Some(&token), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    // A key from before keys expired lives 365 days from its creation.
    stored.expires_at = None;
    stored.created_at = Utc::now() - chrono::Duration::days(366);
    w.store.put_api_key(&w.a, &stored).await.unwrap();
    let (s, _) = w
        .call(Some(&token), Method::GET, "/v1/meetings", None)
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_removed_or_demoted_creators_api_keys_stop_working() {
    let w = world().await;
    let key_of = |admin: String| {
        let w = &w;
        async move {
            let tok = mint(&*w.store, &w.a, &admin, chrono::Duration::hours(1)).await;
            let (s, k) = w
                .call(
                    Some(&tok),
                    Method::POST,
                    "/v1/api-keys",
                    Some(&json!({"name": "crm", "scopes": ["meetings:read"]})),
                )
                .await;
            assert_eq!(s, 201, "{k}");
            let token = k["token"].as_str().unwrap().to_string();
            let (s, _) = w
                .call(Some(&token), Method::GET, "/v1/meetings", None)
                .await;
            assert_eq!(s, 200);
            (token, k["key"]["id"].as_str().unwrap().to_string())
        }
    };
    let new_admin = |name: &str| {
        let w = &w;
        let email = format!("{name}@clinic.test");
        async move {
            create_user(&*w.tenants, &w.a, &email, Role::Admin)
                .await
                .unwrap()
                .id
        }
    };
    // Demoted to member: their keys are revoked.
    let demoted = new_admin("dora").await;
    let (key, id) = key_of(demoted.clone()).await;
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            &format!("/v1/users/{demoted}"),
            Some(&json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, body) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 401, "{body}");
    assert!(
        w.store
            .get_api_key(&w.a, &id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    // Removed: the same.
    let removed = new_admin("rory").await;
    let (key, _) = key_of(removed.clone()).await;
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::DELETE,
            &format!("/v1/users/{removed}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 401);
    // Removed some other way (straight from the store, as the CLI could): refused at use.
    let gone = new_admin("gale").await;
    let (key, _) = key_of(gone.clone()).await;
    w.store.delete_user(&w.a, &gone).await.unwrap();
    let (s, body) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 401, "{body}");
    // Promoted to owner: keys stay.
    let promoted = new_admin("pia").await;
    let (key, _) = key_of(promoted.clone()).await;
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            &format!("/v1/users/{promoted}"),
            Some(&json!({"role": "owner"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn an_admin_or_api_key_cannot_send_summaries_to_their_own_slack_or_address_or_switch_redaction_off()
 {
    let w = world().await;
    let patch = |tok: &str, body: Value| {
        let w = &w;
        let tok = tok.to_string();
        async move {
            w.call(Some(&tok), Method::PATCH, "/v1/settings", Some(&body))
                .await
        }
    };
    let (s, body) = patch(
        &w.tokens.owner,
        json!({"redaction": {"enabled": true, "classes": ["NAME", "PHONE"]}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // Redacting more is no weakening: an admin may.
    let (s, body) = patch(
        &w.tokens.admin,
        json!({"redaction": {"enabled": true, "classes": ["NAME", "PHONE", "EMAIL"]}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, k) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"name": "ops", "scopes": ["settings:read", "settings:write"]})),
        )
        .await;
    assert_eq!(s, 201);
    let key = k["token"].as_str().unwrap().to_string();
    let stale_owner = session_of(&w, &w.owner.id, chrono::Duration::minutes(11), true).await;
    let attacks = [
        json!({"delivery": {"slack_token": "xoxb-attackers-own-workspace"}}),
        json!({"delivery": {"slack_channel": "C0ATTACKER"}}),
        json!({"delivery": {"emails": ["me@attacker.test"]}}),
        json!({"redaction": {"enabled": false}}),
        json!({"redaction": {"enabled": true, "classes": ["EMAIL"]}}),
    ];
    for body in &attacks {
        for (who, tok) in [
            ("admin", &w.tokens.admin),
            ("key", &key),
            ("stale owner", &stale_owner),
        ] {
            let (s, resp) = patch(tok, body.clone()).await;
            assert_eq!(s, 403, "{body} as {who}: {resp}");
        }
    }
    let (_, now) = w
        .call(Some(&w.tokens.owner), Method::GET, "/v1/settings", None)
        .await;
    assert_eq!(now["delivery"]["own_slack_token"], false, "{now}");
    assert_eq!(now["delivery"]["emails"], json!([]), "{now}");
    assert_eq!(now["redaction"]["enabled"], true);
    assert_eq!(
        now["redaction"]["classes"],
        json!(["NAME", "PHONE", "EMAIL"])
    );
    // An owner who just signed in may.
    for body in &attacks {
        let (s, resp) = patch(&w.tokens.owner, body.clone()).await;
        assert_eq!(s, 200, "{body}: {resp}");
    }
}

#[tokio::test]
async fn an_admin_cannot_approve_their_own_calendar_connected_with_another_address() {
    let w = world().await;
    let store = &w.store;
    // Calendars of the admin and of the owner whose accounts are not their addresses.
    let mut ids = Vec::new();
    for user in [&w.admin.id, &w.owner.id] {
        let id = connection(&w.tenants, &w.a, user).await;
        let mut c: CalendarConnection = store.get_connection(&w.a, &id).await.unwrap().unwrap();
        c.status = ConnectionStatus::AwaitingApproval;
        store.put_connection(&w.a, &c).await.unwrap();
        ids.push(id);
    }
    let approve = |tok: &str, id: &str| {
        let w = &w;
        let (tok, path) = (tok.to_string(), format!("/v1/calendars/{id}/approve"));
        async move { w.call(Some(&tok), Method::POST, &path, None).await }
    };
    let (s, resp) = approve(&w.tokens.admin, &ids[0]).await;
    assert_eq!(s, 403, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another admin must approve"),
        "{resp}"
    );
    let still = store.get_connection(&w.a, &ids[0]).await.unwrap().unwrap();
    assert_eq!(still.status, ConnectionStatus::AwaitingApproval);
    // Another admin may, either way round.
    let (s, resp) = approve(&w.tokens.owner, &ids[0]).await;
    assert_eq!(s, 200, "{resp}");
    let (s, resp) = approve(&w.tokens.admin, &ids[1]).await;
    assert_eq!(s, 200, "{resp}");
}

#[tokio::test]
async fn weakening_settings_are_refused_for_an_admin_an_api_key_and_an_owner_with_a_stale_sign_in()
{
    let w = world().await;
    let patch = |tok: &str, body: Value| {
        let w = &w;
        let tok = tok.to_string();
        async move {
            w.call(Some(&tok), Method::PATCH, "/v1/settings", Some(&body))
                .await
        }
    };
    // Turning MFA on is no weakening: an admin may.
    let (s, body) = patch(&w.tokens.admin, json!({"require_mfa": true})).await;
    assert_eq!(s, 200, "{body}");
    let (s, k) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"name": "ops", "scopes": ["settings:read", "settings:write"]})),
        )
        .await;
    assert_eq!(s, 201);
    let key = k["token"].as_str().unwrap().to_string();
    let stale_owner = session_of(&w, &w.owner.id, chrono::Duration::minutes(11), true).await;
    let (_, recipient) = meetbot_delivery::hold::generate();
    let weakening = [
        json!({"require_mfa": false}),
        json!({"delivery": {"webhook_url": "https://hooks.attacker.test/x"}}),
        json!({"customer_key": recipient}),
        json!({"allowed_email_domains": ["clinic.test"]}),
        json!({"allowed_issuers": []}),
    ];
    for body in &weakening {
        for (who, tok) in [
            ("admin", &w.tokens.admin),
            ("key", &key),
            ("stale owner", &stale_owner),
        ] {
            let (s, resp) = patch(tok, body.clone()).await;
            assert_eq!(s, 403, "{body} as {who}: {resp}");
            if who == "stale owner" {
                assert!(
                    resp["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("sign in again"),
                    "{resp}"
                );
            }
        }
    }
    let (_, now) = w
        .call(Some(&w.tokens.owner), Method::GET, "/v1/settings", None)
        .await;
    assert_eq!(now["require_mfa"], true);
    assert_eq!(now["delivery"]["webhook_url"], Value::Null);
    assert_eq!(now["customer_key"], Value::Null);
    // An owner who just signed in may.
    for body in &weakening {
        let (s, resp) = patch(&w.tokens.owner, body.clone()).await;
        assert_eq!(s, 200, "{body}: {resp}");
    }
    // So may the stale owner after a fresh TOTP code (stepping up without signing in again).
    let owner_tok = w.tokens.owner.clone();
    let (_, enrol) = w
        .call(Some(&owner_tok), Method::POST, "/v1/me/totp", None)
        .await;
    let secret = enrol["secret"].as_str().unwrap().to_string();
    let (s, _) = w
        .call(
            Some(&owner_tok),
            Method::POST,
            "/v1/me/totp/confirm",
            Some(&json!({"code": code_now(&secret)})),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = patch(&stale_owner, json!({"customer_key": ""})).await;
    assert_eq!(s, 403);
    let (s, body) = w
        .call(
            Some(&stale_owner),
            Method::POST,
            "/v1/auth/totp",
            Some(&json!({"code": code_at(&secret, Utc::now().timestamp() + 30)})),
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let (s, body) = patch(&stale_owner, json!({"customer_key": ""})).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn allowed_domains_and_issuers_are_owner_settings_checked_when_set() {
    let w = world().await;
    let patch = |body: Value| {
        let w = &w;
        async move {
            w.call(
                Some(&w.tokens.owner),
                Method::PATCH,
                "/v1/settings",
                Some(&body),
            )
            .await
        }
    };
    let (s, body) = patch(json!({"allowed_email_domains": ["Clinic.Test", "@partner.test"]})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["allowed_email_domains"],
        json!(["clinic.test", "partner.test"])
    );
    let (s, body) = patch(json!({"allowed_email_domains": ["partner.test"]})).await;
    assert_eq!(s, 400, "the owner's own domain is missing: {body}");
    let (s, body) = patch(json!({"allowed_email_domains": ["not a domain"]})).await;
    assert_eq!(s, 400, "{body}");
    // This world offers no identity provider: no issuer can be named.
    let (s, body) = patch(json!({"allowed_issuers": ["https://idp.elsewhere.test"]})).await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_issuers[0]")
    );
    let (s, body) = patch(json!({"allowed_email_domains": []})).await;
    assert_eq!(s, 200);
    assert_eq!(body["allowed_email_domains"], json!([]));
}

#[tokio::test]
async fn a_token_without_email_verified_is_refused() {
    let (provider, w) = sign_in_world().await;
    let login = |hint: &str| {
        format!(
            "{}/v1/auth/google/login?tenant={}&login_hint={hint}",
            w.base, w.a
        )
    };
    // The provider vouches for no address: whoever runs it could name anyone's.
    let (status, body) = provider
        .browse(&login("unverified/olga@clinic.test"))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not verified"), "{body}");
    let u = w.store.get_user(&w.a, &w.owner.id).await.unwrap().unwrap();
    assert!(u.subject_hash.is_none(), "nothing was bound");
}

#[tokio::test]
async fn the_same_address_from_another_subject_is_refused() {
    let (provider, w) = sign_in_world().await;
    let login = |hint: &str| {
        format!(
            "{}/v1/auth/google/login?tenant={}&login_hint={hint}",
            w.base, w.a
        )
    };
    let (status, body) = provider.browse(&login("olga@clinic.test")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    // The same verified address, another account at the provider.
    let (status, body) = provider
        .browse(&login("other/olga@clinic.test"))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("bound to another sign-in identity"), "{body}");
}

#[tokio::test]
async fn two_first_sign_ins_at_once_from_different_subjects_bind_only_one() {
    let (provider, w) = sign_in_world().await;
    let login = |hint: String| {
        format!(
            "{}/v1/auth/google/login?tenant={}&login_hint={hint}",
            w.base, w.a
        )
    };
    let callback = format!("{}/v1/auth/callback", w.base);
    // The same unbound address from several accounts at the provider, each in its own browser,
    // each stopped just before the redirect back; then all come back at once.
    let mut browsers = Vec::new();
    for i in 0..8 {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let url = provider
            .capture_callback(&jar, &login(format!("acct{i}/olga@clinic.test")), &callback)
            .await
            .unwrap();
        browsers.push((provider.browser(&jar), url));
    }
    let tries = browsers.iter().map(|(browser, url)| async move {
        let r = browser.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    let answers = futures::future::join_all(tries).await;
    let signed_in: Vec<usize> = (0..answers.len())
        .filter(|i| answers[*i].0 == 200)
        .collect();
    assert_eq!(
        signed_in.len(),
        1,
        "exactly one gets a session: {answers:?}"
    );
    for (i, (status, body)) in answers.iter().enumerate() {
        if *status != 200 {
            assert_eq!(*status, 403, "{i}: {body}");
            assert!(body.contains("bound to another sign-in identity"), "{body}");
        }
    }
    // The binding is the winner's, and the winner's sessions are the only ones.
    let olga = w
        .store
        .user_by_email_hash(&w.a, &auth::email_hash(&w.a, "olga@clinic.test"))
        .await
        .unwrap()
        .unwrap();
    assert!(olga.subject_hash.is_some(), "bound");
    let (status, _) = provider
        .browse(&login(format!("acct{}/olga@clinic.test", signed_in[0])))
        .await
        .unwrap();
    assert_eq!(status, 200, "the winner signs in again");
    let loser = (signed_in[0] + 1) % answers.len();
    let (status, _) = provider
        .browse(&login(format!("acct{loser}/olga@clinic.test")))
        .await
        .unwrap();
    assert_eq!(status, 403);
    let after = w.store.get_user(&w.a, &olga.id).await.unwrap().unwrap();
    assert_eq!(after.subject_hash, olga.subject_hash);
}

#[tokio::test]
async fn sign_in_with_an_issuer_or_domain_the_tenant_did_not_allow_is_refused() {
    let (provider, w) = sign_in_world().await;
    let login = |hint: &str| {
        format!(
            "{}/v1/auth/google/login?tenant={}&login_hint={hint}",
            w.base, w.a
        )
    };
    // An invited person at a partner's domain.
    let zed = create_user(&*w.tenants, &w.a, "zed@partner.test", Role::Member)
        .await
        .unwrap();
    let (s, body) = w
        .call(
            Some(&w.tokens.owner),
            Method::PATCH,
            "/v1/settings",
            Some(&json!({"allowed_email_domains": ["clinic.test"], "allowed_issuers": [provider.issuer]})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["allowed_issuers"], json!([provider.issuer]));
    let (status, body) = provider.browse(&login("zed@partner.test")).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("domain"), "{body}");
    assert!(
        w.store
            .get_user(&w.a, &zed.id)
            .await
            .unwrap()
            .unwrap()
            .subject_hash
            .is_none(),
        "nothing was bound"
    );
    let (status, body) = provider.browse(&login("mia@clinic.test")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    // The tenant trusts only another provider (one this deployment offered when it was set).
    let mut s = w.store.get_tenant_settings(&w.a).await.unwrap().unwrap();
    s.allowed_issuers = vec!["https://idp.elsewhere.test".into()];
    w.store.put_tenant_settings(&w.a, &s).await.unwrap();
    let (status, body) = provider.browse(&login("adam@clinic.test")).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("identity provider"), "{body}");
    assert!(
        w.store
            .get_user(&w.a, &w.admin.id)
            .await
            .unwrap()
            .unwrap()
            .subject_hash
            .is_none()
    );
}

/// A raw request (for headers), with an optional bearer token and JSON body.
async fn raw(
    w: &World,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut r = w.http.request(method, format!("{}{path}", w.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.unwrap()
}

fn no_store(r: &reqwest::Response, what: &str) {
    assert_eq!(
        r.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}: {:?}",
        r.headers()
    );
}

/// Attack: a response carrying a credential (the session token at sign-in, a new API key, an
/// export link, the webhook secret or TOTP secret shown once) kept by a shared proxy or the
/// browser's cache, and read from there by the next user of the machine. Every one says
/// `Cache-Control: no-store`.
#[tokio::test]
async fn no_response_carrying_a_token_may_be_cached() {
    let (provider, w) = sign_in_world().await;
    // Sign-in: the callback that answers with the session token.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let login = format!(
        "{}/v1/auth/google/login?tenant={}&login_hint=mia@clinic.test",
        w.base, w.a
    );
    let back = provider
        .capture_callback(&jar, &login, &format!("{}/v1/auth/callback", w.base))
        .await
        .unwrap();
    let r = provider.browser(&jar).get(&back).send().await.unwrap();
    assert_eq!(r.status(), 200);
    no_store(&r, "sign-in callback");
    let body: Value = r.json().await.unwrap();
    assert!(body["token"].as_str().unwrap().starts_with("mbs_"));
    // A new API key.
    let r = raw(
        &w,
        Some(&w.tokens.admin),
        Method::POST,
        "/v1/api-keys",
        Some(&json!({"name": "crm", "scopes": ["meetings:read"]})),
    )
    .await;
    assert_eq!(r.status(), 201);
    no_store(&r, "API key creation");
    // TOTP enrolment (the secret).
    let r = raw(
        &w,
        Some(&w.tokens.member),
        Method::POST,
        "/v1/me/totp",
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    no_store(&r, "TOTP enrolment");
    // The webhook secret, shown once.
    let r = raw(
        &w,
        Some(&w.tokens.owner),
        Method::PATCH,
        "/v1/settings",
        Some(&json!({"delivery": {"webhook_url": "https://hooks.clinic.test/meetbot"}})),
    )
    .await;
    let status = r.status();
    no_store(&r, "webhook secret");
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["delivery"]["new_webhook_secret"].is_string(), "{body}");
    // An export link, its page and its archive.
    let r = raw(
        &w,
        Some(&w.tokens.owner),
        Method::POST,
        "/v1/privacy/export",
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.status(), 202);
    no_store(&r, "export link");
    exports_idle(&w).await;
    let (_, url) = finished_export(&w, json!({})).await;
    let r = download(&w, &url).await;
    assert_eq!(r.status(), 200);
    no_store(&r, "export archive");
    let page = w
        .http
        .get(url.split_once('#').unwrap().0)
        .send()
        .await
        .unwrap();
    no_store(&page, "export link page");
    // And an error answer too.
    let r = raw(&w, Some("mbs_x_y"), Method::GET, "/v1/me", None).await;
    no_store(&r, "an error");
}

/// Attack: the export link's token in the query string (`?token=`) ends up in proxy and
/// access logs, browser history and Referer headers. It is refused there (never checked);
/// the token goes in the `X-Export-Token` header or a POST form, and the link carries it in
/// its fragment, which browsers never send.
#[tokio::test]
async fn an_export_token_in_the_query_string_is_refused() {
    let w = world().await;
    let (started, link) = finished_export(&w, json!({})).await;
    let (url, token) = link.split_once("#token=").unwrap();
    assert!(!url.contains(token));
    assert_eq!(
        url,
        format!(
            "{}/v1/privacy/exports/{}/download",
            w.base,
            started["id"].as_str().unwrap()
        )
    );
    let r = w
        .http
        .get(format!("{url}?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a query token is refused");
    let r = w
        .http
        .post(format!("{url}?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The header works, and a form POST (what the link's page sends).
    assert_eq!(download(&w, &link).await.status(), 200);
    let r = w
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let r = w
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=mbx_wrong_token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Opened in a browser, the link is a page that posts the fragment's token (its script
    // is the only one allowed) and holds no token itself.
    let page = w.http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("method=\"post\"") && html.contains("location.hash"));
    assert!(!html.contains(token));
}

/// Attack: many exports of the whole tenant at once, each held in memory. At most one runs
/// per tenant: a second request answers 409 naming the running one; afterwards the next
/// starts. Another tenant's export is not held up.
#[tokio::test]
async fn a_second_export_while_one_runs_answers_409_with_the_running_exports_id() {
    let w = world().await;
    // Enough meetings that the first export is still running when the second is asked for.
    for _ in 0..300 {
        meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
    }
    let (s, first) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/export",
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, 202, "{first}");
    let id = first["id"].as_str().unwrap();
    let r = raw(
        &w,
        Some(&w.tokens.admin),
        Method::POST,
        "/v1/privacy/export",
        Some(&json!({"email": "mia@clinic.test"})),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.headers()["location"],
        format!("/v1/privacy/exports/{id}").as_str()
    );
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains(id),
        "{body}"
    );
    // The other tenant exports meanwhile.
    let (s, other) = w
        .call(
            Some(&w.tokens.foreign),
            Method::POST,
            "/v1/privacy/export",
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, 202, "{other}");
    exports_idle(&w).await;
    let (_, st) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            &format!("/v1/privacy/exports/{id}"),
            None,
        )
        .await;
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["total"].as_u64().unwrap(), 303);
    let (s, _) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            "/v1/privacy/export",
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, 202, "the next one starts once the first is done");
    exports_idle(&w).await;
}

/// Attack: the one-export-per-tenant lease lapsed while the export waited for a build slot
/// (and after its meetings): a second export of the same tenant started beside it. The lease
/// is renewed on a timer for the export's whole life: held across several of its lifetimes
/// while the export waits, a second request still answers 409.
#[tokio::test]
async fn an_export_waiting_for_a_build_slot_keeps_its_lease_past_its_ttl_and_a_second_gets_409() {
    let ttl = std::time::Duration::from_millis(600);
    let w = world_with(
        Opts {
            export_lease_ttl: ttl,
            ..Default::default()
        },
        None,
    )
    .await;
    // Every build slot of the process is taken (as by other tenants' long exports).
    let slots = meetbot_api::export::BUILDING.acquire_many(2).await.unwrap();
    let (s, first) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/export",
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, 202, "{first}");
    let id = first["id"].as_str().unwrap();
    let lease = format!("export:{}", w.a);
    let start = std::time::Instant::now();
    while start.elapsed() < ttl * 4 {
        tokio::time::sleep(ttl / 4).await;
        assert_eq!(
            w.store.lease_holder(&lease).await.unwrap().as_deref(),
            Some(id),
            "the lease lapsed after {:?} (ttl {ttl:?})",
            start.elapsed()
        );
    }
    let r = raw(
        &w,
        Some(&w.tokens.admin),
        Method::POST,
        "/v1/privacy/export",
        Some(&json!({})),
    )
    .await;
    assert_eq!(r.status(), 409, "a second export started beside the first");
    drop(slots);
    exports_idle(&w).await;
    let (_, st) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            &format!("/v1/privacy/exports/{id}"),
            None,
        )
        .await;
    assert_eq!(st["state"], "ready", "{st}");
}

/// An export is written compressed as it is built and never held beyond
/// `export_max_bytes`: over it, the export fails with the reason (nothing half-made is
/// kept) and the tenant can start the next one.
#[tokio::test]
async fn an_export_over_its_size_cap_fails_with_the_reason_and_frees_the_tenant() {
    let w = world_with(
        Opts {
            export_max_bytes: 600,
            ..Default::default()
        },
        None,
    )
    .await;
    let (s, e) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/export",
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, 202, "{e}");
    exports_idle(&w).await;
    let (_, st) = w
        .call(
            Some(&w.tokens.owner),
            Method::GET,
            &format!("/v1/privacy/exports/{}", e["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st["state"], "failed", "{st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("larger than 600 bytes"),
        "{st}"
    );
    let got = w
        .store
        .get_export(&w.a, e["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(got.archive.is_none());
    let (s, _) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/export",
            Some(&json!({"email": "nobody@clinic.test"})),
        )
        .await;
    assert_eq!(s, 202);
    exports_idle(&w).await;
}

/// Attack: `POST /v1/calendars/ics` with a feed bomb made the API pod fetch, parse and expand
/// it inside the request. Now the address is stored and answered at once (202, `syncing`);
/// the first round runs in the background; `GET /v1/calendars` shows `active`, or `failed`
/// with the reason for the bomb. A user's connections are capped.
#[tokio::test]
async fn connecting_an_ics_feed_answers_202_and_a_bomb_fails_in_the_background_with_its_reason() {
    let w = world().await;
    let from = (Utc::now() - chrono::Duration::hours(1))
        .format("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut bomb = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n");
    while bomb.len() < meetbot_calendar_sync::ics::DEFAULT_MAX_FEED_BYTES - 200 {
        bomb.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:b{}\r\nDTSTART:{from}\r\nRRULE:FREQ=MINUTELY\r\nEND:VEVENT\r\n",
            bomb.len()
        ));
    }
    bomb.push_str("END:VCALENDAR\r\n");
    let bomb: &'static str = bomb.leak();
    // On 127.0.0.2, the address this world's egress allow-list names.
    let (addr, _) = meetbot_testsupport::egress::serve_on(
        [127, 0, 0, 2],
        0,
        axum::Router::new().route("/bomb.ics", axum::routing::get(move || async move { bomb })),
    )
    .await
    .unwrap();
    let state_of = |id: String| {
        let w = &w;
        async move {
            let start = std::time::Instant::now();
            loop {
                let (_, list) = w
                    .call(Some(&w.tokens.member), Method::GET, "/v1/calendars", None)
                    .await;
                let item = list["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["id"] == id.as_str())
                    .cloned()
                    .unwrap();
                if item["state"] != "syncing" {
                    return item;
                }
                assert!(start.elapsed() < std::time::Duration::from_secs(20));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let (s, ok) = w
        .call(
            Some(&w.tokens.member),
            Method::POST,
            "/v1/calendars/ics",
            Some(&json!({"feed_url": w.ics_url})),
        )
        .await;
    assert_eq!(s, 202, "{ok}");
    assert_eq!(ok["state"], "syncing");
    let done = state_of(ok["id"].as_str().unwrap().to_string()).await;
    assert_eq!(done["state"], "active", "{done}");
    assert_eq!(done["error"], Value::Null);
    let started = std::time::Instant::now();
    let (s, b) = w
        .call(
            Some(&w.tokens.member),
            Method::POST,
            "/v1/calendars/ics",
            Some(&json!({"feed_url": format!("http://{addr}/bomb.ics")})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "answered without reading the feed"
    );
    let failed = state_of(b["id"].as_str().unwrap().to_string()).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("events in the sync window"),
        "{failed}"
    );
    // Connections per user are capped (10 by default).
    let (_, list) = w
        .call(Some(&w.tokens.member), Method::GET, "/v1/calendars", None)
        .await;
    let mine = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["user_id"] == w.member.id.as_str())
        .count();
    for _ in mine..10 {
        let (s, _) = w
            .call(
                Some(&w.tokens.member),
                Method::POST,
                "/v1/calendars/ics",
                Some(&json!({"feed_url": w.ics_url})),
            )
            .await;
        assert_eq!(s, 202);
    }
    let (s, body) = w
        .call(
            Some(&w.tokens.member),
            Method::POST,
            "/v1/calendars/ics",
            Some(&json!({"feed_url": w.ics_url})),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("10"));
}

#[tokio::test]
async fn a_revocation_racing_a_requests_last_used_write_stays_revoked() {
    let w = world().await;
    let (s, created) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"name": "crm sync", "scopes": ["meetings:read"]})),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let key = created["token"].as_str().unwrap().to_string();
    let id = created["key"]["id"].as_str().unwrap().to_string();
    // The race, step by step: a request authenticated with the key has read it (unused, so
    // its use is due to be recorded) and passed every check ...
    let read = w
        .store
        .get_api_key_versioned(&w.a, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(read.value.revoked_at.is_none() && read.value.last_used_at.is_none());
    // ... an admin revokes the key ...
    let (s, _) = w
        .call(
            Some(&w.tokens.admin),
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    // ... and only then does the request write `last_used_at` from the copy it read.
    let late = auth::record_key_use(&*w.store, &w.a, read.clone(), Utc::now()).await;
    assert!(
        matches!(&late, Err(meetbot_api::error::ApiError::Unauthorized(m)) if m.contains("revoked")),
        "the late use write is refused: {late:?}"
    );
    let stored = w.store.get_api_key(&w.a, &id).await.unwrap().unwrap();
    assert!(stored.revoked_at.is_some(), "the key stays revoked");
    assert_eq!(stored.last_used_at, None, "the stale copy was not written");
    let (s, body) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );

    // The other order: the use is written between the revocation's read and its write; the
    // revocation reads again and still lands.
    let (s, created) = w
        .call(
            Some(&w.tokens.admin),
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"name": "crm sync 2", "scopes": ["meetings:read"]})),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let key = created["token"].as_str().unwrap().to_string();
    let id = created["key"]["id"].as_str().unwrap().to_string();
    let read = w
        .store
        .get_api_key_versioned(&w.a, &id)
        .await
        .unwrap()
        .unwrap();
    let used = auth::record_key_use(&*w.store, &w.a, read.clone(), Utc::now())
        .await
        .unwrap();
    assert!(used.last_used_at.is_some());
    let mut stale = read.value.clone();
    stale.revoked_at = Some(Utc::now());
    assert!(
        matches!(
            w.store.update_api_key_at(&w.a, &stale, read.version).await,
            Err(meetbot_store::StoreError::Conflict { .. })
        ),
        "a revocation from a copy read before the use is not written blind"
    );
    let (s, _) = w
        .call(
            Some(&w.tokens.admin),
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = w.call(Some(&key), Method::GET, "/v1/meetings", None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn an_invitee_reads_the_one_transcript_and_stops_the_one_bot_through_their_own_copy_and_a_forged_copy_gets_neither()
 {
    let w = world().await;
    // The copy that held the bot (from a calendar that lists Mia among the attendees) has the
    // transcript; Mia's own calendar has its own copy of the meeting.
    let holder = meeting(
        &w.tenants,
        &w.a,
        None,
        &["adam@clinic.test", "mia@clinic.test"],
    )
    .await;
    transcript_and_summary(&w.tenants, &w.a, &holder).await;
    job(&*w.store, &w.a, &holder).await;
    let mia_conn = w
        .store
        .get_meeting(&w.a, &w.m_own)
        .await
        .unwrap()
        .unwrap()
        .connection_id;
    let mine = meeting(&w.tenants, &w.a, mia_conn.as_deref(), &["x@partner.test"]).await;
    // Another member puts an event with the same link and UID in their own calendar.
    let eve = create_user(&*w.tenants, &w.a, "eve@clinic.test", Role::Member)
        .await
        .unwrap();
    let eve_token = mint(&*w.store, &w.a, &eve.id, chrono::Duration::hours(1)).await;
    let forged = meeting(&w.tenants, &w.a, None, &["eve@clinic.test"]).await;
    let path = |id: &str, what: &str| format!("/v1/meetings/{id}/{what}");
    let mia = Some(w.tokens.member.as_str());
    let (s, _) = w
        .call(mia, Method::GET, &path(&mine, "transcript"), None)
        .await;
    assert_eq!(s, 404, "a copy that stands alone has no transcript");

    copies_of_one_meeting(
        &w,
        "ref-of-the-quarterly-review",
        &[&holder, &mine, &forged],
    )
    .await;
    let (s, t) = w
        .call(mia, Method::GET, &path(&mine, "transcript"), None)
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["meeting_id"], mine.as_str(), "answered as her own copy");
    assert_eq!(
        t["segments"][0]["text"],
        "Sarah will send the contract by Friday."
    );
    let (s, sum) = w
        .call(mia, Method::GET, &path(&mine, "summary"), None)
        .await;
    assert_eq!(s, 200, "{sum}");
    let listed = |list: Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect()
    };
    let (_, list) = w.call(mia, Method::GET, "/v1/meetings", None).await;
    let ids = listed(list);
    assert!(
        ids.contains(&mine) && !ids.contains(&holder),
        "one entry for the meeting, her own copy: {ids:?}"
    );

    // The forged copy shares the reference but not the attendee list: nothing of the session.
    let eve = Some(eve_token.as_str());
    for what in ["transcript", "summary"] {
        let (s, _) = w.call(eve, Method::GET, &path(&forged, what), None).await;
        assert_eq!(s, 404, "{what}");
        let (s, _) = w.call(eve, Method::GET, &path(&holder, what), None).await;
        assert_eq!(s, 404, "{what}");
    }
    let (s, d) = w
        .call(eve, Method::GET, &path(&forged, "deliveries"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(d["items"], json!([]), "{d}");
    let (_, list) = w.call(eve, Method::GET, "/v1/meetings", None).await;
    assert_eq!(listed(list), vec![forged.clone()]);

    // The one bot is Mia's too: she can make it leave; Eve cannot even find it.
    let bot = w
        .store
        .find_bot_jobs(&w.a, &JobFilter::of_meeting(&holder))
        .await
        .unwrap()[0]
        .value
        .id
        .clone();
    let leave = format!("/v1/bots/{bot}/leave");
    let (s, _) = w.call(eve, Method::POST, &leave, None).await;
    assert_eq!(s, 404);
    let (s, out) = w.call(mia, Method::POST, &leave, None).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["state"], "stopped", "{out}");
}

#[tokio::test]
async fn each_invitee_who_asked_gets_the_summary_at_their_own_address_once_and_one_who_declined_none()
 {
    use meetbot_delivery::notice::Notice;
    use meetbot_delivery::outbox::{Outbox, RetryPolicy, idempotency_key};
    let w = world().await;
    // Three colleagues invited, with the meeting in their own calendars: Ann and Ben asked for
    // summaries by email, Cat did not; Ben declined the meeting. Eve, not invited, asked too
    // and put an event with the same link and UID in her calendar.
    let invited = [
        "olga@clinic.test",
        "ann@clinic.test",
        "ben@clinic.test",
        "cat@clinic.test",
    ];
    let mut copies = Vec::new();
    for (name, asks) in [("ann", true), ("ben", true), ("eve", true), ("cat", false)] {
        let user = create_user(
            &*w.tenants,
            &w.a,
            &format!("{name}@clinic.test"),
            Role::Member,
        )
        .await
        .unwrap();
        let token = mint(&*w.store, &w.a, &user.id, chrono::Duration::hours(1)).await;
        if asks {
            let body = json!({"summary_email": true});
            let (s, out) = w
                .call(Some(&token), Method::PUT, "/v1/me/delivery", Some(&body))
                .await;
            assert_eq!((s, out), (StatusCode::OK, body));
        }
        let (_, mine) = w
            .call(Some(&token), Method::GET, "/v1/me/delivery", None)
            .await;
        assert_eq!(mine["summary_email"], asks);
        let conn = connection(&w.tenants, &w.a, &user.id).await;
        let people: &[&str] = if name == "eve" {
            &["eve@clinic.test"]
        } else {
            &invited
        };
        let id = meeting(&w.tenants, &w.a, Some(&conn), people).await;
        let mut m = w.store.get_meeting(&w.a, &id).await.unwrap().unwrap();
        m.meeting_ref = Some("ref-of-the-case-review".into());
        m.wants_bot = name != "ben";
        w.store.put_meeting(&w.a, &m).await.unwrap();
        copies.push(id);
    }
    let outbox = Outbox::new(w.store.clone(), w.tenants.clone(), RetryPolicy::default());
    let notice = Notice {
        meeting_id: copies[3].clone(),
        title: "Case review".into(),
        overview: "Reviewed the case.".into(),
        decisions: vec![],
        action_items: vec![],
        link: None,
    };
    let new = outbox
        .enqueue_summary(&*w.store, &w.tenants, &w.a, &notice)
        .await
        .unwrap();
    let keys: Vec<String> = w
        .store
        .list_deliveries(&w.a, Some(&copies[3]))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.value.idempotency_key)
        .collect();
    let to = |who: &str| {
        idempotency_key(
            &copies[3],
            DeliveryChannel::Email,
            &format!("{who}@clinic.test"),
        )
    };
    assert!(keys.contains(&to("ann")), "{keys:?}");
    assert!(!keys.contains(&to("eve")), "not invited: {keys:?}");
    assert!(!keys.contains(&to("ben")), "declined: {keys:?}");
    assert!(!keys.contains(&to("cat")), "did not ask: {keys:?}");
    assert_eq!(new as usize, keys.len());
    assert_eq!(
        outbox
            .enqueue_summary(&*w.store, &w.tenants, &w.a, &notice)
            .await
            .unwrap(),
        0,
        "queued once"
    );
}

#[tokio::test]
async fn a_person_who_attended_through_another_calendars_copy_is_erased_by_first_name_from_the_one_transcript()
 {
    let w = world().await;
    // The copy that held the bot lists only Adam; Sarah's own copy of the meeting lists her.
    let holder = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
    let hers = meeting(&w.tenants, &w.a, None, &["sarah.connor@partner.test"]).await;
    copies_of_one_meeting(&w, "ref-of-the-results-call", &[&holder, &hers]).await;
    said(&w, &holder, &[("Adam", "Thanks Sarah, I will call you.")]).await;
    let o = Some(w.tokens.owner.as_str());
    let body = json!({"email": "sarah.connor@partner.test", "name": "Sarah Connor"});
    let (s, r) = w
        .call(o, Method::POST, "/v1/privacy/people/erase", Some(&body))
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, t) = w
        .call(
            o,
            Method::GET,
            &format!("/v1/meetings/{holder}/transcript"),
            None,
        )
        .await;
    assert_eq!(
        t["segments"][0]["text"],
        "Thanks [erased], I will call you."
    );
}

#[tokio::test]
async fn a_client_in_one_calendars_copy_of_a_meeting_is_erased_with_the_transcript_another_copy_holds()
 {
    let w = world().await;
    // The copy that held the bot lists only Adam; another calendar's copy lists the client.
    let holder = meeting(&w.tenants, &w.a, None, &["adam@clinic.test"]).await;
    let theirs = meeting(&w.tenants, &w.a, None, &["client@partner.test"]).await;
    copies_of_one_meeting(&w, "ref-of-the-client-call", &[&holder, &theirs]).await;
    said(
        &w,
        &holder,
        &[("Adam", "The client's settlement figure is final.")],
    )
    .await;
    let body = json!({"email": "client@partner.test"});
    let (s, r) = w
        .call(
            Some(&w.tokens.owner),
            Method::POST,
            "/v1/privacy/clients/erase",
            Some(&body),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["counts"]["sessions"], 2, "{r}");
    for m in [&holder, &theirs] {
        assert!(w.store.get_meeting(&w.a, m).await.unwrap().is_none());
    }
    assert!(
        w.store
            .transcript_for_meeting(&w.a, &holder)
            .await
            .unwrap()
            .is_none()
    );
}

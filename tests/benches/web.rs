//! The web app's weight and speed: the meetings page of a tenant with 1,000 meetings, served by
//! the real API and web app over a real embedded store on loopback, for an owner (sees all) and
//! a member (sees their own); beside it, in the same run, the API's `GET /v1/meetings` page of
//! the same size. Then what a page weighs (HTML, stylesheet, script; no other request).
//!
//! `cargo bench -p meetbot-tests --bench web` prints a table; no figure here is asserted.

use chrono::{Duration, Utc};
use meetbot_api::limits::Limits;
use meetbot_api::oidc::Oidc;
use meetbot_api::routes::create_user;
use meetbot_api::{Api, Settings};
use meetbot_calendar_sync::oauth::OAuthHttp;
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_store::vault::Tenants;
use meetbot_store::{SqliteEngine, Store, init_engine};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const MEETINGS: usize = 1000;
const ROUNDS: usize = 30;

async fn session(store: &dyn Store, t: &TenantId, user: &str) -> String {
    let (token, id) = meetbot_api::auth::new_session_token(t).unwrap();
    let now = Utc::now();
    store
        .put_session(
            t,
            &Session {
                id,
                user_id: user.into(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + Duration::hours(2),
                mfa_passed: true,
                mfa_at: None,
            },
        )
        .await
        .unwrap();
    token
}

/// Time to first byte and whole response, over `ROUNDS` requests: (p50 ttfb, p95 ttfb, bytes).
async fn measure(http: &reqwest::Client, url: &str, cookie: &str) -> (f64, f64, usize) {
    let mut ttfb = Vec::new();
    let mut bytes = 0;
    for i in 0..ROUNDS + 3 {
        let t = Instant::now();
        let mut r = http
            .get(url)
            .header("cookie", format!("meetbot_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        let first = r.chunk().await.unwrap();
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        let mut n = first.map_or(0, |c| c.len());
        while let Some(c) = r.chunk().await.unwrap() {
            n += c.len();
        }
        // The first rounds warm the store's caches and the connection.
        if i >= 3 {
            ttfb.push(elapsed);
        }
        bytes = n;
    }
    ttfb.sort_by(|a, b| a.total_cmp(b));
    (
        ttfb[ttfb.len() / 2],
        ttfb[(ttfb.len() * 95 / 100).min(ttfb.len() - 1)],
        bytes,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = init_engine(SqliteEngine::open(&dir.path().join("s")).unwrap())
        .await
        .unwrap();
    let tenants = Arc::new(Tenants::new(
        store.clone(),
        Arc::new(LocalKeyFile::open_or_create(&dir.path().join("k")).unwrap()),
    ));
    let t = tenants.create("Clinic").await.unwrap().id;
    let owner = create_user(&*tenants, &t, "olga@clinic.test", Role::Owner)
        .await
        .unwrap();
    let member = create_user(&*tenants, &t, "mia@clinic.test", Role::Member)
        .await
        .unwrap();
    let v = tenants.vault(&t).await.unwrap();
    let made = Instant::now();
    for i in 0..MEETINGS {
        let id = new_record_id();
        let now = Utc::now();
        // One in ten has the member among its people.
        let who = if i % 10 == 0 {
            "mia@clinic.test"
        } else {
            "adam@clinic.test"
        };
        let people = json!({"organizer": "adam@clinic.test", "attendees": [
            {"email": who, "name": null, "response": "accepted", "organizer": false},
            {"email": format!("client{i}@example.test"), "name": "A Client", "response": "accepted", "organizer": false}]});
        let m = Meeting {
            id: id.clone(),
            connection_id: None,
            event_instance_id: format!("ev-{id}"),
            series_id: None,
            title: v
                .seal::<Meeting>(&id, "title", format!("Patient review {i}").as_bytes())
                .unwrap(),
            starts_at: now + Duration::minutes(30 * i as i64 - 15_000),
            ends_at: now + Duration::minutes(30 * i as i64 - 14_970),
            all_day: false,
            status: MeetingStatus::Confirmed,
            platform: Some(Platform::Zoom),
            join_url: Some(
                v.seal::<Meeting>(&id, "join_url", b"https://zoom.us/j/1")
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
        store.put_meeting(&t, &m).await.unwrap();
    }
    eprintln!(
        "{MEETINGS} meetings stored in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = Arc::new(Api {
        tenants: tenants.clone(),
        settings: Settings {
            public_url: base.clone(),
            session_idle: Duration::minutes(30),
            session_max: Duration::hours(12),
            body_limit: 64 * 1024,
            cookie_secure: false,
            speech_engines: vec![],
            export_ttl: Duration::hours(1),
            export_max_bytes: meetbot_api::export::DEFAULT_MAX_EXPORT_BYTES,
            export_lease_ttl: meetbot_api::export::LEASE_TTL,
            default_transcript_days: None,
        },
        oidc: Oidc::new(
            OAuthHttp::new(reqwest::Client::builder()).unwrap(),
            &format!("{base}/v1/auth/callback"),
        )
        .unwrap(),
        limits: Limits::new(1_000_000, 1_000_000),
        calendars: None,
        queue: None,
        sign_in_links: None,
    });
    let app = meetbot_api::app(api.clone(), meetbot_web::routes());
    tokio::spawn(meetbot_api::serve_app(
        api,
        app,
        listener,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let o = session(&*store, &t, &owner.id).await;
    let m = session(&*store, &t, &member.id).await;
    println!(
        "\n{MEETINGS} meetings in the tenant; {ROUNDS} requests each, after 3 to warm up; times in ms\n"
    );
    println!("| request | who | rows | TTFB p50 | TTFB p95 | bytes |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (what, url, who, cookie, rows) in [
        (
            "web `/app/?view=all` (first page)",
            format!("{base}/app/?view=all"),
            "owner",
            &o,
            25,
        ),
        (
            "web `/app/?view=all` (first page)",
            format!("{base}/app/?view=all"),
            "member",
            &m,
            25,
        ),
        (
            "web `/app/` (upcoming)",
            format!("{base}/app/"),
            "owner",
            &o,
            25,
        ),
        (
            "web `/app/?view=all&q=review 99`",
            format!("{base}/app/?view=all&q=review%2099"),
            "owner",
            &o,
            11,
        ),
        (
            "API `GET /v1/meetings?limit=25`",
            format!("{base}/v1/meetings?limit=25"),
            "owner",
            &o,
            25,
        ),
        (
            "API `GET /v1/meetings?limit=25`",
            format!("{base}/v1/meetings?limit=25"),
            "member",
            &m,
            25,
        ),
    ] {
        let (p50, p95, bytes) = measure(&http, &url, cookie).await;
        println!("| {what} | {who} | {rows} | {p50:.1} | {p95:.1} | {bytes} |");
    }
    let css = http
        .get(format!("{base}/app/static/app.css"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    let js = http
        .get(format!("{base}/app/static/app.js"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    println!(
        "\npage weight: the meetings page's HTML above, plus the stylesheet {css} B and the script {js} B (uncompressed); no font, image or other request"
    );
}

//! The web app in a real browser: Playwright (npm `playwright-core`) drives Debian's chromium
//! through `tests/web/app.test.mjs` against the real API and web app on loopback, over a real
//! embedded store; axe-core scans every page. The Rust side builds the world, feeds the live
//! transcript while the page is open, and checks afterwards what the clicks did to the store.
//!
//! Screenshots of every page: `target/web-screenshots/*.png`.

mod common;

use chrono::{Duration, Utc};
use meetbot_api::limits::Limits;
use meetbot_api::oidc::Oidc;
use meetbot_api::routes::create_user;
use meetbot_api::signin_link::SignInLinks;
use meetbot_api::{Api, Settings};
use meetbot_calendar_sync::oauth::{OAuth, OAuthHttp, ProviderSettings};
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_store::JobFilter;
use meetbot_store::vault::Tenants;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

struct MeetingSpec<'a> {
    title: &'a str,
    conn: Option<&'a str>,
    people: &'a [&'a str],
    starts_in: Duration,
    wants_bot: bool,
    reason: Option<&'a str>,
}

async fn meeting(tenants: &Tenants, t: &TenantId, s: MeetingSpec<'_>) -> String {
    let v = tenants.vault(t).await.unwrap();
    let id = new_record_id();
    let now = Utc::now();
    let people = json!({
        "organizer": s.people.first(),
        "attendees": s.people.iter().map(|e| json!({"email": e, "name": null, "response": "accepted", "organizer": false})).collect::<Vec<_>>(),
    });
    let m = Meeting {
        id: id.clone(),
        connection_id: s.conn.map(String::from),
        event_instance_id: format!("ev-{id}"),
        series_id: None,
        title: v.seal::<Meeting>(&id, "title", s.title.as_bytes()).unwrap(),
        starts_at: now + s.starts_in,
        ends_at: now + s.starts_in + Duration::minutes(30),
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
        wants_bot: s.wants_bot,
        join_reason: s.reason.map(String::from),
        requested_by: None,
        deleted_at: None,
        meeting_ref: None,
        source_updated_at: None,
        updated_at: now,
    };
    tenants.store().put_meeting(t, &m).await.unwrap();
    id
}

/// A transcript and a summary for meeting `m` (what the transcriber stores when the bot
/// leaves), and a finished bot.
async fn finished(tenants: &Tenants, t: &TenantId, m: &str) {
    use meetbot_transcriber::presence::Presence;
    use meetbot_transcriber::summarize::{ActionItem, SummaryDoc};
    use meetbot_transcriber::transcript::{Segment, TranscriptDoc};
    let v = tenants.vault(t).await.unwrap();
    let lines = [
        ("Sarah", "Let us review the contract before Friday."),
        ("Tom", "I will send the draft to Acme tomorrow."),
        ("Sarah", "Good. We decided to keep the price as it is."),
    ];
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
                start_ms: i * 4000,
                end_ms: i * 4000 + 3500,
                text: text.to_string(),
            })
            .collect(),
        // Sarah was there throughout; Tom came a second in and left before the end.
        presence: vec![
            Presence {
                participant: "p-Sarah".into(),
                name: Some("Sarah".into()),
                joined_ms: 0,
                left_ms: None,
            },
            Presence {
                participant: "p-Tom".into(),
                name: Some("Tom".into()),
                joined_ms: 1_000,
                left_ms: Some(71_000),
            },
        ],
    };
    let tr = doc.seal(&v, &format!("tr-{m}"), m, None).unwrap();
    tenants.store().put_transcript(t, &tr).await.unwrap();
    let sum = SummaryDoc {
        overview: "Contract review with Acme before Friday.".into(),
        decisions: vec!["Keep the price as it is.".into()],
        action_items: vec![ActionItem {
            owner: Some("Tom".into()),
            text: "send the draft to Acme tomorrow".into(),
        }],
        topics: vec!["contract".into(), "pricing".into()],
    };
    let sid = format!("sum-{m}");
    let body = v
        .seal::<Summary>(&sid, "body", &serde_json::to_vec(&sum).unwrap())
        .unwrap();
    tenants
        .store()
        .put_summary(
            t,
            &Summary {
                id: sid,
                meeting_id: m.into(),
                body,
                created_at: Utc::now(),
                expires_at: None,
                held: None,
            },
        )
        .await
        .unwrap();
    let mut j = BotJob::scheduled(m, format!("k-{m}"), Utc::now() - Duration::days(2));
    j.state = BotJobState::Done;
    tenants.store().insert_bot_job(t, &j).await.unwrap();
}

static STREAM_START: std::sync::OnceLock<chrono::DateTime<Utc>> = std::sync::OnceLock::new();

/// Stores one utterance of the live meeting as the transcriber does (a sealed part), and, when
/// someone comes, a part of names and stays (participant ""), as the transcriber writes it: the
/// stays unnamed, the names beside them. Olga is there from the start, Adam from 2.5 s.
async fn say(tenants: &Tenants, t: &TenantId, m: &str, job: &str, n: u64, who: &str, text: &str) {
    use meetbot_transcriber::parts::{PartBody, PartOf, seal};
    use meetbot_transcriber::presence::arrive;
    use meetbot_transcriber::transcript::Segment;
    let v = tenants.vault(t).await.unwrap();
    // One stream, one clock: every part of it carries when it began.
    let started = *STREAM_START.get_or_init(|| Utc::now() - Duration::minutes(5));
    let put = |participant: String, last_seq: u64, body: PartBody| {
        let v = v.clone();
        async move {
            let part = seal(
                &v,
                &PartOf {
                    meeting_id: m,
                    job_id: job,
                    stream: "stream-1",
                    participant: &participant,
                    last_seq,
                    resume_ms: n * 3000 + 2500,
                    last_ts: None,
                    stream_started_at: started,
                },
                &body,
            )
            .unwrap();
            tenants.store().put_transcript_part(t, &part).await.unwrap();
        }
    };
    if n <= 1 {
        let mut stays = Vec::new();
        arrive(&mut stays, "feed-Olga", 0);
        let mut names = vec![("feed-Olga".to_string(), "Olga".to_string())];
        if n == 1 {
            arrive(&mut stays, "feed-Adam", 2_500);
            names.push(("feed-Adam".to_string(), "Adam".to_string()));
        }
        let body = PartBody {
            segments: vec![],
            names: names.into_iter().collect(),
            presence: stays,
        };
        put(String::new(), n * 150 + 1, body).await;
    }
    let participant = format!("feed-{who}");
    let body = PartBody {
        segments: vec![Segment {
            participant: participant.clone(),
            speaker: Some(who.into()),
            start_ms: n * 3000,
            end_ms: n * 3000 + 2500,
            text: text.into(),
        }],
        names: Default::default(),
        presence: Vec::new(),
    };
    put(participant, n * 150, body).await;
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_in_a_real_browser_signs_in_shows_live_and_past_meetings_and_its_controls_work_for_each_role()
 {
    let modules = repo().join("testsupport/web/node_modules");
    assert!(
        modules.join("playwright-core/package.json").exists()
            && modules.join("axe-core/axe.min.js").exists(),
        "playwright-core and axe-core are missing: run scripts/test.sh (npm ci in testsupport/web)"
    );
    let (tenants, store, a, _dir) = common::embedded_tenant("Clinic").await;
    let owner = create_user(&*tenants, &a, "olga@clinic.test", Role::Owner)
        .await
        .unwrap();
    let member = create_user(&*tenants, &a, "mia@clinic.test", Role::Member)
        .await
        .unwrap();
    let admin = create_user(&*tenants, &a, "adam@clinic.test", Role::Admin)
        .await
        .unwrap();
    let admin_conn = common::connection(
        &tenants,
        &a,
        &admin.id,
        CalendarProvider::Microsoft,
        "tok",
        "adam@clinic.test",
    )
    .await;
    let member_conn = common::connection(
        &tenants,
        &a,
        &member.id,
        CalendarProvider::Google,
        "tok",
        "mia@clinic.test",
    )
    .await;
    let live = meeting(
        &tenants,
        &a,
        MeetingSpec {
            title: "Weekly clinic huddle",
            conn: Some(&admin_conn),
            people: &["adam@clinic.test", "olga@clinic.test"],
            starts_in: Duration::minutes(-5),
            wants_bot: true,
            reason: None,
        },
    )
    .await;
    let live_job = {
        let mut j = meetbot_testsupport::speech::joined_job(&new_record_id(), &live, "k-live");
        let now = Utc::now();
        j.history = vec![
            StateChange {
                state: BotJobState::Scheduled,
                at: now - Duration::minutes(20),
            },
            StateChange {
                state: BotJobState::Launched,
                at: now - Duration::minutes(6),
            },
            StateChange {
                state: BotJobState::Joined,
                at: now - Duration::minutes(5),
            },
        ];
        store.insert_bot_job(&a, &j).await.unwrap();
        j.id
    };
    let done = meeting(
        &tenants,
        &a,
        MeetingSpec {
            title: "Quarterly review with Acme",
            conn: Some(&admin_conn),
            people: &["adam@clinic.test", "sarah@acme.test", "tom@acme.test"],
            starts_in: Duration::days(-2),
            wants_bot: true,
            reason: None,
        },
    )
    .await;
    finished(&tenants, &a, &done).await;
    let other = meeting(
        &tenants,
        &a,
        MeetingSpec {
            title: "Board planning",
            conn: Some(&admin_conn),
            people: &["adam@clinic.test"],
            starts_in: Duration::days(1),
            wants_bot: true,
            reason: None,
        },
    )
    .await;
    meeting(
        &tenants,
        &a,
        MeetingSpec {
            title: "Lunch and learn",
            conn: Some(&admin_conn),
            people: &["adam@clinic.test"],
            starts_in: Duration::days(2),
            wants_bot: false,
            reason: Some("declined"),
        },
    )
    .await;
    // A hostile title from a calendar: shown as text, never run.
    meeting(
        &tenants,
        &a,
        MeetingSpec {
            title: "Budget <script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">",
            conn: Some(&admin_conn),
            people: &["adam@clinic.test"],
            starts_in: Duration::days(3),
            wants_bot: true,
            reason: None,
        },
    )
    .await;
    let mine = meeting(
        &tenants,
        &a,
        MeetingSpec {
            title: "Mia's patient follow-up",
            conn: Some(&member_conn),
            people: &["mia@clinic.test"],
            starts_in: Duration::hours(3),
            wants_bot: true,
            reason: None,
        },
    )
    .await;
    let job = BotJob::scheduled(&mine, format!("k-{mine}"), Utc::now() + Duration::hours(3));
    store.insert_bot_job(&a, &job).await.unwrap();

    // An ICS feed on 127.0.0.2, the only address this world's calendar client may fetch.
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:ics-1@clinic.test\r\n\
DTSTART:20991124T090000Z\r\nDURATION:PT30M\r\nSUMMARY:Far away\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let (ics_addr, _) = meetbot_testsupport::egress::serve_on(
        [127, 0, 0, 2],
        0,
        axum::Router::new().route("/cal.ics", axum::routing::get(move || async move { ics })),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
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
    let worker = meetbot_calendar_sync::worker::SyncWorker::new(
        graph,
        tenants.clone(),
        Default::default(),
        Default::default(),
        Default::default(),
    )
    .with_ics(
        meetbot_calendar_sync::ics::IcsClient::new(true, &["127.0.0.2/32"])
            .unwrap()
            .only_hosts(["127.0.0.2"].map(String::from)),
    )
    .with_oauth(Arc::new(oauth));
    let links = SignInLinks::new();
    let owner_link = links.mint(&a, &owner.id).unwrap();
    let owner_nojs_link = links.mint(&a, &owner.id).unwrap();
    let member_link = links.mint(&a, &member.id).unwrap();
    let api = Arc::new(Api {
        tenants: tenants.clone(),
        settings: Settings {
            public_url: base.clone(),
            session_idle: Duration::minutes(30),
            session_max: Duration::hours(12),
            body_limit: 64 * 1024,
            cookie_secure: false,
            speech_engines: vec!["whisper-base".into()],
            export_ttl: Duration::hours(1),
            export_max_bytes: meetbot_api::export::DEFAULT_MAX_EXPORT_BYTES,
            export_lease_ttl: meetbot_api::export::LEASE_TTL,
            default_transcript_days: Some(30),
        },
        oidc: Oidc::new(
            OAuthHttp::new(reqwest::Client::builder()).unwrap(),
            &format!("{base}/v1/auth/callback"),
        )
        .unwrap()
        // Offered, never contacted: nothing in the test signs in with it.
        .with(
            "clinic-idp",
            meetbot_api::oidc::Provider::new("http://127.0.0.1:9/clinic-idp", "meetbot", None),
        ),
        limits: Limits::new(100_000, 100_000),
        calendars: Some(Arc::new(worker)),
        queue: None,
        sign_in_links: Some(links),
    });
    // A sign-in link is honoured only from loopback: the same link from another address is
    // refused, and stays unused for this machine.
    let spare = api
        .sign_in_links
        .as_ref()
        .unwrap()
        .mint(&a, &owner.id)
        .unwrap();
    let from_afar =
        meetbot_api::signin_link::redeem(&api, &spare, "192.0.2.7".parse().unwrap()).await;
    assert!(
        matches!(from_afar, Err(meetbot_api::error::ApiError::Forbidden(_))),
        "a sign-in link used from 192.0.2.7: {:?}",
        from_afar.map(|_| "a session")
    );
    assert!(
        meetbot_api::signin_link::redeem(&api, &spare, "::1".parse().unwrap())
            .await
            .is_ok()
    );
    let app = meetbot_api::app(api.clone(), meetbot_web::routes());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meetbot_api::serve_app(api, app, listener, async move {
        let _ = stop_rx.await;
    }));

    // The live meeting goes on while the browser watches: a line every 700 ms.
    let talk = {
        let (tenants, a, live, job) = (tenants.clone(), a.clone(), live.clone(), live_job.clone());
        tokio::spawn(async move {
            let lines = [
                (
                    "Olga",
                    "Good morning everyone, let us start with the waiting list.",
                ),
                ("Adam", "We have twelve patients waiting for a first visit."),
                ("Olga", "Can we open two more slots on Thursday afternoon?"),
                ("Adam", "Yes, I will ask the front desk to book them."),
            ];
            for (n, (who, text)) in (0u64..).zip(lines.iter().cycle().take(40)) {
                say(&tenants, &a, &live, &job, n, who, text).await;
                tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            }
        })
    };

    let shots = repo().join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(repo().join("tests/web/app.test.mjs"))
        .env("NODE_PATH", &modules)
        .env("MEETBOT_WEB_MODULES", &modules)
        .env("BASE", &base)
        .env(
            "OWNER_LINK",
            format!("{base}/app/sign-in/link/{owner_link}"),
        )
        .env(
            "OWNER_NOJS_LINK",
            format!("{base}/app/sign-in/link/{owner_nojs_link}"),
        )
        .env(
            "MEMBER_LINK",
            format!("{base}/app/sign-in/link/{member_link}"),
        )
        .env("LIVE", &live)
        .env("DONE", &done)
        .env("OTHER", &other)
        .env("MINE", &mine)
        .env("ICS_URL", format!("http://{ics_addr}/cal.ics"))
        .env("SHOTS", &shots)
        .env(
            "CHROMIUM",
            std::env::var("MEETBOT_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        )
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), out)
        .await
        .expect("the browser test ran for over 5 minutes")
        .expect("node could not be started");
    talk.abort();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");

    // What the clicks did, read from the store.
    let j = store
        .get_bot_job(&a, &live_job)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(
        matches!(j.state, BotJobState::Stopped(ref by) if *by == format!("user:{}", owner.id)),
        "stop the bot: {:?}",
        j.state
    );
    let d = store.get_meeting(&a, &done).await.unwrap().unwrap();
    assert!(d.deleted_at.is_none(), "the deleted session was restored");
    assert!(
        store
            .transcript_for_meeting(&a, &done)
            .await
            .unwrap()
            .is_none(),
        "the transcript was deleted"
    );
    let receipts = store.deletion_receipts(Some(&a)).await.unwrap();
    assert!(
        receipts.iter().any(|r| r.target.contains(&done)),
        "{receipts:?}"
    );
    let conns = store.list_connections(&a).await.unwrap();
    assert!(
        conns
            .iter()
            .any(|c| c.user_id == owner.id && c.provider == CalendarProvider::Ics),
        "the ICS feed was connected"
    );
    let other_m = store.get_meeting(&a, &other).await.unwrap().unwrap();
    assert!(
        other_m.deleted_at.is_none(),
        "a form posted without its token deleted nothing"
    );
    let sent = store
        .find_bot_jobs(&a, &JobFilter::default())
        .await
        .unwrap()
        .len();
    assert!(
        sent >= 4,
        "the bot sent from the page was stored ({sent} jobs)"
    );
    let settings = store.get_tenant_settings(&a).await.unwrap().unwrap();
    assert_eq!(settings.transcript_retention_days, Some(30));
    assert!(settings.redaction.as_ref().is_some_and(|r| r.enabled));
    assert_eq!(
        settings.bot.display_name.as_deref(),
        Some("Clinic notetaker")
    );
    assert_eq!(settings.allowed_issuers, ["http://127.0.0.1:9/clinic-idp"]);
    assert_eq!(
        settings.allowed_email_domains,
        ["clinic.test", "partner.test"]
    );
    let adam = store.get_user(&a, &admin.id).await.unwrap().unwrap();
    assert_eq!(
        adam.role,
        Role::Member,
        "the role changed on the people page"
    );
    let keys = store.list_api_keys(&a).await.unwrap();
    assert_eq!(keys.len(), 1, "one API key made on the people page");
    for name in [
        "sign-in",
        "meetings",
        "meetings-phone",
        "meeting-live",
        "meeting-done",
        "restore",
        "calendars",
        "send-bot",
        "people",
        "privacy",
        "settings",
        "forbidden",
        "meeting-nojs",
    ] {
        let p = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
            "no screenshot {}",
            p.display()
        );
    }
    // A live stream still open when the server stops ends with it: the stop does not wait on it.
    let second = meetbot_testsupport::speech::joined_job(&new_record_id(), &other, "k-other");
    store.insert_bot_job(&a, &second).await.unwrap();
    let token = common::mint(&*store, &a, &owner.id, Duration::hours(1)).await;
    let mut stream = reqwest::Client::new()
        .get(format!("{base}/v1/meetings/{other}/live"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("event: status") && first.contains("\"live\":true"),
        "{first}"
    );
    let _ = stop_tx.send(());
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server stopped with the live stream open")
        .unwrap()
        .unwrap();
    drop(stream);
}

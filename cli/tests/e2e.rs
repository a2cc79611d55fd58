//! End to end, every service a real process of the `meetbot` binary, as deployed:
//! a calendar event at the Google Calendar stand-in -> `meetbot calendar-sync` (the meeting sealed
//! in the MongoDB-wire store) -> `meetbot scheduler` -> real RabbitMQ -> `meetbot launcher` (local
//! processes) -> `meetbot bot` -> a real Janus VideoRoom where three espeak-ng speakers talk ->
//! `meetbot transcriber` (whisper tiny.en) -> transcript and summary sealed in the store -> the
//! summary emailed through the real maildev and posted to the Slack stand-in. Then: the
//! transcript is within a WER bound, the summary has the action items spoken, no audio file was
//! written, the raw database holds none of it in plain text, and erasing the session leaves
//! nothing of it but its receipt.
//!
//! Janus needs its own network namespace (it ignores loopback for ICE), so the test runs in one;
//! RabbitMQ and the MongoDB-wire server stay in the host's, reached through relays whose outward
//! connections a host-side runtime opens (`relay_from_host`). Nothing leaves 127.0.0.0/8.

mod common;
#[path = "e2e/soak.rs"]
mod soak;

use chrono::{Duration as CDuration, Utc};
use common::{Services, free_port, host_port, wait_for};
use futures::TryStreamExt;
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_store::vault::Tenants;
use meetbot_store::{JobFilter, MongoEngine, Store, init_engine};
use meetbot_testsupport::delivery::{MailDev, SlackStandIn};
use meetbot_testsupport::google::{GoogleStandIn, TOKEN};
use meetbot_testsupport::janus::{JanusServer, Publisher, in_netns, relay_from_host, speech};
use meetbot_testsupport::otlp::Phoenix;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const ROOM: u64 = 4242;
const USER: &str = "dr.lee@clinic.example";
const LINES: [(&str, &str); 3] = [
    (
        "Dr. Lee",
        "Good morning. Today we review the new intake process for the clinic.",
    ),
    (
        "Maria",
        "I will send the updated consent form to the front desk by Friday.",
    ),
    (
        "Tom",
        "Please call the insurance company about the open claims next week.",
    ),
];

fn socket_of(url_host_port: &str) -> SocketAddr {
    url_host_port.parse().expect("a literal address")
}

/// Audio files (by extension) modified since `since` under `dir`.
fn audio_files_since(dir: &Path, since: SystemTime, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            audio_files_since(&p, since, out);
        } else if meta.modified().is_ok_and(|m| m >= since) {
            let ext = p
                .extension()
                .map(|x| x.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if matches!(
                ext.as_str(),
                "wav" | "opus" | "ogg" | "oga" | "webm" | "pcm" | "raw" | "mp3" | "m4a" | "flac"
            ) {
                out.push(p.display().to_string());
            }
        }
    }
}

#[test]
fn a_calendar_meeting_ends_as_a_sealed_summary_emailed_and_posted_with_nothing_else_kept() {
    meeting_end_to_end(false);
}

/// #23: the transcriber is killed (SIGKILL, no chance to hand over) at a random moment while
/// people speak, and started again: the bot replays what was not stored, the new process
/// resumes from the stored parts, and the transcript, summary, email and post come out whole
/// and once.
#[test]
fn a_transcriber_killed_mid_meeting_and_restarted_still_gives_the_whole_transcript_once() {
    meeting_end_to_end(true);
}

fn meeting_end_to_end(kill_transcriber: bool) {
    let amqp = meetbot_testsupport::amqp_url();
    let mongo = meetbot_testsupport::mongodb_uri();
    let model = meetbot_testsupport::speech::whisper_model();
    // Threads started here, outside the namespace: they open the relays' outward connections.
    let host = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = host.handle().clone();
    let started = SystemTime::now();
    in_netns(move || async move {
        let amqp_relay = relay_from_host(&handle, socket_of(&host_port(&amqp)));
        let mongo_relay = relay_from_host(&handle, socket_of(&host_port(&mongo)));
        let amqp_in = amqp.replace(&host_port(&amqp), &amqp_relay.to_string());
        let mongo_in = mongo.replace(&host_port(&mongo), &mongo_relay.to_string());
        // A real OpenTelemetry backend for the meeting's trace (not in the kill variant).
        let mut phoenix = (!kill_transcriber).then(Phoenix::start);

        // The store as every service sees it, and a tenant with its delivery targets.
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        let prefix = meetbot_testsupport::unique("e2e");
        let Clinic {
            engine,
            store,
            t,
            vault,
        } = Clinic::open(
            &mongo_in,
            &prefix,
            &key_file,
            "Clinic",
            BotRuleOverrides {
                display_name: Some("Clinic notetaker (recording)".into()),
                alone_timeout_seconds: Some(2),
                ..Default::default()
            },
            "C0CLINIC",
        )
        .await;

        // The user's Google calendar: a meeting in a Janus room, starting in 20 s.
        let google = GoogleStandIn::start().await;
        google.set_owner(USER);
        let start = Utc::now() + CDuration::seconds(20);
        google.upsert(serde_json::json!({
            "kind": "calendar#event", "id": "intake-review", "status": "confirmed",
            "summary": "Intake process review",
            "location": format!("https://rooms.clinic.example/room/{ROOM}"),
            "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
            "end": {"dateTime": (start + CDuration::minutes(30)).to_rfc3339(), "timeZone": "UTC"},
            "organizer": {"email": USER, "self": true},
            "attendees": [{"email": USER, "self": true, "organizer": true, "responseStatus": "accepted"},
                          {"email": "maria@clinic.example", "responseStatus": "accepted"}]
        }));
        google_connection(&*store, &vault, &t).await;

        let janus = JanusServer::start().await;
        janus.create_room(ROOM, None).await;
        let mail = MailDev::start().await.unwrap();
        let slack = SlackStandIn::start("xoxb-e2e").await;

        // Every service, configured by environment only, as in a deployment.
        if let Some(p) = phoenix.as_mut() {
            p.ready().await;
        }
        let transcriber_port = free_port();
        let mut env = service_env(&Deployment {
            mongo: &mongo_in,
            prefix: &prefix,
            key_file: &key_file,
            amqp: &amqp_in,
            google: &google,
            janus: &janus,
            transcriber_port,
            model: &model,
            mail: &mail,
            slack: &slack,
            slack_token: "xoxb-e2e",
        });
        if let Some(p) = &phoenix {
            env.push(("MEETBOT_TELEMETRY__OTLP_ENDPOINT".into(), p.otlp_endpoint()));
        }
        let spawn = |name: &str| {
            let child = service_command(name, &env, dir.path())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("meetbot {name}: {e}"));
            (name.to_string(), child)
        };
        let mut services = Services(vec![
            spawn("transcriber"),
            spawn("launcher"),
            spawn("scheduler"),
            spawn("calendar-sync"),
        ]);

        // Synced, scheduled, dispatched, launched: the bot joins the room.
        let meeting = wait_for("the meeting to be synced", 60, &mut services, || async {
            store
                .list_meetings(&t, None, None)
                .await
                .unwrap()
                .into_iter()
                .next()
        })
        .await;
        assert!(meeting.wants_bot, "{:?}", meeting.join_reason);
        let job = |state: &'static str| {
            let (store, t, mid) = (store.clone(), t.clone(), meeting.id.clone());
            async move {
                store
                    .find_bot_jobs(
                        &t,
                        &JobFilter {
                            meeting_id: Some(mid),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|j| j.value)
                    .find(|j| j.state.name() == state)
            }
        };
        wait_for("the bot to join", 90, &mut services, || job("joined")).await;

        // Three speakers, one after the other, then everybody leaves.
        let mut lead = Duration::from_secs(2);
        let mut publishers = Vec::new();
        for (who, line) in LINES {
            let pcm = speech(line);
            let len = Duration::from_millis(pcm.len() as u64 / 48);
            publishers.push(Publisher::start(&janus.url(), ROOM, who, lead, pcm).await);
            lead += len + Duration::from_millis(800);
        }
        if kill_transcriber {
            // A moment anywhere in the speech (from the clock: each run tries another).
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64;
            let at = Duration::from_millis(1000 + nanos % (lead.as_millis() as u64 - 1000));
            eprintln!("killing the transcriber {at:?} into the speech of {lead:?}");
            tokio::time::sleep(at).await;
            let i = services
                .0
                .iter()
                .position(|(n, _)| n == "transcriber")
                .unwrap();
            let (_, mut old) = services.0.remove(i);
            old.kill().unwrap(); // SIGKILL
            old.wait().unwrap();
            services.0.push(spawn("transcriber"));
            tokio::time::sleep(lead - at + Duration::from_secs(1)).await;
        } else {
            tokio::time::sleep(lead + Duration::from_secs(1)).await;
        }
        for p in publishers {
            p.leave().await;
        }
        // The bot ends once the transcriber has acknowledged its end of stream, after the last
        // utterances are transcribed: on a loaded 2-core machine that can take over a minute.
        wait_for("the bot to finish", 120, &mut services, || job("done")).await;

        // The transcript and summary, sealed; the WER bound; the action items.
        let transcript = wait_for("the transcript", 60, &mut services, || async {
            store.transcript_for_meeting(&t, &meeting.id).await.unwrap()
        })
        .await;
        let doc =
            meetbot_transcriber::transcript::TranscriptDoc::open(&vault, &transcript).unwrap();
        let heard: String = doc
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let reference = LINES.map(|(_, l)| l).join(" ");
        let (errors, words) = meetbot_transcriber::engine::word_error_rate(&reference, &heard);
        let wer = errors as f64 / words as f64;
        assert!(wer <= 0.25, "WER {wer:.2}: heard {heard:?}");
        let participants: std::collections::BTreeSet<_> =
            doc.segments.iter().map(|s| s.participant.clone()).collect();
        assert_eq!(
            participants.len(),
            3,
            "one stream per speaker: {participants:?}"
        );
        // Each segment under the name the room shows for its speaker, in the order spoken.
        let speakers: Vec<_> = doc
            .segments
            .iter()
            .map(|s| s.speaker.clone().unwrap_or_default())
            .collect();
        let mut order = speakers.clone();
        order.dedup();
        assert_eq!(order, ["Dr. Lee", "Maria", "Tom"], "{speakers:?}");
        let summary = wait_for("the summary", 60, &mut services, || async {
            store.summary_for_meeting(&t, &meeting.id).await.unwrap()
        })
        .await;
        let raw = vault
            .open::<Summary>(&summary.id, "body", &summary.body)
            .unwrap();
        let sdoc: meetbot_transcriber::summarize::SummaryDoc =
            serde_json::from_slice(&raw).unwrap();
        let items = sdoc
            .action_items
            .iter()
            .map(|a| a.text.to_lowercase())
            .collect::<Vec<_>>()
            .join(" | ");
        for spoken in ["consent form", "insurance company"] {
            assert!(
                items.contains(spoken),
                "action item {spoken:?} missing: {items}"
            );
        }
        assert!(
            sdoc.action_items
                .iter()
                .any(|a| a.owner.as_deref() == Some("Maria") && a.text.contains("consent form")),
            "the first-person action item is Maria's: {:?}",
            sdoc.action_items
        );

        // Delivered: the email at maildev, the post at the Slack stand-in, once each.
        let emails = wait_for("the email", 60, &mut services, || async {
            let e = mail.emails().await.unwrap_or_default();
            (!e.is_empty()).then_some(e)
        })
        .await;
        assert_eq!(emails.len(), 1);
        let email = emails[0].to_string().to_lowercase();
        assert!(email.contains("team@clinic.example"), "{email}");
        assert!(email.contains("consent form"), "{email}");
        let posts = wait_for("the Slack post", 30, &mut services, || async {
            let p = slack.accepted();
            (!p.is_empty()).then_some(p)
        })
        .await;
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0]["channel"], "C0CLINIC");
        assert!(
            posts[0]
                .to_string()
                .to_lowercase()
                .contains("insurance company")
        );

        // One trace for the meeting, from every service, carrying ids only.
        if let Some(p) = &phoenix {
            meeting_trace(p, &t, &meeting.id, &mut services).await;
        }

        // No audio file anywhere: the test's directory, the temporary directory.
        let mut audio = Vec::new();
        audio_files_since(dir.path(), started, &mut audio);
        audio_files_since(&std::env::temp_dir(), started, &mut audio);
        assert!(audio.is_empty(), "audio written to disk: {audio:?}");

        // The raw database: none of what was said, the title, the link or the addresses.
        let raw_db = dump(&engine, &prefix, &t).await;
        for plain in [
            "consent form",
            "insurance company",
            "Intake process review",
            "rooms.clinic.example",
            USER,
            "team@clinic.example",
        ] {
            assert!(
                !meetbot_testsupport::contains(&raw_db, plain.as_bytes()),
                "{plain:?} in plain text in the raw database"
            );
        }

        // Erasing the session leaves only its receipt.
        drop(services);
        let receipt = meetbot_store::erase::erase_session(&*store, &t, &meeting.id, "e2e")
            .await
            .unwrap()
            .expect("the session exists");
        assert!(store.get_meeting(&t, &meeting.id).await.unwrap().is_none());
        assert!(
            store
                .transcript_for_meeting(&t, &meeting.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .summary_for_meeting(&t, &meeting.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .list_deliveries(&t, Some(&meeting.id))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(job("done").await.is_none());
        // Nothing in the tenant's database names the meeting any more (the audit log records
        // the erasure as an action); its receipt in the deletion log does, and verifies.
        assert_eq!(
            tenant_records_naming(&engine, &prefix, &t, &meeting.id).await,
            0
        );
        let receipts = store.deletion_receipts(Some(&t)).await.unwrap();
        let r = receipts
            .iter()
            .find(|r| r.id == receipt.id)
            .expect("the receipt is in the deletion log");
        assert_eq!(r.target, format!("meeting:{}", meeting.id));
        assert_eq!(r.digest, meetbot_store::vault::receipt_digest(r));
        let counts: std::collections::BTreeMap<_, _> = receipt.counts.iter().cloned().collect();
        for kind in ["meetings", "transcripts", "summaries", "bot_jobs"] {
            assert_eq!(counts[kind], 1, "{kind}: {counts:?}");
        }
        assert!(counts["deliveries"] >= 2, "{counts:?}");
        drop_databases(&engine, &prefix, &t).await;
    });
    drop(host);
}

/// What the services of an end-to-end test are pointed at.
struct Deployment<'a> {
    mongo: &'a str,
    prefix: &'a str,
    key_file: &'a Path,
    amqp: &'a str,
    google: &'a GoogleStandIn,
    janus: &'a JanusServer,
    transcriber_port: u16,
    model: &'a Path,
    mail: &'a MailDev,
    slack: &'a SlackStandIn,
    slack_token: &'a str,
}

/// Every service's configuration, by environment only, as in a deployment (a later entry with
/// the same name wins).
fn service_env(d: &Deployment<'_>) -> Vec<(String, String)> {
    let port = d.transcriber_port;
    [
        ("MEETBOT_STORE__KIND", "mongodb".to_string()),
        ("MEETBOT_STORE__MONGODB_URI", d.mongo.to_string()),
        ("MEETBOT_STORE__DB_PREFIX", d.prefix.to_string()),
        (
            "MEETBOT_KEYS__LOCAL_KEY_FILE",
            d.key_file.display().to_string(),
        ),
        ("MEETBOT_QUEUE__KIND", "rabbitmq".into()),
        ("MEETBOT_QUEUE__AMQP_URL", d.amqp.to_string()),
        ("MEETBOT_QUEUE__PREFIX", d.prefix.to_string()),
        ("MEETBOT_CALENDAR__GOOGLE_ROOT_URL", d.google.root_url()),
        ("MEETBOT_CALENDAR__WEBHOOK_LISTEN", "127.0.0.1:0".into()),
        ("MEETBOT_BOT__JANUS_API_URL", d.janus.url()),
        (
            "MEETBOT_BOT__JANUS_ROOM_HOST",
            "rooms.clinic.example".into(),
        ),
        (
            "MEETBOT_BOT__ICE_IP",
            meetbot_testsupport::janus::ICE_IP.into(),
        ),
        (
            "MEETBOT_BOT__TRANSCRIBER_URL",
            format!("ws://127.0.0.1:{port}/v1/audio"),
        ),
        (
            "MEETBOT_BOT__AUDIO_TOKEN_SECRET",
            "e2e-audio-secret-0123456789".into(),
        ),
        ("MEETBOT_TRANSCRIBER__LISTEN", format!("127.0.0.1:{port}")),
        (
            "MEETBOT_TRANSCRIBER__MODEL_DIR",
            d.model.parent().unwrap().display().to_string(),
        ),
        ("MEETBOT_DELIVERY__SMTP_HOST", "127.0.0.1".into()),
        ("MEETBOT_DELIVERY__SMTP_PORT", d.mail.smtp_port.to_string()),
        ("MEETBOT_DELIVERY__SMTP_SECURITY", "none".into()),
        (
            "MEETBOT_DELIVERY__SLACK_BASE_URL",
            format!("http://{}", d.slack.addr),
        ),
        ("MEETBOT_DELIVERY__SLACK_TOKEN", d.slack_token.to_string()),
        ("MEETBOT_DELIVERY__POLL_SECONDS", "1".into()),
        ("MEETBOT_OPS__LISTEN", "127.0.0.1:0".into()),
        // The launcher's control endpoint for its bots, on a free port.
        ("MEETBOT_LAUNCHER__CONTROL_LISTEN", "127.0.0.1:0".into()),
        ("MEETBOT_TELEMETRY__LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The store as every service sees it, and a tenant whose summaries go to
/// team@clinic.example and a Slack channel.
struct Clinic {
    engine: Arc<MongoEngine>,
    store: Arc<dyn Store>,
    t: meetbot_core::TenantId,
    vault: Arc<meetbot_store::vault::TenantVault>,
}

impl Clinic {
    async fn open(
        mongo: &str,
        prefix: &str,
        key_file: &Path,
        name: &str,
        bot: BotRuleOverrides,
        slack_channel: &str,
    ) -> Clinic {
        let engine = init_engine(
            MongoEngine::connect(mongo, prefix, Duration::from_secs(10))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        let store: Arc<dyn Store> = engine.clone();
        let tenants = Tenants::new(
            store.clone(),
            Arc::new(LocalKeyFile::open_or_create(key_file).unwrap()),
        );
        let t = tenants.create(name).await.unwrap().id;
        let vault = tenants.vault(&t).await.unwrap();
        let mut settings = TenantSettings::new(bot, Utc::now());
        settings.delivery.emails = Some(
            vault
                .seal::<TenantSettings>("settings", "delivery_emails", b"team@clinic.example")
                .unwrap(),
        );
        settings.delivery.slack_channel = Some(slack_channel.into());
        store.put_tenant_settings(&t, &settings).await.unwrap();
        Clinic {
            engine,
            store,
            t,
            vault,
        }
    }
}

/// Removes the test's databases (the tenant's and the control one).
async fn drop_databases(engine: &MongoEngine, prefix: &str, t: &meetbot_core::TenantId) {
    for db in [format!("{prefix}_t_{t}"), format!("{prefix}_control")] {
        engine.client().database(&db).drop().await.ok();
    }
}

/// `meetbot <name>` configured by `env` alone (none of this process's `MEETBOT_*` variables),
/// in `dir`, without stdin or stdout; the caller says where its stderr goes.
fn service_command(name: &str, env: &[(String, String)], dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEETBOT_")) {
        c.env_remove(k);
    }
    c.arg(name)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// `USER`'s Google calendar connected to tenant `t`, with the stand-in's token (sealed).
async fn google_connection(
    store: &dyn Store,
    vault: &meetbot_store::vault::TenantVault,
    t: &meetbot_core::TenantId,
) {
    let conn_id = meetbot_core::ids::new_record_id();
    let now = Utc::now();
    let seal = |field: &str, v: &str| {
        vault
            .seal::<CalendarConnection>(&conn_id, field, v.as_bytes())
            .unwrap()
    };
    store
        .put_connection(
            t,
            &CalendarConnection {
                account_email: seal("account_email", USER),
                access_token: seal("access_token", TOKEN),
                refresh_token: None,
                id: conn_id.clone(),
                user_id: "user-lee".into(),
                provider: CalendarProvider::Google,
                scopes: vec![],
                access_expires_at: None,
                status: ConnectionStatus::Active,
                sync_cursor: None,
                push: None,
                last_sync: None,
                created_at: now,
                updated_at: now,
            },
        )
        .await
        .unwrap();
}

/// The spans each service exports for a meeting (decision 0043), by name.
const MEETING_SPANS: [(&str, &str); 8] = [
    ("calendar.meeting", "calendar-sync"),
    ("scheduler.arm", "scheduler"),
    ("scheduler.dispatch", "scheduler"),
    ("launcher.launch", "launcher"),
    ("bot.session", "bot"),
    ("transcriber.stream", "transcriber"),
    ("transcriber.finish", "transcriber"),
    ("delivery.attempt", "delivery worker"),
];

/// Phoenix holds one trace for the meeting with a span of every service in it, in the trace
/// every service derives from the ids alone; and no span anywhere names a person, the title,
/// the link or what was said.
async fn meeting_trace(
    phoenix: &Phoenix,
    t: &meetbot_core::TenantId,
    meeting_id: &str,
    services: &mut Services,
) {
    let (trace, _) = meetbot_core::telemetry::meeting_trace_ids(t, meeting_id);
    let trace = trace.to_string();
    let spans = wait_for(
        "every service's span of the meeting",
        60,
        services,
        || async {
            let spans = phoenix.spans().await;
            let names: std::collections::BTreeSet<String> = spans
                .iter()
                .filter(|s| s["context"]["trace_id"] == trace.as_str())
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect();
            MEETING_SPANS
                .iter()
                .all(|(n, _)| names.contains(*n))
                .then_some(spans)
        },
    )
    .await;
    let ours: Vec<&serde_json::Value> = spans
        .iter()
        .filter(|s| s["context"]["trace_id"] == trace.as_str())
        .collect();
    eprintln!(
        "the meeting's trace {trace}: {:?}",
        ours.iter().map(|s| &s["name"]).collect::<Vec<_>>()
    );
    for s in &spans {
        if s["attributes"]["meeting"] == meeting_id {
            assert_eq!(s["context"]["trace_id"], trace.as_str(), "{s}");
        }
    }
    let all = serde_json::to_string(&spans).unwrap();
    for plain in [
        USER,
        "maria@clinic.example",
        "team@clinic.example",
        "Intake process review",
        "rooms.clinic.example",
        "consent form",
        "insurance company",
        TOKEN,
    ] {
        assert!(!all.contains(plain), "{plain:?} in an exported span");
    }
}

/// Every byte of the control database and the tenant's, as someone with database access reads it.
async fn dump(engine: &MongoEngine, prefix: &str, t: &meetbot_core::TenantId) -> Vec<u8> {
    let mut out = Vec::new();
    for db_name in [format!("{prefix}_control"), format!("{prefix}_t_{t}")] {
        let db = engine.client().database(&db_name);
        for coll in db.list_collection_names().await.unwrap() {
            let docs: Vec<bson::Document> = db
                .collection::<bson::Document>(&coll)
                .find(bson::doc! {})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            for d in docs {
                out.extend(bson::to_vec(&d).unwrap());
            }
        }
    }
    out
}

/// Documents of the tenant's database (not the deletion log) that mention `needle`.
async fn tenant_records_naming(
    engine: &MongoEngine,
    prefix: &str,
    t: &meetbot_core::TenantId,
    needle: &str,
) -> usize {
    let db = engine.client().database(&format!("{prefix}_t_{t}"));
    let mut n = 0;
    for coll in db.list_collection_names().await.unwrap() {
        if coll == "audit_log" {
            continue;
        }
        let docs: Vec<bson::Document> = db
            .collection::<bson::Document>(&coll)
            .find(bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        n += docs
            .iter()
            .filter(|d| meetbot_testsupport::contains(&bson::to_vec(d).unwrap(), needle.as_bytes()))
            .count();
    }
    n
}

//! Stop means stop, end to end, every service a real process of the `meetbot` binary: an admin
//! sends a bot to a real Janus VideoRoom through `meetbot api` (`POST /v1/bots`) -> `meetbot
//! scheduler` -> real RabbitMQ -> `meetbot launcher` (local processes) -> `meetbot bot` joins
//! and streams to `meetbot transcriber` (whisper tiny.en) while espeak-ng speakers talk. Mid-call
//! the admin deletes the meeting (`DELETE /v1/meetings/{id}`): the bot's process ends within
//! 5 s, and afterwards there is no transcript, no summary, no delivery record, no email at the
//! real maildev and no post at the Slack stand-in, however long the speakers go on.
//!
//! Janus needs its own network namespace (it ignores loopback for ICE), so the test runs in one;
//! RabbitMQ and the MongoDB-wire server stay in the host's, reached through relays
//! (`relay_from_host`). Nothing leaves 127.0.0.0/8.

mod common;

use chrono::Utc;
use common::{Services, free_port, host_port, wait_for};
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_store::vault::Tenants;
use meetbot_store::{JobFilter, MongoEngine, Store, init_engine};
use meetbot_testsupport::delivery::{MailDev, SlackStandIn};
use meetbot_testsupport::janus::{JanusServer, Publisher, in_netns, relay_from_host, speech};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOM: u64 = 4343;
const LINES: [(&str, &str); 3] = [
    (
        "Dr. Lee",
        "Good morning. The patient in room four has a new allergy to penicillin.",
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

/// The pid of the `meetbot bot` process for `job` (a child of the launcher this test started),
/// found by its command line.
fn bot_pid(job: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.contains(&&b"bot"[..]) && args.contains(&job.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Whether process `pid` still runs (a zombie does not).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[test]
fn a_meeting_deleted_mid_call_stops_its_bot_within_5_s_and_leaves_no_transcript_summary_email_or_post()
 {
    let amqp = meetbot_testsupport::amqp_url();
    let mongo = meetbot_testsupport::mongodb_uri();
    let model = meetbot_testsupport::speech::whisper_model();
    let host = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = host.handle().clone();
    in_netns(move || async move {
        let socket = |u: &str| host_port(u).parse::<SocketAddr>().unwrap();
        let amqp_relay = relay_from_host(&handle, socket(&amqp));
        let mongo_relay = relay_from_host(&handle, socket(&mongo));
        let amqp_in = amqp.replace(&host_port(&amqp), &amqp_relay.to_string());
        let mongo_in = mongo.replace(&host_port(&mongo), &mongo_relay.to_string());

        // The store, a tenant delivering to email and Slack, and its admin signed in.
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        let prefix = meetbot_testsupport::unique("stop");
        let engine = init_engine(
            MongoEngine::connect(&mongo_in, &prefix, Duration::from_secs(10))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        let store: Arc<dyn Store> = engine.clone();
        let tenants = Tenants::new(
            store.clone(),
            Arc::new(LocalKeyFile::open_or_create(&key_file).unwrap()),
        );
        let t = tenants.create("Clinic").await.unwrap().id;
        let vault = tenants.vault(&t).await.unwrap();
        let mut settings = TenantSettings::new(Default::default(), Utc::now());
        settings.delivery.emails = Some(
            vault
                .seal::<TenantSettings>("settings", "delivery_emails", b"team@clinic.example")
                .unwrap(),
        );
        settings.delivery.slack_channel = Some("C0CLINIC".into());
        store.put_tenant_settings(&t, &settings).await.unwrap();
        let admin =
            meetbot_api::routes::create_user(&tenants, &t, "adam@clinic.example", Role::Admin)
                .await
                .unwrap();
        let (token, session_id) = meetbot_api::auth::new_session_token(&t).unwrap();
        let now = Utc::now();
        store
            .put_session(
                &t,
                &Session {
                    id: session_id,
                    user_id: admin.id.clone(),
                    created_at: now,
                    last_seen_at: now,
                    expires_at: now + chrono::Duration::hours(1),
                    mfa_passed: true,
                    mfa_at: None,
                },
            )
            .await
            .unwrap();

        let janus = JanusServer::start().await;
        janus.create_room(ROOM, None).await;
        let mail = MailDev::start().await.unwrap();
        let slack = SlackStandIn::start("xoxb-e2e").await;

        let transcriber_port = free_port();
        let api_port = free_port();
        let env: Vec<(String, String)> = [
            ("MEETBOT_STORE__KIND", "mongodb".to_string()),
            ("MEETBOT_STORE__MONGODB_URI", mongo_in.clone()),
            ("MEETBOT_STORE__DB_PREFIX", prefix.clone()),
            (
                "MEETBOT_KEYS__LOCAL_KEY_FILE",
                key_file.display().to_string(),
            ),
            ("MEETBOT_QUEUE__KIND", "rabbitmq".into()),
            ("MEETBOT_QUEUE__AMQP_URL", amqp_in.clone()),
            ("MEETBOT_QUEUE__PREFIX", prefix.clone()),
            ("MEETBOT_SCHEDULER__TICK_MS", "250".into()),
            ("MEETBOT_API__LISTEN", format!("127.0.0.1:{api_port}")),
            (
                "MEETBOT_API__PUBLIC_URL",
                format!("http://127.0.0.1:{api_port}"),
            ),
            ("MEETBOT_BOT__JANUS_API_URL", janus.url()),
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
                format!("ws://127.0.0.1:{transcriber_port}/v1/audio"),
            ),
            (
                "MEETBOT_BOT__AUDIO_TOKEN_SECRET",
                "e2e-audio-secret-0123456789".into(),
            ),
            (
                "MEETBOT_TRANSCRIBER__LISTEN",
                format!("127.0.0.1:{transcriber_port}"),
            ),
            (
                "MEETBOT_TRANSCRIBER__MODEL_DIR",
                model.parent().unwrap().display().to_string(),
            ),
            ("MEETBOT_DELIVERY__SMTP_HOST", "127.0.0.1".into()),
            ("MEETBOT_DELIVERY__SMTP_PORT", mail.smtp_port.to_string()),
            ("MEETBOT_DELIVERY__SMTP_SECURITY", "none".into()),
            (
                "MEETBOT_DELIVERY__SLACK_BASE_URL",
                format!("http://{}", slack.addr),
            ),
            ("MEETBOT_DELIVERY__SLACK_TOKEN", "xoxb-e2e".into()),
            ("MEETBOT_DELIVERY__POLL_SECONDS", "1".into()),
            ("MEETBOT_OPS__LISTEN", "127.0.0.1:0".into()),
            // The launcher's control endpoint for its bots, on a free port.
            ("MEETBOT_LAUNCHER__CONTROL_LISTEN", "127.0.0.1:0".into()),
            ("MEETBOT_TELEMETRY__LOG_LEVEL", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let spawn = |name: &str| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
            for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEETBOT_")) {
                c.env_remove(k);
            }
            c.arg(name)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            (
                name.to_string(),
                c.spawn().unwrap_or_else(|e| panic!("meetbot {name}: {e}")),
            )
        };
        let mut services = Services(vec![
            spawn("transcriber"),
            spawn("launcher"),
            spawn("scheduler"),
            spawn("api"),
        ]);
        let api = format!("http://127.0.0.1:{api_port}");
        let http = reqwest::Client::new();
        wait_for("the API", 60, &mut services, || {
            let (http, api) = (http.clone(), api.clone());
            async move { http.get(format!("{api}/v1/openapi.json")).send().await.ok() }
        })
        .await;

        // The admin sends a bot to the room now.
        let resp = http
            .post(format!("{api}/v1/bots"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "meeting_url": format!("https://rooms.clinic.example/room/{ROOM}"),
                "title": "Allergy review",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let bot: serde_json::Value = resp.json().await.unwrap();
        let job_id = bot["id"].as_str().unwrap().to_string();
        let meeting_id = bot["meeting_id"].as_str().unwrap().to_string();
        let job = || {
            let (store, t, id) = (store.clone(), t.clone(), job_id.clone());
            async move { store.get_bot_job(&t, &id).await.unwrap().map(|j| j.value) }
        };
        wait_for("the bot to join", 90, &mut services, || async {
            job().await.filter(|j| j.state == BotJobState::Joined)
        })
        .await;
        let pid = bot_pid(&job_id).expect("the bot's process");

        // The speakers talk; after the first line the meeting is deleted mid-call.
        let mut lead = Duration::from_secs(1);
        let mut publishers = Vec::new();
        let mut first_done = Duration::ZERO;
        for (who, line) in LINES {
            let pcm = speech(line);
            let len = Duration::from_millis(pcm.len() as u64 / 48);
            publishers.push(Publisher::start(&janus.url(), ROOM, who, lead, pcm).await);
            lead += len + Duration::from_millis(800);
            if first_done.is_zero() {
                first_done = lead;
            }
        }
        tokio::time::sleep(first_done + Duration::from_secs(1)).await;
        assert!(running(pid), "the bot is in the call before the deletion");
        let deleted = Instant::now();
        let resp = http
            .delete(format!("{api}/v1/meetings/{meeting_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        eprintln!("DELETE answered after {:?}", deleted.elapsed());
        while running(pid) {
            assert!(
                deleted.elapsed() < Duration::from_secs(5),
                "the bot's process still runs 5 s after its meeting's deletion was asked"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let gone_after = deleted.elapsed();
        eprintln!("bot process ended {gone_after:?} after the deletion was asked");
        let j = job().await.expect("the job is kept (soft deletion)");
        assert_eq!(j.state, BotJobState::Stopped(format!("user:{}", admin.id)));

        // The speakers go on, then leave; the services get time to store and deliver anything.
        tokio::time::sleep(lead.saturating_sub(first_done) + Duration::from_secs(1)).await;
        for p in publishers {
            p.leave().await;
        }
        tokio::time::sleep(Duration::from_secs(12)).await;
        for (name, c) in &mut services.0 {
            assert!(
                c.try_wait().unwrap().is_none(),
                "`meetbot {name}` exited during the test"
            );
        }
        assert!(
            store
                .transcript_for_meeting(&t, &meeting_id)
                .await
                .unwrap()
                .is_none(),
            "a transcript was stored"
        );
        assert!(
            store
                .summary_for_meeting(&t, &meeting_id)
                .await
                .unwrap()
                .is_none(),
            "a summary was stored"
        );
        assert!(
            store
                .list_deliveries(&t, Some(&meeting_id))
                .await
                .unwrap()
                .is_empty(),
            "a delivery was enqueued"
        );
        assert!(
            mail.emails().await.unwrap_or_default().is_empty(),
            "an email was sent"
        );
        assert!(slack.accepted().is_empty(), "a Slack post was made");
        // No other bot went to the deleted meeting.
        let jobs = store
            .find_bot_jobs(
                &t,
                &JobFilter {
                    meeting_id: Some(meeting_id.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);

        drop(services);
        engine
            .client()
            .database(&format!("{prefix}_t_{t}"))
            .drop()
            .await
            .ok();
        engine
            .client()
            .database(&format!("{prefix}_control"))
            .drop()
            .await
            .ok();
    });
    drop(host);
}

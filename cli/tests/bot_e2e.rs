//! A bot end to end, in a network namespace with the real Janus: the launch consumer claims a
//! dispatched job and starts a real `meetbot bot` process, which opens the sealed join link,
//! joins the VideoRoom under its recording name and marks the job joined; the bot process is
//! killed mid-meeting, the consumer's watch finds it lost and launches one new bot (the gap is
//! in the job's history, and never two bots at once); when the last participant leaves, the bot
//! leaves by the alone rule and the job is done. The bot's name is the tenant's and its alone
//! timeout the job's own (job over tenant over service). Bots get only their tickets (decision
//! 0032): their state reaches the store through the launcher's control endpoint.

use chrono::{Duration as CDuration, Utc};
use meetbot_bot::consumer::{Handled, LaunchConsumer, LaunchSettings};
use meetbot_bot::janus::JanusSession;
use meetbot_bot::local::LocalProcessLauncher;
use meetbot_bot::{BotLauncher, BotRun};
use meetbot_core::config::Config;
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_queue::{InProcessQueue, JOB_MESSAGE_VERSION, JobMessage, JobQueue};
use meetbot_store::vault::Tenants;
use meetbot_testsupport::janus::{JanusServer, Publisher, in_netns, speech};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOM: u64 = 3001;
/// The tenant's own name for its bot.
const NAME: &str = "Clinic notetaker (recording)";

/// Participant ids of every meetbot in the room.
async fn meetbots_in_room(j: &JanusServer) -> Vec<u64> {
    let s = JanusSession::create(&j.url()).await.unwrap();
    let h = s.attach("janus.plugin.videoroom").await.unwrap();
    let v = s
        .message(
            h.id,
            json!({"request": "listparticipants", "room": ROOM}),
            None,
        )
        .await
        .unwrap();
    s.destroy().await;
    v["plugindata"]["data"]["participants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["display"] == NAME)
                .filter_map(|p| p["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tenant in an embedded store with a local key file, as a bot process sees it.
struct World {
    dir: tempfile::TempDir,
    tenants: Arc<Tenants>,
    /// The `[bot]` section the launcher tells its bots (set by [`World::launcher`]).
    bot: std::sync::Mutex<meetbot_core::config::BotConfig>,
    store: Arc<dyn meetbot_store::Store>,
    tenant: meetbot_core::TenantId,
    vault: Arc<meetbot_store::vault::TenantVault>,
}

async fn world(name: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.store.embedded_dir = dir.path().join("data");
    cfg.keys.local_key_file = dir.path().join("key");
    let store = meetbot_store::open(&cfg.store).await.unwrap();
    let tenants = Arc::new(Tenants::new(
        store.clone(),
        Arc::new(LocalKeyFile::open_or_create(&cfg.keys.local_key_file).unwrap()),
    ));
    let tenant = tenants.create(name).await.unwrap().id;
    let vault = tenants.vault(&tenant).await.unwrap();
    World {
        dir,
        tenants,
        bot: Default::default(),
        store,
        tenant,
        vault,
    }
}

impl World {
    /// A meeting running now, with its join link sealed, and its dispatched bot job.
    async fn meeting_with_job(
        &self,
        meeting_id: &str,
        job_id: &str,
        link: &str,
        platform: Platform,
        bot_rules: Option<BotRuleOverrides>,
    ) -> BotJob {
        let now = Utc::now();
        let seal =
            |field: &str, v: &[u8]| self.vault.seal::<Meeting>(meeting_id, field, v).unwrap();
        let m = Meeting {
            title: seal("title", b"Follow-up"),
            attendees: seal("attendees", b"{}"),
            join_url: Some(seal("join_url", link.as_bytes())),
            id: meeting_id.into(),
            connection_id: None,
            event_instance_id: format!("evt-{meeting_id}"),
            series_id: None,
            starts_at: now - CDuration::minutes(1),
            ends_at: now + CDuration::minutes(30),
            all_day: false,
            status: MeetingStatus::Confirmed,
            platform: Some(platform),
            wants_bot: true,
            join_reason: None,
            requested_by: None,
            deleted_at: None,
            meeting_ref: None,
            source_updated_at: None,
            updated_at: now,
        };
        self.store.put_meeting(&self.tenant, &m).await.unwrap();
        let job = BotJob {
            id: job_id.into(),
            meeting_id: meeting_id.into(),
            idempotency_key: format!("{}:evt-{meeting_id}:{}", self.tenant, now.timestamp()),
            join_at: now,
            state: BotJobState::Dispatched,
            history: vec![],
            published_at: Some(now),
            bot_rules,
            ticket: None,
        };
        self.store.insert_bot_job(&self.tenant, &job).await.unwrap();
        job
    }

    /// A local launcher of `meetbot bot` processes, whose tickets carry the `[bot]` settings
    /// `env` gives (as `MEETBOT_BOT__*` variables would) and nothing of the store or keys.
    fn launcher(&self, env: &[(&str, &str)]) -> Arc<LocalProcessLauncher> {
        let mut vars = vec![("MEETBOT_BOT__ICE_IP", "127.0.0.2")];
        vars.extend_from_slice(env);
        *self.bot.lock().unwrap() = Config::load_with_env(None, &vars).unwrap().bot;
        Arc::new(
            LocalProcessLauncher::new(env!("CARGO_BIN_EXE_meetbot"), vec!["bot".into()], 2)
                .with_env("MEETBOT_TELEMETRY__LOG_LEVEL", "warn")
                .with_grace(Duration::from_secs(5)),
        )
    }

    /// Publishes `job` on an in-process queue and has a launch consumer take it (launched).
    async fn launch(&self, job: &BotJob, launcher: Arc<LocalProcessLauncher>) -> LaunchConsumer {
        let queue = Arc::new(InProcessQueue::new(5));
        // The launcher's control endpoint, where the bots report (for the test's life).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(meetbot_bot::control::serve(
            listener,
            meetbot_bot::control::Control::new(self.store.clone(), Some(queue.clone())),
            None,
            std::future::pending(),
        ));
        let issuer = meetbot_bot::ticket::TicketIssuer::new(
            self.tenants.clone(),
            self.bot.lock().unwrap().clone(),
            None,
            control_url,
        );
        let consumer = LaunchConsumer::new(
            queue.clone(),
            self.store.clone(),
            launcher,
            Arc::new(issuer),
            LaunchSettings::default(),
        );
        queue
            .publish_job(&JobMessage {
                v: JOB_MESSAGE_VERSION,
                job_id: job.id.clone(),
                tenant_id: self.tenant.clone(),
                meeting_id: job.meeting_id.clone(),
                idempotency_key: job.idempotency_key.clone(),
                join_at: job.join_at,
                dispatched_at: job.join_at,
            })
            .await
            .unwrap();
        let mut jobs = queue.consume_jobs().await.unwrap();
        assert_eq!(
            consumer.handle(jobs.next().await.unwrap()).await.unwrap(),
            Handled::Launched
        );
        consumer
    }

    async fn job(&self, id: &str) -> BotJob {
        self.store
            .get_bot_job(&self.tenant, id)
            .await
            .unwrap()
            .unwrap()
            .value
    }
}

#[test]
fn a_killed_bot_is_replaced_once_and_the_bot_leaves_when_alone() {
    in_netns(|| async {
        let w = world("Clinic").await;
        let j = JanusServer::start().await;
        j.create_room(ROOM, None).await;
        let mut talk = Vec::new();
        for _ in 0..20 {
            talk.extend(speech(
                "We will review the treatment plan at the next appointment.",
            ));
        }
        let speaker = Publisher::start(&j.url(), ROOM, "Dr. Example", Duration::ZERO, talk).await;

        // The job's own rule wins over the tenant's (30 s) and the service's (60 s).
        let job = w
            .meeting_with_job(
                "meeting-e2e",
                "job-e2e",
                &format!("https://rooms.test/room/{ROOM}"),
                Platform::Janus,
                Some(BotRuleOverrides {
                    alone_timeout_seconds: Some(2),
                    ..Default::default()
                }),
            )
            .await;
        w.store
            .put_tenant_settings(
                &w.tenant,
                &TenantSettings::new(
                    BotRuleOverrides {
                        display_name: Some(NAME.into()),
                        alone_timeout_seconds: Some(30),
                        ..Default::default()
                    },
                    Utc::now(),
                ),
            )
            .await
            .unwrap();
        let launcher = w.launcher(&[
            ("MEETBOT_BOT__JANUS_API_URL", &j.url()),
            ("MEETBOT_BOT__JANUS_ROOM_HOST", "rooms.test"),
        ]);
        let consumer = w.launch(&job, launcher.clone()).await;

        let state = || w.job("job-e2e");
        wait_for("the bot to join", 20, || async {
            state().await.state == BotJobState::Joined
        })
        .await;
        let before = meetbots_in_room(&j).await;
        assert_eq!(
            before.len(),
            1,
            "the bot is in the room under its recording name"
        );

        // Killed mid-meeting: found lost, launched again once.
        let first = launcher.pid("job-e2e").unwrap();
        // SAFETY: kill(2) on the bot process this test's launcher started.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        wait_for("the kill to be seen", 10, || async {
            matches!(launcher.state("job-e2e").await.unwrap(), BotRun::Failed(_))
        })
        .await;
        assert_eq!(consumer.watch_once().await.unwrap(), 1);
        let second = launcher.pid("job-e2e").unwrap();
        assert_ne!(first, second);
        assert_eq!(
            launcher.active().await.unwrap(),
            1,
            "one bot process at a time"
        );
        let history = state().await.history;
        assert!(
            history.iter().any(|c| matches!(&c.state,
                BotJobState::Failed(r) if r.starts_with("bot lost, relaunching: bot killed by signal 9"))),
            "{history:?}"
        );
        // The new bot joins as a new participant (Janus drops the killed one's session when it
        // times out).
        wait_for("the new bot to join", 20, || async {
            meetbots_in_room(&j)
                .await
                .iter()
                .any(|id| !before.contains(id))
        })
        .await;

        // The last participant leaves (after talking to the new bot for a while): the bot leaves
        // by the alone rule and the job is done.
        tokio::time::sleep(Duration::from_secs(2)).await;
        speaker.leave().await;
        wait_for("the bot to finish", 30, || async {
            launcher.state("job-e2e").await.unwrap().is_finished()
        })
        .await;
        assert_eq!(launcher.state("job-e2e").await.unwrap(), BotRun::Succeeded);
        assert_eq!(state().await.state, BotJobState::Done);
        assert_eq!(
            consumer.watch_once().await.unwrap(),
            0,
            "a finished bot is not relaunched"
        );
    });
}

/// Processes in process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        // state ppid pgrp ...
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && fields[0] != "Z" {
            out.push(p);
        }
    }
    out
}

/// Child processes of `pid` whose command is `name`.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm == name && ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

#[test]
fn a_browser_bot_whose_chromium_crashes_exits_for_a_relaunch_and_the_new_bot_joins_again() {
    use meetbot_testsupport::browser::{FakeMeetings, Scenario, Speaker};
    in_netns(|| async {
        let w = world("Firm").await;

        // A Meet-like page on this machine, and a profile file that sends its links to the
        // built-in Meet steps (what an operator's profiles_dir does for a new host).
        let fake = FakeMeetings::start().await;
        let mut sc = Scenario::new("meet", "open");
        sc.speakers = vec![Speaker::saying(
            "Dr. Example",
            "We will review the treatment plan at the next appointment.",
            500,
        )];
        let link = fake.add(sc);
        let profiles = w.dir.path().join("profiles");
        std::fs::create_dir(&profiles).unwrap();
        let meet = meetbot_bot::browser::profile::BUILT_IN
            .iter()
            .find(|(n, _)| *n == "google-meet")
            .unwrap()
            .1;
        let local = meet
            .replace("platform = \"google-meet\"", "platform = \"local-meet\"")
            .replace(
                r"pattern = '^https://meet\.google\.com/(?P<code>[a-z]{3}-[a-z]{4}-[a-z]{3})(?:[/?#]|$)'",
                r"pattern = '^(?P<base>http://127\.0\.0\.1:[0-9]+)/meet/(?P<code>[a-z0-9-]+)$'",
            )
            .replace(
                "join_url = 'https://meet.google.com/{code}'",
                "join_url = '{base}/meet/{code}'",
            );
        assert_ne!(local, meet);
        std::fs::write(profiles.join("local-meet.toml"), local).unwrap();

        let job = w
            .meeting_with_job(
                "meeting-browser",
                "job-browser",
                &link,
                Platform::GoogleMeet,
                None,
            )
            .await;
        let launcher = w.launcher(&[
            (
                "MEETBOT_BOT__BROWSER__PROFILES_DIR",
                &profiles.display().to_string(),
            ),
            // Tests run as root, where Chromium refuses its sandbox; production keeps it on.
            ("MEETBOT_BOT__BROWSER__NO_SANDBOX", "true"),
        ]);
        let consumer = w.launch(&job, launcher.clone()).await;
        let state = || w.job("job-browser");
        wait_for("the bot to join through the page", 40, || async {
            state().await.state == BotJobState::Joined
        })
        .await;
        let joins = |f: &FakeMeetings| {
            f.events(&link)
                .iter()
                .filter(|e| e["kind"] == "join")
                .count()
        };
        assert_eq!(joins(&fake), 1);

        // Chromium dies under the bot: the bot exits for a relaunch, the job stays live.
        let bot = launcher.pid("job-browser").unwrap();
        let chromium = children_named(bot, "chromium");
        assert_eq!(chromium.len(), 1, "one Chromium under the bot");
        // SAFETY: kill(2) on the Chromium of the bot this test's launcher started.
        unsafe { libc::kill(chromium[0] as i32, libc::SIGKILL) };
        wait_for("the bot to exit", 15, || async {
            matches!(
                launcher.state("job-browser").await.unwrap(),
                BotRun::Failed(_)
            )
        })
        .await;
        assert_eq!(
            launcher.state("job-browser").await.unwrap(),
            BotRun::Failed("bot exited with code 4".into())
        );
        assert_eq!(
            state().await.state,
            BotJobState::Joined,
            "the job stays live"
        );
        assert_eq!(
            consumer.watch_once().await.unwrap(),
            1,
            "relaunched per policy"
        );
        let history = state().await.history;
        assert!(
            history.iter().any(|c| matches!(&c.state,
                BotJobState::Failed(r) if r == "bot lost, relaunching: bot exited with code 4")),
            "{history:?}"
        );
        wait_for("the new bot to join", 40, || async { joins(&fake) == 2 }).await;
        let second = launcher.pid("job-browser").unwrap();
        assert_ne!(second, bot);
        assert!(launcher.stop("job-browser").await.unwrap());
        // The stopped bot leaves and takes its Chromium with it; the first bot left none behind.
        wait_for("the bot and its Chromium to be gone", 15, || async {
            group_members(second).is_empty() && group_members(bot).is_empty()
        })
        .await;
    });
}

#[test]
fn a_bot_whose_job_is_stopped_leaves_the_room_within_5_s_even_without_a_stop_event() {
    in_netns(|| async {
        let w = world("Clinic").await;
        let j = JanusServer::start().await;
        j.create_room(ROOM, None).await;
        let mut talk = Vec::new();
        for _ in 0..20 {
            talk.extend(speech("The patient's new medication starts on Monday."));
        }
        let speaker = Publisher::start(&j.url(), ROOM, "Dr. Example", Duration::ZERO, talk).await;
        w.store
            .put_tenant_settings(
                &w.tenant,
                &TenantSettings::new(
                    BotRuleOverrides {
                        display_name: Some(NAME.into()),
                        ..Default::default()
                    },
                    Utc::now(),
                ),
            )
            .await
            .unwrap();
        let job = w
            .meeting_with_job(
                "meeting-stop",
                "job-stop",
                &format!("https://rooms.test/room/{ROOM}"),
                Platform::Janus,
                None,
            )
            .await;
        let launcher = w.launcher(&[
            ("MEETBOT_BOT__JANUS_API_URL", &j.url()),
            ("MEETBOT_BOT__JANUS_ROOM_HOST", "rooms.test"),
        ]);
        // The consumer launches the bot and is never run again: no stop event reaches anyone.
        let _consumer = w.launch(&job, launcher.clone()).await;
        wait_for("the bot to join", 20, || async {
            w.job("job-stop").await.state == BotJobState::Joined
        })
        .await;
        assert_eq!(meetbots_in_room(&j).await.len(), 1);

        // A person makes it leave: only the job in the store says so.
        let stopped = Instant::now();
        meetbot_scheduler::stop::stop_job(
            &*w.store,
            None,
            &w.tenant,
            "job-stop",
            "user:u-lee",
            "a person made the bot leave",
        )
        .await
        .unwrap();
        wait_for("the bot process to end", 5, || async {
            launcher.state("job-stop").await.unwrap().is_finished()
        })
        .await;
        wait_for("the bot to leave the room", 5, || async {
            meetbots_in_room(&j).await.is_empty()
        })
        .await;
        eprintln!("bot gone {:?} after the stop", stopped.elapsed());
        assert!(stopped.elapsed() < Duration::from_secs(5));
        assert_eq!(launcher.state("job-stop").await.unwrap(), BotRun::Succeeded);
        assert_eq!(
            w.job("job-stop").await.state,
            BotJobState::Stopped("user:u-lee".into()),
            "the stop stays as recorded"
        );
        speaker.leave().await;
    });
}

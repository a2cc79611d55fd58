//! The launch consumer over the real RabbitMQ broker, a tenant store and local bot processes:
//! a dispatched job becomes exactly one running bot even when its message is delivered twice;
//! a withdrawn job's bot is stopped; a bot lost mid-meeting is launched again with the gap in
//! the job's history, and one that keeps dying fails the job with the reason; a bot the platform
//! refuses fails its job at once; a consumer that died between claim and launch is recovered.

use chrono::{Duration as CDuration, Utc};
use meetbot_bot::consumer::{Handled, LaunchConsumer, LaunchSettings};
use meetbot_bot::local::LocalProcessLauncher;
use meetbot_bot::ticket::TicketIssuer;
use meetbot_bot::{BotLauncher, BotRun};
use meetbot_core::TenantId;
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_queue::{BotEvent, EventKind, JOB_MESSAGE_VERSION, JobMessage, JobQueue, RabbitQueue};
use meetbot_scheduler::gate::{Claim, claim};
use meetbot_store::vault::Tenants;
use meetbot_store::{SqliteEngine, Store, init_engine};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BOT_SCRIPT: &str = r#"while :; do
  [ -e "$0.$4.fail" ] && exit 3
  sleep 0.05
done"#;

struct World {
    store: Arc<dyn Store>,
    tenant: TenantId,
    queue: Arc<RabbitQueue>,
    launcher: Arc<LocalProcessLauncher>,
    consumer: LaunchConsumer,
    issuer: Arc<TicketIssuer>,
    dir: tempfile::TempDir,
    prefix: String,
}

async fn world(program: &str) -> World {
    world_running(program, BOT_SCRIPT).await
}

/// A world whose bots are `program -c script <dir>/flag --tenant T --job ID`.
async fn world_running(program: &str, script: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = init_engine(SqliteEngine::open(&dir.path().join("s")).unwrap())
        .await
        .unwrap();
    let tenants = Arc::new(Tenants::new(
        store.clone(),
        Arc::new(LocalKeyFile::open_or_create(&dir.path().join("k")).unwrap()),
    ));
    let tenant = tenants.create("Clinic").await.unwrap().id;
    let prefix = meetbot_testsupport::unique("launch");
    let queue = Arc::new(
        RabbitQueue::connect(
            &meetbot_testsupport::amqp_url(),
            &prefix,
            "launch-consumer-test",
            5,
            Duration::from_secs(5),
        )
        .await
        .unwrap(),
    );
    let launcher = Arc::new(
        LocalProcessLauncher::new(
            program,
            vec![
                "-c".into(),
                script.into(),
                dir.path().join("flag").display().to_string(),
            ],
            4,
        )
        .with_grace(Duration::from_millis(300)),
    );
    // No transcriber and nothing answering the control endpoint: the scripted bots need neither.
    let issuer = Arc::new(TicketIssuer::new(
        tenants.clone(),
        meetbot_core::config::BotConfig::default(),
        None,
        "http://127.0.0.1:9".into(),
    ));
    let consumer = LaunchConsumer::new(
        queue.clone(),
        store.clone(),
        launcher.clone(),
        issuer.clone(),
        LaunchSettings {
            max_relaunches: 1,
            ..Default::default()
        },
    );
    World {
        store,
        tenant,
        queue,
        launcher,
        consumer,
        issuer,
        dir,
        prefix,
    }
}

impl World {
    /// A meeting running now and its job, dispatched; returns the job's message.
    async fn dispatched(&self, n: u32) -> JobMessage {
        let now = Utc::now();
        let meeting_id = format!("meeting-{n}");
        let m = Meeting {
            id: meeting_id.clone(),
            connection_id: None,
            event_instance_id: format!("evt-{n}"),
            series_id: None,
            title: Sealed {
                key_version: 1,
                nonce: vec![0; 12],
                ciphertext: vec![0; 16],
            },
            starts_at: now - CDuration::minutes(1),
            ends_at: now + CDuration::minutes(30),
            all_day: false,
            status: MeetingStatus::Confirmed,
            platform: None,
            join_url: None,
            attendees: Sealed {
                key_version: 1,
                nonce: vec![0; 12],
                ciphertext: vec![0; 16],
            },
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
            id: format!("job-{n}"),
            meeting_id: meeting_id.clone(),
            idempotency_key: format!("{}:evt-{n}:{}", self.tenant, now.timestamp()),
            join_at: now,
            state: BotJobState::Dispatched,
            history: vec![],
            published_at: Some(now),
            bot_rules: None,
            ticket: None,
        };
        self.store.insert_bot_job(&self.tenant, &job).await.unwrap();
        JobMessage {
            v: JOB_MESSAGE_VERSION,
            job_id: job.id,
            tenant_id: self.tenant.clone(),
            meeting_id,
            idempotency_key: job.idempotency_key,
            join_at: now,
            dispatched_at: now,
        }
    }

    async fn job(&self, id: &str) -> BotJob {
        self.store
            .get_bot_job(&self.tenant, id)
            .await
            .unwrap()
            .unwrap()
            .value
    }

    fn crash(&self, job: &str) {
        std::fs::write(self.dir.path().join(format!("flag.{job}.fail")), b"").unwrap();
    }

    fn uncrash(&self, job: &str) {
        let _ = std::fs::remove_file(self.dir.path().join(format!("flag.{job}.fail")));
    }

    async fn finished(&self, job: &str) -> BotRun {
        let start = Instant::now();
        loop {
            let s = self.launcher.state(job).await.unwrap();
            if s.is_finished() || start.elapsed() > Duration::from_secs(10) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_delivered_twice_starts_one_bot_and_a_withdrawal_stops_it() {
    let w = world("/bin/sh").await;
    let msg = w.dispatched(1).await;
    w.queue.publish_job(&msg).await.unwrap();
    w.queue.publish_job(&msg).await.unwrap();
    let mut jobs = w.queue.consume_jobs().await.unwrap();
    let first = w.consumer.handle(jobs.next().await.unwrap()).await.unwrap();
    let second = w.consumer.handle(jobs.next().await.unwrap()).await.unwrap();
    assert_eq!((first, second), (Handled::Launched, Handled::Duplicate));
    assert_eq!(w.launcher.active().await.unwrap(), 1);
    assert_eq!(w.job("job-1").await.state, BotJobState::Launched);
    // Both deliveries were acked: nothing comes again.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), jobs.next())
            .await
            .is_err()
    );
    let pid = w.launcher.pid("job-1").unwrap();

    w.consumer
        .on_event(&BotEvent::new(
            w.tenant.clone(),
            "job-1".into(),
            "meeting-1".into(),
            EventKind::Withdrawn("meeting cancelled".into()),
        ))
        .await;
    assert_eq!(w.launcher.state("job-1").await.unwrap(), BotRun::NotFound);
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && start.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(w.launcher.active().await.unwrap() == 0);
    w.queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_lost_mid_meeting_is_launched_again_once_then_the_job_fails_with_the_reason() {
    let w = world("/bin/sh").await;
    let msg = w.dispatched(2).await;
    w.queue.publish_job(&msg).await.unwrap();
    let mut jobs = w.queue.consume_jobs().await.unwrap();
    let mut events = w.queue.subscribe_events().await.unwrap();
    assert_eq!(
        w.consumer.handle(jobs.next().await.unwrap()).await.unwrap(),
        Handled::Launched
    );
    let first_pid = w.launcher.pid("job-2").unwrap();
    w.crash("job-2");
    assert!(matches!(w.finished("job-2").await, BotRun::Failed(_)));
    w.uncrash("job-2");
    assert_eq!(w.consumer.watch_once().await.unwrap(), 1);
    let second_pid = w.launcher.pid("job-2").unwrap();
    assert_ne!(first_pid, second_pid, "a new bot process");
    let job = w.job("job-2").await;
    assert_eq!(job.state, BotJobState::Launched);
    assert!(
        job.history.iter().any(|c| matches!(&c.state,
            BotJobState::Failed(r) if r.starts_with("bot lost, relaunching: bot exited with code 3"))),
        "{:?}",
        job.history
    );
    // Lost again: the relaunch budget (1) is spent, the job fails with the reason.
    w.crash("job-2");
    assert!(matches!(w.finished("job-2").await, BotRun::Failed(_)));
    assert_eq!(w.consumer.watch_once().await.unwrap(), 0);
    assert_eq!(
        w.job("job-2").await.state,
        BotJobState::Failed("bot exited with code 3".into())
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.job_id, "job-2");
    assert_eq!(ev.kind, EventKind::Failed("bot exited with code 3".into()));
    w.queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_bot_fails_its_job_and_a_claimed_job_without_bot_is_recovered() {
    let w = world("/nonexistent/meetbot").await;
    let msg = w.dispatched(3).await;
    w.queue.publish_job(&msg).await.unwrap();
    let mut jobs = w.queue.consume_jobs().await.unwrap();
    let h = w.consumer.handle(jobs.next().await.unwrap()).await.unwrap();
    let Handled::Failed(reason) = h else {
        panic!("{h:?}")
    };
    assert!(
        reason.contains("cannot start /nonexistent/meetbot"),
        "{reason}"
    );
    assert!(matches!(w.job("job-3").await.state, BotJobState::Failed(_)));

    // A consumer claimed job 4 and died before launching: the redelivery launches it.
    let w2 = world("/bin/sh").await;
    let msg = w2.dispatched(4).await;
    assert!(matches!(
        claim(&*w2.store, &msg).await.unwrap(),
        Claim::Launch(_)
    ));
    w2.queue.publish_job(&msg).await.unwrap();
    let mut jobs2 = w2.queue.consume_jobs().await.unwrap();
    assert_eq!(
        w2.consumer
            .handle(jobs2.next().await.unwrap())
            .await
            .unwrap(),
        Handled::Recovered
    );
    assert_eq!(w2.launcher.active().await.unwrap(), 1);
    w.queue.delete_topology().await.unwrap();
    w2.queue.delete_topology().await.unwrap();
}

/// Waits until `path` holds something.
async fn written(path: &std::path::Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing in {path:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_process_gets_its_ticket_and_none_of_the_launchers_store_key_or_broker_settings() {
    // This launcher's own environment holds the test servers' addresses (MEETBOT_TEST_*), as a
    // launcher's holds its store and broker settings; the bot writes what it was given.
    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("MEETBOT_")),
        "run with the MEETBOT_TEST_* variables of scripts/test.sh"
    );
    let w = world_running("/bin/sh", r#"env > "$0.env"; sleep 5"#).await;
    let msg = w.dispatched(7).await;
    w.queue.publish_job(&msg).await.unwrap();
    let mut jobs = w.queue.consume_jobs().await.unwrap();
    assert_eq!(
        w.consumer.handle(jobs.next().await.unwrap()).await.unwrap(),
        Handled::Launched
    );
    let env = written(&w.dir.path().join("flag.env")).await;
    let mut ticket = None;
    for line in env.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k == meetbot_bot::ticket::TICKET_ENV {
            ticket = Some(v.to_string());
            continue;
        }
        // What the shell running the stand-in bot sets for itself.
        if ["PWD", "OLDPWD", "SHLVL", "_"].contains(&k) {
            continue;
        }
        assert!(
            meetbot_bot::local::passed_on(k),
            "the bot was given {k}, which is not one of what a process needs to run"
        );
        assert!(
            !k.starts_with("MEETBOT_") || k.starts_with("MEETBOT_TELEMETRY__"),
            "{k}"
        );
    }
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("MEETBOT_TEST_")) {
        assert!(!env.contains(&v), "the bot sees the value of {k}");
    }
    // The ticket is for this job, and the job keeps only a digest of its control token.
    let t = meetbot_bot::ticket::BotTicket::decode(&ticket.expect("a ticket"), Utc::now()).unwrap();
    assert_eq!(
        (t.tenant.clone(), t.job_id.as_str()),
        (w.tenant.clone(), "job-7")
    );
    let rec = w
        .job("job-7")
        .await
        .ticket
        .expect("the job records its ticket");
    assert_eq!(
        rec.control_sha256,
        meetbot_bot::ticket::control_digest(&t.control.token)
    );
    assert!(
        !serde_json::to_string(&w.job("job-7").await)
            .unwrap()
            .contains(&t.control.token)
    );
    w.queue.delete_topology().await.unwrap();
}

/// The launcher's control endpoint on a free loopback port, and its base URL.
async fn control(w: &World) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(meetbot_bot::control::serve(
        listener,
        meetbot_bot::control::Control::new(w.store.clone(), Some(w.queue.clone())),
        None,
        std::future::pending(),
    ));
    url
}

/// Issues a ticket for `job` as the launcher does at launch (the job records it), with the
/// control endpoint at `url`.
async fn ticket_for(w: &World, job: &str, url: &str) -> meetbot_bot::ticket::BotTicket {
    let issuer = TicketIssuer::new(
        w.issuer.tenants().clone(),
        meetbot_core::config::BotConfig::default(),
        None,
        url.into(),
    );
    let cur = w.store.get_bot_job(&w.tenant, job).await.unwrap().unwrap();
    let (rec, t) = issuer.issue(&w.tenant, &cur.value).await.unwrap();
    let mut j = cur.value.clone();
    j.ticket = Some(rec);
    w.store
        .update_bot_job(&w.tenant, &j, cur.version)
        .await
        .unwrap();
    t
}

/// `dispatched(n)` and claimed: the job is `launched`, as when its bot starts.
async fn launched(w: &World, n: u32) {
    let msg = w.dispatched(n).await;
    assert!(matches!(
        claim(&*w.store, &msg).await.unwrap(),
        Claim::Launch(_)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_reports_its_own_job_through_the_launcher_and_a_foreign_or_forged_token_changes_nothing()
 {
    use meetbot_bot::ticket::{BotControl, ControlError};
    let w = world("/bin/sh").await;
    let url = control(&w).await;
    launched(&w, 11).await;
    launched(&w, 12).await;
    let mine = ticket_for(&w, "job-11", &url).await;
    let other = ticket_for(&w, "job-12", &url).await;
    let me = BotControl::new(&mine);
    assert!(!me.status().await.unwrap().leave);

    // Another bot's token for this job, a forged one, and a token for another tenant's path.
    let mut forged = mine.clone();
    forged.control.token = other.control.token.clone();
    let mut guessed = mine.clone();
    guessed.control.token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    let mut elsewhere = other.clone();
    elsewhere.job_id = "job-11".into();
    for t in [&forged, &guessed, &elsewhere] {
        let c = BotControl::new(t);
        assert!(matches!(
            c.report(&EventKind::Failed("forged".into())).await,
            Err(ControlError::Refused(401))
        ));
        assert!(matches!(c.status().await, Err(ControlError::Refused(401))));
    }
    assert_eq!(w.job("job-11").await.state, BotJobState::Launched);

    // A bot reports only what a bot does: never a withdrawal (that stops other bots).
    assert!(matches!(
        me.report(&EventKind::Withdrawn("x".into())).await,
        Err(ControlError::Status(400))
    ));
    me.report(&EventKind::InCall).await.unwrap();
    assert_eq!(w.job("job-11").await.state, BotJobState::Joined);
    assert_eq!(w.job("job-12").await.state, BotJobState::Launched);
    me.report(&EventKind::Done).await.unwrap();
    assert_eq!(w.job("job-11").await.state, BotJobState::Done);
    assert!(me.status().await.unwrap().leave);
    w.queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_ticket_revokes_the_earlier_bots_token_and_a_stop_tells_the_bot_to_leave() {
    use meetbot_bot::ticket::{BotControl, ControlError};
    let w = world("/bin/sh").await;
    let url = control(&w).await;
    launched(&w, 13).await;
    let first = BotControl::new(&ticket_for(&w, "job-13", &url).await);
    first.report(&EventKind::InCall).await.unwrap();
    // The launcher relaunches the bot: a new ticket; the lost bot can no longer report.
    let second = BotControl::new(&ticket_for(&w, "job-13", &url).await);
    assert!(matches!(
        first.report(&EventKind::Failed("late".into())).await,
        Err(ControlError::Refused(401))
    ));
    assert_eq!(w.job("job-13").await.state, BotJobState::Joined);
    assert!(!second.status().await.unwrap().leave);

    // A person stops the bot: it is told to leave, and its late `failed` changes nothing.
    meetbot_scheduler::stop::stop_job(
        &*w.store,
        None,
        &w.tenant,
        "job-13",
        "user:someone",
        "stopped from the web page",
    )
    .await
    .unwrap();
    let s = second.status().await.unwrap();
    assert!(s.leave, "{s:?}");
    assert!(matches!(
        second.report(&EventKind::Failed("left".into())).await,
        Err(ControlError::Status(409))
    ));
    assert!(matches!(
        w.job("job-13").await.state,
        BotJobState::Stopped(_)
    ));
    w.queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_reaches_its_launcher_over_tls_trusting_the_ca_its_ticket_carries_and_nothing_else() {
    use meetbot_bot::ticket::{BotControl, ControlError};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let w = world("/bin/sh").await;
    // The launcher's control endpoint over TLS, with a certificate from a private CA.
    let ca = meetbot_testsupport::oidc::TestCa::for_loopback().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &ca.leaf_pem).unwrap();
    std::fs::write(&key, &ca.leaf_key_pem).unwrap();
    let tls = meetbot_transcriber::service::tls_config(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(meetbot_bot::control::serve(
        listener,
        meetbot_bot::control::Control::new(w.store.clone(), Some(w.queue.clone())),
        Some(tls),
        std::future::pending(),
    ));
    launched(&w, 21).await;
    // The issuer hands the CA to the bot in its ticket.
    let ca_der: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let issuer = TicketIssuer::new(
        w.issuer.tenants().clone(),
        meetbot_core::config::BotConfig::default(),
        None,
        url.clone(),
    )
    .with_transcriber_ca(&ca_der);
    let cur = w
        .store
        .get_bot_job(&w.tenant, "job-21")
        .await
        .unwrap()
        .unwrap();
    let (rec, ticket) = issuer.issue(&w.tenant, &cur.value).await.unwrap();
    let mut j = cur.value.clone();
    j.ticket = Some(rec);
    w.store
        .update_bot_job(&w.tenant, &j, cur.version)
        .await
        .unwrap();
    let me = BotControl::new(&ticket);
    me.report(&EventKind::InCall).await.unwrap();
    assert_eq!(w.job("job-21").await.state, BotJobState::Joined);
    // A bot whose ticket does not carry the CA cannot talk to it (nor be talked to by an
    // impostor without the CA's certificate), and its token never reaches the wire in clear.
    let mut untrusting = ticket.clone();
    untrusting.trusted_ca.clear();
    assert!(matches!(
        BotControl::new(&untrusting).report(&EventKind::Done).await,
        Err(ControlError::Unreachable(_))
    ));
    assert_eq!(w.job("job-21").await.state, BotJobState::Joined);
    w.queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_launcher_keeps_watching_the_earlier_ones_bots_and_relaunches_a_silent_one() {
    let w = world("/bin/sh").await;
    let mut jobs = w.queue.consume_jobs().await.unwrap();
    for n in [7, 8] {
        let msg = w.dispatched(n).await;
        w.queue.publish_job(&msg).await.unwrap();
        assert_eq!(
            w.consumer.handle(jobs.next().await.unwrap()).await.unwrap(),
            Handled::Launched
        );
    }
    // The launcher process is gone (its bots live on in their own process groups); the next
    // one knows neither bot, but finds both jobs live in the store.
    let heartbeats = meetbot_bot::control::Heartbeats::default();
    let next = LaunchConsumer::new(
        w.queue.clone(),
        w.store.clone(),
        Arc::new(LocalProcessLauncher::new(
            "/bin/sh",
            vec!["-c".into(), BOT_SCRIPT.into(), "/nonexistent".into()],
            4,
        )),
        w.issuer.clone(),
        LaunchSettings::default(),
    )
    .with_heartbeats(heartbeats.clone());
    assert_eq!(next.adopt().await.unwrap(), 2);
    assert_eq!(next.watch_once().await.unwrap(), 0, "both just adopted");
    // job-8's bot keeps asking its control endpoint, job-7's was killed with its launcher.
    let until = Instant::now() + meetbot_bot::consumer::ADOPTED_LOST_AFTER + Duration::from_secs(1);
    while Instant::now() < until {
        heartbeats.seen("job-8");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(next.watch_once().await.unwrap(), 1);
    let lost = w.job("job-7").await;
    assert_eq!(lost.state, BotJobState::Launched);
    assert!(
        lost.history.iter().any(|c| matches!(&c.state,
            BotJobState::Failed(r) if r.contains("not heard from"))),
        "{:?}",
        lost.history
    );
    assert!(
        w.job("job-8")
            .await
            .history
            .iter()
            .all(|c| !matches!(c.state, BotJobState::Failed(_)))
    );
    w.queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launcher_whose_broker_connections_are_cut_reconnects_and_takes_the_next_job() {
    let w = world("/bin/sh").await;
    // The consumer reaches RabbitMQ through a relay that can cut every connection it carries.
    let host = tokio::runtime::Handle::current();
    let broker = meetbot_testsupport::amqp_url();
    let hp = broker
        .rsplit('@')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (relay, cut) = meetbot_testsupport::janus::relay_with_cut(&host, hp.parse().unwrap());
    let prefix = w.prefix.clone();
    let relayed = Arc::new(
        RabbitQueue::connect(
            &broker.replace(&hp, &relay.to_string()),
            &prefix,
            "launch-consumer-relayed",
            5,
            Duration::from_secs(5),
        )
        .await
        .unwrap(),
    );
    let consumer = LaunchConsumer::new(
        relayed,
        w.store.clone(),
        w.launcher.clone(),
        w.issuer.clone(),
        LaunchSettings::default(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        consumer
            .run(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let msg = w.dispatched(9).await;
    w.queue.publish_job(&msg).await.unwrap();
    in_state(&w, "job-9", BotJobState::Launched).await;
    cut.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !running.is_finished(),
        "the consumer ended on a lost connection"
    );
    let msg = w.dispatched(10).await;
    w.queue.publish_job(&msg).await.unwrap();
    in_state(&w, "job-10", BotJobState::Launched).await;
    let _ = stop_tx.send(());
    running.await.unwrap().unwrap();
    w.queue.delete_topology().await.unwrap();
}

async fn in_state(w: &World, job: &str, want: BotJobState) {
    let start = Instant::now();
    while w.job(job).await.state != want {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{job} is {:?}, not {want:?}",
            w.job(job).await.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

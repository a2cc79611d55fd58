//! `meetbot launcher` (the launch consumer as a service) and `meetbot bot` (one bot).

use crate::runtime::{open_store, rabbitmq};
use anyhow::{Context, Result};
use meetbot_bot::BotLauncher;
use meetbot_bot::consumer::{LaunchConsumer, LaunchSettings};
use meetbot_bot::kubernetes::{JobTemplate, KubernetesLauncher};
use meetbot_bot::local::LocalProcessLauncher;
use meetbot_core::TenantId;
use meetbot_core::config::{Config, LauncherKind, QueueKind};
use meetbot_core::model::{BotJobState, BotRuleOverrides};
use meetbot_queue::{BotEvent, EventKind, JobQueue};
use meetbot_store::Store;
use std::sync::Arc;
use std::time::Duration;

pub fn launch_settings(config: &Config) -> LaunchSettings {
    let l = &config.launcher;
    LaunchSettings {
        max_duration: Duration::from_secs(l.max_meeting_minutes * 60),
        watch_every: Duration::from_secs(l.watch_seconds),
        max_relaunches: l.max_relaunches,
    }
}

/// The configured launcher. Local bots are this binary's `bot` subcommand, with this config.
/// The configured launcher; `bot_env` is passed to local bot processes (e.g. `meetbot dev`'s
/// in-process transcriber address and audio secret).
pub async fn launcher(
    config: &Config,
    bot_env: &[(String, String)],
) -> Result<Arc<dyn BotLauncher>> {
    let l = &config.launcher;
    Ok(match l.kind {
        LauncherKind::Local => {
            let exe = std::env::current_exe().context("locating the meetbot binary for bots")?;
            let mut local = LocalProcessLauncher::new(exe, vec!["bot".into()], l.max_concurrent);
            if let Ok(cfg) = std::env::var("MEETBOT_CONFIG") {
                local = local.with_env("MEETBOT_CONFIG", &cfg);
            }
            for (k, v) in bot_env {
                local = local.with_env(k, v);
            }
            Arc::new(local)
        }
        LauncherKind::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (in-cluster service account or kubeconfig)")?;
            let t = JobTemplate::from_config(&l.kubernetes);
            Arc::new(KubernetesLauncher::new(client, t))
        }
    })
}

/// Runs the launch consumer until `stop` resolves.
pub async fn run_consumer(
    config: &Config,
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn Store>,
    bot_env: &[(String, String)],
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let launcher = launcher(config, bot_env).await?;
    eprintln!("launcher: bots as {}", launcher.describe());
    let consumer = LaunchConsumer::new(queue, store, launcher, launch_settings(config));
    consumer.run(stop).await?;
    Ok(())
}

/// `meetbot launcher`: consumes bot jobs from RabbitMQ and launches their bots.
pub async fn launcher_service(config: Config) -> Result<()> {
    anyhow::ensure!(
        config.queue.kind == QueueKind::Rabbitmq,
        "meetbot launcher needs queue.kind = \"rabbitmq\" (with the in-process queue, `meetbot dev` launches bots itself)"
    );
    let store = open_store(&config).await?;
    let queue = rabbitmq(&config, "launcher").await?;
    let stop = meetbot_core::ops::shutdown_signal();
    run_consumer(&config, queue, store, &[], stop).await
}

/// Publishes a bot's lifecycle events (where a broker is configured).
#[derive(Clone)]
struct Events {
    queue: Option<Arc<dyn JobQueue>>,
    tenant: TenantId,
    job: String,
    meeting: String,
}

impl Events {
    /// Publishes `kind`. Events carry ids and the reason only: the connector's page pictures
    /// never leave the bot (a meeting page shows names, faces and chat; decision 0031).
    async fn publish(&self, kind: EventKind) {
        let Some(q) = &self.queue else { return };
        let ev = BotEvent::new(
            self.tenant.clone(),
            self.job.clone(),
            self.meeting.clone(),
            kind,
        );
        if let Err(e) = q.publish_event(&ev).await {
            tracing::warn!(error = %e, "bot event not published");
        }
    }
}

/// Records the job as failed with `reason` (event and store) and ends the process with code 3.
async fn fail_and_exit(
    events: &Events,
    store: &dyn Store,
    tenant: &TenantId,
    job_id: &str,
    reason: String,
) -> Result<()> {
    events.publish(EventKind::Failed(reason.clone())).await;
    set_state(store, tenant, job_id, BotJobState::Failed(reason.clone())).await?;
    eprintln!("bot {job_id}: {reason}");
    std::process::exit(3);
}

/// Moves the job to `to` (compare-and-set; a job that moved on meanwhile is left as it is).
async fn set_state(store: &dyn Store, t: &TenantId, job_id: &str, to: BotJobState) -> Result<()> {
    for _ in 0..5 {
        let Some(cur) = store.get_bot_job(t, job_id).await? else {
            return Ok(());
        };
        let mut j = cur.value.clone();
        if meetbot_scheduler::jobs::transition(&mut j, to.clone(), chrono::Utc::now()).is_err() {
            return Ok(());
        }
        match store.update_bot_job(t, &j, cur.version).await {
            Ok(_) => return Ok(()),
            Err(meetbot_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How long a bot's audio token outlives its meeting limits (reconnects, end of stream).
const AUDIO_TOKEN_GRACE: Duration = Duration::from_secs(10 * 60);

/// How often a bot in a meeting looks at its job: a person stopping it (or deleting the
/// meeting) makes it leave within about this long, even when no stop event reaches it.
const JOB_LOOK_EVERY: Duration = Duration::from_secs(1);

/// Resolves once job `job_id` is stopped, withdrawn or gone, or its meeting deleted. A store
/// that cannot be read is asked again at the next look.
async fn job_stopped(store: Arc<dyn Store>, t: TenantId, job_id: String) {
    let mut every = tokio::time::interval(JOB_LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let job = match store.get_bot_job(&t, &job_id).await {
            Ok(Some(j)) => j.value,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "job state unreadable");
                continue;
            }
        };
        if matches!(job.state, BotJobState::Stopped(_) | BotJobState::Cancelled) {
            return;
        }
        if let Ok(Some(_)) =
            meetbot_scheduler::stop::meeting_stopped(&*store, &t, &job.meeting_id).await
        {
            return;
        }
    }
}

/// `meetbot bot --tenant T --job ID`: one bot for one job.
///
/// Loads its job and meeting (the join link is opened with the tenant's key here, never passed
/// in), joins through the connector for the link, reports its lifecycle as bot events, leaves by
/// the rules, and records `done` or `failed` with the reason. SIGTERM (the launcher's stop) makes
/// it leave cleanly, and so does its job found stopped (a person stopped the bot or deleted the
/// meeting; looked at every second). Where no connector fits the link, the job fails with that
/// reason (exit 3).
pub async fn bot(config: Config, tenant: TenantId, job_id: String) -> Result<()> {
    use meetbot_bot::janus::{
        JanusAudioBridge, JanusRoomKind, JanusVideoRoom, VideoRoomSettings, janus_room,
    };
    use meetbot_bot::session::{Lifecycle, Rules, run_session};
    use meetbot_core::model::Meeting;

    let tenants = crate::runtime::tenants(&config).await?;
    let store = tenants.store().clone();
    let job = store
        .get_bot_job(&tenant, &job_id)
        .await?
        .with_context(|| format!("bot job {job_id} not found in tenant {tenant}"))?;
    if !matches!(job.value.state, BotJobState::Launched | BotJobState::Joined) {
        eprintln!(
            "bot job {job_id} is {}: nothing to do",
            job.value.state.name()
        );
        return Ok(());
    }
    let meeting = store
        .get_meeting(&tenant, &job.value.meeting_id)
        .await?
        .with_context(|| format!("meeting {} not found", job.value.meeting_id))?;
    let queue: Option<Arc<dyn JobQueue>> = match config.queue.kind {
        QueueKind::Rabbitmq => Some(rabbitmq(&config, "bot").await?),
        // An in-process queue lives in another process: the job's state in the store tells.
        QueueKind::InProcess => None,
    };
    let events = Events {
        queue,
        tenant: tenant.clone(),
        job: job_id.clone(),
        meeting: meeting.id.clone(),
    };
    let link = match &meeting.join_url {
        Some(sealed) => Some(tenants.vault(&tenant).await?.open_string::<Meeting>(
            &meeting.id,
            "join_url",
            sealed,
        )?),
        None => None,
    };
    let b = &config.bot;
    let janus: Option<Box<dyn meetbot_bot::connector::MeetingConnector>> =
        match (&b.janus_api_url, &b.janus_room_host, &link) {
            (Some(api), Some(host), Some(l)) => janus_room(l, host).map(|(kind, room, pin)| {
                let s = VideoRoomSettings {
                    url: api.clone(),
                    room,
                    pin,
                    ice_ip: b.ice_ip,
                    channel_depth: 4096,
                };
                match kind {
                    JanusRoomKind::VideoRoom => Box::new(JanusVideoRoom::new(s))
                        as Box<dyn meetbot_bot::connector::MeetingConnector>,
                    JanusRoomKind::AudioBridge => Box::new(JanusAudioBridge::new(s)),
                }
            }),
            _ => None,
        };
    // A room of a meetbot room server (`meetbot dev`'s demo room).
    let janus = match (janus, &link) {
        (None, Some(l)) if meetbot_bot::room::is_room_link(l, &b.room_servers) => {
            match meetbot_bot::room::RoomConnector::new(l, b.ice_ip) {
                Ok(c) => Some(Box::new(c) as Box<dyn meetbot_bot::connector::MeetingConnector>),
                Err(e) => {
                    return fail_and_exit(&events, &*store, &tenant, &job_id, e.to_string()).await;
                }
            }
        }
        (j, _) => j,
    };
    // Otherwise a platform whose web client a browser profile drives (Meet, Teams, Zoom).
    let janus = match (janus, &link) {
        (Some(j), _) => Some(j),
        (None, Some(l)) => {
            use meetbot_bot::browser::{BrowserConnector, BrowserSettings, profile::Profiles};
            // Chromium refuses its sandbox as root, and without it a hostile meeting page is
            // one renderer bug from the bot's process: say which setting is wrong.
            let root = {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
            };
            if root && !b.browser.no_sandbox {
                tracing::warn!(
                    "the bot runs as root, where Chromium refuses its sandbox: run it as a non-root user (the bot image does)"
                );
            } else if !root && b.browser.no_sandbox {
                tracing::warn!(
                    "bot.browser.no_sandbox is set although the bot does not run as root: meeting pages render without Chromium's sandbox; unset it"
                );
            }
            let profiles = match Profiles::load(b.browser.profiles_dir.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    return fail_and_exit(&events, &*store, &tenant, &job_id, e.to_string()).await;
                }
            };
            profiles.for_link(l).map(|(profile, url)| {
                Box::new(BrowserConnector::new(
                    BrowserSettings {
                        chromium: b.browser.chromium.clone(),
                        extra_args: b.browser.extra_args.clone(),
                        no_sandbox: b.browser.no_sandbox,
                        ice_ip: b.ice_ip,
                        hang_after: Duration::from_secs(b.browser.hang_seconds),
                        ..BrowserSettings::default()
                    },
                    profile,
                    url,
                )) as Box<dyn meetbot_bot::connector::MeetingConnector>
            })
        }
        (None, None) => None,
    };
    let Some(connector) = janus else {
        let platform = meeting
            .platform
            .map(|p| format!("{p:?}").to_lowercase())
            .unwrap_or_else(|| "unknown".into());
        let reason = format!("no meeting connector for platform {platform} in this build");
        return fail_and_exit(&events, &*store, &tenant, &job_id, reason).await;
    };
    // The job's own rules, then the tenant's, then the service's.
    let service = BotRuleOverrides {
        display_name: Some(b.display_name.clone()),
        chat_notice: Some(b.chat_notice.clone()),
        waiting_room_timeout_seconds: Some(b.waiting_room_timeout_seconds),
        alone_timeout_seconds: Some(b.alone_timeout_seconds),
        silence_timeout_seconds: Some(b.silence_timeout_seconds),
        max_duration_seconds: Some(b.max_duration_seconds),
    };
    let of_tenant = store
        .get_tenant_settings(&tenant)
        .await?
        .map(|s| s.bot)
        .unwrap_or_default();
    let eff = job
        .value
        .bot_rules
        .clone()
        .unwrap_or_default()
        .over(&of_tenant.over(&service));
    let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d));
    let rules = Rules {
        waiting_room_timeout: secs(
            eff.waiting_room_timeout_seconds,
            b.waiting_room_timeout_seconds,
        ),
        alone_timeout: secs(eff.alone_timeout_seconds, b.alone_timeout_seconds),
        silence_timeout: secs(eff.silence_timeout_seconds, b.silence_timeout_seconds),
        max_duration: secs(eff.max_duration_seconds, b.max_duration_seconds),
        ..Rules::default()
    };
    let display_name = eff.display_name.unwrap_or_else(|| b.display_name.clone());
    let chat_notice = eff.chat_notice.unwrap_or_else(|| b.chat_notice.clone());
    let (report_tx, mut report_rx) = tokio::sync::mpsc::channel(64);
    let (audio_tx, mut audio_rx) = tokio::sync::mpsc::channel(4096);
    // Audio goes to the transcriber when one is configured; otherwise it is counted and released.
    // Either way it is only ever in memory.
    let stream_cfg = match (&b.transcriber_url, &b.audio_token_secret) {
        (Some(url), Some(secret)) => Some(meetbot_bot::audio_stream::StreamSettings {
            // The transcriber's endpoint for this job: `<transcriber_url>/<tenant>/<job>`.
            url: format!(
                "{}/{}/{}",
                url.trim_end_matches('/'),
                tenant.as_str(),
                job_id
            ),
            // Expires when this bot must have left: its waiting room and meeting limits from
            // now, plus a grace for the last reconnect and the end of the stream. The
            // transcriber refuses it after that, and once the job's transcript is stored.
            token: secrecy::SecretString::from(meetbot_bot::audio_stream::job_token(
                &secrecy::SecretString::from(secret.clone()),
                tenant.as_str(),
                &job_id,
                rules.waiting_room_timeout + rules.max_duration + AUDIO_TOKEN_GRACE,
            )),
            buffer_frames: b.audio_buffer_frames,
            max_outage: Duration::from_secs(60),
        }),
        _ => None,
    };
    let audio = tokio::spawn(async move {
        use meetbot_bot::audio_stream::{Outgoing, stream_audio};
        let Some(cfg) = stream_cfg else {
            let mut n = 0u64;
            while let Some(o) = audio_rx.recv().await {
                n += u64::from(matches!(o, Outgoing::Audio(_)));
            }
            return Ok(n);
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let forward = tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(o) = audio_rx.recv().await {
                n += u64::from(matches!(o, Outgoing::Audio(_)));
                if tx.send(o).await.is_err() {
                    break;
                }
            }
            n
        });
        let r = stream_audio(cfg, rx).await;
        let n = forward.await.unwrap_or(0);
        r.map(|_| n).map_err(|e| e.to_string())
    });
    let reporter = {
        let (store, tenant, job_id) = (store.clone(), tenant.clone(), job_id.clone());
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(l) = report_rx.recv().await {
                let kind = match &l {
                    Lifecycle::Joining => EventKind::Joining,
                    Lifecycle::WaitingRoom => EventKind::WaitingRoom,
                    Lifecycle::InCall => {
                        let _ = set_state(&*store, &tenant, &job_id, BotJobState::Joined).await;
                        EventKind::InCall
                    }
                    Lifecycle::Recording => EventKind::Recording,
                    Lifecycle::Leaving(_) => EventKind::Leaving,
                };
                events.publish(kind).await;
            }
        })
    };
    let stop = {
        let watch = job_stopped(store.clone(), tenant.clone(), job_id.clone());
        async move {
            tokio::select! {
                _ = meetbot_core::ops::shutdown_signal() => {}
                _ = watch => {}
            }
        }
    };
    let outcome = run_session(
        connector.as_ref(),
        &display_name,
        &chat_notice,
        rules,
        report_tx,
        audio_tx,
        stop,
    )
    .await;
    let _ = reporter.await;
    let (packets, stream_failure) = match audio.await {
        Ok(Ok(n)) => (n, None),
        Ok(Err(e)) => (0, Some(e)),
        Err(e) => (0, Some(e.to_string())),
    };
    // A broken audio stream fails the job whatever the meeting did, unless the job already
    // left the live states (stopped, cancelled or gone: nothing of it is kept anyway, and the
    // transcriber refuses a reconnect of a job that is over).
    let stream_failure = match stream_failure {
        Some(_)
            if store.get_bot_job(&tenant, &job_id).await.is_ok_and(|j| {
                !j.is_some_and(|j| meetbot_scheduler::jobs::live(&j.value.state))
            }) =>
        {
            None
        }
        f => f,
    };
    let outcome = match (outcome, stream_failure) {
        (_, Some(reason)) => Err(meetbot_bot::connector::ConnectError::Media(format!(
            "audio stream to the transcriber failed: {reason}"
        ))),
        (o, None) => o,
    };
    match outcome {
        Ok(o) if o.reason == meetbot_bot::session::LeaveReason::Stopped => {
            // Stopped or withdrawn: the job says so already. Told to stop by its launcher
            // alone (the job still live): done.
            let live = store
                .get_bot_job(&tenant, &job_id)
                .await?
                .is_some_and(|j| meetbot_scheduler::jobs::live(&j.value.state));
            if live {
                events.publish(EventKind::Done).await;
                set_state(&*store, &tenant, &job_id, BotJobState::Done).await?;
            }
            eprintln!("bot {job_id}: left (stopped)");
            Ok(())
        }
        Ok(o) if o.reason.is_success() => {
            events.publish(EventKind::Done).await;
            set_state(&*store, &tenant, &job_id, BotJobState::Done).await?;
            eprintln!(
                "bot {job_id}: left ({}); {packets} audio packets, {} malformed",
                o.reason.describe(),
                o.malformed
            );
            Ok(())
        }
        Ok(o) => fail_and_exit(&events, &*store, &tenant, &job_id, o.reason.describe()).await,
        Err(meetbot_bot::connector::ConnectError::Lost(reason)) => {
            // The meeting client crashed or hung: the job stays live and this process exits
            // with 4, so the launcher's watcher launches the bot again per its relaunch policy
            // (the meeting still runs) or fails the job when the policy is spent.
            let reason = format!("the meeting client failed: {reason}");
            events.publish(EventKind::Failed(reason.clone())).await;
            eprintln!("bot {job_id}: {reason}; exiting for a relaunch");
            std::process::exit(4);
        }
        Err(e) => fail_and_exit(&events, &*store, &tenant, &job_id, e.to_string()).await,
    }
}

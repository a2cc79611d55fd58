//! `meetbot launcher` (the launch consumer as a service) and `meetbot bot` (one bot).

use crate::runtime::rabbitmq;
use anyhow::{Context, Result};
use meetbot_bot::BotLauncher;
use meetbot_bot::consumer::{LaunchConsumer, LaunchSettings};
use meetbot_bot::control::Control;
use meetbot_bot::kubernetes::{JobTemplate, KubernetesLauncher};
use meetbot_bot::local::LocalProcessLauncher;
use meetbot_bot::ticket::{BotControl, BotTicket, ControlError, TicketIssuer};
use meetbot_core::TenantId;
use meetbot_core::config::{Config, LauncherKind, QueueKind};
use meetbot_core::ops::Shutdown;
use meetbot_queue::{EventKind, JobQueue};
use meetbot_store::vault::Tenants;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub fn launch_settings(config: &Config) -> LaunchSettings {
    let l = &config.launcher;
    LaunchSettings {
        max_duration: Duration::from_secs(l.max_meeting_minutes * 60),
        watch_every: Duration::from_secs(l.watch_seconds),
        max_relaunches: l.max_relaunches,
    }
}

/// The configured launcher, and the local one again where bots are this process's children
/// (they stop with it). Local bots are this binary's `bot` subcommand; their environment is
/// built, not inherited (their ticket and what a process needs: `meetbot_bot::local`). A
/// stopped local bot has half the service's shutdown grace to leave before SIGKILL, so the
/// launcher itself still stops within its grace; Kubernetes bots are Jobs that outlive it and
/// report to whichever launcher replica answers.
pub async fn launcher(
    config: &Config,
) -> Result<(Arc<dyn BotLauncher>, Option<Arc<LocalProcessLauncher>>)> {
    let l = &config.launcher;
    Ok(match l.kind {
        LauncherKind::Local => {
            let exe = std::env::current_exe().context("locating the meetbot binary for bots")?;
            let grace = Duration::from_secs((config.ops.shutdown_grace_seconds / 2).max(1));
            let local = Arc::new(
                LocalProcessLauncher::new(exe, vec!["bot".into()], l.max_concurrent)
                    .with_grace(grace),
            );
            (local.clone(), Some(local))
        }
        LauncherKind::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (in-cluster service account or kubeconfig)")?;
            let t = JobTemplate::from_config(&l.kubernetes);
            (Arc::new(KubernetesLauncher::new(client, t)), None)
        }
    })
}

/// Runs the launch consumer, and its bots' control endpoint, until `stop` resolves. Bots get
/// tickets (decision 0032): `config.bot` is what they are told of their connectors, and the
/// audio secret (`transcriber.audio_token_secret`, else `bot.audio_token_secret`) mints their
/// audio tokens.
pub async fn run_consumer(
    config: &Config,
    queue: Arc<dyn JobQueue>,
    tenants: Arc<Tenants>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    // Local bots run as this user: they must not read this process's environment or memory.
    crate::not_dumpable();
    let (launcher, local) = launcher(config).await?;
    let listener = tokio::net::TcpListener::bind(&config.launcher.control_listen)
        .await
        .with_context(|| {
            format!(
                "binding the bots' control endpoint on {} (launcher.control_listen)",
                config.launcher.control_listen
            )
        })?;
    let addr = listener.local_addr()?;
    let control_url = config
        .launcher
        .control_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let store = tenants.store().clone();
    let (control_stop_tx, mut control_stop) = tokio::sync::watch::channel(false);
    let l = &config.launcher;
    let tls = match (&l.control_tls_cert_file, &l.control_tls_key_file) {
        (Some(cert), Some(key)) => Some(
            meetbot_transcriber::service::tls_config(cert, key)
                .context("launcher.control_tls_cert_file / launcher.control_tls_key_file")?,
        ),
        _ => None,
    };
    let heartbeats = meetbot_bot::control::Heartbeats::default();
    let control = tokio::spawn(meetbot_bot::control::serve(
        listener,
        Control::new(store.clone(), Some(queue.clone())).with_heartbeats(heartbeats.clone()),
        tls,
        async move {
            let _ = control_stop.changed().await;
        },
    ));
    eprintln!(
        "launcher: bots as {}; their control endpoint on {addr}",
        launcher.describe()
    );
    // The transcriber's private CA travels in the tickets: bot pods mount no file.
    let ca = match &config.bot.transcriber_ca_file {
        Some(f) => meetbot_bot::audio_stream::read_ca_file(f)
            .context("reading bot.transcriber_ca_file, which bots get in their tickets")?,
        None => Vec::new(),
    };
    let issuer = TicketIssuer::new(
        tenants,
        config.bot.clone(),
        crate::speech::audio_secret(config).map(SecretString::from),
        control_url,
    )
    .with_transcriber_ca(&ca);
    let consumer = LaunchConsumer::new(
        queue,
        store,
        launcher,
        Arc::new(issuer),
        launch_settings(config),
    )
    .with_heartbeats(heartbeats);
    let r = consumer.run(stop).await;
    // Local bots leave their meetings and report their end to the control endpoint, which
    // stays up until they have.
    if let Some(local) = local {
        let n = local.stop_all().await;
        if n > 0 {
            eprintln!("launcher: {n} bot(s) stopped");
        }
    }
    let _ = control_stop_tx.send(true);
    let _ = control.await;
    r?;
    Ok(())
}

/// `meetbot launcher`: consumes bot jobs from RabbitMQ and launches their bots, until `stop`.
pub async fn launcher_service(config: Config, stop: Shutdown) -> Result<()> {
    anyhow::ensure!(
        config.queue.kind == QueueKind::Rabbitmq,
        "meetbot launcher needs queue.kind = \"rabbitmq\" (with the in-process queue, `meetbot dev` launches bots itself)"
    );
    let tenants = Arc::new(crate::runtime::tenants(&config).await?);
    let queue = rabbitmq(&config, "launcher").await?;
    let consumer = run_consumer(&config, queue, tenants, stop.stopped());
    stop.track("launcher (consumer, bots, control endpoint)", consumer)
        .await
}

/// Reports a bot's lifecycle to its launcher (which moves the job and publishes the event).
#[derive(Clone)]
struct Events {
    control: BotControl,
}

impl Events {
    /// Reports `kind`. Events carry ids and the reason only: the connector's page pictures
    /// never leave the bot (a meeting page shows names, faces and chat; decision 0031).
    async fn publish(&self, kind: EventKind) {
        if let Err(e) = self.control.report(&kind).await {
            tracing::warn!(error = %e, "bot event not reported");
        }
    }

    /// Reports a final state, retrying while the launcher is unreachable.
    async fn finish(&self, kind: EventKind) {
        if let Err(e) = self.control.report_reliably(&kind).await {
            tracing::warn!(error = %e, "the bot's final state was not reported");
        }
    }
}

/// How a bot process ends when it does not end well: the exit code its launcher reads (3: the
/// job failed; 4: the meeting client was lost, launch me again), returned up to `main` so that
/// the process ends the normal way (its spans exported).
#[derive(Debug)]
pub struct BotExit {
    pub code: u8,
    pub job_id: String,
    pub reason: String,
}

impl std::fmt::Display for BotExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bot {}: {}", self.job_id, self.reason)
    }
}

impl std::error::Error for BotExit {}

/// Reports the job as failed with `reason`; the process ends with code 3.
async fn fail_and_exit(events: &Events, job_id: &str, reason: String) -> Result<()> {
    events.finish(EventKind::Failed(reason.clone())).await;
    Err(BotExit {
        code: 3,
        job_id: job_id.to_string(),
        reason,
    }
    .into())
}

/// How often a bot in a meeting asks its launcher about its job: a person stopping it (or
/// deleting the meeting) makes it leave within about this long, even when no stop reaches it.
const JOB_LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long a bot in a meeting goes on without an answer from its launcher before it leaves:
/// a stop it cannot hear of must not keep it in the meeting for hours.
const LAUNCHER_SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// How long a starting bot tries to reach its launcher before it gives up without joining.
const LAUNCHER_WAIT_AT_START: Duration = Duration::from_secs(30);

/// Resolves once the launcher says to leave (job stopped, withdrawn or gone, meeting deleted),
/// refuses the ticket (a newer bot took the job over), or has not answered for
/// [`LAUNCHER_SILENCE_LIMIT`].
async fn told_to_leave(control: BotControl) {
    let mut every = tokio::time::interval(JOB_LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answered = tokio::time::Instant::now();
    loop {
        every.tick().await;
        match control.status().await {
            Ok(s) if s.leave => return,
            Ok(_) => answered = tokio::time::Instant::now(),
            Err(ControlError::Refused(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "job state unknown");
                if answered.elapsed() >= LAUNCHER_SILENCE_LIMIT {
                    tracing::warn!("no answer from the launcher for a minute: leaving");
                    return;
                }
            }
        }
    }
}

/// Asks the launcher about the job until it answers (at most [`LAUNCHER_WAIT_AT_START`]):
/// a bot joins only when its launcher can stop it.
async fn first_status(control: &BotControl) -> Result<meetbot_bot::ticket::ControlStatus> {
    let start = tokio::time::Instant::now();
    loop {
        match control.status().await {
            Ok(s) => return Ok(s),
            Err(e @ ControlError::Refused(_)) => return Err(e.into()),
            Err(e) if start.elapsed() >= LAUNCHER_WAIT_AT_START => {
                return Err(anyhow::Error::new(e).context(
                    "the launcher's control endpoint did not answer for 30 s: not joining a meeting it could not stop me in",
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "launcher not reachable yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// `meetbot bot --tenant T --job ID`: one bot for one job, with the ticket its launcher handed
/// it (decision 0032) and nothing else: no store, key or broker access.
///
/// Joins the ticket's link through the connector for it, reports its lifecycle to its launcher,
/// leaves by the ticket's rules, and reports `done` or `failed` with the reason. SIGTERM (the
/// launcher's stop) makes it leave cleanly, and so does its launcher saying to leave (a person
/// stopped the bot or deleted the meeting; asked every second). Where no connector fits the
/// link, the job fails with that reason (exit 3).
pub async fn bot(
    ticket: Option<zeroize::Zeroizing<String>>,
    tenant: TenantId,
    job_id: String,
    shutdown: Shutdown,
) -> Result<()> {
    let text = ticket.with_context(|| {
        format!(
            "no bot ticket: the launcher starts bots with one in {}",
            meetbot_bot::ticket::TICKET_ENV
        )
    })?;
    let ticket = BotTicket::decode(&text, chrono::Utc::now())?;
    drop(text);
    anyhow::ensure!(
        ticket.tenant == tenant && ticket.job_id == job_id,
        "the bot ticket is for job {} of tenant {}, not for job {job_id} of tenant {tenant}",
        ticket.job_id,
        ticket.tenant
    );
    let span =
        meetbot_core::meeting_span!("bot.session", &tenant, &ticket.meeting_id, job = %job_id);
    in_meeting(ticket, job_id, shutdown).instrument(span).await
}

/// The bot's work once its ticket is checked (in its meeting's trace).
async fn in_meeting(ticket: BotTicket, job_id: String, shutdown: Shutdown) -> Result<()> {
    use meetbot_bot::janus::{
        JanusAudioBridge, JanusRoomKind, JanusVideoRoom, VideoRoomSettings, janus_room,
    };
    use meetbot_bot::session::{Lifecycle, Rules, run_session};

    let control = BotControl::new(&ticket);
    let s = first_status(&control).await?;
    if s.leave {
        eprintln!("bot job {job_id} is {}: nothing to do", s.state);
        return Ok(());
    }
    let events = Events {
        control: control.clone(),
    };
    let link = ticket.link.clone().map(zeroize::Zeroizing::new);
    let b = &ticket.bot;
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
                    return fail_and_exit(&events, &job_id, e.to_string()).await;
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
            // SAFETY: getuid(2) cannot fail and touches no memory.
            let root = unsafe { libc::getuid() } == 0;
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
                    return fail_and_exit(&events, &job_id, e.to_string()).await;
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
        let platform = ticket.platform.as_deref().unwrap_or("unknown");
        let reason = format!("no meeting connector for platform {platform} in this build");
        return fail_and_exit(&events, &job_id, reason).await;
    };
    // The job's own rules, then the tenant's, then the service's: resolved in the ticket.
    let secs = Duration::from_secs;
    let rules = Rules {
        waiting_room_timeout: secs(ticket.waiting_room_timeout_seconds),
        alone_timeout: secs(ticket.alone_timeout_seconds),
        silence_timeout: secs(ticket.silence_timeout_seconds),
        max_duration: secs(ticket.max_duration_seconds),
        ..Rules::default()
    };
    let display_name = ticket.display_name.clone();
    let chat_notice = ticket.chat_notice.clone();
    let (report_tx, mut report_rx) = tokio::sync::mpsc::channel(64);
    let (audio_tx, mut audio_rx) = tokio::sync::mpsc::channel(4096);
    // Audio goes to the transcriber when one is configured; otherwise it is counted and released.
    // Either way it is only ever in memory.
    let stream_cfg = ticket
        .audio
        .as_ref()
        .map(|a| meetbot_bot::audio_stream::StreamSettings {
            // The transcriber's endpoint for this job and the token that opens it: expires
            // when this bot must have left, taken only while this ticket is the job's.
            url: a.url.clone(),
            token: SecretString::from(a.token.clone()),
            buffer_frames: b.audio_buffer_frames,
            max_outage: Duration::from_secs(60),
            // The cluster's private CA, if any, came with the ticket.
            trusted_ca: ticket.trusted_ca(),
        });
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
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(l) = report_rx.recv().await {
                let kind = match &l {
                    Lifecycle::Joining => EventKind::Joining,
                    Lifecycle::WaitingRoom => EventKind::WaitingRoom,
                    // The launcher moves the job to `joined`.
                    Lifecycle::InCall => EventKind::InCall,
                    Lifecycle::Recording => EventKind::Recording,
                    Lifecycle::Leaving(_) => EventKind::Leaving,
                };
                events.publish(kind).await;
            }
        })
    };
    let stop = {
        let watch = told_to_leave(control.clone());
        async move {
            tokio::select! {
                _ = shutdown.stopped() => {}
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
        Some(_) if control.status().await.is_ok_and(|s| s.leave) => None,
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
            if control.status().await.is_ok_and(|s| !s.leave) {
                events.finish(EventKind::Done).await;
            }
            eprintln!("bot {job_id}: left (stopped)");
            Ok(())
        }
        Ok(o) if o.reason.is_success() => {
            events.finish(EventKind::Done).await;
            eprintln!(
                "bot {job_id}: left ({}); {packets} audio packets, {} malformed",
                o.reason.describe(),
                o.malformed
            );
            Ok(())
        }
        Ok(o) => fail_and_exit(&events, &job_id, o.reason.describe()).await,
        Err(meetbot_bot::connector::ConnectError::Lost(reason)) => {
            // The meeting client crashed or hung: the job stays live and this process exits
            // with 4, so the launcher's watcher launches the bot again per its relaunch policy
            // (the meeting still runs) or fails the job when the policy is spent.
            // (Reported as leaving: a `failed` report would end the job.)
            let reason = format!("the meeting client failed: {reason}; exiting for a relaunch");
            events.publish(EventKind::Leaving).await;
            Err(BotExit {
                code: 4,
                job_id,
                reason,
            }
            .into())
        }
        Err(e) => fail_and_exit(&events, &job_id, e.to_string()).await,
    }
}

//! Connecting to the configured servers, and the long-running commands.

use anyhow::{Context, Result};
use meetbot_core::config::{Config, KeyProviderKind, QueueKind, server_address};
use meetbot_core::model::TenantStatus;
use meetbot_core::ops::{Ops, ReadinessCheck, Shutdown};
use meetbot_crypto::{AzureKeyVaultProvider, KeyProvider, LocalKeyFile};
use meetbot_queue::{InProcessQueue, JobQueue, RabbitQueue};
use meetbot_scheduler::{Scheduler, SchedulerSettings};
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    Ok(meetbot_store::open(&config.store).await?)
}

pub fn key_provider(config: &Config) -> Result<Arc<dyn KeyProvider>> {
    Ok(match config.keys.provider {
        KeyProviderKind::Local => {
            Arc::new(LocalKeyFile::open_or_create(&config.keys.local_key_file)?)
        }
        KeyProviderKind::AzureKeyVault => {
            Arc::new(AzureKeyVaultProvider::from_config(&config.keys.azure)?)
        }
    })
}

pub async fn tenants(config: &Config) -> Result<Tenants> {
    let store = open_store(config).await?;
    Ok(Tenants::new(store, key_provider(config)?))
}

/// Connects to RabbitMQ and declares the topology (idempotent).
pub async fn rabbitmq(config: &Config, role: &str) -> Result<Arc<RabbitQueue>> {
    let q = &config.queue;
    let name = format!("meetbot-{role}-{}", std::process::id());
    let timeout = Duration::from_millis(q.connect_timeout_ms);
    Ok(Arc::new(
        RabbitQueue::connect(&q.amqp_url, &q.prefix, &name, q.delivery_limit, timeout).await?,
    ))
}

/// The configured queue; the in-process one only where everything runs in one process.
pub async fn queue(config: &Config, role: &str) -> Result<Arc<dyn JobQueue>> {
    Ok(match config.queue.kind {
        QueueKind::InProcess => Arc::new(InProcessQueue::new(config.queue.delivery_limit)),
        QueueKind::Rabbitmq => rabbitmq(config, role).await?,
    })
}

/// `meetbot check`: every configured dependency, one line each.
pub async fn check(config: &Config) -> Result<()> {
    println!("config: ok");
    let store = open_store(config).await?;
    println!("store: ok ({})", store.describe());
    let keys = key_provider(config)?;
    keys.check().await.context("key provider")?;
    println!("keys: ok ({})", keys.name());
    if config.queue.kind == QueueKind::Rabbitmq {
        rabbitmq(config, "check").await?.check().await?;
        println!(
            "queue: ok (RabbitMQ at {})",
            server_address(&config.queue.amqp_url)
        );
    } else {
        println!("queue: ok (in-process)");
    }
    Ok(())
}

/// Readiness checks for the dependencies a service uses.
pub fn readiness(
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyProvider>,
    queue: Option<Arc<dyn JobQueue>>,
) -> Vec<ReadinessCheck> {
    let mut checks = vec![
        ReadinessCheck::new("store", move || {
            let s = store.clone();
            async move { s.ping().await.map_err(|e| e.to_string()) }
        }),
        ReadinessCheck::new("keys", move || {
            let k = keys.clone();
            async move { k.check().await.map_err(|e| e.to_string()) }
        }),
    ];
    if let Some(queue) = queue {
        checks.push(ReadinessCheck::new("queue", move || {
            let q = queue.clone();
            async move { q.check().await.map_err(|e| e.to_string()) }
        }));
    }
    checks
}

/// Binds the ops server and serves it until the stop.
async fn start_ops(
    config: &Config,
    service: &str,
    registry: Registry,
    checks: Vec<ReadinessCheck>,
    stop: &Shutdown,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let (addr, server) = Ops::new(service, registry, checks)
        .serve(config.ops.listen, stop.stopped())
        .await?;
    eprintln!("ops server on http://{addr} (/healthz /readyz /metrics); Ctrl-C stops");
    Ok(server)
}

/// Runs the scheduler until the stop, then releases its leases (so another replica takes its
/// tenants over at once).
async fn run_scheduler(sched: Scheduler, stop: Shutdown) {
    stop.track(
        "scheduler (releasing its leases)",
        sched.run(stop.stopped()),
    )
    .await;
}

/// `meetbot scheduler`: the scheduler service against the configured store and RabbitMQ.
pub async fn scheduler(config: Config, stop: Shutdown) -> Result<()> {
    anyhow::ensure!(
        config.queue.kind == QueueKind::Rabbitmq,
        "the scheduler service needs queue.kind = \"rabbitmq\" (the in-process queue only connects the parts of `meetbot dev`)"
    );
    let store = open_store(&config).await?;
    let keys = key_provider(&config)?;
    let queue = queue(&config, "scheduler").await?;
    let settings = SchedulerSettings::from_config(&config.scheduler);
    tracing::info!(replica = %settings.replica, store = %store.describe(), queue = %queue.describe(), "scheduler starting");
    let sched = Scheduler::new(store.clone(), queue.clone(), settings);
    let mut registry = Registry::default();
    sched.register_metrics(&mut registry);
    let checks = readiness(store, keys, Some(queue));
    let ops = start_ops(&config, "scheduler", registry, checks, &stop).await?;
    run_scheduler(sched, stop.clone()).await;
    stop.track("ops server", ops).await??;
    tracing::info!("scheduler stopped; leases released");
    Ok(())
}

/// `meetbot calendar-sync`: webhooks, the sync worker (push channels, rounds, polling) and ops.
pub async fn calendar_sync(config: Config, stop: Shutdown) -> Result<()> {
    use meetbot_calendar_sync::webhook::{WebhookCounters, WebhookState, oauth_router, router};
    use meetbot_calendar_sync::worker::SubscriptionIndex;

    let c = &config.calendar;
    let store = open_store(&config).await?;
    let keys = key_provider(&config)?;
    let tenants = Arc::new(Tenants::new(store.clone(), keys.clone()));
    let index: SubscriptionIndex = Default::default();
    let worker = Arc::new(sync_worker(&config, tenants.clone(), index.clone())?);
    let base = c.public_webhook_base.as_deref();
    let channels = worker.load_index().await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let hooks = router(WebhookState {
        tenants,
        index,
        triggers: tx,
        counters: Arc::new(WebhookCounters::default()),
    })
    .merge(oauth_router(worker.clone(), config.api.cookie_secure));
    let listener = tokio::net::TcpListener::bind(c.webhook_listen)
        .await
        .with_context(|| format!("cannot listen for webhooks on {}", c.webhook_listen))?;
    let hook_server = tokio::spawn(axum_serve(listener, hooks, stop.stopped()));
    let (addr, ops) = Ops::new(
        "calendar-sync",
        Registry::default(),
        readiness(store, keys, None),
    )
    .serve(config.ops.listen, stop.stopped())
    .await?;
    eprintln!(
        "calendar-sync: webhooks on {}, ops on http://{addr}, {channels} push channels, push {}",
        c.webhook_listen,
        if base.is_some() {
            "on"
        } else {
            "off (polling only: set calendar.public_webhook_base)"
        }
    );
    stop.track(
        "calendar sync worker (a round in flight)",
        worker.run(rx, stop.stopped()),
    )
    .await;
    stop.track("webhook server", hook_server).await??;
    stop.track("ops server", ops).await??;
    Ok(())
}

/// The calendar sync worker as configured: Graph and Google clients, push URLs, OAuth.
pub fn sync_worker(
    config: &Config,
    tenants: Arc<Tenants>,
    index: meetbot_calendar_sync::worker::SubscriptionIndex,
) -> Result<meetbot_calendar_sync::worker::SyncWorker> {
    use meetbot_calendar_sync::google::GoogleClient;
    use meetbot_calendar_sync::graph::GraphClient;
    use meetbot_calendar_sync::oauth::{OAuth, OAuthHttp, ProviderSettings};
    use meetbot_calendar_sync::rules::AutoJoinRules;
    use meetbot_calendar_sync::worker::{SyncWorker, WorkerSettings};
    use meetbot_core::model::CalendarProvider;
    use secrecy::SecretString;

    let c = &config.calendar;
    let base = c
        .public_webhook_base
        .as_deref()
        .map(|b| b.trim_end_matches('/').to_string());
    let settings = WorkerSettings {
        window_back: chrono::Duration::days(i64::from(c.window_days_back)),
        window_ahead: chrono::Duration::days(i64::from(c.window_days_ahead)),
        poll_every: Duration::from_secs(c.poll_seconds),
        notification_url: base.as_ref().map(|b| format!("{b}/webhooks/microsoft")),
        lifecycle_url: base
            .as_ref()
            .map(|b| format!("{b}/webhooks/microsoft/lifecycle")),
        google_notification_url: base.as_ref().map(|b| format!("{b}/webhooks/google")),
        limits: meetbot_calendar_sync::sync::RoundLimits {
            feed: meetbot_calendar_sync::ics::FeedLimits {
                max_instances: c.ics_max_instances,
                max_steps: c.ics_max_steps,
                ..Default::default()
            },
            max_events: c.max_events_per_round,
        },
        max_connections_per_user: c.max_connections_per_user,
        ..Default::default()
    };
    let graph = GraphClient::new(reqwest_client()?, &c.graph_base_url)?;
    let google = GoogleClient::new(&c.google_root_url)?;
    let mut worker = SyncWorker::new(
        graph,
        tenants.clone(),
        AutoJoinRules::default(),
        settings,
        index,
    )
    .with_google(google)
    .with_ics(
        meetbot_calendar_sync::ics::IcsClient::new(c.ics_allow_http, &config.egress.allow_private)?
            .with_max_bytes(c.ics_max_bytes),
    );
    if c.google_oauth.is_none() && c.microsoft_oauth.is_none() {
        return Ok(worker);
    }
    let mut builder = reqwest::Client::builder();
    if let Some(f) = &c.oauth_ca_file {
        let pem = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", f.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    let redirect = c.oauth_redirect();
    let mut oauth = OAuth::new(tenants, OAuthHttp::new(builder)?);
    oauth.refresh_before = chrono::Duration::seconds(c.oauth_refresh_before_seconds as i64);
    // The callback finishes a consent only for a live meetbot session, as the API judges one.
    oauth.session_idle = chrono::Duration::seconds(config.api.session_idle_seconds as i64);
    for (provider, o) in [
        (CalendarProvider::Google, &c.google_oauth),
        (CalendarProvider::Microsoft, &c.microsoft_oauth),
    ] {
        let Some(o) = o else { continue };
        let secret = o.client_secret.clone().map(SecretString::from);
        let mut s = match provider {
            CalendarProvider::Google => ProviderSettings::google(&o.client_id, secret, &redirect),
            _ => ProviderSettings::microsoft(
                o.directory.as_deref().unwrap_or("common"),
                &o.client_id,
                secret,
                &redirect,
            ),
        };
        if let Some(u) = &o.auth_url {
            s.auth_url = u.clone();
        }
        if let Some(u) = &o.token_url {
            s.token_url = u.clone();
        }
        if o.revocation_url.is_some() {
            s.revocation_url = o.revocation_url.clone();
        }
        if let Some(sc) = &o.scopes {
            s.scopes = sc.clone();
        }
        oauth = oauth.with_provider(provider, s)?;
    }
    worker = worker.with_oauth(Arc::new(oauth));
    Ok(worker)
}

fn reqwest_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// The parts of `meetbot dev` that run until the stop, each named (for the stop's report).
type Parts = tokio::task::JoinSet<(&'static str, Result<()>)>;

fn spawn_part(
    parts: &mut Parts,
    stop: &Shutdown,
    name: &'static str,
    part: impl std::future::Future<Output = Result<()>> + Send + 'static,
) {
    parts.spawn(stop.track(name, async move { (name, part.await) }));
}

/// `meetbot dev`: the single-machine runtime on embedded defaults.
/// `demo`: seconds to the demo meeting (none: no demo).
///
/// Every part sees the one `stop`, in whichever phase it comes: a stop during start-up
/// abandons the rest of it (a model still loading is left to its thread), and once running,
/// the scheduler releases its leases, the launcher stops its bots (SIGTERM, then SIGKILL after
/// half the grace) while their control endpoint stays up for their last reports, and the
/// demo, API and transcriber close. A part that fails stops the others.
pub async fn dev(config: Config, demo: Option<u64>, stop: Shutdown) -> Result<()> {
    let mut parts = Parts::new();
    let started = {
        let _p = stop.part("start-up");
        tokio::select! {
            r = start_dev(config, demo, &stop, &mut parts) => Some(r),
            _ = stop.stopped() => None,
        }
    };
    let mut failed = match started {
        Some(Err(e)) => {
            stop.trigger("the start-up failed");
            Some(e)
        }
        Some(Ok(())) => {
            // Until the stop, or until a part fails (then it stops the others).
            let mut failed = None;
            loop {
                tokio::select! {
                    _ = stop.stopped() => break,
                    Some(done) = parts.join_next() => {
                        if let Some(e) = part_failure(done) {
                            if !stop.is_triggered() {
                                stop.trigger("a part failed");
                            }
                            failed = Some(e);
                            break;
                        }
                    }
                    else => break,
                }
            }
            failed
        }
        None => None,
    };
    while let Some(done) = parts.join_next().await {
        if let Some(e) = part_failure(done) {
            failed.get_or_insert(e);
        }
    }
    eprintln!("meetbot dev: stopped");
    failed.map_or(Ok(()), Err)
}

fn part_failure(
    done: Result<(&'static str, Result<()>), tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match done {
        Ok((_, Ok(()))) => None,
        Ok((name, Err(e))) => Some(e.context(name)),
        Err(e) => Some(anyhow::anyhow!(
            "a part of meetbot dev ended abnormally: {e}"
        )),
    }
}

/// Starts every part of `meetbot dev` into `parts`.
async fn start_dev(
    mut config: Config,
    demo: Option<u64>,
    stop: &Shutdown,
    parts: &mut Parts,
) -> Result<()> {
    let host = match demo {
        Some(secs) => Some(crate::demo::prepare(&mut config, secs).await?),
        None => None,
    };
    eprintln!(
        "meetbot dev: store {:?} at {}",
        config.store.kind,
        config.store.embedded_dir.display()
    );
    let store = open_store(&config).await?;
    let keys = key_provider(&config)?;
    let tenants = Tenants::new(store.clone(), keys.clone());
    eprintln!("[1/3] store open: {}", store.describe());
    let existing = store
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.name == "Demo" && t.status == TenantStatus::Active);
    let demo = match existing {
        Some(t) => t,
        None => tenants.create("Demo").await?,
    };
    tenants
        .vault(&demo.id)
        .await
        .context("opening the demo tenant's keys")?;
    eprintln!(
        "[2/3] demo tenant {} ready (data key v{}, wrapped by {})",
        demo.id,
        demo.current_key_version,
        keys.name()
    );
    let queue = queue(&config, "dev").await?;
    let sched = Scheduler::new(
        store.clone(),
        queue.clone(),
        SchedulerSettings::from_config(&config.scheduler),
    );
    let mut registry = Registry::default();
    sched.register_metrics(&mut registry);
    eprintln!(
        "[3/3] scheduler running on the {} (lead {} s, tick {} ms); bots launched here",
        queue.describe(),
        config.scheduler.lead_seconds,
        config.scheduler.tick_ms
    );
    let api_tenants = Arc::new(Tenants::new(store.clone(), keys.clone()));
    // The API and the web app first, so that what links to them (summaries) names the address
    // they listen on. The demo owner signs in with a one-time link.
    let owner = crate::demo::owner(&tenants, &demo.id).await?;
    let links = meetbot_api::signin_link::SignInLinks::new();
    let mut pages = None;
    match crate::api::spawn(
        &config,
        api_tenants,
        Some(queue.clone()),
        Some(links),
        stop.stopped(),
    )
    .await
    {
        Ok(served) => {
            let addr = served.addr;
            eprintln!(
                "      API on http://{addr}/v1 (OpenAPI: /v1/openapi.json), web app on http://{addr}/app/"
            );
            // Links work from loopback only: name a loopback address even when listening on all.
            let host = if addr.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            };
            pages = Some(format!("http://{host}"));
            // Left at its default, the public address is where this run listens.
            if config.api.public_url == Config::default().api.public_url {
                config.api.public_url = format!("http://{host}");
            }
            if let Some(links) = &served.api.sign_in_links {
                let secret = links
                    .mint(&demo.id, &owner.id)
                    .map_err(|e| anyhow::anyhow!("making the sign-in link: {e}"))?;
                eprintln!(
                    "sign in: http://{host}/app/sign-in/link/{secret}  (the demo owner; works once, for 10 minutes, from this machine)"
                );
            }
            let task = served.task;
            spawn_part(parts, stop, "API (open requests)", async move {
                Ok(task.await??)
            });
        }
        Err(e) => eprintln!("      API off: {e:#}"),
    }
    // The transcriber in process: local bots stream their audio to it, told where and with
    // which token by their tickets. Their control endpoint is on a free loopback port.
    let mut launch_config = config.clone();
    launch_config.launcher.control_listen = "127.0.0.1:0".into();
    launch_config.launcher.control_url = None;
    let mut live = None;
    let tenants = Arc::new(tenants);
    eprintln!(
        "      transcriber: loading the speech model ({:?} {}) ...",
        config.transcriber.engine.kind, config.transcriber.engine.model
    );
    match crate::speech::in_process(&config, tenants.clone(), stop.receiver()).await {
        Ok((url, secret, task)) => {
            eprintln!(
                "      transcriber on {url}/<tenant>/<job> ({:?} {}, summaries: {:?})",
                config.transcriber.engine.kind,
                config.transcriber.engine.model,
                config.transcriber.summarizer.kind
            );
            live = Some((url.clone(), secret.clone()));
            launch_config.bot.transcriber_url = Some(url);
            launch_config.transcriber.audio_token_secret = Some(secret);
            spawn_part(
                parts,
                stop,
                "transcriber (open audio or live streams)",
                async move { Ok(task.await??) },
            );
        }
        Err(e) => eprintln!("      transcription off: {e:#}"),
    }
    if let Some(mut host) = host {
        host.pages = pages;
        eprintln!(
            "      demo: room and calendar feed on {}; email to {}",
            host.base,
            config
                .delivery
                .email_dir
                .as_deref()
                .map_or("the SMTP relay".to_string(), |d| format!("{}", d.display()))
        );
        spawn_part(
            parts,
            stop,
            "demo (room, calendar feed)",
            crate::demo::run(
                host,
                config.clone(),
                tenants.clone(),
                demo.id.clone(),
                live,
                stop.clone(),
            ),
        );
    }
    {
        let (queue, tenants, stop2) = (queue.clone(), tenants.clone(), stop.clone());
        spawn_part(
            parts,
            stop,
            "launcher (bots, their control endpoint)",
            async move {
                crate::bots::run_consumer(&launch_config, queue, tenants, stop2.stopped()).await
            },
        );
    }
    let checks = readiness(store, keys, Some(queue));
    let ops = start_ops(&config, "dev", registry, checks, stop).await?;
    spawn_part(parts, stop, "ops server", async move { Ok(ops.await??) });
    let stop2 = stop.clone();
    spawn_part(
        parts,
        stop,
        "scheduler (releasing its leases)",
        async move {
            sched.run(stop2.stopped()).await;
            Ok(())
        },
    );
    Ok(())
}

/// `meetbot dev`'s private temporary directory, `<store.embedded_dir>/tmp-<pid>` (mode 0700):
/// made at start, named by TMPDIR for the process and everything it starts (bots, their
/// browsers), removed at exit. What meetbot writes to temporary files is then where the
/// demo's audio check looks, and other programs' files are not.
pub struct PrivateTmp(std::path::PathBuf);

impl PrivateTmp {
    /// Makes the directory (removing those of earlier runs whose process is gone) and sets
    /// TMPDIR. Call it before any other thread exists.
    pub fn create(data: &std::path::Path) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let data = std::path::absolute(data)
            .with_context(|| format!("store.embedded_dir {}", data.display()))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data)
            .with_context(|| format!("creating the data directory {}", data.display()))?;
        for e in std::fs::read_dir(&data)
            .with_context(|| format!("reading {}", data.display()))?
            .flatten()
        {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("tmp-")) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = data.join(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating meetbot's temporary directory {}", dir.display()))?;
        // SAFETY: called from `main` before the runtime or any other thread starts, so
        // nothing reads the environment concurrently.
        unsafe { std::env::set_var("TMPDIR", &dir) };
        Ok(PrivateTmp(dir))
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

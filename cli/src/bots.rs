//! `meetbot launcher` (the launch consumer as a service) and `meetbot bot` (one bot).

use crate::runtime::{open_store, rabbitmq};
use anyhow::{Context, Result};
use meetbot_bot::BotLauncher;
use meetbot_bot::consumer::{LaunchConsumer, LaunchSettings};
use meetbot_bot::kubernetes::{JobTemplate, KubernetesLauncher};
use meetbot_bot::local::LocalProcessLauncher;
use meetbot_core::TenantId;
use meetbot_core::config::{Config, LauncherKind, QueueKind};
use meetbot_core::model::BotJobState;
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
pub async fn launcher(config: &Config) -> Result<Arc<dyn BotLauncher>> {
    let l = &config.launcher;
    Ok(match l.kind {
        LauncherKind::Local => {
            let exe = std::env::current_exe().context("locating the meetbot binary for bots")?;
            let mut local = LocalProcessLauncher::new(exe, vec!["bot".into()], l.max_concurrent);
            if let Ok(cfg) = std::env::var("MEETBOT_CONFIG") {
                local = local.with_env("MEETBOT_CONFIG", &cfg);
            }
            Arc::new(local)
        }
        LauncherKind::Kubernetes => {
            let k = &l.kubernetes;
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (in-cluster service account or kubeconfig)")?;
            let mut t = JobTemplate::new(&k.namespace, &k.image);
            t.image_pull_policy = k.image_pull_policy.clone();
            t.service_account = k.service_account.clone();
            t.env_from_secrets = k.env_from_secrets.clone();
            t.env_from_config_maps = k.env_from_config_maps.clone();
            for (dst, src) in [
                (&mut t.cpu_request, &k.cpu_request),
                (&mut t.memory_request, &k.memory_request),
                (&mut t.cpu_limit, &k.cpu_limit),
                (&mut t.memory_limit, &k.memory_limit),
            ] {
                if src.is_some() {
                    *dst = src.clone();
                }
            }
            if let Some(ttl) = k.ttl_seconds_after_finished {
                t.ttl_seconds_after_finished = ttl;
            }
            Arc::new(KubernetesLauncher::new(client, t))
        }
    })
}

/// Runs the launch consumer until `stop` resolves.
pub async fn run_consumer(
    config: &Config,
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn Store>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let launcher = launcher(config).await?;
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
    run_consumer(&config, queue, store, stop).await
}

/// `meetbot bot --tenant T --job ID`: one bot for one job.
///
/// It loads its job and meeting, reports `joining`, and joins through the meeting connector for
/// the meeting's platform. Where no connector for that platform exists in this build, the job
/// fails with that reason (exit code 3) instead of pretending to join.
pub async fn bot(config: Config, tenant: TenantId, job_id: String) -> Result<()> {
    let store = open_store(&config).await?;
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
    let event = |kind: EventKind| {
        let ev = BotEvent::new(tenant.clone(), job_id.clone(), meeting.id.clone(), kind);
        let q = queue.clone();
        async move {
            if let Some(q) = q
                && let Err(e) = q.publish_event(&ev).await
            {
                tracing::warn!(error = %e, "bot event not published");
            }
        }
    };
    event(EventKind::Joining).await;
    let platform = meeting
        .platform
        .map(|p| format!("{p:?}").to_lowercase())
        .unwrap_or_else(|| "unknown".into());
    let reason = format!("no meeting connector for platform {platform} in this build");
    event(EventKind::Failed(reason.clone())).await;
    let mut j = job.value.clone();
    if meetbot_scheduler::jobs::transition(
        &mut j,
        BotJobState::Failed(reason.clone()),
        chrono::Utc::now(),
    )
    .is_ok()
    {
        store.update_bot_job(&tenant, &j, job.version).await?;
    }
    eprintln!("bot {job_id}: {reason}");
    std::process::exit(3);
}

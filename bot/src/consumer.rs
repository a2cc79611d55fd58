//! The launch consumer: takes bot jobs from the queue one at a time (prefetch 1), claims each in
//! the store (`gate::claim`: `dispatched -> launched`, exactly one winner), starts its bot through
//! the [`BotLauncher`], and acks only after the launch is recorded. It also stops bots whose jobs
//! are withdrawn and watches the bots it started: one that cannot start fails its job with the
//! reason; one that dies while its meeting runs is launched again (at most `max_relaunches`), the
//! gap recorded in the job's history.

use crate::launcher::{BotLauncher, BotRun, LaunchError, LaunchSpec};
use crate::ticket::{EncodedTicket, TicketError, TicketIssuer};
use chrono::Utc;
use meetbot_core::TenantId;
use meetbot_core::model::{BotJobState, StateChange};
use meetbot_queue::{BotEvent, EventKind, JobDelivery, JobMessage, JobQueue, QueueError};
use meetbot_scheduler::gate::{Claim, claim};
use meetbot_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, Debug)]
pub struct LaunchSettings {
    /// A bot's hard time limit (the launcher enforces it).
    pub max_duration: Duration,
    /// How often launched bots are looked at.
    pub watch_every: Duration,
    /// How often one job's bot is launched again after dying mid-meeting.
    pub max_relaunches: u32,
}

impl Default for LaunchSettings {
    fn default() -> Self {
        LaunchSettings {
            max_duration: Duration::from_secs(4 * 3600),
            watch_every: Duration::from_secs(5),
            max_relaunches: 3,
        }
    }
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    Launched,
    /// The job had been claimed but its bot was missing (a consumer died in between): launched now.
    Recovered,
    Duplicate,
    Withdrawn,
    /// The platform refused the bot: the job failed with this reason.
    Failed(String),
    /// The platform was unavailable: the message went back to the queue.
    Requeued,
    /// No such job: dead-lettered.
    Unknown,
}

struct Tracked {
    tenant: TenantId,
    meeting_id: String,
    relaunches: u32,
    /// Found live in the store when this consumer started (its bot started by an earlier
    /// launcher): since when.
    adopted: Option<std::time::Instant>,
}

/// A bot an earlier launcher started counts as lost once it has not asked its control endpoint
/// for this long (bots ask every second).
pub const ADOPTED_LOST_AFTER: Duration = Duration::from_secs(30);

pub struct LaunchConsumer {
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn Store>,
    launcher: Arc<dyn BotLauncher>,
    issuer: Arc<TicketIssuer>,
    s: LaunchSettings,
    /// Jobs whose bots this consumer started, and live ones it found at its start.
    tracked: Mutex<HashMap<String, Tracked>>,
    heartbeats: crate::control::Heartbeats,
}

/// Why a bot got no ticket.
enum NoTicket {
    /// The job left the live states meanwhile (stopped, cancelled, gone): launch nothing.
    NotLive,
    /// The ticket cannot be made (its meeting gone, the tenant's key unusable): the job fails.
    Refused(String),
    /// The store is unavailable: try again later.
    Store(StoreError),
}

impl LaunchConsumer {
    pub fn new(
        queue: Arc<dyn JobQueue>,
        store: Arc<dyn Store>,
        launcher: Arc<dyn BotLauncher>,
        issuer: Arc<TicketIssuer>,
        s: LaunchSettings,
    ) -> Self {
        LaunchConsumer {
            queue,
            store,
            launcher,
            issuer,
            s,
            tracked: Mutex::new(HashMap::new()),
            heartbeats: Default::default(),
        }
    }

    /// The heartbeats of this launcher's control endpoint ([`crate::control::Control::with_heartbeats`]).
    pub fn with_heartbeats(mut self, heartbeats: crate::control::Heartbeats) -> Self {
        self.heartbeats = heartbeats;
        self
    }

    /// Takes over the watch of every job left in a meeting (`launched`, `joined`) by an earlier
    /// launcher: a bot of it that is lost later is launched again like one started here.
    /// Returns how many were adopted.
    pub async fn adopt(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for tenant in self.store.list_tenants().await? {
            if tenant.status != meetbot_core::model::TenantStatus::Active {
                continue;
            }
            for state in ["launched", "joined"] {
                let jobs = self
                    .store
                    .find_bot_jobs(
                        &tenant.id,
                        &meetbot_store::JobFilter {
                            state: Some(state),
                            ..Default::default()
                        },
                    )
                    .await?;
                let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
                for j in jobs {
                    tracked.entry(j.value.id.clone()).or_insert_with(|| {
                        n += 1;
                        Tracked {
                            tenant: tenant.id.clone(),
                            meeting_id: j.value.meeting_id.clone(),
                            relaunches: 0,
                            adopted: Some(std::time::Instant::now()),
                        }
                    });
                }
            }
        }
        Ok(n)
    }

    fn spec(&self, m: &JobMessage, ticket: EncodedTicket) -> LaunchSpec {
        LaunchSpec {
            tenant: m.tenant_id.clone(),
            job_id: m.job_id.clone(),
            meeting_id: m.meeting_id.clone(),
            max_duration: self.s.max_duration,
            ticket,
        }
    }

    /// Issues a new ticket for the job's bot and records it in the job (compare-and-set), which
    /// revokes any earlier ticket of the job.
    async fn ticket(&self, t: &TenantId, job_id: &str) -> Result<EncodedTicket, NoTicket> {
        loop {
            let cur = match self.store.get_bot_job(t, job_id).await {
                Ok(Some(j)) => j,
                Ok(None) => return Err(NoTicket::NotLive),
                Err(e) => return Err(NoTicket::Store(e)),
            };
            if !matches!(cur.value.state, BotJobState::Launched | BotJobState::Joined) {
                return Err(NoTicket::NotLive);
            }
            let (record, ticket) = match self.issuer.issue(t, &cur.value).await {
                Ok(x) => x,
                Err(TicketError::Store(e)) => return Err(NoTicket::Store(e)),
                Err(e) => return Err(NoTicket::Refused(e.to_string())),
            };
            let mut job = cur.value.clone();
            job.ticket = Some(record);
            match self.store.update_bot_job(t, &job, cur.version).await {
                Ok(_) => return Ok(ticket.encode()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(NoTicket::Store(e)),
            }
        }
    }

    fn track(&self, m: &JobMessage) {
        self.tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(m.job_id.clone())
            .and_modify(|t| t.adopted = None)
            .or_insert(Tracked {
                tenant: m.tenant_id.clone(),
                meeting_id: m.meeting_id.clone(),
                relaunches: 0,
                adopted: None,
            });
    }

    async fn event(&self, t: &TenantId, job: &str, meeting: &str, kind: EventKind) {
        let ev = BotEvent::new(t.clone(), job.into(), meeting.into(), kind);
        if let Err(e) = self.queue.publish_event(&ev).await {
            tracing::warn!(job = %job, error = %e, "bot event not published");
        }
    }

    /// Moves the job to `Failed(reason)` (compare-and-set, retried on conflict).
    async fn fail_job(&self, t: &TenantId, job_id: &str, reason: &str) -> Result<(), StoreError> {
        crate::control::set_state(&*self.store, t, job_id, BotJobState::Failed(reason.into())).await
    }

    /// The bot cannot be launched for `reason` (the platform refused it, or its ticket cannot be
    /// made): the job fails with the reason, and the delivery is settled.
    async fn refused(&self, d: JobDelivery, reason: &str) -> Result<Handled, ConsumerError> {
        let m = &d.job;
        let reason = format!("bot not launched: {reason}");
        self.fail_job(&m.tenant_id, &m.job_id, &reason).await?;
        self.event(
            &m.tenant_id,
            &m.job_id,
            &m.meeting_id,
            EventKind::Failed(reason.clone()),
        )
        .await;
        d.ack().await?;
        Ok(Handled::Failed(reason))
    }

    /// A passing failure (store or platform unavailable): the job stays `launched` without a
    /// bot and the redelivery finds it and launches.
    async fn requeued(d: JobDelivery, error: &str) -> Result<Handled, ConsumerError> {
        tracing::warn!(job = %d.job.job_id, error = %error, "bot not launched; requeued");
        tokio::time::sleep(Duration::from_millis(500)).await;
        d.requeue().await?;
        Ok(Handled::Requeued)
    }

    /// Handles one delivery and settles it.
    pub async fn handle(&self, d: JobDelivery) -> Result<Handled, ConsumerError> {
        self.launcher.ready_for_one().await;
        let m = d.job.clone();
        let recovering = match claim(&*self.store, &m).await? {
            Claim::Launch(_) => false,
            Claim::Duplicate("launched")
                if self.launcher.state(&m.job_id).await.ok() == Some(BotRun::NotFound) =>
            {
                true
            }
            Claim::Duplicate(_) => {
                d.ack().await?;
                return Ok(Handled::Duplicate);
            }
            Claim::Withdrawn => {
                d.ack().await?;
                return Ok(Handled::Withdrawn);
            }
            Claim::Unknown => {
                d.dead_letter("no such bot job in that tenant").await?;
                return Ok(Handled::Unknown);
            }
        };
        let ticket = match self.ticket(&m.tenant_id, &m.job_id).await {
            Ok(t) => t,
            Err(NoTicket::NotLive) => {
                d.ack().await?;
                return Ok(Handled::Withdrawn);
            }
            Err(NoTicket::Refused(reason)) => return self.refused(d, &reason).await,
            Err(NoTicket::Store(e)) => return Self::requeued(d, &e.to_string()).await,
        };
        match self.launcher.launch(&self.spec(&m, ticket)).await {
            Ok(()) => {
                // Stopped while it was being launched (a stop handled by another replica finds
                // no bot to stop): this consumer stops it.
                if !self
                    .store
                    .get_bot_job(&m.tenant_id, &m.job_id)
                    .await?
                    .is_some_and(|j| {
                        matches!(j.value.state, BotJobState::Launched | BotJobState::Joined)
                    })
                {
                    let _ = self.launcher.stop(&m.job_id).await;
                    d.ack().await?;
                    return Ok(Handled::Withdrawn);
                }
                self.track(&m);
                tracing::info!(tenant = %m.tenant_id, job = %m.job_id, recovering, "bot launched");
                d.ack().await?;
                Ok(if recovering {
                    Handled::Recovered
                } else {
                    Handled::Launched
                })
            }
            Err(LaunchError::Refused(reason)) => self.refused(d, &reason).await,
            Err(e) => Self::requeued(d, &e.to_string()).await,
        }
    }

    /// Reacts to a bot event: a withdrawn job's bot is stopped.
    pub async fn on_event(&self, ev: &BotEvent) {
        if let EventKind::Withdrawn(reason) = &ev.kind {
            self.tracked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&ev.job_id);
            match self.launcher.stop(&ev.job_id).await {
                Ok(true) => {
                    tracing::info!(job = %ev.job_id, reason = %reason, "bot stopped: job withdrawn")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(job = %ev.job_id, error = %e, "bot not stopped"),
            }
        }
    }

    /// One look at every bot this consumer started. Returns how many were launched again.
    pub async fn watch_once(&self) -> Result<u32, ConsumerError> {
        type Watched = (String, TenantId, String, u32, Option<std::time::Instant>);
        let jobs: Vec<Watched> = self
            .tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(j, t)| {
                (
                    j.clone(),
                    t.tenant.clone(),
                    t.meeting_id.clone(),
                    t.relaunches,
                    t.adopted,
                )
            })
            .collect();
        let mut relaunched = 0;
        for (job_id, tenant, meeting_id, relaunches, adopted) in jobs {
            let run = match self.launcher.state(&job_id).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "bot state unknown");
                    continue;
                }
            };
            let forget = || {
                self.tracked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&job_id);
            };
            let reason = match (run, adopted) {
                (BotRun::Failed(r), _) => r,
                // A bot this launcher did not start: alive while it keeps asking.
                (BotRun::NotFound, Some(since)) => {
                    let last = self.heartbeats.last(&job_id).unwrap_or(since).max(since);
                    if last.elapsed() < ADOPTED_LOST_AFTER {
                        continue;
                    }
                    format!(
                        "bot not heard from for {} s (started by an earlier launcher)",
                        ADOPTED_LOST_AFTER.as_secs()
                    )
                }
                (BotRun::Succeeded | BotRun::NotFound, _) => {
                    forget();
                    continue;
                }
                (BotRun::Starting | BotRun::Running, _) => continue,
            };
            let Some(cur) = self.store.get_bot_job(&tenant, &job_id).await? else {
                forget();
                continue;
            };
            let meeting_open = self
                .store
                .get_meeting(&tenant, &meeting_id)
                .await?
                .is_some_and(|m| m.ends_at > Utc::now());
            let live = matches!(cur.value.state, BotJobState::Launched | BotJobState::Joined);
            if live && meeting_open && relaunches < self.s.max_relaunches {
                // Mark the gap: the job's history shows when the bot was found gone and why.
                let mut job = cur.value.clone();
                job.history.push(StateChange {
                    state: BotJobState::Failed(format!("bot lost, relaunching: {reason}")),
                    at: Utc::now(),
                });
                job.history.push(StateChange {
                    state: cur.value.state.clone(),
                    at: Utc::now(),
                });
                if self
                    .store
                    .update_bot_job(&tenant, &job, cur.version)
                    .await
                    .is_err()
                {
                    continue; // changed meanwhile: look again next time
                }
                // A new ticket: the lost bot's tokens stop working.
                let ticket = match self.ticket(&tenant, &job_id).await {
                    Ok(t) => t,
                    Err(NoTicket::NotLive) => continue,
                    Err(NoTicket::Refused(r)) => {
                        let reason = format!("bot not relaunched: {r}");
                        self.fail_job(&tenant, &job_id, &reason).await?;
                        self.event(&tenant, &job_id, &meeting_id, EventKind::Failed(reason))
                            .await;
                        forget();
                        continue;
                    }
                    Err(NoTicket::Store(e)) => return Err(e.into()),
                };
                let spec = LaunchSpec {
                    tenant: tenant.clone(),
                    job_id: job_id.clone(),
                    meeting_id: meeting_id.clone(),
                    max_duration: self.s.max_duration,
                    ticket,
                };
                match self.launcher.launch(&spec).await {
                    Ok(()) => {
                        relaunched += 1;
                        if let Some(t) = self
                            .tracked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_mut(&job_id)
                        {
                            t.relaunches += 1;
                            t.adopted = None;
                        }
                        tracing::warn!(job = %job_id, reason = %reason, "bot lost mid-meeting; launched again");
                    }
                    Err(e) => tracing::warn!(job = %job_id, error = %e, "relaunch failed"),
                }
                continue;
            }
            if live {
                self.fail_job(&tenant, &job_id, &reason).await?;
                self.event(&tenant, &job_id, &meeting_id, EventKind::Failed(reason))
                    .await;
            }
            forget();
        }
        Ok(relaunched)
    }

    /// Runs until `shutdown`: deliveries one at a time, withdrawals, and a watch every
    /// `watch_every`. `shutdown` is seen at every step, also while a delivery waits for a
    /// free slot or the store: an unfinished delivery is not acked, so the broker gives it to
    /// another consumer (the job's state decides what it still needs, `gate`).
    ///
    /// A lost broker connection is reopened (backoff from 1 s to 10 s) while the bots go on:
    /// what was not acked comes again, and the job's state says what it still needs. Only
    /// `shutdown` ends it.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ConsumerError> {
        tokio::pin!(shutdown);
        match self.adopt().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "bots of an earlier launcher watched from now on"),
            Err(e) => tracing::warn!(error = %e, "live jobs not adopted: the store is unreadable"),
        }
        let mut tick = tokio::time::interval(self.s.watch_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::from_secs(1);
        loop {
            let start = async {
                let jobs = self.queue.consume_jobs().await?;
                let events = self.queue.subscribe_events().await?;
                Ok::<_, QueueError>((jobs, events))
            };
            let (mut jobs, mut events) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = start => match r {
                    Ok(streams) => streams,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "the job queue is unreachable; the bots go on");
                        tokio::select! {
                            _ = &mut shutdown => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                },
            };
            backoff = Duration::from_secs(1);
            let lost = loop {
                let step = async {
                    tokio::select! {
                        d = jobs.next() => {
                            let d = d?;
                            let job = d.job.job_id.clone();
                            let span = meetbot_core::meeting_span!(
                                "launcher.launch", &d.job.tenant_id, &d.job.meeting_id, job = %job
                            );
                            match self.handle(d).instrument(span).await {
                                Ok(h) => tracing::debug!(job = %job, handled = ?h, "bot job delivery"),
                                Err(e) => tracing::warn!(job = %job, error = %e, "bot job delivery failed"),
                            }
                        }
                        ev = events.next() => self.on_event(&ev?).await,
                        _ = tick.tick() => {
                            if let Err(e) = self.watch_once().await {
                                tracing::warn!(error = %e, "watching bots failed");
                            }
                        }
                    }
                    Ok::<(), QueueError>(())
                };
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    r = step => if let Err(e) = r { break e },
                }
            };
            tracing::warn!(error = %lost, "the job queue connection was lost; reconnecting");
        }
    }
}

use crate::jobs::{idempotency_key, meeting_key, meeting_ref_of_key, served, transition};
use chrono::{DateTime, Duration as CDuration, Utc};
use meetbot_core::TenantId;
use meetbot_core::config::SchedulerConfig;
use meetbot_core::model::{BotJob, BotJobState, Meeting, MeetingStatus, TenantStatus};
use meetbot_queue::{BotEvent, EventKind, JOB_MESSAGE_VERSION, JobMessage, JobQueue};
use meetbot_store::{JobFilter, Store, StoreError, Versioned};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// Whether this copy of a meeting asks for a bot (and a bot could join it).
fn wants_bot(m: &Meeting) -> bool {
    m.wants_bot && m.status != MeetingStatus::Cancelled && m.join_url.is_some() && !m.all_day
}

/// Timing and identity of one scheduler replica.
#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    pub lead: Duration,
    pub grace: Duration,
    pub tick: Duration,
    pub lease: Duration,
    /// Unique per replica; names it in the tenant leases.
    pub replica: String,
}

impl SchedulerSettings {
    pub fn from_config(c: &SchedulerConfig) -> Self {
        SchedulerSettings {
            lead: Duration::from_secs(c.lead_seconds),
            grace: Duration::from_secs(c.grace_seconds),
            tick: Duration::from_millis(c.tick_ms),
            lease: Duration::from_secs(c.lease_seconds),
            replica: format!("scheduler-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub tenants: u64,
    pub armed: u64,
    pub rearmed: u64,
    pub withdrawn: u64,
    pub dispatched: u64,
    pub republished: u64,
    pub skipped: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

struct Metrics {
    jobs: Family<Outcome, Counter>,
    lateness: Histogram,
    passes: Counter,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    queue: Arc<dyn JobQueue>,
    s: SchedulerSettings,
    /// Tenants whose lease this replica holds, with how far it has read their meeting changes.
    cursors: Mutex<HashMap<TenantId, Cursor>>,
    /// When this replica last took or renewed each tenant's lease. Renewal is a durable write, so
    /// it happens only once a third of the lease has run out, not on every tick.
    renewed: Mutex<HashMap<TenantId, std::time::Instant>>,
    metrics: Metrics,
}

/// Changes stamped up to this long before the previous scan started are read again: a change is
/// stamped when written but visible only once committed, and writers' clocks may differ a little.
const CURSOR_OVERLAP: CDuration = CDuration::seconds(5);

/// How far one replica has read a tenant's meeting changes.
#[derive(Default)]
struct Cursor {
    /// When the previous scan started (`None`: never scanned, read everything).
    scanned_at: Option<DateTime<Utc>>,
    /// Meetings handled within the overlap window, with the version (`updated_at`) handled, so a
    /// re-read of an unchanged meeting costs nothing.
    seen: HashMap<String, DateTime<Utc>>,
}

fn lease_name(t: &TenantId) -> String {
    format!("scheduler/{t}")
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn JobQueue>, s: SchedulerSettings) -> Self {
        let metrics = Metrics {
            jobs: Family::default(),
            lateness: Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            passes: Counter::default(),
        };
        Scheduler {
            store,
            queue,
            s,
            cursors: Mutex::new(HashMap::new()),
            renewed: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    pub fn settings(&self) -> &SchedulerSettings {
        &self.s
    }

    pub fn register_metrics(&self, r: &mut Registry) {
        r.register(
            "meetbot_scheduler_jobs",
            "Bot jobs by scheduler outcome",
            self.metrics.jobs.clone(),
        );
        r.register(
            "meetbot_scheduler_dispatch_lateness_seconds",
            "Dispatch time minus planned join time",
            self.metrics.lateness.clone(),
        );
        r.register(
            "meetbot_scheduler_passes",
            "Scheduler passes",
            self.metrics.passes.clone(),
        );
    }

    fn count(&self, outcome: &'static str) {
        self.metrics.jobs.get_or_create(&Outcome { outcome }).inc();
    }

    /// Runs a pass every tick until `shutdown` resolves, then releases this replica's leases.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.s.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    match self.pass(Utc::now()).await {
                        Ok(r) if r != PassReport { tenants: r.tenants, ..Default::default() } => {
                            tracing::info!(armed = r.armed, rearmed = r.rearmed, withdrawn = r.withdrawn, dispatched = r.dispatched,
                                republished = r.republished, skipped = r.skipped, errors = r.errors, "scheduler pass");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "scheduler pass failed"),
                    }
                }
            }
        }
        self.release_leases().await;
    }

    /// Gives up every tenant lease this replica holds, so another replica takes over at once.
    pub async fn release_leases(&self) {
        self.renewed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let held: Vec<TenantId> = self
            .cursors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(t, _)| t)
            .collect();
        for t in held {
            let _ = self
                .store
                .release_lease(&lease_name(&t), &self.s.replica)
                .await;
        }
    }

    /// Whether this replica holds `t`'s lease now, taking or renewing it when a third of it has
    /// run out. Between renewals the lease is valid for at least two thirds of its length.
    async fn hold_lease(&self, t: &TenantId) -> Result<bool, StoreError> {
        let fresh = self
            .renewed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(t)
            .is_some_and(|at| at.elapsed() < self.s.lease / 3);
        if fresh {
            return Ok(true);
        }
        let started = std::time::Instant::now();
        let held = self
            .store
            .try_lease(&lease_name(t), &self.s.replica, self.s.lease)
            .await?;
        let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        if held {
            renewed.insert(t.clone(), started);
        } else {
            renewed.remove(t);
        }
        Ok(held)
    }

    /// One pass over every tenant whose lease this replica holds or can take.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<PassReport, StoreError> {
        self.metrics.passes.inc();
        let mut r = PassReport::default();
        for tenant in self.store.list_tenants().await? {
            if tenant.status != TenantStatus::Active {
                continue;
            }
            let t = tenant.id;
            if !self.hold_lease(&t).await? {
                // Another replica has it; if this one had it before, its cursor is stale now.
                self.cursors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&t);
                continue;
            }
            r.tenants += 1;
            if let Err(e) = self.arm(&t, &mut r).await {
                r.errors += 1;
                tracing::warn!(tenant = %t, error = %e, "arming failed");
                continue;
            }
            if let Err(e) = self.dispatch(&t, now, &mut r).await {
                r.errors += 1;
                tracing::warn!(tenant = %t, error = %e, "dispatching failed");
            }
        }
        Ok(r)
    }

    async fn arm(&self, t: &TenantId, r: &mut PassReport) -> Result<(), StoreError> {
        let scan_started = Utc::now();
        let (since, mut seen) = {
            let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
            let c = cursors.entry(t.clone()).or_default();
            (
                c.scanned_at
                    .and_then(|at| at.checked_sub_signed(CURSOR_OVERLAP)),
                std::mem::take(&mut c.seen),
            )
        };
        let changed = self.store.meetings_updated_since(t, since).await?;
        let mut result = Ok(());
        for m in &changed {
            if seen.get(&m.id) == Some(&m.updated_at) {
                continue;
            }
            if let Err(e) = self.reconcile(t, m, r).await {
                result = Err(e);
                break;
            }
            seen.insert(m.id.clone(), m.updated_at);
        }
        if let Some(horizon) = scan_started.checked_sub_signed(CURSOR_OVERLAP) {
            seen.retain(|_, at| *at >= horizon);
        }
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        let c = cursors.entry(t.clone()).or_default();
        c.seen = seen;
        if result.is_ok() {
            // Only a complete scan moves the cursor; after a failure the next pass reads again.
            c.scanned_at = Some(scan_started);
        }
        result
    }

    /// Brings the jobs of one meeting in line with the meeting: of the one copy, or of every
    /// copy of the meeting in the tenant's calendars when it has a `meeting_ref`.
    async fn reconcile(
        &self,
        t: &TenantId,
        m: &Meeting,
        r: &mut PassReport,
    ) -> Result<(), StoreError> {
        // A copy that moved to another meeting (its link or invitation changed, or it lost its
        // link) withdraws the job it held there; that meeting's other copies are then brought
        // in line too.
        let mut todo = match m.meeting_ref.clone() {
            Some(first) => vec![first],
            None => self.reconcile_copy(t, m, r).await?,
        };
        let mut done = Vec::new();
        while let Some(mref) = todo.pop() {
            if done.contains(&mref) || done.len() >= 8 {
                continue;
            }
            let others = self.reconcile_group(t, m, &mref, r).await?;
            done.push(mref);
            todo.extend(others);
        }
        Ok(())
    }

    /// One bot for all copies of meeting `mref`: armed while any copy wants one, at the time of
    /// the copy its provider changed last, held by one copy; returns the other meetings whose
    /// jobs it withdrew. `m` is the copy that changed (it may have left `mref`).
    async fn reconcile_group(
        &self,
        t: &TenantId,
        m: &Meeting,
        mref: &str,
        r: &mut PassReport,
    ) -> Result<Vec<String>, StoreError> {
        let mut copies = self.store.meetings_with_ref(t, mref).await?;
        copies.retain(|c| c.deleted_at.is_none());
        let mut holders: Vec<&str> = copies.iter().map(|c| c.id.as_str()).collect();
        if m.meeting_ref.as_deref() == Some(mref) && !holders.contains(&m.id.as_str()) {
            holders.push(&m.id);
        }
        let mut jobs = Vec::new();
        for id in &holders {
            jobs.extend(
                self.store
                    .find_bot_jobs(t, &JobFilter::of_meeting(id))
                    .await?,
            );
        }
        // The time every calendar will agree on: that of the copy changed last at its provider
        // (a reschedule seen by one calendar before another), cancelled copies aside unless
        // every copy is cancelled.
        let newest = copies
            .iter()
            .filter(|c| c.status != MeetingStatus::Cancelled)
            .max_by_key(|c| (c.source_updated_at.unwrap_or(c.updated_at), c.updated_at));
        let wanted = copies.iter().any(wants_bot);
        let desired = match newest {
            Some(n) if wanted => Some((meeting_key(t, mref, n.starts_at), n.starts_at)),
            _ => None,
        };
        let mut others = Vec::new();
        for j in &jobs {
            let live = matches!(
                j.value.state,
                BotJobState::Scheduled | BotJobState::Dispatched | BotJobState::Launched
            );
            let key = j.value.idempotency_key.as_str();
            if live && desired.as_ref().map(|d| d.0.as_str()) != Some(key) {
                let reason = if desired.is_some() {
                    "meeting moved"
                } else {
                    "meeting cancelled or no longer wants a bot"
                };
                if self.withdraw(t, j, reason).await? {
                    r.withdrawn += 1;
                }
                if let Some(other) = meeting_ref_of_key(t, key)
                    && other != mref
                {
                    others.push(other.to_string());
                }
            }
        }
        if jobs.iter().any(|j| served(&j.value.state)) {
            return Ok(others); // a meeting already served is never armed again
        }
        let Some((key, starts_at)) = desired else {
            return Ok(others);
        };
        let join_at = starts_at - CDuration::from_std(self.s.lead).unwrap_or_default();
        // The job keeps its holder while that copy is one of the meeting's; a new job (the
        // meeting moved) stays with the holder of the last one while it wants a bot; only the
        // first job goes to the wanting copy with the smallest id.
        let wanting: Vec<&str> = copies
            .iter()
            .filter(|c| wants_bot(c))
            .map(|c| c.id.as_str())
            .collect();
        let holder = jobs
            .iter()
            .max_by_key(|j| j.value.history.last().map(|h| h.at))
            .map(|j| j.value.meeting_id.as_str())
            .filter(|id| wanting.contains(id))
            .or_else(|| wanting.iter().min().copied())
            .unwrap_or(m.id.as_str());
        let existing = match jobs.iter().find(|j| j.value.idempotency_key == key) {
            Some(j) => Some(j.clone()),
            None => self
                .store
                .find_bot_jobs(
                    t,
                    &JobFilter {
                        idempotency_key: Some(key.clone()),
                        ..Default::default()
                    },
                )
                .await?
                .into_iter()
                .next(),
        };
        // A cancelled job re-armed for a meeting its holder has left gets a new holder.
        let holder = match &existing {
            Some(e) if holders.contains(&e.value.meeting_id.as_str()) => e.value.meeting_id.clone(),
            _ => holder.to_string(),
        };
        self.arm_job(t, existing.as_ref(), &holder, key, join_at, r)
            .await?;
        Ok(others)
    }

    /// Arms the job with `key` for `holder` at `join_at`: inserts it, or re-arms `existing`
    /// (the job with that key) if it was cancelled; a served or live one stays as it is.
    async fn arm_job(
        &self,
        t: &TenantId,
        existing: Option<&Versioned<BotJob>>,
        holder: &str,
        key: String,
        join_at: DateTime<Utc>,
        r: &mut PassReport,
    ) -> Result<(), StoreError> {
        if let Some(existing) = existing {
            if existing.value.state == BotJobState::Cancelled {
                let mut job = existing.value.clone();
                job.join_at = join_at;
                job.meeting_id = holder.to_string();
                if transition(&mut job, BotJobState::Scheduled, Utc::now()).is_ok() {
                    let span = meetbot_core::meeting_span!(
                        "scheduler.arm", t, holder, job = %job.id, rearmed = true
                    );
                    match self
                        .store
                        .update_bot_job(t, &job, existing.version)
                        .instrument(span)
                        .await
                    {
                        Ok(_) => {
                            r.rearmed += 1;
                            self.count("rearmed");
                        }
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            return Ok(());
        }
        let job = BotJob::scheduled(holder, key, join_at);
        let span = meetbot_core::meeting_span!("scheduler.arm", t, holder, job = %job.id);
        match self.store.insert_bot_job(t, &job).instrument(span).await {
            Ok(_) => {
                r.armed += 1;
                self.count("armed");
                Ok(())
            }
            // Another replica armed the same key first: that is the one job.
            Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Brings the jobs of one copy that stands alone in line with it; returns the meetings
    /// whose shared job it withdrew (it held one before it lost its link).
    async fn reconcile_copy(
        &self,
        t: &TenantId,
        m: &Meeting,
        r: &mut PassReport,
    ) -> Result<Vec<String>, StoreError> {
        let jobs = self
            .store
            .find_bot_jobs(t, &JobFilter::of_meeting(&m.id))
            .await?;
        let wants = wants_bot(m);
        let desired = wants.then(|| idempotency_key(t, &m.event_instance_id, m.starts_at));
        let mut others = Vec::new();
        for j in &jobs {
            let live = matches!(
                j.value.state,
                BotJobState::Scheduled | BotJobState::Dispatched | BotJobState::Launched
            );
            if live && desired.as_deref() != Some(j.value.idempotency_key.as_str()) {
                let reason = if wants {
                    "meeting moved"
                } else {
                    "meeting cancelled or no longer wants a bot"
                };
                if self.withdraw(t, j, reason).await? {
                    r.withdrawn += 1;
                }
                if let Some(other) = meeting_ref_of_key(t, &j.value.idempotency_key) {
                    others.push(other.to_string());
                }
            }
        }
        if jobs.iter().any(|j| served(&j.value.state)) {
            return Ok(others); // a meeting already served is never armed again
        }
        let Some(key) = desired else {
            return Ok(others);
        };
        let join_at = m.starts_at - CDuration::from_std(self.s.lead).unwrap_or_default();
        let existing = jobs.iter().find(|j| j.value.idempotency_key == key);
        self.arm_job(t, existing, &m.id, key, join_at, r).await?;
        Ok(others)
    }

    /// Cancels a live job; if it was already handed to the queue, tells launchers to stop it.
    async fn withdraw(
        &self,
        t: &TenantId,
        j: &Versioned<BotJob>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut job = j.value.clone();
        let was = job.state.clone();
        if transition(&mut job, BotJobState::Cancelled, Utc::now()).is_err() {
            return Ok(false);
        }
        let span = meetbot_core::meeting_span!(
            "scheduler.withdraw", t, &job.meeting_id, job = %job.id, was = was.name()
        );
        match self
            .store
            .update_bot_job(t, &job, j.version)
            .instrument(span)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.count("withdrawn");
        if was != BotJobState::Scheduled {
            let ev = BotEvent {
                v: JOB_MESSAGE_VERSION,
                job_id: job.id.clone(),
                tenant_id: t.clone(),
                meeting_id: job.meeting_id.clone(),
                kind: EventKind::Withdrawn(reason.to_string()),
                at: Utc::now(),
            };
            if let Err(e) = self.queue.publish_event(&ev).await {
                // The job is cancelled in the store, which is what a launcher checks before
                // launching; a running bot learns it at its next state check.
                tracing::warn!(job = %job.id, error = %e, "withdrawal event not published");
            }
        }
        Ok(true)
    }

    async fn dispatch(
        &self,
        t: &TenantId,
        now: DateTime<Utc>,
        r: &mut PassReport,
    ) -> Result<(), StoreError> {
        // Dispatched before a crash or a broker outage, never confirmed: publish again.
        let pending: Vec<Versioned<BotJob>> = self
            .store
            .find_bot_jobs(
                t,
                &JobFilter {
                    state: Some("dispatched"),
                    ..Default::default()
                },
            )
            .await?
            .into_iter()
            .filter(|j| j.value.published_at.is_none())
            .collect();
        r.republished += self.publish(t, pending).await?;

        let due = self
            .store
            .find_bot_jobs(
                t,
                &JobFilter {
                    state: Some("scheduled"),
                    join_before: Some(now + CDuration::milliseconds(1)),
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await?;
        let grace = CDuration::from_std(self.s.grace).unwrap_or_default();
        let mut dispatched = Vec::with_capacity(due.len());
        for j in due {
            let mut job = j.value.clone();
            let late = now - job.join_at;
            let skip = late > grace;
            let to = if skip {
                BotJobState::Skipped(format!(
                    "late by {} s (grace {} s)",
                    late.num_seconds(),
                    grace.num_seconds()
                ))
            } else {
                BotJobState::Dispatched
            };
            if transition(&mut job, to, now).is_err() {
                continue;
            }
            // The compare-and-set is what makes this replica the only one to dispatch the job.
            let version = match self.store.update_bot_job(t, &job, j.version).await {
                Ok(v) => v,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            };
            if skip {
                r.skipped += 1;
                self.count("skipped");
            } else {
                self.count("dispatched");
                dispatched.push(Versioned {
                    value: job,
                    version,
                });
            }
        }
        r.dispatched += self.publish(t, dispatched).await?;
        Ok(())
    }

    /// Publishes dispatched jobs (confirms awaited together) and records each confirm. Returns
    /// how many were confirmed; unconfirmed jobs stay dispatched-unconfirmed and are published
    /// again on a later pass.
    async fn publish(&self, t: &TenantId, jobs: Vec<Versioned<BotJob>>) -> Result<u64, StoreError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let msgs: Vec<JobMessage> = jobs
            .iter()
            .map(|j| JobMessage {
                v: JOB_MESSAGE_VERSION,
                job_id: j.value.id.clone(),
                tenant_id: t.clone(),
                meeting_id: j.value.meeting_id.clone(),
                idempotency_key: j.value.idempotency_key.clone(),
                join_at: j.value.join_at,
                dispatched_at: now,
            })
            .collect();
        if let Err(e) = self.queue.publish_jobs(&msgs).await {
            tracing::warn!(tenant = %t, jobs = msgs.len(), error = %e, "jobs not confirmed by the queue; will publish again");
            return Ok(0);
        }
        let mut confirmed = 0;
        for j in jobs {
            let mut job = j.value;
            self.metrics
                .lateness
                .observe(((now - job.join_at).num_milliseconds().max(0) as f64) / 1000.0);
            job.published_at = Some(now);
            let span = meetbot_core::meeting_span!(
                "scheduler.dispatch", t, &job.meeting_id, job = %job.id,
                late_ms = (now - job.join_at).num_milliseconds().max(0)
            );
            match self
                .store
                .update_bot_job(t, &job, j.version)
                .instrument(span)
                .await
            {
                // A conflict means a consumer already moved the job on: it was delivered.
                Ok(_) | Err(StoreError::Conflict { .. }) => confirmed += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(confirmed)
    }
}

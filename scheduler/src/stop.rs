//! Stop means stop: a person makes a bot leave (`POST /v1/bots/{id}/leave`) or deletes its
//! meeting. The job moves to `stopped` (with who did it; the history entry says when) by
//! compare-and-set from any live state, the joined one included, and launchers are told to stop
//! its bot with a `withdrawn` event. The bot also watches its job and leaves by itself; the
//! transcriber and the outbox read the same state and keep and send nothing of the meeting.

use crate::jobs::{live, transition};
use chrono::Utc;
use meetbot_core::TenantId;
use meetbot_core::model::{BotJob, BotJobState};
use meetbot_queue::{BotEvent, EventKind, JobQueue};
use meetbot_store::{JobFilter, Store, StoreError};

/// What became of one stop request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Stopped now, from the state it was in.
    Now { was: &'static str, job: Box<BotJob> },
    /// Someone had stopped it already.
    Already(Box<BotJob>),
    /// The job had ended (done, failed, skipped, cancelled): nothing runs to stop.
    Ended(Box<BotJob>),
    /// No such job in that tenant.
    Unknown,
}

/// Stops job `job_id` of tenant `t` on behalf of `actor` (`user:<id>`, `key:<id>`), then tells
/// launchers through `queue` (when there is one: without it the bot still finds its job
/// stopped at its next look). Retries on a concurrent change.
pub async fn stop_job(
    store: &dyn Store,
    queue: Option<&dyn JobQueue>,
    t: &TenantId,
    job_id: &str,
    actor: &str,
    reason: &str,
) -> Result<Stopped, StoreError> {
    loop {
        let Some(cur) = store.get_bot_job(t, job_id).await? else {
            return Ok(Stopped::Unknown);
        };
        if matches!(cur.value.state, BotJobState::Stopped(_)) {
            return Ok(Stopped::Already(Box::new(cur.value)));
        }
        if !live(&cur.value.state) {
            return Ok(Stopped::Ended(Box::new(cur.value)));
        }
        let was = cur.value.state.name();
        let mut job = cur.value.clone();
        if transition(
            &mut job,
            BotJobState::Stopped(actor.to_string()),
            Utc::now(),
        )
        .is_err()
        {
            return Ok(Stopped::Ended(Box::new(cur.value)));
        }
        match store.update_bot_job(t, &job, cur.version).await {
            Ok(_) => {}
            // The consumer, the bot or the scheduler moved it meanwhile: look again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
        tracing::info!(tenant = %t, job = %job.id, was, "bot job stopped");
        if was != "scheduled"
            && let Some(q) = queue
        {
            let ev = BotEvent::new(
                t.clone(),
                job.id.clone(),
                job.meeting_id.clone(),
                EventKind::Withdrawn(reason.to_string()),
            );
            if let Err(e) = q.publish_event(&ev).await {
                // The job is stopped in the store: the bot sees it at its next look (about a
                // second), the launcher's watch forgets it.
                tracing::warn!(job = %job.id, error = %e, "stop event not published");
            }
        }
        return Ok(Stopped::Now {
            was,
            job: Box::new(job),
        });
    }
}

/// Stops every live job of meeting `meeting_id` (its deletion). Returns how many were stopped.
pub async fn stop_meeting(
    store: &dyn Store,
    queue: Option<&dyn JobQueue>,
    t: &TenantId,
    meeting_id: &str,
    actor: &str,
    reason: &str,
) -> Result<u32, StoreError> {
    let jobs = store
        .find_bot_jobs(t, &JobFilter::of_meeting(meeting_id))
        .await?;
    let mut n = 0;
    for j in jobs.iter().filter(|j| live(&j.value.state)) {
        if let Stopped::Now { .. } = stop_job(store, queue, t, &j.value.id, actor, reason).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// Why nothing of meeting `meeting_id` may be kept or sent any more, if so: the meeting is
/// deleted, or a person stopped one of its bots. (A meeting erased for good has no record;
/// callers holding a job id treat a missing job as erased.)
pub async fn meeting_stopped(
    store: &dyn Store,
    t: &TenantId,
    meeting_id: &str,
) -> Result<Option<&'static str>, StoreError> {
    if let Some(m) = store.get_meeting(t, meeting_id).await?
        && m.deleted_at.is_some()
    {
        return Ok(Some("the meeting was deleted"));
    }
    let jobs = store
        .find_bot_jobs(t, &JobFilter::of_meeting(meeting_id))
        .await?;
    if jobs
        .iter()
        .any(|j| matches!(j.value.state, BotJobState::Stopped(_)))
    {
        return Ok(Some("a person stopped the meeting's bot"));
    }
    Ok(None)
}

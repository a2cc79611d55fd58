//! The consumer side of exactly-once: before launching a bot for a delivered job, a consumer
//! claims the job in the store. Only a claim that moves the job from `dispatched` to `launched`
//! launches; a redelivered or duplicated message finds the job already past that and is acked.

use crate::jobs::transition;
use chrono::Utc;
use meetbot_core::model::{BotJob, BotJobState};
use meetbot_queue::JobMessage;
use meetbot_store::{Store, StoreError, Versioned};

#[derive(Debug, PartialEq)]
pub enum Claim {
    /// This consumer won: the job is now `launched`; start its bot, then ack.
    Launch(Box<Versioned<BotJob>>),
    /// Already launched (or finished) by someone: ack without launching.
    Duplicate(&'static str),
    /// The scheduler withdrew the job (or re-armed it for later): ack without launching.
    Withdrawn,
    /// No such job in that tenant: dead-letter the message.
    Unknown,
}

/// Claims the job named by `msg` for launching.
pub async fn claim(store: &dyn Store, msg: &JobMessage) -> Result<Claim, StoreError> {
    loop {
        let Some(current) = store.get_bot_job(&msg.tenant_id, &msg.job_id).await? else {
            return Ok(Claim::Unknown);
        };
        match &current.value.state {
            BotJobState::Dispatched => {
                let mut job = current.value.clone();
                if transition(&mut job, BotJobState::Launched, Utc::now()).is_err() {
                    return Ok(Claim::Duplicate(current.value.state.name()));
                }
                match store
                    .update_bot_job(&msg.tenant_id, &job, current.version)
                    .await
                {
                    Ok(version) => {
                        return Ok(Claim::Launch(Box::new(Versioned {
                            value: job,
                            version,
                        })));
                    }
                    // Someone else moved it meanwhile: look again.
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            BotJobState::Scheduled | BotJobState::Cancelled | BotJobState::Stopped(_) => {
                return Ok(Claim::Withdrawn);
            }
            other => return Ok(Claim::Duplicate(other.name())),
        }
    }
}

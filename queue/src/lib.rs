//! The `JobQueue` seam: bot jobs from the scheduler to bot launchers, and bot lifecycle events.
//!
//! * Messages are versioned JSON ([`JobMessage`], [`BotEvent`]) carrying the job id; consumers are
//!   expected to be idempotent by job id (the job's state in the store decides, not the message).
//! * A message that cannot be decoded (bad JSON, unknown version) never reaches the consumer: the
//!   stream dead-letters it with a reason and moves on.
//! * Implementations: [`RabbitQueue`] (lapin; quorum queue with delivery limit, dead-letter
//!   exchange, publisher confirms, manual acks, prefetch 1) and [`InProcessQueue`] (`meetbot dev`).
//!   Both pass `tests/tests/queue_conformance.rs`.

mod inprocess;
mod message;
mod rabbit;

pub use inprocess::InProcessQueue;
pub use message::{
    BotEvent, EventKind, JOB_MESSAGE_VERSION, JobMessage, Poison, decode_event, decode_job,
};
pub use rabbit::{RabbitQueue, Topology};

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach {server}: {detail}")]
    Unavailable { server: String, detail: String },
    #[error("the broker refused the message (nack) for {0}")]
    Nacked(String),
    #[error("queue error: {0}")]
    Other(String),
}

/// A message that went to the dead-letter queue, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub payload: Vec<u8>,
    pub reason: String,
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Which broker (no credentials).
    fn describe(&self) -> String;

    /// Publishes a job and returns once the broker has confirmed it.
    async fn publish_job(&self, job: &JobMessage) -> Result<(), QueueError>;

    /// Publishes several jobs and returns once the broker has confirmed all of them. Confirms are
    /// awaited together, so this is much faster than one `publish_job` per job. On failure some
    /// may have been delivered: callers publish them again, consumers deduplicate by job id.
    async fn publish_jobs(&self, jobs: &[JobMessage]) -> Result<(), QueueError> {
        for j in jobs {
            self.publish_job(j).await?;
        }
        Ok(())
    }

    /// Publishes a lifecycle event (confirmed).
    async fn publish_event(&self, ev: &BotEvent) -> Result<(), QueueError>;

    /// A competing consumer of bot jobs, one job in flight at a time.
    async fn consume_jobs(&self) -> Result<Box<dyn JobStream>, QueueError>;

    /// A subscriber that sees every lifecycle event published from now on.
    async fn subscribe_events(&self) -> Result<Box<dyn EventStream>, QueueError>;

    /// Takes up to `max` messages off the dead-letter queue (for operators and tests).
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Readiness: the broker answers.
    async fn check(&self) -> Result<(), QueueError>;
}

#[async_trait]
pub trait JobStream: Send {
    /// The next decodable job. Poison messages are dead-lettered with a reason on the way.
    async fn next(&mut self) -> Result<JobDelivery, QueueError>;
}

#[async_trait]
pub trait EventStream: Send {
    async fn next(&mut self) -> Result<BotEvent, QueueError>;
}

/// How a delivery is settled.
#[async_trait]
pub trait Settle: Send {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Back to the queue for another consumer (counts towards the delivery limit).
    async fn requeue(self: Box<Self>) -> Result<(), QueueError>;
    /// Straight to the dead-letter queue with a reason.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError>;
}

/// One delivered job. Dropping it unsettled hands it back to the broker when the consumer goes.
pub struct JobDelivery {
    pub job: JobMessage,
    /// The broker delivered it before (to this or another consumer).
    pub redelivered: bool,
    settle: Box<dyn Settle>,
}

impl JobDelivery {
    pub fn new(job: JobMessage, redelivered: bool, settle: Box<dyn Settle>) -> Self {
        JobDelivery {
            job,
            redelivered,
            settle,
        }
    }

    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    pub async fn requeue(self) -> Result<(), QueueError> {
        self.settle.requeue().await
    }

    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        self.settle.dead_letter(reason).await
    }
}

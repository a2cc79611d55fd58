//! The `BotLauncher` seam: starts one bot per claimed job, reports how it is doing, stops it when
//! the job is withdrawn. Implementations: [`crate::kubernetes::KubernetesLauncher`] (one batch/v1
//! Job per meeting) and [`crate::local::LocalProcessLauncher`] (`meetbot bot` child processes).
//!
//! Every implementation is idempotent by job id: launching a job whose bot exists starts no second
//! bot, which is what makes a redelivered job message harmless.

use crate::ticket::EncodedTicket;
use async_trait::async_trait;
use meetbot_core::TenantId;
use std::time::Duration;

/// What a bot is started with: ids for labels and limits, and its ticket, which is all the bot
/// gets (decision 0032): no store, key-vault or broker credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    pub tenant: TenantId,
    pub job_id: String,
    pub meeting_id: String,
    /// Hard limit on the bot's life (Kubernetes `activeDeadlineSeconds`).
    pub max_duration: Duration,
    /// The bot's ticket ([`crate::ticket`]), handed to it as `MEETBOT_BOT_TICKET`.
    pub ticket: EncodedTicket,
}

/// A launched bot's condition, as its launcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BotRun {
    /// Created, not yet running (pod scheduling, image pull, process exec).
    Starting,
    Running,
    /// Exited successfully (the bot left the meeting by its rules).
    Succeeded,
    /// Did not start, crashed, was killed or ran past its deadline; the reason says which.
    Failed(String),
    /// This launcher has no bot for the job (never launched, stopped, or cleaned up).
    NotFound,
}

impl BotRun {
    pub fn is_finished(&self) -> bool {
        matches!(self, BotRun::Succeeded | BotRun::Failed(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("all {0} bot slots are in use; the job waits for a free one")]
    AtCapacity(usize),
    /// Permanent: the platform refused the bot (bad template, quota, forbidden).
    #[error("the platform refused to start the bot: {0}")]
    Refused(String),
    /// Transient: the platform could not be reached; retry.
    #[error("the bot platform is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait BotLauncher: Send + Sync {
    /// Where bots run, for logs and `/readyz` (no credentials).
    fn describe(&self) -> String;

    /// Starts the bot for `spec` unless one exists for its job (then `Ok` without a second one).
    /// A finished bot of the same job is replaced by a new one (a relaunch).
    async fn launch(&self, spec: &LaunchSpec) -> Result<(), LaunchError>;

    async fn state(&self, job_id: &str) -> Result<BotRun, LaunchError>;

    /// Stops the job's bot and forgets it; `Ok(false)` when there was none.
    async fn stop(&self, job_id: &str) -> Result<bool, LaunchError>;

    /// Bots started and not finished.
    async fn active(&self) -> Result<usize, LaunchError>;

    /// Returns when a new bot could be started now (a local launcher waits for a free slot).
    async fn ready_for_one(&self) {}
}

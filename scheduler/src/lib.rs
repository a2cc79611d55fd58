//! The scheduler: turns meetings that want a bot into bot jobs, each exactly once, and publishes
//! each job at join time minus a lead.
//!
//! * [`jobs`]: the job state machine (scheduled -> dispatched -> launched -> joined -> done |
//!   failed | skipped | cancelled; any live state -> stopped by a person) and the idempotency
//!   key (tenant + event instance + start).
//! * [`stop`]: a person stops a bot (or deletes its meeting): the job is stopped by
//!   compare-and-set with who did it, and launchers are told to stop its bot.
//! * [`Scheduler`]: one pass per tick, per tenant it holds the lease for: arm jobs for meetings
//!   changed since its last pass, withdraw jobs of cancelled or moved meetings, dispatch due jobs.
//! * [`gate`]: what a job consumer calls before launching: decides launch / duplicate / withdrawn
//!   from the job's state in the store, so redelivered messages never launch a second bot.
//!
//! Exactly once = compare-and-set on the job record (only one replica's transition wins) +
//! publisher confirms + consumers idempotent by job id.

pub mod gate;
pub mod jobs;
mod scheduler;
pub mod stop;

pub use scheduler::{PassReport, Scheduler, SchedulerSettings};

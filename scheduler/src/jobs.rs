//! The bot job state machine.

use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{BotJob, BotJobState, StateChange};

/// The idempotency key of the job for one meeting instance at one start time.
pub fn idempotency_key(tenant: &TenantId, event_instance_id: &str, start: DateTime<Utc>) -> String {
    format!("{tenant}:{event_instance_id}:{}", start.timestamp())
}

/// The idempotency key of the one job for a meeting whichever calendars hold a copy of it
/// (`Meeting::meeting_ref`), at one start time.
pub fn meeting_key(tenant: &TenantId, meeting_ref: &str, start: DateTime<Utc>) -> String {
    format!("{tenant}:m:{meeting_ref}:{}", start.timestamp())
}

/// The meeting reference of a key made by [`meeting_key`].
pub fn meeting_ref_of_key<'a>(tenant: &TenantId, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(tenant.as_str())?.strip_prefix(":m:")?;
    rest.rsplit_once(':').map(|(r, _)| r)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bot job cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub from: &'static str,
    pub to: &'static str,
}

/// Whether the state machine allows `from -> to`.
pub fn allowed(from: &BotJobState, to: &BotJobState) -> bool {
    use BotJobState::*;
    matches!(
        (from, to),
        (Scheduled, Dispatched | Skipped(_) | Cancelled)
            | (Dispatched, Launched | Failed(_) | Cancelled)
            | (Launched, Joined | Done | Failed(_) | Cancelled)
            | (Joined, Done | Failed(_))
            // A withdrawn job whose meeting moved back to the same start is armed again.
            | (Cancelled, Scheduled)
            // A person stops a bot from any live state, in the call too; nothing leaves it.
            | (Scheduled | Dispatched | Launched | Joined, Stopped(_))
    )
}

/// A job whose bot may be on its way or in the meeting.
pub fn live(state: &BotJobState) -> bool {
    use BotJobState::*;
    matches!(state, Scheduled | Dispatched | Launched | Joined)
}

/// Moves `job` to `to` at `at`, recording the change in its history.
pub fn transition(
    job: &mut BotJob,
    to: BotJobState,
    at: DateTime<Utc>,
) -> Result<(), InvalidTransition> {
    if !allowed(&job.state, &to) {
        return Err(InvalidTransition {
            from: job.state.name(),
            to: to.name(),
        });
    }
    job.history.push(StateChange {
        state: to.clone(),
        at,
    });
    job.state = to;
    if job.state == BotJobState::Scheduled {
        job.published_at = None;
    }
    Ok(())
}

/// A job that reached the meeting, or that a person stopped: its meeting is served and is never
/// armed again.
pub fn served(state: &BotJobState) -> bool {
    matches!(
        state,
        BotJobState::Joined | BotJobState::Done | BotJobState::Stopped(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meeting_key_names_the_meeting_and_the_start_not_the_copy() {
        let t: TenantId = "tenant1".parse().unwrap();
        let at = Utc::now();
        let k = meeting_key(&t, "abc", at);
        assert_eq!(meeting_ref_of_key(&t, &k), Some("abc"));
        assert_ne!(
            k,
            meeting_key(&t, "abc", at + chrono::Duration::minutes(30))
        );
        assert_eq!(
            meeting_ref_of_key(&t, &idempotency_key(&t, "ev-1", at)),
            None
        );
        let other: TenantId = "tenant2".parse().unwrap();
        assert_eq!(meeting_ref_of_key(&other, &k), None);
    }

    fn job() -> BotJob {
        BotJob {
            id: "j".into(),
            meeting_id: "m".into(),
            idempotency_key: "k".into(),
            join_at: Utc::now(),
            state: BotJobState::Scheduled,
            history: vec![],
            published_at: None,
            bot_rules: None,
            ticket: None,
        }
    }

    #[test]
    fn happy_path_is_recorded_with_timestamps() {
        let mut j = job();
        for s in [
            BotJobState::Dispatched,
            BotJobState::Launched,
            BotJobState::Joined,
            BotJobState::Done,
        ] {
            transition(&mut j, s, Utc::now()).unwrap();
        }
        let names: Vec<&str> = j.history.iter().map(|h| h.state.name()).collect();
        assert_eq!(names, ["dispatched", "launched", "joined", "done"]);
    }

    #[test]
    fn terminal_states_do_not_move_and_served_jobs_are_never_rescheduled() {
        for terminal in [
            BotJobState::Done,
            BotJobState::Failed("x".into()),
            BotJobState::Skipped("late".into()),
        ] {
            for to in [
                BotJobState::Scheduled,
                BotJobState::Dispatched,
                BotJobState::Cancelled,
            ] {
                assert!(!allowed(&terminal, &to), "{terminal:?} -> {to:?}");
            }
        }
        assert!(
            !allowed(&BotJobState::Joined, &BotJobState::Cancelled),
            "a bot in the call is not withdrawn by the scheduler (a person stops it)"
        );
        assert!(!allowed(&BotJobState::Dispatched, &BotJobState::Scheduled));
        assert!(allowed(&BotJobState::Cancelled, &BotJobState::Scheduled));
    }

    #[test]
    fn a_joined_bot_can_be_stopped_and_a_stopped_job_never_moves_again() {
        let by = || BotJobState::Stopped("user:u1".into());
        for live_state in [
            BotJobState::Scheduled,
            BotJobState::Dispatched,
            BotJobState::Launched,
            BotJobState::Joined,
        ] {
            assert!(allowed(&live_state, &by()), "{live_state:?} -> stopped");
            assert!(live(&live_state));
        }
        let mut j = job();
        for s in [
            BotJobState::Dispatched,
            BotJobState::Launched,
            BotJobState::Joined,
        ] {
            transition(&mut j, s, Utc::now()).unwrap();
        }
        transition(&mut j, by(), Utc::now()).unwrap();
        assert_eq!(j.state, by());
        assert_eq!(j.history.last().unwrap().state, by(), "who and when");
        for to in [
            BotJobState::Scheduled,
            BotJobState::Dispatched,
            BotJobState::Launched,
            BotJobState::Joined,
            BotJobState::Done,
            BotJobState::Failed("x".into()),
            BotJobState::Cancelled,
            BotJobState::Stopped("user:u2".into()),
        ] {
            assert!(
                transition(&mut j, to.clone(), Utc::now()).is_err(),
                "{to:?}"
            );
        }
        assert!(served(&j.state), "a stopped meeting is never armed again");
        for terminal in [
            BotJobState::Done,
            BotJobState::Failed("x".into()),
            BotJobState::Skipped("late".into()),
            BotJobState::Cancelled,
        ] {
            assert!(!allowed(&terminal, &by()), "{terminal:?}");
        }
    }

    #[test]
    fn idempotency_key_changes_with_the_start_time() {
        let t: TenantId = "tenant01".parse().unwrap();
        let s = Utc::now();
        assert_eq!(idempotency_key(&t, "e1", s), idempotency_key(&t, "e1", s));
        assert_ne!(
            idempotency_key(&t, "e1", s),
            idempotency_key(&t, "e1", s + chrono::Duration::minutes(5))
        );
    }
}

use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use serde::{Deserialize, Serialize};

/// Version of [`JobMessage`] and [`BotEvent`] this build writes and reads.
pub const JOB_MESSAGE_VERSION: u32 = 1;

/// "Launch a bot for this job." The job's state in the tenant store is the truth; the message
/// only says where to look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    pub v: u32,
    pub job_id: String,
    pub tenant_id: TenantId,
    pub meeting_id: String,
    pub idempotency_key: String,
    pub join_at: DateTime<Utc>,
    pub dispatched_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum EventKind {
    Queued,
    Joining,
    WaitingRoom,
    InCall,
    Recording,
    Leaving,
    Done,
    Failed(String),
    /// The scheduler withdrew the job (meeting cancelled or moved): stop its bot if one runs.
    Withdrawn(String),
}

impl EventKind {
    /// Routing key suffix on the events exchange.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Queued => "queued",
            EventKind::Joining => "joining",
            EventKind::WaitingRoom => "waiting_room",
            EventKind::InCall => "in_call",
            EventKind::Recording => "recording",
            EventKind::Leaving => "leaving",
            EventKind::Done => "done",
            EventKind::Failed(_) => "failed",
            EventKind::Withdrawn(_) => "withdrawn",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotEvent {
    pub v: u32,
    pub job_id: String,
    pub tenant_id: TenantId,
    pub meeting_id: String,
    #[serde(flatten)]
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    // No page pictures: a meeting page shows names, faces and chat, and events travel
    // unsealed through the broker (decision 0031). An older bot's `screenshots` are dropped
    // when its event is decoded.
}

impl BotEvent {
    /// A current-version event about `job_id`, stamped now.
    pub fn new(tenant_id: TenantId, job_id: String, meeting_id: String, kind: EventKind) -> Self {
        BotEvent {
            v: JOB_MESSAGE_VERSION,
            job_id,
            tenant_id,
            meeting_id,
            kind,
            at: Utc::now(),
        }
    }
}

/// Why a message could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    #[error("not JSON: {0}")]
    BadJson(String),
    #[error("unknown message version {0:?} (this build reads v{JOB_MESSAGE_VERSION})")]
    UnknownVersion(Option<u64>),
    #[error("bad message: {0}")]
    BadShape(String),
}

fn version_of(bytes: &[u8]) -> Result<serde_json::Value, Poison> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Poison::BadJson(e.to_string()))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(JOB_MESSAGE_VERSION) => Ok(value),
        other => Err(Poison::UnknownVersion(other)),
    }
}

/// Decodes a job message; every failure is a [`Poison`] reason, never a panic.
pub fn decode_job(bytes: &[u8]) -> Result<JobMessage, Poison> {
    let value = version_of(bytes)?;
    serde_json::from_value(value).map_err(|e| Poison::BadShape(e.to_string()))
}

pub fn decode_event(bytes: &[u8]) -> Result<BotEvent, Poison> {
    let value = version_of(bytes)?;
    serde_json::from_value(value).map_err(|e| Poison::BadShape(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A JPEG's first bytes as base64 (`FF D8 FF E0 00 10 4A 46 49 46`).
    const JPEG_B64: &str = "/9j/4AAQSkZJRg";

    #[test]
    fn a_failure_event_as_published_holds_no_page_pictures_in_plaintext() {
        let ev = BotEvent::new(
            "tenant0001".parse().unwrap(),
            "job-1".into(),
            "m-1".into(),
            EventKind::Failed("denied entry: the host denied entry".into()),
        );
        let plain = serde_json::to_vec(&ev).unwrap();
        assert_eq!(decode_event(&plain).unwrap(), ev);
        // An older bot's failure event with a page picture: decoded (and so re-published or
        // kept by any consumer) without it.
        let mut older: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        older["screenshots"] = serde_json::json!([
            {"step": "join", "at": Utc::now(), "jpeg_base64": JPEG_B64}
        ]);
        let decoded = decode_event(&serde_json::to_vec(&older).unwrap()).unwrap();
        assert_eq!(decoded, ev);
        let again = serde_json::to_vec(&decoded).unwrap();
        for needle in [JPEG_B64.as_bytes(), &[0xff, 0xd8, 0xff][..], b"screenshots"] {
            assert!(
                !again.windows(needle.len()).any(|w| w == needle),
                "{needle:?} in a published event"
            );
        }
    }

    fn job() -> JobMessage {
        JobMessage {
            v: 1,
            job_id: "j1".into(),
            tenant_id: "tenant01".parse().unwrap(),
            meeting_id: "m1".into(),
            idempotency_key: "tenant01:evt:1700000000".into(),
            join_at: Utc::now(),
            dispatched_at: Utc::now(),
        }
    }

    #[test]
    fn job_message_round_trips() {
        let j = job();
        assert_eq!(decode_job(&serde_json::to_vec(&j).unwrap()).unwrap(), j);
    }

    #[test]
    fn bad_json_unknown_version_and_bad_shape_are_told_apart() {
        assert!(matches!(decode_job(b"{not json"), Err(Poison::BadJson(_))));
        let mut v = serde_json::to_value(job()).unwrap();
        v["v"] = 2.into();
        assert_eq!(
            decode_job(&serde_json::to_vec(&v).unwrap()),
            Err(Poison::UnknownVersion(Some(2)))
        );
        assert_eq!(
            decode_job(b"{\"job_id\":\"x\"}"),
            Err(Poison::UnknownVersion(None))
        );
        assert!(matches!(
            decode_job(b"{\"v\":1,\"job_id\":\"x\"}"),
            Err(Poison::BadShape(_))
        ));
        let mut v = serde_json::to_value(job()).unwrap();
        v["tenant_id"] = "../../etc".into();
        assert!(matches!(
            decode_job(&serde_json::to_vec(&v).unwrap()),
            Err(Poison::BadShape(_))
        ));
    }

    #[test]
    fn events_round_trip_with_reasons() {
        let e = BotEvent {
            v: 1,
            job_id: "j".into(),
            tenant_id: "tenant01".parse().unwrap(),
            meeting_id: "m".into(),
            kind: EventKind::Withdrawn("meeting cancelled".into()),
            at: Utc::now(),
        };
        assert_eq!(decode_event(&serde_json::to_vec(&e).unwrap()).unwrap(), e);
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_job(&bytes);
            let _ = decode_event(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_json_shaped_input(s in "\\{\"v\":[0-9]{1,3}(,\"[a-z_]{1,12}\":(\"[^\"]{0,20}\"|[0-9]{1,5}|null))*\\}") {
            let _ = decode_job(s.as_bytes());
            let _ = decode_event(s.as_bytes());
        }
    }
}

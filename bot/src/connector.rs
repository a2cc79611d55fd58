//! The `MeetingConnector` seam: how a bot gets into a meeting and what comes out of it.
//!
//! A connector joins under a display name and then reports, on one channel, the meeting's
//! lifecycle ([`Signal`]: lobby, admitted, denied, participants joining and leaving, ended) and
//! every participant's audio as separate streams of Opus RTP payloads ([`AudioPacket`], keyed by
//! participant and SSRC). Janus (WebRTC, [`crate::janus`]) implements it; a browser connector for
//! Google Meet, Teams and Zoom fits the same shape (a page's per-participant tracks, its lobby
//! and "meeting ended" screens).

use async_trait::async_trait;
use std::time::Instant;
use tokio::sync::mpsc;

/// One RTP packet of one participant's Opus audio, as received (never decoded or stored here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioPacket {
    /// The connector's id of the participant (Janus feed id, a meeting's participant id).
    pub participant: String,
    pub ssrc: u32,
    pub sequence: u16,
    /// RTP timestamp (48 kHz clock for Opus).
    pub timestamp: u32,
    pub payload: Vec<u8>,
    pub received_at: Instant,
}

/// What happens in the meeting, as the connector sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Held in a waiting room / lobby.
    Lobby,
    /// In the meeting.
    Admitted,
    /// Refused entry (the reason as the platform gave it).
    Denied(String),
    ParticipantJoined {
        id: String,
        display: Option<String>,
    },
    ParticipantLeft {
        id: String,
    },
    /// The meeting is over for the bot (ended, room destroyed, kicked).
    Ended(String),
    /// The connector itself failed mid-meeting (its browser crashed or hung): the session
    /// fails and the job is retried per the launcher's policy.
    Lost(String),
}

/// A picture of the meeting page at one step, kept in memory only (for failure events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screenshot {
    pub step: String,
    pub jpeg: Vec<u8>,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorEvent {
    Signal(Signal),
    Audio(AudioPacket),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The meeting does not exist (room unknown, link expired).
    #[error("the meeting does not exist: {0}")]
    NoSuchMeeting(String),
    /// The platform refused the bot (wrong pin, full, forbidden).
    #[error("the meeting refused the bot: {0}")]
    Refused(String),
    #[error("cannot reach the meeting platform: {0}")]
    Unreachable(String),
    #[error("media negotiation failed: {0}")]
    Media(String),
    /// The connection to the meeting broke mid-meeting (the meeting client crashed or hung).
    #[error("the meeting client failed: {0}")]
    Lost(String),
}

/// A joined meeting.
#[async_trait]
pub trait Joined: Send {
    /// Posts a chat message where the platform has a chat; `Ok(false)` where it has none.
    async fn post_chat(&mut self, text: &str) -> Result<bool, ConnectError>;
    /// Leaves the meeting and releases its media.
    async fn leave(self: Box<Self>);
}

#[async_trait]
pub trait MeetingConnector: Send + Sync {
    /// The platform this connector speaks to (for logs and reasons).
    fn platform(&self) -> &'static str;

    /// Pictures of the last steps (browser connectors), for a failure event; none by default.
    fn screenshots(&self) -> Vec<Screenshot> {
        Vec::new()
    }

    /// Joins as `display_name`. Events go to `events` until the meeting ends or the bot leaves;
    /// audio that does not fit (the receiver is too slow) is dropped and counted, never queued
    /// without bound.
    async fn join(
        &self,
        display_name: &str,
        events: mpsc::Sender<ConnectorEvent>,
    ) -> Result<Box<dyn Joined>, ConnectError>;
}

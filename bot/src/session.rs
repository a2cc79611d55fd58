//! A bot's time in a meeting: the leave rules (waiting room, alone, silence, maximum duration),
//! the lifecycle it reports (joining, waiting_room, in_call, recording, leaving, done/failed),
//! and the loop that drives a [`MeetingConnector`] until a rule, the meeting or a stop ends it.
//!
//! The rules are a pure state machine ([`Rules`] + [`SessionClock`]) fed with signals, audio
//! levels and the time, so each is tested without a meeting; [`run_session`] wires it to a
//! connector.

use crate::audio_stream::Outgoing;
use crate::connector::{AudioPacket, ConnectError, ConnectorEvent, MeetingConnector, Signal};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// When a bot leaves on its own. Each is configurable per tenant and per job.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Held in a waiting room / lobby longer than this: give up.
    pub waiting_room_timeout: Duration,
    /// No other participant for this long (after the last one left, or since joining an empty
    /// meeting): leave.
    pub alone_timeout: Duration,
    /// No one has spoken for this long: leave.
    pub silence_timeout: Duration,
    /// Never stay longer than this.
    pub max_duration: Duration,
    /// RMS level (16-bit PCM) above which a 20 ms frame counts as speech.
    pub speech_level: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            waiting_room_timeout: Duration::from_secs(900),
            alone_timeout: Duration::from_secs(60),
            silence_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(4 * 3600),
            speech_level: 200.0,
        }
    }
}

/// Why a bot left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    WaitingRoomTimeout,
    Alone,
    Silence,
    MaxDuration,
    /// The meeting ended (host ended it, room destroyed, bot removed).
    Ended(String),
    /// Refused at the door.
    Denied(String),
    /// The job was withdrawn or the process told to stop.
    Stopped,
    /// The meeting client failed (browser crashed or hung): the session fails, the job is
    /// retried.
    Lost(String),
}

impl LeaveReason {
    /// Whether the job counts as done (vs failed) when the bot leaves for this reason.
    pub fn is_success(&self) -> bool {
        !matches!(
            self,
            LeaveReason::Denied(_) | LeaveReason::WaitingRoomTimeout | LeaveReason::Lost(_)
        )
    }

    pub fn describe(&self) -> String {
        match self {
            LeaveReason::WaitingRoomTimeout => {
                "waiting room timeout: nobody admitted the bot".into()
            }
            LeaveReason::Alone => "alone: every other participant left".into(),
            LeaveReason::Silence => "silence: nobody spoke for the silence timeout".into(),
            LeaveReason::MaxDuration => "max duration reached".into(),
            LeaveReason::Ended(r) => format!("meeting ended: {r}"),
            LeaveReason::Denied(r) => format!("denied entry: {r}"),
            LeaveReason::Stopped => "stopped: job withdrawn".into(),
            LeaveReason::Lost(r) => format!("meeting client failed: {r}"),
        }
    }
}

/// What the bot reports as it goes (published as bot lifecycle events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Joining,
    WaitingRoom,
    InCall,
    /// First audio received.
    Recording,
    Leaving(LeaveReason),
}

/// The rules' view of one session.
#[derive(Debug)]
pub struct SessionClock {
    rules: Rules,
    joined_at: Instant,
    lobby_since: Option<Instant>,
    admitted: bool,
    others: HashSet<String>,
    alone_since: Option<Instant>,
    last_speech: Instant,
    recording: bool,
}

impl SessionClock {
    pub fn new(rules: Rules, now: Instant) -> Self {
        SessionClock {
            rules,
            joined_at: now,
            lobby_since: None,
            admitted: false,
            others: HashSet::new(),
            alone_since: None,
            last_speech: now,
            recording: false,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Applies a connector signal; returns what to report and whether to leave.
    pub fn signal(&mut self, s: &Signal, now: Instant) -> (Option<Lifecycle>, Option<LeaveReason>) {
        match s {
            Signal::Lobby => {
                self.lobby_since.get_or_insert(now);
                (Some(Lifecycle::WaitingRoom), None)
            }
            Signal::Admitted => {
                self.lobby_since = None;
                self.admitted = true;
                self.last_speech = now;
                if self.others.is_empty() {
                    self.alone_since = Some(now);
                }
                (Some(Lifecycle::InCall), None)
            }
            Signal::Denied(r) => (None, Some(LeaveReason::Denied(r.clone()))),
            Signal::ParticipantJoined { id, .. } => {
                self.others.insert(id.clone());
                self.alone_since = None;
                (None, None)
            }
            Signal::ParticipantLeft { id } => {
                self.others.remove(id);
                if self.others.is_empty() && self.admitted {
                    self.alone_since = Some(now);
                }
                (None, None)
            }
            Signal::Ended(r) => (None, Some(LeaveReason::Ended(r.clone()))),
            Signal::Lost(r) => (None, Some(LeaveReason::Lost(r.clone()))),
        }
    }

    /// Records one decoded 20 ms frame's level; returns `Recording` for the first audio.
    pub fn audio(&mut self, rms: f64, now: Instant) -> Option<Lifecycle> {
        if rms > self.rules.speech_level {
            self.last_speech = now;
        }
        if !self.recording {
            self.recording = true;
            return Some(Lifecycle::Recording);
        }
        None
    }

    /// Whether a rule says to leave now.
    pub fn due(&self, now: Instant) -> Option<LeaveReason> {
        let r = &self.rules;
        if now.duration_since(self.joined_at) >= r.max_duration {
            return Some(LeaveReason::MaxDuration);
        }
        if let Some(since) = self.lobby_since
            && now.duration_since(since) >= r.waiting_room_timeout
        {
            return Some(LeaveReason::WaitingRoomTimeout);
        }
        if !self.admitted {
            return None;
        }
        if let Some(since) = self.alone_since
            && now.duration_since(since) >= r.alone_timeout
        {
            return Some(LeaveReason::Alone);
        }
        if now.duration_since(self.last_speech) >= r.silence_timeout {
            return Some(LeaveReason::Silence);
        }
        None
    }
}

/// RMS of a PCM frame.
pub fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / pcm.len() as f64).sqrt()
}

/// Per-participant Opus decoders, only to measure speech for the silence rule; the audio
/// itself goes on as Opus. Malformed packets are counted and skipped.
#[derive(Default)]
pub struct LevelMeter {
    decoders: HashMap<String, opus::Decoder>,
    buf: Vec<i16>,
    pub malformed: u64,
}

impl LevelMeter {
    /// The level of `p`, or `None` when it does not decode.
    pub fn level(&mut self, p: &AudioPacket) -> Option<f64> {
        if self.buf.is_empty() {
            self.buf = vec![0; 5760];
        }
        let dec = match self.decoders.entry(p.participant.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match opus::Decoder::new(48_000, opus::Channels::Mono) {
                    Ok(d) => v.insert(d),
                    Err(_) => return None,
                }
            }
        };
        match dec.decode(&p.payload, &mut self.buf, false) {
            Ok(n) => Some(rms(&self.buf[..n])),
            Err(_) => {
                self.malformed += 1;
                None
            }
        }
    }
}

/// What the transcriber hears of a signal: a participant's display name (cut to the frame's
/// 128 bytes at a character boundary) or their leaving.
fn outgoing(s: &Signal) -> Option<Outgoing> {
    match s {
        Signal::ParticipantJoined {
            id,
            display: Some(d),
        } => {
            let d = d.trim();
            let mut end = d.len().min(crate::audio_frame::MAX_NAME);
            while !d.is_char_boundary(end) {
                end -= 1;
            }
            (end > 0 && !id.is_empty() && id.len() <= crate::audio_frame::MAX_PARTICIPANT).then(
                || Outgoing::ParticipantNamed {
                    participant: id.clone(),
                    name: d[..end].to_string(),
                },
            )
        }
        Signal::ParticipantLeft { id }
            if !id.is_empty() && id.len() <= crate::audio_frame::MAX_PARTICIPANT =>
        {
            Some(Outgoing::ParticipantLeft(id.clone()))
        }
        _ => None,
    }
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reason: LeaveReason,
    pub packets: u64,
    pub malformed: u64,
}

/// Joins through `connector`, reports lifecycle on `report`, forwards every audio packet to
/// `audio` (the transcriber stream) with the participants' display names as the meeting shows
/// them and their leaving, and leaves when a rule, the meeting or `stop` says so.
/// The chat notice is posted where the platform has a chat.
pub async fn run_session(
    connector: &dyn MeetingConnector,
    display_name: &str,
    chat_notice: &str,
    rules: Rules,
    report: mpsc::Sender<Lifecycle>,
    audio: mpsc::Sender<Outgoing>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Outcome, ConnectError> {
    let _ = report.send(Lifecycle::Joining).await;
    let (tx, mut rx) = mpsc::channel(4096);
    let mut joined = connector.join(display_name, tx).await?;
    if !chat_notice.is_empty() {
        match joined.post_chat(chat_notice).await {
            Ok(posted) => tracing::info!(posted, "recording notice"),
            Err(e) => tracing::warn!(error = %e, "recording notice not posted"),
        }
    }
    let mut clock = SessionClock::new(rules, Instant::now());
    let mut meter = LevelMeter::default();
    let mut packets = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tokio::pin!(stop);
    let reason = loop {
        tokio::select! {
            _ = &mut stop => break LeaveReason::Stopped,
            _ = tick.tick() => {
                if let Some(r) = clock.due(Instant::now()) { break r; }
            }
            ev = rx.recv() => match ev {
                None => break LeaveReason::Ended("connection to the meeting lost".into()),
                Some(ConnectorEvent::Signal(s)) => {
                    let (life, leave) = clock.signal(&s, Instant::now());
                    if let Some(o) = outgoing(&s)
                        && audio.send(o).await.is_err()
                    {
                        break LeaveReason::Ended("the audio stream closed".into());
                    }
                    if let Some(l) = life { let _ = report.send(l).await; }
                    if let Some(r) = leave { break r; }
                }
                Some(ConnectorEvent::Audio(p)) => {
                    packets += 1;
                    if let Some(level) = meter.level(&p)
                        && let Some(l) = clock.audio(level, Instant::now())
                    {
                        let _ = report.send(l).await;
                    }
                    if audio.send(Outgoing::Audio(p)).await.is_err() {
                        break LeaveReason::Ended("the audio stream closed".into());
                    }
                }
            }
        }
    };
    let _ = report.send(Lifecycle::Leaving(reason.clone())).await;
    joined.leave().await;
    if let LeaveReason::Lost(r) = reason {
        return Err(ConnectError::Lost(r));
    }
    Ok(Outcome {
        reason,
        packets,
        malformed: meter.malformed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            waiting_room_timeout: Duration::from_secs(900),
            alone_timeout: Duration::from_secs(60),
            silence_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(4 * 3600),
            speech_level: 200.0,
        }
    }

    fn join(id: &str) -> Signal {
        Signal::ParticipantJoined {
            id: id.into(),
            display: None,
        }
    }

    #[test]
    fn display_names_go_to_the_transcriber_cut_at_a_character_boundary() {
        let named = |id: &str, d: &str| {
            outgoing(&Signal::ParticipantJoined {
                id: id.into(),
                display: Some(d.into()),
            })
        };
        assert_eq!(
            named("7", " Dr. Okafor "),
            Some(Outgoing::ParticipantNamed {
                participant: "7".into(),
                name: "Dr. Okafor".into()
            })
        );
        let long = "é".repeat(100);
        match named("7", &long) {
            Some(Outgoing::ParticipantNamed { name, .. }) => {
                assert_eq!(name.len(), 128);
                assert!(long.starts_with(&name));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(named("7", "   "), None);
        assert_eq!(named(&"x".repeat(65), "Ann"), None);
        assert_eq!(outgoing(&join("a")), None, "no name, nothing to say");
        assert_eq!(
            outgoing(&Signal::ParticipantLeft { id: "a".into() }),
            Some(Outgoing::ParticipantLeft("a".into()))
        );
        assert_eq!(outgoing(&Signal::Admitted), None);
    }

    #[test]
    fn waiting_room_gives_up_after_its_timeout_and_admission_cancels_it() {
        let t0 = Instant::now();
        let mut c = SessionClock::new(rules(), t0);
        assert_eq!(c.signal(&Signal::Lobby, t0).0, Some(Lifecycle::WaitingRoom));
        assert_eq!(c.due(t0 + Duration::from_secs(899)), None);
        assert_eq!(
            c.due(t0 + Duration::from_secs(900)),
            Some(LeaveReason::WaitingRoomTimeout)
        );
        let mut c = SessionClock::new(rules(), t0);
        c.signal(&Signal::Lobby, t0);
        c.signal(&join("a"), t0);
        assert_eq!(
            c.signal(&Signal::Admitted, t0 + Duration::from_secs(100)).0,
            Some(Lifecycle::InCall)
        );
        assert_ne!(
            c.due(t0 + Duration::from_secs(1000)),
            Some(LeaveReason::WaitingRoomTimeout)
        );
    }

    #[test]
    fn alone_counts_from_the_last_other_participant_leaving() {
        let t0 = Instant::now();
        let mut c = SessionClock::new(rules(), t0);
        c.signal(&Signal::Admitted, t0);
        c.signal(&join("a"), t0);
        c.signal(&join("b"), t0);
        let s = |x| t0 + Duration::from_secs(x);
        c.signal(&Signal::ParticipantLeft { id: "a".into() }, s(10));
        c.audio(1000.0, s(10));
        assert_eq!(c.due(s(100)), None, "b is still there");
        c.signal(&Signal::ParticipantLeft { id: "b".into() }, s(100));
        assert_eq!(c.due(s(159)), None);
        assert_eq!(c.due(s(160)), Some(LeaveReason::Alone));
        // Someone coming back resets it.
        c.signal(&join("c"), s(150));
        assert_eq!(c.due(s(160)), None);
    }

    #[test]
    fn an_empty_meeting_counts_as_alone_from_admission() {
        let t0 = Instant::now();
        let mut c = SessionClock::new(rules(), t0);
        c.signal(&Signal::Admitted, t0);
        assert_eq!(
            c.due(t0 + Duration::from_secs(60)),
            Some(LeaveReason::Alone)
        );
    }

    #[test]
    fn silence_is_measured_from_the_last_speech_not_the_last_packet() {
        let t0 = Instant::now();
        let mut c = SessionClock::new(rules(), t0);
        c.signal(&Signal::Admitted, t0);
        c.signal(&join("a"), t0);
        let s = |x| t0 + Duration::from_secs(x);
        assert_eq!(c.audio(5000.0, s(1)), Some(Lifecycle::Recording));
        assert_eq!(c.audio(5000.0, s(2)), None);
        for x in 3..700 {
            c.audio(10.0, s(x)); // packets keep coming, nobody speaks
        }
        assert_eq!(c.due(s(601)), None);
        assert_eq!(c.due(s(602)), Some(LeaveReason::Silence));
    }

    #[test]
    fn max_duration_wins_over_everything_and_end_and_denial_leave_at_once() {
        let t0 = Instant::now();
        let mut c = SessionClock::new(rules(), t0);
        c.signal(&Signal::Lobby, t0);
        assert_eq!(
            c.due(t0 + Duration::from_secs(4 * 3600)),
            Some(LeaveReason::MaxDuration)
        );
        assert_eq!(
            c.signal(&Signal::Ended("room destroyed".into()), t0).1,
            Some(LeaveReason::Ended("room destroyed".into()))
        );
        assert_eq!(
            c.signal(&Signal::Denied("host refused".into()), t0).1,
            Some(LeaveReason::Denied("host refused".into()))
        );
        assert!(!LeaveReason::Denied("x".into()).is_success());
        assert!(LeaveReason::Alone.is_success());
    }

    #[test]
    fn malformed_opus_is_counted_not_fatal() {
        let mut m = LevelMeter::default();
        let p = |payload: Vec<u8>| AudioPacket {
            participant: "a".into(),
            ssrc: 1,
            sequence: 1,
            timestamp: 0,
            payload,
            received_at: Instant::now(),
        };
        // A TOC byte announcing a frame count the packet does not hold.
        assert_eq!(m.level(&p(vec![0x03, 0xff])), None);
        assert_eq!(m.malformed, 1);
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut out = vec![0u8; 400];
        let n = enc.encode(&[0i16; 960], &mut out).unwrap();
        assert!(
            m.level(&p(out[..n].to_vec())).unwrap() < 1.0,
            "silence decodes to silence"
        );
    }
}

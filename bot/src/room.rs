//! meetbot's own WebRTC room: a small server that hosts rooms whose participants are voices
//! (the `meetbot dev` demo: a three-speaker conversation spoken by espeak-ng), and the
//! [`RoomConnector`] that joins them. No third-party platform speaks this protocol; it exists so
//! one machine can show a bot join a real WebRTC meeting with nothing else installed.
//!
//! Protocol (JSON over HTTP; the server offers, as a Janus subscriber is offered):
//! * `POST {room}/participants {"display"}` -> 201 `{"id", "offer", "participants": [{"id",
//!   "display"}]}`: the offer has one send-only Opus track per voice, its stream id the voice's
//!   participant id; ICE is gathered (no trickle). 404: no such room.
//! * `POST {room}/participants/{id}/answer {"type": "answer", "sdp"}` -> 204.
//! * `GET {room}/participants/{id}/events` -> newline-delimited JSON, one object a line:
//!   `{"left": id}` when a voice is done, `{"ended": reason}` when the room closes.
//! * `DELETE {room}/participants/{id}` -> 204: leaves.
//!
//! A listener hears the whole conversation from its start, once its connection is up: each
//! voice's track carries 20 ms Opus packets, silence between its lines, so every track's clock
//! runs with the meeting's. Audio is made and kept in memory only.

use crate::connector::{ConnectError, ConnectorEvent, Joined, MeetingConnector, Signal};
use crate::janus::{GatherDone, forward_track, gathered_description, peer_connection};
use async_trait::async_trait;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// Samples of one 20 ms frame at 48 kHz.
const FRAME: usize = 960;

/// A participant as the join answer lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub display: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub display: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinAnswer {
    pub id: String,
    pub offer: RTCSessionDescription,
    pub participants: Vec<Participant>,
}

/// One line of the events stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEvent {
    Left(String),
    Ended(String),
}

/// What cannot be made into a room.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(
        "cannot run espeak-ng ({0}); install it (Debian: apt-get install espeak-ng) to hear the demo room"
    )]
    Espeak(String),
    #[error("espeak-ng gave no usable audio: {0}")]
    Audio(String),
    #[error("Opus encoder: {0}")]
    Opus(String),
    #[error("a conversation needs at least one voice and one line; line {0} names no voice")]
    Script(usize),
}

/// A voice of a conversation: its participant id, display name and espeak-ng voice.
#[derive(Clone, Debug)]
pub struct Voice {
    pub id: String,
    pub display: String,
    pub espeak_voice: String,
}

/// A conversation: voices and who says what, in order.
#[derive(Clone, Debug)]
pub struct Script {
    pub voices: Vec<Voice>,
    /// (index into `voices`, text)
    pub lines: Vec<(usize, String)>,
    /// Silence before each line.
    pub pause: Duration,
}

impl Script {
    /// The built-in demo: a clinic's weekly operations meeting, with decisions and owned action
    /// items for the summary to find.
    pub fn demo() -> Script {
        let v = |id: &str, display: &str, voice: &str| Voice {
            id: id.into(),
            display: display.into(),
            espeak_voice: voice.into(),
        };
        let lines = [
            (
                0,
                "Good morning everyone. This is the weekly operations meeting for the clinic.",
            ),
            (
                1,
                "The new patient portal is ready. We decided to launch it on the first of next month.",
            ),
            (
                2,
                "The front desk needs a short training before the launch.",
            ),
            (0, "Okay. I will write the training guide by Friday."),
            (
                1,
                "I will send the launch announcement to all patients next week.",
            ),
            (
                2,
                "I'll check the appointment reminders with the vendor tomorrow.",
            ),
            (0, "Great. Thank you all, see you next week."),
        ];
        Script {
            voices: vec![
                v("Alex", "Alex (clinic manager)", "en-us"),
                v("Sam", "Sam (IT)", "en-gb"),
                v("Jordan", "Jordan (front desk)", "en-us+m3"),
            ],
            lines: lines.iter().map(|(i, t)| (*i, t.to_string())).collect(),
            pause: Duration::from_millis(600),
        }
    }
}

/// A conversation spoken and encoded: per 20 ms tick, which voice talks and its Opus packet.
pub struct Rendered {
    voices: Vec<Participant>,
    /// (voice index, packet) per tick; ticks of nobody talking are `None`.
    ticks: Vec<Option<(usize, Vec<u8>)>>,
    silence: Vec<u8>,
}

impl Rendered {
    /// Speaks every line with espeak-ng and encodes it as 20 ms Opus frames.
    pub fn speak(script: &Script) -> Result<Rendered, RoomError> {
        if script.voices.is_empty() || script.lines.is_empty() {
            return Err(RoomError::Script(0));
        }
        let opus = |e: opus::Error| RoomError::Opus(e.to_string());
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(opus)?;
        let silence = enc.encode_vec(&[0i16; FRAME], 1500).map_err(opus)?;
        let pause = (script.pause.as_millis() / 20) as usize;
        let mut ticks = Vec::new();
        for (n, (who, text)) in script.lines.iter().enumerate() {
            let voice = script.voices.get(*who).ok_or(RoomError::Script(n + 1))?;
            ticks.extend(std::iter::repeat_n(None, pause));
            let pcm = espeak(text, &voice.espeak_voice)?;
            for f in pcm.chunks(FRAME) {
                let mut frame = [0i16; FRAME];
                frame[..f.len()].copy_from_slice(f);
                ticks.push(Some((*who, enc.encode_vec(&frame, 1500).map_err(opus)?)));
            }
        }
        ticks.extend(std::iter::repeat_n(None, pause));
        Ok(Rendered {
            voices: script
                .voices
                .iter()
                .map(|v| Participant {
                    id: v.id.clone(),
                    display: v.display.clone(),
                })
                .collect(),
            ticks,
            silence,
        })
    }

    /// How long the conversation plays.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(20 * self.ticks.len() as u64)
    }
}

/// `text` spoken by espeak-ng in `voice`, as 48 kHz mono PCM (in memory: espeak-ng writes its
/// WAV to a pipe).
pub fn espeak(text: &str, voice: &str) -> Result<Vec<i16>, RoomError> {
    let out = std::process::Command::new("espeak-ng")
        .args(["--stdout", "-s", "150", "-v", voice, text])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| RoomError::Espeak(e.to_string()))?;
    if !out.status.success() {
        return Err(RoomError::Espeak(format!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let (rate, pcm) = wav_pcm(&out.stdout).ok_or_else(|| {
        RoomError::Audio(format!(
            "{} bytes that are not 16-bit WAV",
            out.stdout.len()
        ))
    })?;
    Ok(resample(&pcm, rate, 48_000))
}

/// Sample rate and samples of a 16-bit mono WAV (espeak-ng's stdout form, whose sizes may be
/// unset). `None` for anything else.
pub fn wav_pcm(wav: &[u8]) -> Option<(u32, Vec<i16>)> {
    if wav.len() < 44 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return None;
    }
    let rate = u32::from_le_bytes(wav[24..28].try_into().ok()?);
    let bits = u16::from_le_bytes(wav[34..36].try_into().ok()?);
    if bits != 16 || rate == 0 || rate > 384_000 {
        return None;
    }
    let data = wav[12..].windows(4).position(|w| w == b"data")? + 12 + 8;
    let pcm = wav
        .get(data..)?
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    Some((rate, pcm))
}

/// Linear resampling of 16-bit PCM.
pub fn resample(pcm: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || pcm.is_empty() {
        return pcm.to_vec();
    }
    let n = (pcm.len() as u64 * to as u64 / from as u64) as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 * from as f64 / to as f64;
            let j = x as usize;
            let f = x - j as f64;
            let a = *pcm.get(j).unwrap_or(&0) as f64;
            let b = *pcm.get(j + 1).unwrap_or(&pcm[pcm.len() - 1]) as f64;
            (a + (b - a) * f) as i16
        })
        .collect()
}

struct Member {
    pc: Arc<dyn PeerConnection>,
    events: Option<mpsc::UnboundedReceiver<RoomEvent>>,
    player: tokio::task::JoinHandle<()>,
}

struct Room {
    conversation: Arc<Rendered>,
    members: HashMap<String, Member>,
}

/// Hosts rooms of voices. Serve [`RoomServer::router`] on a listener; rooms are added with
/// [`RoomServer::add_room`].
#[derive(Clone)]
pub struct RoomServer {
    ice_ip: IpAddr,
    rooms: Arc<Mutex<HashMap<String, Room>>>,
    next: Arc<AtomicU64>,
}

impl RoomServer {
    /// A server whose peer connections use only `ice_ip` (no mDNS, no STUN).
    pub fn new(ice_ip: IpAddr) -> RoomServer {
        RoomServer {
            ice_ip,
            rooms: Default::default(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens room `name` playing `conversation` to whoever joins.
    pub fn add_room(&self, name: &str, conversation: Arc<Rendered>) {
        self.rooms().insert(
            name.to_string(),
            Room {
                conversation,
                members: HashMap::new(),
            },
        );
    }

    /// Members currently in room `name`.
    pub fn members(&self, name: &str) -> usize {
        self.rooms().get(name).map_or(0, |r| r.members.len())
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/rooms/{room}/participants", post(join))
            .route("/rooms/{room}/participants/{id}/answer", post(answer))
            .route("/rooms/{room}/participants/{id}/events", get(events))
            .route("/rooms/{room}/participants/{id}", delete(leave))
            .with_state(self.clone())
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({"error": why}))).into_response()
}

/// Starts the conversation once the member's connection is up.
struct MemberHandler {
    gathered: GatherDone,
    connected: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[async_trait]
impl PeerConnectionEventHandler for MemberHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathered.gathering(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected
            && let Some(tx) = self
                .connected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        {
            let _ = tx.send(());
        }
    }
}

fn ssrc() -> u32 {
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_le_bytes(b) | 1
}

/// The payload type an SDP gives Opus (111, webrtc-rs's default, if it names none).
fn opus_payload_type(sdp: &str) -> u8 {
    sdp.lines()
        .find_map(|l| {
            let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("opus/")
                .then(|| pt.parse().ok())?
        })
        .unwrap_or(111)
}

async fn join(
    State(s): State<RoomServer>,
    Path(room): Path<String>,
    body: Result<Json<JoinRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body must be {\"display\": name}",
        );
    };
    if req.display.trim().is_empty() || req.display.len() > 200 {
        return refuse(StatusCode::BAD_REQUEST, "display must be 1 to 200 bytes");
    }
    let Some(conversation) = s.rooms().get(&room).map(|r| r.conversation.clone()) else {
        return refuse(StatusCode::NOT_FOUND, "no such room");
    };
    let id = format!(
        "m{}",
        s.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (gathered, grx) = GatherDone::new();
    let (ctx, crx) = tokio::sync::oneshot::channel();
    let handler = Arc::new(MemberHandler {
        gathered,
        connected: Mutex::new(Some(ctx)),
    });
    let pc = match peer_connection(s.ice_ip, handler).await {
        Ok(pc) => pc,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut tracks = Vec::new();
    for v in &conversation.voices {
        let ssrc = ssrc();
        let track = TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                v.id.clone(),
                format!("{}-audio", v.id),
                format!("{}-audio", v.id),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: RTCRtpCodec {
                        mime_type: MIME_TYPE_OPUS.to_owned(),
                        clock_rate: 48000,
                        channels: 2,
                        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                        rtcp_feedback: vec![],
                    },
                    ..Default::default()
                }],
            ),
        );
        let track = match track {
            Ok(t) => Arc::new(t),
            Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        if let Err(e) = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
        tracks.push((track, ssrc));
    }
    let offer = match pc.create_offer(None).await {
        Ok(o) => o,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if let Err(e) = pc.set_local_description(offer).await {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    let offer = match gathered_description(pc.as_ref(), grx).await.and_then(|v| {
        serde_json::from_value::<RTCSessionDescription>(v)
            .map_err(|e| crate::connector::ConnectError::Media(e.to_string()))
    }) {
        Ok(o) => o,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let pt = opus_payload_type(&offer.sdp);
    let (etx, erx) = mpsc::unbounded_channel();
    let player = {
        let conversation = conversation.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(60), crx)
                .await
                .is_err()
            {
                return;
            }
            play(&conversation, &tracks, pt).await;
            for v in &conversation.voices {
                let _ = etx.send(RoomEvent::Left(v.id.clone()));
            }
            // The tracks stay open (and quiet) until the listener leaves.
            std::future::pending::<()>().await;
        })
    };
    let participants = conversation.voices.clone();
    let mut rooms = s.rooms();
    let Some(r) = rooms.get_mut(&room) else {
        player.abort();
        return refuse(StatusCode::NOT_FOUND, "the room closed");
    };
    r.members.insert(
        id.clone(),
        Member {
            pc,
            events: Some(erx),
            player,
        },
    );
    (
        StatusCode::CREATED,
        Json(JoinAnswer {
            id,
            offer,
            participants,
        }),
    )
        .into_response()
}

/// Plays the conversation on `tracks` (one per voice), one packet per track every 20 ms.
async fn play(c: &Rendered, tracks: &[(Arc<TrackLocalStaticSample>, u32)], pt: u8) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for t in &c.ticks {
        tick.tick().await;
        for (i, (track, ssrc)) in tracks.iter().enumerate() {
            let data = match t {
                Some((who, p)) if *who == i => p,
                _ => &c.silence,
            };
            let sample = rtc::media::Sample {
                data: bytes::Bytes::copy_from_slice(data),
                duration: Duration::from_millis(20),
                ..rtc::media::Sample::new(Instant::now())
            };
            if track
                .sample_writer(*ssrc, pt)
                .write_sample(&sample)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn answer(
    State(s): State<RoomServer>,
    Path((room, id)): Path<(String, String)>,
    body: Result<Json<RTCSessionDescription>, JsonRejection>,
) -> Response {
    let Ok(Json(answer)) = body else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body must be an SDP answer {\"type\": \"answer\", \"sdp\"}",
        );
    };
    let pc = s
        .rooms()
        .get(&room)
        .and_then(|r| r.members.get(&id))
        .map(|m| m.pc.clone());
    let Some(pc) = pc else {
        return refuse(StatusCode::NOT_FOUND, "no such participant");
    };
    match pc.set_remote_description(answer).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, &format!("answer refused: {e}")),
    }
}

async fn events(State(s): State<RoomServer>, Path((room, id)): Path<(String, String)>) -> Response {
    let rx = s
        .rooms()
        .get_mut(&room)
        .and_then(|r| r.members.get_mut(&id))
        .map(|m| m.events.take());
    let rx = match rx {
        None => return refuse(StatusCode::NOT_FOUND, "no such participant"),
        Some(None) => return refuse(StatusCode::CONFLICT, "the events are already followed"),
        Some(Some(rx)) => rx,
    };
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).ok()?;
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}

async fn leave(State(s): State<RoomServer>, Path((room, id)): Path<(String, String)>) -> Response {
    let m = s.rooms().get_mut(&room).and_then(|r| r.members.remove(&id));
    match m {
        Some(m) => {
            m.player.abort();
            let _ = m.pc.close().await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => refuse(StatusCode::NOT_FOUND, "no such participant"),
    }
}

/// Joins rooms of a [`RoomServer`]: the link is the room's URL
/// (`http://<server>/rooms/<name>`).
pub struct RoomConnector {
    room_url: String,
    ice_ip: IpAddr,
    http: reqwest::Client,
    /// Audio packets dropped because the receiver was too slow.
    pub dropped: Arc<AtomicU64>,
}

impl RoomConnector {
    pub fn new(room_url: &str, ice_ip: IpAddr) -> Result<RoomConnector, ConnectError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        Ok(RoomConnector {
            room_url: room_url.trim_end_matches('/').to_string(),
            ice_ip,
            http,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }
}

/// Whether `link` is a room of one of `servers` (base URLs, e.g. `http://127.0.0.1:8095`).
pub fn is_room_link(link: &str, servers: &[String]) -> bool {
    servers.iter().any(|s| {
        let base = s.trim_end_matches('/');
        link.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix("/rooms/"))
            .is_some_and(|name| !name.is_empty() && !name.contains(['/', '?', '#']))
    })
}

/// Labels each track's packets with its stream id (the voice's participant id).
struct Listener {
    gathered: GatherDone,
    events: mpsc::Sender<ConnectorEvent>,
    dropped: Arc<AtomicU64>,
}

#[async_trait]
impl PeerConnectionEventHandler for Listener {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathered.gathering(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let id = track.stream_id().await;
        forward_track(
            track,
            move || id.clone(),
            self.events.clone(),
            self.dropped.clone(),
        );
    }
}

struct InRoom {
    http: reqwest::Client,
    member_url: String,
    pc: Arc<dyn PeerConnection>,
    watcher: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl Joined for InRoom {
    async fn post_chat(&mut self, _text: &str) -> Result<bool, ConnectError> {
        Ok(false)
    }

    async fn leave(self: Box<Self>) {
        self.watcher.abort();
        let _ = self.http.delete(&self.member_url).send().await;
        let _ = self.pc.close().await;
    }
}

fn unreachable(e: reqwest::Error) -> ConnectError {
    ConnectError::Unreachable(if e.is_timeout() {
        "the room server timed out".into()
    } else if e.is_connect() {
        "cannot connect to the room server".into()
    } else {
        "the room server request failed".into()
    })
}

#[async_trait]
impl MeetingConnector for RoomConnector {
    fn platform(&self) -> &'static str {
        "meetbot-room"
    }

    async fn join(
        &self,
        display_name: &str,
        events: mpsc::Sender<ConnectorEvent>,
    ) -> Result<Box<dyn Joined>, ConnectError> {
        let r = self
            .http
            .post(format!("{}/participants", self.room_url))
            .json(&JoinRequest {
                display: display_name.to_string(),
            })
            .send()
            .await
            .map_err(unreachable)?;
        match r.status() {
            StatusCode::CREATED => {}
            StatusCode::NOT_FOUND => {
                return Err(ConnectError::NoSuchMeeting("no such room".into()));
            }
            s => {
                return Err(ConnectError::Refused(format!(
                    "the room server answered {s}"
                )));
            }
        }
        let joined: JoinAnswer = r
            .json()
            .await
            .map_err(|e| ConnectError::Media(format!("the join answer is unreadable: {e}")))?;
        let member_url = format!("{}/participants/{}", self.room_url, joined.id);
        let _ = events.send(ConnectorEvent::Signal(Signal::Admitted)).await;
        for p in &joined.participants {
            let _ = events
                .send(ConnectorEvent::Signal(Signal::ParticipantJoined {
                    id: p.id.clone(),
                    display: Some(p.display.clone()),
                }))
                .await;
        }
        let media = |e: rtc::shared::error::Error| ConnectError::Media(e.to_string());
        let (gathered, grx) = GatherDone::new();
        let pc = peer_connection(
            self.ice_ip,
            Arc::new(Listener {
                gathered,
                events: events.clone(),
                dropped: self.dropped.clone(),
            }),
        )
        .await?;
        let fail = |pc: Arc<dyn PeerConnection>, http: reqwest::Client, url: String| async move {
            let _ = http.delete(url).send().await;
            let _ = pc.close().await;
        };
        let answered = async {
            pc.set_remote_description(joined.offer)
                .await
                .map_err(media)?;
            let answer = pc.create_answer(None).await.map_err(media)?;
            pc.set_local_description(answer).await.map_err(media)?;
            let answer = gathered_description(pc.as_ref(), grx).await?;
            let r = self
                .http
                .post(format!("{member_url}/answer"))
                .json(&answer)
                .send()
                .await
                .map_err(unreachable)?;
            if !r.status().is_success() {
                return Err(ConnectError::Media(format!(
                    "the room server refused the answer ({})",
                    r.status()
                )));
            }
            let ev = self
                .http
                .get(format!("{member_url}/events"))
                .send()
                .await
                .map_err(unreachable)?;
            if !ev.status().is_success() {
                return Err(ConnectError::Refused(format!(
                    "the room's events answered {}",
                    ev.status()
                )));
            }
            Ok(ev)
        }
        .await;
        let stream = match answered {
            Ok(s) => s,
            Err(e) => {
                fail(pc, self.http.clone(), member_url).await;
                return Err(e);
            }
        };
        let watcher = tokio::spawn(async move {
            let mut body = stream.bytes_stream();
            let mut buf = Vec::new();
            let mut why = "the room server closed the connection".to_string();
            'read: while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                buf.extend_from_slice(&chunk);
                if buf.len() > 1 << 16 {
                    why = "the room server sent an oversized event".into();
                    break;
                }
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let signal = match serde_json::from_slice::<RoomEvent>(&line) {
                        Ok(RoomEvent::Left(id)) => Signal::ParticipantLeft { id },
                        Ok(RoomEvent::Ended(reason)) => {
                            why = reason;
                            break 'read;
                        }
                        Err(_) => {
                            tracing::warn!("unreadable room event skipped");
                            continue;
                        }
                    };
                    if events.send(ConnectorEvent::Signal(signal)).await.is_err() {
                        return;
                    }
                }
            }
            let _ = events
                .send(ConnectorEvent::Signal(Signal::Ended(why)))
                .await;
        });
        Ok(Box::new(InRoom {
            http: self.http.clone(),
            member_url,
            pc,
            watcher,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn room_links_are_recognised_only_under_a_configured_server() {
        let servers = vec!["http://127.0.0.1:8095/".to_string()];
        assert!(is_room_link("http://127.0.0.1:8095/rooms/demo-1", &servers));
        assert!(!is_room_link("http://127.0.0.1:8095/rooms/", &servers));
        assert!(!is_room_link("http://127.0.0.1:8095/rooms/a/b", &servers));
        assert!(!is_room_link("http://127.0.0.1:8096/rooms/demo", &servers));
        assert!(!is_room_link(
            "https://meet.google.com/abc-defg-hij",
            &servers
        ));
        assert!(!is_room_link("http://127.0.0.1:8095/rooms/demo", &[]));
    }

    #[test]
    fn a_wav_that_is_not_16_bit_is_refused() {
        assert_eq!(wav_pcm(b"RIFF"), None);
        let mut w = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        w.resize(44, 0);
        w[24..28].copy_from_slice(&22050u32.to_le_bytes());
        w[34..36].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(wav_pcm(&w), None);
        w[34..36].copy_from_slice(&16u16.to_le_bytes());
        w[36..40].copy_from_slice(b"data");
        w.extend_from_slice(&[1, 0, 2, 0]);
        assert_eq!(wav_pcm(&w), Some((22050, vec![1, 2])));
    }

    #[test]
    fn the_demo_script_has_three_voices_and_owned_action_items() {
        let s = Script::demo();
        assert_eq!(s.voices.len(), 3);
        assert!(s.lines.iter().all(|(i, _)| *i < 3));
        assert!(
            s.lines
                .iter()
                .any(|(_, l)| l.contains("I will write the training guide by Friday"))
        );
    }

    proptest! {
        #[test]
        fn wav_parsing_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = wav_pcm(&b);
        }

        #[test]
        fn resampling_keeps_the_length_ratio(pcm in proptest::collection::vec(any::<i16>(), 0..500)) {
            let out = resample(&pcm, 22050, 48000);
            prop_assert_eq!(out.len(), pcm.len() * 48000 / 22050);
        }

        #[test]
        fn room_events_round_trip(id in "[a-z0-9]{1,12}") {
            let line = serde_json::to_string(&RoomEvent::Left(id.clone())).unwrap();
            prop_assert_eq!(serde_json::from_str::<RoomEvent>(&line).unwrap(), RoomEvent::Left(id));
        }
    }
}

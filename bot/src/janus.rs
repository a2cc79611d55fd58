//! Janus over its HTTP API (sessions, plugin handles, long-poll events) and the VideoRoom
//! connector: the bot joins a room as a participant that publishes nothing (so it is listed
//! under its display name), and subscribes to every publisher's audio with a WebRTC peer
//! connection of its own (webrtc-rs, mDNS off, ICE on the configured local address only), so
//! each participant is a separate stream keyed by feed id and SSRC.
//!
//! Signalling (Janus REST): `POST /janus {create}` -> session; `POST /janus/{session}
//! {attach}` -> handle; `POST /janus/{session}/{handle} {message, body, jsep?}` -> `ack` and later
//! an event with the same transaction; `GET /janus/{session}?maxev=N` long-polls events (and
//! keeps the session alive).

use crate::connector::{
    AudioPacket, ConnectError, ConnectorEvent, Joined, MeetingConnector, Signal,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

/// Janus error code for an unknown VideoRoom room.
const NO_SUCH_ROOM: i64 = 426;

#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error("Janus request failed: {0}")]
    Http(String),
    #[error("Janus answered {code}: {reason}")]
    Janus { code: i64, reason: String },
    #[error("Janus answered something unexpected: {0}")]
    Protocol(String),
    #[error("no answer from Janus within {0:?}")]
    Timeout(Duration),
}

type Waiters = HashMap<String, oneshot::Sender<Value>>;

/// One Janus session with its event poller.
pub struct JanusSession {
    http: reqwest::Client,
    url: String,
    id: u64,
    next: AtomicU64,
    /// transaction -> waiter for the asynchronous answer
    waiters: Arc<Mutex<Waiters>>,
    /// handle id -> its event stream
    handles: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>>,
    poller: tokio::task::JoinHandle<()>,
}

/// A plugin handle: send messages, receive its events.
pub struct PluginHandle {
    pub id: u64,
    pub events: mpsc::UnboundedReceiver<Value>,
}

fn janus_error(v: &Value) -> Option<JanusError> {
    if v["janus"] == "error" {
        return Some(JanusError::Janus {
            code: v["error"]["code"].as_i64().unwrap_or(0),
            reason: v["error"]["reason"].as_str().unwrap_or("").to_string(),
        });
    }
    let data = &v["plugindata"]["data"];
    if let Some(code) = data["error_code"].as_i64() {
        return Some(JanusError::Janus {
            code,
            reason: data["error"].as_str().unwrap_or("").to_string(),
        });
    }
    None
}

impl JanusSession {
    /// Creates a session at `url` (`http://host:8088/janus`).
    pub async fn create(url: &str) -> Result<Arc<Self>, JanusError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .map_err(|e| JanusError::Http(e.to_string()))?;
        let v = post(&http, url, json!({"janus": "create", "transaction": "c0"})).await?;
        let id = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| JanusError::Protocol(format!("create answered {v}")))?;
        let waiters: Arc<Mutex<Waiters>> = Default::default();
        let handles: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>> = Default::default();
        let poller = tokio::spawn(poll(
            http.clone(),
            format!("{url}/{id}?maxev=10"),
            waiters.clone(),
            handles.clone(),
        ));
        Ok(Arc::new(JanusSession {
            http,
            url: url.to_string(),
            id,
            next: AtomicU64::new(1),
            waiters,
            handles,
            poller,
        }))
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    pub async fn attach(&self, plugin: &str) -> Result<PluginHandle, JanusError> {
        let v = post(
            &self.http,
            &format!("{}/{}", self.url, self.id),
            json!({"janus": "attach", "plugin": plugin, "transaction": self.transaction()}),
        )
        .await?;
        let id = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| JanusError::Protocol(format!("attach answered {v}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        Ok(PluginHandle { id, events: rx })
    }

    /// A plugin request; returns the plugin's answer (synchronous `success` or the event that
    /// carries the same transaction), or its error.
    pub async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, JanusError> {
        let tx = self.transaction();
        let (wtx, wrx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tx.clone(), wtx);
        let mut req = json!({"janus": "message", "transaction": tx, "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        let v = post(
            &self.http,
            &format!("{}/{}/{handle}", self.url, self.id),
            req,
        )
        .await;
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                self.waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&tx);
                return Err(e);
            }
        };
        if v["janus"] != "ack" {
            self.waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&tx);
            return match janus_error(&v) {
                Some(e) => Err(e),
                None => Ok(v),
            };
        }
        let wait = Duration::from_secs(20);
        let ev = tokio::time::timeout(wait, wrx)
            .await
            .map_err(|_| JanusError::Timeout(wait))?
            .map_err(|_| JanusError::Protocol("session closed".into()))?;
        match janus_error(&ev) {
            Some(e) => Err(e),
            None => Ok(ev),
        }
    }

    pub async fn detach(&self, handle: u64) {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle);
        let _ = post(
            &self.http,
            &format!("{}/{}/{handle}", self.url, self.id),
            json!({"janus": "detach", "transaction": self.transaction()}),
        )
        .await;
    }

    pub async fn destroy(&self) {
        self.poller.abort();
        let _ = post(
            &self.http,
            &format!("{}/{}", self.url, self.id),
            json!({"janus": "destroy", "transaction": self.transaction()}),
        )
        .await;
    }
}

impl Drop for JanusSession {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Result<Value, JanusError> {
    let resp = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| JanusError::Http(e.without_url().to_string()))?;
    let v: Value = resp
        .json()
        .await
        .map_err(|e| JanusError::Protocol(e.without_url().to_string()))?;
    if v["janus"] == "error" {
        return Err(janus_error(&v).unwrap_or(JanusError::Protocol(v.to_string())));
    }
    Ok(v)
}

/// The long-poll loop: routes each event to the waiter of its transaction, else to its handle.
async fn poll(
    http: reqwest::Client,
    url: String,
    waiters: Arc<Mutex<Waiters>>,
    handles: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>>,
) {
    loop {
        let events = match http.get(&url).send().await {
            Ok(r) => match r.json::<Value>().await {
                Ok(Value::Array(a)) => a,
                Ok(v) => vec![v],
                Err(_) => vec![],
            },
            Err(e) => {
                tracing::debug!(error = %e.without_url(), "Janus long poll failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for ev in events {
            if ev["janus"] == "keepalive" {
                continue;
            }
            if let Some(tx) = ev["transaction"].as_str() {
                let w = waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(tx);
                if let Some(w) = w {
                    let _ = w.send(ev);
                    continue;
                }
            }
            if let Some(sender) = ev["sender"].as_u64() {
                let h = handles
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&sender)
                    .cloned();
                if let Some(h) = h {
                    let _ = h.send(ev);
                }
            }
        }
    }
}

/// Where the room is and how the bot's media is set up.
#[derive(Clone, Debug)]
pub struct VideoRoomSettings {
    /// Janus HTTP API, e.g. `http://127.0.0.1:8088/janus`.
    pub url: String,
    pub room: u64,
    pub pin: Option<String>,
    /// The only local address ICE uses (host candidates on it; no mDNS, no STUN).
    pub ice_ip: IpAddr,
    /// Audio packets buffered per participant before the receiver is considered too slow.
    pub channel_depth: usize,
}

pub struct JanusVideoRoom {
    s: VideoRoomSettings,
    /// Audio packets dropped because the receiver was too slow.
    pub dropped: Arc<AtomicU64>,
}

impl JanusVideoRoom {
    pub fn new(s: VideoRoomSettings) -> Self {
        JanusVideoRoom {
            s,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// A peer connection as every Janus peer here uses it: default codecs and interceptors, mDNS
/// off, no ICE servers, UDP bound only to `ice_ip` (host candidates on that address alone).
pub async fn peer_connection(
    ice_ip: IpAddr,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>, ConnectError> {
    let media = |e: rtc::shared::error::Error| ConnectError::Media(e.to_string());
    let mut me = MediaEngine::default();
    me.register_default_codecs().map_err(media)?;
    let registry = register_default_interceptors(Registry::new(), &mut me).map_err(media)?;
    let setting = SettingEngineBuilder::default()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let runtime = webrtc::runtime::default_runtime()
        .ok_or_else(|| ConnectError::Media("no async runtime for WebRTC".into()))?;
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_setting_engine(setting)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_runtime(runtime)
        .with_udp_addrs(vec![format!("{ice_ip}:0")])
        .build()
        .await
        .map_err(media)?;
    Ok(Arc::new(pc))
}

/// The local description as Janus's `jsep`, once ICE gathering finished (`gathered` fires; no
/// trickle) or after 10 s.
pub async fn gathered_description(
    pc: &dyn PeerConnection,
    gathered: oneshot::Receiver<()>,
) -> Result<Value, ConnectError> {
    let _ = tokio::time::timeout(Duration::from_secs(10), gathered).await;
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| ConnectError::Media("no local description".into()))?;
    serde_json::to_value(&local).map_err(|e| ConnectError::Media(e.to_string()))
}

/// Signals ICE gathering's end once (what [`gathered_description`] waits for).
pub struct GatherDone(Mutex<Option<oneshot::Sender<()>>>);

impl GatherDone {
    pub fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (GatherDone(Mutex::new(Some(tx))), rx)
    }

    pub fn gathering(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete
            && let Some(tx) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            let _ = tx.send(());
        }
    }
}

#[async_trait]
impl PeerConnectionEventHandler for GatherDone {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering(state);
    }
}

/// Forwards every RTP packet of `track` as an audio packet of the participant `label` names at
/// that moment, until the track or the receiver ends; packets that do not fit are dropped and
/// counted in `dropped`, never queued without bound.
pub fn forward_track(
    track: Arc<dyn TrackRemote>,
    label: impl Fn() -> String + Send + 'static,
    events: mpsc::Sender<ConnectorEvent>,
    dropped: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        while let Some(ev) = track.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                let packet = AudioPacket {
                    participant: label(),
                    ssrc: p.header.ssrc,
                    sequence: p.header.sequence_number,
                    timestamp: p.header.timestamp,
                    payload: p.payload.to_vec(),
                    received_at: Instant::now(),
                };
                match events.try_send(ConnectorEvent::Audio(packet)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        }
    });
}

/// Forwards one subscriber peer connection's audio as packets of participant `feed`.
struct Receiver {
    feed: String,
    events: mpsc::Sender<ConnectorEvent>,
    dropped: Arc<AtomicU64>,
    gathered: GatherDone,
}

#[async_trait]
impl PeerConnectionEventHandler for Receiver {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathered.gathering(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let feed = self.feed.clone();
        forward_track(
            track,
            move || feed.clone(),
            self.events.clone(),
            self.dropped.clone(),
        );
    }
}

/// A receive-only peer connection for one Janus subscriber offer; returns it and its answer.
async fn answer_offer(
    s: &VideoRoomSettings,
    offer: Value,
    handler: Arc<Receiver>,
    gathered: oneshot::Receiver<()>,
) -> Result<(Arc<dyn PeerConnection>, Value), ConnectError> {
    let media = |e: rtc::shared::error::Error| ConnectError::Media(e.to_string());
    let pc = peer_connection(s.ice_ip, handler).await?;
    let offer: RTCSessionDescription = serde_json::from_value(offer)
        .map_err(|e| ConnectError::Media(format!("Janus offer unreadable: {e}")))?;
    pc.set_remote_description(offer).await.map_err(media)?;
    let answer = pc.create_answer(None).await.map_err(media)?;
    pc.set_local_description(answer).await.map_err(media)?;
    let jsep = gathered_description(pc.as_ref(), gathered).await?;
    Ok((pc, jsep))
}

struct Subscription {
    handle: u64,
    pc: Arc<dyn PeerConnection>,
}

struct Room {
    session: Arc<JanusSession>,
    me: u64,
    subs: Arc<tokio::sync::Mutex<HashMap<String, Subscription>>>,
    watcher: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl Joined for Room {
    async fn post_chat(&mut self, _text: &str) -> Result<bool, ConnectError> {
        // A VideoRoom has no chat (that is Janus's TextRoom plugin).
        Ok(false)
    }

    async fn leave(self: Box<Self>) {
        self.watcher.abort();
        let _ = self
            .session
            .message(self.me, json!({"request": "leave"}), None)
            .await;
        for (_, s) in self.subs.lock().await.drain() {
            let _ = s.pc.close().await;
            self.session.detach(s.handle).await;
        }
        self.session.detach(self.me).await;
        self.session.destroy().await;
    }
}

fn to_connect(e: JanusError) -> ConnectError {
    match e {
        JanusError::Janus { code, reason } if code == NO_SUCH_ROOM => {
            ConnectError::NoSuchMeeting(reason)
        }
        JanusError::Janus { reason, .. } => ConnectError::Refused(reason),
        other => ConnectError::Unreachable(other.to_string()),
    }
}

/// Subscribes to `feed`'s media with its own handle and peer connection.
async fn subscribe(
    s: &VideoRoomSettings,
    session: &Arc<JanusSession>,
    feed: u64,
    events: mpsc::Sender<ConnectorEvent>,
    dropped: Arc<AtomicU64>,
) -> Result<Subscription, ConnectError> {
    let h = session
        .attach("janus.plugin.videoroom")
        .await
        .map_err(to_connect)?;
    let mut join = json!({"request": "join", "ptype": "subscriber", "room": s.room,
                          "streams": [{"feed": feed}], "offer_video": false});
    if let Some(pin) = &s.pin {
        join["pin"] = json!(pin);
    }
    let attached = session
        .message(h.id, join, None)
        .await
        .map_err(to_connect)?;
    let offer = attached
        .get("jsep")
        .cloned()
        .ok_or_else(|| ConnectError::Media("subscription without an offer".into()))?;
    let (gathered, grx) = GatherDone::new();
    let handler = Arc::new(Receiver {
        feed: feed.to_string(),
        events,
        dropped,
        gathered,
    });
    let (pc, answer) = answer_offer(s, offer, handler, grx).await?;
    session
        .message(h.id, json!({"request": "start"}), Some(answer))
        .await
        .map_err(to_connect)?;
    Ok(Subscription { handle: h.id, pc })
}

/// Publishers in a VideoRoom event (`publishers` list), with audio.
fn publishers(data: &Value) -> Vec<(u64, Option<String>)> {
    data["publishers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let id = p["id"].as_u64()?;
                    let has_audio = p["audio_codec"].is_string()
                        || p["streams"].as_array().is_some_and(|s| {
                            s.iter()
                                .any(|x| x["type"] == "audio" && x["disabled"] != true)
                        });
                    has_audio.then(|| (id, p["display"].as_str().map(String::from)))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl MeetingConnector for JanusVideoRoom {
    fn platform(&self) -> &'static str {
        "janus-videoroom"
    }

    async fn join(
        &self,
        display_name: &str,
        events: mpsc::Sender<ConnectorEvent>,
    ) -> Result<Box<dyn Joined>, ConnectError> {
        let s = self.s.clone();
        let session = JanusSession::create(&s.url)
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let mut me = session
            .attach("janus.plugin.videoroom")
            .await
            .map_err(to_connect)?;
        let mut join = json!({"request": "join", "ptype": "publisher", "room": s.room,
                              "display": display_name});
        if let Some(pin) = &s.pin {
            join["pin"] = json!(pin);
        }
        let joined = match session.message(me.id, join, None).await {
            Ok(v) => v,
            Err(e) => {
                session.destroy().await;
                return Err(to_connect(e));
            }
        };
        let _ = events.send(ConnectorEvent::Signal(Signal::Admitted)).await;
        let subs: Arc<tokio::sync::Mutex<HashMap<String, Subscription>>> = Default::default();
        let data = joined["plugindata"]["data"].clone();
        let my_id = data["id"].as_u64();
        for (feed, display) in publishers(&data) {
            let _ = events
                .send(ConnectorEvent::Signal(Signal::ParticipantJoined {
                    id: feed.to_string(),
                    display,
                }))
                .await;
            let sub = subscribe(&s, &session, feed, events.clone(), self.dropped.clone()).await?;
            subs.lock().await.insert(feed.to_string(), sub);
        }
        // Room events: new publishers are subscribed to, leavers unsubscribed, the end reported.
        let watcher = {
            let (session, subs, events, dropped, s) = (
                session.clone(),
                subs.clone(),
                events.clone(),
                self.dropped.clone(),
                s.clone(),
            );
            tokio::spawn(async move {
                while let Some(ev) = me.events.recv().await {
                    let data = &ev["plugindata"]["data"];
                    if data["videoroom"] == "destroyed" {
                        let _ = events
                            .send(ConnectorEvent::Signal(Signal::Ended(
                                "room destroyed".into(),
                            )))
                            .await;
                        break;
                    }
                    if data["leaving"] == "ok"
                        || (my_id.is_some() && data["kicked"].as_u64() == my_id)
                    {
                        let _ = events
                            .send(ConnectorEvent::Signal(Signal::Ended(
                                "removed from the room".into(),
                            )))
                            .await;
                        break;
                    }
                    for (feed, display) in publishers(data) {
                        if subs.lock().await.contains_key(&feed.to_string()) {
                            continue;
                        }
                        let _ = events
                            .send(ConnectorEvent::Signal(Signal::ParticipantJoined {
                                id: feed.to_string(),
                                display,
                            }))
                            .await;
                        match subscribe(&s, &session, feed, events.clone(), dropped.clone()).await {
                            Ok(sub) => {
                                subs.lock().await.insert(feed.to_string(), sub);
                            }
                            Err(e) => {
                                tracing::warn!(feed, error = %e, "cannot subscribe to a participant")
                            }
                        }
                    }
                    for key in ["unpublished", "leaving"] {
                        if let Some(feed) = data[key].as_u64() {
                            if let Some(sub) = subs.lock().await.remove(&feed.to_string()) {
                                let _ = sub.pc.close().await;
                                session.detach(sub.handle).await;
                            }
                            let _ = events
                                .send(ConnectorEvent::Signal(Signal::ParticipantLeft {
                                    id: feed.to_string(),
                                }))
                                .await;
                        }
                    }
                }
            })
        };
        Ok(Box::new(Room {
            session,
            me: me_id(&joined).unwrap_or_default(),
            subs,
            watcher,
        }))
    }
}

/// Janus's AudioBridge: one mixed stream of everybody else. The bot joins muted, offers a
/// receive-only audio transceiver, and gets the room's mix (as participant `mix`); joins and leaves of participants are reported from the room's events. Use it where a
/// deployment mixes in Janus; speaker attribution needs VideoRoom.
pub struct JanusAudioBridge {
    s: VideoRoomSettings,
    pub dropped: Arc<AtomicU64>,
}

impl JanusAudioBridge {
    pub fn new(s: VideoRoomSettings) -> Self {
        JanusAudioBridge {
            s,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Participants listed in an AudioBridge event.
fn bridge_participants(data: &Value) -> Vec<(u64, Option<String>)> {
    data["participants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["id"].as_u64()?, p["display"].as_str().map(String::from))))
                .collect()
        })
        .unwrap_or_default()
}

/// A peer connection that offers one receive-only audio transceiver; returns it and its offer.
async fn offer_audio(
    s: &VideoRoomSettings,
    handler: Arc<Receiver>,
    gathered: oneshot::Receiver<()>,
) -> Result<(Arc<dyn PeerConnection>, Value), ConnectError> {
    let media = |e: rtc::shared::error::Error| ConnectError::Media(e.to_string());
    let pc = peer_connection(s.ice_ip, handler).await?;
    pc.add_transceiver_from_kind(
        rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
        Some(rtc::rtp_transceiver::RTCRtpTransceiverInit {
            direction: rtc::rtp_transceiver::RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .map_err(media)?;
    let offer = pc.create_offer(None).await.map_err(media)?;
    pc.set_local_description(offer).await.map_err(media)?;
    let jsep = gathered_description(pc.as_ref(), gathered).await?;
    Ok((pc, jsep))
}

struct Bridge {
    session: Arc<JanusSession>,
    me: u64,
    pc: Arc<dyn PeerConnection>,
    watcher: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl Joined for Bridge {
    async fn post_chat(&mut self, _text: &str) -> Result<bool, ConnectError> {
        Ok(false)
    }

    async fn leave(self: Box<Self>) {
        self.watcher.abort();
        let _ = self
            .session
            .message(self.me, json!({"request": "leave"}), None)
            .await;
        let _ = self.pc.close().await;
        self.session.detach(self.me).await;
        self.session.destroy().await;
    }
}

#[async_trait]
impl MeetingConnector for JanusAudioBridge {
    fn platform(&self) -> &'static str {
        "janus-audiobridge"
    }

    async fn join(
        &self,
        display_name: &str,
        events: mpsc::Sender<ConnectorEvent>,
    ) -> Result<Box<dyn Joined>, ConnectError> {
        let s = self.s.clone();
        let session = JanusSession::create(&s.url)
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let mut me = session
            .attach("janus.plugin.audiobridge")
            .await
            .map_err(to_connect)?;
        let mut join = json!({"request": "join", "room": s.room, "display": display_name,
                              "muted": true});
        if let Some(pin) = &s.pin {
            join["pin"] = json!(pin);
        }
        let joined = match session.message(me.id, join, None).await {
            Ok(v) => v,
            Err(e) => {
                session.destroy().await;
                return Err(to_connect(e));
            }
        };
        let _ = events.send(ConnectorEvent::Signal(Signal::Admitted)).await;
        let mut known: std::collections::HashSet<u64> = Default::default();
        for (id, display) in bridge_participants(&joined["plugindata"]["data"]) {
            known.insert(id);
            let _ = events
                .send(ConnectorEvent::Signal(Signal::ParticipantJoined {
                    id: id.to_string(),
                    display,
                }))
                .await;
        }
        let (gathered, grx) = GatherDone::new();
        let handler = Arc::new(Receiver {
            feed: "mix".into(),
            events: events.clone(),
            dropped: self.dropped.clone(),
            gathered,
        });
        let (pc, offer) = offer_audio(&s, handler, grx).await?;
        let configured = session
            .message(
                me.id,
                json!({"request": "configure", "muted": true}),
                Some(offer),
            )
            .await
            .map_err(to_connect)?;
        let answer: RTCSessionDescription = serde_json::from_value(configured["jsep"].clone())
            .map_err(|e| ConnectError::Media(format!("AudioBridge answer unreadable: {e}")))?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| ConnectError::Media(e.to_string()))?;
        let my_id = joined["plugindata"]["data"]["id"].as_u64();
        let watcher = tokio::spawn(async move {
            while let Some(ev) = me.events.recv().await {
                let data = &ev["plugindata"]["data"];
                if data["audiobridge"] == "destroyed" {
                    let _ = events
                        .send(ConnectorEvent::Signal(Signal::Ended(
                            "room destroyed".into(),
                        )))
                        .await;
                    break;
                }
                if my_id.is_some() && data["kicked"].as_u64() == my_id {
                    let _ = events
                        .send(ConnectorEvent::Signal(Signal::Ended(
                            "removed from the room".into(),
                        )))
                        .await;
                    break;
                }
                for (id, display) in bridge_participants(data) {
                    if known.insert(id) {
                        let _ = events
                            .send(ConnectorEvent::Signal(Signal::ParticipantJoined {
                                id: id.to_string(),
                                display,
                            }))
                            .await;
                    }
                }
                if let Some(id) = data["leaving"].as_u64()
                    && known.remove(&id)
                {
                    let _ = events
                        .send(ConnectorEvent::Signal(Signal::ParticipantLeft {
                            id: id.to_string(),
                        }))
                        .await;
                }
            }
        });
        Ok(Box::new(Bridge {
            session,
            me: me_id(&joined).unwrap_or_default(),
            pc,
            watcher,
        }))
    }
}

/// The handle id the `joined` answer came from.
fn me_id(v: &Value) -> Option<u64> {
    v["sender"].as_u64()
}

/// The Janus room a link names: `https://<room_host>/room/<id>` (or `...?room=<id>`) is a
/// VideoRoom, `https://<room_host>/bridge/<id>` an AudioBridge; an optional `pin` query parameter.
/// `None` for links of other hosts or without a numeric room.
pub fn janus_room(link: &str, room_host: &str) -> Option<(JanusRoomKind, u64, Option<String>)> {
    let u = url::Url::parse(link).ok()?;
    let kind = if u.path_segments()?.any(|s| s == "bridge") {
        JanusRoomKind::AudioBridge
    } else {
        JanusRoomKind::VideoRoom
    };
    let path = u.path().replacen("/bridge/", "/room/", 1);
    let mut normal = u.clone();
    normal.set_path(&path);
    let (room, pin) = room_from_link(normal.as_str(), room_host)?;
    Some((kind, room, pin))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JanusRoomKind {
    VideoRoom,
    AudioBridge,
}

/// The room id and pin of a VideoRoom link (see [`janus_room`]).
pub fn room_from_link(link: &str, room_host: &str) -> Option<(u64, Option<String>)> {
    let u = url::Url::parse(link).ok()?;
    if !u.host_str()?.eq_ignore_ascii_case(room_host) {
        return None;
    }
    let q = |k: &str| {
        u.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    let room = q("room").and_then(|r| r.parse().ok()).or_else(|| {
        let mut segs = u.path_segments()?;
        segs.find(|s| *s == "room")?;
        segs.next()?.parse().ok()
    })?;
    Some((room, q("pin").filter(|p| !p.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_links_name_their_room_and_pin_and_other_links_are_not_rooms() {
        let h = "rooms.clinic.example";
        assert_eq!(
            room_from_link("https://rooms.clinic.example/room/1234", h),
            Some((1234, None))
        );
        assert_eq!(
            room_from_link("https://ROOMS.clinic.example/x?room=77&pin=s3cret", h),
            Some((77, Some("s3cret".into())))
        );
        assert_eq!(room_from_link("https://evil.example/room/1", h), None);
        assert_eq!(
            room_from_link("https://rooms.clinic.example/room/abc", h),
            None
        );
        assert_eq!(room_from_link("not a url", h), None);
        assert_eq!(
            janus_room("https://rooms.clinic.example/bridge/9?pin=x", h),
            Some((JanusRoomKind::AudioBridge, 9, Some("x".into())))
        );
        assert_eq!(
            janus_room("https://rooms.clinic.example/room/9", h),
            Some((JanusRoomKind::VideoRoom, 9, None))
        );
    }

    proptest::proptest! {
        #[test]
        fn room_link_parsing_never_panics(s in ".{0,200}") {
            let _ = room_from_link(&s, "rooms.clinic.example");
        }

        #[test]
        fn janus_answers_of_any_shape_never_panic(s in ".{0,300}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = publishers(&v);
                let _ = janus_error(&v);
                let _ = me_id(&v);
            }
        }
    }
}

//! The browser connector: Google Meet, Microsoft Teams and Zoom through their web clients, in
//! Debian's Chromium driven over the DevTools protocol (chromiumoxide).
//!
//! One session is one fresh Chromium (a new profile directory, removed when the session ends;
//! no media cache; fake camera and microphone, both switched off before joining). The
//! platform's [`profile`] says how to get in and how to read the page. `capture.js`, installed
//! before the page's own scripts, relays every remote audio track the page receives to this
//! process over a loopback WebRTC connection (webrtc-rs), so the session sees per-participant
//! Opus RTP exactly as from Janus. A watcher polls the page (state, participants, speaker, new
//! tracks); a Chromium that exits or stops answering ends the session with
//! [`Signal::Lost`] within `hang_after`. Screenshots of each step are kept in memory (the last
//! few, JPEG) for failure events; nothing is written to disk but the browser profile.

pub mod profile;

use crate::connector::{
    ConnectError, ConnectorEvent, Joined, MeetingConnector, Screenshot, Signal,
};
use crate::janus::{GatherDone, forward_track, gathered_description, peer_connection};
use async_trait::async_trait;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::input::{DispatchKeyEventParams, DispatchKeyEventType};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures_util::StreamExt;
use profile::{AudioMode, Loaded, Step, Target};
use rtc::peer_connection::sdp::RTCSessionDescription;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState};

/// The page helper installed into every page before its own scripts.
pub const CAPTURE_JS: &str = include_str!("capture.js");

/// Screenshots kept per session (the latest ones).
const SHOTS_KEPT: usize = 8;

/// How Chromium is started and watched.
#[derive(Clone, Debug)]
pub struct BrowserSettings {
    pub chromium: PathBuf,
    /// Added after the built-in flags (e.g. `host-resolver-rules=...`), without leading dashes.
    pub extra_args: Vec<String>,
    /// Turns Chromium's own sandbox off. Off by default: a bot renders third-party pages.
    /// The sandbox needs unprivileged user namespaces (the bot's pod spec grants them, see
    /// `kubernetes.rs`) and a non-root user; only a bot run as root (tests) sets this.
    pub no_sandbox: bool,
    /// The address of the loopback relay (the bot's end binds it; the page's candidates are
    /// filtered to it).
    pub ice_ip: IpAddr,
    pub channel_depth: usize,
    /// How often the page is looked at.
    pub poll_every: Duration,
    /// A Chromium that has not answered for this long is declared hung.
    pub hang_after: Duration,
    /// After admission, the call vanishing from the page for this long ends the session.
    pub lost_call_after: Duration,
    /// How long one start of Chromium may take to announce its DevTools endpoint.
    pub launch_timeout: Duration,
    /// How many times a Chromium that does not announce it in time is started afresh before
    /// the join fails (seen: one start in a few hundred hanging on a loaded node).
    pub launch_attempts: u32,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        BrowserSettings {
            chromium: PathBuf::from("/usr/bin/chromium"),
            extra_args: Vec::new(),
            no_sandbox: false,
            ice_ip: IpAddr::from([127, 0, 0, 1]),
            channel_depth: 4096,
            poll_every: Duration::from_millis(250),
            hang_after: Duration::from_secs(6),
            lost_call_after: Duration::from_secs(10),
            launch_timeout: Duration::from_secs(30),
            launch_attempts: 3,
        }
    }
}

/// The flags every session's Chromium gets (peers.md; no leading dashes).
pub fn chromium_flags() -> Vec<String> {
    [
        "disable-gpu",
        "disable-quic",
        "no-first-run",
        "no-default-browser-check",
        "disable-background-networking",
        "disable-component-update",
        "disable-sync",
        "disable-default-apps",
        "disable-extensions",
        "disable-dev-shm-usage",
        "disable-breakpad",
        "metrics-recording-only",
        "use-fake-ui-for-media-stream",
        "use-fake-device-for-media-stream",
        "allow-loopback-in-peer-connection",
        "disable-features=WebRtcHideLocalIpsWithMdns,Translate,MediaRouter",
        "autoplay-policy=no-user-gesture-required",
        // No media or HTTP cache worth the name on disk.
        "disk-cache-size=1",
        "media-cache-size=1",
        "lang=en-US",
        "window-size=1280,720",
        "mute-audio",
        "headless=new",
        "hide-scrollbars",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every argument a session's Chromium is started with (without leading dashes): the
/// built-in flags, the configured extras, and the sandbox switches only when it is turned off.
pub fn chromium_args(s: &BrowserSettings) -> Vec<String> {
    let mut args = chromium_flags();
    args.extend(s.extra_args.iter().cloned());
    if s.no_sandbox {
        args.extend([
            "no-sandbox".to_string(),
            "disable-setuid-sandbox".to_string(),
        ]);
    }
    args
}

type Shots = Arc<Mutex<VecDeque<Screenshot>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A meeting on one platform, joined through its web client.
pub struct BrowserConnector {
    s: BrowserSettings,
    profile: Arc<Loaded>,
    url: String,
    /// Audio packets dropped because the receiver was too slow.
    pub dropped: Arc<AtomicU64>,
    shots: Shots,
    pid: Arc<Mutex<Option<u32>>>,
}

impl BrowserConnector {
    /// A connector for `join_url` (made by the profile from the meeting's link).
    pub fn new(s: BrowserSettings, profile: Arc<Loaded>, join_url: String) -> Self {
        BrowserConnector {
            s,
            profile,
            url: join_url,
            dropped: Arc::new(AtomicU64::new(0)),
            shots: Arc::new(Mutex::new(VecDeque::new())),
            pid: Arc::new(Mutex::new(None)),
        }
    }

    /// The running Chromium's process id (for benchmarks and crash tests).
    pub fn browser_pid(&self) -> Option<u32> {
        *lock(&self.pid)
    }
}

#[derive(Debug, Deserialize)]
struct Look {
    state: Option<String>,
    #[serde(default)]
    participants: Vec<Person>,
    count: Option<u64>,
    #[serde(default)]
    offers: Vec<Offer>,
    #[serde(default)]
    closed: Vec<u64>,
}

#[derive(Debug, Deserialize)]
struct Person {
    id: String,
    name: String,
    #[serde(default)]
    speaking: bool,
    track: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Offer {
    relay: u64,
    track: String,
    stream: String,
    sdp: String,
}

/// Who each relayed track's packets belong to.
#[derive(Default)]
struct Labels {
    mode: AudioMode,
    per_relay: HashMap<u64, String>,
    speaker: Option<String>,
}

impl Labels {
    fn of(&self, relay: u64) -> String {
        match self.mode {
            AudioMode::PerTrack => self
                .per_relay
                .get(&relay)
                .cloned()
                .unwrap_or_else(|| format!("track-{relay}")),
            AudioMode::Mixed => self.speaker.clone().unwrap_or_else(|| "mixed".into()),
        }
    }
}

/// At most 64 bytes (the audio frame's limit), cut at a character boundary.
fn label(name: &str) -> String {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

struct Ctx {
    page: Page,
    profile: Arc<Loaded>,
    display_name: String,
    look_cfg: String,
    events: mpsc::Sender<ConnectorEvent>,
    labels: Arc<Mutex<Labels>>,
    dropped: Arc<AtomicU64>,
    shots: Shots,
    ice_ip: IpAddr,
    pending_chat: Mutex<Option<String>>,
    /// Chromium exited or stopped answering.
    gone: Arc<AtomicBool>,
}

async fn eval_json<T: serde::de::DeserializeOwned>(
    page: &Page,
    expr: String,
    within: Duration,
) -> Result<T, String> {
    let r = tokio::time::timeout(within, page.evaluate(expr))
        .await
        .map_err(|_| format!("the page did not answer within {} s", within.as_secs()))?
        .map_err(|e| format!("page script failed: {e}"))?;
    let s: String = r
        .into_value()
        .map_err(|e| format!("page script answer unreadable: {e}"))?;
    serde_json::from_str(&s).map_err(|e| format!("page script answer unreadable: {e}"))
}

impl Ctx {
    async fn look(&self) -> Result<Look, String> {
        eval_json(
            &self.page,
            format!(
                "JSON.stringify(window.__meetbot ? window.__meetbot.look({}) : null)",
                self.look_cfg
            ),
            Duration::from_secs(2),
        )
        .await
        .and_then(|v: Option<Look>| v.ok_or_else(|| "the page helper is missing".into()))
    }

    /// Performs `step` once: `Ok(true)` when it acted, `Ok(false)` when its target is absent.
    async fn act(&self, step: &Step) -> Result<bool, String> {
        let value = step
            .value
            .as_deref()
            .unwrap_or("")
            .replace("{display_name}", &self.display_name);
        let step_json = json!({
            "do": step.action,
            "selector": step.target.selector,
            "text": step.target.text,
        });
        let r: String = eval_json(
            &self.page,
            format!(
                "JSON.stringify(window.__meetbot.act({step_json}, {}))",
                serde_json::Value::String(value)
            ),
            Duration::from_secs(3),
        )
        .await?;
        Ok(r == "done")
    }

    /// Repeats `step` until it acts or its timeout passes.
    async fn step(&self, step: &Step, default_timeout: Duration) -> Result<bool, String> {
        let within = step
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(default_timeout);
        let until = Instant::now() + within;
        loop {
            if self.act(step).await? {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn click(&self, name: &str, t: &Target, within: Duration) -> bool {
        let step = Step {
            name: name.into(),
            action: profile::Action::Click,
            target: t.clone(),
            value: None,
            optional: true,
            timeout_seconds: Some(within.as_secs().max(1)),
        };
        matches!(self.step(&step, within).await, Ok(true))
    }

    async fn shot(&self, step: &str) {
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Jpeg)
            .quality(50)
            .build();
        if let Ok(Ok(jpeg)) =
            tokio::time::timeout(Duration::from_secs(3), self.page.screenshot(params)).await
        {
            let mut s = lock(&self.shots);
            if s.len() == SHOTS_KEPT {
                s.pop_front();
            }
            s.push_back(Screenshot {
                step: step.into(),
                jpeg,
                at: chrono::Utc::now(),
            });
        }
    }

    async fn signal(&self, s: Signal) {
        let _ = self.events.send(ConnectorEvent::Signal(s)).await;
    }

    /// Posts `text` in the meeting chat.
    async fn chat(&self, text: &str) -> Result<(), String> {
        let Some(chat) = &self.profile.profile.chat else {
            return Ok(());
        };
        if let Some(open) = &chat.open {
            self.click("open chat", open, Duration::from_secs(2)).await;
        }
        let typed = Step {
            name: "chat input".into(),
            action: profile::Action::Type,
            target: chat.input.clone(),
            value: Some(text.to_string()),
            optional: false,
            timeout_seconds: Some(5),
        };
        if !self.step(&typed, Duration::from_secs(5)).await? {
            return Err("the chat input never appeared".into());
        }
        match &chat.send {
            Some(send) => {
                if !self.click("send chat", send, Duration::from_secs(3)).await {
                    return Err("the chat send button never appeared".into());
                }
            }
            None => {
                for kind in [DispatchKeyEventType::KeyDown, DispatchKeyEventType::KeyUp] {
                    let mut k = DispatchKeyEventParams::new(kind.clone());
                    k.key = Some("Enter".into());
                    k.code = Some("Enter".into());
                    k.windows_virtual_key_code = Some(13);
                    if kind == DispatchKeyEventType::KeyDown {
                        k.text = Some("\r".into());
                    }
                    self.page
                        .execute(k)
                        .await
                        .map_err(|e| format!("cannot press Enter: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// Forwards one relayed track's RTP as audio packets.
struct RelayReceiver {
    relay: u64,
    labels: Arc<Mutex<Labels>>,
    events: mpsc::Sender<ConnectorEvent>,
    dropped: Arc<AtomicU64>,
    gathered: GatherDone,
}

#[async_trait]
impl PeerConnectionEventHandler for RelayReceiver {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathered.gathering(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let (relay, labels) = (self.relay, self.labels.clone());
        forward_track(
            track,
            move || lock(&labels).of(relay),
            self.events.clone(),
            self.dropped.clone(),
        );
    }
}

/// Answers one relay offer from the page; returns the bot's end.
async fn accept_relay(ctx: &Ctx, offer: &Offer) -> Result<Arc<dyn PeerConnection>, ConnectError> {
    let media = |e: rtc::shared::error::Error| ConnectError::Media(e.to_string());
    let (gathered, done) = GatherDone::new();
    let handler = Arc::new(RelayReceiver {
        relay: offer.relay,
        labels: ctx.labels.clone(),
        events: ctx.events.clone(),
        dropped: ctx.dropped.clone(),
        gathered,
    });
    let pc = peer_connection(ctx.ice_ip, handler).await?;
    let desc = RTCSessionDescription::offer(offer.sdp.clone()).map_err(media)?;
    pc.set_remote_description(desc).await.map_err(media)?;
    let answer = pc.create_answer(None).await.map_err(media)?;
    pc.set_local_description(answer).await.map_err(media)?;
    let jsep = gathered_description(pc.as_ref(), done).await?;
    let sdp = jsep
        .get("sdp")
        .and_then(|s| s.as_str())
        .ok_or_else(|| ConnectError::Media("no answer SDP".into()))?
        .to_string();
    let ok: bool = eval_json(
        &ctx.page,
        format!(
            "window.__meetbot.answer({}, {}).then(r => JSON.stringify(r))",
            offer.relay,
            serde_json::Value::String(sdp)
        ),
        Duration::from_secs(5),
    )
    .await
    .map_err(ConnectError::Media)?;
    if !ok {
        let _ = pc.close().await;
        return Err(ConnectError::Media("the page dropped its relay".into()));
    }
    Ok(pc)
}

/// Watches the page until the meeting ends for the bot, the browser fails, or `stop`.
async fn watch(
    ctx: Arc<Ctx>,
    browser: Arc<tokio::sync::Mutex<Browser>>,
    s: BrowserSettings,
    mut stop: oneshot::Receiver<()>,
) {
    let mut last_ok = Instant::now();
    let (mut lobby, mut admitted) = (false, false);
    let mut call_missing_since: Option<Instant> = None;
    let mut people: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut pcs: HashMap<u64, Arc<dyn PeerConnection>> = HashMap::new();
    let platform = ctx.profile.profile.platform.clone();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(s.poll_every) => {}
        }
        let exited = ctx.gone.load(Ordering::Relaxed)
            || matches!(
                browser.try_lock().map(|mut b| b.try_wait()),
                Ok(Ok(Some(_)))
            );
        if exited {
            ctx.gone.store(true, Ordering::Relaxed);
            tracing::warn!(platform = %platform, "chromium exited mid-meeting");
            ctx.signal(Signal::Lost("chromium exited".into())).await;
            break;
        }
        let l = match ctx.look().await {
            Ok(l) => {
                last_ok = Instant::now();
                l
            }
            Err(e) => {
                if last_ok.elapsed() >= s.hang_after {
                    // Nothing more is asked of it: leaving kills it outright.
                    ctx.gone.store(true, Ordering::Relaxed);
                    tracing::warn!(platform = %platform, error = %e, "chromium stopped responding");
                    ctx.signal(Signal::Lost(format!(
                        "chromium stopped responding for {} s",
                        last_ok.elapsed().as_secs()
                    )))
                    .await;
                    break;
                }
                continue;
            }
        };
        for id in &l.closed {
            if let Some(pc) = pcs.remove(id) {
                let _ = pc.close().await;
            }
        }
        // Participants: the list where the page has one, else the count.
        let mut now: BTreeMap<String, Option<String>> = BTreeMap::new();
        if !l.participants.is_empty() {
            for p in &l.participants {
                now.insert(p.id.clone(), Some(p.name.clone()));
            }
        } else if let Some(n) = l.count {
            for i in 1..n.min(1000) {
                now.insert(format!("participant-{i}"), None);
            }
        } else {
            now = people.clone();
        }
        if admitted {
            for (id, name) in &now {
                if !people.contains_key(id) {
                    ctx.signal(Signal::ParticipantJoined {
                        id: id.clone(),
                        display: name.clone(),
                    })
                    .await;
                }
            }
            for id in people.keys() {
                if !now.contains_key(id) {
                    ctx.signal(Signal::ParticipantLeft { id: id.clone() }).await;
                }
            }
            people = now;
        }
        {
            let mut labels = lock(&ctx.labels);
            labels.speaker = l
                .participants
                .iter()
                .find(|p| p.speaking)
                .map(|p| label(&p.name));
            for p in &l.participants {
                if let Some(t) = &p.track {
                    for o in &l.offers {
                        if &o.track == t || &o.stream == t {
                            labels.per_relay.insert(o.relay, label(&p.name));
                        }
                    }
                }
            }
        }
        match l.state.as_deref() {
            Some("removed") => {
                ctx.shot("removed").await;
                ctx.signal(Signal::Ended("removed from the meeting".into()))
                    .await;
                break;
            }
            Some("denied") => {
                ctx.shot("denied").await;
                ctx.signal(Signal::Denied("the host denied entry".into()))
                    .await;
                break;
            }
            Some("ended") => {
                ctx.shot("ended").await;
                ctx.signal(Signal::Ended("the meeting ended".into())).await;
                break;
            }
            Some("admitted") => {
                call_missing_since = None;
                if !admitted {
                    admitted = true;
                    ctx.shot("admitted").await;
                    ctx.signal(Signal::Admitted).await;
                    if let Some(open) = &ctx.profile.profile.participants.open {
                        ctx.click("open participants", open, Duration::from_secs(2))
                            .await;
                    }
                }
                let pending = lock(&ctx.pending_chat).take();
                if let Some(text) = pending {
                    match ctx.chat(&text).await {
                        Ok(()) => tracing::info!(platform = %platform, "recording notice posted"),
                        Err(e) => {
                            ctx.shot("chat").await;
                            tracing::warn!(platform = %platform, error = %e, "recording notice not posted")
                        }
                    }
                }
            }
            Some("lobby") if !admitted && !lobby => {
                lobby = true;
                ctx.shot("lobby").await;
                ctx.signal(Signal::Lobby).await;
            }
            _ if admitted => {
                let since = *call_missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= s.lost_call_after {
                    ctx.shot("call gone").await;
                    ctx.signal(Signal::Ended("the call is no longer on the page".into()))
                        .await;
                    break;
                }
            }
            _ => {}
        }
        // After the state: a call's first audio never comes before its admission.
        for o in &l.offers {
            match accept_relay(&ctx, o).await {
                Ok(pc) => {
                    pcs.insert(o.relay, pc);
                }
                Err(e) => tracing::warn!(platform = %platform, error = %e, "audio relay failed"),
            }
        }
    }
    for (_, pc) in pcs {
        let _ = pc.close().await;
    }
}

struct BrowserMeeting {
    ctx: Arc<Ctx>,
    browser: Arc<tokio::sync::Mutex<Browser>>,
    stop: Option<oneshot::Sender<()>>,
    watcher: tokio::task::JoinHandle<()>,
    handler: tokio::task::JoinHandle<()>,
    _profile_dir: tempfile::TempDir,
}

async fn shut_down(browser: &Arc<tokio::sync::Mutex<Browser>>) {
    let mut b = browser.lock().await;
    let _ = tokio::time::timeout(Duration::from_secs(3), b.close()).await;
    if let Ok(None) = b.try_wait() {
        let _ = b.kill().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), b.wait()).await;
}

#[async_trait]
impl Joined for BrowserMeeting {
    async fn post_chat(&mut self, text: &str) -> Result<bool, ConnectError> {
        // Posted by the watcher once the bot is in (a lobby has no chat).
        if self.ctx.profile.profile.chat.is_none() {
            return Ok(false);
        }
        *lock(&self.ctx.pending_chat) = Some(text.to_string());
        Ok(true)
    }

    async fn leave(mut self: Box<Self>) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.watcher).await;
        self.watcher.abort();
        if !self.ctx.gone.load(Ordering::Relaxed)
            && let Some(t) = &self.ctx.profile.profile.leave
        {
            let _ = tokio::time::timeout(
                Duration::from_secs(3),
                self.ctx.click("leave", t, Duration::from_secs(1)),
            )
            .await;
        }
        if self.ctx.gone.load(Ordering::Relaxed) {
            // Crashed or hung: no polite close, kill it.
            let mut b = self.browser.lock().await;
            let _ = b.kill().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), b.wait()).await;
        } else {
            shut_down(&self.browser).await;
        }
        self.handler.abort();
    }
}

impl Drop for BrowserMeeting {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Ok(mut b) = self.browser.try_lock()
            && let Some(c) = b.get_mut_child()
        {
            let _ = c.as_mut_inner().start_kill();
        }
    }
}

fn launch_error(e: impl std::fmt::Display) -> ConnectError {
    ConnectError::Unreachable(format!("cannot start chromium: {e}"))
}

impl BrowserConnector {
    /// Starts Chromium with a fresh profile directory (kept alive by the returned guard). A start
    /// that times out is killed (by chromiumoxide) and tried again; one that exits is not.
    async fn launch(
        &self,
    ) -> Result<(tempfile::TempDir, Browser, chromiumoxide::Handler), ConnectError> {
        let mut attempt = 1;
        loop {
            let dir = tempfile::Builder::new()
                .prefix("meetbot-chromium-")
                .tempdir()
                .map_err(launch_error)?;
            let cfg = BrowserConfig::builder()
                .chrome_executable(&self.s.chromium)
                .user_data_dir(dir.path())
                .disable_default_args()
                .with_head() // headless=new comes from the flags
                .viewport(None)
                .launch_timeout(self.s.launch_timeout)
                .request_timeout(Duration::from_secs(10))
                .args(chromium_args(&self.s))
                .build()
                .map_err(launch_error)?;
            match Browser::launch(cfg).await {
                Ok((browser, handler)) => return Ok((dir, browser, handler)),
                Err(chromiumoxide::error::CdpError::LaunchTimeout(_))
                    if attempt < self.s.launch_attempts =>
                {
                    tracing::warn!(
                        attempt,
                        timeout_s = self.s.launch_timeout.as_secs(),
                        "chromium did not start in time; starting it again"
                    );
                    attempt += 1;
                }
                Err(e) => return Err(launch_error(e)),
            }
        }
    }
}

#[async_trait]
impl MeetingConnector for BrowserConnector {
    fn platform(&self) -> &'static str {
        "browser"
    }

    fn screenshots(&self) -> Vec<Screenshot> {
        lock(&self.shots).iter().cloned().collect()
    }

    async fn join(
        &self,
        display_name: &str,
        events: mpsc::Sender<ConnectorEvent>,
    ) -> Result<Box<dyn Joined>, ConnectError> {
        let p = &self.profile.profile;
        let (dir, mut browser, mut handler) = self.launch().await?;
        *lock(&self.pid) = browser.get_mut_child().and_then(|c| c.as_mut_inner().id());
        let gone = Arc::new(AtomicBool::new(false));
        let handler = {
            let gone = gone.clone();
            tokio::spawn(async move {
                while let Some(r) = handler.next().await {
                    if let Err(
                        chromiumoxide::error::CdpError::Ws(_)
                        | chromiumoxide::error::CdpError::Io(_),
                    ) = r
                    {
                        break;
                    }
                }
                gone.store(true, Ordering::Relaxed);
            })
        };
        let browser = Arc::new(tokio::sync::Mutex::new(browser));
        let fail = |e: ConnectError| {
            let browser = browser.clone();
            let handler = &handler;
            handler.abort();
            async move {
                shut_down(&browser).await;
                e
            }
        };
        let page = match browser.lock().await.new_page("about:blank").await {
            Ok(p) => p,
            Err(e) => return Err(fail(launch_error(e)).await),
        };
        // On every document the page loads (a platform's launcher navigates to its web app).
        let init = format!(
            "window.__meetbotRelayAddress = {};\n{CAPTURE_JS}",
            serde_json::Value::String(self.s.ice_ip.to_string())
        );
        if let Err(e) = page.evaluate_on_new_document(init).await {
            return Err(fail(launch_error(e)).await);
        }
        let look_cfg = json!({
            "states": p.states,
            "participants": p.participants,
            "self": display_name,
        })
        .to_string();
        let ctx = Arc::new(Ctx {
            page: page.clone(),
            profile: self.profile.clone(),
            display_name: display_name.to_string(),
            look_cfg,
            events,
            labels: Arc::new(Mutex::new(Labels {
                mode: p.audio.mode,
                ..Labels::default()
            })),
            dropped: self.dropped.clone(),
            shots: self.shots.clone(),
            ice_ip: self.s.ice_ip,
            pending_chat: Mutex::new(None),
            gone: gone.clone(),
        });
        lock(&self.shots).clear();
        let load = Duration::from_secs(p.timeouts.page_load_seconds);
        match tokio::time::timeout(load, page.goto(self.url.as_str())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                ctx.shot("open page").await;
                // Only the network error's code: the message may quote the join link.
                let text = e.to_string();
                let code = regex::Regex::new(r"net::ERR_[A-Z_]+")
                    .ok()
                    .and_then(|r| r.find(&text).map(|m| m.as_str().to_string()))
                    .unwrap_or_else(|| "navigation failed".into());
                return Err(fail(ConnectError::Unreachable(format!(
                    "{}: the meeting page did not load ({code})",
                    p.platform
                )))
                .await);
            }
            Err(_) => {
                ctx.shot("open page").await;
                return Err(fail(ConnectError::Unreachable(format!(
                    "{}: the meeting page did not load within {} s",
                    p.platform,
                    load.as_secs()
                )))
                .await);
            }
        }
        ctx.shot("page loaded").await;
        let step_default = Duration::from_secs(p.timeouts.step_seconds);
        for step in &p.join {
            let r = ctx.step(step, step_default).await;
            ctx.shot(&step.name).await;
            match r {
                Ok(true) => {}
                Ok(false) if step.optional => {}
                Ok(false) => {
                    // The page may say why: a meeting that is over, an entry refused.
                    let why = ctx.look().await.ok().and_then(|l| l.state);
                    let e = match why.as_deref() {
                        Some("ended") => ConnectError::NoSuchMeeting(format!(
                            "{}: the meeting has ended",
                            p.platform
                        )),
                        Some("denied") | Some("removed") => {
                            ConnectError::Refused(format!("{}: entry refused", p.platform))
                        }
                        _ => ConnectError::Refused(format!(
                            "{}: step '{}' found nothing to act on within {} s",
                            p.platform,
                            step.name,
                            step.timeout_seconds.unwrap_or(step_default.as_secs())
                        )),
                    };
                    return Err(fail(e).await);
                }
                Err(e) => {
                    return Err(fail(ConnectError::Unreachable(format!(
                        "{}: step '{}': {e}",
                        p.platform, step.name
                    )))
                    .await);
                }
            }
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let watcher = tokio::spawn(watch(ctx.clone(), browser.clone(), self.s.clone(), stop_rx));
        Ok(Box::new(BrowserMeeting {
            ctx,
            browser,
            stop: Some(stop_tx),
            watcher,
            handler,
            _profile_dir: dir,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meeting_page_renders_in_a_sandboxed_chromium_by_default() {
        let args = chromium_args(&BrowserSettings::default());
        assert!(
            !args
                .iter()
                .any(|a| a.contains("no-sandbox") || a.contains("setuid-sandbox")),
            "{args:?}"
        );
        assert!(args.iter().any(|a| a == "headless=new"));
        // The configured default is the same.
        assert!(!meetbot_core::config::BrowserBotConfig::default().no_sandbox);
        // Only when asked for (a bot run as root) is it turned off.
        let off = chromium_args(&BrowserSettings {
            no_sandbox: true,
            ..BrowserSettings::default()
        });
        assert!(off.iter().any(|a| a == "no-sandbox"), "{off:?}");
    }

    #[test]
    fn labels_are_cut_to_the_frame_limit_at_a_character_boundary() {
        let long = "é".repeat(40);
        let l = label(&long);
        assert!(l.len() <= 64 && l.chars().all(|c| c == 'é'));
        assert_eq!(label("Sarah"), "Sarah");
    }

    #[test]
    fn mixed_audio_belongs_to_the_speaker_and_tracks_to_their_owner() {
        let mut l = Labels {
            mode: AudioMode::Mixed,
            ..Labels::default()
        };
        assert_eq!(l.of(1), "mixed");
        l.speaker = Some("Ann".into());
        assert_eq!(l.of(1), "Ann");
        let mut l = Labels::default();
        assert_eq!(l.of(3), "track-3");
        l.per_relay.insert(3, "Bob".into());
        assert_eq!(l.of(3), "Bob");
    }

    #[test]
    fn look_answers_parse_and_garbage_is_an_error_not_a_panic() {
        let l: Look = serde_json::from_str(
            r#"{"state":"admitted","participants":[{"id":"a","name":"Ann","speaking":true,"track":null}],"count":null,"offers":[],"closed":[]}"#,
        )
        .unwrap();
        assert_eq!(l.state.as_deref(), Some("admitted"));
        assert!(serde_json::from_str::<Look>(r#"{"state":5}"#).is_err());
    }
}

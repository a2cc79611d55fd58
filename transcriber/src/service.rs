//! The transcriber service: the bots' audio streams in (`/v1/audio/<tenant>/<job>`, the frames of
//! `meetbot_bot::audio_frame`), per-participant Opus decode, 48 -> 16 kHz, voice-activity
//! segmentation, utterances queued to the tenant's `SpeechEngine`; recognised segments are
//! streamed live (`/v1/live/<tenant>/<job>`, server-sent events) and, at the end of the stream,
//! assembled into the meeting's transcript, sealed under the tenant's key and stored, then
//! summarised and the summary sealed and stored.
//!
//! Audio exists only in memory and is zeroized once its text exists. Each utterance's text is
//! stored sealed as soon as it is recognised (a `TranscriptPart`, decision 0041); a frame is
//! acknowledged once everything up to it is stored or was silence, so a bot keeps in memory what
//! a crashed transcriber had not yet made durable and replays it to any replica, which skips
//! what its parts already hold. On shutdown the service stops taking streams, stores the
//! utterances it holds and closes its streams: their bots resume elsewhere.

use crate::audio::{OPUS_RATE, OpusTo16k};
use crate::engine::SpeechEngine;
use crate::parts::{Durable, PartBody, PartOf, Resumed};
use crate::summarize::Summarizer;
use crate::transcript::{Segment, TranscriptDoc};
use crate::vad::{Utterance, Vad, VadSettings};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use meetbot_bot::audio_frame::Frame;
use meetbot_core::TenantId;
use meetbot_core::model::{Summary, Transcript};
use meetbot_store::vault::Tenants;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

/// Why the listener's TLS certificate or key cannot be used (each names its file).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} is not valid PEM: {}", .0.display(), .1)]
    BadCertificate(PathBuf, String),
    #[error(
        "{} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted)",
        .0.display()
    )]
    NoKey(PathBuf),
    #[error(
        "the certificate {} and the key {} cannot serve TLS together (is the key this certificate's?): {}",
        .0.display(),
        .1.display(),
        .2
    )]
    Unusable(PathBuf, PathBuf, String),
}

/// TLS for the audio listener (`wss://`): the certificate chain in `cert_file` (PEM, leaf
/// first) and its private key in `key_file` (PEM), served with rustls on aws-lc-rs, TLS 1.2 and
/// 1.3, HTTP/1.1 only (WebSocket upgrades and the live event stream need it). Read once: a
/// renewed certificate takes a restart.
pub fn tls_config(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map(zeroize::Zeroizing::new)
            .map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(cert_file.to_path_buf(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_file.to_path_buf()));
    }
    // The key's own parse errors are not repeated: they could quote its lines.
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?)
        .map_err(|_| TlsError::NoKey(key_file.to_path_buf()))?;
    let unusable =
        |e: rustls::Error| TlsError::Unusable(cert_file.into(), key_file.into(), e.to_string());
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(unusable)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(unusable)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Which engine serves a tenant: the operator's per-tenant engine, else the one the tenant chose
/// among those offered (its `speech_engine` setting), else the default.
pub struct Engines {
    pub default: Arc<dyn SpeechEngine>,
    pub per_tenant: HashMap<String, Arc<dyn SpeechEngine>>,
    pub offered: HashMap<String, Arc<dyn SpeechEngine>>,
}

impl Engines {
    pub fn single(e: Arc<dyn SpeechEngine>) -> Self {
        Engines {
            default: e,
            per_tenant: HashMap::new(),
            offered: HashMap::new(),
        }
    }

    pub fn pick(&self, t: &TenantId, choice: Option<&str>) -> Arc<dyn SpeechEngine> {
        self.per_tenant
            .get(t.as_str())
            .or_else(|| choice.and_then(|c| self.offered.get(c)))
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub frames: Counter,
    pub garbage: Counter,
    pub decode_errors: Counter,
    pub utterances: Counter,
    pub engine_errors: Counter,
    pub transcripts: Counter,
    pub summaries: Counter,
    /// Sessions whose audio and text were dropped unstored: their bot was stopped by a person
    /// or their meeting deleted.
    pub discarded: Counter,
    /// From the end of an utterance (its last audio received) to its text.
    pub utterance_latency: Histogram,
    /// Utterances' texts stored as parts of a running stream.
    pub parts: Counter,
    /// Attempts to store a part that failed (each is tried again until stored).
    pub part_errors: Counter,
    /// Streams resumed from stored parts (after a restart or a hand-over).
    pub resumed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            frames: Counter::default(),
            garbage: Counter::default(),
            decode_errors: Counter::default(),
            utterances: Counter::default(),
            engine_errors: Counter::default(),
            transcripts: Counter::default(),
            summaries: Counter::default(),
            discarded: Counter::default(),
            parts: Counter::default(),
            part_errors: Counter::default(),
            resumed: Counter::default(),
            utterance_latency: Histogram::new([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
        }
    }
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("meetbot_transcriber");
        r.register("audio_frames", "Audio frames taken", self.frames.clone());
        r.register(
            "garbage_frames",
            "Messages that were not valid frames",
            self.garbage.clone(),
        );
        r.register(
            "opus_decode_errors",
            "Opus packets that did not decode",
            self.decode_errors.clone(),
        );
        r.register(
            "utterances",
            "Utterances sent to the speech engine",
            self.utterances.clone(),
        );
        r.register(
            "engine_errors",
            "Utterances the speech engine failed on",
            self.engine_errors.clone(),
        );
        r.register(
            "transcripts_stored",
            "Transcripts sealed and stored",
            self.transcripts.clone(),
        );
        r.register(
            "summaries_stored",
            "Summaries sealed and stored",
            self.summaries.clone(),
        );
        r.register(
            "sessions_discarded",
            "Sessions dropped unstored: bot stopped or meeting deleted",
            self.discarded.clone(),
        );
        r.register(
            "transcript_parts_stored",
            "Utterances' texts stored as they were made",
            self.parts.clone(),
        );
        r.register(
            "transcript_part_errors",
            "Failed attempts to store an utterance's text (tried again until stored)",
            self.part_errors.clone(),
        );
        r.register(
            "streams_resumed",
            "Streams resumed from stored parts",
            self.resumed.clone(),
        );
        r.register(
            "utterance_latency_seconds",
            "End of an utterance to its text",
            self.utterance_latency.clone(),
        );
    }
}

pub struct Settings {
    pub secret: SecretString,
    pub vad: VadSettings,
    /// Transcripts expire this long after they are stored (None: kept until deleted).
    pub retention: Option<Duration>,
    /// A partial result for an utterance still going on, every this much of it (None: off).
    /// Partials are only computed when the engine has nothing else queued.
    pub partial_every: Option<Duration>,
    /// The names dataset for tenants that turn redaction on (None: names by context only).
    pub names: Option<Arc<meetbot_redact::Names>>,
    /// The web app's address (`api.public_url`): summaries link to `<it>/app/meetings/<id>`.
    pub meeting_pages: Option<String>,
}

/// A live segment, as sent to `/v1/live` subscribers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LiveSegment {
    #[serde(flatten)]
    pub segment: Segment,
    /// False for a partial result: the text of an utterance still going on, replaced by the
    /// final segment when it ends. Only final segments are stored.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Seconds from the end of the utterance (for a partial: of the audio so far) to this text.
    pub latency_seconds: f64,
}

struct Participant {
    dec: OpusTo16k,
    vad: Vad,
    /// Session offset (ms) of this VAD's timeline start.
    base_ms: u64,
    last_ts: Option<u32>,
    /// Length of the utterance in progress at which its next partial result is due.
    next_partial_ms: u64,
    /// Frames of this participant up to this one are stored already (a resumed stream).
    skip_until: u64,
    /// The latest frames fed (their sequence numbers): an utterance's audio reaches back over
    /// the pre-roll, so it began no later than the oldest of them.
    recent: std::collections::VecDeque<u64>,
    /// The first frame of the utterance in progress (pre-roll included), if one is.
    open_from: Option<u64>,
}

impl Participant {
    /// The first frame the utterance ending now began at (pre-roll included), when the frame
    /// in hand is `seq`.
    fn first_frame(&self, seq: u64) -> u64 {
        self.open_from
            .or(self.recent.front().copied())
            .unwrap_or(seq)
    }

    /// Where the participant's timeline stands after the frames fed: ms from the stream's
    /// start, and the RTP timestamp of the last frame.
    fn timeline(&self) -> (u64, Option<u32>) {
        (self.base_ms + self.vad.position_ms(), self.last_ts)
    }
}

/// A participant whose last frame is this many frames of the stream back is not about to
/// start speaking: its pre-roll frames are no longer held unacknowledged (a muted participant
/// sends nothing, and must not hold the bot's buffer).
const RECENT: u64 = 250;

/// Frames after a stored part within which a new participant's first frame is placed on the
/// timeline from that part (a minute of one speaker): audio the bot replays after a restart
/// belongs where it was said, not at the time of the replay.
const ANCHORED: u64 = 3_000;

/// Where frame `seq` falls on a resumed stream's timeline, estimated from the nearest stored
/// point before it (frames of `speakers` participants interleave, 20 ms each): `None` when no
/// stored point is near enough.
fn timeline_at(anchors: &[(u64, u64)], seq: u64, speakers: usize) -> Option<u64> {
    let (at, ms) = anchors.iter().rev().find(|(at, _)| *at < seq)?;
    let behind = seq - at;
    (behind <= ANCHORED).then(|| ms + behind * 20 / speakers.max(1) as u64)
}

/// Frames an utterance's pre-roll and start reach back over (20 ms each), and one more.
fn reach_back(v: &VadSettings) -> usize {
    (v.pre_roll.as_millis() as usize / 20) + v.start_frames + 2
}

struct Work {
    participant: String,
    /// The participant's display name, if the bot told it.
    speaker: Option<String>,
    start_ms: u64,
    utterance: Utterance,
    ended_at: Instant,
    partial: bool,
    /// For a final utterance: where its audio begins and ends in the stream and where the
    /// participant's timeline stands after it, to store it as a part.
    durable: Option<Mark>,
}

/// What the part of an utterance (or of display names) records.
#[derive(Clone)]
struct Mark {
    first_seq: u64,
    last_seq: u64,
    resume_ms: u64,
    last_ts: Option<u32>,
    names: BTreeMap<String, String>,
    presence: Vec<crate::presence::Presence>,
}

/// One job's stream (kept across reconnects).
struct Session {
    tenant: TenantId,
    job: String,
    started: Instant,
    /// The next sequence number expected.
    next_seq: u64,
    participants: BTreeMap<String, Participant>,
    /// Display names by participant id (`ParticipantNamed` frames).
    names: BTreeMap<String, String>,
    /// Who came and went, on the stream's timeline (names filled in when stored).
    presence: Vec<crate::presence::Presence>,
    /// Joins and leaves up to this frame are already in the stays loaded from stored parts:
    /// the bot replays frames not acknowledged yet, and a replayed join or leave would count
    /// twice.
    presence_until: u64,
    work: Option<mpsc::Sender<Work>>,
    worker: Option<tokio::task::JoinHandle<()>>,
    /// Segments held in memory at the end (the assembled transcript's, handed back by
    /// `discard_with` to be zeroized with the rest).
    segments: Arc<Mutex<Vec<Segment>>>,
    live: broadcast::Sender<LiveSegment>,
    end_seen: bool,
    /// Set once the stream's stored parts were read (at its first connection here).
    meeting_id: Option<String>,
    /// The bot stream served (its ticket's id; frames are numbered per bot).
    stream: Option<String>,
    started_at: chrono::DateTime<chrono::Utc>,
    /// Where each participant resumes (from stored parts), taken when it is next heard.
    resume: BTreeMap<String, crate::parts::ResumePoint>,
    /// Known points of the resumed stream's timeline: (frame, ms), by frame.
    anchors: Vec<(u64, u64)>,
    durable: Arc<Mutex<Durable>>,
    /// Woken when a work is done: the acknowledgement may move although no frame came (a bot
    /// whose buffer is full sends none until it does).
    progress: Arc<tokio::sync::Notify>,
    /// Works of names and stays only, queued for the engine worker: they take no engine time,
    /// so they do not make the engine busy for a partial result.
    names_queued: Arc<std::sync::atomic::AtomicUsize>,
    /// The highest frame acknowledged.
    acked: u64,
    /// The engine worker died: the connection ends and the stream starts over from the bot's
    /// buffer and the stored parts.
    broken: bool,
    /// Set once the job is found stopped (a person made the bot leave or deleted the
    /// meeting): everything buffered was dropped and later frames are acknowledged unread.
    stopped: Option<&'static str>,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finished {
    Stored,
    /// The job was stopped: its audio and text were dropped, nothing stored or delivered.
    Discarded,
}

/// How often a running stream looks at its job's state (a stopped job's audio is dropped).
const STOP_CHECK: Duration = Duration::from_secs(2);

/// A session and what live subscribers need without waiting for the stream's lock.
struct Handle {
    live: broadcast::Sender<LiveSegment>,
    /// Set at the end of the stream: whether the transcript was stored or dropped.
    done: watch::Sender<Option<Result<Finished, String>>>,
    /// Connection generation: a new connection for the job supersedes the one before (which may
    /// be stalled on a dead network path and would otherwise hold the session).
    generation: watch::Sender<u64>,
    state: tokio::sync::Mutex<Session>,
}

pub struct Service {
    tenants: Arc<Tenants>,
    engines: Engines,
    summarizer: Arc<dyn Summarizer>,
    settings: Settings,
    metrics: Metrics,
    sessions: Mutex<HashMap<(TenantId, String), Arc<Handle>>>,
    outbox: std::sync::OnceLock<Arc<meetbot_delivery::outbox::Outbox>>,
    /// Set on shutdown: no stream is taken, open ones store what they hold and close.
    draining: watch::Sender<bool>,
    /// Streams being served.
    streams: watch::Sender<usize>,
}

/// Counts a stream being served while it lives.
struct Serving(watch::Sender<usize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// How long a stream being handed over waits for its queued utterances to be stored (what is
/// not stored by then is replayed by its bot to the next transcriber).
const HAND_OVER_WAIT: Duration = Duration::from_secs(10);

/// How long after the start of a shutdown a stream may still end here (its bot leaving at the
/// same time): past it, the stream is handed over.
const HAND_OVER_AFTER: Duration = Duration::from_secs(3);

/// The job token's check (`Authorization: Bearer v2.<expiry>.<mac>`, MAC compared in constant
/// time): a missing, malformed, foreign or expired token answers 401 saying which.
fn authorized(
    secret: &SecretString,
    headers: &HeaderMap,
    tenant: &str,
    job: &str,
) -> Result<u64, Refused> {
    use meetbot_bot::audio_stream::{check_job_token, unix_now};
    let Some(token) = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "this job's audio token is required: Authorization: Bearer <token>".into(),
        ));
    };
    check_job_token(secret, token, tenant, job, unix_now())
        .map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))
}

/// Why nothing of `job`'s stream may be kept, if so: its job was stopped by a person or no
/// longer exists (its meeting erased), or its meeting is deleted.
async fn stop_reason(
    store: &dyn meetbot_store::Store,
    tenant: &TenantId,
    job: &str,
) -> Result<Option<&'static str>, String> {
    let job = match store.get_bot_job(tenant, job).await {
        Ok(Some(j)) => j.value,
        Ok(None) => return Ok(Some("the bot job no longer exists")),
        Err(e) => return Err(e.to_string()),
    };
    if matches!(job.state, meetbot_core::model::BotJobState::Stopped(_)) {
        return Ok(Some("a person stopped the bot"));
    }
    meetbot_scheduler::stop::meeting_stopped(store, tenant, &job.meeting_id)
        .await
        .map_err(|e| e.to_string())
}

/// Stores one part, unless its stream was stopped meanwhile (then the text is dropped). Tries
/// until it is stored: until then its frames are not acknowledged, so the bot's buffer is the
/// copy of the audio and a store outage pushes back on the bot instead of losing text.
/// Returns whether it was stored.
async fn store_part(
    tenants: &Tenants,
    tenant: &TenantId,
    of: &PartOf<'_>,
    body: &PartBody,
    failures: &Counter,
) -> bool {
    let store = tenants.store();
    let mut wait = Duration::from_millis(200);
    loop {
        let attempt = async {
            if let Some(why) = stop_reason(store.as_ref(), tenant, of.job_id).await? {
                return Ok::<_, String>(Some(why));
            }
            let vault = tenants.vault(tenant).await.map_err(|e| e.to_string())?;
            let part = crate::parts::seal(&vault, of, body).map_err(|e| e.to_string())?;
            store
                .put_transcript_part(tenant, &part)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        };
        match attempt.await {
            Ok(None) => return true,
            Ok(Some(_stopped)) => return false,
            Err(e) => {
                failures.inc();
                tracing::warn!(job = %of.job_id, error = %e, "an utterance's text could not be stored yet; trying again (its audio stays unacknowledged with the bot)");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Takes a work's first frame off the pending set when dropped: done, failed or panicked, a
/// work never holds the acknowledgement for ever.
struct PendingGuard(Arc<Mutex<Durable>>, u64, Arc<tokio::sync::Notify>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .done(self.1);
        self.2.notify_one();
    }
}

/// A refused connect: its status and what to tell the client.
type Refused = (StatusCode, String);

/// Whether `job`'s stream (or live text) may be opened now: only while the job is in its
/// meeting (`launched`/`joined`; a `stopped` one is taken and dropped unread) and its stream
/// has not ended, i.e. no transcript of its meeting was stored since it was launched. A valid
/// token replayed after the meeting is refused (403) and appends nothing; a bot reconnecting
/// mid-meeting is served and resumes. The store unreadable: 503 (the bot retries).
///
/// With `token_expiry` (a bot's stream), the token must be the one of the job's current ticket
/// (decision 0032): a bot the launcher replaced cannot take the stream back.
///
/// Returns the stream's id and the job's meeting.
async fn stream_open(
    svc: &Service,
    tenant: &TenantId,
    job: &str,
    token_expiry: Option<u64>,
) -> Result<(String, String), Refused> {
    use meetbot_core::model::BotJobState;
    let refused = |why: &str| {
        (
            StatusCode::FORBIDDEN,
            format!("this job's audio stream is closed: {why}"),
        )
    };
    let unreadable = |e: String| {
        tracing::warn!(tenant = %tenant, job, error = %e, "job state unreadable at connect");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "job state unreadable; try again".to_string(),
        )
    };
    let store = svc.tenants.store();
    let Some(j) = store
        .get_bot_job(tenant, job)
        .await
        .map_err(|e| unreadable(e.to_string()))?
    else {
        return Err(refused("the bot job does not exist"));
    };
    let j = j.value;
    if let (Some(exp), Some(t)) = (token_expiry, &j.ticket)
        && t.audio_expires != Some(exp)
    {
        return Err((
            StatusCode::UNAUTHORIZED,
            "the audio token is not the job's current bot's: a newer bot serves this job".into(),
        ));
    }
    // A stopped job's stream is still taken, acknowledged unread so its bot ends cleanly,
    // and keeps nothing (`serve` drops it at once; decision 0030).
    if !matches!(
        j.state,
        BotJobState::Launched | BotJobState::Joined | BotJobState::Stopped(_)
    ) {
        return Err(refused("the bot job is not in a meeting"));
    }
    let launched = j
        .history
        .iter()
        .rev()
        .find(|c| matches!(c.state, BotJobState::Launched))
        .map_or(j.join_at, |c| c.at);
    let stored = store
        .transcript_for_meeting(tenant, &j.meeting_id)
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    if stored.is_some_and(|t| t.created_at >= launched) {
        return Err(refused("its transcript is stored"));
    }
    // The bot's stream: its ticket (a relaunched bot gets a new one), else its token.
    let stream = match (&j.ticket, token_expiry) {
        (Some(t), _) => t.id.clone(),
        (None, Some(exp)) => format!("token-{exp}"),
        (None, None) => String::new(),
    };
    Ok((stream, j.meeting_id))
}

impl Service {
    pub fn new(
        tenants: Arc<Tenants>,
        engines: Engines,
        summarizer: Arc<dyn Summarizer>,
        settings: Settings,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Service {
            tenants,
            engines,
            summarizer,
            settings,
            metrics,
            sessions: Mutex::new(HashMap::new()),
            outbox: std::sync::OnceLock::new(),
            draining: watch::channel(false).0,
            streams: watch::channel(0).0,
        })
    }

    /// Shutdown: new streams are refused (503); an open one that ends within
    /// [`HAND_OVER_AFTER`] (its bot is leaving too) is finished here, any other stores the
    /// utterances it has queued, then closes; its bot reconnects, to this service's successor
    /// or another replica, and replays what was not stored yet. See [`Self::handed_over`].
    pub fn hand_over(&self) {
        self.draining.send_replace(true);
    }

    /// Resolves once no stream is served any more.
    pub async fn handed_over(&self) {
        let mut rx = self.streams.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/v1/audio/{tenant}/{job}", axum::routing::get(audio))
            .route("/v1/live/{tenant}/{job}", axum::routing::get(live))
            .with_state(self.clone())
    }

    fn session(&self, tenant: &TenantId, job: &str) -> Arc<Handle> {
        let mut g = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        g.entry((tenant.clone(), job.to_string()))
            .or_insert_with(|| {
                let (live, _) = broadcast::channel(256);
                let (done, _) = watch::channel(None);
                Arc::new(Handle {
                    live: live.clone(),
                    done,
                    generation: watch::channel(0).0,
                    state: tokio::sync::Mutex::new(Session {
                        tenant: tenant.clone(),
                        job: job.to_string(),
                        started: Instant::now(),
                        // Any first frame: a stream resumed from stored parts starts at the
                        // oldest frame its bot holds.
                        next_seq: 0,
                        participants: BTreeMap::new(),
                        names: BTreeMap::new(),
                        presence: Vec::new(),
                        presence_until: 0,
                        work: None,
                        worker: None,
                        segments: Arc::new(Mutex::new(Vec::new())),
                        live,
                        end_seen: false,
                        meeting_id: None,
                        stream: None,
                        started_at: chrono::Utc::now(),
                        resume: BTreeMap::new(),
                        anchors: Vec::new(),
                        durable: Arc::new(Mutex::new(Durable::default())),
                        progress: Arc::new(tokio::sync::Notify::new()),
                        names_queued: Default::default(),
                        acked: 0,
                        broken: false,
                        stopped: None,
                    }),
                })
            })
            .clone()
    }

    /// Starts the engine worker of a session (once). Each final utterance's segments are
    /// stored as a part before its frames may be acknowledged.
    async fn ensure_worker(&self, s: &mut Session) {
        if s.work.is_some() {
            return;
        }
        // Bounded: when the engine falls behind, frames stop being taken and acknowledged,
        // which pushes back on the bot (its buffer holds them).
        let (tx, mut rx) = mpsc::channel::<Work>(64);
        s.work = Some(tx);
        let engine = self.engine_for(&s.tenant).await;
        let redactor = self.redactor_for(&s.tenant).await;
        let live = s.live.clone();
        let m = self.metrics.clone();
        let durable = s.durable.clone();
        let progress = s.progress.clone();
        // One count per worker: a worker that died took its queue with it.
        s.names_queued = Default::default();
        let names_queued = s.names_queued.clone();
        let tenants = self.tenants.clone();
        let (tenant, job, meeting) = (s.tenant.clone(), s.job.clone(), s.meeting_id.clone());
        let stream = s.stream.clone().unwrap_or_default();
        let started_at = s.started_at;
        s.worker = Some(tokio::spawn(async move {
            // The meeting's names (speaker labels, names said): a name found once is redacted
            // in every later utterance of this stream. Held in this task only.
            let mut memory = meetbot_redact::Memory::default();
            while let Some(w) = rx.recv().await {
                if w.participant.is_empty() {
                    names_queued.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                }
                let _pending = w
                    .durable
                    .as_ref()
                    .map(|mark| PendingGuard(durable.clone(), mark.first_seq, progress.clone()));
                if !w.partial && !w.participant.is_empty() {
                    m.utterances.inc();
                }
                let mut made = Vec::new();
                if !w.participant.is_empty() {
                    match engine.transcribe(&w.utterance.pcm).await {
                        Ok(rs) => {
                            let latency = w.ended_at.elapsed().as_secs_f64();
                            m.utterance_latency.observe(latency);
                            for r in rs {
                                // Redacted before it is kept, streamed or stored; the raw
                                // text is wiped.
                                let text = match &redactor {
                                    Some(rd) => {
                                        if let Some(label) = &w.speaker {
                                            memory.learn_label(label);
                                        }
                                        rd.redact_in(&zeroize::Zeroizing::new(r.text), &mut memory)
                                    }
                                    None => r.text,
                                };
                                let seg = Segment {
                                    participant: w.participant.clone(),
                                    speaker: w.speaker.clone(),
                                    start_ms: w.start_ms + r.start_ms,
                                    end_ms: (w.start_ms + r.end_ms).min(
                                        w.start_ms + w.utterance.end_ms() - w.utterance.start_ms,
                                    ),
                                    text,
                                };
                                if !w.partial {
                                    made.push(seg.clone());
                                }
                                let _ = live.send(LiveSegment {
                                    segment: seg,
                                    is_final: !w.partial,
                                    latency_seconds: latency,
                                });
                            }
                        }
                        Err(e) => {
                            m.engine_errors.inc();
                            tracing::warn!(job = %job, engine = engine.name(), error = %e, "an utterance was not transcribed");
                        }
                    }
                }
                // `w.utterance` (the audio) is dropped, and so zeroized, here.
                drop(w.utterance);
                let Some(mark) = w.durable else { continue };
                if !made.is_empty() || w.participant.is_empty() {
                    let of = PartOf {
                        meeting_id: meeting.as_deref().unwrap_or_default(),
                        job_id: &job,
                        stream: &stream,
                        participant: &w.participant,
                        last_seq: mark.last_seq,
                        resume_ms: mark.resume_ms,
                        last_ts: mark.last_ts,
                        stream_started_at: started_at,
                    };
                    let body = PartBody {
                        segments: made,
                        names: mark.names,
                        presence: mark.presence,
                    };
                    if meeting.is_some()
                        && store_part(&tenants, &tenant, &of, &body, &m.part_errors).await
                    {
                        m.parts.inc();
                    }
                }
                // `_pending` releases the work's first frame here: stored (or the stream
                // stopped), the acknowledgement may pass it.
            }
        }));
    }

    /// The stream's bot job, which must exist.
    async fn job_of(
        &self,
        tenant: &TenantId,
        job: &str,
    ) -> Result<meetbot_core::model::BotJob, String> {
        Ok(self
            .tenants
            .store()
            .get_bot_job(tenant, job)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("job {job} does not exist"))?
            .value)
    }

    /// Reads what earlier connections of this stream stored (on this process or another):
    /// its meeting, its timeline's start, each participant's resume point and the display
    /// names. Once per session.
    async fn load(&self, s: &mut Session) -> Result<(), String> {
        if s.meeting_id.is_some() {
            return Ok(());
        }
        let store = self.tenants.store();
        let job = self.job_of(&s.tenant, &s.job).await?;
        let parts = store
            .transcript_parts(&s.tenant, &job.meeting_id, Some(&s.job))
            .await
            .map_err(|e| e.to_string())?;
        if !parts.is_empty() {
            let vault = self
                .tenants
                .vault(&s.tenant)
                .await
                .map_err(|e| e.to_string())?;
            let mut opened = Vec::with_capacity(parts.len());
            for p in parts {
                let body = match crate::parts::open(&vault, &p) {
                    Ok(b) => b,
                    Err(e) => {
                        // Not this stream's end: its frames are replayed by the bot if it
                        // still holds them.
                        tracing::warn!(job = %s.job, part = %p.id, error = %e, "a stored part does not open; skipped");
                        continue;
                    }
                };
                // Only the resume points, names and stays are kept here; the text is read at
                // the end.
                if p.participant.is_empty() && p.stream == s.stream.as_deref().unwrap_or_default() {
                    s.presence_until = s.presence_until.max(p.last_seq);
                }
                crate::presence::merge_presence(&mut s.presence, body.presence);
                opened.push((p, body.names));
            }
            let r = Resumed::from_parts(&opened, s.stream.as_deref().unwrap_or_default());
            if let Some(at) = r.started_at {
                let ago = (chrono::Utc::now() - at)
                    .to_std()
                    .unwrap_or_default()
                    .min(crate::parts::PART_LIFETIME.to_std().unwrap_or_default());
                s.started = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
                s.started_at = at;
            }
            s.anchors = r
                .participants
                .values()
                .map(|p| (p.skip_until, p.resume_ms))
                .collect();
            s.anchors.sort_unstable();
            s.resume = r.participants;
            for (k, v) in r.names {
                s.names.entry(k).or_insert(v);
            }
            self.metrics.resumed.inc();
            tracing::info!(tenant = %s.tenant, job = %s.job, parts = opened.len(), "stream resumed from its stored parts");
        }
        s.meeting_id = Some(job.meeting_id);
        Ok(())
    }

    /// Stops the session's worker (if any) and removes the parts its stream stored.
    async fn purge_parts(&self, s: &mut Session) {
        if let Some(w) = s.worker.take() {
            w.abort();
            let _ = w.await;
        }
        let Some(meeting) = s.meeting_id.clone() else {
            return;
        };
        let (tenant, job) = (s.tenant.clone(), s.job.clone());
        if let Err(e) = self
            .tenants
            .store()
            .delete_transcript_parts(&tenant, &meeting, Some(&job))
            .await
        {
            tracing::warn!(job = %job, error = %e, "the parts of a dropped stream could not be removed; they expire within 48 h");
        }
    }

    /// The tenant's redactor when its settings turn redaction on. When the settings cannot be
    /// read, every class and the built-in topics are redacted: a transcript with too little in
    /// it is better than one with identifiers its tenant asked to keep out.
    async fn redactor_for(&self, t: &TenantId) -> Option<meetbot_redact::Redactor> {
        let names = self.settings.names.clone();
        let failure = match self.tenants.store().get_tenant_settings(t).await {
            Ok(s) => {
                let r = s.and_then(|s| s.redaction)?;
                match meetbot_redact::Redactor::from_settings(&r, names.clone()) {
                    Ok(r) => return r,
                    Err(e) => format!("redaction settings are invalid: {e}"),
                }
            }
            Err(e) => format!("tenant settings unreadable: {e}"),
        };
        tracing::warn!(tenant = %t, error = %failure, "redacting every class");
        Some(
            meetbot_redact::Redactor::new()
                .with_topics(meetbot_redact::Topics::builtin())
                .with_names_opt(names),
        )
    }

    /// The tenant's engine, with its choice read from its settings (the default when they
    /// cannot be read: transcription goes on).
    async fn engine_for(&self, t: &TenantId) -> Arc<dyn SpeechEngine> {
        let choice = match self.tenants.store().get_tenant_settings(t).await {
            Ok(s) => s.and_then(|s| s.speech_engine),
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "tenant settings unreadable; default engine");
                None
            }
        };
        self.engines.pick(t, choice.as_deref())
    }

    /// Why nothing of this session may be kept, if so: its job was stopped by a person or no
    /// longer exists (its meeting erased), or its meeting is deleted.
    async fn stop_reason(
        &self,
        tenant: &TenantId,
        job: &str,
    ) -> Result<Option<&'static str>, String> {
        stop_reason(self.tenants.store().as_ref(), tenant, job).await
    }

    /// Drops everything the session holds of the meeting: queued and buffered audio
    /// (zeroizing buffers), recognised text and display names (zeroized), the engine worker,
    /// and the parts its stream stored.
    async fn discard(&self, s: &mut Session, why: &'static str) {
        use zeroize::Zeroize;
        if s.stopped.is_some() {
            return;
        }
        s.stopped = Some(why);
        drop(s.work.take());
        s.participants.clear();
        s.presence.clear();
        for (_, mut name) in std::mem::take(&mut s.names) {
            name.zeroize();
        }
        let mut segments =
            std::mem::take(&mut *s.segments.lock().unwrap_or_else(|p| p.into_inner()));
        for seg in &mut segments {
            seg.text.zeroize();
            if let Some(n) = seg.speaker.as_mut() {
                n.zeroize();
            }
        }
        // The worker (its queue: utterances in zeroizing buffers) is stopped first, so no part
        // lands after the purge.
        self.purge_parts(s).await;
        self.metrics.discarded.inc();
        tracing::info!(tenant = %s.tenant, job = %s.job, why, "session dropped: nothing stored");
    }

    /// [`Self::discard`] for a session whose text was already taken into `doc`.
    async fn discard_with(&self, s: &mut Session, doc: &mut TranscriptDoc, why: &'static str) {
        // Handed back so that `discard` zeroizes them with the rest.
        *s.segments.lock().unwrap_or_else(|p| p.into_inner()) = std::mem::take(&mut doc.segments);
        for p in &mut doc.presence {
            if let Some(n) = p.name.as_mut() {
                zeroize::Zeroize::zeroize(n);
            }
        }
        self.discard(s, why).await;
    }

    /// Looks at the job; drops the session's audio and text if it was stopped.
    async fn check_stopped(&self, s: &mut Session) {
        if s.stopped.is_some() {
            return;
        }
        match self.stop_reason(&s.tenant.clone(), &s.job.clone()).await {
            Ok(Some(why)) => self.discard(s, why).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %s.job, error = %e, "job state unreadable"),
        }
    }

    /// Takes one frame; returns the sequence to acknowledge, if the acknowledgement moved: the
    /// highest frame below which everything is stored or was silence.
    async fn take(&self, s: &mut Session, f: Frame) -> Option<u64> {
        let seq = f.seq();
        if s.next_seq == 0 {
            // The first frame of a stream new to this process: the bot's oldest unacknowledged.
            s.next_seq = seq;
        }
        if seq < s.next_seq {
            return (s.acked > 0).then_some(s.acked);
        }
        if seq > s.next_seq || s.end_seen {
            // Out of order: the bot resumes from what we said; ignore.
            return None;
        }
        if s.stopped.is_some() {
            // A stopped job: acknowledged so the bot can end, never read.
            if matches!(f, Frame::Ack { .. } | Frame::Resume { .. }) {
                return None;
            }
            s.end_seen |= matches!(f, Frame::EndOfStream { .. });
            s.next_seq = seq + 1;
            s.acked = seq;
            return Some(seq);
        }
        self.ensure_worker(s).await;
        let now_ms = s.started.elapsed().as_millis() as u64;
        // Utterances that ended with this frame: participant, timeline base, utterance, first
        // frame of its audio.
        let mut ready: Vec<(String, u64, Utterance, u64)> = Vec::new();
        let mut partial: Option<(String, u64, Utterance)> = None;
        let mut names_changed = false;
        let mut presence_changed = false;
        // A join or leave replayed from before a restart is already in the loaded stays.
        let counts = seq > s.presence_until;
        // Where the timelines of participants that ended with this frame stood.
        let mut gone: BTreeMap<String, (u64, Option<u32>)> = BTreeMap::new();
        let back = reach_back(&self.settings.vad);
        match f {
            Frame::Audio {
                participant,
                timestamp,
                payload,
                ..
            } => {
                self.metrics.frames.inc();
                if !s.participants.contains_key(&participant) {
                    let Ok(dec) = OpusTo16k::new() else {
                        return None;
                    };
                    // Heard: in the call (a participant the bot saw no name for joins here).
                    presence_changed |=
                        counts && crate::presence::heard(&mut s.presence, &participant, now_ms);
                    // A participant heard before a restart continues its timeline and skips
                    // what its stored parts hold.
                    let resume = s.resume.remove(&participant);
                    let base_ms = match &resume {
                        Some(r) => r.resume_ms,
                        None => {
                            timeline_at(&s.anchors, seq, s.participants.len()).unwrap_or(now_ms)
                        }
                    };
                    s.participants.insert(
                        participant.clone(),
                        Participant {
                            dec,
                            vad: Vad::new(self.settings.vad.clone()),
                            base_ms,
                            last_ts: resume.as_ref().and_then(|r| r.last_ts),
                            next_partial_ms: 0,
                            skip_until: resume.as_ref().map_or(0, |r| r.skip_until),
                            recent: std::collections::VecDeque::new(),
                            open_from: None,
                        },
                    );
                }
                let p = s.participants.get_mut(&participant)?;
                if seq <= p.skip_until {
                    // Stored before this stream moved here: not heard twice.
                    s.next_seq = seq + 1;
                    return self.acknowledge(s, seq);
                }
                p.recent.push_back(seq);
                while p.recent.len() > back {
                    p.recent.pop_front();
                }
                // A gap in RTP time (the sender sent nothing, e.g. DTX): up to 2 s of silence
                // keeps the timeline; a longer one starts a new timeline at its true offset.
                if let Some(last) = p.last_ts {
                    let gap = timestamp.wrapping_sub(last) as usize;
                    let frame = (OPUS_RATE / 50) as usize;
                    if gap > frame && gap < OPUS_RATE as usize * 2 {
                        if let Ok(z) = p.dec.gap(gap - frame) {
                            for u in p.vad.push(&z) {
                                ready.push((participant.clone(), p.base_ms, u, p.first_frame(seq)));
                            }
                        }
                    } else if gap >= OPUS_RATE as usize * 2 && gap < u32::MAX as usize / 2 {
                        if let Some(u) = p.vad.finish() {
                            ready.push((participant.clone(), p.base_ms, u, p.first_frame(seq)));
                        }
                        let at = p.base_ms
                            + p.vad.position_ms()
                            + (gap as u64 * 1000 / OPUS_RATE as u64);
                        p.vad = Vad::new(self.settings.vad.clone());
                        p.base_ms = at;
                    }
                }
                p.last_ts = Some(timestamp);
                match p.dec.packet(&payload) {
                    Ok(pcm) => {
                        for u in p.vad.push(&pcm) {
                            ready.push((participant.clone(), p.base_ms, u, p.first_frame(seq)));
                        }
                        if let Some(every) = self.settings.partial_every {
                            let every = every.as_millis().max(500) as u64;
                            match p.vad.in_progress() {
                                None => p.next_partial_ms = every,
                                Some(u)
                                    if u.end_ms() - u.start_ms >= p.next_partial_ms.max(every) =>
                                {
                                    p.next_partial_ms = u.end_ms() - u.start_ms + every;
                                    partial = Some((participant.clone(), p.base_ms, u));
                                }
                                Some(_) => {}
                            }
                        }
                    }
                    Err(_) => {
                        self.metrics.decode_errors.inc();
                    }
                }
                // The utterance in progress began no later than the oldest recent frame; when
                // none is in progress, this participant's frames so far are done with.
                if p.vad.has_speech() {
                    if p.open_from.is_none() || !ready.is_empty() {
                        p.open_from = p.recent.front().copied();
                    }
                } else {
                    p.open_from = None;
                }
            }
            Frame::ParticipantLeft { participant, .. } => {
                presence_changed |=
                    counts && crate::presence::leave(&mut s.presence, &participant, now_ms);
                if let Some(mut p) = s.participants.remove(&participant)
                    && let Some(u) = p.vad.finish()
                {
                    gone.insert(participant.clone(), p.timeline());
                    ready.push((participant, p.base_ms, u, p.first_frame(seq)));
                }
            }
            Frame::ParticipantNamed {
                participant, name, ..
            } => {
                presence_changed |=
                    counts && crate::presence::arrive(&mut s.presence, &participant, now_ms);
                // Bounded: a meeting has at most a few hundred participants.
                if (s.names.len() < 1024 || s.names.contains_key(&participant))
                    && s.names.get(&participant) != Some(&name)
                {
                    s.names.insert(participant, name);
                    names_changed = true;
                }
            }
            Frame::EndOfStream { .. } => {
                for (name, p) in std::mem::take(&mut s.participants) {
                    let mut p = p;
                    let first = p.first_frame(seq);
                    if let Some(u) = p.vad.finish() {
                        gone.insert(name.clone(), p.timeline());
                        ready.push((name, p.base_ms, u, first));
                    }
                }
                s.end_seen = true;
            }
            Frame::Ack { .. } | Frame::Resume { .. } => return None,
        }
        // A participant that went quiet in the middle of speech (muted: its feed just stops)
        // ends its utterance once the stream has gone on without it for a while, so it never
        // holds the acknowledgement for the rest of the meeting.
        for (name, p) in s.participants.iter_mut() {
            if p.vad.has_speech()
                && p.recent
                    .back()
                    .is_some_and(|last| seq.saturating_sub(*last) >= RECENT)
            {
                let first = p.first_frame(seq);
                if let Some(u) = p.vad.finish() {
                    ready.push((name.clone(), p.base_ms, u, first));
                }
                p.open_from = None;
            }
        }
        let tx = s.work.clone();
        if let Some(tx) = tx {
            let mark = |s: &Session, participant: &str, first_seq: u64| {
                let (resume_ms, last_ts) = match s.participants.get(participant) {
                    Some(p) => p.timeline(),
                    None => gone.get(participant).copied().unwrap_or((0, None)),
                };
                Mark {
                    first_seq,
                    last_seq: seq,
                    resume_ms,
                    last_ts,
                    // Display names and stays go into parts of their own (when one changes).
                    names: if participant.is_empty() {
                        s.names.clone()
                    } else {
                        BTreeMap::new()
                    },
                    presence: if participant.is_empty() {
                        s.presence.clone()
                    } else {
                        Vec::new()
                    },
                }
            };
            if names_changed || presence_changed {
                // Display names and stays are stored too: a stream resumed elsewhere keeps
                // them.
                let m = mark(s, "", seq);
                s.durable.lock().unwrap_or_else(|p| p.into_inner()).add(seq);
                let w = Work {
                    participant: String::new(),
                    speaker: None,
                    start_ms: 0,
                    utterance: Utterance {
                        start_ms: 0,
                        pcm: Default::default(),
                    },
                    ended_at: Instant::now(),
                    partial: false,
                    durable: Some(m),
                };
                s.names_queued
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                if tx.send(w).await.is_err() {
                    self.worker_gone(s, seq);
                    return None;
                }
            }
            for (participant, base, utterance, first_seq) in ready {
                let m = mark(s, &participant, first_seq);
                s.durable
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(first_seq);
                let w = Work {
                    speaker: s.names.get(&participant).cloned(),
                    participant,
                    start_ms: base + utterance.start_ms,
                    utterance,
                    ended_at: Instant::now(),
                    partial: false,
                    durable: Some(m),
                };
                if tx.send(w).await.is_err() {
                    self.worker_gone(s, first_seq);
                    return None;
                }
            }
            // A partial only when the engine is idle (nothing but names and stays queued): it
            // never delays a final segment.
            if let Some((participant, base, utterance)) = partial
                && tx.max_capacity() - tx.capacity()
                    <= s.names_queued.load(std::sync::atomic::Ordering::Acquire)
            {
                let _ = tx.try_send(Work {
                    speaker: s.names.get(&participant).cloned(),
                    participant,
                    start_ms: base + utterance.start_ms,
                    utterance,
                    ended_at: Instant::now(),
                    partial: true,
                    durable: None,
                });
            }
        }
        s.next_seq = seq + 1;
        self.acknowledge(s, seq)
    }

    /// The engine worker ended (it panicked): what it held is not acknowledged, since the
    /// frame is not taken (`next_seq` stays), and the next frame starts a new worker after the
    /// bot resends.
    fn worker_gone(&self, s: &mut Session, first_seq: u64) {
        tracing::error!(job = %s.job, "the engine worker ended; the stream starts over from the bot's buffer");
        s.durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .done(first_seq);
        s.work = None;
        s.worker = None;
        s.broken = true;
    }

    /// The acknowledgement after frame `seq`, if it moved: below the first frame of every
    /// utterance in progress or not yet stored.
    fn acknowledge(&self, s: &mut Session, seq: u64) -> Option<u64> {
        let mut low = seq + 1;
        for p in s.participants.values() {
            // Speech in progress holds from its first frame; a participant heard lately holds
            // its last frames too, the pre-roll of speech that may be starting.
            let recent = p
                .recent
                .back()
                .is_some_and(|last| seq.saturating_sub(*last) < RECENT);
            if let Some(o) = p.open_from.or(p.recent.front().copied().filter(|_| recent)) {
                low = low.min(o);
            }
        }
        if let Some(d) = s.durable.lock().unwrap_or_else(|p| p.into_inner()).lowest() {
            low = low.min(d);
        }
        let ack = low.saturating_sub(1);
        if ack > s.acked {
            s.acked = ack;
            Some(ack)
        } else {
            None
        }
    }

    /// After end of stream: waits for the engine, stores the sealed transcript (merged with
    /// one stored earlier for the same meeting), then the summary. A stopped job (or a
    /// deleted meeting) is looked for before and after the engine drains, right before the
    /// transcript is written and once the summary is made: then everything is dropped, the
    /// transcript just written erased, and nothing (more) stored.
    async fn finish(self: &Arc<Self>, s: &mut Session) -> Result<Finished, String> {
        if s.stopped.is_none()
            && let Some(why) = self.stop_reason(&s.tenant.clone(), &s.job.clone()).await?
        {
            self.discard(s, why).await;
        }
        if s.stopped.is_some() {
            return Ok(Finished::Discarded);
        }
        // Dropping the sender ends the worker once the queue is drained.
        drop(s.work.take());
        if let Some(w) = s.worker.take() {
            w.await
                .map_err(|e| format!("the engine worker failed: {e}"))?;
        }
        if let Some(why) = self.stop_reason(&s.tenant.clone(), &s.job.clone()).await? {
            self.discard(s, why).await;
            return Ok(Finished::Discarded);
        }
        let segments = std::mem::take(&mut *s.segments.lock().unwrap_or_else(|p| p.into_inner()));
        let store = self.tenants.store().clone();
        let job = self.job_of(&s.tenant, &s.job).await?;
        let vault = self
            .tenants
            .vault(&s.tenant)
            .await
            .map_err(|e| e.to_string())?;
        let engine = self.engine_for(&s.tenant).await;
        let id = format!("tr-{}", job.meeting_id);
        let mut doc = match store
            .get_transcript(&s.tenant, &id)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(old) => TranscriptDoc::open(&vault, &old).map_err(|e| e.to_string())?,
            None => TranscriptDoc {
                meeting_id: Some(job.meeting_id.clone()),
                language: "en".into(),
                engine: engine.name().into(),
                segments: vec![],
                presence: vec![],
            },
        };
        // The stream's text: its stored parts (from every process that served it), and what
        // could not be stored as it was made. Each segment once, even if a part was merged
        // before and not removed.
        let parts = store
            .transcript_parts(&s.tenant, &job.meeting_id, Some(&s.job))
            .await
            .map_err(|e| e.to_string())?;
        let mut from_parts = Vec::new();
        let mut presence = std::mem::take(&mut s.presence);
        let mut names = s.names.clone();
        for p in &parts {
            match crate::parts::open(&vault, p) {
                Ok(body) => {
                    from_parts.extend(body.segments);
                    crate::presence::merge_presence(&mut presence, body.presence);
                    for (k, v) in body.names {
                        names.entry(k).or_insert(v);
                    }
                }
                // One part that cannot be opened (its key retired, say) costs its utterance,
                // not the meeting.
                Err(e) => {
                    tracing::warn!(job = %s.job, part = %p.id, error = %e, "a stored part does not open; left out of the transcript")
                }
            }
        }
        crate::parts::merge(&mut doc.segments, segments.into_iter().chain(from_parts));
        crate::presence::name(&mut presence, &names);
        crate::presence::merge_presence(&mut doc.presence, presence);
        let tenant_settings = store
            .get_tenant_settings(&s.tenant)
            .await
            .map_err(|e| e.to_string())?;
        // Customer-held key mode seals a meeting to the customer's key once its summary is
        // delivered; a meeting where nobody spoke gets no summary, so its names are not kept.
        if doc.segments.is_empty()
            && tenant_settings
                .as_ref()
                .is_some_and(|t| t.customer_key.is_some())
        {
            doc.presence.clear();
        }
        drop(zeroize::Zeroizing::new(
            names.into_values().collect::<Vec<_>>(),
        ));
        // The tenant's retention (its rules for this meeting's clients and series, else its
        // days) wins over the service's.
        let service_days = self
            .settings
            .retention
            .map(|d| u32::try_from(d.as_secs().div_ceil(86_400)).unwrap_or(u32::MAX));
        use meetbot_store::retention::{Policy, expiry};
        let (transcript_days, summary_days) =
            Policy::of(&vault, tenant_settings.as_ref(), service_days)
                .map_err(|e| e.to_string())?
                .days_for_meeting(&*store, &vault, &s.tenant, &job.meeting_id)
                .await
                .map_err(|e| e.to_string())?;
        let now = chrono::Utc::now();
        let expires = expiry(now, transcript_days);
        let summary_expires = expiry(now, summary_days);
        let rec: Transcript = doc
            .seal(&vault, &id, &job.meeting_id, expires)
            .map_err(|e| e.to_string())?;
        // Stopped while the record was being prepared: nothing is written.
        if let Some(why) = self.stop_reason(&s.tenant.clone(), &s.job.clone()).await? {
            self.discard_with(s, &mut doc, why).await;
            return Ok(Finished::Discarded);
        }
        store
            .put_transcript(&s.tenant, &rec)
            .await
            .map_err(|e| e.to_string())?;
        // In the transcript now; a removal that fails leaves parts that merge once or expire.
        self.purge_parts(s).await;
        self.metrics.transcripts.inc();
        tracing::info!(tenant = %s.tenant, job = %s.job, segments = doc.segments.len(), "transcript stored");
        if doc.segments.is_empty() {
            return Ok(Finished::Stored);
        }
        let summary = self.summarizer.summarize(&doc).await;
        // Summarizing takes seconds (an LLM call): a meeting deleted or a bot stopped meanwhile
        // takes the transcript just written with it, and no summary is kept. The record goes
        // whole (parts of it merged from an earlier stream of the meeting too): putting an
        // older copy back could revive what a concurrent erasure has just removed.
        if let Some(why) = self.stop_reason(&s.tenant.clone(), &s.job.clone()).await? {
            store
                .delete_transcript(&s.tenant, &id)
                .await
                .map_err(|e| format!("erasing the transcript of a stopped meeting: {e}"))?;
            self.discard_with(s, &mut doc, why).await;
            return Ok(Finished::Discarded);
        }
        let summary = summary.map_err(|e| format!("summary: {e}"))?;
        let sid = format!("sum-{}", job.meeting_id);
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&summary).unwrap_or_default());
        let body = vault
            .seal::<Summary>(&sid, "body", &json)
            .map_err(|e| e.to_string())?;
        store
            .put_summary(
                &s.tenant,
                &Summary {
                    id: sid,
                    meeting_id: job.meeting_id.clone(),
                    body,
                    created_at: chrono::Utc::now(),
                    expires_at: summary_expires,
                    held: None,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        self.metrics.summaries.inc();
        tracing::info!(tenant = %s.tenant, job = %s.job, summarizer = self.summarizer.name(), "summary stored");
        if let Some(outbox) = self.outbox.get() {
            let title = meeting_title(&vault, store.as_ref(), &s.tenant, &job.meeting_id).await;
            let notice = meetbot_delivery::notice::Notice {
                meeting_id: job.meeting_id.clone(),
                title,
                overview: summary.overview.clone(),
                decisions: summary.decisions.clone(),
                action_items: summary
                    .action_items
                    .iter()
                    .map(|a| meetbot_delivery::notice::ActionItem {
                        owner: a.owner.clone(),
                        text: a.text.clone(),
                    })
                    .collect(),
                link: self.settings.meeting_pages.as_ref().map(|base| {
                    format!(
                        "{}/app/meetings/{}",
                        base.trim_end_matches('/'),
                        job.meeting_id
                    )
                }),
            };
            let n = outbox
                .enqueue_summary(store.as_ref(), &self.tenants, &s.tenant, &notice)
                .await
                .map_err(|e| format!("delivery: {e}"))?;
            tracing::info!(tenant = %s.tenant, job = %s.job, deliveries = n, "summary queued for delivery");
        }
        Ok(Finished::Stored)
    }

    /// A connection ended without the end of its stream (the bot reconnects, here or to
    /// another replica), or a new bot took the job over: the utterances queued to the engine
    /// are stored (for at most [`HAND_OVER_WAIT`]) and the session forgets the rest, which the
    /// bot still holds unacknowledged. Its next connection starts from the stored parts and the
    /// bot's oldest frame (`Resume{0}`), wherever it lands: a replica never serves from a
    /// stale memory of the stream.
    async fn reset(&self, s: &mut Session) {
        drop(s.work.take());
        s.participants.clear();
        if let Some(mut w) = s.worker.take()
            && tokio::time::timeout(HAND_OVER_WAIT, &mut w).await.is_err()
        {
            w.abort();
            let _ = w.await;
        }
        s.next_seq = 0;
        s.acked = 0;
        s.end_seen = false;
        s.broken = false;
        s.meeting_id = None;
        s.resume.clear();
        s.anchors.clear();
        s.durable = Arc::new(Mutex::new(Durable::default()));
    }

    /// Hand-over: the utterances queued to the engine are transcribed and stored (for at most
    /// [`HAND_OVER_WAIT`]); the one in progress stays with the bot, which replays it.
    async fn store_queued(&self, s: &mut Session) {
        self.reset(s).await;
        self.forget(s);
        tracing::info!(tenant = %s.tenant, job = %s.job, "stream handed over: its bot resumes elsewhere");
    }

    /// Removes the session from the map: the job's next connection starts a new one.
    fn forget(&self, s: &Session) {
        let key = (s.tenant.clone(), s.job.clone());
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// Summaries go out through `outbox` (to the tenant's delivery targets) once stored.
    pub fn deliver_through(&self, outbox: Arc<meetbot_delivery::outbox::Outbox>) {
        let _ = self.outbox.set(outbox);
    }
}

/// The meeting's title, opened (a generic one when it cannot be read).
async fn meeting_title(
    vault: &meetbot_store::vault::TenantVault,
    store: &dyn meetbot_store::Store,
    t: &TenantId,
    meeting_id: &str,
) -> String {
    match store.get_meeting(t, meeting_id).await {
        Ok(Some(m)) => vault
            .open_string::<meetbot_core::model::Meeting>(meeting_id, "title", &m.title)
            .unwrap_or_else(|_| "your meeting".into()),
        _ => "your meeting".into(),
    }
}

async fn audio(
    State(svc): State<Arc<Service>>,
    Path((tenant, job)): Path<(String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let expiry = match authorized(&svc.settings.secret, &headers, &tenant, &job) {
        Ok(e) => e,
        Err(refused) => return refused.into_response(),
    };
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if *svc.draining.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this transcriber is shutting down; reconnect",
        )
            .into_response();
    }
    let (stream, meeting) = match stream_open(&svc, &tenant, &job, Some(expiry)).await {
        Ok(open) => open,
        Err(refused) => return refused.into_response(),
    };
    let session = svc.session(&tenant, &job);
    let span = meetbot_core::meeting_span!("transcriber.stream", &tenant, &meeting, job = %job);
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| serve(svc, session, socket, stream).instrument(span))
}

async fn serve(svc: Arc<Service>, session: Arc<Handle>, mut socket: WebSocket, stream: String) {
    svc.streams.send_modify(|n| *n += 1);
    let _serving = Serving(svc.streams.clone());
    let mut draining = svc.draining.subscribe();
    // One connection at a time per job: a new one supersedes the old, which lets go of the
    // session at its next message boundary.
    let mut superseded = session.generation.subscribe();
    session.generation.send_modify(|g| *g += 1);
    let mine = *superseded.borrow_and_update();
    let mut s = session.state.lock().await;
    if *session.generation.borrow() != mine || *draining.borrow() {
        return;
    }
    if s.stream.as_ref().is_some_and(|x| *x != stream) {
        // Another bot for the job (relaunched): what the last one's stream holds is stored,
        // and the new one starts afresh on the same timeline.
        svc.reset(&mut s).await;
    }
    s.stream = Some(stream);
    // What earlier connections stored, here or on another process.
    if let Err(e) = svc.load(&mut s).await {
        tracing::warn!(tenant = %s.tenant, job = %s.job, error = %e, "the stream's stored parts are unreadable; the bot reconnects");
        return;
    }
    // A stopped job's stream is taken (so its bot can end) but never read.
    svc.check_stopped(&mut s).await;
    let hello = Frame::Resume { seq: s.next_seq }.encode();
    let Ok(hello) = hello else { return };
    if socket.send(Message::Binary(hello.into())).await.is_err() {
        return;
    }
    let mut check = tokio::time::interval(STOP_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ended = false;
    // Set when the service starts shutting down: a stream that ends by then (its bot is
    // leaving too, as in `meetbot dev`) is finished here; one that goes on is handed over.
    let mut hand_over_at: Option<tokio::time::Instant> = None;
    loop {
        let mut hand_over = false;
        let mut stored = false;
        let progress = s.progress.clone();
        let msg = tokio::select! {
            m = socket.recv() => Some(m),
            _ = progress.notified() => {
                stored = true;
                None
            }
            _ = async { superseded.wait_for(|g| *g != mine).await.map(|_| ()) } => break,
            _ = async { draining.wait_for(|d| *d).await.map(|_| ()) }, if hand_over_at.is_none() => {
                hand_over_at = Some(tokio::time::Instant::now() + HAND_OVER_AFTER);
                None
            }
            _ = async { tokio::time::sleep_until(hand_over_at.unwrap_or_else(tokio::time::Instant::now)).await }, if hand_over_at.is_some() => {
                hand_over = true;
                None
            }
            _ = check.tick() => None,
        };
        if hand_over {
            svc.store_queued(&mut s).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        if stored {
            // An utterance was stored: acknowledge what that released.
            let last = s.next_seq.saturating_sub(1);
            if last > 0
                && let Some(ack) = svc.acknowledge(&mut s, last)
                && !send_ack(&mut socket, ack).await
            {
                break;
            }
            continue;
        }
        let Some(msg) = msg else {
            svc.check_stopped(&mut s).await;
            continue;
        };
        let Some(Ok(msg)) = msg else { break };
        let Message::Binary(b) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        let frame = match Frame::decode(&b) {
            Ok(f) => f,
            Err(_) => {
                svc.metrics.garbage.inc();
                continue;
            }
        };
        let is_end = matches!(frame, Frame::EndOfStream { .. });
        let (seq, before) = (frame.seq(), s.next_seq);
        let mut ack = svc.take(&mut s, frame).await;
        // The end, taken just now: the transcript is made, then the end acknowledged.
        if is_end && s.end_seen && s.next_seq != before {
            let span = tracing::info_span!(target: "meetbot", "transcriber.finish", job = %s.job);
            let r = svc.finish(&mut s).instrument(span).await;
            if let Err(e) = &r {
                tracing::error!(tenant = %s.tenant, job = %s.job, error = %e, "storing the transcript failed");
            }
            let ok = r.is_ok();
            if r == Ok(Finished::Discarded) {
                tracing::info!(tenant = %s.tenant, job = %s.job, "end of a stopped stream: nothing stored");
            }
            session.done.send_replace(Some(r));
            if !ok {
                // Not acknowledged: the bot keeps the end frame and tries again.
                s.end_seen = false;
                s.next_seq -= 1;
                break;
            }
            svc.forget(&s);
            s.acked = seq;
            ack = Some(seq);
            ended = true;
        }
        if s.broken {
            break;
        }
        let Some(ack) = ack else { continue };
        if !send_ack(&mut socket, ack).await {
            break;
        }
    }
    if !ended {
        svc.reset(&mut s).await;
    }
}

/// Acknowledges everything up to `seq`; false when the connection is gone.
async fn send_ack(socket: &mut WebSocket, seq: u64) -> bool {
    match (Frame::Ack { seq }).encode() {
        Ok(a) => socket.send(Message::Binary(a.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn live(
    State(svc): State<Arc<Service>>,
    Path((tenant, job)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorized(&svc.settings.secret, &headers, &tenant, &job) {
        return refused.into_response();
    }
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(refused) = stream_open(&svc, &tenant, &job, None).await {
        return refused.into_response();
    }
    let session = svc.session(&tenant, &job);
    let (rx, done) = (session.live.subscribe(), session.done.subscribe());
    enum Next {
        Segment(LiveSegment),
        Lagged(u64),
        End(&'static str),
        Closed,
    }
    let stream =
        futures_util::stream::unfold((rx, done, false), |(mut rx, mut done, over)| async move {
            if over {
                return None;
            }
            let next = tokio::select! {
                r = rx.recv() => match r {
                    Ok(seg) => Next::Segment(seg),
                    Err(broadcast::error::RecvError::Lagged(n)) => Next::Lagged(n),
                    Err(broadcast::error::RecvError::Closed) => Next::Closed,
                },
                r = done.wait_for(|d| d.is_some()) => Next::End(match r.as_deref() {
                    Ok(Some(Ok(Finished::Stored))) => "stored",
                    Ok(Some(Ok(Finished::Discarded))) => "discarded",
                    _ => "failed",
                }),
            };
            let (ev, over) = match next {
                Next::Segment(seg) => {
                    let kind = if seg.is_final { "segment" } else { "partial" };
                    (Event::default().event(kind).json_data(&seg).ok()?, false)
                }
                Next::Lagged(n) => (Event::default().event("lagged").data(n.to_string()), false),
                Next::End(how) => (Event::default().event("end").data(how), true),
                Next::Closed => return None,
            };
            Some((Ok::<_, std::convert::Infallible>(ev), (rx, done, over)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod engine_choice_tests {
    use super::*;
    use crate::audio::Pcm;
    use crate::engine::{EngineError, Recognized};

    struct Named(&'static str);

    #[async_trait::async_trait]
    impl SpeechEngine for Named {
        fn name(&self) -> &str {
            self.0
        }
        async fn transcribe(&self, _: &Pcm) -> Result<Vec<Recognized>, EngineError> {
            Ok(vec![])
        }
    }

    #[test]
    fn the_operators_engine_wins_then_the_tenants_choice_then_the_default() {
        let mut e = Engines::single(Arc::new(Named("default")));
        e.offered.insert("base".into(), Arc::new(Named("base")));
        e.per_tenant
            .insert("forced01".into(), Arc::new(Named("forced")));
        let t = |s: &str| s.parse::<TenantId>().unwrap();
        assert_eq!(e.pick(&t("tenant01"), None).name(), "default");
        assert_eq!(e.pick(&t("tenant01"), Some("base")).name(), "base");
        assert_eq!(e.pick(&t("tenant01"), Some("gone")).name(), "default");
        assert_eq!(e.pick(&t("forced01"), Some("base")).name(), "forced");
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn a_replayed_participants_first_frame_is_placed_from_the_nearest_stored_point() {
        let anchors = [(100, 2_000), (400, 9_000)];
        // 50 frames after the last point, two speakers interleaving: half a second later.
        assert_eq!(timeline_at(&anchors, 450, 2), Some(9_500));
        assert_eq!(timeline_at(&anchors, 200, 1), Some(4_000));
        // Before any stored point, or far after the last one: no estimate (the clock decides).
        assert_eq!(timeline_at(&anchors, 50, 1), None);
        assert_eq!(timeline_at(&anchors, 400 + ANCHORED + 1, 1), None);
        assert_eq!(timeline_at(&[], 10, 1), None);
    }

    #[test]
    fn an_unreadable_or_empty_tls_file_is_refused_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let e = tls_config(&cert, &key).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(e.to_string().contains("tls.crt"), "{e}");
        std::fs::write(&cert, "no PEM here\n").unwrap();
        let e = tls_config(&cert, &key).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate(_)), "{e}");
        assert!(e.to_string().contains("tls.crt"), "{e}");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = tls_config(&cert, &key).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(e.to_string().contains("tls.key"), "{e}");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64 !\n").unwrap();
        let e = tls_config(&cert, &key).unwrap_err();
        assert!(matches!(e, TlsError::NoKey(_)), "{e}");
        assert!(e.to_string().contains("tls.key"), "{e}");
        assert!(!e.to_string().contains("not base64"), "{e}");
    }
}

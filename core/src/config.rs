//! Configuration: embedded defaults, then a TOML file, then `MEETBOT_*` environment variables
//! (nested keys joined by a double underscore: `MEETBOT_STORE__KIND=mongodb`).
//!
//! [`Config::load`] validates everything before any service starts; each problem names its field
//! and what is allowed, and all problems are reported at once.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    pub keys: KeysConfig,
    pub queue: QueueConfig,
    pub telemetry: TelemetryConfig,
    pub ops: OpsConfig,
    pub scheduler: SchedulerConfig,
    pub calendar: CalendarConfig,
    #[serde(default)]
    pub launcher: LauncherConfig,
    #[serde(default)]
    pub bot: BotConfig,
    #[serde(default)]
    pub transcriber: TranscriberConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub egress: EgressConfig,
}

/// Requests to addresses a tenant supplies (ICS feeds, webhook URLs) go through one client
/// (`meetbot-egress`) that reaches only public addresses over https.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// CIDR ranges where tenant-supplied URLs may nevertheless reach internal addresses (and
    /// plain http): on-premises services, `meetbot dev`'s loopback feed. Empty (the default):
    /// none. Env: `MEETBOT_EGRESS__ALLOW_PRIVATE='["10.20.0.0/16"]'`.
    pub allow_private: Vec<String>,
}

/// The REST API (`meetbot api`): sign-in, sessions, limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Where browsers reach the API (`https://meetbot.example.com`); the sign-in redirect URI is
    /// `<public_url>/v1/auth/callback`.
    pub public_url: String,
    /// A session unused this long ends (default 30 minutes).
    pub session_idle_seconds: u64,
    /// A session ends this long after sign-in, used or not (default 12 hours).
    pub session_max_seconds: u64,
    /// Request bodies larger than this are refused with 413.
    pub body_limit_bytes: usize,
    /// Requests per minute from one client address, and for one tenant.
    pub rate_per_ip_per_minute: u32,
    pub rate_per_tenant_per_minute: u32,
    /// The session cookie carries `Secure` (leave on unless the API is served over plain http
    /// on loopback).
    pub cookie_secure: bool,
    /// OpenID Connect providers for sign-in, by name (`google`, `microsoft`): issuer, client id
    /// and secret. The secret is best given in the environment
    /// (`MEETBOT_API__OIDC__GOOGLE__CLIENT_SECRET`).
    pub oidc: std::collections::BTreeMap<String, OidcProviderConfig>,
    /// Extra CA certificates (PEM) to trust for the identity providers (a private provider).
    pub oidc_ca_file: Option<PathBuf>,
    /// Proxies (CIDRs, `10.0.0.0/8`, or single addresses) whose `X-Forwarded-For` is believed:
    /// behind them, the client is the right-most forwarded address that is not itself a
    /// trusted proxy. Empty (the default): the TCP peer is the client and the header is ignored.
    /// `MEETBOT_API__TRUSTED_PROXIES='["10.0.0.0/8"]'`.
    pub trusted_proxies: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            session_idle_seconds: 1_800,
            session_max_seconds: 43_200,
            body_limit_bytes: 64 * 1024,
            rate_per_ip_per_minute: 600,
            rate_per_tenant_per_minute: 1_200,
            cookie_secure: true,
            oidc: Default::default(),
            oidc_ca_file: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// One OpenID provider for sign-in. Google: issuer `https://accounts.google.com`; Microsoft:
/// `https://login.microsoftonline.com/<directory>/v2.0`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
}

impl fmt::Debug for OidcProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProviderConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How summaries are delivered: the senders of the deployment (each tenant picks its targets).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Slack's Web API (`https://slack.com`).
    pub slack_base_url: String,
    /// The Slack app's bot token; prefer the environment (`MEETBOT_DELIVERY__SLACK_TOKEN`).
    /// Unset: Slack deliveries give up with that reason.
    #[serde(skip_serializing)]
    pub slack_token: Option<String>,
    /// SMTP relay for email; unset: email deliveries give up with that reason.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// "starttls", "tls" or "none" (a local relay only).
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    #[serde(skip_serializing)]
    pub smtp_password: Option<String>,
    pub from: String,
    /// Writes each email as an `.eml` file into this folder instead of sending it (one machine:
    /// `meetbot dev`'s outbox folder). Exclusive with `smtp_host`.
    pub email_dir: Option<PathBuf>,
    /// Signs webhook bodies (`MEETBOT_DELIVERY__WEBHOOK_SECRET`); unset: webhooks give up.
    #[serde(skip_serializing)]
    pub webhook_secret: Option<String>,
    /// How often the whole outbox is looked at: the safety net (retries, lapsed claims, other
    /// processes' deliveries); a new delivery wakes the worker of its own process at once.
    pub poll_seconds: u64,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            slack_base_url: "https://slack.com".into(),
            slack_token: None,
            smtp_host: None,
            smtp_port: 587,
            smtp_security: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            from: "meetbot <meetbot@localhost>".into(),
            email_dir: None,
            webhook_secret: None,
            poll_seconds: 5,
            max_attempts: 10,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// whisper.cpp in process (the model from `meetbot model fetch`); no network.
    Whisper,
    /// An OpenAI-compatible `/v1/audio/transcriptions` (OpenAI, Azure OpenAI, faster-whisper).
    Openai,
    /// Deepgram live streaming (`wss://api.deepgram.com/v1/listen`).
    Deepgram,
}

/// One speech engine. API keys come from the environment, e.g.
/// `MEETBOT_TRANSCRIBER__ENGINE__API_KEY`, and are never printed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub kind: EngineKind,
    /// whisper: a model name (`tiny.en`, `base`) or a GGML file path; HTTP engines: the model
    /// name they take (`whisper-1`, `nova-2`, ...).
    pub model: String,
    /// whisper: threads per decode and decodes at once.
    pub threads: usize,
    pub parallel: usize,
    /// whisper: beam search width (1: greedy decoding, fastest).
    pub beam_size: usize,
    pub language: String,
    /// HTTP engines: the service's base URL (`https://api.openai.com`, an Azure OpenAI
    /// endpoint, `http://whisper.internal:8000`, `wss://api.deepgram.com`).
    pub base_url: Option<String>,
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Azure OpenAI: the deployment name and `api-version` (both set means Azure's URL scheme).
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kind: EngineKind::Whisper,
            model: "tiny.en".into(),
            threads: 2,
            parallel: 1,
            beam_size: 5,
            language: "en".into(),
            base_url: None,
            api_key: None,
            azure_deployment: None,
            azure_api_version: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SummarizerKind {
    /// Local extractive summary: no network, no model.
    Extractive,
    /// OpenAI-compatible chat completions (OpenAI, Azure OpenAI, self-hosted).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummarizerConfig {
    pub kind: SummarizerKind,
    pub base_url: Option<String>,
    pub model: Option<String>,
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    /// Transcript characters per request; longer transcripts are summarised in parts.
    pub max_chunk_chars: usize,
}

impl Default for SummarizerConfig {
    fn default() -> Self {
        SummarizerConfig {
            kind: SummarizerKind::Extractive,
            base_url: None,
            model: None,
            api_key: None,
            azure_deployment: None,
            azure_api_version: None,
            max_chunk_chars: 24_000,
        }
    }
}

/// The transcriber service: the bots' audio endpoint, the speech engine (default and per
/// tenant) and the summarizer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriberConfig {
    /// The audio endpoint (`ws://<listen>/v1/audio/<tenant>/<job>`) and live transcripts.
    pub listen: SocketAddr,
    /// Where fetched models live (default `~/.cache/meetbot/models`).
    pub model_dir: Option<PathBuf>,
    pub engine: EngineConfig,
    /// Per-tenant engines, by tenant id; tenants not listed use `engine`.
    pub tenants: std::collections::BTreeMap<String, EngineConfig>,
    /// Engines tenants may choose for themselves (their `speech_engine` setting), by name.
    pub offered_engines: std::collections::BTreeMap<String, EngineConfig>,
    pub summarizer: SummarizerConfig,
    /// The secret bots derive their audio tokens from (the same as `bot.audio_token_secret`);
    /// prefer the environment (`MEETBOT_TRANSCRIBER__AUDIO_TOKEN_SECRET`).
    #[serde(skip_serializing)]
    pub audio_token_secret: Option<String>,
    /// Transcripts expire this many days after the meeting (0: kept until deleted).
    pub transcript_retention_days: u32,
    /// Live partial results for speech still going on, every this many ms of it (0: off).
    pub partial_every_ms: u64,
    /// TLS on the listener (`wss://`): the certificate chain, PEM, leaf first (both or neither
    /// with `tls_key_file`; read at start). Unset: plain `ws://`, for loopback only.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM, PKCS#8, PKCS#1 or SEC1) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for TranscriberConfig {
    fn default() -> Self {
        TranscriberConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8091)),
            model_dir: None,
            engine: EngineConfig::default(),
            tenants: Default::default(),
            offered_engines: Default::default(),
            summarizer: SummarizerConfig::default(),
            audio_token_secret: None,
            transcript_retention_days: 30,
            partial_every_ms: 2_000,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// What a bot does in a meeting. Timeouts are the defaults for every tenant and job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotConfig {
    /// The name participants see; it says the bot records.
    pub display_name: String,
    /// Posted in the meeting chat on joining, where the platform has a chat.
    pub chat_notice: String,
    pub waiting_room_timeout_seconds: u64,
    pub alone_timeout_seconds: u64,
    pub silence_timeout_seconds: u64,
    pub max_duration_seconds: u64,
    /// Janus HTTP API for Janus VideoRoom meetings (e.g. `http://janus:8088/janus`).
    pub janus_api_url: Option<String>,
    /// Host of the room links that are Janus rooms (`https://<host>/room/<id>?pin=...`).
    pub janus_room_host: Option<String>,
    /// Base URLs of meetbot room servers (`meetbot dev`'s demo room, e.g.
    /// `http://127.0.0.1:8095`): links `<base>/rooms/<name>` are joined with the room connector.
    pub room_servers: Vec<String>,
    /// Local address WebRTC uses (host candidates only on it).
    pub ice_ip: std::net::IpAddr,
    /// The transcriber's audio endpoint (`wss://.../v1/audio`); unset: audio is not streamed.
    pub transcriber_url: Option<String>,
    /// Extra CA certificates (PEM) trusted for the transcriber besides the system's roots (an
    /// in-cluster private CA); read by the launcher, which hands them to its bots in their
    /// tickets (the bot pod mounts no file).
    pub transcriber_ca_file: Option<PathBuf>,
    /// Shared with the transcriber to derive each job's audio token; prefer the environment
    /// (`MEETBOT_BOT__AUDIO_TOKEN_SECRET`).
    #[serde(skip_serializing)]
    pub audio_token_secret: Option<String>,
    /// Frames kept until the transcriber has stored their text (50 per second per speaker;
    /// a frame is acknowledged once its utterance is stored, decision 0041): the default holds
    /// 20 minutes of one speaker, about 6 MB of Opus.
    pub audio_buffer_frames: usize,
    /// Meetings on Google Meet, Teams and Zoom, joined through their web clients in Chromium.
    pub browser: BrowserBotConfig,
}

/// The browser connector: where Chromium is and how the platforms' web clients are driven.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserBotConfig {
    /// Debian's `chromium` (the bot image carries it).
    pub chromium: std::path::PathBuf,
    /// Platform profiles (`<platform>.toml`) that replace the built-in ones or add platforms;
    /// read at start, so a platform's UI change is fixed by editing a file.
    pub profiles_dir: Option<std::path::PathBuf>,
    /// Extra Chromium flags, without leading dashes (e.g. `host-resolver-rules=...`).
    pub extra_args: Vec<String>,
    /// Turns Chromium's own sandbox off (`--no-sandbox`). Off by default: a bot renders
    /// third-party meeting pages. The sandbox needs unprivileged user namespaces (the bot's
    /// Job grants them, decision 0031); Chromium refuses it as root, so only a bot run as root
    /// (tests, a developer's machine) sets this.
    pub no_sandbox: bool,
    /// A Chromium that does not answer for this long is declared hung (the session fails and
    /// the job is retried).
    pub hang_seconds: u64,
}

impl Default for BrowserBotConfig {
    fn default() -> Self {
        BrowserBotConfig {
            chromium: "/usr/bin/chromium".into(),
            profiles_dir: None,
            extra_args: Vec::new(),
            no_sandbox: false,
            hang_seconds: 6,
        }
    }
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            display_name: "meetbot (recording)".into(),
            chat_notice: "meetbot is recording this meeting to transcribe it. Ask the organiser to remove it if you do not agree.".into(),
            waiting_room_timeout_seconds: 900,
            alone_timeout_seconds: 60,
            silence_timeout_seconds: 600,
            max_duration_seconds: 4 * 3600,
            janus_api_url: None,
            janus_room_host: None,
            room_servers: Vec::new(),
            ice_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            transcriber_url: None,
            transcriber_ca_file: None,
            audio_token_secret: None,
            audio_buffer_frames: 60_000,
            browser: BrowserBotConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LauncherKind {
    /// `meetbot bot` child processes on this machine.
    Local,
    /// One batch/v1 Job per bot in a Kubernetes namespace.
    Kubernetes,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LauncherConfig {
    pub kind: LauncherKind,
    /// Local launcher: bots running at once.
    pub max_concurrent: usize,
    /// A bot's hard time limit (Kubernetes `activeDeadlineSeconds`).
    pub max_meeting_minutes: u64,
    /// How often launched bots are checked.
    pub watch_seconds: u64,
    /// Relaunches of a bot lost mid-meeting before its job fails.
    pub max_relaunches: u32,
    /// Where the launcher serves its bots' control endpoint (they report their state and ask
    /// whether to leave there, with their ticket's token; decision 0032).
    pub control_listen: String,
    /// The URL bots reach that endpoint at (e.g. `https://meetbot-launcher:8093`); unset:
    /// `http://<control_listen>`.
    pub control_url: Option<String>,
    /// TLS for the control endpoint (PEM): a certificate chain and its key, both or neither;
    /// bots trust the system's roots and `bot.transcriber_ca_file`.
    pub control_tls_cert_file: Option<PathBuf>,
    pub control_tls_key_file: Option<PathBuf>,
    pub kubernetes: KubernetesLauncherConfig,
}

impl Default for LauncherConfig {
    fn default() -> Self {
        LauncherConfig {
            kind: LauncherKind::Local,
            max_concurrent: 4,
            max_meeting_minutes: 240,
            watch_seconds: 5,
            max_relaunches: 3,
            control_listen: "127.0.0.1:8093".into(),
            control_url: None,
            control_tls_cert_file: None,
            control_tls_key_file: None,
            kubernetes: KubernetesLauncherConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesLauncherConfig {
    pub namespace: String,
    /// The meetbot image (its entrypoint is `meetbot`).
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub service_account: Option<String>,
    /// Secrets / ConfigMaps whose keys become the bot's environment (by name, never values).
    pub env_from_secrets: Vec<String>,
    pub env_from_config_maps: Vec<String>,
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    pub ttl_seconds_after_finished: Option<i32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// Microsoft Graph base URL.
    pub graph_base_url: String,
    /// Google APIs root URL.
    pub google_root_url: String,
    /// Where the push webhooks listen (`/webhooks/microsoft`, `/webhooks/google`).
    pub webhook_listen: SocketAddr,
    /// The public https URL that reaches `webhook_listen`; without it no push channels are made
    /// and polling carries sync.
    pub public_webhook_base: Option<String>,
    /// Polling interval (the fallback when push is unavailable).
    pub poll_seconds: u64,
    /// Sync window around now.
    pub window_days_back: u32,
    pub window_days_ahead: u32,
    /// Google OAuth client; without it Google calendars cannot be connected.
    #[serde(default)]
    pub google_oauth: Option<OAuthClientConfig>,
    /// Microsoft OAuth client (identity platform v2.0).
    #[serde(default)]
    pub microsoft_oauth: Option<OAuthClientConfig>,
    /// Where providers send the browser back; default `<public_webhook_base>/oauth/callback`,
    /// else `http://<webhook_listen>/oauth/callback` (loopback, for one machine).
    #[serde(default)]
    pub oauth_redirect_url: Option<String>,
    /// Extra PEM CA certificates to trust for OAuth endpoints (a private identity provider).
    #[serde(default)]
    pub oauth_ca_file: Option<PathBuf>,
    /// Refresh an access token when less than this is left.
    #[serde(default = "default_refresh_before")]
    pub oauth_refresh_before_seconds: u64,
    /// ICS feeds may be plain http, and then only to addresses inside `egress.allow_private`
    /// (a feed on this machine or a private network); off: https only.
    #[serde(default)]
    pub ics_allow_http: bool,
    /// The largest ICS feed read (bytes); a larger one is refused while it is read.
    #[serde(default = "default_ics_max_bytes")]
    pub ics_max_bytes: usize,
    /// Events (occurrences included) one ICS feed may hold inside the sync window; a feed
    /// with more is refused, with the reason on its connection.
    #[serde(default = "default_ics_max_instances")]
    pub ics_max_instances: usize,
    /// Recurrence steps one ICS feed may take to expand (occurrences before the window count).
    #[serde(default = "default_ics_max_steps")]
    pub ics_max_steps: usize,
    /// Events (and removals) one sync round of any calendar may apply.
    #[serde(default = "default_max_events_per_round")]
    pub max_events_per_round: usize,
    /// Calendar connections one user may have.
    #[serde(default = "default_max_connections_per_user")]
    pub max_connections_per_user: usize,
}

fn default_ics_max_bytes() -> usize {
    2 << 20
}
fn default_ics_max_instances() -> usize {
    5_000
}
fn default_ics_max_steps() -> usize {
    200_000
}
fn default_max_events_per_round() -> usize {
    10_000
}
fn default_max_connections_per_user() -> usize {
    10
}

fn default_refresh_before() -> u64 {
    300
}

/// An OAuth client registration. Endpoints default to the provider's; override them only for
/// a sovereign cloud or a test provider.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientConfig {
    pub client_id: String,
    /// Prefer the environment (`MEETBOT_CALENDAR__GOOGLE_OAUTH__CLIENT_SECRET`) over the file.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// Microsoft only: `common`, `organizations` or a directory (tenant) id.
    #[serde(default)]
    pub directory: Option<String>,
    /// Calendar scopes to ask for; default read-only events (+ offline_access for Microsoft).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub auth_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub revocation_url: Option<String>,
}

impl fmt::Debug for OAuthClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClientConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("directory", &self.directory)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// A bot's job is published this long before the meeting starts.
    pub lead_seconds: u64,
    /// A job found later than this past its join time is skipped with a reason, not launched.
    pub grace_seconds: u64,
    /// How often the scheduler looks for due jobs and changed meetings.
    pub tick_ms: u64,
    /// How long a replica's claim on a tenant lasts without renewal.
    pub lease_seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// MongoDB 7+ (or a wire-compatible server): one database per tenant.
    Mongodb,
    /// SQLite files on local disk: one file per tenant.
    Embedded,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub mongodb_uri: String,
    /// Prefix of every database name: `<prefix>_control`, `<prefix>_t_<tenant>`.
    pub db_prefix: String,
    /// Directory of the embedded store.
    pub embedded_dir: PathBuf,
    /// How long to wait for the server before giving up at start.
    pub connect_timeout_ms: u64,
    /// Expired records (retention) are purged this often (seconds).
    #[serde(default = "default_purge_seconds")]
    pub purge_seconds: u64,
}

fn default_purge_seconds() -> u64 {
    60
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProviderKind {
    /// A 256-bit key-encryption key in a local file (created on first use, mode 0600).
    Local,
    /// An RSA key in Azure Key Vault, used with wrapKey/unwrapKey (RSA-OAEP-256).
    AzureKeyVault,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureCredentialKind {
    ManagedIdentity,
    ClientSecret,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureKeyVaultConfig {
    /// `https://<vault>.vault.azure.net`
    pub vault_url: String,
    pub key_name: String,
    pub credential: AzureCredentialKind,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// Only for `credential = "client-secret"`; prefer the environment over the file.
    #[serde(skip_serializing)]
    pub client_secret: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    pub provider: KeyProviderKind,
    pub local_key_file: PathBuf,
    pub azure: AzureKeyVaultConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKind {
    Rabbitmq,
    InProcess,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub kind: QueueKind,
    /// `amqp://user:password@host:port/vhost`; the password never reaches a log line.
    pub amqp_url: String,
    /// Prefix of every exchange and queue name.
    pub prefix: String,
    pub connect_timeout_ms: u64,
    /// Deliveries of one job before RabbitMQ dead-letters it (quorum queue `x-delivery-limit`).
    pub delivery_limit: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// A `tracing` filter: `info`, `meetbot=debug,warn`, ...
    pub log_level: String,
    /// Where to send traces (OTLP over HTTP, e.g. `http://otel-collector:4318`; `/v1/traces` is
    /// added): one trace per meeting across the services, ids only (decision 0043). Unset: no
    /// traces leave the process.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// How long a service has, after SIGTERM or SIGINT, to finish or hand over its work and
    /// exit (whatever it was doing: starting, loading a model, in a meeting). Past it, the
    /// process exits anyway, naming what did not stop (exit code 5; decision 0040). Keep it
    /// below Kubernetes' `terminationGracePeriodSeconds` (30 in `infra/kubernetes/base`).
    #[serde(default = "default_shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
}

fn default_shutdown_grace_seconds() -> u64 {
    20
}

impl Default for Config {
    /// The embedded defaults: a single machine, no cloud account, nothing listening beyond loopback.
    fn default() -> Self {
        Config {
            store: StoreConfig {
                kind: StoreKind::Embedded,
                mongodb_uri: "mongodb://127.0.0.1:27017".into(),
                db_prefix: "meetbot".into(),
                embedded_dir: PathBuf::from("./data"),
                connect_timeout_ms: 5_000,
                purge_seconds: 60,
            },
            keys: KeysConfig {
                provider: KeyProviderKind::Local,
                local_key_file: PathBuf::from("./data/kek.key"),
                azure: AzureKeyVaultConfig {
                    vault_url: String::new(),
                    key_name: String::new(),
                    credential: AzureCredentialKind::ManagedIdentity,
                    tenant_id: None,
                    client_id: None,
                    client_secret: None,
                },
            },
            queue: QueueConfig {
                kind: QueueKind::InProcess,
                amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                prefix: "meetbot".into(),
                connect_timeout_ms: 5_000,
                delivery_limit: 5,
            },
            telemetry: TelemetryConfig {
                log_format: LogFormat::Text,
                log_level: "info".into(),
                otlp_endpoint: None,
            },
            ops: OpsConfig {
                listen: "127.0.0.1:9464".parse().expect("literal address"),
                shutdown_grace_seconds: default_shutdown_grace_seconds(),
            },
            calendar: CalendarConfig {
                graph_base_url: "https://graph.microsoft.com/v1.0".into(),
                google_root_url: "https://www.googleapis.com/".into(),
                webhook_listen: "127.0.0.1:9465".parse().expect("literal address"),
                public_webhook_base: None,
                poll_seconds: 300,
                window_days_back: 1,
                window_days_ahead: 28,
                google_oauth: None,
                microsoft_oauth: None,
                oauth_redirect_url: None,
                oauth_ca_file: None,
                oauth_refresh_before_seconds: 300,
                ics_allow_http: false,
                ics_max_bytes: default_ics_max_bytes(),
                ics_max_instances: default_ics_max_instances(),
                ics_max_steps: default_ics_max_steps(),
                max_events_per_round: default_max_events_per_round(),
                max_connections_per_user: default_max_connections_per_user(),
            },
            scheduler: SchedulerConfig {
                lead_seconds: 60,
                grace_seconds: 600,
                tick_ms: 1_000,
                lease_seconds: 15,
            },
            launcher: LauncherConfig::default(),
            bot: BotConfig::default(),
            transcriber: TranscriberConfig::default(),
            delivery: DeliveryConfig::default(),
            api: ApiConfig::default(),
            egress: EgressConfig::default(),
        }
    }
}

/// The only OAuth scopes meetbot may ask for (Google, Microsoft): calendar events.
pub const CALENDAR_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/calendar.events.readonly",
    "https://www.googleapis.com/auth/calendar.events",
    "https://graph.microsoft.com/Calendars.Read",
    "https://graph.microsoft.com/Calendars.ReadWrite",
    "offline_access",
];

impl CalendarConfig {
    /// Where providers send the browser back after consent.
    pub fn oauth_redirect(&self) -> String {
        if let Some(r) = &self.oauth_redirect_url {
            return r.clone();
        }
        match &self.public_webhook_base {
            Some(b) => format!("{}/oauth/callback", b.trim_end_matches('/')),
            None => format!("http://{}/oauth/callback", self.webhook_listen),
        }
    }
}

/// One invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path, e.g. `store.mongodb_uri`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {reason} (set MEETBOT_CONFIG or --config to a readable TOML file)"
    )]
    File { path: PathBuf, reason: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {}: {}", e.field, e.problem)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl Config {
    /// Loads defaults, then `file` (which must exist and be readable when given), then the
    /// process environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, Env::prefixed("MEETBOT_").split("__"))
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(file: Option<&Path>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut fig = Self::base(file)?;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("MEETBOT_") else {
                continue;
            };
            if rest == "CONFIG" {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            fig = fig.merge(Serialized::global(&key, parse_env_value(v)));
        }
        Self::finish(fig)
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let fig = Self::base(file)?.merge(env.ignore(&["config"]));
        Self::finish(fig)
    }

    fn base(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            fig = fig.merge(Toml::string(&text));
        }
        Ok(fig)
    }

    fn finish(fig: Figment) -> Result<Config, ConfigError> {
        let config: Config = fig.extract().map_err(|errs| {
            ConfigError::Invalid(
                errs.into_iter()
                    .map(|e| FieldError {
                        field: if e.path.is_empty() {
                            "(root)".into()
                        } else {
                            e.path.join(".")
                        },
                        problem: e.kind.to_string(),
                    })
                    .collect(),
            )
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every problem with this configuration, each naming its field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut bad = |field: &str, problem: String| {
            errs.push(FieldError {
                field: field.into(),
                problem,
            })
        };

        let s = &self.store;
        if s.kind == StoreKind::Mongodb
            && !(s.mongodb_uri.starts_with("mongodb://")
                || s.mongodb_uri.starts_with("mongodb+srv://"))
        {
            bad(
                "store.mongodb_uri",
                "must start with mongodb:// or mongodb+srv://".into(),
            );
        }
        if s.db_prefix.is_empty()
            || s.db_prefix.len() > 20
            || !s
                .db_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bad(
                "store.db_prefix",
                format!(
                    "{:?} is not allowed: use 1 to 20 of a-z, 0-9 and _",
                    s.db_prefix
                ),
            );
        }
        if s.kind == StoreKind::Embedded && s.embedded_dir.as_os_str().is_empty() {
            bad("store.embedded_dir", "must name a directory".into());
        }
        if !(100..=600_000).contains(&s.connect_timeout_ms) {
            bad(
                "store.connect_timeout_ms",
                format!("{} is out of range 100..=600000", s.connect_timeout_ms),
            );
        }

        let k = &self.keys;
        match k.provider {
            KeyProviderKind::Local if k.local_key_file.as_os_str().is_empty() => {
                bad("keys.local_key_file", "must name a file".into())
            }
            KeyProviderKind::AzureKeyVault => {
                let a = &k.azure;
                match url::Url::parse(&a.vault_url) {
                    Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
                    _ => bad(
                        "keys.azure.vault_url",
                        format!("{:?} is not an https:// vault URL", a.vault_url),
                    ),
                }
                if a.key_name.is_empty()
                    || !a
                        .key_name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    bad(
                        "keys.azure.key_name",
                        "must be 1+ of letters, digits and -".into(),
                    );
                }
                if a.credential == AzureCredentialKind::ClientSecret {
                    for (field, v) in [
                        ("keys.azure.tenant_id", &a.tenant_id),
                        ("keys.azure.client_id", &a.client_id),
                        ("keys.azure.client_secret", &a.client_secret),
                    ] {
                        if v.as_deref().unwrap_or("").is_empty() {
                            bad(
                                field,
                                "required when keys.azure.credential = \"client-secret\"".into(),
                            );
                        }
                    }
                }
            }
            KeyProviderKind::Local => {}
        }

        let q = &self.queue;
        if q.kind == QueueKind::Rabbitmq {
            match url::Url::parse(&q.amqp_url) {
                Ok(u)
                    if (u.scheme() == "amqp" || u.scheme() == "amqps")
                        && u.host_str().is_some() => {}
                _ => bad(
                    "queue.amqp_url",
                    "must be amqp://user:password@host:port/vhost or amqps://...".into(),
                ),
            }
        }
        if q.prefix.is_empty()
            || !q
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bad(
                "queue.prefix",
                format!("{:?} is not allowed: use letters, digits, - _ .", q.prefix),
            );
        }
        if !(100..=600_000).contains(&q.connect_timeout_ms) {
            bad(
                "queue.connect_timeout_ms",
                format!("{} is out of range 100..=600000", q.connect_timeout_ms),
            );
        }

        if !(1..=600).contains(&self.ops.shutdown_grace_seconds) {
            bad(
                "ops.shutdown_grace_seconds",
                format!(
                    "{} is out of range 1..=600 (seconds a service has to stop after SIGTERM)",
                    self.ops.shutdown_grace_seconds
                ),
            );
        }

        if !(1..=100).contains(&q.delivery_limit) {
            bad(
                "queue.delivery_limit",
                format!("{} is out of range 1..=100", q.delivery_limit),
            );
        }
        let sc = &self.scheduler;
        if sc.lead_seconds > 3_600 {
            bad(
                "scheduler.lead_seconds",
                format!("{} is out of range 0..=3600", sc.lead_seconds),
            );
        }
        if !(1..=86_400).contains(&sc.grace_seconds) {
            bad(
                "scheduler.grace_seconds",
                format!("{} is out of range 1..=86400", sc.grace_seconds),
            );
        }
        if !(10..=60_000).contains(&sc.tick_ms) {
            bad(
                "scheduler.tick_ms",
                format!("{} is out of range 10..=60000", sc.tick_ms),
            );
        }
        if sc.lease_seconds < 2 || sc.lease_seconds * 1000 < sc.tick_ms * 2 {
            bad(
                "scheduler.lease_seconds",
                "must be at least 2 and at least two ticks".into(),
            );
        }
        let b = &self.bot;
        if b.display_name.trim().is_empty() || b.display_name.len() > 64 {
            bad(
                "bot.display_name",
                "must be 1..=64 characters (participants see it)".into(),
            );
        }
        for (f, v, max) in [
            (
                "bot.waiting_room_timeout_seconds",
                b.waiting_room_timeout_seconds,
                86_400,
            ),
            ("bot.alone_timeout_seconds", b.alone_timeout_seconds, 86_400),
            (
                "bot.silence_timeout_seconds",
                b.silence_timeout_seconds,
                86_400,
            ),
            ("bot.max_duration_seconds", b.max_duration_seconds, 86_400),
        ] {
            if !(1..=max).contains(&v) {
                bad(f, format!("{v} is out of range 1..={max}"));
            }
        }
        if let Some(u) = &b.janus_api_url
            && !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            bad("bot.janus_api_url", format!("{u:?} is not an http(s) URL"));
        }
        if b.transcriber_ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            bad("bot.transcriber_ca_file", "must name a file".into());
        }
        if let Some(u) = &b.transcriber_url {
            if !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "ws" | "wss")) {
                bad("bot.transcriber_url", format!("{u:?} is not a ws(s) URL"));
            }
            if b.audio_token_secret.as_deref().is_none_or(|s| s.len() < 16) {
                bad(
                    "bot.audio_token_secret",
                    "required (16+ characters) when bot.transcriber_url is set".into(),
                );
            }
        }
        let d = &self.delivery;
        if !url::Url::parse(&d.slack_base_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            bad(
                "delivery.slack_base_url",
                format!("{:?} is not an http(s) URL", d.slack_base_url),
            );
        }
        if !matches!(d.smtp_security.as_str(), "starttls" | "tls" | "none") {
            bad(
                "delivery.smtp_security",
                format!("{:?}: use starttls, tls or none", d.smtp_security),
            );
        }
        if !(1..=3600).contains(&d.poll_seconds) {
            bad(
                "delivery.poll_seconds",
                format!("{} is out of range 1..=3600", d.poll_seconds),
            );
        }
        if d.email_dir.is_some() && d.smtp_host.is_some() {
            bad(
                "delivery.email_dir",
                "set either delivery.smtp_host (send) or delivery.email_dir (write files), not both"
                    .into(),
            );
        }
        for (i, r) in self.bot.room_servers.iter().enumerate() {
            if !url::Url::parse(r).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.path().trim_end_matches('/').is_empty()
            }) {
                bad(
                    &format!("bot.room_servers[{i}]"),
                    format!("{r:?} is not a base URL like http://127.0.0.1:8095"),
                );
            }
        }
        if !(1..=100).contains(&d.max_attempts) {
            bad(
                "delivery.max_attempts",
                format!("{} is out of range 1..=100", d.max_attempts),
            );
        }
        if !(1..=86_400).contains(&self.store.purge_seconds) {
            bad(
                "store.purge_seconds",
                format!("{} is out of range 1..=86400", self.store.purge_seconds),
            );
        }
        let a = &self.api;
        if !url::Url::parse(&a.public_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            bad(
                "api.public_url",
                format!("{:?} is not an http(s) URL", a.public_url),
            );
        }
        if !(1..=86_400).contains(&a.session_idle_seconds) {
            bad(
                "api.session_idle_seconds",
                format!("{} is out of range 1..=86400", a.session_idle_seconds),
            );
        }
        if a.session_max_seconds < a.session_idle_seconds || a.session_max_seconds > 30 * 86_400 {
            bad(
                "api.session_max_seconds",
                format!(
                    "{} must be at least session_idle_seconds and at most 30 days",
                    a.session_max_seconds
                ),
            );
        }
        if !(1024..=64 * 1024 * 1024).contains(&a.body_limit_bytes) {
            bad(
                "api.body_limit_bytes",
                format!("{} is out of range 1024..=67108864", a.body_limit_bytes),
            );
        }
        for (field, v) in [
            ("api.rate_per_ip_per_minute", a.rate_per_ip_per_minute),
            (
                "api.rate_per_tenant_per_minute",
                a.rate_per_tenant_per_minute,
            ),
        ] {
            if v == 0 {
                bad(field, "must be at least 1".into());
            }
        }
        for (i, p) in a.trusted_proxies.iter().enumerate() {
            match p.parse::<Cidr>() {
                Err(e) => bad(&format!("api.trusted_proxies[{i}]"), e),
                // /0 would believe `X-Forwarded-For` from anyone: every client its own bucket.
                Ok(c) if c.bits == 0 => bad(
                    &format!("api.trusted_proxies[{i}]"),
                    format!("{p:?} trusts every address: name the ingress's own range"),
                ),
                Ok(_) => {}
            }
        }
        for (name, o) in &a.oidc {
            if !url::Url::parse(&o.issuer).is_ok_and(|u| u.scheme() == "https") {
                bad(
                    &format!("api.oidc.{name}.issuer"),
                    format!("{:?} is not an https URL", o.issuer),
                );
            }
            if o.client_id.is_empty() {
                bad(&format!("api.oidc.{name}.client_id"), "is empty".into());
            }
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
                bad(
                    &format!("api.oidc.{name}"),
                    "provider names use a-z and -".into(),
                );
            }
        }
        if !(1..=60).contains(&b.browser.hang_seconds) {
            bad(
                "bot.browser.hang_seconds",
                format!("{} is out of range 1..=60", b.browser.hang_seconds),
            );
        }
        if let Some(d) = &b.browser.profiles_dir
            && !d.is_dir()
        {
            bad(
                "bot.browser.profiles_dir",
                format!("{} is not a directory", d.display()),
            );
        }
        if let Some(a) = b.browser.extra_args.iter().find(|a| a.starts_with('-')) {
            bad(
                "bot.browser.extra_args",
                format!("{a:?}: give flags without leading dashes"),
            );
        }
        if !(100..=1_000_000).contains(&b.audio_buffer_frames) {
            bad(
                "bot.audio_buffer_frames",
                format!("{} is out of range 100..=1000000", b.audio_buffer_frames),
            );
        }
        let t = &self.transcriber;
        let engines = std::iter::once(("transcriber.engine".to_string(), &t.engine)).chain(
            t.tenants
                .iter()
                .map(|(k, e)| (format!("transcriber.tenants.{k}"), e))
                .chain(
                    t.offered_engines
                        .iter()
                        .map(|(k, e)| (format!("transcriber.offered_engines.{k}"), e)),
                ),
        );
        for (name, e) in engines {
            if !(1..=64).contains(&e.threads) {
                bad(
                    &format!("{name}.threads"),
                    format!("{} is out of range 1..=64", e.threads),
                );
            }
            if !(1..=16).contains(&e.parallel) {
                bad(
                    &format!("{name}.parallel"),
                    format!("{} is out of range 1..=16", e.parallel),
                );
            }
            if !(1..=16).contains(&e.beam_size) {
                bad(
                    &format!("{name}.beam_size"),
                    format!("{} is out of range 1..=16", e.beam_size),
                );
            }
            if e.model.trim().is_empty() {
                bad(&format!("{name}.model"), "must not be empty".into());
            }
            match e.kind {
                EngineKind::Whisper => {}
                EngineKind::Openai | EngineKind::Deepgram => {
                    let schemes: &[&str] = if e.kind == EngineKind::Openai {
                        &["http", "https"]
                    } else {
                        &["ws", "wss"]
                    };
                    match &e.base_url {
                        Some(u)
                            if url::Url::parse(u).is_ok_and(|u| schemes.contains(&u.scheme())) => {}
                        Some(u) => bad(
                            &format!("{name}.base_url"),
                            format!("{u:?} is not a {} URL", schemes.join("/")),
                        ),
                        None => bad(
                            &format!("{name}.base_url"),
                            format!("required for the {:?} engine", e.kind),
                        ),
                    }
                }
            }
            if e.azure_deployment.is_some() != e.azure_api_version.is_some() {
                bad(
                    &format!("{name}.azure_api_version"),
                    "azure_deployment and azure_api_version go together".into(),
                );
            }
        }
        let sm = &t.summarizer;
        if sm.kind != SummarizerKind::Extractive {
            if sm.base_url.as_deref().is_none_or(|u| {
                !url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            }) {
                bad(
                    "transcriber.summarizer.base_url",
                    "an http(s) URL is required for this summarizer".into(),
                );
            }
            if sm.model.is_none() && sm.azure_deployment.is_none() {
                bad(
                    "transcriber.summarizer.model",
                    "required for this summarizer".into(),
                );
            }
        }
        if !(2_000..=1_000_000).contains(&sm.max_chunk_chars) {
            bad(
                "transcriber.summarizer.max_chunk_chars",
                format!("{} is out of range 2000..=1000000", sm.max_chunk_chars),
            );
        }
        if t.audio_token_secret
            .as_deref()
            .is_some_and(|s| s.len() < 16)
        {
            bad(
                "transcriber.audio_token_secret",
                "must be 16+ characters".into(),
            );
        }
        // TLS on the audio listener: a certificate and its key, both or neither. The files are
        // read when the transcriber starts (only its pod mounts them).
        match (&t.tls_cert_file, &t.tls_key_file) {
            (Some(_), None) => bad(
                "transcriber.tls_key_file",
                "required when transcriber.tls_cert_file is set: the certificate's private key (PEM)"
                    .into(),
            ),
            (None, Some(_)) => bad(
                "transcriber.tls_cert_file",
                "required when transcriber.tls_key_file is set: the certificate chain (PEM)"
                    .into(),
            ),
            _ => {}
        }
        for (f, v) in [
            ("transcriber.tls_cert_file", &t.tls_cert_file),
            ("transcriber.tls_key_file", &t.tls_key_file),
        ] {
            if v.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                bad(f, "must name a file".into());
            }
        }
        if t.partial_every_ms != 0 && !(500..=60_000).contains(&t.partial_every_ms) {
            bad(
                "transcriber.partial_every_ms",
                format!(
                    "{} is out of range 500..=60000 (or 0: off)",
                    t.partial_every_ms
                ),
            );
        }
        let l = &self.launcher;
        if l.control_listen.parse::<std::net::SocketAddr>().is_err() {
            bad(
                "launcher.control_listen",
                format!(
                    "{:?} is not an address and port (e.g. 0.0.0.0:8093)",
                    l.control_listen
                ),
            );
        }
        if let Some(u) = &l.control_url
            && !matches!(url::Url::parse(u), Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some())
        {
            bad(
                "launcher.control_url",
                format!("{u:?} is not an http(s) URL (e.g. http://meetbot-launcher:8093)"),
            );
        }
        match (&l.control_tls_cert_file, &l.control_tls_key_file) {
            (Some(_), None) => bad(
                "launcher.control_tls_key_file",
                "required when launcher.control_tls_cert_file is set: the certificate's private key (PEM)"
                    .into(),
            ),
            (None, Some(_)) => bad(
                "launcher.control_tls_cert_file",
                "required when launcher.control_tls_key_file is set: the certificate chain (PEM)"
                    .into(),
            ),
            _ => {}
        }
        if !(1..=1000).contains(&l.max_concurrent) {
            bad(
                "launcher.max_concurrent",
                format!("{} is out of range 1..=1000", l.max_concurrent),
            );
        }
        if !(1..=24 * 60).contains(&l.max_meeting_minutes) {
            bad(
                "launcher.max_meeting_minutes",
                format!("{} is out of range 1..=1440", l.max_meeting_minutes),
            );
        }
        if !(1..=300).contains(&l.watch_seconds) {
            bad(
                "launcher.watch_seconds",
                format!("{} is out of range 1..=300", l.watch_seconds),
            );
        }
        if l.kind == LauncherKind::Kubernetes {
            let k = &l.kubernetes;
            let dns_label = |v: &str| {
                !v.is_empty()
                    && v.len() <= 63
                    && v.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !v.starts_with('-')
                    && !v.ends_with('-')
            };
            if !dns_label(&k.namespace) {
                bad(
                    "launcher.kubernetes.namespace",
                    format!("{:?} is not a Kubernetes namespace name", k.namespace),
                );
            }
            if k.image.trim().is_empty() {
                bad(
                    "launcher.kubernetes.image",
                    "required when launcher.kind = \"kubernetes\"".into(),
                );
            }
        }
        let cal = &self.calendar;
        for (field, v) in [
            ("calendar.graph_base_url", &cal.graph_base_url),
            ("calendar.google_root_url", &cal.google_root_url),
        ] {
            match url::Url::parse(v) {
                Ok(u)
                    if (u.scheme() == "https" || u.scheme() == "http")
                        && u.host_str().is_some() => {}
                _ => bad(field, format!("{v:?} is not an http(s) URL")),
            }
        }
        for (name, o) in [
            ("google_oauth", &cal.google_oauth),
            ("microsoft_oauth", &cal.microsoft_oauth),
        ] {
            let Some(o) = o else { continue };
            if o.client_id.trim().is_empty() {
                bad(
                    &format!("calendar.{name}.client_id"),
                    "must not be empty".into(),
                );
            }
            for (f, v) in [
                ("auth_url", &o.auth_url),
                ("token_url", &o.token_url),
                ("revocation_url", &o.revocation_url),
            ] {
                if let Some(v) = v
                    && !url::Url::parse(v).is_ok_and(|u| u.scheme() == "https")
                {
                    bad(
                        &format!("calendar.{name}.{f}"),
                        format!("{v:?} is not an https URL"),
                    );
                }
            }
            if let Some(sc) = &o.scopes
                && let Some(x) = sc.iter().find(|x| !CALENDAR_SCOPES.contains(&x.as_str()))
            {
                bad(
                    &format!("calendar.{name}.scopes"),
                    format!(
                        "{x:?} is not a calendar scope; allowed: {}",
                        CALENDAR_SCOPES.join(", ")
                    ),
                );
            }
        }
        if let Some(r) = &cal.oauth_redirect_url
            && !url::Url::parse(r).is_ok_and(|u| {
                u.scheme() == "https"
                    || u.host_str() == Some("127.0.0.1")
                    || u.host_str() == Some("localhost")
            })
        {
            bad(
                "calendar.oauth_redirect_url",
                format!("{r:?} must be https (or http on loopback)"),
            );
        }
        // A calendar consent is finished only with the cookies the API set in the browser (the
        // consent's binding and the session), which reach /oauth/callback only on its host.
        if cal.google_oauth.is_some() || cal.microsoft_oauth.is_some() {
            let host = |u: &str| {
                url::Url::parse(u)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            };
            let (callback, api) = (cal.oauth_redirect(), &self.api.public_url);
            if let (Some(c), Some(a)) = (host(&callback), host(api))
                && c != a
            {
                bad(
                    "calendar.oauth_redirect_url",
                    format!(
                        "{callback:?} is not on api.public_url's host ({a}): the consent is bound to the browser by cookies the API sets, which reach /oauth/callback only on the same host; serve both behind one host"
                    ),
                );
            }
        }
        if let Some(f) = &cal.oauth_ca_file
            && !f.is_file()
        {
            bad(
                "calendar.oauth_ca_file",
                format!("{} is not a readable file", f.display()),
            );
        }
        if !(0..=3_000).contains(&cal.oauth_refresh_before_seconds) {
            bad(
                "calendar.oauth_refresh_before_seconds",
                format!(
                    "{} is out of range 0..=3000",
                    cal.oauth_refresh_before_seconds
                ),
            );
        }
        if let Some(b) = &cal.public_webhook_base
            && !url::Url::parse(b).is_ok_and(|u| u.scheme() == "https")
        {
            bad(
                "calendar.public_webhook_base",
                format!("{b:?} is not an https URL (providers only call https webhooks)"),
            );
        }
        if !(10..=86_400).contains(&cal.poll_seconds) {
            bad(
                "calendar.poll_seconds",
                format!("{} is out of range 10..=86400", cal.poll_seconds),
            );
        }
        for (field, v, range) in [
            (
                "calendar.ics_max_bytes",
                cal.ics_max_bytes,
                1024..=(64 << 20),
            ),
            (
                "calendar.ics_max_instances",
                cal.ics_max_instances,
                1..=1_000_000,
            ),
            ("calendar.ics_max_steps", cal.ics_max_steps, 1..=50_000_000),
            (
                "calendar.max_events_per_round",
                cal.max_events_per_round,
                1..=1_000_000,
            ),
            (
                "calendar.max_connections_per_user",
                cal.max_connections_per_user,
                1..=1000,
            ),
        ] {
            if !range.contains(&v) {
                bad(
                    field,
                    format!("{v} is out of range {}..={}", range.start(), range.end()),
                );
            }
        }
        if cal.window_days_back > 31 || !(1..=366).contains(&cal.window_days_ahead) {
            bad(
                "calendar.window_days_ahead",
                "window must be 0..=31 days back and 1..=366 days ahead".into(),
            );
        }
        if let Err(list) = meetbot_egress::AllowList::parse(&self.egress.allow_private) {
            for e in list {
                bad("egress.allow_private", e.to_string());
            }
        }
        if let Some(e) = self
            .telemetry
            .otlp_endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
        {
            match url::Url::parse(e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => bad(
                    "telemetry.otlp_endpoint",
                    format!(
                        "{e:?} is not an http(s) URL; give the collector's OTLP/HTTP address, e.g. http://otel-collector:4318"
                    ),
                ),
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level) {
            bad(
                "telemetry.log_level",
                format!(
                    "{:?} is not a tracing filter ({e}); try info or meetbot=debug",
                    self.telemetry.log_level
                ),
            );
        }
        errs
    }
}

/// The `host:port` part of a server URL, for error messages that must not carry credentials.
pub fn server_address(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port_or_known_default().or(match u.scheme() {
                "amqp" => Some(5672),
                "amqps" => Some(5671),
                "mongodb" => Some(27017),
                _ => None,
            }) {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            }
        }
        Err(_) => "(unparseable address)".to_string(),
    }
}

/// An address range: `10.0.0.0/8`, `fd00::/8`, or one address (`192.0.2.7`, all its bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: std::net::IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as their IPv4 form).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.net, ip.to_canonical()) {
            (V4(n), V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (V6(n), V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR (10.0.0.0/8, fd00::/8)"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { net, bits })
    }
}

fn parse_env_value(v: &str) -> figment::value::Value {
    use std::str::FromStr;
    figment::value::Value::from_str(v).unwrap_or_else(|_| v.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        Config::load_with_env(Some(f.path()), env)
    }

    fn fields(err: ConfigError) -> Vec<String> {
        match err {
            ConfigError::Invalid(v) => v.into_iter().map(|e| e.field).collect(),
            other => panic!("expected invalid config, got {other}"),
        }
    }

    #[test]
    fn the_shutdown_grace_defaults_to_20_seconds_and_zero_or_past_ten_minutes_is_refused() {
        assert_eq!(Config::default().ops.shutdown_grace_seconds, 20);
        let c =
            Config::load_with_env(None, &[("MEETBOT_OPS__SHUTDOWN_GRACE_SECONDS", "7")]).unwrap();
        assert_eq!(c.ops.shutdown_grace_seconds, 7);
        for bad in ["0", "601"] {
            let err = Config::load_with_env(None, &[("MEETBOT_OPS__SHUTDOWN_GRACE_SECONDS", bad)])
                .unwrap_err();
            assert_eq!(
                fields(err),
                vec!["ops.shutdown_grace_seconds".to_string()],
                "{bad}"
            );
        }
    }

    #[test]
    fn a_trusted_proxy_range_of_every_address_is_refused_at_start() {
        for everyone in ["0.0.0.0/0", "::/0"] {
            let list = format!(r#"["10.0.0.0/8", "{everyone}"]"#);
            let err = Config::load_with_env(None, &[("MEETBOT_API__TRUSTED_PROXIES", &list)])
                .unwrap_err();
            assert_eq!(
                fields(err),
                vec!["api.trusted_proxies[1]".to_string()],
                "{everyone}"
            );
        }
    }

    #[test]
    fn trusted_proxies_are_cidrs_and_a_bad_one_is_named() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(
            c.contains("::ffff:10.1.2.3".parse().unwrap()),
            "mapped form"
        );
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "proxy", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let err = Config::load_with_env(
            None,
            &[(
                "MEETBOT_API__TRUSTED_PROXIES",
                r#"["10.0.0.0/8", "ingress"]"#,
            )],
        )
        .unwrap_err();
        assert_eq!(fields(err), vec!["api.trusted_proxies[1]".to_string()]);
        let ok = Config::load_with_env(
            None,
            &[("MEETBOT_API__TRUSTED_PROXIES", r#"["10.0.0.0/8"]"#)],
        )
        .unwrap();
        assert_eq!(ok.api.trusted_proxies, vec!["10.0.0.0/8".to_string()]);
    }

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.store.kind, StoreKind::Embedded);
        assert_eq!(c.queue.kind, QueueKind::InProcess);
    }

    #[test]
    fn missing_config_file_is_an_error_not_a_default() {
        let err =
            Config::load_with_env(Some(Path::new("/nonexistent/meetbot.toml")), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/meetbot.toml"));
    }

    #[test]
    fn a_transcriber_tls_certificate_without_its_key_or_a_key_without_its_certificate_is_refused() {
        let err = Config::load_with_env(
            None,
            &[("MEETBOT_TRANSCRIBER__TLS_CERT_FILE", "/tls/tls.crt")],
        )
        .unwrap_err();
        assert_eq!(fields(err), ["transcriber.tls_key_file"]);
        let err = Config::load_with_env(
            None,
            &[("MEETBOT_TRANSCRIBER__TLS_KEY_FILE", "/tls/tls.key")],
        )
        .unwrap_err();
        assert_eq!(fields(err), ["transcriber.tls_cert_file"]);
        // Both: accepted here (the files are read when the transcriber starts, in its pod).
        let c = Config::load_with_env(
            None,
            &[
                ("MEETBOT_TRANSCRIBER__TLS_CERT_FILE", "/tls/tls.crt"),
                ("MEETBOT_TRANSCRIBER__TLS_KEY_FILE", "/tls/tls.key"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.transcriber.tls_key_file.as_deref(),
            Some(Path::new("/tls/tls.key"))
        );
    }

    #[test]
    fn calendar_caps_default_to_sane_values_come_from_the_environment_and_are_checked() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.calendar.ics_max_bytes, 2 << 20);
        assert_eq!(c.calendar.ics_max_instances, 5_000);
        assert_eq!(c.calendar.max_connections_per_user, 10);
        let c = load(
            "[calendar]\nics_max_instances = 300\n",
            &[("MEETBOT_CALENDAR__ICS_MAX_BYTES", "65536")],
        )
        .unwrap();
        assert_eq!(
            (c.calendar.ics_max_bytes, c.calendar.ics_max_instances),
            (65_536, 300)
        );
        let err = load(
            "[calendar]\nics_max_bytes = 10\nmax_connections_per_user = 0\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            fields(err),
            [
                "calendar.ics_max_bytes",
                "calendar.max_connections_per_user"
            ]
        );
    }

    #[test]
    fn file_then_environment_override_in_that_order() {
        let c = load(
            "[store]\nkind = \"mongodb\"\nmongodb_uri = \"mongodb://db.internal:27017\"\n",
            &[
                ("MEETBOT_STORE__DB_PREFIX", "acme"),
                ("MEETBOT_QUEUE__KIND", "rabbitmq"),
            ],
        )
        .unwrap();
        assert_eq!(c.store.kind, StoreKind::Mongodb);
        assert_eq!(c.store.mongodb_uri, "mongodb://db.internal:27017");
        assert_eq!(c.store.db_prefix, "acme");
        assert_eq!(c.queue.kind, QueueKind::Rabbitmq);
    }

    #[test]
    fn bad_enum_value_names_the_field_and_allowed_values() {
        let err = load("[store]\nkind = \"postgres\"\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("store.kind"), "{msg}");
        assert!(msg.contains("mongodb") && msg.contains("embedded"), "{msg}");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let err = load(
            "[store]\nkind = \"mongodb\"\nmongodb_uri = \"http://x\"\ndb_prefix = \"Bad Prefix\"\n[queue]\nkind = \"rabbitmq\"\namqp_url = \"nope\"\n[telemetry]\nlog_level = \"[[[\"\notlp_endpoint = \"collector:4318\"\n[calendar]\npublic_webhook_base = \"http://hooks.example\"\n",
            &[],
        )
        .unwrap_err();
        let f = fields(err);
        for want in [
            "store.mongodb_uri",
            "store.db_prefix",
            "queue.amqp_url",
            "telemetry.log_level",
            "telemetry.otlp_endpoint",
            "calendar.public_webhook_base",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} missing from {f:?}");
        }
    }

    #[test]
    fn a_calendar_oauth_callback_on_another_host_than_the_api_is_refused() {
        let cal = "[calendar]\npublic_webhook_base = \"https://hooks.example\"\n[calendar.google_oauth]\nclient_id = \"id\"\n";
        let err = load(
            &format!("[api]\npublic_url = \"https://meetbot.example\"\n{cal}"),
            &[],
        )
        .unwrap_err();
        assert!(
            fields(err)
                .iter()
                .any(|f| f == "calendar.oauth_redirect_url"),
            "refused"
        );
        assert!(
            load(
                &format!("[api]\npublic_url = \"https://hooks.example/\"\n{cal}"),
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_keys_are_rejected_so_typos_do_not_pass_silently() {
        let err = load("[store]\nknd = \"mongodb\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("knd"), "{err}");
    }

    #[test]
    fn azure_client_secret_credential_requires_its_three_fields() {
        let err = load(
            "[keys]\nprovider = \"azure-key-vault\"\n[keys.azure]\nvault_url = \"https://v.vault.azure.net\"\nkey_name = \"kek\"\ncredential = \"client-secret\"\n",
            &[],
        )
        .unwrap_err();
        let f = fields(err);
        assert_eq!(
            f,
            vec![
                "keys.azure.tenant_id",
                "keys.azure.client_id",
                "keys.azure.client_secret"
            ]
        );
    }

    #[test]
    fn the_egress_allow_list_is_closed_by_default_and_checked_entry_by_entry() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert!(c.egress.allow_private.is_empty());
        let c = Config::load_with_env(
            None,
            &[(
                "MEETBOT_EGRESS__ALLOW_PRIVATE",
                "[\"127.0.0.1/32\", \"10.20.0.0/16\"]",
            )],
        )
        .unwrap();
        assert_eq!(c.egress.allow_private, ["127.0.0.1/32", "10.20.0.0/16"]);
        let err = load(
            "[egress]\nallow_private = [\"10.0.0.0/8\", \"everything\", \"0.0.0.0/0\", \"169.254.0.0/16\"]\n",
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert_eq!(fields(err), ["egress.allow_private"; 3]);
        for want in ["everything", "0.0.0.0/0", "169.254.0.0/16", "metadata"] {
            assert!(msg.contains(want), "{want} missing from {msg}");
        }
    }

    #[test]
    fn server_address_drops_credentials() {
        assert_eq!(
            server_address("amqp://guest:secret@10.0.0.1:5673/%2f"),
            "10.0.0.1:5673"
        );
        assert_eq!(server_address("amqp://u:p@rabbit/%2f"), "rabbit:5672");
        assert_eq!(server_address("mongodb://u:p@mongo"), "mongo:27017");
    }
}

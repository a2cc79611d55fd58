//! The stored data model.
//!
//! Every field that could identify a person or reveal what was said is a [`Sealed`] value:
//! the store only ever receives ciphertext for it. Plain fields are ids, timestamps, states and
//! enumerations that the store must be able to index.

use crate::TenantId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An AES-256-GCM ciphertext sealed under one version of a tenant's data key.
///
/// Produced and opened only by `meetbot-crypto`; stored as-is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Version of the tenant data key that sealed this value.
    pub key_version: u32,
    /// Random 96-bit nonce, never reused under one key.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 128-bit tag.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

pub(crate) mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Lifecycle of a tenant in the control registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    /// Crypto-erased: its keys are destroyed and its database dropped. The registry keeps the row
    /// so that the id is never reused and the deletion receipt has something to point at.
    Erased,
}

/// A customer, as the control registry knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    /// Organisation name chosen by the operator (not personal data).
    pub name: String,
    pub status: TenantStatus,
    /// Version of the data key new seals use.
    pub current_key_version: u32,
    pub created_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// One version of a tenant data key, as stored: wrapped by a key-encryption key (KEK), never plain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub tenant_id: TenantId,
    pub version: u32,
    /// Which key provider wrapped it (`local`, `azure-key-vault`).
    pub provider: String,
    /// Identifier of the KEK that wrapped it (key file fingerprint, or Key Vault key id with version).
    pub kek_id: String,
    /// Wrapping algorithm (e.g. `A256GCM-local`, `RSA-OAEP-256`).
    pub algorithm: String,
    #[serde(with = "b64")]
    pub wrapped: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarProvider {
    Google,
    Microsoft,
    Ics,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    /// The provider refused the refresh token (`invalid_grant`): the user must consent again.
    NeedsReconsent,
    Disconnected,
    /// The account consented with is not the user's own address: nothing is synced until an
    /// admin approves it (`POST /v1/calendars/{id}/approve`).
    AwaitingApproval,
}

/// A user's connected calendar account. Tokens and the account address are sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarConnection {
    pub id: String,
    /// The meetbot user who connected it (an opaque id, not an email).
    pub user_id: String,
    pub provider: CalendarProvider,
    pub account_email: Sealed,
    pub access_token: Sealed,
    pub refresh_token: Option<Sealed>,
    pub scopes: Vec<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub status: ConnectionStatus,
    /// Where incremental sync resumes (Google syncToken, Graph deltaLink); `None`: full sync next.
    #[serde(default)]
    pub sync_cursor: Option<String>,
    /// The provider's push channel for this calendar, if one is active.
    #[serde(default)]
    pub push: Option<PushChannel>,
    /// How the latest sync round ended; `None`: none has ended yet (the first is under way).
    #[serde(default)]
    pub last_sync: Option<SyncOutcome>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a connection's latest sync round ended, shown to its user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOutcome {
    pub at: DateTime<Utc>,
    /// Events (and removals) the round applied.
    pub events: u64,
    /// Why the round failed (no personal data, no addresses); `None`: it succeeded.
    #[serde(default)]
    pub error: Option<String>,
    /// Events the round could not read and left as they were (each error names the event's
    /// UID and the field; at most 20): the rest of the calendar was synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// A provider push channel (Graph subscription, Google watch channel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushChannel {
    pub id: String,
    pub expires_at: DateTime<Utc>,
    /// The secret the provider echoes in every notification (Graph `clientState`, Google channel token).
    pub client_state: Sealed,
    /// The provider's id of the watched resource (Google `resourceId`, needed to stop the channel).
    #[serde(default)]
    pub resource_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingStatus {
    Confirmed,
    Tentative,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Zoom,
    GoogleMeet,
    Teams,
    Webex,
    Jitsi,
    Janus,
    WebRtc,
    Unknown,
}

/// One instance of a calendar event (a recurring series yields one per occurrence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub id: String,
    pub connection_id: Option<String>,
    /// Provider's id of this instance; with the tenant and the start it forms the bot idempotency key.
    pub event_instance_id: String,
    pub series_id: Option<String>,
    pub title: Sealed,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub all_day: bool,
    pub status: MeetingStatus,
    pub platform: Option<Platform>,
    /// Join URL (may carry passcodes), sealed.
    pub join_url: Option<Sealed>,
    /// Organizer and attendees (emails, names, responses) as one sealed JSON list.
    pub attendees: Sealed,
    /// Whether a bot should join: set by the user's auto-join rules or an ad-hoc request.
    pub wants_bot: bool,
    /// Why a bot will or will not join (the auto-join rule that decided), shown to the user.
    #[serde(default)]
    pub join_reason: Option<String>,
    /// The user who asked for a bot through the API (an ad-hoc meeting: `POST /v1/bots`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Soft deletion: hidden from every read of the API at once, recoverable by an owner until
    /// the purge erases the session (meeting, transcript, summary, deliveries, bots) for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The meeting itself, whichever calendar this copy of it comes from: a blind index (keyed
    /// under the tenant's index key) of its canonical join link with its invitation UID and
    /// occurrence, or its start when there is no UID. Copies in several users' calendars share
    /// it, and the scheduler arms one bot for all of them. `None`: this copy stands alone
    /// (ad-hoc bots, meetings without a link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_ref: Option<String>,
    /// When the calendar provider last changed this copy (its own clock): of copies that
    /// disagree on the time, the newest wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_updated_at: Option<DateTime<Utc>>,
    /// Last change; the scheduler reads meetings changed since its last pass by this field.
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum BotJobState {
    Scheduled,
    Dispatched,
    Launched,
    Joined,
    Done,
    Failed(String),
    Skipped(String),
    Cancelled,
    /// Stopped by a person (`POST /v1/bots/{id}/leave`, or its meeting deleted): the bot
    /// leaves, nothing of the meeting is stored or delivered, and the job never runs again.
    /// Holds who stopped it (`user:<id>`, `key:<id>`); the history entry holds when.
    Stopped(String),
}

impl BotJobState {
    /// Short name, used as an index value and a metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            BotJobState::Scheduled => "scheduled",
            BotJobState::Dispatched => "dispatched",
            BotJobState::Launched => "launched",
            BotJobState::Joined => "joined",
            BotJobState::Done => "done",
            BotJobState::Failed(_) => "failed",
            BotJobState::Skipped(_) => "skipped",
            BotJobState::Cancelled => "cancelled",
            BotJobState::Stopped(_) => "stopped",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            BotJobState::Done
                | BotJobState::Failed(_)
                | BotJobState::Skipped(_)
                | BotJobState::Cancelled
                | BotJobState::Stopped(_)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub state: BotJobState,
    pub at: DateTime<Utc>,
}

/// A request for one bot in one meeting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotJob {
    pub id: String,
    pub meeting_id: String,
    /// tenant + event instance + start: unique per tenant.
    pub idempotency_key: String,
    pub join_at: DateTime<Utc>,
    pub state: BotJobState,
    pub history: Vec<StateChange>,
    /// When the broker confirmed the job message (set after `Dispatched`); a dispatched job without
    /// it is republished after a crash, and consumers deduplicate by job id.
    #[serde(default)]
    pub published_at: Option<DateTime<Utc>>,
    /// This job's own bot rules (an ad-hoc request may set them); they win over the tenant's.
    #[serde(default)]
    pub bot_rules: Option<BotRuleOverrides>,
    /// The ticket of the bot now serving this job (decision 0032): a relaunch replaces it, so
    /// an earlier bot's tokens stop working.
    #[serde(default)]
    pub ticket: Option<TicketRecord>,
}

/// What the store keeps of a bot's ticket: never the tokens themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// Random, per ticket.
    pub id: String,
    /// Hex SHA-256 of the bot's control token.
    pub control_sha256: String,
    /// The expiry its audio token carries (seconds since the Unix epoch): the transcriber
    /// takes a stream only with the current ticket's audio token.
    pub audio_expires: Option<u64>,
    /// When the control token stops working.
    pub expires_at: DateTime<Utc>,
}

impl BotJob {
    /// A new job for `meeting_id`, scheduled now to join at `join_at`.
    pub fn scheduled(meeting_id: &str, idempotency_key: String, join_at: DateTime<Utc>) -> Self {
        let now = Utc::now();
        BotJob {
            id: crate::ids::new_record_id(),
            meeting_id: meeting_id.to_string(),
            idempotency_key,
            join_at,
            state: BotJobState::Scheduled,
            history: vec![StateChange {
                state: BotJobState::Scheduled,
                at: now,
            }],
            published_at: None,
            bot_rules: None,
            ticket: None,
        }
    }
}

/// Bot behaviour a tenant or a job sets for itself; unset fields fall back to the next level
/// (job, then tenant, then the service's `[bot]` configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotRuleOverrides {
    pub display_name: Option<String>,
    pub chat_notice: Option<String>,
    pub waiting_room_timeout_seconds: Option<u64>,
    pub alone_timeout_seconds: Option<u64>,
    pub silence_timeout_seconds: Option<u64>,
    pub max_duration_seconds: Option<u64>,
}

impl BotRuleOverrides {
    /// Each set value checked: timeouts 1..=86400 s, a display name of 1..=64 characters, a
    /// chat notice of at most 500.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(n) = &self.display_name
            && (n.trim().is_empty() || n.chars().count() > 64)
        {
            return Err("display_name must be 1..=64 characters".into());
        }
        if let Some(n) = &self.chat_notice
            && n.chars().count() > 500
        {
            return Err("chat_notice must be at most 500 characters".into());
        }
        for (f, v) in [
            (
                "waiting_room_timeout_seconds",
                self.waiting_room_timeout_seconds,
            ),
            ("alone_timeout_seconds", self.alone_timeout_seconds),
            ("silence_timeout_seconds", self.silence_timeout_seconds),
            ("max_duration_seconds", self.max_duration_seconds),
        ] {
            if let Some(v) = v
                && !(1..=86_400).contains(&v)
            {
                return Err(format!("{f}: {v} is out of range 1..=86400"));
            }
        }
        Ok(())
    }

    /// `self` where set, else `base`.
    pub fn over(&self, base: &BotRuleOverrides) -> BotRuleOverrides {
        BotRuleOverrides {
            display_name: self.display_name.clone().or(base.display_name.clone()),
            chat_notice: self.chat_notice.clone().or(base.chat_notice.clone()),
            waiting_room_timeout_seconds: self
                .waiting_room_timeout_seconds
                .or(base.waiting_room_timeout_seconds),
            alone_timeout_seconds: self.alone_timeout_seconds.or(base.alone_timeout_seconds),
            silence_timeout_seconds: self
                .silence_timeout_seconds
                .or(base.silence_timeout_seconds),
            max_duration_seconds: self.max_duration_seconds.or(base.max_duration_seconds),
        }
    }
}

/// A tenant's own settings (one record per tenant database).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub bot: BotRuleOverrides,
    /// The tenant's own API key for its HTTP speech engine (`transcriber.tenants.<id>`), sealed;
    /// `meetbot tenant speech-key` sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech_api_key: Option<Sealed>,
    /// Where the tenant's summaries go (`meetbot tenant delivery` sets it).
    #[serde(default)]
    pub delivery: DeliveryTargets,
    /// Every sign-in must also give a TOTP code (members without one enrol first).
    #[serde(default)]
    pub require_mfa: bool,
    /// Transcripts expire this many days after they are stored (0: kept until deleted); unset:
    /// the transcriber's `transcript_retention_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_retention_days: Option<u32>,
    /// Customer-held key mode: an age X25519 recipient (`age1...`). Once a meeting's summary
    /// has been delivered, its transcript and summary are stored sealed to this key only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key: Option<String>,
    /// The speech engine the tenant chose among those the deployment offers
    /// (`transcriber.offered_engines`); unset: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech_engine: Option<String>,
    /// Summaries expire this many days after they are stored (0 or unset: kept until deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_retention_days: Option<u32>,
    /// Retention overrides per client and per meeting series: a sealed JSON list of
    /// [`RetentionRule`] (clients are named by address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_rules: Option<Sealed>,
    /// Redaction before storage (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<RedactionSettings>,
    /// Sign-in is refused unless the ID token's issuer is one of these (exact match); empty:
    /// any issuer the deployment configures (the user must still have been added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_issuers: Vec<String>,
    /// Sign-in is refused unless the address's domain is one of these (lower case, exact
    /// match); empty: any domain (the user must still have been added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_email_domains: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

/// A retention override: for the meetings of one client (by address, or `@domain` for
/// everyone at a domain) or of one meeting series. Unset days keep the tenant's; 0 means kept
/// until deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The calendar's id of a recurring event (a meeting's `series_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_days: Option<u32>,
}

impl RetentionRule {
    /// Whether the rule covers a meeting with these people (addresses) and series.
    pub fn covers(&self, people: &[String], series: Option<&str>) -> bool {
        let client = self.client.as_deref().map(|c| c.trim().to_lowercase());
        let by_client = client.as_deref().is_some_and(|c| {
            people.iter().any(|p| {
                let p = p.trim().to_lowercase();
                if c.starts_with('@') {
                    p.ends_with(c)
                } else {
                    p == c
                }
            })
        });
        let by_series = self.series.as_deref().is_some_and(|s| series == Some(s));
        by_client || by_series
    }
}

/// Days a meeting's transcript and summary are kept (`None`: until deleted). The rules that
/// cover the meeting replace the tenant's days; when several do, the shortest wins.
pub fn retention_days(
    tenant_transcript: Option<u32>,
    tenant_summary: Option<u32>,
    rules: &[RetentionRule],
    people: &[String],
    series: Option<&str>,
) -> (Option<u32>, Option<u32>) {
    let pick = |tenant: Option<u32>, of: fn(&RetentionRule) -> Option<u32>| {
        let days = rules
            .iter()
            .filter(|r| r.covers(people, series))
            .filter_map(of)
            // 0 is "until deleted": the longest.
            .min_by_key(|d| if *d == 0 { u32::MAX } else { *d });
        match days.or(tenant) {
            Some(0) | None => None,
            d => d,
        }
    };
    (
        pick(tenant_transcript, |r| r.transcript_days),
        pick(tenant_summary, |r| r.summary_days),
    )
}

/// What the transcriber removes from speech before anything is stored or streamed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactionSettings {
    pub enabled: bool,
    /// Identifier classes by label (`NAME`, `DATE`, `PHONE`, ...); empty: every class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Sensitive topics: name -> phrases. Unset: the built-in lists (immigration, abuse,
    /// explicit); an empty map: no topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// A tenant's delivery targets. Addresses and URLs are sealed; a Slack channel id is not
/// personal data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTargets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_channel: Option<String>,
    /// The tenant's own Slack bot token (its workspace's app), sealed; without it the
    /// deployment's token is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_token: Option<Sealed>,
    /// Email addresses, one per line, sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Sealed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Sealed>,
    /// The tenant's own webhook signing secret (made when its webhook URL is set; shown once),
    /// sealed; without it, the deployment's `delivery.webhook_secret` signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Sealed>,
}

impl TenantSettings {
    pub fn new(bot: BotRuleOverrides, updated_at: DateTime<Utc>) -> Self {
        TenantSettings {
            bot,
            speech_api_key: None,
            delivery: DeliveryTargets::default(),
            require_mfa: false,
            transcript_retention_days: None,
            customer_key: None,
            speech_engine: None,
            summary_retention_days: None,
            retention_rules: None,
            redaction: None,
            allowed_issuers: Vec::new(),
            allowed_email_domains: Vec::new(),
            updated_at,
        }
    }
}

/// A meeting's transcript: segments (speaker, offsets, text) as one sealed JSON document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    pub id: String,
    pub meeting_id: String,
    pub language: Option<String>,
    pub segments: Sealed,
    pub created_at: DateTime<Utc>,
    /// Retention: the store hides the record from this instant and purges it soon after.
    pub expires_at: Option<DateTime<Utc>>,
    /// Customer-held key mode: the transcript sealed to the tenant's own key (an ASCII-armored
    /// age message); `segments` then holds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// One utterance's final segments, stored sealed as soon as they are recognised (decision 0041):
/// a transcriber that restarts or hands a stream over loses nothing of the meeting so far. The
/// end of the stream assembles the transcript from its job's parts, then removes them; a part
/// of a stream that never ended expires with `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptPart {
    /// `<job>.<stream>.<last_seq>.<participant digest>`: the same audio makes the same id, so
    /// storing a part again after a replay is idempotent.
    pub id: String,
    pub meeting_id: String,
    pub job_id: String,
    /// The bot's stream it came from (its ticket's id): a relaunched bot numbers its frames
    /// anew, so resume points hold only within one stream.
    pub stream: String,
    /// The stream's participant id (opaque: a Janus feed id, a track id; no personal data).
    pub participant: String,
    /// Sequence number of the audio frame that ended the utterance: frames of this
    /// participant up to it are transcribed and stored.
    pub last_seq: u64,
    /// Where this participant's timeline stood after that frame (ms from the stream's start)
    /// and the RTP timestamp of that frame: a resumed stream continues the timeline.
    pub resume_ms: u64,
    pub last_ts: Option<u32>,
    /// When the stream began (its timeline's zero), carried so a resumed stream keeps it.
    pub stream_started_at: DateTime<Utc>,
    /// The segments (and the participant's display name) as sealed JSON.
    pub body: Sealed,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    pub meeting_id: String,
    pub body: Sealed,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Customer-held key mode: as [`Transcript::held`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// Where a delivery goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryChannel {
    Slack,
    Email,
    Webhook,
}

impl DeliveryChannel {
    pub fn name(&self) -> &'static str {
        match self {
            DeliveryChannel::Slack => "slack",
            DeliveryChannel::Email => "email",
            DeliveryChannel::Webhook => "webhook",
        }
    }
}

/// Where a delivery is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (`Delivery::next_at`).
    Pending,
    /// An attempt is under way; `next_at` is when the claim lapses. A lapsed claim (the sender
    /// died mid-attempt) is attempted again.
    Sending,
    Sent {
        at: DateTime<Utc>,
    },
    /// No more attempts: the limit was reached or the target refused for good.
    GaveUp {
        reason: String,
    },
}

impl DeliveryState {
    pub fn name(&self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent { .. } => "sent",
            DeliveryState::GaveUp { .. } => "gave_up",
        }
    }
}

/// One message to one target (a summary to a Slack channel, an address, a webhook), kept in the
/// tenant's outbox until it is sent or given up. `idempotency_key` is unique: enqueuing the
/// same delivery twice keeps one. The target and the message are sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub idempotency_key: String,
    pub meeting_id: String,
    pub channel: DeliveryChannel,
    pub target: Sealed,
    pub message: Sealed,
    #[serde(flatten)]
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_at: DateTime<Utc>,
    /// The last failure (kind and status only, never the message).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl SealedRecord for Delivery {
    const COLLECTION: &'static str = "deliveries";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        vec![("target", &mut self.target), ("message", &mut self.message)]
    }
}

/// Who did what to which record. Actors and targets are opaque ids, never emails or names.
///
/// The tenant's audit log is a hash chain: the store numbers each appended entry (`seq`, from 1,
/// no gaps) and sets `prev` to the hash of the entry before and `hash` to
/// [`AuditEvent::chain_hash`]; `meetbot audit verify` recomputes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub prev: String,
    #[serde(default)]
    pub hash: String,
}

impl AuditEvent {
    /// A new entry, now; the store links it into the chain when it is appended.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        AuditEvent {
            id: crate::ids::new_record_id(),
            at: Utc::now(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            seq: 0,
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// SHA-256 (hex) over the entry's canonical form: every field but `hash`, in a fixed order,
    /// the time in RFC 3339 with microseconds.
    pub fn chain_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!([
            self.seq,
            self.id,
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            self.actor,
            self.action,
            self.target,
            self.prev,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// The hash before the first entry of a chain.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The newest entry of a tenant's audit chain, kept in the control database (outside the tenant
/// database), so that removing the last entries of the chain is noticed too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub tenant_id: TenantId,
    pub seq: u64,
    pub hash: String,
}

/// A user's own settings. The auto-join rules are sealed: their keywords can name clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSettings {
    pub user_id: String,
    /// JSON of the calendar-sync crate's `AutoJoinRules`.
    pub auto_join: Sealed,
    /// The summary of each meeting the user's calendar asked a bot for is also emailed to the
    /// user's own address (besides the tenant's delivery targets).
    #[serde(default)]
    pub summary_email: bool,
    pub updated_at: DateTime<Utc>,
}

/// An OAuth authorization in flight: created when the user is sent to the provider, taken (once)
/// when the provider redirects back. `id` is the random part of the `state` parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthPending {
    pub id: String,
    pub user_id: String,
    pub provider: CalendarProvider,
    pub pkce_verifier: Sealed,
    /// SHA-256 (hex) of the secret in the binding cookie of the browser that began the flow.
    #[serde(default)]
    pub browser_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Proof of an erasure, kept outside the erased tenant's database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionReceipt {
    pub id: String,
    pub tenant_id: TenantId,
    /// What was erased (`tenant`, `session`, `transcript`, ...).
    pub scope: String,
    pub target: String,
    pub requested_by: String,
    pub erased_at: DateTime<Utc>,
    /// Records removed, per collection.
    pub counts: Vec<(String, u64)>,
    /// Identifiers of destroyed data-key versions (`<tenant>/v<version>@<kek id>`).
    pub keys_destroyed: Vec<String>,
    /// SHA-256 (hex) over the receipt's canonical JSON without this field.
    pub digest: String,
}

/// A stored record type with sealed fields: names its collection (part of every field's
/// associated data) and lets key rotation reach each sealed field.
pub trait SealedRecord {
    const COLLECTION: &'static str;
    fn record_id(&self) -> &str;
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)>;
}

impl SealedRecord for CalendarConnection {
    const COLLECTION: &'static str = "calendar_connections";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        let mut v = vec![
            ("account_email", &mut self.account_email),
            ("access_token", &mut self.access_token),
        ];
        if let Some(r) = self.refresh_token.as_mut() {
            v.push(("refresh_token", r));
        }
        if let Some(p) = self.push.as_mut() {
            v.push(("push_client_state", &mut p.client_state));
        }
        v
    }
}

impl SealedRecord for TenantSettings {
    const COLLECTION: &'static str = "tenant_settings";
    fn record_id(&self) -> &str {
        "settings"
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        let mut v = Vec::new();
        if let Some(k) = self.speech_api_key.as_mut() {
            v.push(("speech_api_key", k));
        }
        if let Some(k) = self.delivery.slack_token.as_mut() {
            v.push(("delivery_slack_token", k));
        }
        if let Some(k) = self.delivery.emails.as_mut() {
            v.push(("delivery_emails", k));
        }
        if let Some(k) = self.delivery.webhook_url.as_mut() {
            v.push(("delivery_webhook_url", k));
        }
        if let Some(k) = self.delivery.webhook_secret.as_mut() {
            v.push(("delivery_webhook_secret", k));
        }
        v
    }
}

impl SealedRecord for UserSettings {
    const COLLECTION: &'static str = "user_settings";
    fn record_id(&self) -> &str {
        &self.user_id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        vec![("auto_join", &mut self.auto_join)]
    }
}

impl SealedRecord for OAuthPending {
    const COLLECTION: &'static str = "oauth_pending";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        vec![("pkce_verifier", &mut self.pkce_verifier)]
    }
}

impl SealedRecord for Meeting {
    const COLLECTION: &'static str = "meetings";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        let mut v = vec![
            ("title", &mut self.title),
            ("attendees", &mut self.attendees),
        ];
        if let Some(u) = self.join_url.as_mut() {
            v.push(("join_url", u));
        }
        v
    }
}

impl SealedRecord for Transcript {
    const COLLECTION: &'static str = "transcripts";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        vec![("segments", &mut self.segments)]
    }
}

impl SealedRecord for TranscriptPart {
    const COLLECTION: &'static str = "transcript_parts";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        vec![("body", &mut self.body)]
    }
}

impl SealedRecord for Summary {
    const COLLECTION: &'static str = "summaries";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        vec![("body", &mut self.body)]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retention_rules_replace_the_tenant_days_and_the_shortest_covering_rule_wins() {
        let people = vec![
            "Ann@Client.example".to_string(),
            "me@firm.example".to_string(),
        ];
        let rule = |client: Option<&str>, series: Option<&str>, t: Option<u32>, s: Option<u32>| {
            RetentionRule {
                client: client.map(Into::into),
                series: series.map(Into::into),
                transcript_days: t,
                summary_days: s,
            }
        };
        // No rule: the tenant's days; 0 means until deleted.
        assert_eq!(
            retention_days(Some(30), None, &[], &people, None),
            (Some(30), None)
        );
        assert_eq!(
            retention_days(Some(0), Some(0), &[], &people, None),
            (None, None)
        );
        // A client by address (any case) or by domain; a series by id.
        let rules = [
            rule(Some("ann@client.example"), None, Some(7), None),
            rule(Some("@client.example"), None, Some(14), Some(90)),
            rule(None, Some("board"), Some(3650), Some(0)),
        ];
        assert_eq!(
            retention_days(Some(30), None, &rules, &people, None),
            (Some(7), Some(90))
        );
        // A longer override than the tenant's applies when it alone covers the meeting.
        assert_eq!(
            retention_days(
                Some(30),
                Some(10),
                &rules,
                &["x@else.example".into()],
                Some("board")
            ),
            (Some(3650), None)
        );
        // Both a client and a series rule: the shortest (0 is the longest).
        assert_eq!(
            retention_days(Some(30), None, &rules, &people, Some("board")),
            (Some(7), Some(90))
        );
        // Nothing covers: the tenant's.
        assert_eq!(
            retention_days(
                Some(30),
                None,
                &rules,
                &["x@else.example".into()],
                Some("other")
            ),
            (Some(30), None)
        );
    }

    use super::*;

    #[test]
    fn bot_rules_fall_back_level_by_level_and_are_checked() {
        let service = BotRuleOverrides {
            display_name: Some("meetbot (recording)".into()),
            alone_timeout_seconds: Some(60),
            silence_timeout_seconds: Some(600),
            ..Default::default()
        };
        let tenant = BotRuleOverrides {
            display_name: Some("Clinic notetaker (recording)".into()),
            alone_timeout_seconds: Some(30),
            ..Default::default()
        };
        let job = BotRuleOverrides {
            alone_timeout_seconds: Some(5),
            ..Default::default()
        };
        let eff = job.over(&tenant.over(&service));
        assert_eq!(eff.alone_timeout_seconds, Some(5));
        assert_eq!(
            eff.display_name.as_deref(),
            Some("Clinic notetaker (recording)")
        );
        assert_eq!(eff.silence_timeout_seconds, Some(600));
        assert!(eff.validate().is_ok());
        let bad = BotRuleOverrides {
            max_duration_seconds: Some(0),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_duration_seconds"));
        let nameless = BotRuleOverrides {
            display_name: Some(" ".into()),
            ..Default::default()
        };
        assert!(nameless.validate().is_err());
    }
}

/// What a signed-in person may do in their tenant. Ordered: an owner can do what an admin can,
/// an admin what a member can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees the meetings they own (their connected calendars, their ad-hoc bots) or attended.
    Member,
    /// Everything in the tenant but its people and its deletion.
    Admin,
    Owner,
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

/// A person who may sign in to a tenant. Found at sign-in by `email_hash` (SHA-256 of the tenant
/// id and the lower-cased address); the address itself is sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email_hash: String,
    pub email: Sealed,
    pub role: Role,
    /// SHA-256 of the identity provider's issuer and subject, bound at the first sign-in; a later
    /// sign-in with the same address from another subject is refused.
    #[serde(default)]
    pub subject_hash: Option<String>,
    /// TOTP (RFC 6238) second factor; its secret sealed.
    #[serde(default)]
    pub totp: Option<TotpState>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    pub secret: Sealed,
    /// Set once the user has proved they hold the secret; until then it does not count.
    pub confirmed: bool,
    /// The last time step accepted: a code is accepted once.
    #[serde(default)]
    pub last_step: u64,
    /// Wrong codes since the last accepted one (reset by a right one).
    #[serde(default)]
    pub failures: u32,
    /// Codes are refused until then (too many wrong ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
    /// Lock-outs since the last accepted code: each one lasts twice as long as the one before.
    #[serde(default)]
    pub lockouts: u32,
}

impl SealedRecord for User {
    const COLLECTION: &'static str = "users";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        let mut v = vec![("email", &mut self.email)];
        if let Some(t) = self.totp.as_mut() {
            v.push(("totp_secret", &mut t.secret));
        }
        v
    }
}

/// A signed-in browser or client. The token is never stored: `id` is the SHA-256 (hex) of its
/// secret part. Gone at `expires_at` (absolute lifetime) or after `idle_seconds` without use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// False while the tenant requires a second factor that has not been given yet.
    pub mfa_passed: bool,
    /// When a TOTP code was last given in this session (with `created_at`, the sign-in: how
    /// recently the person proved themselves interactively).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_at: Option<DateTime<Utc>>,
}

/// A key for server-to-server calls. Only the SHA-256 (hex) of its secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub scopes: Vec<String>,
    /// The user who created it (an opaque id).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key stops working then. Keys made before expiry existed have none: they expire
    /// [`ApiKey::LEGACY_LIFETIME_DAYS`] after `created_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// The lifetime of a key made before keys had `expires_at` (the longest one can be given).
    pub const LEGACY_LIFETIME_DAYS: i64 = 365;

    /// When the key stops working.
    pub fn expiry(&self) -> DateTime<Utc> {
        self.expires_at
            .unwrap_or(self.created_at + chrono::Duration::days(Self::LEGACY_LIFETIME_DAYS))
    }
}

/// An OpenID Connect sign-in in flight: stored when the browser is sent to the provider, taken
/// (once) at the callback. `id` is the random part of `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInPending {
    pub id: String,
    /// Configured provider name (`google`, `microsoft`).
    pub provider: String,
    pub nonce: Sealed,
    pub pkce_verifier: Sealed,
    /// SHA-256 (hex) of the secret in the binding cookie of the browser that began the sign-in.
    #[serde(default)]
    pub browser_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl SealedRecord for SignInPending {
    const COLLECTION: &'static str = "signin_pending";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        vec![
            ("nonce", &mut self.nonce),
            ("pkce_verifier", &mut self.pkce_verifier),
        ]
    }
}

/// A data export (`POST /v1/privacy/export`): built in the background, kept sealed until its
/// download link expires. Only the SHA-256 of the download token is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub id: String,
    /// `tenant`, or `person` (then `person_hash` is SHA-256 of tenant:address).
    pub scope: String,
    #[serde(default)]
    pub person_hash: Option<String>,
    /// `running`, `ready` or `failed`.
    pub state: String,
    pub done: u64,
    pub total: u64,
    pub requested_by: String,
    pub download_hash: String,
    pub created_at: DateTime<Utc>,
    /// The export and its link are gone from this instant.
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub archive: Option<Sealed>,
    #[serde(default)]
    pub error: Option<String>,
}

impl SealedRecord for Export {
    const COLLECTION: &'static str = "exports";
    fn record_id(&self) -> &str {
        &self.id
    }
    fn sealed_fields_mut(&mut self) -> Vec<(&'static str, &mut Sealed)> {
        self.archive
            .as_mut()
            .map(|a| vec![("archive", a)])
            .unwrap_or_default()
    }
}

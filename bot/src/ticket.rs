//! A bot's ticket (decision 0032): everything one bot needs for its one job, issued by the
//! launcher at launch and handed to the bot as one opaque value (a per-bot Kubernetes Secret, or
//! a child process's environment). With it the bot joins its meeting, streams its audio and
//! reports how it is doing; without the store, the key vault, the broker or the audio secret.
//!
//! - the join link, opened with the tenant's key by the launcher;
//! - the bot's rules (the job's, over the tenant's, over the service's), resolved;
//! - the connector settings of the launcher's `[bot]` section (no secret is in it);
//! - an audio token for this job only, expiring when the bot must have left, taken by the
//!   transcriber only while this ticket is the job's current one (one stream);
//! - a control token for the launcher's control endpoint ([`crate::control`]), whose SHA-256 the
//!   job record keeps (so every launcher replica can check it, and a relaunch revokes it).
//!
//! What the store keeps of a ticket is a [`TicketRecord`]: never a token.

use crate::audio_stream::{job_token_expiring, unix_now};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::config::BotConfig;
use meetbot_core::model::{BotJob, BotRuleOverrides, Meeting, TicketRecord};
use meetbot_queue::EventKind;
use meetbot_store::vault::Tenants;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use zeroize::{Zeroize, Zeroizing};

/// The environment variable a bot reads its ticket from.
pub const TICKET_ENV: &str = "MEETBOT_BOT_TICKET";

/// How long a ticket outlives the bot's own limits (reconnects, the end of the stream).
pub const TICKET_GRACE: Duration = Duration::from_secs(10 * 60);

/// An encoded ticket as it travels to the bot: opaque, zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedTicket(Zeroizing<String>);

impl EncodedTicket {
    pub fn new(text: String) -> Self {
        EncodedTicket(Zeroizing::new(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EncodedTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncodedTicket(..)")
    }
}

/// Where the bot streams its audio, and the token that opens that one stream.
#[derive(Clone, Serialize, Deserialize)]
pub struct AudioGrant {
    /// `<transcriber_url>/<tenant>/<job>`.
    pub url: String,
    pub token: String,
}

/// Where the bot reports, and the token that lets it report for its job only.
#[derive(Clone, Serialize, Deserialize)]
pub struct ControlGrant {
    /// The launcher's control endpoint base (`http://meetbot-launcher:8093`).
    pub url: String,
    pub token: String,
}

/// Everything one bot gets. See the module documentation.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotTicket {
    pub tenant: TenantId,
    pub job_id: String,
    pub meeting_id: String,
    /// The meeting's platform as the calendar named it (for messages), if known.
    pub platform: Option<String>,
    pub link: Option<String>,
    pub display_name: String,
    pub chat_notice: String,
    pub waiting_room_timeout_seconds: u64,
    pub alone_timeout_seconds: u64,
    pub silence_timeout_seconds: u64,
    pub max_duration_seconds: u64,
    /// The connector settings (Janus, room servers, Chromium, ICE address, buffer sizes).
    pub bot: BotConfig,
    pub audio: Option<AudioGrant>,
    pub control: ControlGrant,
    /// Certificates (base64 DER) the bot trusts besides the system's for the transcriber and
    /// the launcher (the cluster's private CA, the launcher's `bot.transcriber_ca_file`), so a
    /// bot pod needs no file for it.
    #[serde(default)]
    pub trusted_ca: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

impl Drop for BotTicket {
    fn drop(&mut self) {
        if let Some(l) = &mut self.link {
            l.zeroize();
        }
        if let Some(a) = &mut self.audio {
            a.token.zeroize();
        }
        self.control.token.zeroize();
    }
}

impl std::fmt::Debug for BotTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotTicket")
            .field("tenant", &self.tenant)
            .field("job_id", &self.job_id)
            .field("meeting_id", &self.meeting_id)
            .field("link", &self.link.as_ref().map(|_| ".."))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error(
        "the bot ticket is unreadable ({0}); the launcher hands each bot its ticket in {TICKET_ENV}"
    )]
    Malformed(String),
    #[error(
        "the bot ticket expired at {0}; the launcher issues a new one when it relaunches the bot"
    )]
    Expired(DateTime<Utc>),
    #[error(
        "the bot's ticket would be over {0} bytes (a very long join link, chat notice or name)"
    )]
    TooLarge(usize),
    #[error("the meeting {0} of this job is gone")]
    NoMeeting(String),
    #[error("cannot read the job's meeting or settings: {0}")]
    Store(#[from] meetbot_store::StoreError),
    #[error("cannot open the meeting's join link with the tenant's key: {0}")]
    Vault(#[from] meetbot_store::vault::VaultError),
}

impl BotTicket {
    /// The certificates of [`BotTicket::trusted_ca`]; one that is not base64 is skipped.
    pub fn trusted_ca(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.trusted_ca
            .iter()
            .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .map(rustls::pki_types::CertificateDer::from)
            .collect()
    }

    /// The text a bot is handed: base64url (no padding) of the ticket's JSON.
    pub fn encode(&self) -> EncodedTicket {
        let json = Zeroizing::new(serde_json::to_vec(self).unwrap_or_default());
        EncodedTicket::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*json))
    }

    /// Reads a ticket and refuses an expired one.
    pub fn decode(text: &str, now: DateTime<Utc>) -> Result<BotTicket, TicketError> {
        let json = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim())
                .map_err(|e| TicketError::Malformed(format!("not base64url: {e}")))?,
        );
        // The position only: serde's message can quote a value (the join link).
        let t: BotTicket = serde_json::from_slice(&json).map_err(|e| {
            TicketError::Malformed(format!(
                "not a ticket of this version (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if t.expires_at <= now {
            return Err(TicketError::Expired(t.expires_at));
        }
        Ok(t)
    }
}

/// Hex SHA-256 of a control token, as the job record keeps it.
pub fn control_digest(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as base64url, for ids and tokens.
fn random(n: usize) -> Zeroizing<String> {
    let mut b = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut b).expect("the system random generator failed");
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*b))
}

/// Issues tickets: the launcher's one place that opens a meeting for its bot.
pub struct TicketIssuer {
    tenants: Arc<Tenants>,
    bot: BotConfig,
    audio_secret: Option<SecretString>,
    control_url: String,
    transcriber_ca: Vec<String>,
}

impl TicketIssuer {
    /// `bot` is the launcher's `[bot]` section (its rules are the service's; its audio secret,
    /// if any, is not passed on); `audio_secret` mints audio tokens (no transcriber: `None`);
    /// `control_url` is where bots reach this launcher's control endpoint.
    pub fn new(
        tenants: Arc<Tenants>,
        bot: BotConfig,
        audio_secret: Option<SecretString>,
        control_url: String,
    ) -> Self {
        let mut bot = bot;
        bot.audio_token_secret = None;
        TicketIssuer {
            tenants,
            bot,
            audio_secret,
            control_url: control_url.trim_end_matches('/').to_string(),
            transcriber_ca: Vec::new(),
        }
    }

    /// Bots also trust `certs` for the transcriber and this launcher (the cluster's private CA).
    pub fn with_transcriber_ca(
        mut self,
        certs: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Self {
        self.transcriber_ca = certs
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c.as_ref()))
            .collect();
        self
    }

    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    /// A new ticket for `job` of `tenant`, and what the job record keeps of it.
    pub async fn issue(
        &self,
        tenant: &TenantId,
        job: &BotJob,
    ) -> Result<(TicketRecord, BotTicket), TicketError> {
        let store = self.tenants.store();
        let meeting = store
            .get_meeting(tenant, &job.meeting_id)
            .await?
            .ok_or_else(|| TicketError::NoMeeting(job.meeting_id.clone()))?;
        let link = match &meeting.join_url {
            Some(sealed) => Some(self.tenants.vault(tenant).await?.open_string::<Meeting>(
                &meeting.id,
                "join_url",
                sealed,
            )?),
            None => None,
        };
        let b = &self.bot;
        let service = BotRuleOverrides {
            display_name: Some(b.display_name.clone()),
            chat_notice: Some(b.chat_notice.clone()),
            waiting_room_timeout_seconds: Some(b.waiting_room_timeout_seconds),
            alone_timeout_seconds: Some(b.alone_timeout_seconds),
            silence_timeout_seconds: Some(b.silence_timeout_seconds),
            max_duration_seconds: Some(b.max_duration_seconds),
        };
        let of_tenant = store
            .get_tenant_settings(tenant)
            .await?
            .map(|s| s.bot)
            .unwrap_or_default();
        let eff = job
            .bot_rules
            .clone()
            .unwrap_or_default()
            .over(&of_tenant.over(&service));
        let waiting = eff
            .waiting_room_timeout_seconds
            .unwrap_or(b.waiting_room_timeout_seconds);
        let max = eff.max_duration_seconds.unwrap_or(b.max_duration_seconds);
        // Valid while the bot may be waiting and in its meeting, plus a grace.
        let valid = Duration::from_secs(waiting.saturating_add(max)) + TICKET_GRACE;
        let expires_unix = unix_now().saturating_add(valid.as_secs());
        let expires_at = DateTime::<Utc>::from_timestamp(expires_unix as i64, 0)
            .unwrap_or_else(|| Utc::now() + chrono::Duration::days(1));
        let audio = match (&b.transcriber_url, &self.audio_secret) {
            (Some(url), Some(secret)) => Some(AudioGrant {
                url: format!(
                    "{}/{}/{}",
                    url.trim_end_matches('/'),
                    tenant.as_str(),
                    job.id
                ),
                token: job_token_expiring(secret, tenant.as_str(), &job.id, expires_unix),
            }),
            _ => None,
        };
        let control_token = random(32);
        let record = TicketRecord {
            id: random(16).to_string(),
            control_sha256: control_digest(&control_token),
            audio_expires: audio.as_ref().map(|_| expires_unix),
            expires_at,
        };
        let ticket = BotTicket {
            tenant: tenant.clone(),
            job_id: job.id.clone(),
            meeting_id: meeting.id.clone(),
            platform: meeting.platform.map(|p| format!("{p:?}").to_lowercase()),
            link,
            display_name: eff.display_name.unwrap_or_else(|| b.display_name.clone()),
            chat_notice: eff.chat_notice.unwrap_or_else(|| b.chat_notice.clone()),
            waiting_room_timeout_seconds: waiting,
            alone_timeout_seconds: eff.alone_timeout_seconds.unwrap_or(b.alone_timeout_seconds),
            silence_timeout_seconds: eff
                .silence_timeout_seconds
                .unwrap_or(b.silence_timeout_seconds),
            max_duration_seconds: max,
            bot: b.clone(),
            audio,
            control: ControlGrant {
                url: self.control_url.clone(),
                token: control_token.to_string(),
            },
            trusted_ca: self.transcriber_ca.clone(),
            expires_at,
        };
        // A ticket travels in an environment variable: one that could not be handed over is
        // refused here, with the reason, instead of failing the bot's start.
        if ticket.encode().expose().len() > MAX_TICKET_BYTES {
            return Err(TicketError::TooLarge(MAX_TICKET_BYTES));
        }
        Ok((record, ticket))
    }
}

/// The largest encoded ticket (an environment variable of a process or a pod).
pub const MAX_TICKET_BYTES: usize = 64 * 1024;

/// What the launcher tells a bot that asks about its job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStatus {
    /// The job's state name (`launched`, `joined`, `stopped`, ...).
    pub state: String,
    /// Leave now: the job was stopped, withdrawn or cancelled, its meeting deleted, or the job
    /// is gone or has moved past its meeting.
    pub leave: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "the launcher refused this bot's report ({0}): its ticket is not the job's current one or expired"
    )]
    Refused(u16),
    #[error("the launcher answered {0}")]
    Status(u16),
    #[error("the launcher's control endpoint is unreachable: {0}")]
    Unreachable(String),
}

/// The bot's side of the control endpoint.
#[derive(Clone)]
pub struct BotControl {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl BotControl {
    /// The client for `t`'s launcher, trusting the system's roots and the ticket's CA.
    pub fn new(t: &BotTicket) -> Self {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        for c in t.trusted_ca() {
            if let Ok(c) = reqwest::Certificate::from_der(c.as_ref()) {
                b = b.add_root_certificate(c);
            }
        }
        BotControl {
            http: b.build().unwrap_or_default(),
            base: format!(
                "{}/v1/bots/{}/{}",
                t.control.url,
                t.tenant.as_str(),
                t.job_id
            ),
            token: SecretString::from(t.control.token.clone()),
        }
    }

    fn check(r: reqwest::Response) -> Result<reqwest::Response, ControlError> {
        match r.status().as_u16() {
            200..=299 => Ok(r),
            c @ (401 | 403) => Err(ControlError::Refused(c)),
            c => Err(ControlError::Status(c)),
        }
    }

    /// Reports `kind`; the launcher moves the job (joined, done, failed) and publishes the event.
    pub async fn report(&self, kind: &EventKind) -> Result<(), ControlError> {
        let r = self
            .http
            .post(format!("{}/events", self.base))
            .bearer_auth(self.token.expose_secret())
            .json(kind)
            .send()
            .await
            .map_err(|e| ControlError::Unreachable(e.without_url().to_string()))?;
        Self::check(r).map(|_| ())
    }

    /// Reports `kind`, retrying a few times while the launcher is unreachable (a launcher
    /// replica restarting); refusals are not retried.
    pub async fn report_reliably(&self, kind: &EventKind) -> Result<(), ControlError> {
        let mut wait = Duration::from_millis(200);
        let mut last = None;
        for _ in 0..6 {
            match self.report(kind).await {
                Ok(()) => return Ok(()),
                // A refusal, or an answer about the job (over, malformed): asking again changes
                // nothing.
                Err(e @ ControlError::Refused(_)) => return Err(e),
                Err(ControlError::Status(c)) if c < 500 => return Err(ControlError::Status(c)),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(3));
        }
        Err(last.unwrap_or(ControlError::Status(0)))
    }

    /// The job's state, and whether to leave.
    pub async fn status(&self) -> Result<ControlStatus, ControlError> {
        let r = self
            .http
            .get(&self.base)
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| ControlError::Unreachable(e.without_url().to_string()))?;
        Self::check(r)?
            .json()
            .await
            .map_err(|e| ControlError::Unreachable(e.without_url().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(expires_at: DateTime<Utc>) -> BotTicket {
        BotTicket {
            tenant: "clinic01".parse().unwrap(),
            job_id: "job-1".into(),
            meeting_id: "m-1".into(),
            platform: None,
            link: Some("https://meet.example.test/abc-defg-hij".into()),
            display_name: "Notes bot".into(),
            chat_notice: "recording".into(),
            waiting_room_timeout_seconds: 1,
            alone_timeout_seconds: 2,
            silence_timeout_seconds: 3,
            max_duration_seconds: 4,
            bot: BotConfig::default(),
            audio: Some(AudioGrant {
                url: "ws://127.0.0.1:1/v1/audio/clinic01/job-1".into(),
                token: "v2.1.aa".into(),
            }),
            control: ControlGrant {
                url: "http://127.0.0.1:2".into(),
                token: "control-secret-value".into(),
            },
            trusted_ca: vec![],
            expires_at,
        }
    }

    #[test]
    fn a_ticket_reads_back_as_it_was_issued() {
        let t = ticket(Utc::now() + chrono::Duration::hours(1));
        let back = BotTicket::decode(t.encode().expose(), Utc::now()).unwrap();
        assert_eq!(back.link, t.link);
        assert_eq!(back.control.token, t.control.token);
        assert_eq!(back.max_duration_seconds, 4);
    }

    #[test]
    fn an_expired_ticket_is_refused() {
        let t = ticket(Utc::now() - chrono::Duration::seconds(1));
        assert!(matches!(
            BotTicket::decode(t.encode().expose(), Utc::now()),
            Err(TicketError::Expired(_))
        ));
    }

    #[test]
    fn a_ticket_of_another_shape_is_refused_without_quoting_its_values() {
        let json =
            r#"{"tenant":"clinic01","job_id":"j","link":"https://meet.example.test/secret-room"}"#;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let e = BotTicket::decode(&text, Utc::now())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret-room"), "{e}");
    }

    #[test]
    fn garbage_is_refused_as_an_unreadable_ticket_without_panicking() {
        for bad in ["", "!!!", "e30", "bnVsbA", &"A".repeat(10_000)] {
            assert!(matches!(
                BotTicket::decode(bad, Utc::now()),
                Err(TicketError::Malformed(_))
            ));
        }
    }

    #[test]
    fn neither_the_ticket_nor_its_encoding_prints_the_link_or_a_token() {
        let t = ticket(Utc::now() + chrono::Duration::hours(1));
        let shown = format!("{t:?} {:?}", t.encode());
        for secret in ["meet.example.test", "control-secret-value", "v2.1.aa"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn the_job_record_keeps_a_digest_of_the_control_token_not_the_token() {
        let d = control_digest("control-secret-value");
        assert_eq!(d.len(), 64);
        assert!(!d.contains("control"));
        assert_ne!(d, control_digest("control-secret-valuf"));
    }
}

//! Tenant settings, calendar connections and one's own auto-join rules.

use super::{Json, Path, audit, wire};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use meetbot_calendar_sync::rules::{AutoJoinRules, rules_for, save_rules, save_summary_email};
use meetbot_core::model::{
    BotRuleOverrides, CalendarConnection, CalendarProvider, Role, TenantSettings,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BotRules {
    /// The name participants see (1 to 64 characters).
    pub display_name: Option<String>,
    /// Posted in the meeting chat on joining.
    pub chat_notice: Option<String>,
    #[schema(minimum = 1, maximum = 86400)]
    pub waiting_room_timeout_seconds: Option<u64>,
    #[schema(minimum = 1, maximum = 86400)]
    pub alone_timeout_seconds: Option<u64>,
    #[schema(minimum = 1, maximum = 86400)]
    pub silence_timeout_seconds: Option<u64>,
    #[schema(minimum = 1, maximum = 86400)]
    pub max_duration_seconds: Option<u64>,
}

impl From<&BotRuleOverrides> for BotRules {
    fn from(b: &BotRuleOverrides) -> Self {
        BotRules {
            display_name: b.display_name.clone(),
            chat_notice: b.chat_notice.clone(),
            waiting_room_timeout_seconds: b.waiting_room_timeout_seconds,
            alone_timeout_seconds: b.alone_timeout_seconds,
            silence_timeout_seconds: b.silence_timeout_seconds,
            max_duration_seconds: b.max_duration_seconds,
        }
    }
}

impl From<BotRules> for BotRuleOverrides {
    fn from(b: BotRules) -> Self {
        BotRuleOverrides {
            display_name: b.display_name,
            chat_notice: b.chat_notice,
            waiting_room_timeout_seconds: b.waiting_room_timeout_seconds,
            alone_timeout_seconds: b.alone_timeout_seconds,
            silence_timeout_seconds: b.silence_timeout_seconds,
            max_duration_seconds: b.max_duration_seconds,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliverySettings {
    /// Slack channel id summaries are posted to.
    pub slack_channel: Option<String>,
    /// Whether the tenant's own Slack bot token is set (it is never shown).
    pub own_slack_token: bool,
    pub emails: Vec<String>,
    pub webhook_url: Option<String>,
    /// Whether the tenant's own webhook signing secret is set.
    pub own_webhook_secret: bool,
    /// The webhook signing secret, only in the answer to the change that made it (verify
    /// `X-Meetbot-Signature: v1=HMAC-SHA256(secret, "<X-Meetbot-Timestamp>.<body>")` with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_webhook_secret: Option<String>,
}

/// Redaction before storage: what the transcriber removes from speech before anything is
/// kept, streamed or stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    pub enabled: bool,
    /// Identifier classes: NAME, ADDRESS, ZIP, DATE, AGE, PHONE, FAX, EMAIL, SSN, RECORD,
    /// HEALTH_PLAN, ACCOUNT, LICENSE, VEHICLE, DEVICE, URL, IP, ID; [] means all of them.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Sensitive topics, name -> phrases (a sentence with a phrase becomes
    /// `[TOPIC:<name>]`). Absent or null: the built-in lists; {}: no topics.
    #[serde(default)]
    pub topics: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// A retention override for one client or one meeting series.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// A client or contact among a meeting's people: an email address, or `@domain` for
    /// everyone at a domain.
    pub client: Option<String>,
    /// A meeting series: a meeting's `series_id`.
    pub series: Option<String>,
    /// Days transcripts of these meetings are kept (0: until deleted; absent: the tenant's).
    #[schema(minimum = 0, maximum = 3650)]
    pub transcript_days: Option<u32>,
    /// Days summaries of these meetings are kept (0: until deleted; absent: the tenant's).
    #[schema(minimum = 0, maximum = 3650)]
    pub summary_days: Option<u32>,
}

fn check_rules(rules: &[RetentionRule]) -> Result<(), ApiError> {
    if rules.len() > 500 {
        return Err(ApiError::BadRequest("retention_rules: at most 500".into()));
    }
    for (i, r) in rules.iter().enumerate() {
        let bad = |what: &str| ApiError::BadRequest(format!("retention_rules[{i}]: {what}"));
        match (&r.client, &r.series) {
            (Some(c), None) => {
                let c = c.trim();
                let ok = match c.strip_prefix('@') {
                    Some(domain) => {
                        domain.contains('.')
                            && domain.len() <= 253
                            && domain
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    }
                    None => meetbot_delivery::email::is_address(c),
                };
                if !ok {
                    return Err(bad("client is not an email address or @domain"));
                }
            }
            (None, Some(sr)) => {
                if sr.trim().is_empty() || sr.len() > 1024 {
                    return Err(bad("series must be a meeting's series_id"));
                }
            }
            _ => return Err(bad("give exactly one of client and series")),
        }
        if r.transcript_days.is_none() && r.summary_days.is_none() {
            return Err(bad("give transcript_days, summary_days or both"));
        }
        if r.transcript_days.is_some_and(|d| d > 3650) || r.summary_days.is_some_and(|d| d > 3650) {
            return Err(bad("days are out of range 0..=3650"));
        }
    }
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct RedactionOut {
    pub enabled: bool,
    /// The classes redacted.
    pub classes: Vec<String>,
    /// The topic lists in force.
    pub topics: std::collections::BTreeMap<String, Vec<String>>,
    /// Whether the topics are the built-in lists.
    pub builtin_topics: bool,
}

/// Every identifier class redaction knows, by its label.
pub fn redaction_classes() -> Vec<&'static str> {
    meetbot_redact::Class::ALL
        .iter()
        .map(|c| c.label())
        .collect()
}

fn redaction_out(r: Option<&meetbot_core::model::RedactionSettings>) -> RedactionOut {
    let r = r.cloned().unwrap_or_default();
    let classes = if r.classes.is_empty() {
        meetbot_redact::Class::ALL
            .iter()
            .map(|c| c.label().to_string())
            .collect()
    } else {
        r.classes.clone()
    };
    RedactionOut {
        enabled: r.enabled,
        classes,
        builtin_topics: r.topics.is_none(),
        topics: r
            .topics
            .unwrap_or_else(meetbot_redact::Topics::builtin_lists),
    }
}

#[derive(Serialize, ToSchema)]
pub struct SettingsOut {
    pub bot: BotRules,
    pub delivery: DeliverySettings,
    /// Every sign-in must also give a TOTP code.
    pub require_mfa: bool,
    /// Days transcripts are kept (0: until deleted; none: the deployment's default).
    pub transcript_retention_days: Option<u32>,
    /// Days summaries are kept (0 or none: until deleted).
    pub summary_retention_days: Option<u32>,
    /// Overrides per client and per meeting series; when several cover a meeting, the
    /// shortest wins.
    pub retention_rules: Vec<RetentionRule>,
    /// The speech engine chosen (none: the deployment's default).
    pub speech_engine: Option<String>,
    /// Customer-held key mode: the age recipient delivered meetings are sealed to.
    pub customer_key: Option<String>,
    /// The engines this deployment offers to choose from.
    pub speech_engines_offered: Vec<String>,
    pub redaction: RedactionOut,
    /// Sign-in only with these identity providers (issuer URLs); empty: any this deployment
    /// offers. The person must always have been added, with a verified address.
    pub allowed_issuers: Vec<String>,
    /// The identity providers this deployment offers (what `allowed_issuers` may name).
    pub identity_providers_offered: Vec<OfferedProvider>,
    /// Sign-in only with addresses at these domains; empty: any domain.
    pub allowed_email_domains: Vec<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// An identity provider this deployment offers for signing in.
#[derive(Clone, Serialize, ToSchema)]
pub struct OfferedProvider {
    /// Its name in `/v1/auth/{provider}/login`.
    pub name: String,
    /// Its issuer URL (what `allowed_issuers` names).
    pub issuer: String,
}

fn offered(api: &AppState) -> Vec<OfferedProvider> {
    api.oidc
        .offered()
        .into_iter()
        .map(|(name, issuer)| OfferedProvider { name, issuer })
        .collect()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryPatch {
    /// A Slack channel id (C..., G...); "" removes it.
    pub slack_channel: Option<String>,
    /// The tenant's own Slack bot token (xoxb-...); "" removes it. Write-only.
    pub slack_token: Option<String>,
    /// Replaces the list; [] removes every address.
    pub emails: Option<Vec<String>>,
    /// An https URL; "" removes it (and its secret). Setting the first one makes its secret.
    pub webhook_url: Option<String>,
    /// A new signing secret for the webhook (the old one stops at once).
    pub rotate_webhook_secret: Option<bool>,
}

/// Fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Replaces the tenant's bot rules.
    pub bot: Option<BotRules>,
    pub delivery: Option<DeliveryPatch>,
    pub require_mfa: Option<bool>,
    /// 0 to 3650 days (0: kept until deleted).
    #[schema(minimum = 0, maximum = 3650)]
    pub transcript_retention_days: Option<u32>,
    /// 0 to 3650 days (0: kept until deleted).
    #[schema(minimum = 0, maximum = 3650)]
    pub summary_retention_days: Option<u32>,
    /// Replaces the overrides per client and per meeting series. Retention changes apply to
    /// what is already stored too (from when each record was stored).
    pub retention_rules: Option<Vec<RetentionRule>>,
    /// One of `speech_engines_offered`; "" returns to the default.
    pub speech_engine: Option<String>,
    /// Customer-held key mode (owners): an age X25519 recipient (`age1...`); delivered
    /// meetings are then sealed to it only and the service can no longer read them. "" ends
    /// the mode for later meetings (those sealed stay sealed).
    pub customer_key: Option<String>,
    /// Replaces the redaction settings (they apply to meetings transcribed from then on).
    pub redaction: Option<Redaction>,
    /// Replaces the identity providers sign-in is accepted from (issuer URLs this deployment
    /// offers; [] accepts any). Owners, signed in within the last 10 minutes.
    pub allowed_issuers: Option<Vec<String>>,
    /// Replaces the address domains sign-in is accepted for ([] accepts any; it must include
    /// your own). Owners, signed in within the last 10 minutes.
    pub allowed_email_domains: Option<Vec<String>>,
}

async fn settings_out(api: &AppState, c: &Caller) -> ApiResult<SettingsOut> {
    let store = api.tenants.store();
    let Some(s) = store.get_tenant_settings(&c.tenant).await? else {
        return Ok(SettingsOut {
            bot: BotRules::default(),
            delivery: DeliverySettings {
                slack_channel: None,
                own_slack_token: false,
                emails: vec![],
                webhook_url: None,
                own_webhook_secret: false,
                new_webhook_secret: None,
            },
            require_mfa: false,
            transcript_retention_days: None,
            summary_retention_days: None,
            retention_rules: vec![],
            speech_engine: None,
            customer_key: None,
            speech_engines_offered: api.settings.speech_engines.clone(),
            redaction: redaction_out(None),
            allowed_issuers: vec![],
            identity_providers_offered: offered(api),
            allowed_email_domains: vec![],
            updated_at: None,
        });
    };
    let targets = meetbot_delivery::service::Targets::of(&**store, &api.tenants, &c.tenant)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let rules = meetbot_store::retention::rules_of(&vault, &s)?
        .into_iter()
        .map(|r| RetentionRule {
            client: r.client,
            series: r.series,
            transcript_days: r.transcript_days,
            summary_days: r.summary_days,
        })
        .collect();
    Ok(SettingsOut {
        bot: (&s.bot).into(),
        delivery: DeliverySettings {
            slack_channel: targets.slack_channel,
            own_slack_token: s.delivery.slack_token.is_some(),
            emails: targets.emails,
            webhook_url: targets.webhook_url,
            own_webhook_secret: s.delivery.webhook_secret.is_some(),
            new_webhook_secret: None,
        },
        require_mfa: s.require_mfa,
        transcript_retention_days: s.transcript_retention_days,
        summary_retention_days: s.summary_retention_days,
        retention_rules: rules,
        speech_engine: s.speech_engine,
        customer_key: s.customer_key,
        speech_engines_offered: api.settings.speech_engines.clone(),
        redaction: redaction_out(s.redaction.as_ref()),
        allowed_issuers: s.allowed_issuers,
        identity_providers_offered: offered(api),
        allowed_email_domains: s.allowed_email_domains,
        updated_at: Some(s.updated_at),
    })
}

/// The tenant's settings (admins and owners).
#[utoipa::path(get, path = "/v1/settings", tag = "settings", responses((status = 200, body = SettingsOut)))]
pub async fn get_settings(State(api): State<AppState>, c: Caller) -> ApiResult<Json<SettingsOut>> {
    c.require(Role::Admin, "settings:read")?;
    Ok(Json(settings_out(&api, &c).await?))
}

/// `allowed_issuers` as given: each one an issuer this deployment offers.
fn allowed_issuers(api: &AppState, list: Vec<String>) -> ApiResult<Vec<String>> {
    let offered = api.oidc.issuers();
    if list.len() > 20 {
        return Err(ApiError::BadRequest("allowed_issuers: at most 20".into()));
    }
    let mut out = Vec::new();
    for (i, x) in list.into_iter().enumerate() {
        let x = x.trim().to_string();
        if !offered.contains(&x) {
            return Err(ApiError::BadRequest(format!(
                "allowed_issuers[{i}] is not an identity provider this deployment offers ({})",
                if offered.is_empty() {
                    "it offers none".to_string()
                } else {
                    offered.join(", ")
                }
            )));
        }
        if !out.contains(&x) {
            out.push(x);
        }
    }
    Ok(out)
}

/// `allowed_email_domains` as given: lower-case domain names, including the caller's own (an
/// owner cannot lock themselves out).
fn allowed_domains(list: Vec<String>, own_email: &str) -> ApiResult<Vec<String>> {
    if list.len() > 50 {
        return Err(ApiError::BadRequest(
            "allowed_email_domains: at most 50".into(),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let d = d.trim().trim_start_matches('@').to_lowercase();
        let ok = d.contains('.')
            && d.len() <= 253
            && !d.starts_with(['.', '-'])
            && !d.ends_with(['.', '-'])
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "allowed_email_domains[{i}] is not a domain name (clinic.example)"
            )));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    let own = own_email
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default();
    if !out.is_empty() && !out.contains(&own) {
        return Err(ApiError::BadRequest(
            "allowed_email_domains must include your own address's domain (you would be locked out)"
                .into(),
        ));
    }
    Ok(out)
}

/// Whether `new` redacts less than `old`: redaction on and now off, or a class redacted now
/// that `new` leaves out (no classes listed means every class).
fn weakens_redaction(
    old: Option<&meetbot_core::model::RedactionSettings>,
    new: &Redaction,
) -> bool {
    let Some(old) = old.filter(|o| o.enabled) else {
        return false;
    };
    if !new.enabled {
        return true;
    }
    if new.classes.is_empty() {
        return false;
    }
    let all: Vec<String>;
    let old_classes = if old.classes.is_empty() {
        all = meetbot_redact::Class::ALL
            .iter()
            .map(|c| c.label().to_string())
            .collect();
        &all
    } else {
        &old.classes
    };
    old_classes
        .iter()
        .any(|c| !new.classes.iter().any(|n| n.eq_ignore_ascii_case(c)))
}

fn slack_channel_ok(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Changes the tenant's settings (admins and owners); addresses and tokens are sealed. Turning
/// `require_mfa` off, `delivery.webhook_url`, `delivery.slack_token`, `delivery.slack_channel`,
/// `delivery.emails`, turning redaction off or removing classes, `customer_key`,
/// `allowed_issuers` and `allowed_email_domains` need an owner signed in (or who gave a TOTP
/// code) within the last 10 minutes, not an API key.
#[utoipa::path(patch, path = "/v1/settings", tag = "settings", request_body = SettingsPatch,
    responses((status = 200, body = SettingsOut)))]
pub async fn patch_settings(
    State(api): State<AppState>,
    c: Caller,
    Json(p): Json<SettingsPatch>,
) -> ApiResult<Json<SettingsOut>> {
    c.require(Role::Admin, "settings:write")?;
    let store = api.tenants.store();
    let vault = api.tenants.vault(&c.tenant).await?;
    let mut s = store
        .get_tenant_settings(&c.tenant)
        .await?
        .unwrap_or_else(|| TenantSettings::new(BotRuleOverrides::default(), Utc::now()));
    // Changes that weaken the tenant's security: an owner, in person, recently signed in.
    // Where summaries go is as sensitive as the webhook: a Slack workspace or an address of the
    // caller's choosing receives every one of them.
    let webhook = p.delivery.as_ref().is_some_and(|d| d.webhook_url.is_some());
    let slack = p
        .delivery
        .as_ref()
        .is_some_and(|d| d.slack_token.is_some() || d.slack_channel.is_some());
    let emails = p.delivery.as_ref().is_some_and(|d| d.emails.is_some());
    let redaction_weakened = p
        .redaction
        .as_ref()
        .is_some_and(|r| weakens_redaction(s.redaction.as_ref(), r));
    for (touched, what) in [
        (
            p.require_mfa == Some(false) && s.require_mfa,
            "require_mfa (turning it off)",
        ),
        (webhook, "delivery.webhook_url"),
        (slack, "delivery.slack_token and delivery.slack_channel"),
        (emails, "delivery.emails"),
        (
            redaction_weakened,
            "redaction (turning it off or removing classes)",
        ),
        (p.customer_key.is_some(), "customer_key"),
        (p.allowed_issuers.is_some(), "allowed_issuers"),
        (p.allowed_email_domains.is_some(), "allowed_email_domains"),
    ] {
        if touched {
            c.require_fresh_owner(what, Utc::now())?;
        }
    }
    if let Some(list) = p.allowed_issuers {
        s.allowed_issuers = allowed_issuers(&api, list)?;
    }
    if let Some(list) = p.allowed_email_domains {
        let me = c.person()?;
        let email = vault.open_string::<meetbot_core::model::User>(&me.id, "email", &me.email)?;
        s.allowed_email_domains = allowed_domains(list, &email)?;
    }
    if let Some(b) = p.bot {
        let b: BotRuleOverrides = b.into();
        b.validate()
            .map_err(|e| ApiError::BadRequest(format!("bot: {e}")))?;
        s.bot = b;
    }
    if let Some(days) = p.transcript_retention_days {
        if days > 3650 {
            return Err(ApiError::BadRequest(
                "transcript_retention_days is out of range 0..=3650".into(),
            ));
        }
        s.transcript_retention_days = Some(days);
    }
    let retention_changed = p.transcript_retention_days.is_some()
        || p.summary_retention_days.is_some()
        || p.retention_rules.is_some();
    if let Some(days) = p.summary_retention_days {
        if days > 3650 {
            return Err(ApiError::BadRequest(
                "summary_retention_days is out of range 0..=3650".into(),
            ));
        }
        s.summary_retention_days = Some(days);
    }
    if let Some(rules) = p.retention_rules {
        check_rules(&rules)?;
        s.retention_rules = if rules.is_empty() {
            None
        } else {
            let rules: Vec<meetbot_core::model::RetentionRule> = rules
                .into_iter()
                .map(|r| meetbot_core::model::RetentionRule {
                    client: r.client.map(|c| c.trim().to_lowercase()),
                    series: r.series,
                    transcript_days: r.transcript_days,
                    summary_days: r.summary_days,
                })
                .collect();
            let json = serde_json::to_vec(&rules).map_err(|e| ApiError::Internal(e.to_string()))?;
            Some(vault.seal::<TenantSettings>("settings", "retention_rules", &json)?)
        };
    }
    if let Some(r) = p.redaction {
        let r = meetbot_core::model::RedactionSettings {
            enabled: r.enabled,
            classes: r.classes,
            topics: r.topics,
        };
        meetbot_redact::Redactor::for_settings(&r, None)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        s.redaction = Some(r);
    }
    if let Some(m) = p.require_mfa {
        s.require_mfa = m;
    }
    if let Some(k) = p.customer_key {
        if k.is_empty() {
            s.customer_key = None;
        } else {
            meetbot_delivery::hold::recipient(&k)
                .map_err(|e| ApiError::BadRequest(format!("customer_key: {e}")))?;
            s.customer_key = Some(k.trim().to_string());
        }
    }
    if let Some(e) = p.speech_engine {
        if e.is_empty() {
            s.speech_engine = None;
        } else if api.settings.speech_engines.contains(&e) {
            s.speech_engine = Some(e);
        } else {
            return Err(ApiError::BadRequest(format!(
                "speech_engine: this deployment offers {}",
                if api.settings.speech_engines.is_empty() {
                    "no choice of engine".to_string()
                } else {
                    api.settings.speech_engines.join(", ")
                }
            )));
        }
    }
    let mut new_secret = false;
    if let Some(d) = p.delivery {
        const SET: &str = "settings";
        if d.rotate_webhook_secret == Some(true) {
            new_secret = true;
        }
        if let Some(ch) = d.slack_channel {
            if ch.is_empty() {
                s.delivery.slack_channel = None;
            } else if slack_channel_ok(&ch) {
                s.delivery.slack_channel = Some(ch);
            } else {
                return Err(ApiError::BadRequest(
                    "delivery.slack_channel is not a Slack channel id (C0123ABCD)".into(),
                ));
            }
        }
        if let Some(tok) = d.slack_token {
            s.delivery.slack_token = if tok.is_empty() {
                None
            } else if tok.starts_with("xox")
                && tok.len() <= 255
                && !tok.contains(char::is_whitespace)
            {
                Some(vault.seal::<TenantSettings>(SET, "delivery_slack_token", tok.as_bytes())?)
            } else {
                return Err(ApiError::BadRequest(
                    "delivery.slack_token is not a Slack token (xoxb-...)".into(),
                ));
            };
        }
        if let Some(emails) = d.emails {
            if emails.len() > 50 {
                return Err(ApiError::BadRequest("delivery.emails: at most 50".into()));
            }
            if let Some(i) = emails
                .iter()
                .position(|e| !meetbot_delivery::email::is_address(e.trim()))
            {
                return Err(ApiError::BadRequest(format!(
                    "delivery.emails[{i}] is not an email address"
                )));
            }
            s.delivery.emails = if emails.is_empty() {
                None
            } else {
                let lines: Vec<&str> = emails.iter().map(|e| e.trim()).collect();
                Some(vault.seal::<TenantSettings>(
                    SET,
                    "delivery_emails",
                    lines.join("\n").as_bytes(),
                )?)
            };
        }
        if let Some(u) = d.webhook_url {
            if u.is_empty() {
                s.delivery.webhook_secret = None;
            } else if s.delivery.webhook_secret.is_none() {
                new_secret = true;
            }
            s.delivery.webhook_url = if u.is_empty() {
                None
            } else if url::Url::parse(&u)
                .is_ok_and(|x| x.scheme() == "https" && x.host_str().is_some())
            {
                Some(vault.seal::<TenantSettings>(SET, "delivery_webhook_url", u.as_bytes())?)
            } else {
                return Err(ApiError::BadRequest(
                    "delivery.webhook_url is not an https URL".into(),
                ));
            };
        }
    }
    let mut secret = None;
    if new_secret {
        if s.delivery.webhook_url.is_none() {
            return Err(ApiError::BadRequest(
                "delivery.rotate_webhook_secret: set delivery.webhook_url first".into(),
            ));
        }
        let x = meetbot_delivery::webhook::new_secret()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        s.delivery.webhook_secret = Some(vault.seal::<TenantSettings>(
            "settings",
            "delivery_webhook_secret",
            x.as_bytes(),
        )?);
        secret = Some(x);
    }
    s.updated_at = Utc::now();
    store.put_tenant_settings(&c.tenant, &s).await?;
    audit(&api, &c, "settings.change", "tenant").await?;
    if retention_changed {
        // What is already stored gets the new policy too; the purge removes what is past it.
        meetbot_store::retention::restamp(
            &api.tenants,
            &c.tenant,
            api.settings.default_transcript_days,
        )
        .await?;
    }
    let mut out = settings_out(&api, &c).await?;
    out.delivery.new_webhook_secret = secret;
    Ok(Json(out))
}

// ---- calendars ----

#[derive(Serialize, ToSchema)]
pub struct CalendarOut {
    pub id: String,
    /// google or microsoft.
    pub provider: String,
    /// The meetbot user who connected it.
    pub user_id: String,
    pub account_email: String,
    /// active, needs_reconsent, disconnected, awaiting_approval (its account is not the user's
    /// address: nothing syncs until an admin approves it), ...
    pub status: String,
    /// Where its sync stands: `syncing` (the first round is under way), `active` (the latest
    /// round succeeded), `failed` (the latest round failed: see `error`; polling retries), or
    /// the `status` when that is not active.
    pub state: String,
    /// Why the latest round failed (a feed over a cap, an address that does not answer...).
    pub error: Option<String>,
    /// When the latest round ended, and how many events it applied.
    pub last_synced_at: Option<DateTime<Utc>>,
    pub events: Option<u64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CalendarList {
    pub items: Vec<CalendarOut>,
}

fn calendar_out(x: CalendarConnection, account_email: String) -> CalendarOut {
    let state = match (&x.status, &x.last_sync) {
        (meetbot_core::model::ConnectionStatus::Active, None) if x.sync_cursor.is_none() => {
            "syncing".to_string()
        }
        (meetbot_core::model::ConnectionStatus::Active, Some(l)) if l.error.is_some() => {
            "failed".to_string()
        }
        (meetbot_core::model::ConnectionStatus::Active, _) => "active".to_string(),
        (other, _) => wire(other),
    };
    CalendarOut {
        account_email,
        state,
        error: x.last_sync.as_ref().and_then(|l| l.error.clone()),
        last_synced_at: x.last_sync.as_ref().map(|l| l.at),
        events: x.last_sync.as_ref().map(|l| l.events),
        id: x.id,
        provider: wire(&x.provider),
        user_id: x.user_id,
        status: wire(&x.status),
        created_at: x.created_at,
    }
}

/// Connected calendars: one's own, or all of them for admins.
#[utoipa::path(get, path = "/v1/calendars", tag = "calendars", responses((status = 200, body = CalendarList)))]
pub async fn list_calendars(
    State(api): State<AppState>,
    c: Caller,
) -> ApiResult<Json<CalendarList>> {
    let me = c.person()?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let mut items = Vec::new();
    for x in api.tenants.store().list_connections(&c.tenant).await? {
        if c.role() < Role::Admin && x.user_id != me.id {
            continue;
        }
        let email =
            vault.open_string::<CalendarConnection>(&x.id, "account_email", &x.account_email)?;
        items.push(calendar_out(x, email));
    }
    items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(Json(CalendarList { items }))
}

#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalendarKind {
    Google,
    Microsoft,
}

#[derive(Deserialize, ToSchema)]
pub struct ConnectCalendar {
    pub provider: CalendarKind,
}

#[derive(Serialize, ToSchema)]
pub struct Consent {
    /// Send this same browser here (it now holds the consent's binding cookie), signed in as
    /// you; the provider returns it to calendar-sync's `/oauth/callback`, which refuses any other
    /// browser or person. Valid 10 minutes, once.
    pub authorization_url: String,
}

fn calendars(api: &AppState) -> ApiResult<&meetbot_calendar_sync::worker::SyncWorker> {
    api.calendars.as_deref().ok_or_else(|| {
        ApiError::Conflict("calendar connections are not configured on this deployment".into())
    })
}

/// Starts connecting the caller's calendar (calendar scopes only, PKCE). Sets a short-lived
/// HttpOnly binding cookie: only this browser, signed in as the caller, can finish the consent.
#[utoipa::path(post, path = "/v1/calendars", tag = "calendars", request_body = ConnectCalendar,
    responses((status = 201, body = Consent)))]
pub async fn connect_calendar(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<ConnectCalendar>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    use meetbot_store::browser::{OAUTH_BINDING_COOKIE, binding_cookie};
    use secrecy::ExposeSecret;
    let me = c.person()?;
    let provider = match body.provider {
        CalendarKind::Google => CalendarProvider::Google,
        CalendarKind::Microsoft => CalendarProvider::Microsoft,
    };
    let oauth = calendars(&api)?.oauth().ok_or_else(|| {
        ApiError::Conflict("calendar OAuth is not configured on this deployment".into())
    })?;
    if !oauth.configured(provider) {
        return Err(ApiError::Conflict(format!(
            "{provider:?} calendars are not configured on this deployment"
        )));
    }
    let begun = oauth
        .begin(&c.tenant, &me.id, provider)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    audit(&api, &c, "calendar.connect", &format!("user:{}", me.id)).await?;
    let cookie = binding_cookie(
        OAUTH_BINDING_COOKIE,
        begun.binding.expose_secret(),
        &begun.cookie_path,
        api.settings.cookie_secure,
    );
    let cookie = axum::http::HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::Internal(format!("binding cookie: {e}")))?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::SET_COOKIE, cookie)],
        Json(Consent {
            authorization_url: begun.url.to_string(),
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectIcs {
    /// The calendar's published ICS address (https; kept sealed, like a token).
    pub feed_url: String,
}

/// Connects one's calendar by its ICS feed. The address is checked and stored at once; the
/// first sync runs in the background (202, `state: syncing`): `GET /v1/calendars` shows when
/// it is `active`, or `failed` with the reason (a feed that cannot be fetched or read, or one
/// over this deployment's caps); calendar-sync then polls it.
#[utoipa::path(post, path = "/v1/calendars/ics", tag = "calendars", request_body = ConnectIcs,
    responses(
        (status = 202, body = CalendarOut, description = "stored; the first sync runs in the background"),
        (status = 400, description = "the address is not one this deployment fetches"),
        (status = 409, description = "the user has the most calendar connections allowed"),
    ))]
pub async fn connect_ics(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<ConnectIcs>,
) -> ApiResult<(StatusCode, Json<CalendarOut>)> {
    let me = c.person()?.clone();
    calendars(&api)?;
    let Some(worker) = api.calendars.clone() else {
        return Err(ApiError::Conflict(
            "calendar connections are not configured on this deployment".into(),
        ));
    };
    let vault = api.tenants.vault(&c.tenant).await?;
    let email = vault.open_string::<meetbot_core::model::User>(&me.id, "email", &me.email)?;
    let conn = worker
        .add_ics(&c.tenant, &me.id, &email, body.feed_url.trim())
        .await
        .map_err(|e| match e {
            meetbot_calendar_sync::sync::SyncError::Ics(e) => {
                ApiError::BadRequest(format!("feed_url: {e}"))
            }
            e @ meetbot_calendar_sync::sync::SyncError::TooManyConnections(_) => {
                ApiError::Conflict(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        })?;
    audit(&api, &c, "calendar.connect", &format!("user:{}", me.id)).await?;
    // Off the request path: the round's outcome is recorded on the connection (and the next
    // poll of calendar-sync runs it if this process stops first).
    let (t, id) = (c.tenant.clone(), conn.id.clone());
    tokio::spawn(async move {
        if let Err(e) = worker.sync(&t, &id).await {
            tracing::info!(tenant = %t, connection = %id, error = %e.reason(), "first ICS sync failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(calendar_out(conn, email))))
}

/// Disconnects a calendar: tokens revoked at the provider and erased, its bots withdrawn.
#[utoipa::path(delete, path = "/v1/calendars/{id}", tag = "calendars", params(("id" = String, Path)),
    responses((status = 204)))]
pub async fn disconnect_calendar(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let me = c.person()?;
    let conn = api
        .tenants
        .store()
        .get_connection(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("calendar"))?;
    if conn.user_id != me.id && c.role() < Role::Admin {
        return Err(ApiError::NotFound("calendar"));
    }
    calendars(&api)?
        .disconnect(&c.tenant, &id, &c.actor())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    audit(&api, &c, "calendar.disconnect", &format!("calendar:{id}")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a calendar awaiting approval sync: the account its user consented with is not the
/// user's own address, and an admin (a signed-in person other than that user) confirms that it
/// is theirs to connect. calendar-sync's next poll syncs it. Audited.
#[utoipa::path(post, path = "/v1/calendars/{id}/approve", tag = "calendars", params(("id" = String, Path)),
    responses((status = 200, body = CalendarOut),
        (status = 403, description = "the caller is the calendar's own user: another admin must approve"),
        (status = 409, description = "the calendar is not awaiting approval")))]
pub async fn approve_calendar(
    State(api): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CalendarOut>> {
    use meetbot_core::model::ConnectionStatus;
    let me = c.person()?;
    c.require(Role::Admin, "settings:write")?;
    let store = api.tenants.store();
    let mut conn = store
        .get_connection(&c.tenant, &id)
        .await?
        .ok_or(ApiError::NotFound("calendar"))?;
    if conn.status != ConnectionStatus::AwaitingApproval {
        return Err(ApiError::Conflict(format!(
            "calendar {id} is not awaiting approval (it is {})",
            wire(&conn.status)
        )));
    }
    // The approval is a second person's word: an admin who connected someone else's account
    // cannot wave it through themselves.
    if conn.user_id == me.id {
        return Err(ApiError::Forbidden(
            "you cannot approve your own calendar: another admin must approve it".into(),
        ));
    }
    conn.status = ConnectionStatus::Active;
    conn.updated_at = Utc::now();
    store.put_connection(&c.tenant, &conn).await?;
    audit(&api, &c, "calendar.approve", &format!("calendar:{id}")).await?;
    let vault = api.tenants.vault(&c.tenant).await?;
    let email =
        vault.open_string::<CalendarConnection>(&conn.id, "account_email", &conn.account_email)?;
    Ok(Json(calendar_out(conn, email)))
}

// ---- auto-join rules ----

/// Which meetings get a bot.
#[derive(Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    AllWithLink,
    OrganizedByMe,
    WithExternalAttendees,
    AcceptedOnly,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub mode: JoinMode,
    /// If not empty, the title must contain one of these (case-insensitive).
    #[serde(default)]
    pub include_keywords: Vec<String>,
    /// The title must contain none of these; wins over include_keywords.
    #[serde(default)]
    pub exclude_keywords: Vec<String>,
    /// The organisation's email domains (for with_external_attendees).
    #[serde(default)]
    pub internal_domains: Vec<String>,
}

fn rules_out(r: &AutoJoinRules) -> ApiResult<Rules> {
    serde_json::to_value(r)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The caller's auto-join rules (the default if never set).
#[utoipa::path(get, path = "/v1/me/auto-join-rules", tag = "me", responses((status = 200, body = Rules)))]
pub async fn get_rules(State(api): State<AppState>, c: Caller) -> ApiResult<Json<Rules>> {
    let me = c.person()?;
    let r = rules_for(&api.tenants, &c.tenant, &me.id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .unwrap_or_default();
    Ok(Json(rules_out(&r)?))
}

/// Replaces the caller's auto-join rules; they apply from the next sync.
#[utoipa::path(put, path = "/v1/me/auto-join-rules", tag = "me", request_body = Rules,
    responses((status = 200, body = Rules)))]
pub async fn put_rules(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<Rules>,
) -> ApiResult<Json<Rules>> {
    let me = c.person()?;
    let too_long = |v: &Vec<String>| v.len() > 100 || v.iter().any(|k| k.chars().count() > 200);
    if too_long(&body.include_keywords)
        || too_long(&body.exclude_keywords)
        || too_long(&body.internal_domains)
    {
        return Err(ApiError::BadRequest(
            "keyword and domain lists: at most 100 entries of 200 characters".into(),
        ));
    }
    let rules: AutoJoinRules = serde_json::to_value(&body)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::BadRequest(format!("rules: {e}")))?;
    save_rules(&api.tenants, &c.tenant, &me.id, &rules)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    audit(
        &api,
        &c,
        "settings.auto_join_rules",
        &format!("user:{}", me.id),
    )
    .await?;
    Ok(Json(rules_out(&rules)?))
}

// ---- one's own delivery ----

/// What the caller gets of their own meetings, besides the tenant's delivery targets.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyDelivery {
    /// The summary of each meeting your calendar asked a bot for, emailed to your own address.
    pub summary_email: bool,
}

/// The caller's own delivery settings.
#[utoipa::path(get, path = "/v1/me/delivery", tag = "me", responses((status = 200, body = MyDelivery)))]
pub async fn get_my_delivery(
    State(api): State<AppState>,
    c: Caller,
) -> ApiResult<Json<MyDelivery>> {
    let me = c.person()?;
    let on = api
        .tenants
        .store()
        .get_user_settings(&c.tenant, &me.id)
        .await?
        .is_some_and(|s| s.summary_email);
    Ok(Json(MyDelivery { summary_email: on }))
}

/// Replaces the caller's own delivery settings; they apply to summaries made from now on.
#[utoipa::path(put, path = "/v1/me/delivery", tag = "me", request_body = MyDelivery,
    responses((status = 200, body = MyDelivery)))]
pub async fn put_my_delivery(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<MyDelivery>,
) -> ApiResult<Json<MyDelivery>> {
    let me = c.person()?;
    save_summary_email(&api.tenants, &c.tenant, &me.id, body.summary_email)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    audit(&api, &c, "settings.my_delivery", &format!("user:{}", me.id)).await?;
    Ok(Json(body))
}

#[derive(Serialize, ToSchema)]
pub struct PreviewItem {
    pub meeting_id: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    /// Whether these rules send a bot.
    pub join: bool,
    /// Why (or why not).
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct RulesPreview {
    /// The caller's own calendars' meetings of the next 30 days (at most 50), soonest first.
    pub items: Vec<PreviewItem>,
}

/// Which of the caller's upcoming meetings `rules` would send a bot to, without saving them.
#[utoipa::path(post, path = "/v1/me/auto-join-rules/preview", tag = "me", request_body = Rules,
    responses((status = 200, body = RulesPreview)))]
pub async fn preview_rules(
    State(api): State<AppState>,
    c: Caller,
    Json(body): Json<Rules>,
) -> ApiResult<Json<RulesPreview>> {
    let me = c.person()?;
    let rules: AutoJoinRules = serde_json::to_value(&body)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::BadRequest(format!("rules: {e}")))?;
    let store = api.tenants.store();
    let vault = api.tenants.vault(&c.tenant).await?;
    let email = vault.open_string::<meetbot_core::model::User>(&me.id, "email", &me.email)?;
    let mine: std::collections::HashSet<String> = store
        .list_connections(&c.tenant)
        .await?
        .into_iter()
        .filter(|x| x.user_id == me.id)
        .map(|x| x.id)
        .collect();
    let now = Utc::now();
    let mut items = Vec::new();
    for m in store
        .list_meetings(&c.tenant, Some(now), Some(now + chrono::Duration::days(30)))
        .await?
    {
        if m.deleted_at.is_some() || !m.connection_id.as_ref().is_some_and(|x| mine.contains(x)) {
            continue;
        }
        let o = meetbot_calendar_sync::apply::open_meeting(&vault, &m)?;
        let d = rules.decide(
            &meetbot_calendar_sync::apply::event_of(&m, &o, &email),
            &email,
        );
        items.push(PreviewItem {
            meeting_id: m.id,
            title: o.title,
            starts_at: m.starts_at,
            join: d.join,
            reason: d.reason,
        });
    }
    items.sort_by_key(|i| i.starts_at);
    items.truncate(50);
    Ok(Json(RulesPreview { items }))
}

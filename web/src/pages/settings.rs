//! The organisation's settings (admins), one form per part, each sent as the API's
//! `PATCH /v1/settings` with only what the form changed: changes that weaken security (where
//! summaries go, turning MFA off, weakening redaction) still need an owner signed in within the
//! last ten minutes, as through the API.

use super::{Chrome, list, render};
use crate::viewer::{Form, Viewer, WebError};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use meetbot_api::AppState;
use meetbot_api::error::ApiError;
use meetbot_api::routes::{self, SettingsOut};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub struct ClassBox {
    pub label: &'static str,
    pub on: bool,
}

/// An identity provider this server offers, ticked when the tenant accepts it by name.
pub struct IdpBox {
    pub name: String,
    pub issuer: String,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    csrf: String,
    s: SettingsOut,
    classes: Vec<ClassBox>,
    idps: Vec<IdpBox>,
    /// Allowed issuers this server no longer offers (kept, shown).
    idps_gone: Vec<String>,
    rules_text: String,
    topics_text: String,
    /// Retention in days as the form shows it ("": the deployment's default; 0: until deleted).
    transcript_days: String,
    summary_days: String,
    /// The deployment's transcript retention (`transcriber.transcript_retention_days`).
    default_transcript_days: Option<u32>,
    emails_text: String,
    notice: Option<String>,
    /// A webhook signing secret just made: shown this once.
    new_secret: Option<String>,
    is_owner: bool,
}

fn shown_days(d: Option<u32>) -> String {
    d.filter(|d| *d > 0)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

fn days(d: Option<u32>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "-".into())
}

async fn show(
    api: AppState,
    v: Viewer,
    s: Option<SettingsOut>,
    notice: Option<String>,
) -> Result<Response, WebError> {
    v.require_admin()?;
    let s = match s {
        Some(s) => s,
        None => {
            routes::get_settings(State(api.clone()), v.caller.clone())
                .await?
                .0
        }
    };
    let classes = routes::redaction_classes()
        .into_iter()
        .map(|label| ClassBox {
            label,
            on: s.redaction.classes.iter().any(|c| c == label),
        })
        .collect();
    let rules_text = s
        .retention_rules
        .iter()
        .map(|r| {
            let who = match (&r.client, &r.series) {
                (Some(c), _) => c.clone(),
                (_, Some(sr)) => format!("series:{sr}"),
                _ => String::new(),
            };
            format!("{who} {} {}", days(r.transcript_days), days(r.summary_days))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let topics_text = if s.redaction.builtin_topics {
        String::new()
    } else {
        s.redaction
            .topics
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(render(&SettingsPage {
        chrome: Chrome::of(&v, "Settings", "settings"),
        csrf: v.csrf.clone(),
        new_secret: s.delivery.new_webhook_secret.clone(),
        emails_text: s.delivery.emails.join(", "),
        transcript_days: shown_days(s.transcript_retention_days),
        default_transcript_days: api.settings.default_transcript_days,
        summary_days: shown_days(s.summary_retention_days),
        classes,
        idps_gone: s
            .allowed_issuers
            .iter()
            .filter(|i| !s.identity_providers_offered.iter().any(|o| &o.issuer == *i))
            .cloned()
            .collect(),
        idps: s
            .identity_providers_offered
            .iter()
            .map(|p| IdpBox {
                name: p.name.clone(),
                issuer: p.issuer.clone(),
                on: s.allowed_issuers.contains(&p.issuer),
            })
            .collect(),
        rules_text,
        topics_text,
        notice,
        is_owner: v.role() >= meetbot_core::model::Role::Owner,
        s,
    }))
}

pub async fn page(State(api): State<AppState>, v: Viewer) -> Result<Response, WebError> {
    show(api, v, None, None).await
}

fn bad(field: &str, what: &str) -> WebError {
    ApiError::BadRequest(format!("{field}: {what}")).into()
}

/// A number of days; blank is `blank`.
fn day_field(field: &str, s: &str, blank: Option<u32>) -> Result<Option<u32>, WebError> {
    match s.trim() {
        "" | "-" => Ok(blank),
        d => d
            .parse::<u32>()
            .map(Some)
            .map_err(|_| bad(field, "a whole number of days")),
    }
}

/// Retention rules, one per line: `<client address, @domain or series:ID> <transcript days>
/// <summary days>`, `-` for either left to the tenant's default.
fn parse_rules(text: &str) -> Result<Vec<Value>, WebError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let field = format!("retention rule on line {}", i + 1);
        let [who, t, s] = parts[..] else {
            return Err(bad(
                &field,
                "write it as: who, transcript days, summary days (e.g. @acme.test 30 -)",
            ));
        };
        let (client, series) = match who.strip_prefix("series:") {
            Some(sr) => (None, Some(sr.to_string())),
            None => (Some(who.to_string()), None),
        };
        out.push(json!({
            "client": client,
            "series": series,
            "transcript_days": day_field(&field, t, None)?,
            "summary_days": day_field(&field, s, None)?,
        }));
    }
    Ok(out)
}

/// Topics, one per line: `<name>: <phrase>, <phrase>`.
fn parse_topics(text: &str) -> Result<Map<String, Value>, WebError> {
    let mut out = Map::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, phrases)) = line.split_once(':') else {
            return Err(bad(
                &format!("topic on line {}", i + 1),
                "write it as: name: phrase, phrase",
            ));
        };
        out.insert(name.trim().to_string(), json!(list(phrases)));
    }
    Ok(out)
}

fn text(f: &HashMap<String, String>, k: &str) -> String {
    f.get(k).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn opt_text(f: &HashMap<String, String>, k: &str) -> Value {
    let t = text(f, k);
    if t.is_empty() { Value::Null } else { json!(t) }
}

fn seconds(f: &HashMap<String, String>, k: &str) -> Result<Value, WebError> {
    let t = text(f, k);
    if t.is_empty() {
        return Ok(Value::Null);
    }
    t.parse::<u64>()
        .map(|n| json!(n))
        .map_err(|_| bad(k, "a whole number of seconds"))
}

/// `POST /app/settings/{part}`: one part's form, as a settings patch.
pub async fn save(
    State(api): State<AppState>,
    v: Viewer,
    Path(part): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    v.check(f.get("csrf").map(String::as_str).unwrap_or_default())?;
    v.require_admin()?;
    let now = routes::get_settings(State(api.clone()), v.caller.clone())
        .await?
        .0;
    let patch = match part.as_str() {
        "retention" => {
            // Only what changed: an empty field leaves the tenant's value (or the deployment's
            // default) as it is; 0 keeps records until they are deleted.
            let mut p = Map::new();
            let t = day_field("transcripts", &text(&f, "transcript_days"), None)?;
            if t.is_some() && t != now.transcript_retention_days {
                p.insert("transcript_retention_days".into(), json!(t));
            }
            let sm = day_field("summaries", &text(&f, "summary_days"), None)?;
            if sm.is_some() && sm != now.summary_retention_days {
                p.insert("summary_retention_days".into(), json!(sm));
            }
            p.insert(
                "retention_rules".into(),
                json!(parse_rules(
                    f.get("rules").map(String::as_str).unwrap_or_default()
                )?),
            );
            Value::Object(p)
        }
        "redaction" => {
            let all = routes::redaction_classes();
            let mut classes: Vec<&str> = all
                .iter()
                .copied()
                .filter(|c| f.contains_key(&format!("class_{c}")))
                .collect();
            // Every class ticked is "all" (new classes included), as none ticked is.
            if classes.len() == all.len() {
                classes.clear();
            }
            let topics = if f.contains_key("builtin_topics") {
                Value::Null
            } else {
                Value::Object(parse_topics(
                    f.get("topics").map(String::as_str).unwrap_or_default(),
                )?)
            };
            json!({"redaction": {
                "enabled": f.contains_key("enabled"),
                "classes": classes,
                "topics": topics,
            }})
        }
        "delivery" => {
            // Only what changed: each target is a change an owner makes in person.
            let mut d = Map::new();
            let channel = text(&f, "slack_channel");
            if channel != now.delivery.slack_channel.clone().unwrap_or_default() {
                d.insert("slack_channel".into(), json!(channel));
            }
            let token = text(&f, "slack_token");
            if f.contains_key("remove_slack_token") {
                d.insert("slack_token".into(), json!(""));
            } else if !token.is_empty() {
                d.insert("slack_token".into(), json!(token));
            }
            let emails = list(&text(&f, "emails"));
            if emails != now.delivery.emails {
                d.insert("emails".into(), json!(emails));
            }
            let hook = text(&f, "webhook_url");
            if hook != now.delivery.webhook_url.clone().unwrap_or_default() {
                d.insert("webhook_url".into(), json!(hook));
            }
            if f.contains_key("rotate_webhook_secret") {
                d.insert("rotate_webhook_secret".into(), json!(true));
            }
            json!({ "delivery": d })
        }
        "bot" => json!({"bot": {
            "display_name": opt_text(&f, "display_name"),
            "chat_notice": opt_text(&f, "chat_notice"),
            "waiting_room_timeout_seconds": seconds(&f, "waiting_room_timeout_seconds")?,
            "alone_timeout_seconds": seconds(&f, "alone_timeout_seconds")?,
            "silence_timeout_seconds": seconds(&f, "silence_timeout_seconds")?,
            "max_duration_seconds": seconds(&f, "max_duration_seconds")?,
        }}),
        "security" => {
            let mut p = Map::new();
            let mfa = f.contains_key("require_mfa");
            if mfa != now.require_mfa {
                p.insert("require_mfa".into(), json!(mfa));
            }
            let engine = text(&f, "speech_engine");
            if engine != now.speech_engine.clone().unwrap_or_default() {
                p.insert("speech_engine".into(), json!(engine));
            }
            let key = text(&f, "customer_key");
            if key != now.customer_key.clone().unwrap_or_default() {
                p.insert("customer_key".into(), json!(key));
            }
            Value::Object(p)
        }
        "sign-in" => {
            // Only what changed: each is a change an owner makes in person.
            let mut p = Map::new();
            // An allowed issuer this server no longer offers has no box: it stays as it is
            // (dropping it could leave the list empty, which accepts any provider).
            let mut issuers: Vec<String> = now
                .identity_providers_offered
                .iter()
                .filter(|o| f.contains_key(&format!("idp_{}", o.name)))
                .map(|o| o.issuer.clone())
                .chain(
                    now.allowed_issuers
                        .iter()
                        .filter(|i| {
                            !now.identity_providers_offered
                                .iter()
                                .any(|o| &o.issuer == *i)
                        })
                        .cloned(),
                )
                .collect();
            let mut was = now.allowed_issuers.clone();
            issuers.sort();
            was.sort();
            if issuers != was {
                p.insert("allowed_issuers".into(), json!(issuers));
            }
            let domains: Vec<String> = list(&text(&f, "email_domains"))
                .into_iter()
                .map(|d| d.to_lowercase())
                .collect();
            if domains != now.allowed_email_domains {
                p.insert("allowed_email_domains".into(), json!(domains));
            }
            Value::Object(p)
        }
        _ => return Err(ApiError::NotFound("settings part").into()),
    };
    let patch: routes::SettingsPatch = serde_json::from_value(patch)
        .map_err(|e| ApiError::BadRequest(format!("the form could not be read: {e}")))?;
    let saved = routes::patch_settings(State(api.clone()), v.caller.clone(), routes::Json(patch))
        .await?
        .0;
    show(api, v, Some(saved), Some("Saved.".into())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retention_lines_read_as_who_then_days_and_a_bad_line_is_named() {
        let r = parse_rules("@acme.test 30 -\n\n  series:abc 7 90 \njo@client.test - 5").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0]["client"], "@acme.test");
        assert_eq!(r[0]["transcript_days"], 30);
        assert!(r[0]["summary_days"].is_null());
        assert_eq!(r[1]["series"], "abc");
        assert!(r[1]["client"].is_null());
        let e = parse_rules("@acme.test 30 -\n@b.test thirty -").unwrap_err();
        assert!(format!("{e:?}").contains("line 2"), "{e:?}");
        assert!(parse_rules("@acme.test 30").is_err(), "a missing column");
    }

    #[test]
    fn topics_read_as_name_colon_phrases() {
        let t = parse_topics("salary: salary, pay rise\nhealth:sick leave").unwrap();
        assert_eq!(t["salary"], json!(["salary", "pay rise"]));
        assert_eq!(t["health"], json!(["sick leave"]));
        assert!(parse_topics("no colon here").is_err());
    }

    proptest! {
        // Whatever a form sends, the parsers answer (a value or a named error), never panic.
        #[test]
        fn any_form_text_parses_or_is_refused_without_panicking(text in "\\PC{0,300}") {
            let _ = parse_rules(&text);
            let _ = parse_topics(&text);
            let _ = day_field("f", &text, None);
            let _ = list(&text);
        }
    }
}

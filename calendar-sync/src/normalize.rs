//! Provider payloads (Google Calendar API v3 `Event` / `Events` list, Microsoft Graph `event` /
//! collection or delta page) normalised into one plain [`NormalizedEvent`].
//!
//! Plain means unsealed: this is what sync code holds in memory before sealing it into a
//! `meetbot_core::model::Meeting`, and what `meetbot calendar parse` prints for support staff.
//! Every malformed input is an [`ParseError`] naming the event and field, never a panic.

use crate::links::{MeetingLink, Source, best_link};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use meetbot_core::model::{CalendarProvider, MeetingStatus, Platform};
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Accepted,
    Tentative,
    Declined,
    NeedsAction,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attendee {
    pub email: String,
    pub name: Option<String>,
    pub response: Response,
    pub organizer: bool,
    /// The connected user themself.
    pub is_self: bool,
    /// A room or other resource, not a person.
    pub resource: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NormalizedEvent {
    pub provider: CalendarProvider,
    /// The provider's id of this instance (for recurring series, of this occurrence).
    pub instance_id: String,
    pub series_id: Option<String>,
    pub title: String,
    /// `None` only for a removed/cancelled instance the provider sent without times.
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub time_zone: Option<String>,
    pub all_day: bool,
    pub status: MeetingStatus,
    pub organizer_email: Option<String>,
    pub attendees: Vec<Attendee>,
    /// The connected user's own answer.
    pub self_response: Response,
    pub link: Option<MeetingLink>,
    /// Deleted from the calendar (Graph delta `@removed`, Google cancelled instance).
    pub removed: bool,
    /// The invitation's UID, the same in every invitee's calendar (Google `iCalUID`, Graph
    /// `iCalUId` with Outlook's per-occurrence date taken out, ICS `UID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// For an occurrence of a recurring series, the start it had in the series (kept when that
    /// one occurrence is moved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_start: Option<DateTime<Utc>>,
    /// When the provider last changed the event (Google `updated`, Graph
    /// `lastModifiedDateTime`, ICS `LAST-MODIFIED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_updated_at: Option<DateTime<Utc>>,
}

/// The invitation UID every invitee's calendar shares. Outlook's GlobalObjectId (hex, class id
/// `040000008200E00074C5B7101A82E008`) carries the occurrence date in bytes 16 to 19: zeroed
/// here, as in the UID Exchange sends to other calendars; one that wraps a foreign UID
/// (`vCal-Uid`) gives that UID.
pub fn invitation_uid(raw: &str) -> Option<String> {
    const CLASS: &str = "040000008200E00074C5B7101A82E008";
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let is_goid = raw.len() >= 80
        && raw.len().is_multiple_of(2)
        && raw[..CLASS.len()].eq_ignore_ascii_case(CLASS)
        && raw.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_goid {
        return Some(raw.to_string());
    }
    let bytes = hex::decode(raw).ok()?;
    // class id 16, instance date 4, creation time 8, reserved 8, data size 4 (LE), data.
    let data = bytes.get(40..).unwrap_or_default();
    if let Some(rest) = data.strip_prefix(b"vCal-Uid\x01\x00\x00\x00") {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if let Ok(uid) = std::str::from_utf8(&rest[..end])
            && !uid.trim().is_empty()
        {
            return Some(uid.trim().to_string());
        }
    }
    let mut clean = bytes;
    clean[16..20].fill(0);
    Some(hex::encode_upper(clean))
}

fn instant(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    let text = s(v, key)?;
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            // Graph writes `2019-04-16T09:00:00Z`, sometimes with 7 fractional digits and
            // without an offset.
            chrono::NaiveDateTime::parse_from_str(
                text.trim_end_matches('Z'),
                "%Y-%m-%dT%H:%M:%S%.f",
            )
            .ok()
            .map(|n| n.and_utc())
        })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a {provider} event or event list: {detail}")]
    Shape {
        provider: &'static str,
        detail: String,
    },
    #[error("event {id}: field {field}: {detail}")]
    Field {
        id: String,
        field: &'static str,
        detail: String,
    },
    /// A cap on the work one calendar may cost was reached: the whole round is refused.
    #[error(
        "the calendar is refused: it needs more than {limit} {what} (this deployment's limit); \
         remove old or very frequent recurring events, or split the calendar"
    )]
    Limit { what: &'static str, limit: usize },
}

/// Parses an event or a list/delta page from `provider` into normalised events.
pub fn parse_payload(
    provider: CalendarProvider,
    bytes: &[u8],
) -> Result<Vec<NormalizedEvent>, ParseError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    match provider {
        CalendarProvider::Google => one_or_list(&v, "google", "items", "list", google_event),
        CalendarProvider::Microsoft => {
            one_or_list(&v, "microsoft", "value", "collection", graph_event)
        }
        CalendarProvider::Ics => Err(shape("ics", "ICS feeds are not JSON")),
    }
}

/// A single event (it has an `id`) or a page whose events are under `list_key`.
fn one_or_list(
    v: &Value,
    provider: &'static str,
    list_key: &str,
    list_name: &str,
    parse: fn(&Value) -> Result<NormalizedEvent, ParseError>,
) -> Result<Vec<NormalizedEvent>, ParseError> {
    if let Some(items) = v.get(list_key) {
        let items = items
            .as_array()
            .ok_or_else(|| shape(provider, &format!("`{list_key}` is not an array")))?;
        items.iter().map(parse).collect()
    } else if v.get("id").is_some() {
        Ok(vec![parse(v)?])
    } else {
        Err(shape(
            provider,
            &format!("neither an event (with `id`) nor a {list_name} (with `{list_key}`)"),
        ))
    }
}

fn shape(provider: &'static str, detail: &str) -> ParseError {
    ParseError::Shape {
        provider,
        detail: detail.to_string(),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn b(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn field(id: &str, field: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError::Field {
        id: id.chars().take(200).collect(),
        field,
        detail: detail.into(),
    }
}

/// A zone by IANA name or, as Microsoft Graph and Outlook write them, by Windows name
/// ("Pacific Standard Time", mapped to IANA by CLDR: [`crate::tz`]).
fn tz(id: &str, name: &str, f: &'static str) -> Result<chrono_tz::Tz, ParseError> {
    crate::tz::named(name).ok_or_else(|| {
        field(id, f, format!("unknown time zone {name:?} (IANA and Windows names and UTC are understood; ask Graph for Prefer: outlook.timezone=\"UTC\")"))
    })
}

fn local_to_utc(
    id: &str,
    f: &'static str,
    naive: NaiveDateTime,
    zone: Option<&str>,
) -> Result<DateTime<Utc>, ParseError> {
    match zone {
        None | Some("UTC") | Some("Etc/UTC") | Some("tzone://Microsoft/Utc") => {
            Ok(Utc.from_utc_datetime(&naive))
        }
        // In a DST gap the wall time does not exist: the instant just after the gap; in an
        // overlap the earlier instant (what calendar clients show).
        Some(z) => Ok(crate::tz::Zone::Tz(tz(id, z, f)?).to_utc(naive)),
    }
}

/// A provider's start or end, resolved.
struct When {
    at: DateTime<Utc>,
    all_day: bool,
    zone: Option<String>,
}

// ---------------------------------------------------------------- Google

/// Google `start`/`end`: `{dateTime (RFC 3339), timeZone}` or `{date}` for all-day.
fn google_time(id: &str, v: Option<&Value>, f: &'static str) -> Result<Option<When>, ParseError> {
    // Absent and null are the same (typed clients re-serialise missing fields as null).
    let Some(v) = v.filter(|x| !x.is_null()) else {
        return Ok(None);
    };
    let zone = s(v, "timeZone").map(String::from);
    if let Some(dt) = s(v, "dateTime") {
        let t = DateTime::parse_from_rfc3339(dt)
            .map_err(|e| field(id, f, format!("bad dateTime {dt:?}: {e}")))?;
        return Ok(Some(When {
            at: t.with_timezone(&Utc),
            all_day: false,
            zone,
        }));
    }
    if let Some(d) = s(v, "date") {
        let day = NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|e| field(id, f, format!("bad date {d:?}: {e}")))?;
        let midnight = day
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| field(id, f, "bad date"))?;
        let at = local_to_utc(id, f, midnight, zone.as_deref())?;
        return Ok(Some(When {
            at,
            all_day: true,
            zone,
        }));
    }
    Err(field(id, f, "has neither dateTime nor date"))
}

fn google_response(r: Option<&str>) -> Response {
    match r {
        Some("accepted") => Response::Accepted,
        Some("tentative") => Response::Tentative,
        Some("declined") => Response::Declined,
        Some("needsAction") => Response::NeedsAction,
        _ => Response::None,
    }
}

/// One Google Calendar API v3 `Event` resource.
pub fn google_event(v: &Value) -> Result<NormalizedEvent, ParseError> {
    let id = s(v, "id")
        .filter(|x| !x.is_empty())
        .ok_or_else(|| shape("google", "event without `id`"))?
        .to_string();
    let status = match s(v, "status") {
        Some("cancelled") => MeetingStatus::Cancelled,
        Some("tentative") => MeetingStatus::Tentative,
        _ => MeetingStatus::Confirmed,
    };
    let start = google_time(&id, v.get("start"), "start")?;
    let end = google_time(&id, v.get("end"), "end")?;
    // Cancelled instances in incremental results may carry only originalStartTime.
    let start = match start {
        Some(x) => Some(x),
        None => google_time(&id, v.get("originalStartTime"), "originalStartTime")?,
    };
    if start.is_none() && status != MeetingStatus::Cancelled {
        return Err(field(&id, "start", "missing"));
    }
    let attendees: Vec<Attendee> = v
        .get("attendees")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    Some(Attendee {
                        email: s(a, "email")?.to_ascii_lowercase(),
                        name: s(a, "displayName").map(String::from),
                        response: google_response(s(a, "responseStatus")),
                        organizer: b(a, "organizer"),
                        is_self: b(a, "self"),
                        resource: b(a, "resource"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let organizer = v.get("organizer");
    let organizer_is_self = organizer.is_some_and(|o| b(o, "self"));
    let self_response = attendees
        .iter()
        .find(|a| a.is_self)
        .map(|a| a.response)
        .unwrap_or(if organizer_is_self {
            Response::Accepted
        } else {
            Response::None
        });

    let mut conference = Vec::new();
    if let Some(eps) = v
        .pointer("/conferenceData/entryPoints")
        .and_then(Value::as_array)
    {
        for ep in eps {
            if s(ep, "entryPointType") == Some("video")
                && let Some(u) = s(ep, "uri")
            {
                conference.push(u.to_string());
            }
        }
    }
    if let Some(h) = s(v, "hangoutLink") {
        conference.push(h.to_string());
    }
    let location = s(v, "location").unwrap_or("");
    let description = s(v, "description").unwrap_or("");
    let link = best_link(
        conference
            .iter()
            .map(|c| (c.as_str(), Source::Conference))
            .chain([
                (location, Source::Location),
                (description, Source::Description),
            ]),
    );
    let (starts_at, all_day, time_zone) = match start {
        Some(w) => (Some(w.at), w.all_day, w.zone),
        None => (None, false, None),
    };
    let original_start = google_time(&id, v.get("originalStartTime"), "originalStartTime")
        .ok()
        .flatten()
        .map(|w| w.at);
    Ok(NormalizedEvent {
        uid: s(v, "iCalUID").and_then(invitation_uid),
        original_start,
        source_updated_at: instant(v, "updated"),
        provider: CalendarProvider::Google,
        series_id: s(v, "recurringEventId").map(String::from),
        title: s(v, "summary").unwrap_or("").to_string(),
        starts_at,
        ends_at: end.map(|e| e.at),
        time_zone,
        all_day,
        removed: status == MeetingStatus::Cancelled,
        status,
        organizer_email: organizer
            .and_then(|o| s(o, "email"))
            .map(str::to_ascii_lowercase),
        attendees,
        self_response,
        link,
        instance_id: id,
    })
}

// ---------------------------------------------------------------- Microsoft Graph

fn graph_time(id: &str, v: Option<&Value>, f: &'static str) -> Result<Option<When>, ParseError> {
    // Absent and null are the same (typed clients re-serialise missing fields as null).
    let Some(v) = v.filter(|x| !x.is_null()) else {
        return Ok(None);
    };
    let dt = s(v, "dateTime").ok_or_else(|| field(id, f, "missing dateTime"))?;
    let zone = s(v, "timeZone");
    let naive = NaiveDateTime::parse_from_str(dt, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(dt, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|e| field(id, f, format!("bad dateTime {dt:?}: {e}")))?;
    let at = local_to_utc(id, f, naive, zone)?;
    Ok(Some(When {
        at,
        all_day: false,
        zone: zone.map(String::from),
    }))
}

fn graph_response(r: Option<&str>) -> Response {
    match r {
        Some("accepted") | Some("organizer") => Response::Accepted,
        Some("tentativelyAccepted") => Response::Tentative,
        Some("declined") => Response::Declined,
        Some("notResponded") => Response::NeedsAction,
        _ => Response::None,
    }
}

/// One Microsoft Graph `event` (from `calendarView`, `calendarView/delta` or `events`).
pub fn graph_event(v: &Value) -> Result<NormalizedEvent, ParseError> {
    let id = s(v, "id")
        .filter(|x| !x.is_empty())
        .ok_or_else(|| shape("microsoft", "event without `id`"))?
        .to_string();
    let removed = v.get("@removed").is_some();
    let cancelled = removed || b(v, "isCancelled");
    let start = graph_time(&id, v.get("start"), "start")?;
    let end = graph_time(&id, v.get("end"), "end")?;
    if start.is_none() && !cancelled {
        return Err(field(&id, "start", "missing"));
    }
    let self_response = graph_response(
        v.pointer("/responseStatus/response")
            .and_then(Value::as_str),
    );
    let organizer_email = v
        .pointer("/organizer/emailAddress/address")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let attendees: Vec<Attendee> = v
        .get("attendees")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    let email = a
                        .pointer("/emailAddress/address")
                        .and_then(Value::as_str)?
                        .to_ascii_lowercase();
                    Some(Attendee {
                        organizer: organizer_email.as_deref() == Some(email.as_str()),
                        name: a
                            .pointer("/emailAddress/name")
                            .and_then(Value::as_str)
                            .map(String::from),
                        response: graph_response(
                            a.pointer("/status/response").and_then(Value::as_str),
                        ),
                        is_self: false,
                        resource: s(a, "type") == Some("resource"),
                        email,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let status = if cancelled {
        MeetingStatus::Cancelled
    } else if self_response == Response::Tentative || s(v, "showAs") == Some("tentative") {
        MeetingStatus::Tentative
    } else {
        MeetingStatus::Confirmed
    };
    let mut conference: Vec<String> = Vec::new();
    if let Some(u) = v.pointer("/onlineMeeting/joinUrl").and_then(Value::as_str) {
        conference.push(u.to_string());
    }
    if let Some(u) = s(v, "onlineMeetingUrl") {
        conference.push(u.to_string());
    }
    let mut locations: Vec<String> = Vec::new();
    if let Some(l) = v.pointer("/location/displayName").and_then(Value::as_str) {
        locations.push(l.to_string());
    }
    if let Some(l) = v.pointer("/location/locationUri").and_then(Value::as_str) {
        locations.push(l.to_string());
    }
    for l in v
        .get("locations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for k in ["displayName", "locationUri"] {
            if let Some(x) = s(l, k) {
                locations.push(x.to_string());
            }
        }
    }
    let body = v
        .pointer("/body/content")
        .and_then(Value::as_str)
        .or_else(|| s(v, "bodyPreview"))
        .unwrap_or("");
    let link = best_link(
        conference
            .iter()
            .map(|c| (c.as_str(), Source::Conference))
            .chain(locations.iter().map(|l| (l.as_str(), Source::Location)))
            .chain([(body, Source::Description)]),
    );
    let (starts_at, time_zone) = match start {
        Some(w) => (Some(w.at), w.zone),
        None => (None, None),
    };
    let series_id = match s(v, "type") {
        Some("occurrence") | Some("exception") => s(v, "seriesMasterId").map(String::from),
        _ => None,
    };
    Ok(NormalizedEvent {
        uid: s(v, "iCalUId").and_then(invitation_uid),
        original_start: instant(v, "originalStart"),
        source_updated_at: instant(v, "lastModifiedDateTime"),
        provider: CalendarProvider::Microsoft,
        instance_id: id,
        series_id,
        title: s(v, "subject").unwrap_or("").to_string(),
        starts_at,
        ends_at: end.map(|e| e.at),
        time_zone,
        all_day: b(v, "isAllDay"),
        status,
        organizer_email,
        attendees,
        self_response,
        link,
        removed,
    })
}

impl NormalizedEvent {
    pub fn platform(&self) -> Option<Platform> {
        self.link.as_ref().map(|l| l.platform)
    }

    /// An instance deleted from the calendar (known by its id only).
    pub fn removal(provider: CalendarProvider, instance_id: String) -> Self {
        NormalizedEvent {
            provider,
            instance_id,
            series_id: None,
            title: String::new(),
            starts_at: None,
            ends_at: None,
            time_zone: None,
            all_day: false,
            status: MeetingStatus::Cancelled,
            organizer_email: None,
            attendees: vec![],
            self_response: Response::None,
            link: None,
            removed: true,
            uid: None,
            original_start: None,
            source_updated_at: None,
        }
    }
}

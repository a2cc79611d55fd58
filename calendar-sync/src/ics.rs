//! ICS feeds (RFC 5545), the third calendar source: a calendar's published `.ics` address
//! (Google's "secret address in iCal format", Outlook's published calendar, any CalDAV server's
//! export), polled. The feed is always the whole calendar, so each round is a full snapshot:
//! events in the window are applied, recurring ones expanded (RRULE, RDATE, EXDATE, with
//! RECURRENCE-ID overrides), and meetings of the connection that are no longer in the feed are
//! cancelled by the round (see `sync.rs`).
//!
//! Lines are unfolded and split into components and properties by the `icalendar` crate's
//! parser; recurrences are expanded by the `rrule` crate. Every malformed event is a
//! [`ParseError`] naming the event (UID) and field, never a panic.

use crate::links::{Source, best_link};
use crate::normalize::{Attendee, NormalizedEvent, ParseError, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use icalendar::parser::{Component, Property};
use meetbot_core::model::{CalendarProvider, MeetingStatus};
use std::collections::HashMap;

/// At most this many occurrences of one recurring event inside the window (the first ones;
/// the rest of that event is left out).
pub const MAX_OCCURRENCES: u16 = 500;

/// What reading one feed may cost. A feed that needs more is refused as a whole, never cut
/// short: a round is a snapshot, and a truncated snapshot would cancel the meetings cut off.
/// Expansion stops at the first step past a cap (nothing is expanded and then counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedLimits {
    /// Events (single ones and occurrences) inside the window.
    pub max_instances: usize,
    /// Occurrences the recurrence rules are stepped through, from each event's start to the
    /// window's end (those before the window cost the same time): the expansion's work.
    pub max_steps: usize,
    /// Bytes the produced events may hold (each occurrence carries its event's title,
    /// attendees and link): their memory.
    pub max_event_bytes: usize,
    /// Wall-clock time for parsing and expansion (a guard behind the counted caps).
    pub max_time: std::time::Duration,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            max_instances: 5_000,
            max_steps: 200_000,
            max_event_bytes: 32 << 20,
            max_time: std::time::Duration::from_secs(10),
        }
    }
}

/// The work a feed has cost so far, against its [`FeedLimits`].
struct Budget {
    l: FeedLimits,
    deadline: std::time::Instant,
    instances: usize,
    steps: usize,
    bytes: usize,
}

fn over(what: &'static str, limit: usize) -> ParseError {
    ParseError::Limit { what, limit }
}

impl Budget {
    fn new(l: FeedLimits) -> Self {
        Budget {
            l,
            deadline: std::time::Instant::now() + l.max_time,
            instances: 0,
            steps: 0,
            bytes: 0,
        }
    }

    /// One occurrence stepped through.
    fn step(&mut self) -> Result<(), ParseError> {
        self.steps += 1;
        if self.steps > self.l.max_steps {
            return Err(over("recurrence steps", self.l.max_steps));
        }
        self.in_time()
    }

    fn in_time(&self) -> Result<(), ParseError> {
        if std::time::Instant::now() > self.deadline {
            return Err(over(
                "seconds to read",
                self.l.max_time.as_secs().max(1) as usize,
            ));
        }
        Ok(())
    }

    /// One event produced, holding about `size` bytes.
    fn emit(&mut self, size: usize) -> Result<(), ParseError> {
        self.instances += 1;
        if self.instances > self.l.max_instances {
            return Err(over("events in the sync window", self.l.max_instances));
        }
        self.bytes += size;
        if self.bytes > self.l.max_event_bytes {
            return Err(over("bytes of events", self.l.max_event_bytes));
        }
        Ok(())
    }
}

fn field(id: &str, f: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError::Field {
        id: id.to_string(),
        field: f,
        detail: detail.into(),
    }
}

fn prop<'a>(c: &'a Component<'a>, name: &str) -> Option<&'a Property<'a>> {
    c.properties
        .iter()
        .find(|p| p.name.as_str().eq_ignore_ascii_case(name))
}

fn text<'a>(c: &'a Component<'a>, name: &str) -> Option<String> {
    prop(c, name).map(|p| unescape(p.val.as_str()))
}

fn param<'a>(p: &'a Property<'a>, key: &str) -> Option<&'a str> {
    p.params
        .iter()
        .find(|x| x.key.as_str().eq_ignore_ascii_case(key))
        .and_then(|x| x.val.as_ref())
        .map(|v| v.as_str().trim_matches('"'))
}

/// RFC 5545 TEXT escapes: `\n`, `\,`, `\;`, `\\`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') | Some('N') => out.push('\n'),
                Some(x) => out.push(x),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A DATE or DATE-TIME value with its TZID: (instant, all day).
fn when(id: &str, f: &'static str, p: &Property<'_>) -> Result<(DateTime<Utc>, bool), ParseError> {
    let v = p.val.as_str().trim();
    let is_date = param(p, "VALUE").is_some_and(|x| x.eq_ignore_ascii_case("DATE"))
        || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()));
    if is_date {
        let d = NaiveDate::parse_from_str(v, "%Y%m%d")
            .map_err(|e| field(id, f, format!("bad date {v:?}: {e}")))?;
        let at = d.and_hms_opt(0, 0, 0).map(|n| Utc.from_utc_datetime(&n));
        return at
            .map(|a| (a, true))
            .ok_or_else(|| field(id, f, "bad date"));
    }
    let (local, utc) = match v.strip_suffix('Z') {
        Some(x) => (x, true),
        None => (v, false),
    };
    let naive = NaiveDateTime::parse_from_str(local, "%Y%m%dT%H%M%S")
        .map_err(|e| field(id, f, format!("bad date-time {v:?}: {e}")))?;
    if utc {
        return Ok((Utc.from_utc_datetime(&naive), false));
    }
    let at = match param(p, "TZID") {
        // Floating time: read as UTC (the feed gives no zone).
        None => Utc.from_utc_datetime(&naive),
        Some(z) => {
            let tz: chrono_tz::Tz = z
                .parse()
                .map_err(|_| field(id, f, format!("unknown time zone {z:?}")))?;
            match tz.from_local_datetime(&naive) {
                chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
                chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
                chrono::LocalResult::None => tz
                    .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
                    .ok_or_else(|| field(id, f, "time does not exist in its time zone"))?,
            }
        }
    };
    Ok((at, false))
}

/// `PT1H30M`, `P1D`, `-PT5M`... as a duration.
fn duration(id: &str, v: &str) -> Result<chrono::Duration, ParseError> {
    let bad = || field(id, "DURATION", format!("bad duration {v:?}"));
    let (neg, rest) = match v.trim().strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v.trim().trim_start_matches('+')),
    };
    let rest = rest.strip_prefix('P').ok_or_else(bad)?;
    let mut total = chrono::Duration::zero();
    let mut num = String::new();
    let mut in_time = false;
    for c in rest.chars() {
        match c {
            'T' => in_time = true,
            '0'..='9' => num.push(c),
            u => {
                let n: i64 = num.parse().map_err(|_| bad())?;
                num.clear();
                total += match (u, in_time) {
                    ('W', false) => chrono::Duration::weeks(n),
                    ('D', false) => chrono::Duration::days(n),
                    ('H', true) => chrono::Duration::hours(n),
                    ('M', true) => chrono::Duration::minutes(n),
                    ('S', true) => chrono::Duration::seconds(n),
                    _ => return Err(bad()),
                };
            }
        }
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(if neg { -total } else { total })
}

fn mailto(v: &str) -> Option<String> {
    let v = v.trim();
    let addr = v
        .strip_prefix("mailto:")
        .or_else(|| v.strip_prefix("MAILTO:"))
        .unwrap_or(v);
    addr.contains('@').then(|| addr.to_ascii_lowercase())
}

fn partstat(p: &Property<'_>) -> Response {
    match param(p, "PARTSTAT").map(str::to_ascii_uppercase).as_deref() {
        Some("ACCEPTED") => Response::Accepted,
        Some("TENTATIVE") => Response::Tentative,
        Some("DECLINED") => Response::Declined,
        Some("NEEDS-ACTION") => Response::NeedsAction,
        _ => Response::None,
    }
}

/// The parts of a VEVENT every occurrence shares.
struct Base {
    uid: String,
    title: String,
    status: MeetingStatus,
    organizer: Option<String>,
    attendees: Vec<Attendee>,
    self_response: Response,
    link: Option<crate::links::MeetingLink>,
    start: DateTime<Utc>,
    all_day: bool,
    length: chrono::Duration,
    time_zone: Option<String>,
}

fn base(c: &Component<'_>, user_email: &str) -> Result<Base, ParseError> {
    let uid = text(c, "UID")
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ParseError::Shape {
            provider: "ics",
            detail: "VEVENT without UID".into(),
        })?;
    let start_p = prop(c, "DTSTART").ok_or_else(|| field(&uid, "DTSTART", "missing"))?;
    let (start, all_day) = when(&uid, "DTSTART", start_p)?;
    let length = if let Some(e) = prop(c, "DTEND") {
        when(&uid, "DTEND", e)?.0 - start
    } else if let Some(d) = prop(c, "DURATION") {
        duration(&uid, d.val.as_str())?
    } else if all_day {
        chrono::Duration::days(1)
    } else {
        chrono::Duration::zero()
    };
    if length < chrono::Duration::zero() {
        return Err(field(&uid, "DTEND", "ends before it starts"));
    }
    let status = match text(c, "STATUS").map(|s| s.to_ascii_uppercase()).as_deref() {
        Some("CANCELLED") => MeetingStatus::Cancelled,
        Some("TENTATIVE") => MeetingStatus::Tentative,
        _ => MeetingStatus::Confirmed,
    };
    let organizer = prop(c, "ORGANIZER").and_then(|p| mailto(p.val.as_str()));
    let user = user_email.to_ascii_lowercase();
    let attendees: Vec<Attendee> = c
        .properties
        .iter()
        .filter(|p| p.name.as_str().eq_ignore_ascii_case("ATTENDEE"))
        .filter_map(|p| {
            let email = mailto(p.val.as_str())?;
            Some(Attendee {
                organizer: organizer.as_deref() == Some(email.as_str()),
                is_self: email == user,
                name: param(p, "CN").map(String::from),
                response: partstat(p),
                resource: param(p, "CUTYPE").is_some_and(|t| {
                    t.eq_ignore_ascii_case("ROOM") || t.eq_ignore_ascii_case("RESOURCE")
                }),
                email,
            })
        })
        .collect();
    let self_response = attendees
        .iter()
        .find(|a| a.is_self)
        .map(|a| a.response)
        .unwrap_or(if organizer.as_deref() == Some(user.as_str()) {
            Response::Accepted
        } else {
            Response::None
        });
    let conference: Vec<String> = [
        "URL",
        "X-GOOGLE-CONFERENCE",
        "X-MICROSOFT-SKYPETEAMSMEETINGURL",
    ]
    .iter()
    .filter_map(|n| text(c, n))
    .collect();
    let location = text(c, "LOCATION").unwrap_or_default();
    let description = text(c, "DESCRIPTION").unwrap_or_default();
    let link = best_link(
        conference
            .iter()
            .map(|u| (u.as_str(), Source::Location))
            .chain([
                (location.as_str(), Source::Location),
                (description.as_str(), Source::Description),
            ]),
    );
    Ok(Base {
        title: text(c, "SUMMARY").unwrap_or_default(),
        time_zone: param(start_p, "TZID").map(String::from),
        uid,
        status,
        organizer,
        attendees,
        self_response,
        link,
        start,
        all_day,
        length,
    })
}

impl Base {
    /// About how many bytes one occurrence of this event holds.
    fn size(&self) -> usize {
        let people: usize = self
            .attendees
            .iter()
            .map(|a| a.email.len() + a.name.as_ref().map_or(0, String::len) + 64)
            .sum();
        256 + self.uid.len() * 2
            + self.title.len()
            + self.organizer.as_ref().map_or(0, String::len)
            + self.link.as_ref().map_or(0, |l| l.url.len())
            + people
    }
}

fn event(
    b: &Base,
    instance_id: String,
    series: Option<&str>,
    at: DateTime<Utc>,
) -> NormalizedEvent {
    NormalizedEvent {
        provider: CalendarProvider::Ics,
        instance_id,
        series_id: series.map(String::from),
        title: b.title.clone(),
        starts_at: Some(at),
        ends_at: Some(at + b.length),
        time_zone: b.time_zone.clone(),
        all_day: b.all_day,
        removed: b.status == MeetingStatus::Cancelled,
        status: b.status,
        organizer_email: b.organizer.clone(),
        attendees: b.attendees.clone(),
        self_response: b.self_response,
        link: b.link.clone(),
    }
}

/// The occurrence id: the UID plus the occurrence's original start (UTC).
fn occurrence_id(uid: &str, at: DateTime<Utc>) -> String {
    format!("{uid}_{}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The recurrence lines of an event (DTSTART, RRULE, RDATE, EXDATE) as the `rrule` crate reads
/// them.
fn recurrence_text(c: &Component<'_>) -> String {
    let mut out = String::new();
    for p in &c.properties {
        let n = p.name.as_str().to_ascii_uppercase();
        if !matches!(n.as_str(), "DTSTART" | "RRULE" | "RDATE" | "EXDATE") {
            continue;
        }
        out.push_str(&n);
        for x in &p.params {
            // VALUE=DATE is implied by the value's shape; the crate takes TZID only.
            if x.key.as_str().eq_ignore_ascii_case("TZID")
                && let Some(v) = &x.val
            {
                out.push_str(";TZID=");
                out.push_str(v.as_str().trim_matches('"'));
            }
        }
        out.push(':');
        out.push_str(p.val.as_str().trim());
        out.push('\n');
    }
    out
}

/// The events of an ICS feed starting inside `window`, recurring ones expanded into one event
/// per occurrence (instance id `<UID>_<original start>`, series id the UID). `user_email` is the
/// connected user, for their own response. Within the default [`FeedLimits`].
pub fn parse_feed(
    feed: &str,
    user_email: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<NormalizedEvent>, ParseError> {
    parse_feed_within(feed, user_email, window, FeedLimits::default())
}

/// [`parse_feed`] within `limits`: past any of them the feed is refused
/// ([`ParseError::Limit`]) at the first step over, before more is expanded.
pub fn parse_feed_within(
    feed: &str,
    user_email: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
    limits: FeedLimits,
) -> Result<Vec<NormalizedEvent>, ParseError> {
    if !feed.trim_start().starts_with("BEGIN:VCALENDAR") {
        return Err(ParseError::Shape {
            provider: "ics",
            detail: "not an iCalendar feed (no BEGIN:VCALENDAR)".into(),
        });
    }
    let mut budget = Budget::new(limits);
    let unfolded = icalendar::parser::unfold(feed);
    // The parser's message quotes the feed (titles, addresses): it is not passed on.
    let cal = icalendar::parser::read_calendar(&unfolded).map_err(|_| ParseError::Shape {
        provider: "ics",
        detail: "the feed is not valid iCalendar (RFC 5545)".into(),
    })?;
    budget.in_time()?;
    let events: Vec<&Component<'_>> = cal
        .components
        .iter()
        .filter(|c| c.name.as_str().eq_ignore_ascii_case("VEVENT"))
        .collect();
    // Overrides of single occurrences: (UID, original start) -> the changed VEVENT.
    let mut overrides: HashMap<(String, DateTime<Utc>), &Component<'_>> = HashMap::new();
    for c in &events {
        if let Some(r) = prop(c, "RECURRENCE-ID") {
            let uid = text(c, "UID").unwrap_or_default();
            let (at, _) = when(&uid, "RECURRENCE-ID", r)?;
            overrides.insert((uid, at), c);
        }
    }
    let inside = |at: DateTime<Utc>, len: chrono::Duration| at + len >= window.0 && at <= window.1;
    let mut out = Vec::new();
    for c in &events {
        if prop(c, "RECURRENCE-ID").is_some() {
            continue;
        }
        // Every event costs a step, so that a feed of many events is bounded like one of
        // many occurrences.
        budget.step()?;
        let b = base(c, user_email)?;
        if prop(c, "RRULE").is_none() && prop(c, "RDATE").is_none() {
            if inside(b.start, b.length) {
                budget.emit(b.size())?;
                out.push(event(&b, b.uid.clone(), None, b.start));
            }
            continue;
        }
        let set: rrule::RRuleSet = recurrence_text(c)
            .parse()
            .map_err(|e: rrule::RRuleError| field(&b.uid, "RRULE", e.to_string()))?;
        // Limited: the crate stops a rule that never matches after a bounded search.
        let set = set.limit();
        let tz = rrule::Tz::UTC;
        let from = (window.0 - b.length).with_timezone(&tz);
        let to = window.1.with_timezone(&tz);
        let size = b.size();
        let mut here = 0u16;
        // Stepped one occurrence at a time from the event's start: each step is counted, and
        // the first one past the window ends the event.
        for at in &set {
            budget.step()?;
            if at > to {
                break;
            }
            if at < from {
                continue;
            }
            here += 1;
            if here > MAX_OCCURRENCES {
                break;
            }
            let at = at.with_timezone(&Utc);
            let id = occurrence_id(&b.uid, at);
            match overrides.get(&(b.uid.clone(), at)) {
                Some(o) => {
                    let ob = base(o, user_email)?;
                    if inside(ob.start, ob.length) {
                        budget.emit(ob.size())?;
                        out.push(event(&ob, id, Some(&b.uid), ob.start));
                    }
                }
                None => {
                    budget.emit(size)?;
                    out.push(event(&b, id, Some(&b.uid), at));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window() -> (DateTime<Utc>, DateTime<Utc>) {
        (
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        )
    }

    const FEED: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
BEGIN:VEVENT\r\nUID:one@example\r\nDTSTART:20261124T150000Z\r\nDTEND:20261124T153000Z\r\n\
SUMMARY:Client call\\, Q4\r\nORGANIZER;CN=Anna:mailto:anna@firm.example\r\n\
ATTENDEE;CN=Client;PARTSTAT=NEEDS-ACTION:mailto:Client@Acme.example\r\n\
ATTENDEE;PARTSTAT=ACCEPTED:mailto:anna@firm.example\r\n\
LOCATION:https://us02web.zoom.us/j/81234567890?pwd=abc\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:weekly@example\r\nDTSTART;TZID=Europe/Berlin:20261102T090000\r\n\
DURATION:PT45M\r\nRRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=10\r\nEXDATE;TZID=Europe/Berlin:20261109T090000\r\n\
SUMMARY:Team sync\r\nDESCRIPTION:Join: https://meet.google.com/abc-defg-hij\\nAgenda\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:weekly@example\r\nRECURRENCE-ID;TZID=Europe/Berlin:20261116T090000\r\n\
DTSTART;TZID=Europe/Berlin:20261116T110000\r\nDURATION:PT45M\r\nSUMMARY:Team sync (moved)\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:old@example\r\nDTSTART;VALUE=DATE:20250101\r\nSUMMARY:Long ago\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:gone@example\r\nDTSTART:20261125T100000Z\r\nDTEND:20261125T110000Z\r\nSTATUS:CANCELLED\r\n\
SUMMARY:Called off\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn a_feed_gives_single_and_expanded_recurring_events_inside_the_window() {
        let evs = parse_feed(FEED, "anna@firm.example", window()).unwrap();
        let ids: Vec<&str> = evs.iter().map(|e| e.instance_id.as_str()).collect();
        // Mondays 2, (9 excluded), 16 (moved), 23, 30 in Berlin (CET, UTC+1) at 09:00.
        assert_eq!(
            ids,
            [
                "one@example",
                "weekly@example_20261102T080000Z",
                "weekly@example_20261116T080000Z",
                "weekly@example_20261123T080000Z",
                "weekly@example_20261130T080000Z",
                "gone@example"
            ]
        );
        let one = &evs[0];
        assert_eq!(one.title, "Client call, Q4");
        assert_eq!(one.organizer_email.as_deref(), Some("anna@firm.example"));
        assert_eq!(one.attendees[0].email, "client@acme.example");
        assert_eq!(one.attendees[0].response, Response::NeedsAction);
        assert_eq!(one.self_response, Response::Accepted);
        assert_eq!(one.platform(), Some(meetbot_core::model::Platform::Zoom));
        assert_eq!(
            one.ends_at.unwrap() - one.starts_at.unwrap(),
            chrono::Duration::minutes(30)
        );
        let moved = &evs[2];
        assert_eq!(moved.title, "Team sync (moved)");
        assert_eq!(
            moved.starts_at,
            Some(Utc.with_ymd_and_hms(2026, 11, 16, 10, 0, 0).unwrap())
        );
        assert_eq!(moved.series_id.as_deref(), Some("weekly@example"));
        assert_eq!(
            evs[1].platform(),
            Some(meetbot_core::model::Platform::GoogleMeet)
        );
        assert_eq!(
            evs[1].ends_at.unwrap() - evs[1].starts_at.unwrap(),
            chrono::Duration::minutes(45)
        );
        assert!(evs[5].removed);
    }

    #[test]
    fn malformed_feeds_and_events_are_errors_naming_the_event_and_field() {
        assert!(matches!(
            parse_feed("<html>", "a@b.c", window()),
            Err(ParseError::Shape { .. })
        ));
        let bad = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x1\r\nDTSTART:2026-11-24\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let e = parse_feed(bad, "a@b.c", window()).unwrap_err();
        assert!(
            matches!(e, ParseError::Field { ref id, field: "DTSTART", .. } if id == "x1"),
            "{e}"
        );
        let zone = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x2\r\nDTSTART;TZID=Mars/Olympus:20261124T090000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert!(
            parse_feed(zone, "a@b.c", window())
                .unwrap_err()
                .to_string()
                .contains("Mars")
        );
        let no_uid = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20261124T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert!(parse_feed(no_uid, "a@b.c", window()).is_err());
        assert_eq!(
            duration("x", "PT1H30M").unwrap(),
            chrono::Duration::minutes(90)
        );
        assert!(duration("x", "1H").is_err());
    }

    /// `n` events each repeating every minute from the window's start, as one feed.
    fn minutely(n: usize) -> String {
        let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n");
        for i in 0..n {
            s.push_str(&format!(
                "BEGIN:VEVENT\r\nUID:b{i}\r\nDTSTART:20261101T000000Z\r\nRRULE:FREQ=MINUTELY\r\nEND:VEVENT\r\n"
            ));
        }
        s.push_str("END:VCALENDAR\r\n");
        s
    }

    /// Attack: a feed at the size cap full of minutely rules expanded to millions of events
    /// (500 per event, ~28,000 events in 2 MiB). It is refused at the first event over the cap.
    #[test]
    fn a_feed_of_minutely_rules_at_the_size_cap_is_refused_at_the_instance_cap() {
        let mut feed = minutely(1);
        let n = DEFAULT_MAX_FEED_BYTES / feed.len();
        feed = minutely(n);
        assert!(feed.len() <= DEFAULT_MAX_FEED_BYTES && feed.len() > DEFAULT_MAX_FEED_BYTES / 2);
        let started = std::time::Instant::now();
        let e = parse_feed(&feed, "a@b.c", window()).unwrap_err();
        assert!(matches!(e, ParseError::Limit { limit: 5_000, .. }), "{e}");
        assert!(e.to_string().contains("events in the sync window"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Within the caps, the same rules are read: 10 events, 500 occurrences each.
        let ok = parse_feed(&minutely(10), "a@b.c", window()).unwrap();
        assert_eq!(ok.len(), 5_000);
    }

    /// Attack: many plain events (each under every per-event cap) in one feed.
    #[test]
    fn a_feed_of_many_events_is_refused_at_the_instance_cap() {
        let mut feed = String::from("BEGIN:VCALENDAR\r\n");
        for i in 0..6_000 {
            feed.push_str(&format!(
                "BEGIN:VEVENT\r\nUID:e{i}\r\nDTSTART:20261110T{:02}{:02}00Z\r\nEND:VEVENT\r\n",
                i / 60 % 24,
                i % 60
            ));
        }
        feed.push_str("END:VCALENDAR\r\n");
        let limits = FeedLimits::default();
        assert!(matches!(
            parse_feed_within(&feed, "a@b.c", window(), limits),
            Err(ParseError::Limit { limit: 5_000, .. })
        ));
        let more = FeedLimits {
            max_instances: 6_000,
            ..limits
        };
        assert_eq!(
            parse_feed_within(&feed, "a@b.c", window(), more)
                .unwrap()
                .len(),
            6_000
        );
    }

    /// Attack: a rule stepping every second from 1990: each step before the window cost time
    /// (the crate walks from DTSTART), ~1 billion of them. Refused at the step cap, at once.
    #[test]
    fn a_rule_stepping_from_long_ago_is_refused_at_the_step_cap_in_bounded_time() {
        let feed = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:old\r\nDTSTART:19900101T000000Z\r\n\
RRULE:FREQ=SECONDLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let started = std::time::Instant::now();
        let e = parse_feed(feed, "a@b.c", window()).unwrap_err();
        assert!(e.to_string().contains("recurrence steps"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A weekly meeting since 1990 is ~1,900 steps: read.
        let weekly = feed.replace("FREQ=SECONDLY", "FREQ=WEEKLY");
        assert_eq!(parse_feed(&weekly, "a@b.c", window()).unwrap().len(), 5);
    }

    /// Attack: one recurring event with thousands of attendees: each occurrence copies them.
    /// The bytes of events produced are capped too.
    #[test]
    fn occurrences_of_an_event_with_huge_attendee_lists_are_capped_by_bytes() {
        let mut feed = String::from(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:big\r\nDTSTART:20261101T000000Z\r\nRRULE:FREQ=HOURLY\r\n",
        );
        for i in 0..5_000 {
            feed.push_str(&format!("ATTENDEE;CN=Person {i}:mailto:p{i}@x.example\r\n"));
        }
        feed.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
        let e = parse_feed(&feed, "a@b.c", window()).unwrap_err();
        assert!(e.to_string().contains("bytes of events"), "{e}");
    }

    proptest! {
        #[test]
        fn any_text_as_a_feed_is_events_or_an_error_never_a_panic(s in "\\PC{0,300}") {
            let _ = parse_feed(&s, "a@b.c", window());
            let _ = parse_feed(&format!("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n{s}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"), "a@b.c", window());
        }

        #[test]
        fn any_recurrence_rule_is_expanded_within_the_limit_or_refused(
            rule in "FREQ=(SECONDLY|MINUTELY|HOURLY|DAILY|WEEKLY|MONTHLY|YEARLY)(;INTERVAL=[0-9]{1,3})?(;COUNT=[0-9]{1,5})?(;BYDAY=(MO|TU|1FR|-1SU))?"
        ) {
            let feed = format!("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:r\r\nDTSTART:20261101T000000Z\r\nRRULE:{rule}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n");
            if let Ok(evs) = parse_feed(&feed, "a@b.c", window()) {
                prop_assert!(evs.len() <= MAX_OCCURRENCES as usize);
            }
        }
    }
}

/// The default cap on a feed's size: a calendar of years of events is well under it.
pub const DEFAULT_MAX_FEED_BYTES: usize = 2 << 20;

/// Fetches ICS feeds through the egress client (`meetbot-egress`): public addresses over
/// https; internal ones (and plain http, when `calendar.ics_allow_http`) only inside
/// `egress.allow_private`. Redirects are followed by the egress client, each hop checked.
#[derive(Clone, Debug)]
pub struct IcsClient {
    egress: meetbot_egress::Egress,
    allow_http: bool,
    max_bytes: usize,
    /// When not empty, the only hosts feeds may be fetched from.
    hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IcsError {
    #[error(
        "ICS feed address is not an https URL of an allowed host (plain http needs calendar.ics_allow_http)"
    )]
    Scheme,
    #[error("ICS feed: the server answered {0}")]
    Status(u16),
    #[error("ICS feed is larger than {0} bytes")]
    TooLarge(usize),
    #[error("ICS feed could not be fetched: {0}")]
    Http(String),
    /// Refused by the egress rules or not answering: one message for both, so that it tells
    /// nothing about addresses and ports it may not reach.
    #[error("ICS feed: {0}")]
    Egress(meetbot_egress::EgressError),
    #[error("ICS feed: {0}")]
    Parse(#[from] ParseError),
}

/// What one fetch found.
pub enum Fetched {
    /// The feed is as it was (304, or the same bytes): nothing to apply.
    Unchanged,
    /// The feed's text and the cursor to store (its ETag and digest).
    Changed { text: String, cursor: String },
}

impl IcsClient {
    /// A client over the system resolver; `allow_private` is `egress.allow_private` (CIDR
    /// ranges, checked at config load); plain http only with `allow_http`, and then only to
    /// those ranges.
    pub fn new<S: AsRef<str>>(allow_http: bool, allow_private: &[S]) -> Result<Self, IcsError> {
        let allow =
            meetbot_egress::AllowList::from_config(allow_private).map_err(IcsError::Http)?;
        let egress =
            meetbot_egress::Egress::new(allow, Self::limits()).map_err(IcsError::Egress)?;
        Ok(Self::with_egress(allow_http, egress))
    }

    /// The egress limits of feed fetches: 10 s to connect, 5 redirects, 60 s in all (every
    /// hop and the body under one deadline).
    pub fn limits() -> meetbot_egress::Limits {
        meetbot_egress::Limits {
            connect_timeout: std::time::Duration::from_secs(10),
            timeout: std::time::Duration::from_secs(60),
            max_redirects: 5,
        }
    }

    /// A client fetching through `egress` (e.g. one with a scripted resolver, in tests).
    pub fn with_egress(allow_http: bool, egress: meetbot_egress::Egress) -> Self {
        IcsClient {
            egress,
            allow_http,
            max_bytes: DEFAULT_MAX_FEED_BYTES,
            hosts: Vec::new(),
        }
    }

    /// Feeds larger than `bytes` are refused while they are read (`calendar.ics_max_bytes`).
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Feeds only from these hosts (names or addresses as written in the URL).
    pub fn only_hosts(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.hosts = hosts.into_iter().collect();
        self
    }

    /// Checks `url` without fetching it: https (or http with `calendar.ics_allow_http`), a
    /// host among [`IcsClient::only_hosts`] when set, and an address literal the egress rules
    /// permit ([`IcsError::Egress`], generic).
    pub fn check(&self, url: &str) -> Result<(), IcsError> {
        let ok = url::Url::parse(url).is_ok_and(|u| {
            u.host_str()
                .is_some_and(|h| self.hosts.is_empty() || self.hosts.iter().any(|x| x == h))
                && (u.scheme() == "https" || (self.allow_http && u.scheme() == "http"))
        });
        if !ok {
            return Err(IcsError::Scheme);
        }
        self.egress.check(url).map(|_| ()).map_err(IcsError::Egress)
    }

    /// Fetches the feed unless it is unchanged since `cursor` (`<etag>|<sha256>`).
    pub async fn fetch(&self, url: &str, cursor: Option<&str>) -> Result<Fetched, IcsError> {
        use sha2::{Digest, Sha256};
        self.check(url)?;
        let (etag, digest) = cursor.and_then(|c| c.split_once('|')).unwrap_or(("", ""));
        let mut headers = meetbot_egress::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("text/calendar"),
        );
        if !etag.is_empty()
            && let Ok(v) = reqwest::header::HeaderValue::from_str(etag)
        {
            headers.insert(reqwest::header::IF_NONE_MATCH, v);
        }
        // One deadline for every redirect and the body (a feed dripping bytes across
        // redirects costs one timeout).
        let resp = self
            .egress
            .get_body(url, headers, self.max_bytes)
            .await
            .map_err(|e| match e {
                meetbot_egress::EgressError::TooLarge(n) => IcsError::TooLarge(n),
                e => IcsError::Egress(e),
            })?;
        if resp.status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::Unchanged);
        }
        if !resp.status.is_success() {
            return Err(IcsError::Status(resp.status.as_u16()));
        }
        let new_etag = resp
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.contains('|'))
            .unwrap_or("")
            .to_string();
        let body = resp.body;
        let sha = hex::encode(Sha256::digest(&body));
        if sha == digest {
            return Ok(Fetched::Unchanged);
        }
        let text = String::from_utf8(body).map_err(|_| {
            IcsError::Parse(ParseError::Shape {
                provider: "ics",
                detail: "the feed is not UTF-8 text".into(),
            })
        })?;
        Ok(Fetched::Changed {
            text,
            cursor: format!("{new_etag}|{sha}"),
        })
    }
}

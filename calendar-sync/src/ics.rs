//! ICS feeds (RFC 5545), the third calendar source: a calendar's published `.ics` address
//! (Google's "secret address in iCal format", Outlook's published calendar, any CalDAV server's
//! export), polled, and files read by `meetbot calendar parse --provider ics`. The feed is
//! always the whole calendar, so each round is a full snapshot: events in the window are
//! applied, recurring ones expanded (RRULE, RDATE, EXDATE, with RECURRENCE-ID overrides), and
//! meetings of the connection that are no longer in the feed are cancelled by the round (see
//! `sync.rs`).
//!
//! Read as real software writes it (decision 0039): lines unfolded (CRLF, LF or CR), quoted
//! parameters (`TZID="W. Europe Standard Time"`), lower-case names; time zones by IANA name,
//! by a VTIMEZONE block of the file (custom STANDARD/DAYLIGHT rules, [`crate::tz::Rules`]) or
//! by Windows name (CLDR); floating times in the calendar's `X-WR-TIMEZONE`, else UTC;
//! RRULEs with spaces, empty or unknown parts, ordinals where they do not belong, UNTIL as a
//! date or a local time; DTEND and DURATION together (DTEND wins while it is readable);
//! overrides (RECURRENCE-ID) wherever they stand in the file, with or without their series;
//! an event listed twice (the higher SEQUENCE wins). An event that still cannot be understood
//! is one [`ParseError`] naming the event (UID) and field in [`Feed::errors`], and the rest of
//! the feed is read; never a panic. Recurrences are stepped by the `rrule` crate in wall-clock
//! time and each occurrence is then placed in its zone.

use crate::links::{Source, best_link};
use crate::normalize::{Attendee, NormalizedEvent, ParseError, Response};
use crate::tz::{Observance, Rules, Zone};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use meetbot_core::model::{CalendarProvider, MeetingStatus};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
        id: id.chars().take(200).collect(),
        field: f,
        detail: detail.into(),
    }
}

/// A value as quoted in an error: short.
fn quoted(v: &str) -> String {
    let v: String = v.trim().chars().take(40).collect();
    format!("{v:?}")
}

// ---------------------------------------------------------------- content lines

/// Components nest at most this deep (VCALENDAR > VEVENT > VALARM is 3); deeper BEGINs are
/// ignored.
const MAX_DEPTH: usize = 16;

/// One content line: `NAME;PARAM=value;...:value`, name and parameter names upper-cased,
/// parameter values unquoted.
#[derive(Debug)]
struct Prop {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

#[derive(Debug, Default)]
struct Comp {
    name: String,
    props: Vec<Prop>,
    subs: Vec<Comp>,
}

impl Prop {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

impl Comp {
    fn prop(&self, name: &str) -> Option<&Prop> {
        self.props.iter().find(|p| p.name == name)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Prop> + 'a {
        self.props.iter().filter(move |p| p.name == name)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.prop(name).map(|p| unescape(&p.value))
    }
}

/// Logical lines: unfolded (a line starting with a space or tab continues the one before),
/// broken at CRLF, LF or a lone CR; blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<String> = Vec::new();
    for physical in text.split(['\n', '\r']) {
        if let Some(rest) = physical
            .strip_prefix(' ')
            .or_else(|| physical.strip_prefix('\t'))
            && let Some(last) = out.last_mut()
        {
            last.push_str(rest);
            continue;
        }
        if !physical.trim().is_empty() {
            out.push(physical.to_string());
        }
    }
    out
}

/// One content line, or `None` for a line that is not one (no `:` after the name and
/// parameters, an unterminated quote).
fn content_line(line: &str) -> Option<Prop> {
    let b = line.as_bytes();
    let len = b.len();
    let mut i = line.find([';', ':'])?;
    let name = line[..i].trim().to_ascii_uppercase();
    if name.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    while i < len && b[i] == b';' {
        i += 1;
        let k = i + line[i..].find(['=', ';', ':'])?;
        let key = line[i..k].trim().to_ascii_uppercase();
        i = k;
        let mut val = String::new();
        if b[i] == b'=' {
            i += 1;
            loop {
                if i < len && b[i] == b'"' {
                    let close = i + 1 + line[i + 1..].find('"')?;
                    val.push_str(&line[i + 1..close]);
                    i = close + 1;
                } else {
                    let e = line[i..].find([';', ':', ',', '"']).map_or(len, |e| i + e);
                    val.push_str(&line[i..e]);
                    i = e;
                }
                if i < len && b[i] == b',' {
                    val.push(',');
                    i += 1;
                } else if !(i < len && b[i] == b'"') {
                    break;
                }
            }
        }
        params.push((key, val));
    }
    if i >= len || b[i] != b':' {
        return None;
    }
    Some(Prop {
        name,
        params,
        value: line[i + 1..].to_string(),
    })
}

/// The components of a text: BEGIN/END nesting, an END closing whatever it matches (and what
/// was left open inside it), what is open at the end closed there.
fn components(text: &str) -> Vec<Comp> {
    let mut stack = vec![Comp::default()];
    let close = |stack: &mut Vec<Comp>| {
        if let Some(c) = stack.pop()
            && let Some(parent) = stack.last_mut()
        {
            parent.subs.push(c);
        }
    };
    for line in logical_lines(text) {
        let Some(p) = content_line(&line) else {
            continue;
        };
        match p.name.as_str() {
            "BEGIN" => {
                if stack.len() <= MAX_DEPTH {
                    stack.push(Comp {
                        name: p.value.trim().to_ascii_uppercase(),
                        ..Comp::default()
                    });
                }
            }
            "END" => {
                let n = p.value.trim().to_ascii_uppercase();
                if let Some(pos) = stack.iter().rposition(|c| c.name == n)
                    && pos > 0
                {
                    while stack.len() > pos {
                        close(&mut stack);
                    }
                }
            }
            _ => {
                if let Some(top) = stack.last_mut() {
                    top.props.push(p);
                }
            }
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack.pop().map(|root| root.subs).unwrap_or_default()
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

// ---------------------------------------------------------------- values

/// A DATE or DATE-TIME value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Date(NaiveDate),
    Local(NaiveDateTime),
    Utc(NaiveDateTime),
}

/// `20261124`, `20261124T090000`, `20261124T090000Z`; also without seconds, with fractional
/// seconds, in lower case, in the ISO 8601 extended form (`2026-11-24T09:00:00Z`) and a date
/// with a stray `Z`.
fn value(s: &str) -> Option<Value> {
    let s = s.trim();
    let compact: String = if s.len() >= 10 && s.contains(['-', ':']) {
        s.chars().filter(|c| *c != '-' && *c != ':').collect()
    } else {
        s.to_string()
    };
    let up = compact.to_ascii_uppercase();
    let (body, utc) = match up.strip_suffix('Z') {
        Some(b) => (b, true),
        None => (up.as_str(), false),
    };
    let digits = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_digit());
    match body.split_once('T') {
        // A date with a `Z` (Google's birthday RDATEs) is that date.
        None if digits(body, 8) => NaiveDate::parse_from_str(body, "%Y%m%d")
            .ok()
            .map(Value::Date),
        None => None,
        Some((d, t)) => {
            let t = t.split('.').next().unwrap_or(t);
            if !digits(d, 8) || !(digits(t, 6) || digits(t, 4)) {
                return None;
            }
            let t = if t.len() == 4 {
                format!("{t}00")
            } else {
                t.to_string()
            };
            let n = NaiveDateTime::parse_from_str(&format!("{d}T{t}"), "%Y%m%dT%H%M%S").ok()?;
            Some(if utc { Value::Utc(n) } else { Value::Local(n) })
        }
    }
}

fn naive(v: Value) -> NaiveDateTime {
    match v {
        Value::Date(d) => d.and_time(chrono::NaiveTime::MIN),
        Value::Local(t) | Value::Utc(t) => t,
    }
}

/// A point in time as the file gives it: the wall-clock time in its zone.
#[derive(Clone, Debug)]
struct At {
    local: NaiveDateTime,
    zone: Zone,
    all_day: bool,
    /// The TZID it was given with (resolved), for `time_zone`.
    named: bool,
}

impl At {
    /// All-day dates stand for midnight UTC of their day.
    fn utc(&self) -> DateTime<Utc> {
        if self.all_day {
            Utc.from_utc_datetime(&self.local)
        } else {
            self.zone.to_utc(self.local)
        }
    }

    /// This wall-clock time's instant with the same zone and kind.
    fn with_local(&self, local: NaiveDateTime) -> DateTime<Utc> {
        if self.all_day {
            Utc.from_utc_datetime(&local)
        } else {
            self.zone.to_utc(local)
        }
    }
}

/// `PT1H30M`, `P1D`, `-PT5M`... as a duration.
fn duration(id: &str, v: &str) -> Result<Duration, ParseError> {
    let bad = || field(id, "DURATION", format!("bad duration {}", quoted(v)));
    let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    let v = v.to_ascii_uppercase();
    let (neg, rest) = match v.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v.trim_start_matches('+')),
    };
    let rest = rest.strip_prefix('P').ok_or_else(bad)?;
    let mut total = Duration::zero();
    let mut num = String::new();
    let mut in_time = false;
    for c in rest.chars() {
        match c {
            'T' => in_time = true,
            '0'..='9' => num.push(c),
            u => {
                let n: i64 = num
                    .parse()
                    .ok()
                    .filter(|n| *n <= 1_000_000)
                    .ok_or_else(bad)?;
                num.clear();
                total += match (u, in_time) {
                    ('W', false) => Duration::weeks(n),
                    ('D', false) => Duration::days(n),
                    ('H', true) => Duration::hours(n),
                    ('M', true) => Duration::minutes(n),
                    ('S', true) => Duration::seconds(n),
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
    let addr = match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("mailto:") => &v[7..],
        _ => v,
    };
    addr.contains('@').then(|| addr.trim().to_ascii_lowercase())
}

fn partstat(p: &Prop) -> Response {
    match p.param("PARTSTAT").map(str::to_ascii_uppercase).as_deref() {
        Some("ACCEPTED") => Response::Accepted,
        Some("TENTATIVE") => Response::Tentative,
        Some("DECLINED") => Response::Declined,
        Some("NEEDS-ACTION") => Response::NeedsAction,
        _ => Response::None,
    }
}

// ---------------------------------------------------------------- the calendar

/// What the whole file says about reading its events.
struct Ctx {
    /// Zones defined by the file's VTIMEZONE blocks (those that are not IANA names).
    custom: HashMap<String, Zone>,
    /// Where floating times are read: `X-WR-TIMEZONE`, else UTC.
    floating: Zone,
    user: String,
    /// `METHOD:CANCEL`: every event of the file is cancelled.
    cancel: bool,
    /// Where the days of all-day events are when a time in UTC stands for one (an all-day
    /// series' `UNTIL=...T220000Z`, Outlook's): `X-WR-TIMEZONE`, else the file's one
    /// VTIMEZONE, else UTC.
    day_zone: Zone,
}

fn tzid_of(v: &str) -> &str {
    v.trim().trim_matches('"').trim()
}

/// A VTIMEZONE block as [`Rules`]; `None` when it has no observance this reader understands.
fn vtimezone(c: &Comp) -> Option<(String, Rules)> {
    let tzid = unescape(tzid_of(&c.prop("TZID")?.value));
    let mut obs = Vec::new();
    for s in c
        .subs
        .iter()
        .filter(|s| s.name == "STANDARD" || s.name == "DAYLIGHT")
    {
        let Some(start) = s.prop("DTSTART").and_then(|p| value(&p.value)) else {
            continue;
        };
        let Some(to) = s
            .prop("TZOFFSETTO")
            .and_then(|p| crate::tz::utc_offset(&p.value))
        else {
            continue;
        };
        let from = s
            .prop("TZOFFSETFROM")
            .and_then(|p| crate::tz::utc_offset(&p.value))
            .unwrap_or(to);
        let rdates = s
            .all("RDATE")
            .flat_map(|p| p.value.split(','))
            .filter_map(|v| value(v.split('/').next().unwrap_or(v)).map(naive))
            .collect();
        let rule = s.prop("RRULE").map(|p| p.value.as_str());
        obs.push(Observance::new(naive(start), from, to, rule, rdates)?);
    }
    Rules::new(&tzid, obs).map(|r| (tzid, r))
}

impl Ctx {
    fn new(cal: &Cal<'_>, user: &str) -> Ctx {
        let mut custom = HashMap::new();
        for z in &cal.zones {
            let Some(id) = z.prop("TZID").map(|p| unescape(tzid_of(&p.value))) else {
                continue;
            };
            if crate::tz::iana(&id).is_some() || custom.contains_key(&id) {
                continue;
            }
            if let Some((id, rules)) = vtimezone(z) {
                custom.insert(id, Zone::Custom(Arc::new(rules)));
            }
        }
        let floating = cal
            .x_wr_timezone
            .as_deref()
            .and_then(crate::tz::named)
            .map_or(Zone::UTC, Zone::Tz);
        let mut ctx = Ctx {
            custom,
            floating: floating.clone(),
            user: user.to_ascii_lowercase(),
            cancel: cal.cancel,
            day_zone: floating,
        };
        if cal.x_wr_timezone.is_none() {
            let mut ids: Vec<String> = cal
                .zones
                .iter()
                .filter_map(|z| z.prop("TZID").map(|p| unescape(tzid_of(&p.value))))
                .collect();
            ids.sort();
            ids.dedup();
            if let [one] = ids.as_slice()
                && let Some(z) = ctx.zone(one)
            {
                ctx.day_zone = z;
            }
        }
        ctx
    }

    /// The day a date or time stands for in an all-day series (EXDATE, RECURRENCE-ID): a date's
    /// own, a time's in its own zone, a UTC time's in `day_zone`.
    fn day_of(&self, a: &At, day_zone: &Zone) -> NaiveDate {
        if a.all_day || a.named {
            a.local.date()
        } else {
            day_zone.to_local(a.utc()).date()
        }
    }

    /// The zone the days of an all-day series are in: that of its EXDATEs' TZID, else
    /// [`Ctx::day_zone`].
    fn day_zone_of(&self, c: &Comp) -> Zone {
        c.all("EXDATE")
            .find_map(|p| p.param("TZID").and_then(|z| self.zone(z)))
            .unwrap_or_else(|| self.day_zone.clone())
    }

    /// A TZID: an IANA name, a zone of the file, a Windows name (in that order, as the
    /// reference readers do).
    fn zone(&self, tzid: &str) -> Option<Zone> {
        let id = tzid_of(tzid);
        crate::tz::iana(id)
            .map(Zone::Tz)
            .or_else(|| self.custom.get(id).cloned())
            .or_else(|| crate::tz::windows(id).map(Zone::Tz))
    }

    /// One date or date-time value with its TZID; a floating time is read in `floating`.
    fn at_value(
        &self,
        uid: &str,
        f: &'static str,
        raw: &str,
        tzid: Option<&str>,
        floating: &Zone,
    ) -> Result<At, ParseError> {
        let mut v =
            value(raw).ok_or_else(|| field(uid, f, format!("bad date-time {}", quoted(raw))))?;
        // `TZID=Europe/Berlin:...T120000Z` (ownCloud): the zone it names wins over the `Z`, as
        // the reference readers and clients read it.
        if let (Value::Utc(t), Some(z)) = (v, tzid)
            && self.zone(z).is_some()
        {
            v = Value::Local(t);
        }
        Ok(match v {
            Value::Date(d) => At {
                local: d.and_time(chrono::NaiveTime::MIN),
                zone: Zone::UTC,
                all_day: true,
                named: false,
            },
            Value::Utc(t) => At {
                local: t,
                zone: Zone::UTC,
                all_day: false,
                named: false,
            },
            Value::Local(t) => match tzid {
                None => At {
                    local: t,
                    zone: floating.clone(),
                    all_day: false,
                    named: false,
                },
                Some(z) => At {
                    local: t,
                    zone: self.zone(z).ok_or_else(|| {
                        field(
                            uid,
                            f,
                            format!(
                                "unknown time zone {} (neither an IANA nor a Windows name, \
                                 nor defined by a VTIMEZONE of the file)",
                                quoted(z)
                            ),
                        )
                    })?,
                    all_day: false,
                    named: true,
                },
            },
        })
    }

    fn at(&self, uid: &str, f: &'static str, p: &Prop, floating: &Zone) -> Result<At, ParseError> {
        self.at_value(uid, f, &p.value, p.param("TZID"), floating)
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
    start: At,
    length: Duration,
    /// LAST-MODIFIED, when given.
    modified: Option<DateTime<Utc>>,
}

/// The UID, or for an event without one an id derived from what identifies it in the file
/// (start, title, rule), stable while those stay as they are.
fn uid_of(c: &Comp) -> String {
    if let Some(u) = c.text("UID").map(|u| u.trim().to_string())
        && !u.is_empty()
    {
        return u;
    }
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for n in ["DTSTART", "SUMMARY", "RRULE", "RECURRENCE-ID"] {
        h.update(c.prop(n).map_or("", |p| p.value.as_str()).as_bytes());
        h.update([0]);
    }
    format!("no-uid-{}", &hex::encode(h.finalize())[..16])
}

fn sequence(c: &Comp) -> i64 {
    c.prop("SEQUENCE")
        .and_then(|p| p.value.trim().parse().ok())
        .unwrap_or(0)
}

/// An event's common parts. `inherit` is the series' start and length for an override that
/// lacks them (its RECURRENCE-ID and the series' length).
fn base(
    ctx: &Ctx,
    c: &Comp,
    uid: &str,
    floating: &Zone,
    inherit: Option<(&At, Duration)>,
) -> Result<Base, ParseError> {
    let start = match (c.prop("DTSTART"), inherit) {
        (Some(p), _) => {
            // A floating start with a zoned end: both in the end's zone.
            let end_zone = c
                .prop("DTEND")
                .and_then(|e| e.param("TZID"))
                .and_then(|z| ctx.zone(z));
            match end_zone {
                Some(z) if p.param("TZID").is_none() => ctx.at(uid, "DTSTART", p, &z)?,
                _ => ctx.at(uid, "DTSTART", p, floating)?,
            }
        }
        (None, Some((at, _))) => at.clone(),
        (None, None) => return Err(field(uid, "DTSTART", "missing")),
    };
    // Times without a zone after a DTSTART with one are read in DTSTART's zone.
    let near = if start.all_day {
        floating.clone()
    } else {
        start.zone.clone()
    };
    let s = start.utc();
    let dur = c.prop("DURATION").filter(|p| !p.value.trim().is_empty());
    let end = c.prop("DTEND").map(|p| ctx.at(uid, "DTEND", p, &near));
    let length = match (end, dur) {
        (Some(Ok(e)), _) if e.utc() >= s => e.utc() - s,
        (_, Some(d)) => {
            let d = duration(uid, &d.value)?;
            if d < Duration::zero() {
                return Err(field(uid, "DURATION", "negative"));
            }
            d
        }
        (Some(Err(e)), None) => return Err(e),
        (Some(Ok(_)), None) => return Err(field(uid, "DTEND", "ends before it starts")),
        (None, None) => match inherit {
            Some((_, len)) if c.prop("DTSTART").is_none() => len,
            _ if start.all_day => Duration::days(1),
            _ => Duration::zero(),
        },
    };
    let cancelled = ctx.cancel
        || c.text("STATUS")
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("CANCELLED"));
    let status = if cancelled {
        MeetingStatus::Cancelled
    } else if c
        .text("STATUS")
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("TENTATIVE"))
    {
        MeetingStatus::Tentative
    } else {
        MeetingStatus::Confirmed
    };
    let organizer = c.prop("ORGANIZER").and_then(|p| mailto(&p.value));
    let user = ctx.user.as_str();
    let attendees: Vec<Attendee> = c
        .all("ATTENDEE")
        .filter_map(|p| {
            let email = mailto(&p.value)?;
            Some(Attendee {
                organizer: organizer.as_deref() == Some(email.as_str()),
                is_self: email == user,
                name: p.param("CN").map(String::from),
                response: partstat(p),
                resource: p.param("CUTYPE").is_some_and(|t| {
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
        .unwrap_or(if organizer.as_deref() == Some(user) {
            Response::Accepted
        } else {
            Response::None
        });
    let conference: Vec<String> = [
        "URL",
        "CONFERENCE",
        "X-GOOGLE-CONFERENCE",
        "X-MICROSOFT-SKYPETEAMSMEETINGURL",
    ]
    .iter()
    .filter_map(|n| c.text(n))
    .collect();
    let location = c.text("LOCATION").unwrap_or_default();
    let description = c.text("DESCRIPTION").unwrap_or_default();
    let html = c.text("X-ALT-DESC").unwrap_or_default();
    let link = best_link(
        conference
            .iter()
            .map(|u| (u.as_str(), Source::Location))
            .chain([
                (location.as_str(), Source::Location),
                (description.as_str(), Source::Description),
                (html.as_str(), Source::Description),
            ]),
    );
    Ok(Base {
        title: c.text("SUMMARY").unwrap_or_default(),
        uid: uid.to_string(),
        status,
        organizer,
        attendees,
        self_response,
        link,
        start,
        length,
        // Not DTSTAMP: many feeds stamp it with the time of the fetch.
        modified: c.prop("LAST-MODIFIED").and_then(|p| {
            chrono::NaiveDateTime::parse_from_str(p.value.trim(), "%Y%m%dT%H%M%SZ")
                .ok()
                .map(|n| n.and_utc())
        }),
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

/// One instance of event `b`: the event itself (`original` none), or the occurrence of its
/// series that the rule put at `original`.
fn event(
    b: &Base,
    original: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
    length: Duration,
) -> NormalizedEvent {
    let uid = b.uid.as_str();
    NormalizedEvent {
        uid: (!uid.starts_with("no-uid-"))
            .then(|| crate::normalize::invitation_uid(uid))
            .flatten(),
        original_start: original,
        instance_id: original.map_or_else(|| uid.to_string(), |o| occurrence_id(uid, o)),
        series_id: original.map(|_| uid.to_string()),
        source_updated_at: b.modified,
        provider: CalendarProvider::Ics,
        title: b.title.clone(),
        starts_at: Some(at),
        ends_at: Some(at + length),
        time_zone: b.start.named.then(|| b.start.zone.name()),
        all_day: b.start.all_day,
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

/// Whether an instance at `start` lasting `len` overlaps `window` (a zero-length one: starts
/// inside it).
fn overlaps(start: DateTime<Utc>, len: Duration, window: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    start < window.1 && (start + len > window.0 || start >= window.0)
}

// ---------------------------------------------------------------- recurrences

/// An RRULE as the `rrule` crate reads it, with what this reader applies itself.
struct Rule {
    /// FREQ, INTERVAL and BYxxx parts (and UNTIL, in wall-clock time).
    text: String,
    count: Option<u32>,
    /// The rule ends before DTSTART: it adds nothing.
    empty: bool,
    until: Option<NaiveDateTime>,
}

const FREQS: [&str; 7] = [
    "SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY",
];
const DAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

/// Reads an RRULE as real software writes it: spaces anywhere, lower case, empty and unknown
/// parts, trailing separators, ordinals on BYDAY where the frequency has none, BYxxx parts the
/// frequency does not take, INTERVAL=0, an invalid COUNT (ignored, as the reference readers
/// do), UNTIL as a date, a local time or in UTC. Without a FREQ it is an error.
fn rule(uid: &str, raw: &str, start: &At, day_zone: &Zone) -> Result<Rule, ParseError> {
    let mut parts: Vec<(String, String)> = Vec::new();
    for part in raw.split(';') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let k: String = k
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let v: String = v
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if !v.is_empty() && !parts.iter().any(|(x, _)| *x == k) {
            parts.push((k, v));
        }
    }
    let get = |k: &str| parts.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    let freq = get("FREQ")
        .filter(|f| FREQS.contains(f))
        .ok_or_else(|| field(uid, "RRULE", "no FREQ (or an unknown one)"))?;
    let ordinals = matches!(freq, "MONTHLY" | "YEARLY");
    let mut text = format!("FREQ={freq}");
    let numbers = |v: &str, lo: i32, hi: i32| -> String {
        v.split(',')
            .filter_map(|x| x.trim_start_matches('+').parse::<i32>().ok())
            .filter(|n| *n != 0 && (lo..=hi).contains(n) || (*n == 0 && lo == 0))
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for (k, v) in &parts {
        let kept = match k.as_str() {
            "INTERVAL" => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n.to_string()),
            "BYDAY" => {
                let days: Vec<String> = v
                    .split(',')
                    .filter_map(|d| {
                        let d = d.trim_start_matches('+');
                        let cut = d.len().checked_sub(2).filter(|c| d.is_char_boundary(*c))?;
                        let (n, wd) = d.split_at(cut);
                        if !DAYS.contains(&wd) {
                            return None;
                        }
                        match n {
                            "" => Some(wd.to_string()),
                            _ if !ordinals => Some(wd.to_string()),
                            n => {
                                let n: i32 =
                                    n.parse().ok().filter(|n: &i32| *n != 0 && n.abs() <= 53)?;
                                Some(format!("{n}{wd}"))
                            }
                        }
                    })
                    .collect();
                let mut seen = HashSet::new();
                let days: Vec<String> = days
                    .into_iter()
                    .filter(|d| seen.insert(d.clone()))
                    .collect();
                (!days.is_empty()).then(|| days.join(","))
            }
            "BYMONTH" => Some(numbers(v, 1, 12)),
            "BYMONTHDAY" if freq != "WEEKLY" => Some(numbers(v, -31, 31)),
            "BYYEARDAY" if matches!(freq, "YEARLY" | "HOURLY" | "MINUTELY" | "SECONDLY") => {
                Some(numbers(v, -366, 366))
            }
            "BYWEEKNO" if freq == "YEARLY" => Some(numbers(v, -53, 53)),
            "BYSETPOS" => Some(numbers(v, -366, 366)),
            "BYHOUR" => Some(numbers(v, 0, 23)),
            "BYMINUTE" => Some(numbers(v, 0, 59)),
            "BYSECOND" => Some(numbers(v, 0, 59)),
            "WKST" => DAYS.contains(&v.as_str()).then(|| v.clone()),
            _ => None,
        };
        if let Some(kept) = kept.filter(|x| !x.is_empty()) {
            text.push_str(&format!(";{k}={kept}"));
        }
    }
    // BYSETPOS needs another BYxxx part.
    if text.contains("BYSETPOS") && !text.replace("BYSETPOS", "").contains(";BY") {
        text = text
            .split(';')
            .filter(|p| !p.starts_with("BYSETPOS"))
            .collect::<Vec<_>>()
            .join(";");
    }
    let count = get("COUNT").and_then(|c| c.parse::<u32>().ok());
    let until = match get("UNTIL").and_then(value) {
        None => None,
        Some(Value::Date(d)) if start.all_day => Some(d.and_time(chrono::NaiveTime::MIN)),
        Some(Value::Date(d)) => d.and_hms_opt(23, 59, 59),
        Some(Value::Local(t)) => Some(t),
        Some(Value::Utc(t)) if start.all_day => Some(
            day_zone
                .to_local(Utc.from_utc_datetime(&t))
                .date()
                .and_time(chrono::NaiveTime::MIN),
        ),
        Some(Value::Utc(t)) => Some(start.zone.to_local(Utc.from_utc_datetime(&t))),
    };
    let empty = until.is_some_and(|u| u < start.local);
    if let Some(u) = until.filter(|_| !empty) {
        text.push_str(&format!(";UNTIL={}Z", u.format("%Y%m%dT%H%M%S")));
    }
    Ok(Rule {
        text,
        count,
        empty,
        until,
    })
}

/// A comma-separated date list (EXDATE, RDATE) with its TZID, each value read.
fn dates<'a>(
    ctx: &'a Ctx,
    uid: &'a str,
    f: &'static str,
    p: &'a Prop,
    near: &'a Zone,
) -> impl Iterator<Item = Result<(At, Option<&'a str>), ParseError>> + 'a {
    p.value
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(move |v| {
            // PERIOD values: start/end or start/duration.
            let (s, rest) = match v.split_once('/') {
                Some((s, r)) => (s, Some(r)),
                None => (v, None),
            };
            ctx.at_value(uid, f, s, p.param("TZID"), near)
                .map(|a| (a, rest))
        })
}

/// The starts (and lengths) of a recurring event's occurrences overlapping `window`,
/// without those `skip` holds (replaced by overrides), the first [`MAX_OCCURRENCES`].
fn occurrences(
    ctx: &Ctx,
    c: &Comp,
    b: &Base,
    window: (DateTime<Utc>, DateTime<Utc>),
    skip: &HashSet<DateTime<Utc>>,
    budget: &mut Budget,
) -> Result<Vec<(DateTime<Utc>, Duration)>, ParseError> {
    let uid = b.uid.as_str();
    let start = &b.start;
    let near = if start.all_day {
        ctx.floating.clone()
    } else {
        start.zone.clone()
    };
    let day_zone = ctx.day_zone_of(c);
    let mut out: Vec<(DateTime<Utc>, Duration)> = Vec::new();
    let mut excluded: HashSet<DateTime<Utc>> = HashSet::new();
    let mut excluded_days: HashSet<NaiveDate> = HashSet::new();
    for p in c.all("EXDATE") {
        for x in dates(ctx, uid, "EXDATE", p, &near) {
            let (a, _) = x?;
            if start.all_day {
                excluded_days.insert(ctx.day_of(&a, &day_zone));
            } else if a.all_day {
                excluded_days.insert(a.local.date());
            } else {
                excluded.insert(a.utc());
            }
        }
    }
    let keep = |at: DateTime<Utc>, len: Duration| {
        overlaps(at, len, window)
            && !skip.contains(&at)
            && !excluded.contains(&at)
            && !excluded_days.contains(&start.zone.to_local(at).date())
    };
    let rules: Vec<Rule> = c
        .all("RRULE")
        .map(|p| rule(uid, &p.value, start, &day_zone))
        .collect::<Result<_, _>>()?;
    // Wall-clock bounds of the window, wide enough for any zone's offset.
    let lo = window.0.naive_utc() - b.length - Duration::days(2);
    let hi = window.1.naive_utc() + Duration::days(2);
    let first = format!("{}Z", start.local.format("%Y%m%dT%H%M%S"));
    for r in rules.iter().filter(|r| !r.empty) {
        let set: rrule::RRuleSet = format!("DTSTART:{first}\nRRULE:{}", r.text)
            .parse()
            .map_err(|e: rrule::RRuleError| field(uid, "RRULE", e.to_string()))?;
        // Limited: the crate stops a rule that never matches after a bounded search.
        let set = set.limit();
        let mut here = 0u16;
        // Stepped one occurrence at a time from the event's start: each step is counted, and
        // the first one past the window (or past COUNT) ends the rule.
        for (n, at) in (&set).into_iter().enumerate() {
            budget.step()?;
            if r.count.is_some_and(|c| n as u64 >= u64::from(c)) {
                break;
            }
            let local = at.naive_utc();
            if local > hi {
                break;
            }
            if local < lo {
                continue;
            }
            let utc = start.with_local(local);
            if keep(utc, b.length) {
                out.push((utc, b.length));
                here += 1;
                if here >= MAX_OCCURRENCES {
                    break;
                }
            }
        }
    }
    // DTSTART is the first occurrence unless every rule ended before it.
    if rules.is_empty()
        || rules
            .iter()
            .any(|r| r.until.is_none_or(|u| u >= start.local))
    {
        let at = start.utc();
        if keep(at, b.length) {
            out.push((at, b.length));
        }
    }
    for p in c.all("RDATE") {
        for x in dates(ctx, uid, "RDATE", p, &near) {
            let (a, rest) = x?;
            let at = a.utc();
            let len = match rest.map(|r| (r, value(r))) {
                Some((_, Some(v))) => {
                    let end = ctx.at_value(uid, "RDATE", &naive_text(v), p.param("TZID"), &near)?;
                    (end.utc() - at).max(Duration::zero())
                }
                Some((r, None)) => duration(uid, r)?.max(Duration::zero()),
                None => b.length,
            };
            budget.step()?;
            if keep(at, len) {
                out.push((at, len));
            }
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out.dedup_by_key(|(at, _)| *at);
    out.truncate(MAX_OCCURRENCES as usize);
    Ok(out)
}

fn naive_text(v: Value) -> String {
    match v {
        Value::Date(d) => d.format("%Y%m%d").to_string(),
        Value::Local(t) => t.format("%Y%m%dT%H%M%S").to_string(),
        Value::Utc(t) => t.format("%Y%m%dT%H%M%SZ").to_string(),
    }
}

// ---------------------------------------------------------------- feeds

/// The VEVENTs and VTIMEZONEs of a text, with the calendar's own properties.
struct Cal<'a> {
    events: Vec<&'a Comp>,
    zones: Vec<&'a Comp>,
    x_wr_timezone: Option<String>,
    cancel: bool,
}

fn calendar(top: &[Comp]) -> Option<Cal<'_>> {
    let mut cal = Cal {
        events: Vec::new(),
        zones: Vec::new(),
        x_wr_timezone: None,
        cancel: false,
    };
    let mut found = false;
    for c in top {
        match c.name.as_str() {
            "VCALENDAR" => {
                found = true;
                if cal.x_wr_timezone.is_none() {
                    cal.x_wr_timezone = c.text("X-WR-TIMEZONE").map(|z| z.trim().to_string());
                }
                cal.cancel |= c
                    .text("METHOD")
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("CANCEL"));
                for s in &c.subs {
                    match s.name.as_str() {
                        "VEVENT" => cal.events.push(s),
                        "VTIMEZONE" => cal.zones.push(s),
                        _ => {}
                    }
                }
            }
            // A bare VEVENT or VTIMEZONE (no VCALENDAR around it).
            "VEVENT" => {
                found = true;
                cal.events.push(c);
            }
            "VTIMEZONE" => cal.zones.push(c),
            _ => {}
        }
    }
    found.then_some(cal)
}

/// What a feed gave: its events in the window, and the events it has that could not be read.
#[derive(Debug, Default)]
pub struct Feed {
    /// Instances overlapping the window: single events, occurrences, overrides.
    pub events: Vec<NormalizedEvent>,
    /// One error per event that could not be read (naming its UID and field); the rest of the
    /// feed was read.
    pub errors: Vec<ParseError>,
    /// The UIDs of those events (a snapshot must not take their meetings for deleted).
    pub unreadable: Vec<String>,
    /// Events (VEVENTs) read, inside the window or not.
    pub read: usize,
}

impl Feed {
    /// Whether `instance_id` (a UID or `<UID>_<start>`) belongs to an event that could not be
    /// read.
    pub fn is_unreadable(&self, instance_id: &str) -> bool {
        self.unreadable.iter().any(|u| {
            instance_id == u
                || instance_id
                    .strip_prefix(u.as_str())
                    .is_some_and(|r| r.starts_with('_'))
        })
    }
}

/// The events of an ICS feed starting inside `window`, recurring ones expanded into one event
/// per occurrence (instance id `<UID>_<original start>`, series id the UID). `user_email` is the
/// connected user, for their own response. Within the default [`FeedLimits`]. Strict: an event
/// that cannot be read is the feed's error (see [`read_feed`] for the tolerant reading).
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
    let mut f = read_feed_within(feed, user_email, window, limits)?;
    if !f.errors.is_empty() {
        return Err(f.errors.swap_remove(0));
    }
    Ok(f.events)
}

/// Reads a feed, keeping every event it can read: an event that cannot be read is an error in
/// [`Feed::errors`]; only a text that is no calendar, or one over the [`FeedLimits`], is an
/// error as a whole.
pub fn read_feed(
    feed: &str,
    user_email: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<Feed, ParseError> {
    read_feed_within(feed, user_email, window, FeedLimits::default())
}

/// Records an event's error; a cap reached is the feed's.
fn fail(out: &mut Feed, uid: &str, e: ParseError) -> Result<(), ParseError> {
    if matches!(e, ParseError::Limit { .. }) {
        return Err(e);
    }
    out.errors.push(e);
    // Consecutive errors of one event name it once (the rest is deduplicated at the end).
    if out.unreadable.last().map(String::as_str) != Some(uid) {
        out.unreadable.push(uid.to_string());
    }
    Ok(())
}

/// [`read_feed`] within `limits`.
pub fn read_feed_within(
    feed: &str,
    user_email: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
    limits: FeedLimits,
) -> Result<Feed, ParseError> {
    let mut budget = Budget::new(limits);
    let top = components(feed);
    let cal = calendar(&top).ok_or_else(|| ParseError::Shape {
        provider: "ics",
        detail: "not an iCalendar feed (no BEGIN:VCALENDAR)".into(),
    })?;
    budget.in_time()?;
    let ctx = Ctx::new(&cal, user_email);
    let mut out = Feed::default();
    // The series (no RECURRENCE-ID) by UID, in the order first seen; listed twice, the higher
    // SEQUENCE (then the later one) wins.
    let mut order: Vec<String> = Vec::new();
    let mut series: HashMap<String, &Comp> = HashMap::new();
    let mut changed: Vec<(String, &Comp)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for c in &cal.events {
        let uid = uid_of(c);
        if seen.insert(uid.clone()) {
            order.push(uid.clone());
        }
        if c.prop("RECURRENCE-ID").is_some() {
            changed.push((uid, c));
        } else if series.get(&uid).is_none_or(|o| sequence(o) <= sequence(c)) {
            series.insert(uid, c);
        }
    }
    // Series are read as they are reached (a feed refused at a cap costs no more than the
    // events before it); first those that overrides need, for their zone.
    let mut bases: HashMap<String, Base> = HashMap::new();
    let mut broken: HashSet<String> = HashSet::new();
    let read_series = |uid: &String,
                       bases: &mut HashMap<String, Base>,
                       broken: &mut HashSet<String>,
                       out: &mut Feed,
                       budget: &mut Budget|
     -> Result<(), ParseError> {
        let Some(c) = series.get(uid) else {
            return Ok(());
        };
        if bases.contains_key(uid.as_str()) || broken.contains(uid.as_str()) {
            return Ok(());
        }
        budget.step()?;
        match base(&ctx, c, uid, &ctx.floating, None) {
            Ok(b) => {
                out.read += 1;
                bases.insert(uid.clone(), b);
            }
            Err(e) => {
                broken.insert(uid.clone());
                fail(out, uid, e)?;
            }
        }
        Ok(())
    };
    for (uid, _) in &changed {
        read_series(uid, &mut bases, &mut broken, &mut out, &mut budget)?;
    }
    // Overrides: (UID, original start) -> the changed VEVENT, wherever it stands in the file.
    let mut overrides: HashMap<&str, Vec<(DateTime<Utc>, &Comp)>> = HashMap::new();
    for (uid, c) in &changed {
        if series.contains_key(uid) && !bases.contains_key(uid.as_str()) {
            // Its series could not be read: the whole event is that error.
            continue;
        }
        let master = bases.get(uid.as_str());
        let floating = master.map_or(&ctx.floating, |m| &m.start.zone);
        let Some(r) = c.prop("RECURRENCE-ID") else {
            continue;
        };
        match ctx.at(uid, "RECURRENCE-ID", r, floating) {
            Ok(at) => {
                let list = overrides.entry(uid.as_str()).or_default();
                // An all-day series' occurrence is its day, however the override names it.
                let at = match master {
                    Some(m) if m.start.all_day => {
                        let day = ctx.day_of(&at, &ctx.day_zone_of(series[uid]));
                        Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
                    }
                    _ => at.utc(),
                };
                match list.iter_mut().find(|(t, _)| *t == at) {
                    Some(slot) if sequence(slot.1) <= sequence(c) => slot.1 = c,
                    Some(_) => {}
                    None => list.push((at, c)),
                }
            }
            Err(e) => fail(&mut out, uid, e)?,
        }
    }
    for uid in &order {
        read_series(uid, &mut bases, &mut broken, &mut out, &mut budget)?;
        let mut instances: Vec<NormalizedEvent> = Vec::new();
        let master = bases.get(uid.as_str());
        let changes = overrides.get(uid.as_str()).map_or(&[][..], Vec::as_slice);
        if let Some(b) = master {
            let c = series[uid];
            let recurring = c.prop("RRULE").is_some() || c.prop("RDATE").is_some();
            if !recurring {
                if overlaps(b.start.utc(), b.length, window) {
                    budget.emit(b.size())?;
                    instances.push(event(b, None, b.start.utc(), b.length));
                }
            } else {
                let skip: HashSet<DateTime<Utc>> = changes.iter().map(|(t, _)| *t).collect();
                match occurrences(&ctx, c, b, window, &skip, &mut budget) {
                    Ok(list) => {
                        let size = b.size();
                        for (at, len) in list {
                            budget.emit(size)?;
                            instances.push(event(b, Some(at), at, len));
                        }
                    }
                    Err(e) => {
                        fail(&mut out, uid, e)?;
                        out.read -= 1;
                        continue;
                    }
                }
            }
        }
        for (orig, c) in changes {
            let floating = master.map_or(&ctx.floating, |m| &m.start.zone);
            let orig_at = match master {
                Some(m) if m.start.all_day => At {
                    local: orig.naive_utc(),
                    zone: Zone::UTC,
                    all_day: true,
                    named: false,
                },
                Some(m) => At {
                    local: m.start.zone.to_local(*orig),
                    ..m.start.clone()
                },
                None => At {
                    local: orig.naive_utc(),
                    zone: Zone::UTC,
                    all_day: false,
                    named: false,
                },
            };
            let len = master.map_or(Duration::zero(), |m| m.length);
            match base(&ctx, c, uid, floating, Some((&orig_at, len))) {
                Ok(ob) => {
                    out.read += 1;
                    if overlaps(ob.start.utc(), ob.length, window) {
                        budget.emit(ob.size())?;
                        instances.push(event(&ob, Some(*orig), ob.start.utc(), ob.length));
                    }
                }
                Err(e) => fail(&mut out, uid, e)?,
            }
        }
        instances.sort_by_key(|e| e.starts_at);
        out.events.extend(instances);
    }
    let mut named = HashSet::new();
    out.unreadable.retain(|u| named.insert(u.clone()));
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

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn cal(body: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n")
    }

    /// Outlook/Exchange: a quoted Windows TZID defined by its own VTIMEZONE, a Windows TZID
    /// without one, and a custom zone name only the file defines.
    const OUTLOOK: &str = "BEGIN:VTIMEZONE\r\nTZID:Customized Time Zone\r\nBEGIN:STANDARD\r\n\
DTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\n\
DTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:custom\r\nDTSTART;TZID=\"Customized Time Zone\":20261116T090000\r\n\
DTEND;TZID=\"Customized Time Zone\":20261116T100000\r\nSUMMARY:Custom\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:win\r\nDTSTART;TZID=\"Pacific Standard Time\":20261116T090000\r\n\
DTEND;TZID=\"Pacific Standard Time\":20261116T093000\r\nSUMMARY:Windows\r\n\
X-MICROSOFT-SKYPETEAMSMEETINGURL:https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0\r\n\
END:VEVENT\r\n";

    #[test]
    fn windows_tzids_and_custom_vtimezones_place_events_at_their_instants() {
        let f = read_feed(&cal(OUTLOOK), "a@b.c", window()).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let custom = &f.events[0];
        assert_eq!(custom.starts_at, Some(utc(2026, 11, 16, 8, 0)));
        assert_eq!(custom.ends_at, Some(utc(2026, 11, 16, 9, 0)));
        assert_eq!(custom.time_zone.as_deref(), Some("Customized Time Zone"));
        let win = &f.events[1];
        // 09:00 PST (UTC-8).
        assert_eq!(win.starts_at, Some(utc(2026, 11, 16, 17, 0)));
        assert_eq!(win.time_zone.as_deref(), Some("America/Los_Angeles"));
        assert_eq!(win.platform(), Some(meetbot_core::model::Platform::Teams));
        // In summer the custom zone is UTC+2, like Europe/Berlin.
        let summer = cal(&OUTLOOK.replace("20261116T", "20260716T"));
        let w = (utc(2026, 7, 1, 0, 0), utc(2026, 8, 1, 0, 0));
        let f = read_feed(&summer, "a@b.c", w).unwrap();
        assert_eq!(f.events[0].starts_at, Some(utc(2026, 7, 16, 7, 0)));
        assert_eq!(f.events[1].starts_at, Some(utc(2026, 7, 16, 16, 0)));
    }

    #[test]
    fn malformed_rrules_floating_times_and_dtend_with_duration_are_read() {
        let body = "X-WR-TIMEZONE:Europe/Berlin\r\n\
BEGIN:VEVENT\r\nUID:spaces\r\nDTSTART;TZID=Europe/Berlin:20261102T090000\r\nDURATION:PT30M\r\n\
rrule:freq=weekly; BYDAY=MO, WE ,;INTERVAL=0;;X-NAME=1;COUNT=4\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:floating\r\nDTSTART:20261110T090000\r\nDTEND:20261110T100000\r\n\
DURATION:PT5H\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:until-date\r\nDTSTART;TZID=Europe/Berlin:20261124T090000\r\n\
RRULE:FREQ=DAILY;UNTIL=20261126\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:ordinal\r\nDTSTART:20261102T090000Z\r\nRRULE:FREQ=WEEKLY;BYDAY=1MO;COUNT=2\r\nEND:VEVENT\r\n";
        let f = read_feed(&cal(body), "a@b.c", window()).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let starts = |uid: &str| -> Vec<DateTime<Utc>> {
            f.events
                .iter()
                .filter(|e| e.instance_id.starts_with(uid))
                .filter_map(|e| e.starts_at)
                .collect()
        };
        // Mondays and Wednesdays at 09:00 Berlin (UTC+1), four in all.
        assert_eq!(
            starts("spaces"),
            [
                utc(2026, 11, 2, 8, 0),
                utc(2026, 11, 4, 8, 0),
                utc(2026, 11, 9, 8, 0),
                utc(2026, 11, 11, 8, 0)
            ]
        );
        // Floating: in the calendar's X-WR-TIMEZONE; DTEND wins over DURATION.
        let fl = f
            .events
            .iter()
            .find(|e| e.instance_id == "floating")
            .unwrap();
        assert_eq!(fl.starts_at, Some(utc(2026, 11, 10, 8, 0)));
        assert_eq!(fl.ends_at, Some(utc(2026, 11, 10, 9, 0)));
        assert_eq!(fl.time_zone, None);
        // UNTIL as a date includes that day.
        assert_eq!(starts("until-date").len(), 3);
        // An ordinal BYDAY in a weekly rule is read as the weekday.
        assert_eq!(
            starts("ordinal"),
            [utc(2026, 11, 2, 9, 0), utc(2026, 11, 9, 9, 0)]
        );
    }

    #[test]
    fn overrides_count_wherever_they_stand_and_with_or_without_their_series() {
        let body = "BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID:20261109T090000Z\r\n\
DTSTART:20261201T090000Z\r\nDTEND:20261201T100000Z\r\nSUMMARY:moved out\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID:20261207T090000Z\r\nDTSTART:20261125T150000Z\r\n\
DTEND:20261125T160000Z\r\nSUMMARY:moved in\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID:20261116T090000Z\r\nDTSTART:20261116T090000Z\r\n\
DTEND:20261116T100000Z\r\nSTATUS:CANCELLED\r\nSUMMARY:called off\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:s\r\nDTSTART:20261102T090000Z\r\nDTEND:20261102T100000Z\r\n\
RRULE:FREQ=WEEKLY\r\nSUMMARY:weekly\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:orphan\r\nRECURRENCE-ID:20261112T130000Z\r\nDTSTART:20261112T140000Z\r\n\
DTEND:20261112T150000Z\r\nSUMMARY:one of a series we do not have\r\nEND:VEVENT\r\n";
        let f = read_feed(&cal(body), "a@b.c", window()).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let got: Vec<(&str, &str, bool)> = f
            .events
            .iter()
            .map(|e| (e.instance_id.as_str(), e.title.as_str(), e.removed))
            .collect();
        assert_eq!(
            got,
            [
                ("s_20261102T090000Z", "weekly", false),
                ("s_20261116T090000Z", "called off", true),
                ("s_20261123T090000Z", "weekly", false),
                ("s_20261207T090000Z", "moved in", false),
                ("s_20261130T090000Z", "weekly", false),
                (
                    "orphan_20261112T130000Z",
                    "one of a series we do not have",
                    false
                ),
            ]
        );
        assert_eq!(f.events[1].status, MeetingStatus::Cancelled);
        assert_eq!(f.events[3].series_id.as_deref(), Some("s"));
    }

    #[test]
    fn an_unreadable_event_is_its_own_error_and_the_rest_of_the_feed_is_kept() {
        let body = "BEGIN:VEVENT\r\nUID:good\r\nDTSTART:20261110T090000Z\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:mars\r\nDTSTART;TZID=Mars/Olympus:20261110T090000\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:nofreq\r\nDTSTART:20261110T090000Z\r\nRRULE:BYDAY=MO\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:nofreq\r\nRECURRENCE-ID:20261116T090000Z\r\nDTSTART:20261116T100000Z\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:backwards\r\nDTSTART:20261110T090000Z\r\nDTEND:20261110T080000Z\r\nEND:VEVENT\r\n\
this line is not a content line\r\n\
BEGIN:VEVENT\r\nUID:also-good\r\nDTSTART:20261111T090000Z\r\nEND:VEVENT\r\n";
        let feed = cal(body);
        let f = read_feed(&feed, "a@b.c", window()).unwrap();
        let ids: Vec<&str> = f.events.iter().map(|e| e.instance_id.as_str()).collect();
        assert_eq!(ids, ["good", "also-good"]);
        // Errors in the order of the events in the file.
        assert_eq!(f.unreadable, ["mars", "nofreq", "backwards"]);
        assert_eq!(f.read, 2);
        let msgs: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            msgs[0].starts_with("event mars: field DTSTART: unknown time zone"),
            "{msgs:?}"
        );
        assert!(msgs[1].starts_with("event nofreq: field RRULE"), "{msgs:?}");
        assert!(
            msgs[2].starts_with("event backwards: field DTEND"),
            "{msgs:?}"
        );
        assert!(f.is_unreadable("nofreq_20261116T090000Z") && !f.is_unreadable("good"));
        // The strict reading (sync's snapshot) refuses the feed at the first such event.
        assert!(matches!(
            parse_feed(&feed, "a@b.c", window()),
            Err(ParseError::Field { ref id, .. }) if id == "mars"
        ));
    }

    #[test]
    fn content_lines_are_read_as_real_software_writes_them() {
        // LF line ends, tab folding, lower-case names, a BOM, quoted parameters holding `:`,
        // `;` and `,`, a VALARM whose properties are not the event's, METHOD:CANCEL.
        let feed = "\u{feff}begin:vcalendar\nmethod:CANCEL\nbegin:vevent\nuid:lf\n\
dtstart;tzid=\"W. Europe Standard Time\":20261110T090000\ndtend;tzid=\"W. Europe Standard Time\":2026\n\t1110T100000\n\
attendee;cn=\"Doe, Jane; PhD: MD\";partstat=accepted:mailto:jane@x.example\n\
summary:folded\n  title\nbegin:valarm\nattendee:mailto:alarm@x.example\ntrigger:-PT5M\nend:valarm\n\
end:vevent\nend:vcalendar\n";
        let f = read_feed(feed, "jane@x.example", window()).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let e = &f.events[0];
        assert_eq!(e.title, "folded title");
        assert_eq!(e.starts_at, Some(utc(2026, 11, 10, 8, 0)));
        assert_eq!(e.ends_at, Some(utc(2026, 11, 10, 9, 0)));
        assert_eq!(e.attendees.len(), 1);
        assert_eq!(e.attendees[0].name.as_deref(), Some("Doe, Jane; PhD: MD"));
        assert_eq!(e.self_response, Response::Accepted);
        assert_eq!(e.status, MeetingStatus::Cancelled);
        assert_eq!(
            value("2026-11-10T09:00:00Z"),
            Some(Value::Utc(utc(2026, 11, 10, 9, 0).naive_utc()))
        );
        assert_eq!(value("20261110t0900"), value("20261110T090000"));
        assert_eq!(value("2026111"), None);
    }

    #[test]
    fn exdates_rdates_and_duplicates_follow_the_reference_readers() {
        let body = "BEGIN:VEVENT\r\nUID:r\r\nSEQUENCE:1\r\nDTSTART;TZID=Europe/Berlin:20261102T090000\r\n\
DURATION:PT1H\r\nRRULE:FREQ=DAILY;COUNT=5\r\nEXDATE;VALUE=DATE:20261103\r\nEXDATE:20261104T080000Z\r\n\
RDATE;VALUE=PERIOD:20261120T120000Z/PT2H,20261121T120000Z/20261121T123000Z\r\nSUMMARY:new\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:r\r\nSEQUENCE:0\r\nDTSTART:20261102T090000Z\r\nSUMMARY:old copy\r\nEND:VEVENT\r\n";
        let f = read_feed(&cal(body), "a@b.c", window()).unwrap();
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let got: Vec<(DateTime<Utc>, i64, &str)> = f
            .events
            .iter()
            .map(|e| {
                let s = e.starts_at.unwrap();
                (s, (e.ends_at.unwrap() - s).num_minutes(), e.title.as_str())
            })
            .collect();
        assert_eq!(
            got,
            [
                (utc(2026, 11, 2, 8, 0), 60, "new"),
                (utc(2026, 11, 5, 8, 0), 60, "new"),
                (utc(2026, 11, 6, 8, 0), 60, "new"),
                (utc(2026, 11, 20, 12, 0), 120, "new"),
                (utc(2026, 11, 21, 12, 0), 30, "new"),
            ]
        );
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
        let bad = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x1\r\nDTSTART:24/11/2026\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
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
        // An event without UID is read, under an id derived from its start and title that stays
        // the same from one round to the next.
        let no_uid = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20261124T090000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let a = parse_feed(no_uid, "a@b.c", window()).unwrap();
        let b = parse_feed(no_uid, "a@b.c", window()).unwrap();
        assert_eq!(a.len(), 1);
        assert!(
            a[0].instance_id.starts_with("no-uid-"),
            "{}",
            a[0].instance_id
        );
        assert_eq!(a[0].instance_id, b[0].instance_id);
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
        #[test]
        fn any_edit_of_a_real_feed_is_read_or_refused_never_a_panic(
            cut in 0usize..2000, junk in "\\PC{0,20}", drop in 0usize..60
        ) {
            let feed = format!("{}{}", cal(OUTLOOK), FEED);
            let mut lines: Vec<&str> = feed.split("\r\n").collect();
            if drop < lines.len() {
                lines.remove(drop);
            }
            let mut s = lines.join("\r\n");
            let at = (0..=cut.min(s.len())).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            s.insert_str(at, &junk);
            if let Ok(f) = read_feed(&s, "a@b.c", window()) {
                prop_assert!(f.events.len() <= 5_000);
                prop_assert_eq!(f.errors.len() >= f.unreadable.len(), true);
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

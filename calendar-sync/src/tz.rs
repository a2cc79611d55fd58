//! Time zones as calendar software names and defines them.
//!
//! * IANA names (`Europe/Berlin`), also behind the "globally unique" prefixes libical,
//!   Evolution and Thunderbird write (`/mozilla.org/20070129_1/Europe/Berlin`).
//! * Windows names (`W. Europe Standard Time`, `Pacific Standard Time`), which Microsoft Graph
//!   (`start.timeZone`) and Outlook/Exchange ICS files use: mapped to IANA by the CLDR
//!   `windowsZones` table (its world-wide default, territory `001`), as the
//!   `windows-timezones` crate carries it (CLDR release 46.1; Unicode licence, decision 0039).
//! * Zones an ICS file defines itself in a VTIMEZONE block (`TZID:Customized Time Zone`,
//!   Lotus Notes' `Eastern`): [`Rules`], built from its STANDARD and DAYLIGHT observances.
//!
//! Local times that do not exist (in a spring-forward gap) are read as the instant just after
//! the gap; local times that exist twice (autumn) as the earlier one, as calendar clients show
//! them.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc, Weekday,
};
use std::sync::Arc;

/// The IANA zone for `name` as written in a TZID or a Graph `timeZone`: an IANA name (UTC
/// spellings included), one behind a vendor prefix, or `None`. Windows names are
/// [`windows`]'s.
pub fn iana(name: &str) -> Option<chrono_tz::Tz> {
    let name = name.trim().trim_matches('"').trim();
    match name {
        "Z" | "UTC" | "GMT" | "Etc/UTC" | "Etc/GMT" | "tzone://Microsoft/Utc" | "Utc" => {
            return Some(chrono_tz::UTC);
        }
        _ => {}
    }
    if let Ok(tz) = name.parse::<chrono_tz::Tz>() {
        return Some(tz);
    }
    // `/vendor/version/Area/City`: the longest suffix that is an IANA name.
    if name.starts_with('/') {
        let mut rest = name.trim_start_matches('/');
        while let Some((_, tail)) = rest.split_once('/') {
            if let Ok(tz) = tail.parse::<chrono_tz::Tz>() {
                return Some(tz);
            }
            rest = tail;
        }
    }
    None
}

/// The IANA zone CLDR maps the Windows zone `name` to (world-wide default), or `None`.
pub fn windows(name: &str) -> Option<chrono_tz::Tz> {
    let name = name.trim().trim_matches('"').trim();
    name.parse::<windows_timezones::WindowsTimezone>()
        .ok()
        .map(chrono_tz::Tz::from)
}

/// An IANA or Windows name ([`iana`], then [`windows`]).
pub fn named(name: &str) -> Option<chrono_tz::Tz> {
    iana(name).or_else(|| windows(name))
}

/// A zone events are read in.
#[derive(Clone, Debug)]
pub enum Zone {
    Tz(chrono_tz::Tz),
    /// Defined by a VTIMEZONE block of the file.
    Custom(Arc<Rules>),
}

impl Zone {
    pub const UTC: Zone = Zone::Tz(chrono_tz::UTC);

    /// The zone's name: the IANA name, or the TZID of a custom zone.
    pub fn name(&self) -> String {
        match self {
            Zone::Tz(tz) => tz.name().to_string(),
            Zone::Custom(r) => r.tzid.clone(),
        }
    }

    /// The instant of wall-clock time `local` in this zone.
    pub fn to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self {
            Zone::Tz(tz) => match tz.from_local_datetime(&local) {
                chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
                chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
                chrono::LocalResult::None => {
                    // In a gap: read with the offset in force before it.
                    let before = tz
                        .offset_from_utc_datetime(&(local - Duration::days(1)))
                        .fix()
                        .local_minus_utc();
                    Utc.from_utc_datetime(&(local - Duration::seconds(before.into())))
                }
            },
            Zone::Custom(r) => Utc.from_utc_datetime(&r.to_utc(local)),
        }
    }

    /// The wall-clock time of instant `utc` in this zone.
    pub fn to_local(&self, utc: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Tz(tz) => utc.with_timezone(tz).naive_local(),
            Zone::Custom(r) => {
                let n = utc.naive_utc();
                n + Duration::seconds(r.offset_at(n).into())
            }
        }
    }
}

/// A zone defined by the observances (STANDARD, DAYLIGHT) of a VTIMEZONE block.
#[derive(Debug)]
pub struct Rules {
    tzid: String,
    observances: Vec<Observance>,
}

/// One STANDARD or DAYLIGHT block: from its onset on, `to` is in force.
#[derive(Debug)]
pub struct Observance {
    /// DTSTART: the first onset, in the wall-clock time in force before it (`from`).
    start: NaiveDateTime,
    from: i32,
    to: i32,
    yearly: Option<Yearly>,
    rdates: Vec<NaiveDateTime>,
}

/// The yearly rules VTIMEZONE blocks use (`FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU` and kin).
#[derive(Debug)]
struct Yearly {
    interval: i32,
    month: Option<u32>,
    day: DaySpec,
    until: Option<Until>,
    count: Option<u32>,
}

#[derive(Debug)]
enum DaySpec {
    /// DTSTART's day of month.
    Same,
    /// The n-th (from the end when negative) weekday of the month.
    Nth(Weekday, i8),
    /// The day of month (from the end when negative).
    MonthDay(i8),
    /// The first of these days of the month that is this weekday (`BYDAY=SU;BYMONTHDAY=8,...,14`).
    WeekdayIn(Weekday, Vec<i8>),
}

#[derive(Debug)]
enum Until {
    Utc(NaiveDateTime),
    Local(NaiveDateTime),
}

/// `+0100`, `-0500`, `+053000`, `0100`, `+01:00` as seconds east of UTC.
pub fn utc_offset(v: &str) -> Option<i32> {
    let v = v.trim();
    let (sign, digits) = match v.as_bytes().first()? {
        b'+' => (1, &v[1..]),
        b'-' => (-1, &v[1..]),
        _ => (1, v),
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if !(digits.len() == 4 || digits.len() == 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<i32>().ok());
    let (h, m) = (n(0..2)?, n(2..4)?);
    let s = if digits.len() == 6 { n(4..6)? } else { 0 };
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + s))
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

fn month_days(y: i32, m: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(y, m, 1)?;
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)?
    };
    Some((next - first).num_days() as u32)
}

fn month_day(y: i32, m: u32, d: i8) -> Option<NaiveDate> {
    let len = month_days(y, m)? as i32;
    let day = if d < 0 {
        len + 1 + i32::from(d)
    } else {
        i32::from(d)
    };
    if day < 1 || day > len {
        return None;
    }
    NaiveDate::from_ymd_opt(y, m, day as u32)
}

impl Yearly {
    /// Reads an observance's RRULE; `None` for rules outside what VTIMEZONE blocks use.
    fn parse(rule: &str, until_local: impl Fn(&str) -> Option<Until>) -> Option<Yearly> {
        let mut y = Yearly {
            interval: 1,
            month: None,
            day: DaySpec::Same,
            until: None,
            count: None,
        };
        let (mut byday, mut bymonthday) = (None, None);
        let mut freq = false;
        for part in rule.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let k = k.trim().to_ascii_uppercase();
            let v: String = v
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_uppercase();
            match k.as_str() {
                "FREQ" => {
                    if v != "YEARLY" {
                        return None;
                    }
                    freq = true;
                }
                "INTERVAL" => y.interval = v.parse().ok().filter(|n: &i32| *n >= 1)?,
                "BYMONTH" => y.month = Some(v.parse().ok().filter(|m| (1..=12).contains(m))?),
                "BYDAY" => byday = Some(v),
                "BYMONTHDAY" => bymonthday = Some(v),
                "UNTIL" => y.until = Some(until_local(&v)?),
                "COUNT" => y.count = Some(v.parse().ok()?),
                // The time of day is DTSTART's (Lotus Notes repeats it here).
                "WKST" | "BYHOUR" | "BYMINUTE" | "BYSECOND" => {}
                _ => return None,
            }
        }
        if !freq {
            return None;
        }
        let days = |s: &str| -> Option<Vec<i8>> {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(|x| x.parse().ok().filter(|d: &i8| *d != 0 && d.abs() <= 31))
                .collect()
        };
        y.day = match (byday, bymonthday) {
            (None, None) => DaySpec::Same,
            (None, Some(md)) => match days(&md)?.as_slice() {
                [d] => DaySpec::MonthDay(*d),
                _ => return None,
            },
            (Some(bd), md) => {
                if bd.contains(',') || bd.len() < 2 || !bd.is_char_boundary(bd.len() - 2) {
                    return None;
                }
                let (n, wd) = bd.split_at(bd.len() - 2);
                let wd = weekday(wd)?;
                match (n.trim_start_matches('+'), md) {
                    ("", Some(md)) => DaySpec::WeekdayIn(wd, days(&md)?),
                    ("", None) => return None,
                    (n, None) => {
                        let n: i8 = n.parse().ok().filter(|n: &i8| *n != 0 && n.abs() <= 5)?;
                        DaySpec::Nth(wd, n)
                    }
                    _ => return None,
                }
            }
        };
        Some(y)
    }

    /// The onset in year `year` (wall-clock time before it), if the rule has one then.
    fn onset(&self, o: &Observance, year: i32) -> Option<NaiveDateTime> {
        let first = o.start.year();
        if year < first || (year - first) % self.interval != 0 {
            return None;
        }
        if let Some(c) = self.count
            && ((year - first) / self.interval) as u32 >= c
        {
            return None;
        }
        let m = self.month.unwrap_or(o.start.month());
        let date = match &self.day {
            DaySpec::Same => NaiveDate::from_ymd_opt(year, m, o.start.day())?,
            DaySpec::MonthDay(d) => month_day(year, m, *d)?,
            DaySpec::Nth(wd, n) => {
                let len = month_days(year, m)?;
                let mut matching = (1..=len)
                    .filter_map(|d| NaiveDate::from_ymd_opt(year, m, d))
                    .filter(|d| d.weekday() == *wd);
                if *n > 0 {
                    matching.nth(*n as usize - 1)?
                } else {
                    let all: Vec<NaiveDate> = matching.collect();
                    *all.get(all.len().checked_sub(n.unsigned_abs() as usize)?)?
                }
            }
            DaySpec::WeekdayIn(wd, days) => {
                let mut found: Vec<NaiveDate> = days
                    .iter()
                    .filter_map(|d| month_day(year, m, *d))
                    .filter(|d| d.weekday() == *wd)
                    .collect();
                found.sort();
                *found.first()?
            }
        };
        let at = date.and_time(o.start.time());
        if at < o.start {
            return None;
        }
        match self.until {
            Some(Until::Utc(u)) if at - Duration::seconds(o.from.into()) > u => None,
            Some(Until::Local(u)) if at > u => None,
            _ => Some(at),
        }
    }

    /// The last year the rule can have an onset in.
    fn last_year(&self, o: &Observance) -> i32 {
        let mut last = i32::MAX;
        if let Some(c) = self.count {
            let n = i32::try_from(c.saturating_sub(1)).unwrap_or(i32::MAX / 2);
            last = last.min(
                o.start
                    .year()
                    .saturating_add(n.saturating_mul(self.interval)),
            );
        }
        match self.until {
            Some(Until::Utc(u)) | Some(Until::Local(u)) => last.min(u.year() + 1),
            None => last,
        }
    }
}

impl Observance {
    /// An observance from its DTSTART (wall-clock), TZOFFSETFROM, TZOFFSETTO, RRULE and RDATEs.
    /// `None` when the RRULE is not one this reader understands.
    pub fn new(
        start: NaiveDateTime,
        from: i32,
        to: i32,
        rrule: Option<&str>,
        rdates: Vec<NaiveDateTime>,
    ) -> Option<Observance> {
        let yearly = match rrule {
            None => None,
            Some(r) => Some(Yearly::parse(r, |v| {
                let utc = v.ends_with('Z');
                let v = v.trim_end_matches('Z');
                let t = NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
                    .ok()
                    .or_else(|| {
                        NaiveDate::parse_from_str(v, "%Y%m%d")
                            .ok()
                            .and_then(|d| d.and_hms_opt(23, 59, 59))
                    })?;
                Some(if utc { Until::Utc(t) } else { Until::Local(t) })
            })?),
        };
        Some(Observance {
            start,
            from,
            to,
            yearly,
            rdates,
        })
    }

    /// The latest onset at or before `utc` (as an instant), if any.
    fn latest_onset(&self, utc: NaiveDateTime) -> Option<NaiveDateTime> {
        let as_utc = |local: NaiveDateTime| local - Duration::seconds(self.from.into());
        let mut best: Option<NaiveDateTime> = None;
        let mut take = |t: NaiveDateTime| {
            if t <= utc && best.is_none_or(|b| t > b) {
                best = Some(t);
            }
        };
        take(as_utc(self.start));
        for r in &self.rdates {
            take(as_utc(*r));
        }
        if let Some(y) = &self.yearly {
            let top = (utc.year() + 1).min(y.last_year(self));
            for year in (top - y.interval - 1..=top).rev() {
                if let Some(at) = y.onset(self, year) {
                    take(as_utc(at));
                }
            }
        }
        best
    }
}

impl Rules {
    /// A zone named `tzid` from its observances; `None` without any.
    pub fn new(tzid: &str, observances: Vec<Observance>) -> Option<Rules> {
        if observances.is_empty() {
            return None;
        }
        Some(Rules {
            tzid: tzid.to_string(),
            observances,
        })
    }

    /// Seconds east of UTC in force at instant `utc`.
    pub fn offset_at(&self, utc: NaiveDateTime) -> i32 {
        let mut best: Option<(NaiveDateTime, i32)> = None;
        for o in &self.observances {
            if let Some(t) = o.latest_onset(utc)
                && best.is_none_or(|(b, _)| t > b)
            {
                best = Some((t, o.to));
            }
        }
        match best {
            Some((_, off)) => off,
            // Before the first onset: what was in force before it.
            None => self
                .observances
                .iter()
                .min_by_key(|o| o.start)
                .map_or(0, |o| o.from),
        }
    }

    /// The instant (as naive UTC) of wall-clock time `local`.
    pub fn to_utc(&self, local: NaiveDateTime) -> NaiveDateTime {
        let mut offsets: Vec<i32> = self
            .observances
            .iter()
            .flat_map(|o| [o.to, o.from])
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        // The earliest instant whose offset gives this wall-clock time (the larger offset).
        for off in offsets.iter().rev() {
            let t = local - Duration::seconds((*off).into());
            if self.offset_at(t) == *off {
                return t;
            }
        }
        // In a gap: the offset in force before it.
        let before = self.offset_at(local - Duration::days(1));
        local - Duration::seconds(before.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S").unwrap()
    }

    #[test]
    fn windows_names_map_to_their_cldr_iana_zones() {
        assert_eq!(
            windows("W. Europe Standard Time"),
            Some(chrono_tz::Europe::Berlin)
        );
        assert_eq!(
            windows("Pacific Standard Time"),
            Some(chrono_tz::America::Los_Angeles)
        );
        assert_eq!(
            named("\"Romance Standard Time\""),
            Some(chrono_tz::Europe::Paris)
        );
        // CLDR names some zones by their older IANA names (links with the same rules).
        assert_eq!(
            named("India Standard Time"),
            Some(chrono_tz::Asia::Calcutta)
        );
        assert_eq!(named("Mars Standard Time"), None);
        // IANA names and vendor prefixes.
        assert_eq!(named("Europe/Berlin"), Some(chrono_tz::Europe::Berlin));
        assert_eq!(
            named("/mozilla.org/20070129_1/America/New_York"),
            Some(chrono_tz::America::New_York)
        );
        assert_eq!(
            named("/softwarestudio.org/Olson_20011030_5/America/Argentina/Buenos_Aires"),
            Some(chrono_tz::America::Argentina::Buenos_Aires)
        );
        assert_eq!(named("tzone://Microsoft/Utc"), Some(chrono_tz::UTC));
    }

    /// An Outlook-style custom zone: CET/CEST with the EU rules, from 1601.
    fn cet() -> Rules {
        let std = Observance::new(
            at("16010101T030000"),
            7200,
            3600,
            Some("FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10"),
            vec![],
        )
        .unwrap();
        let dst = Observance::new(
            at("16010101T020000"),
            3600,
            7200,
            Some("FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3"),
            vec![],
        )
        .unwrap();
        Rules::new("Customized Time Zone", vec![std, dst]).unwrap()
    }

    #[test]
    fn a_custom_zone_follows_its_yearly_rules_like_the_iana_zone_it_copies() {
        let z = Zone::Custom(Arc::new(cet()));
        let berlin = Zone::Tz(chrono_tz::Europe::Berlin);
        for local in [
            "20261102T090000",
            "20260715T090000",
            "20260329T013000",
            "20260329T030000",
            "20261025T013000",
            "20261025T033000",
            "20270101T000000",
            "20300331T120000",
        ] {
            assert_eq!(z.to_utc(at(local)), berlin.to_utc(at(local)), "{local}");
        }
        // The gap (02:30 on the last Sunday of March) is the instant after it; the repeated
        // hour (02:30 on the last Sunday of October) the earlier instant.
        assert_eq!(
            z.to_utc(at("20260329T023000")),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap()
        );
        assert_eq!(
            z.to_utc(at("20261025T023000")),
            Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap()
        );
        assert_eq!(
            z.to_local(Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 0).unwrap()),
            at("20260701T120000")
        );
    }

    #[test]
    fn observances_with_until_rdates_and_month_day_sets_are_read() {
        // US rules before 2007 (first Sunday of April / last of October), then since 2007
        // (second Sunday of March, written as BYMONTHDAY=8..14 / first Sunday of November).
        let mk = |s, f, t, r| Observance::new(at(s), f, t, Some(r), vec![]).unwrap();
        let z = Rules::new(
            "US-Eastern",
            vec![
                mk(
                    "19670430T020000",
                    -18000,
                    -14400,
                    "FREQ=YEARLY;BYMONTH=4;BYDAY=1SU;UNTIL=20060402T070000Z",
                ),
                mk(
                    "19671029T020000",
                    -14400,
                    -18000,
                    "FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU;UNTIL=20061029T060000Z",
                ),
                mk(
                    "20070311T020000",
                    -18000,
                    -14400,
                    "FREQ=YEARLY;BYMONTH=3;BYDAY=SU;BYMONTHDAY=8,9,10,11,12,13,14",
                ),
                mk(
                    "20071104T020000",
                    -14400,
                    -18000,
                    "FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
                ),
            ],
        )
        .unwrap();
        let ny = Zone::Tz(chrono_tz::America::New_York);
        let z = Zone::Custom(Arc::new(z));
        for local in [
            "20050405T120000",
            "20050320T120000",
            "20261102T090000",
            "20261030T090000",
            "20270312T090000",
            "20270316T090000",
        ] {
            assert_eq!(z.to_utc(at(local)), ny.to_utc(at(local)), "{local}");
        }
        // A zone of fixed onsets only (RDATE).
        let fixed = Rules::new(
            "fixed",
            vec![
                Observance::new(at("19700101T000000"), 0, 3600, None, vec![]).unwrap(),
                Observance::new(
                    at("20260601T000000"),
                    3600,
                    7200,
                    None,
                    vec![at("20260601T000000")],
                )
                .unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(fixed.offset_at(at("20260101T000000")), 3600);
        assert_eq!(fixed.offset_at(at("20260701T000000")), 7200);
        assert_eq!(fixed.offset_at(at("19600101T000000")), 0);
    }

    #[test]
    fn offsets_rules_and_names_outside_what_is_understood_are_refused() {
        assert_eq!(utc_offset("+0100"), Some(3600));
        assert_eq!(utc_offset("-0530"), Some(-19800));
        assert_eq!(utc_offset("0200"), Some(7200));
        assert_eq!(utc_offset("+01:00"), Some(3600));
        assert_eq!(utc_offset("+013045"), Some(5445));
        assert_eq!(utc_offset("1"), None);
        assert_eq!(utc_offset("+2500"), None);
        assert_eq!(utc_offset(""), None);
        let start = at("16010101T020000");
        assert!(Observance::new(start, 0, 0, Some("FREQ=MONTHLY;BYDAY=1SU"), vec![]).is_none());
        assert!(Observance::new(start, 0, 0, Some("BYMONTH=3;BYDAY=1SU"), vec![]).is_none());
        assert!(Observance::new(start, 0, 0, Some("FREQ=YEARLY;BYDAY=MO,TU"), vec![]).is_none());
        assert!(Rules::new("empty", vec![]).is_none());
    }
}

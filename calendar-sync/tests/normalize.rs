//! Real-world shaped payloads from both providers, normalised.

use chrono::{TimeZone, Utc};
use meetbot_calendar_sync::normalize::{NormalizedEvent, Response, parse_payload};
use meetbot_calendar_sync::rules::{AutoJoinRules, JoinMode};
use meetbot_core::model::{CalendarProvider, MeetingStatus, Platform};
use proptest::prelude::*;

const GOOGLE: &str = include_str!("fixtures/google_events.json");
const GRAPH: &str = include_str!("fixtures/graph_calendarview_delta.json");

fn by_id<'a>(evs: &'a [NormalizedEvent], id: &str) -> &'a NormalizedEvent {
    evs.iter()
        .find(|e| e.instance_id == id)
        .unwrap_or_else(|| panic!("{id} missing"))
}

#[test]
fn google_list_normalises_every_shape_of_event() {
    let evs = parse_payload(CalendarProvider::Google, GOOGLE.as_bytes()).unwrap();
    assert_eq!(evs.len(), 7);

    let moved = by_id(&evs, "7cbh8rpc10lrc0ckih9tafss99_20261130T150000Z");
    assert_eq!(
        moved.series_id.as_deref(),
        Some("7cbh8rpc10lrc0ckih9tafss99")
    );
    assert_eq!(
        moved.starts_at,
        Some(Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap()),
        "the moved time, not the original"
    );
    assert_eq!(moved.link.as_ref().unwrap().platform, Platform::GoogleMeet);
    assert_eq!(moved.self_response, Response::Accepted);
    assert_eq!(moved.attendees.len(), 4);
    assert!(moved.attendees.iter().any(|a| a.resource));

    let cancelled = by_id(&evs, "7cbh8rpc10lrc0ckih9tafss99_20261207T150000Z");
    assert_eq!(cancelled.status, MeetingStatus::Cancelled);
    assert!(cancelled.removed);
    assert_eq!(
        cancelled.starts_at,
        Some(Utc.with_ymd_and_hms(2026, 12, 7, 15, 0, 0).unwrap()),
        "from originalStartTime"
    );

    let all_day = by_id(&evs, "allday0001");
    assert!(all_day.all_day);
    assert_eq!(
        all_day.starts_at,
        Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap())
    );

    assert_eq!(
        by_id(&evs, "declined0001").self_response,
        Response::Declined
    );

    let tentative = by_id(&evs, "tentative0001");
    assert_eq!(tentative.status, MeetingStatus::Tentative);
    assert_eq!(
        tentative.link.as_ref().unwrap().platform,
        Platform::Zoom,
        "Zoom link in the location"
    );
    assert_eq!(
        tentative.starts_at,
        Some(Utc.with_ymd_and_hms(2026, 12, 3, 15, 0, 0).unwrap())
    );

    assert_eq!(
        by_id(&evs, "nolink0001").link,
        None,
        "an intranet link in the description is not a meeting"
    );

    let dst = by_id(&evs, "dst0001");
    assert_eq!(
        dst.starts_at,
        Some(Utc.with_ymd_and_hms(2027, 3, 14, 13, 0, 0).unwrap()),
        "09:00 EDT on the first DST day"
    );
    let webex = dst.link.as_ref().unwrap();
    assert_eq!(
        (webex.platform, webex.url.as_str()),
        (Platform::Webex, "https://acme.webex.com/meet/okafor"),
        "Google redirect unwrapped"
    );
}

#[test]
fn graph_delta_page_normalises_every_shape_of_event() {
    let evs = parse_payload(CalendarProvider::Microsoft, GRAPH.as_bytes()).unwrap();
    assert_eq!(evs.len(), 10);

    let occ = by_id(&evs, "AAMkAGI2TGuLAAA=occ1");
    assert_eq!(occ.series_id.as_deref(), Some("AAMkAGI2TGuLAAA="));
    assert_eq!(occ.link.as_ref().unwrap().platform, Platform::Teams);
    assert_eq!(
        occ.organizer_email.as_deref(),
        Some("anna.kowalski@lawfirm.example"),
        "addresses are lower-cased"
    );
    assert_eq!(occ.self_response, Response::Accepted);

    let exc = by_id(&evs, "AAMkAGI2TGuLAAA=exc1");
    assert_eq!(
        exc.starts_at,
        Some(Utc.with_ymd_and_hms(2026, 12, 7, 16, 0, 0).unwrap())
    );
    assert_eq!(exc.series_id.as_deref(), Some("AAMkAGI2TGuLAAA="));

    let removed = by_id(&evs, "AAMkAGI2TGuLAAA=occ2");
    assert!(removed.removed);
    assert_eq!(removed.status, MeetingStatus::Cancelled);
    assert_eq!(removed.starts_at, None);

    assert!(by_id(&evs, "AAMkAllDay").all_day);
    assert_eq!(
        by_id(&evs, "AAMkDeclined").self_response,
        Response::Declined
    );
    assert_eq!(
        by_id(&evs, "AAMkDeclined").link.as_ref().unwrap().platform,
        Platform::Teams,
        "short teams.microsoft.com/meet link"
    );

    let html = by_id(&evs, "AAMkHtmlOnly");
    let l = html.link.as_ref().unwrap();
    assert_eq!(
        l.platform,
        Platform::Teams,
        "Teams link only in the HTML body, behind a safelink"
    );
    assert!(
        l.url.starts_with(
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_ZmY0%40thread.v2/0"
        ),
        "{}",
        l.url
    );
    assert_eq!(html.status, MeetingStatus::Tentative);

    assert_eq!(
        by_id(&evs, "AAMkZoomLoc").link.as_ref().unwrap().platform,
        Platform::Zoom
    );
    assert_eq!(by_id(&evs, "AAMkNoLink").link, None);
    assert_eq!(
        by_id(&evs, "AAMkDst").starts_at,
        Some(Utc.with_ymd_and_hms(2027, 3, 14, 13, 0, 0).unwrap()),
        "America/New_York resolved with DST"
    );
    assert_eq!(
        by_id(&evs, "AAMkCancelled").status,
        MeetingStatus::Cancelled
    );
}

#[test]
fn auto_join_rules_decide_with_a_reason() {
    let g = parse_payload(CalendarProvider::Google, GOOGLE.as_bytes()).unwrap();
    let m = parse_payload(CalendarProvider::Microsoft, GRAPH.as_bytes()).unwrap();
    let me = "dr.okafor@clinic.example";
    let all = AutoJoinRules::default();
    assert!(
        all.decide(by_id(&g, "7cbh8rpc10lrc0ckih9tafss99_20261130T150000Z"), me)
            .join
    );
    assert_eq!(
        all.decide(by_id(&g, "7cbh8rpc10lrc0ckih9tafss99_20261207T150000Z"), me)
            .reason,
        "cancelled"
    );
    assert_eq!(
        all.decide(by_id(&g, "nolink0001"), me).reason,
        "no meeting link"
    );
    assert_eq!(
        all.decide(by_id(&g, "declined0001"), me).reason,
        "you declined"
    );
    assert_eq!(
        all.decide(by_id(&m, "AAMkAllDay"), "anna.kowalski@lawfirm.example")
            .reason,
        "no meeting link"
    );

    let mine = AutoJoinRules {
        mode: JoinMode::OrganizedByMe,
        ..Default::default()
    };
    assert!(mine.decide(by_id(&g, "dst0001"), me).join);
    assert_eq!(
        mine.decide(by_id(&g, "tentative0001"), me).reason,
        "you do not organise it"
    );

    let external = AutoJoinRules {
        mode: JoinMode::WithExternalAttendees,
        ..Default::default()
    };
    assert!(
        external
            .decide(by_id(&g, "7cbh8rpc10lrc0ckih9tafss99_20261130T150000Z"), me)
            .join,
        "partner-hospital attendee"
    );
    let internal_too = AutoJoinRules {
        internal_domains: vec!["partner-hospital.example".into()],
        ..external.clone()
    };
    assert_eq!(
        internal_too
            .decide(by_id(&g, "7cbh8rpc10lrc0ckih9tafss99_20261130T150000Z"), me)
            .reason,
        "no external attendees",
        "rooms are not attendees and listed domains are internal"
    );

    let accepted = AutoJoinRules {
        mode: JoinMode::AcceptedOnly,
        ..Default::default()
    };
    assert_eq!(
        accepted.decide(by_id(&g, "tentative0001"), me).reason,
        "you have not accepted"
    );
    assert!(
        accepted.decide(by_id(&g, "dst0001"), me).join,
        "the organiser counts as accepted"
    );

    let kw = AutoJoinRules {
        include_keywords: vec!["board".into()],
        exclude_keywords: vec!["moved".into()],
        ..Default::default()
    };
    assert!(
        kw.decide(by_id(&g, "7cbh8rpc10lrc0ckih9tafss99_20261130T150000Z"), me)
            .reason
            .contains("excluded keyword")
    );
    assert_eq!(
        kw.decide(by_id(&g, "dst0001"), me).reason,
        "title contains none of the included keywords"
    );
}

#[test]
fn malformed_payloads_are_clear_errors() {
    let err = |p, s: &str| parse_payload(p, s.as_bytes()).unwrap_err().to_string();
    assert!(err(CalendarProvider::Google, "{").starts_with("not JSON"));
    assert!(err(CalendarProvider::Google, "[]").contains("neither an event"));
    assert!(err(CalendarProvider::Microsoft, "{\"value\": 3}").contains("`value` is not an array"));
    let e = err(
        CalendarProvider::Google,
        r#"{"id":"e1","start":{"dateTime":"tomorrow"}}"#,
    );
    assert!(
        e.contains("event e1") && e.contains("start") && e.contains("tomorrow"),
        "{e}"
    );
    let e = err(
        CalendarProvider::Microsoft,
        r#"{"id":"e2","start":{"dateTime":"2026-12-01T10:00:00","timeZone":"Mars Standard Time"}}"#,
    );
    assert!(
        e.contains("unknown time zone \"Mars Standard Time\""),
        "{e}"
    );
    let e = err(
        CalendarProvider::Google,
        r#"{"id":"e3","status":"confirmed"}"#,
    );
    assert!(e.contains("event e3: field start: missing"), "{e}");
}

/// Graph as its documentation shows it with `Prefer: outlook.timezone="Pacific Standard Time"`
/// (GET /me/events, /me/calendarView): Windows zone names in `start`/`end.timeZone`, an
/// occurrence and an all-day event in other Windows zones, an online meeting.
const GRAPH_WINDOWS_ZONES: &str = r#"{
  "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('cd209b0b-3f83-4c35-82d2-d88a61820480')/events",
  "value": [
    {
      "@odata.etag": "W/\"ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ==\"",
      "id": "AAMkAGI1AAAt9AHjAAA=",
      "subject": "Orientation ",
      "bodyPreview": "Dana, this is the time you selected for our orientation.",
      "isAllDay": false,
      "isCancelled": false,
      "type": "singleInstance",
      "showAs": "busy",
      "responseStatus": {"response": "none", "time": "0001-01-01T00:00:00Z"},
      "start": {"dateTime": "2017-04-21T10:00:00.0000000", "timeZone": "Pacific Standard Time"},
      "end": {"dateTime": "2017-04-21T12:00:00.0000000", "timeZone": "Pacific Standard Time"},
      "location": {"displayName": "Assembly Hall"},
      "isOnlineMeeting": true,
      "onlineMeetingProvider": "teamsForBusiness",
      "onlineMeeting": {"joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzIyNzhlMGEt%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf%22%7d"},
      "attendees": [
        {"type": "required", "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
         "emailAddress": {"name": "Samantha Booth", "address": "samanthab@contoso.onmicrosoft.com"}}
      ],
      "organizer": {"emailAddress": {"name": "Dana Swope", "address": "danas@contoso.onmicrosoft.com"}}
    },
    {
      "id": "AAMkAGI1AAAt9AHkAAA=",
      "subject": "Weekly sync",
      "isAllDay": false,
      "type": "occurrence",
      "seriesMasterId": "AAMkAGI1AAAt9AHjBBB=",
      "start": {"dateTime": "2026-03-30T09:00:00.0000000", "timeZone": "W. Europe Standard Time"},
      "end": {"dateTime": "2026-03-30T09:30:00.0000000", "timeZone": "W. Europe Standard Time"},
      "organizer": {"emailAddress": {"name": "Dana Swope", "address": "danas@contoso.onmicrosoft.com"}}
    },
    {
      "id": "AAMkAGI1AAAt9AHlAAA=",
      "subject": "Public holiday",
      "isAllDay": true,
      "type": "singleInstance",
      "start": {"dateTime": "2026-12-25T00:00:00.0000000", "timeZone": "Tokyo Standard Time"},
      "end": {"dateTime": "2026-12-26T00:00:00.0000000", "timeZone": "Tokyo Standard Time"}
    }
  ]
}"#;

#[test]
fn graph_events_with_windows_zone_names_are_placed_at_their_instants() {
    let evs = parse_payload(CalendarProvider::Microsoft, GRAPH_WINDOWS_ZONES.as_bytes()).unwrap();
    assert_eq!(evs.len(), 3);
    // 10:00 Pacific daylight time (UTC-7) on 21 April 2017.
    let o = by_id(&evs, "AAMkAGI1AAAt9AHjAAA=");
    assert_eq!(
        o.starts_at,
        Some(Utc.with_ymd_and_hms(2017, 4, 21, 17, 0, 0).unwrap())
    );
    assert_eq!(
        o.ends_at,
        Some(Utc.with_ymd_and_hms(2017, 4, 21, 19, 0, 0).unwrap())
    );
    assert_eq!(o.time_zone.as_deref(), Some("Pacific Standard Time"));
    assert_eq!(o.platform(), Some(Platform::Teams));
    // The day after Europe's change to summer time: 09:00 CEST is 07:00 UTC.
    let w = by_id(&evs, "AAMkAGI1AAAt9AHkAAA=");
    assert_eq!(
        w.starts_at,
        Some(Utc.with_ymd_and_hms(2026, 3, 30, 7, 0, 0).unwrap())
    );
    assert_eq!(w.series_id.as_deref(), Some("AAMkAGI1AAAt9AHjBBB="));
    let h = by_id(&evs, "AAMkAGI1AAAt9AHlAAA=");
    assert!(h.all_day);
    assert_eq!(
        h.starts_at,
        Some(Utc.with_ymd_and_hms(2026, 12, 24, 15, 0, 0).unwrap())
    );
}

#[test]
fn null_fields_count_as_absent() {
    let g = br#"{"id":"x1","status":"cancelled","start":null,"end":null,"attendees":null,"organizer":null,"originalStartTime":null}"#;
    let e = &parse_payload(CalendarProvider::Google, g).unwrap()[0];
    assert!(e.removed && e.starts_at.is_none());
    let m = br#"{"id":"x2","@removed":{"reason":"deleted"},"start":null,"end":null,"onlineMeeting":null,"body":null}"#;
    let e = &parse_payload(CalendarProvider::Microsoft, m).unwrap()[0];
    assert!(e.removed && e.starts_at.is_none());
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9:+.\\-TZ /@]{0,30}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("2026-12-01T10:00:00Z"),
            Just("2026-12-01T10:00:00.0000000"),
            Just("2026-12-01"),
            Just("America/New_York"),
            Just("https://meet.google.com/abc-defg-hij"),
            Just("<a href=\"https://teams.microsoft.com/l/meetup-join/x\">j</a>"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("id"),
        Just("start"),
        Just("end"),
        Just("dateTime"),
        Just("date"),
        Just("timeZone"),
        Just("status"),
        Just("attendees"),
        Just("organizer"),
        Just("email"),
        Just("conferenceData"),
        Just("entryPoints"),
        Just("uri"),
        Just("entryPointType"),
        Just("items"),
        Just("value"),
        Just("onlineMeeting"),
        Just("joinUrl"),
        Just("body"),
        Just("content"),
        Just("@removed"),
        Just("location"),
        Just("locations"),
        Just("displayName"),
        Just("emailAddress"),
        Just("address"),
        Just("responseStatus"),
        Just("response"),
        Just("isAllDay"),
        Just("originalStartTime"),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn payload_parsers_never_panic_on_arbitrary_json(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = parse_payload(CalendarProvider::Google, &bytes);
        let _ = parse_payload(CalendarProvider::Microsoft, &bytes);
    }

    #[test]
    fn payload_parsers_never_panic_on_corrupted_real_payloads(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        for (fixture, provider) in [(GOOGLE, CalendarProvider::Google), (GRAPH, CalendarProvider::Microsoft)] {
            let mut bytes = fixture.as_bytes().to_vec();
            for (i, b) in &flips {
                let n = bytes.len();
                bytes[i % n] = *b;
            }
            let _ = parse_payload(provider, &bytes);
        }
    }
}

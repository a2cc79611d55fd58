//! ICS feeds as a calendar source, polled from a real HTTP server on loopback: a connected feed
//! becomes sealed meetings (recurring events expanded per occurrence, with their series), an
//! unchanged feed is not fetched again (ETag, 304), a changed feed updates and a removed event is
//! cancelled, and a wrong address or a page that is not a feed is refused at connect time.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{Duration as CDuration, Utc};
use meetbot_calendar_sync::apply::open_meeting;
use meetbot_calendar_sync::graph::GraphClient;
use meetbot_calendar_sync::ics::IcsClient;
use meetbot_calendar_sync::rules::AutoJoinRules;
use meetbot_calendar_sync::worker::SyncWorker;
use meetbot_core::model::MeetingStatus;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Feed {
    body: Arc<Mutex<(String, u32)>>,
    fetches: Arc<Mutex<(u32, u32)>>,
}

async fn serve(State(f): State<Feed>, h: HeaderMap) -> impl IntoResponse {
    let (body, version) = f.body.lock().unwrap().clone();
    let etag = format!("\"v{version}\"");
    let mut c = f.fetches.lock().unwrap();
    if h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        c.1 += 1;
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag)],
            String::new(),
        );
    }
    c.0 += 1;
    (StatusCode::OK, [(header::ETAG, etag)], body)
}

fn ics_time(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn feed(start: chrono::DateTime<Utc>, with_call: bool, standup_title: &str) -> String {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//meetbot test//EN\r\n");
    if with_call {
        s.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:call-1@firm.example\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Client call\r\n\
ORGANIZER:mailto:anna@firm.example\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:client@acme.example\r\n\
LOCATION:https://us02web.zoom.us/j/81234567890?pwd=abc\r\nEND:VEVENT\r\n",
            ics_time(start),
            ics_time(start + CDuration::minutes(30))
        ));
    }
    s.push_str(&format!(
        "BEGIN:VEVENT\r\nUID:standup@firm.example\r\nDTSTART:{}\r\nDURATION:PT15M\r\n\
RRULE:FREQ=DAILY;COUNT=3\r\nSUMMARY:{standup_title}\r\n\
DESCRIPTION:https://meet.google.com/abc-defg-hij\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        ics_time(start + CDuration::hours(2))
    ));
    s
}

#[tokio::test]
async fn an_ics_feed_is_polled_into_meetings_and_follows_changes_and_removals() {
    let c = common::connected(
        meetbot_core::model::CalendarProvider::Google,
        "unused",
        "anna@firm.example",
    )
    .await;
    let start = (Utc::now() + CDuration::hours(3))
        .with_timezone(&Utc)
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc();
    let f = Feed::default();
    *f.body.lock().unwrap() = (feed(start, true, "Standup"), 1);
    let app = axum::Router::new()
        .route("/calendar.ics", axum::routing::get(serve))
        .route(
            "/page",
            axum::routing::get(|| async { "<html>not a calendar</html>" }),
        )
        .with_state(f.clone());
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(app).await;
    let url = format!("http://{addr}/calendar.ics");
    let graph = GraphClient::new(reqwest::Client::new(), "http://127.0.0.1:9/v1.0").unwrap();
    let worker = SyncWorker::new(
        graph,
        c.tenants.clone(),
        AutoJoinRules::default(),
        Default::default(),
        Default::default(),
    )
    .with_ics(IcsClient::new(true).unwrap());

    let (conn, first) = worker
        .connect_ics(&c.tenant, "user-1", "anna@firm.example", &url)
        .await
        .unwrap();
    let conn = conn.id;
    let first = first.unwrap();
    assert_eq!((first.events, first.applied.written), (4, 4), "{first:?}");
    let v = c.tenants.vault(&c.tenant).await.unwrap();
    let meetings = |c: &common::Connected| {
        let (store, t, conn) = (c.store.clone(), c.tenant.clone(), conn.clone());
        async move {
            let mut out = store.list_meetings(&t, None, None).await.unwrap();
            out.retain(|m| m.connection_id.as_deref() == Some(conn.as_str()));
            out.sort_by_key(|m| m.starts_at);
            out
        }
    };
    let ms = meetings(&c).await;
    assert_eq!(ms.len(), 4);
    let call = open_meeting(&v, &ms[0]).unwrap();
    assert_eq!(call.title, "Client call");
    assert!(ms[0].wants_bot, "{:?}", ms[0].join_reason);
    assert_eq!(call.people.attendees[0].email, "client@acme.example");
    for m in &ms[1..] {
        assert_eq!(m.series_id.as_deref(), Some("standup@firm.example"));
        assert_eq!(m.ends_at - m.starts_at, CDuration::minutes(15));
    }
    assert_eq!(ms[2].starts_at - ms[1].starts_at, CDuration::days(1));
    // The feed address is sealed like a token: not in the raw store.
    let raw = meetbot_testsupport::raw_bytes(c._dir.path());
    assert!(!meetbot_testsupport::contains(&raw, url.as_bytes()));

    // Unchanged: the server answers 304 and nothing is written.
    let again = worker.sync(&c.tenant, &conn).await.unwrap().unwrap();
    assert_eq!((again.events, again.applied.written), (0, 0));
    assert_eq!(
        *f.fetches.lock().unwrap(),
        (1, 1),
        "one fetch at connect (the first round), then a 304"
    );

    // The call is removed and the standup renamed: the call is cancelled, the standups change.
    // (Picked up by the worker's polling pass, as `meetbot calendar-sync` runs it.)
    *f.body.lock().unwrap() = (feed(start, false, "Daily standup"), 2);
    assert_eq!(worker.poll().await.unwrap(), 1);
    assert_eq!(*f.fetches.lock().unwrap(), (2, 1));
    let ms = meetings(&c).await;
    assert_eq!(ms[0].status, MeetingStatus::Cancelled);
    assert_eq!(open_meeting(&v, &ms[1]).unwrap().title, "Daily standup");

    // Refused at connect time, nothing stored: plain http without permission, a page that is
    // not a calendar, a server error.
    let strict = SyncWorker::new(
        GraphClient::new(reqwest::Client::new(), "http://127.0.0.1:9/v1.0").unwrap(),
        c.tenants.clone(),
        AutoJoinRules::default(),
        Default::default(),
        Default::default(),
    )
    .with_ics(IcsClient::new(false).unwrap());
    let e = strict
        .connect_ics(&c.tenant, "user-1", "anna@firm.example", &url)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
    let e = worker
        .connect_ics(
            &c.tenant,
            "user-1",
            "anna@firm.example",
            &format!("http://{addr}/page"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not an iCalendar feed"), "{e}");
    let e = worker
        .connect_ics(
            &c.tenant,
            "user-1",
            "anna@firm.example",
            &format!("http://{addr}/missing"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    let conns = c.store.list_connections(&c.tenant).await.unwrap();
    assert_eq!(conns.len(), 2, "the fixture's connection and the feed");
}

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

/// A sync worker for ICS feeds read through `ics`, with default settings and rules (Graph
/// pointed at a closed loopback port: these tests use none).
fn ics_worker(tenants: &Arc<meetbot_store::vault::Tenants>, ics: IcsClient) -> SyncWorker {
    SyncWorker::new(
        GraphClient::new(reqwest::Client::new(), "http://127.0.0.1:9/v1.0").unwrap(),
        tenants.clone(),
        AutoJoinRules::default(),
        Default::default(),
        Default::default(),
    )
    .with_ics(ics)
}

/// 10:00 UTC on the day three hours from now: the feeds' meetings start then.
fn ten_o_clock_in_three_hours() -> chrono::DateTime<Utc> {
    (Utc::now() + CDuration::hours(3))
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc()
}

/// A feed (version 1) with a client call at `start` and a daily standup.
fn standup_feed(start: chrono::DateTime<Utc>) -> Feed {
    let f = Feed::default();
    *f.body.lock().unwrap() = (feed(start, true, "Standup"), 1);
    f
}

/// Anna's tenant, a start three hours ahead at 10:00, her feed (a client call and a daily
/// standup) and the app that serves it at `/calendar.ics`.
async fn anna_and_her_feed() -> (common::Connected, chrono::DateTime<Utc>, Feed, axum::Router) {
    let c = common::connected(
        meetbot_core::model::CalendarProvider::Google,
        "unused",
        "anna@firm.example",
    )
    .await;
    let start = ten_o_clock_in_three_hours();
    let f = standup_feed(start);
    let app = axum::Router::new()
        .route("/calendar.ics", axum::routing::get(serve))
        .with_state(f.clone());
    (c, start, f, app)
}

#[tokio::test]
async fn an_ics_feed_is_polled_into_meetings_and_follows_changes_and_removals() {
    let (c, start, f, app) = anna_and_her_feed().await;
    let app = app.route(
        "/page",
        axum::routing::get(|| async { "<html>not a calendar</html>" }),
    );
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(app).await;
    let url = format!("http://{addr}/calendar.ics");
    // The feed is on 127.0.0.1: named in the egress allow-list (the default refuses it).
    let worker = ics_worker(&c.tenants, IcsClient::new(true, &["127.0.0.1/32"]).unwrap());

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
    let strict = ics_worker(
        &c.tenants,
        IcsClient::new(false, &["127.0.0.1/32"]).unwrap(),
    );
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

/// A feed that was connected on an allowed address, whose name the attacker's DNS then points
/// at 127.0.0.1 (rebinding between polls): the poll is refused, nothing is connected, and the
/// meetings already synced stay as they were (a refused fetch is not an empty feed).
#[tokio::test]
async fn an_ics_feed_whose_name_rebinds_to_loopback_is_refused_at_the_next_poll() {
    use meetbot_testsupport::egress::{CountingListener, ScriptedDns, serve_on};
    let (c, start, f, app) = anna_and_her_feed().await;
    // The feed on 127.0.0.2 (the only allowed address) and the counting listener on 127.0.0.1
    // share a port: only the looked-up address tells them apart.
    let (port, _feed_task, listener) = loop {
        let (addr, task) = serve_on([127, 0, 0, 2], 0, app.clone()).await.unwrap();
        if let Ok(l) = CountingListener::on([127, 0, 0, 1], addr.port()).await {
            break (addr.port(), task, l);
        }
    };
    let dns = ScriptedDns::new(&[&[[127, 0, 0, 2]], &[[127, 0, 0, 1]]]);
    let egress = meetbot_egress::Egress::with_resolver(
        meetbot_egress::AllowList::parse(&["127.0.0.2/32"]).unwrap(),
        IcsClient::limits(),
        dns.clone(),
    )
    .unwrap();
    let worker = ics_worker(&c.tenants, IcsClient::with_egress(true, egress));
    let url = format!("http://calendar.attacker.test:{port}/calendar.ics");
    let conn = worker
        .add_ics(&c.tenant, "user-1", "anna@firm.example", &url)
        .await
        .unwrap()
        .id;
    let first = worker.sync(&c.tenant, &conn).await.unwrap().unwrap();
    assert_eq!(first.events, 4, "{first:?}");
    assert_eq!(
        f.fetches.lock().unwrap().0,
        1,
        "fetched from the checked address"
    );
    // The feed changes; the next poll looks the name up again and gets 127.0.0.1.
    *f.body.lock().unwrap() = (feed(start, false, "Daily standup"), 2);
    let e = worker.sync(&c.tenant, &conn).await.unwrap_err();
    assert!(e.to_string().contains(meetbot_egress::UNAVAILABLE), "{e}");
    assert_eq!(listener.count(), 0, "nothing connected to 127.0.0.1");
    assert_eq!(*f.fetches.lock().unwrap(), (1, 0));
    assert!(dns.lookups() >= 2);
    let ms = c.store.list_meetings(&c.tenant, None, None).await.unwrap();
    assert!(
        ms.iter()
            .filter(|m| m.connection_id.as_deref() == Some(conn.as_str()))
            .all(|m| m.status != MeetingStatus::Cancelled),
        "a refused fetch cancels nothing"
    );
}

/// `n` events repeating every minute from an hour ago, as one feed (each under every per-event
/// cap: 500 occurrences in the window).
fn minutely_bomb(n: usize) -> String {
    let from = ics_time(Utc::now() - CDuration::hours(1));
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n");
    for i in 0..n {
        s.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:bomb-{i:06}\r\nDTSTART:{from}\r\nRRULE:FREQ=MINUTELY\r\nEND:VEVENT\r\n"
        ));
    }
    s.push_str("END:VCALENDAR\r\n");
    s
}

/// Attack: a member of tenant A publishes a feed at the size cap full of minutely rules (and
/// another of many events). Before, it expanded to millions of events in the worker (500 per
/// event) and its memory took down the calendar worker of every tenant. Now each feed is
/// refused at the instance cap, with the reason on its connection; the pass goes on and tenant
/// B's calendar syncs in it; the worker's peak memory grows by a bounded amount.
#[tokio::test]
async fn a_feed_bomb_is_refused_within_bounded_memory_and_another_tenant_syncs_in_the_same_pass() {
    use meetbot_core::model::CalendarProvider;
    use meetbot_testsupport::procstat::{peak_rss, reset_peak_rss, rss};
    let (tenants, store, a, _dir) = common::embedded_tenant("Bomber").await;
    let b = tenants.create("Neighbour").await.unwrap().id;
    let start = ten_o_clock_in_three_hours();
    let max = meetbot_calendar_sync::ics::DEFAULT_MAX_FEED_BYTES;
    let (empty, one) = (
        minutely_bomb(0).len(),
        minutely_bomb(1).len() - minutely_bomb(0).len(),
    );
    let bomb = minutely_bomb((max - empty) / one);
    assert!(
        bomb.len() <= max && bomb.len() > max * 9 / 10,
        "at the size cap"
    );
    let mut many = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n");
    for i in 0..20_000 {
        let at = ics_time(start + CDuration::minutes(i));
        many.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:many-{i}\r\nDTSTART:{at}\r\nSUMMARY:x\r\nEND:VEVENT\r\n"
        ));
    }
    many.push_str("END:VCALENDAR\r\n");
    assert!(many.len() <= max);
    let good = standup_feed(start);
    let (bomb, many): (&'static str, &'static str) = (bomb.leak(), many.leak());
    let app = axum::Router::new()
        .route("/good.ics", axum::routing::get(serve))
        .route("/bomb.ics", axum::routing::get(move || async move { bomb }))
        .route("/many.ics", axum::routing::get(move || async move { many }))
        .with_state(good.clone());
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(app).await;
    let url = |p: &str| format!("http://{addr}/{p}");
    let ics = CalendarProvider::Ics;
    let bomb_conn = common::connection(
        &tenants,
        &a,
        "u-a",
        ics,
        &url("bomb.ics"),
        "a@bomber.example",
    )
    .await;
    let many_conn = common::connection(
        &tenants,
        &a,
        "u-a",
        ics,
        &url("many.ics"),
        "a@bomber.example",
    )
    .await;
    let good_conn = common::connection(
        &tenants,
        &b,
        "u-b",
        ics,
        &url("good.ics"),
        "anna@firm.example",
    )
    .await;
    let worker = ics_worker(&tenants, IcsClient::new(true, &["127.0.0.1/32"]).unwrap());

    let me = std::process::id();
    let before = rss(me);
    reset_peak_rss();
    let synced = worker.poll().await.unwrap();
    let grown = peak_rss(me).saturating_sub(before);
    eprintln!("peak memory growth over the pass: {} MiB", grown >> 20);
    assert_eq!(synced, 1, "the pass went on to the other tenant");
    // The cap: 5,000 events a feed; a few feeds' text and events, never millions of events.
    assert!(grown < 200 << 20, "peak memory grew by {} MiB", grown >> 20);
    let ms = store.list_meetings(&b, None, None).await.unwrap();
    assert_eq!(ms.len(), 4, "tenant B's calendar synced in the same pass");
    assert!(
        store
            .list_meetings(&a, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    for id in [&bomb_conn, &many_conn] {
        let c = store.get_connection(&a, id).await.unwrap().unwrap();
        let err = c
            .last_sync
            .and_then(|l| l.error)
            .expect("the reason is recorded");
        assert!(err.contains("5000 events in the sync window"), "{err}");
        assert!(c.sync_cursor.is_none(), "nothing of a refused feed is kept");
    }
    let g = store.get_connection(&b, &good_conn).await.unwrap().unwrap();
    assert_eq!(g.last_sync.unwrap().error, None);
    // The next pass refuses the bomb again (it is fetched again, not half-applied) and still
    // leaves B alone.
    assert_eq!(worker.poll().await.unwrap(), 1);
}

/// A feed over the configured size (`calendar.ics_max_bytes`) is refused while it is read,
/// with the reason on the connection; nothing of it is applied.
#[tokio::test]
async fn a_feed_over_the_configured_size_is_refused_while_it_is_read() {
    use meetbot_core::model::CalendarProvider;
    let (tenants, store, t, _dir) = common::embedded_tenant("Big").await;
    let big: &'static str = minutely_bomb(100).leak();
    assert!(big.len() > 4096);
    let app = axum::Router::new().route("/big.ics", axum::routing::get(move || async move { big }));
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(app).await;
    let conn = common::connection(
        &tenants,
        &t,
        "u",
        CalendarProvider::Ics,
        &format!("http://{addr}/big.ics"),
        "u@big.example",
    )
    .await;
    let worker = ics_worker(
        &tenants,
        IcsClient::new(true, &["127.0.0.1/32"])
            .unwrap()
            .with_max_bytes(4096),
    );
    assert_eq!(worker.poll().await.unwrap(), 0);
    let c = store.get_connection(&t, &conn).await.unwrap().unwrap();
    let err = c.last_sync.and_then(|l| l.error).unwrap();
    assert!(err.contains("larger than 4096 bytes"), "{err}");
    assert!(
        store
            .list_meetings(&t, None, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A loopback server answering every request with a feed's headers and then one byte of body a
/// second, forever: `accepted` counts its connections, `dripping` those still open.
struct Dripping {
    port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    dripping: Arc<std::sync::atomic::AtomicUsize>,
}

impl Dripping {
    async fn start() -> Dripping {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (accepted, dripping) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, d) = (accepted.clone(), dripping.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let d = d.clone();
                d.fetch_add(1, Ordering::SeqCst);
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut req = [0u8; 2048];
                    let _ = s.read(&mut req).await;
                    let mut out = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/calendar\r\n\
content-length: 1000000\r\n\r\nBEGIN:VCALENDAR\r\n",
                        )
                        .await;
                    // Until the client hangs up (seen at once: its end of the stream closes).
                    while out.is_ok() {
                        tokio::select! {
                            r = s.read(&mut req) => {
                                if !matches!(r, Ok(n) if n > 0) {
                                    break;
                                }
                            }
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                                out = s.write_all(b"X").await;
                                if out.is_ok() {
                                    out = s.flush().await;
                                }
                            }
                        }
                    }
                    d.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Dripping {
            port,
            accepted,
            dripping,
        }
    }
}

/// Attack: a member of tenant A connects a feed that drips a byte a second (and could redirect
/// 5 times doing it). Before, each poll pass fetched every feed of every tenant one after the
/// other, and the egress timeout counted per hop: one such feed held the whole pass (and the
/// push triggers waiting behind it) for minutes, ten of them for hours. Now A's fetch ends at
/// one overall deadline and tenant B's round runs beside it: B is synced while A's server is
/// still dripping.
#[tokio::test]
async fn a_slow_dripping_feed_does_not_hold_another_tenants_sync_and_ends_at_the_overall_deadline()
{
    use meetbot_core::model::CalendarProvider;
    use std::sync::atomic::Ordering;
    let (tenants, store, a, _dir) = common::embedded_tenant("Dripper").await;
    let b = tenants.create("Neighbour").await.unwrap().id;
    let drip = Dripping::start().await;
    let start = ten_o_clock_in_three_hours();
    let good = standup_feed(start);
    // B's feed answers only once A's fetch is under way, so B's round cannot simply have run
    // before A's.
    let accepted = drip.accepted.clone();
    let app = axum::Router::new()
        .route(
            "/good.ics",
            axum::routing::get(move |s: State<Feed>, h: HeaderMap| async move {
                for _ in 0..200 {
                    if accepted.load(Ordering::SeqCst) > 0 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                serve(s, h).await
            }),
        )
        .with_state(good.clone());
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(app).await;
    let ics = CalendarProvider::Ics;
    let slow = format!("http://127.0.0.1:{}/calendar.ics", drip.port);
    let a_conn = common::connection(&tenants, &a, "u-a", ics, &slow, "a@dripper.example").await;
    let b_conn = common::connection(
        &tenants,
        &b,
        "u-b",
        ics,
        &format!("http://{addr}/good.ics"),
        "anna@firm.example",
    )
    .await;
    let egress = meetbot_egress::Egress::new(
        meetbot_egress::AllowList::parse(&["127.0.0.1/32"]).unwrap(),
        meetbot_egress::Limits {
            timeout: std::time::Duration::from_secs(3),
            ..IcsClient::limits()
        },
    )
    .unwrap();
    let worker = ics_worker(&tenants, IcsClient::with_egress(true, egress));

    // Watches the pass: when B's round is recorded, is A's feed still dripping?
    let watch = async {
        for _ in 0..1200 {
            let c = store.get_connection(&b, &b_conn).await.unwrap().unwrap();
            if c.last_sync.is_some() {
                return Some(drip.dripping.load(Ordering::SeqCst));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        None
    };
    let (synced, dripping_when_b_synced) = tokio::join!(worker.poll(), watch);
    assert_eq!(synced.unwrap(), 1, "B's round counted; A's failed");
    assert_eq!(
        dripping_when_b_synced,
        Some(1),
        "B was synced while A's feed was still dripping"
    );
    let bc = store.get_connection(&b, &b_conn).await.unwrap().unwrap();
    assert_eq!(bc.last_sync.unwrap().error, None);
    assert_eq!(store.list_meetings(&b, None, None).await.unwrap().len(), 4);
    // A's fetch ended at the deadline: the error is on its connection, and the worker hung
    // up on the server (which was ready to drip for days).
    let ac = store.get_connection(&a, &a_conn).await.unwrap().unwrap();
    let err = ac
        .last_sync
        .and_then(|l| l.error)
        .expect("A's round failed");
    assert!(err.contains(meetbot_egress::UNAVAILABLE), "{err}");
    for _ in 0..100 {
        if drip.dripping.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        drip.dripping.load(Ordering::SeqCst),
        0,
        "the worker hung up"
    );
    assert_eq!(drip.accepted.load(Ordering::SeqCst), 1);
}

/// Attack: a member sends many `POST /v1/calendars/ics` at once. Before, each request counted
/// the user's connections and then stored one, so all of them passed the per-user cap. Now
/// the count and the insert are one step per user: at most the cap remain, the others are
/// refused with the cap's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_ics_connects_by_one_user_cannot_pass_the_connection_cap() {
    use meetbot_calendar_sync::sync::SyncError;
    let (tenants, store, t, _dir) = common::embedded_tenant("Racer").await;
    let cap = 3;
    let worker = Arc::new(
        SyncWorker::new(
            GraphClient::new(reqwest::Client::new(), "http://127.0.0.1:9/v1.0").unwrap(),
            tenants.clone(),
            AutoJoinRules::default(),
            meetbot_calendar_sync::worker::WorkerSettings {
                max_connections_per_user: cap,
                ..Default::default()
            },
            Default::default(),
        )
        .with_ics(IcsClient::new(true, &["127.0.0.1/32"]).unwrap()),
    );
    let start = Arc::new(tokio::sync::Barrier::new(30));
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (w, t, start) = (worker.clone(), t.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                w.add_ics(
                    &t,
                    "u-racer",
                    "r@racer.example",
                    &format!("http://127.0.0.1:9/feed-{i}.ics"),
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(SyncError::TooManyConnections(n)) => assert_eq!(n, cap),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let stored = store
        .list_connections(&t)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.user_id == "u-racer")
        .count();
    assert_eq!(stored, ok, "every refused request left nothing behind");
    assert!(
        stored <= cap,
        "{stored} connections stored, the cap is {cap}"
    );
    assert!(ok >= 1, "the first requests pass");
}

/// Attack, continued: while a poll pass is held by a slow feed, push notifications (webhook
/// triggers) for other calendars used to wait for the whole pass. Now the pass runs beside
/// them: a trigger sent while tenant A's feed drips is handled before A's fetch ends.
#[tokio::test]
async fn a_slow_feed_in_a_poll_pass_does_not_hold_the_triggers_that_arrive_meanwhile() {
    use meetbot_calendar_sync::worker::Trigger;
    use meetbot_core::model::CalendarProvider;
    use std::sync::atomic::Ordering;
    let (tenants, store, a, _dir) = common::embedded_tenant("Dripper").await;
    let b = tenants.create("Neighbour").await.unwrap().id;
    let drip = Dripping::start().await;
    let start = ten_o_clock_in_three_hours();
    let good = standup_feed(start);
    let app = axum::Router::new()
        .route("/good.ics", axum::routing::get(serve))
        .with_state(good.clone());
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(app).await;
    let ics = CalendarProvider::Ics;
    let slow = format!("http://127.0.0.1:{}/calendar.ics", drip.port);
    common::connection(&tenants, &a, "u-a", ics, &slow, "a@dripper.example").await;
    let egress = meetbot_egress::Egress::new(
        meetbot_egress::AllowList::parse(&["127.0.0.1/32"]).unwrap(),
        meetbot_egress::Limits {
            timeout: std::time::Duration::from_secs(3),
            ..IcsClient::limits()
        },
    )
    .unwrap();
    let worker = ics_worker(&tenants, IcsClient::with_egress(true, egress));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drive = async {
        // The first pass starts at once and is held by A's feed.
        for _ in 0..400 {
            if drip.accepted.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(
            drip.dripping.load(Ordering::SeqCst),
            1,
            "the pass is under way"
        );
        let b_conn = common::connection(
            &tenants,
            &b,
            "u-b",
            ics,
            &format!("http://{addr}/good.ics"),
            "anna@firm.example",
        )
        .await;
        tx.send(Trigger::Sync {
            tenant: b.clone(),
            connection: b_conn.clone(),
        })
        .await
        .unwrap();
        let mut seen = None;
        for _ in 0..1200 {
            let c = store.get_connection(&b, &b_conn).await.unwrap().unwrap();
            if c.last_sync.is_some() {
                seen = Some(drip.dripping.load(Ordering::SeqCst));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        stop_tx.send(()).unwrap();
        seen
    };
    let ((), seen) = tokio::join!(
        worker.run(rx, async move {
            let _ = stop_rx.await;
        }),
        drive
    );
    assert_eq!(
        seen,
        Some(1),
        "the trigger was handled while A's feed still dripped"
    );
    assert_eq!(store.list_meetings(&b, None, None).await.unwrap().len(), 4);
}

/// #23: one event a real feed gets wrong (here an unreadable start) is that event's error, kept
/// on the connection: the rest of the feed is synced, and the event's meeting is not taken for
/// deleted because it could not be read.
#[tokio::test]
async fn an_unreadable_event_is_skipped_and_named_while_the_rest_of_the_feed_syncs() {
    let (c, start, f, app) = anna_and_her_feed().await;
    let (addr, _task) = meetbot_testsupport::serve_on_loopback(app).await;
    let url = format!("http://{addr}/calendar.ics");
    let worker = ics_worker(&c.tenants, IcsClient::new(true, &["127.0.0.1/32"]).unwrap());
    let (conn, first) = worker
        .connect_ics(&c.tenant, "user-1", "anna@firm.example", &url)
        .await
        .unwrap();
    assert_eq!(first.unwrap().applied.written, 4);

    // The exporter now writes the call's start wrongly, and a new meeting is added.
    let good = ics_time(start);
    let body = feed(start, true, "Standup").replacen(
        &format!("DTSTART:{good}"),
        "DTSTART:2026-13-45 25:99",
        1,
    );
    let added = format!(
        "BEGIN:VEVENT\r\nUID:review@firm.example\r\nDTSTART:{}\r\nDURATION:PT30M\r\n\
SUMMARY:Review\r\nLOCATION:https://meet.google.com/xyz-abcd-efg\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        ics_time(start + CDuration::hours(5))
    );
    let body = body.replace("END:VCALENDAR\r\n", &added);
    *f.body.lock().unwrap() = (body, 2);
    let r = worker.sync(&c.tenant, &conn.id).await.unwrap().unwrap();
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert!(
        r.skipped[0].contains("call-1@firm.example"),
        "{:?}",
        r.skipped
    );

    let mut ms = c.store.list_meetings(&c.tenant, None, None).await.unwrap();
    ms.retain(|m| m.connection_id.as_deref() == Some(conn.id.as_str()));
    let v = c.tenants.vault(&c.tenant).await.unwrap();
    let titled = |title: &str| {
        ms.iter()
            .find(|m| open_meeting(&v, m).unwrap().title == title)
            .cloned()
    };
    let call = titled("Client call").expect("the call's meeting is kept");
    assert_eq!(
        call.status,
        MeetingStatus::Confirmed,
        "an unreadable event is not a deleted one"
    );
    assert!(
        titled("Review").is_some(),
        "the rest of the feed was synced"
    );
    let stored = c
        .store
        .get_connection(&c.tenant, &conn.id)
        .await
        .unwrap()
        .unwrap();
    let outcome = stored.last_sync.unwrap();
    assert_eq!(outcome.error, None);
    assert_eq!(
        outcome.skipped, r.skipped,
        "the user can see what was skipped"
    );
}

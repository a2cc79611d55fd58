//! Google Calendar rounds through google-calendar3 against the stand-in of the documented
//! events.list API: paging, syncToken resume, 410 -> full resync, 429 with Retry-After, and a full
//! sync plus incremental changes converging to a fresh full sync.

use chrono::{DateTime, Duration as CDuration, Utc};
use meetbot_calendar_sync::apply::open_meeting;
use meetbot_calendar_sync::google::{GoogleClient, GoogleError};
use meetbot_calendar_sync::rules::AutoJoinRules;
use meetbot_calendar_sync::sync::{Provider, sync_connection};
use meetbot_core::model::*;
use meetbot_testsupport::google::{GoogleStandIn, TOKEN};
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

mod common;

const USER: &str = "dr.okafor@clinic.example";

fn event(id: &str, summary: &str, start: DateTime<Utc>, meet: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "kind": "calendar#event", "id": id, "status": "confirmed", "summary": summary,
        "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
        "end": {"dateTime": (start + CDuration::minutes(30)).to_rfc3339(), "timeZone": "UTC"},
        "organizer": {"email": USER, "self": true},
        "attendees": [{"email": USER, "self": true, "organizer": true, "responseStatus": "accepted"},
                      {"email": "consult@partner-hospital.example", "responseStatus": "needsAction"}]
    });
    if meet {
        v["hangoutLink"] = format!("https://meet.google.com/{id}-abcd-efg").into();
    }
    v
}

fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        Utc::now() - CDuration::days(1),
        Utc::now() + CDuration::days(28),
    )
}

async fn state(
    c: &common::Connected,
) -> BTreeMap<String, (String, DateTime<Utc>, Option<String>, bool)> {
    let v = c.tenants.vault(&c.tenant).await.unwrap();
    let mut out = BTreeMap::new();
    for m in c.store.list_meetings(&c.tenant, None, None).await.unwrap() {
        if m.status != MeetingStatus::Cancelled {
            let o = open_meeting(&v, &m).unwrap();
            out.insert(
                m.event_instance_id.clone(),
                (o.title, m.starts_at, o.join_url, m.wants_bot),
            );
        }
    }
    out
}

#[tokio::test]
async fn a_full_sync_then_incremental_changes_converge_to_a_fresh_full_sync() {
    let g = GoogleStandIn::start().await;
    let mut rng = rand::rng();
    let now = Utc::now();
    for i in 0..25 {
        g.upsert(event(
            &format!("gev{i:03}"),
            &format!("Consult {i}"),
            now + CDuration::minutes(rng.random_range(60..20_000)),
            rng.random_bool(0.7),
        ));
    }
    let client = GoogleClient::new(&g.root_url()).unwrap().with_page_size(6);
    let rules = AutoJoinRules::default();
    let a = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    let first = sync_connection(
        Provider::Google(&client),
        &a.tenants,
        &a.tenant,
        &a.conn,
        None,
        &rules,
        window(),
    )
    .await
    .unwrap();
    assert!(
        first.full && first.pages >= 5 && first.events == 25,
        "{first:?}"
    );
    for change in 0..40 {
        let ids = g.live_ids();
        let pick = ids[rng.random_range(0..ids.len())].clone();
        match rng.random_range(0..4) {
            0 => g.upsert(event(
                &format!("gnew{change:03}"),
                "New consult",
                now + CDuration::minutes(rng.random_range(60..20_000)),
                true,
            )),
            1 => {
                let mut e = g.event(&pick).unwrap();
                e["summary"] = format!("Renamed {change}").into();
                g.upsert(e);
            }
            2 => {
                let start = now + CDuration::minutes(rng.random_range(60..20_000));
                let mut e = g.event(&pick).unwrap();
                e["start"]["dateTime"] = start.to_rfc3339().into();
                e["end"]["dateTime"] = (start + CDuration::minutes(50)).to_rfc3339().into();
                g.upsert(e);
            }
            _ => g.delete(&pick),
        }
        if change % 5 == 4 {
            let r = sync_connection(
                Provider::Google(&client),
                &a.tenants,
                &a.tenant,
                &a.conn,
                None,
                &rules,
                window(),
            )
            .await
            .unwrap();
            assert!(!r.full, "incremental with the stored syncToken");
        }
    }
    let b = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    sync_connection(
        Provider::Google(&client),
        &b.tenants,
        &b.tenant,
        &b.conn,
        None,
        &rules,
        window(),
    )
    .await
    .unwrap();
    let (sa, sb) = (state(&a).await, state(&b).await);
    assert!(sb.len() >= 10, "{}", sb.len());
    assert_eq!(sa, sb);
}

#[tokio::test]
async fn an_expired_sync_token_410_triggers_a_full_resync() {
    let g = GoogleStandIn::start().await;
    let now = Utc::now();
    g.upsert(event("keep", "Kept", now + CDuration::hours(2), true));
    let client = GoogleClient::new(&g.root_url()).unwrap();
    let rules = AutoJoinRules::default();
    let a = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    sync_connection(
        Provider::Google(&client),
        &a.tenants,
        &a.tenant,
        &a.conn,
        None,
        &rules,
        window(),
    )
    .await
    .unwrap();
    g.forget_sync_tokens();
    g.upsert(event(
        "added",
        "Added while expired",
        now + CDuration::hours(3),
        true,
    ));
    let r = sync_connection(
        Provider::Google(&client),
        &a.tenants,
        &a.tenant,
        &a.conn,
        None,
        &rules,
        window(),
    )
    .await
    .unwrap();
    assert!(r.resynced && r.full, "{r:?}");
    assert_eq!(state(&a).await.len(), 2);
    g.delete("keep");
    let r = sync_connection(
        Provider::Google(&client),
        &a.tenants,
        &a.tenant,
        &a.conn,
        None,
        &rules,
        window(),
    )
    .await
    .unwrap();
    assert!(!r.full);
    assert_eq!(
        r.applied.cancelled, 1,
        "a deletion arrives as a cancelled event"
    );
    assert_eq!(state(&a).await.len(), 1);
}

#[tokio::test]
async fn throttling_and_a_bad_token_are_told_apart() {
    let g = GoogleStandIn::start().await;
    let client = GoogleClient::new(&g.root_url()).unwrap();
    let (from, to) = window();
    g.throttle_next(1);
    match client.events_round(TOKEN, None, from, to, 10_000).await {
        Err(GoogleError::Throttled {
            status: 429,
            retry_after,
        }) => assert_eq!(retry_after, Some(Duration::from_secs(1))),
        other => panic!("{other:?}"),
    }
    assert!(
        client
            .events_round(TOKEN, None, from, to, 10_000)
            .await
            .is_ok()
    );
    assert!(matches!(
        client.events_round("expired", None, from, to, 10_000).await,
        Err(GoogleError::Unauthorized)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_watch_channel_pushes_changes_is_replaced_before_expiry_and_stopped_on_disconnect()
{
    use meetbot_calendar_sync::apply::meeting_id;
    use meetbot_calendar_sync::graph::GraphClient;
    use meetbot_calendar_sync::webhook::{WebhookCounters, WebhookState, router};
    use meetbot_calendar_sync::worker::{
        PushOutcome, SubscriptionIndex, SyncWorker, WorkerSettings,
    };
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let g = GoogleStandIn::start().await;
    let c = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    let index: SubscriptionIndex = Default::default();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let counters = Arc::new(WebhookCounters::default());
    let app = router(WebhookState {
        tenants: c.tenants.clone(),
        index: index.clone(),
        triggers: tx,
        counters: counters.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhooks/google", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let settings = WorkerSettings {
        poll_every: Duration::from_secs(3600),
        google_notification_url: Some(hook),
        push_lifetime: CDuration::minutes(10),
        renew_before: CDuration::minutes(15),
        ..Default::default()
    };
    // No Microsoft connection here; the Graph client is never called.
    let graph = GraphClient::new(reqwest::Client::new(), "http://127.0.0.1:9/v1.0").unwrap();
    let worker = Arc::new(
        SyncWorker::new(
            graph,
            c.tenants.clone(),
            AutoJoinRules::default(),
            settings,
            index,
        )
        .with_google(GoogleClient::new(&g.root_url()).unwrap()),
    );
    worker.sync(&c.tenant, &c.conn).await.unwrap();
    assert_eq!(
        worker.ensure_push(&c.tenant, &c.conn, false).await.unwrap(),
        PushOutcome::Created
    );
    let first = g.channels()[0].0.clone();

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let w2 = worker.clone();
    let task = tokio::spawn(async move {
        w2.run(rx, async move {
            let _ = stop_rx.changed().await;
        })
        .await
    });
    // The first poll replaces the channel (ten minutes left, fifteen of margin) and stops the old one.
    let t0 = std::time::Instant::now();
    while g.stopped() < 1 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        g.stopped(),
        1,
        "the old channel was stopped after its replacement opened"
    );
    let channels = g.channels();
    assert_eq!(channels.len(), 1);
    assert_ne!(channels[0].0, first);

    g.upsert(event(
        "pushed",
        "Pushed consult",
        Utc::now() + CDuration::hours(1),
        true,
    ));
    let mid = meeting_id(&c.conn, "pushed");
    while c
        .store
        .get_meeting(&c.tenant, &mid)
        .await
        .unwrap()
        .is_none()
        && t0.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        c.store
            .get_meeting(&c.tenant, &mid)
            .await
            .unwrap()
            .is_some(),
        "the pushed change was synced"
    );
    g.send_forged(&channels[0].0);
    while counters.rejected.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        counters.rejected.load(Ordering::Relaxed),
        1,
        "a wrong channel token is rejected"
    );

    stop_tx.send(true).unwrap();
    task.await.unwrap();
    worker.stop_push(&c.tenant, &c.conn).await.unwrap();
    assert!(g.channels().is_empty(), "disconnect stops the channel");
    assert!(
        c.store
            .get_connection(&c.tenant, &c.conn)
            .await
            .unwrap()
            .unwrap()
            .push
            .is_none()
    );
}

/// A round that may apply at most `max_events` events.
fn capped(max_events: usize) -> meetbot_calendar_sync::sync::RoundLimits {
    meetbot_calendar_sync::sync::RoundLimits {
        max_events,
        ..Default::default()
    }
}

async fn capped_round(
    client: &GoogleClient,
    c: &common::Connected,
    limits: &meetbot_calendar_sync::sync::RoundLimits,
) -> meetbot_calendar_sync::sync::SyncReport {
    tokio::time::timeout(
        Duration::from_secs(30),
        meetbot_calendar_sync::sync::sync_connection_within(
            Provider::Google(client),
            &c.tenants,
            &c.tenant,
            &c.conn,
            None,
            &AutoJoinRules::default(),
            window(),
            limits,
        ),
    )
    .await
    .expect("the round ends")
    .unwrap()
}

async fn cursor_of(c: &common::Connected) -> Option<String> {
    c.store
        .get_connection(&c.tenant, &c.conn)
        .await
        .unwrap()
        .unwrap()
        .sync_cursor
}

#[tokio::test]
async fn a_google_answer_of_endless_pages_is_cut_at_the_per_round_cap_and_the_round_ends() {
    use meetbot_calendar_sync::sync::continues_a_cut_round;
    let g = GoogleStandIn::start().await;
    let now = Utc::now();
    for i in 0..4 {
        g.upsert(event(
            &format!("gev{i}"),
            "Consult",
            now + CDuration::hours(i + 1),
            true,
        ));
    }
    g.endless_pages();
    let client = GoogleClient::new(&g.root_url()).unwrap().with_page_size(6);
    let a = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    // Pages of 6, so at most 3 pages (18 events) within a cap of 20.
    let limits = capped(20);
    for n in 0..3 {
        let before = g.requests();
        let r = capped_round(&client, &a, &limits).await;
        assert!(r.cut && r.pages == 3, "{r:?}");
        assert_eq!(g.requests() - before, 3, "three pages asked for, no more");
        assert_eq!(r.events, if n == 0 { 4 } else { 0 }, "{r:?}");
        assert_eq!(state(&a).await.len(), 4, "each event stored once");
        assert!(continues_a_cut_round(cursor_of(&a).await.as_deref()));
    }
}

#[tokio::test]
async fn a_google_calendar_over_the_per_round_cap_is_read_on_by_the_next_rounds_without_losing_or_duplicating_events()
 {
    use meetbot_calendar_sync::sync::continues_a_cut_round;
    let g = GoogleStandIn::start().await;
    let now = Utc::now();
    for i in 0..50 {
        g.upsert(event(
            &format!("gev{i:03}"),
            &format!("Consult {i}"),
            now + CDuration::minutes(60 + 37 * i),
            i % 3 != 0,
        ));
    }
    let client = GoogleClient::new(&g.root_url()).unwrap().with_page_size(6);
    let a = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    let limits = capped(20);
    let first = capped_round(&client, &a, &limits).await;
    assert!(
        first.full && first.cut && first.pages == 3 && first.events == 18,
        "{first:?}"
    );
    assert_eq!(state(&a).await.len(), 18);
    let cursor = cursor_of(&a).await;
    assert!(continues_a_cut_round(cursor.as_deref()), "{cursor:?}");
    // Added while the listing is half read: it comes with the round after the listing.
    g.upsert(event(
        "late",
        "Late consult",
        now + CDuration::hours(5),
        true,
    ));
    let second = capped_round(&client, &a, &limits).await;
    assert!(second.cut && second.events == 18, "{second:?}");
    assert_eq!(state(&a).await.len(), 36);
    let third = capped_round(&client, &a, &limits).await;
    assert!(
        !third.cut && third.events == 14,
        "the listing ends: {third:?}"
    );
    assert_eq!(state(&a).await.len(), 50, "each event once, none lost");
    assert!(!continues_a_cut_round(cursor_of(&a).await.as_deref()));
    let fourth = capped_round(&client, &a, &limits).await;
    assert!(
        !fourth.full && !fourth.cut && fourth.events == 1,
        "{fourth:?}"
    );
    // Later changes arrive incrementally as before.
    let mut renamed = g.event("gev007").unwrap();
    renamed["summary"] = "Renamed consult".into();
    g.upsert(renamed);
    g.delete("gev011");
    let fifth = capped_round(&client, &a, &limits).await;
    assert!(!fifth.cut && fifth.events == 2, "{fifth:?}");
    // The same as one uncapped full sync of the calendar as it is now.
    let b = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    let fresh = capped_round(&client, &b, &capped(10_000)).await;
    assert!(!fresh.cut, "{fresh:?}");
    let (sa, sb) = (state(&a).await, state(&b).await);
    assert_eq!(sa.len(), 50);
    assert_eq!(sa, sb);
}

#[tokio::test]
async fn a_round_cut_at_the_cap_is_read_on_at_the_next_poll_even_while_push_is_live() {
    use meetbot_calendar_sync::graph::GraphClient;
    use meetbot_calendar_sync::worker::{PushOutcome, SyncWorker, WorkerSettings};
    let g = GoogleStandIn::start().await;
    let now = Utc::now();
    for i in 0..30 {
        g.upsert(event(
            &format!("gev{i:03}"),
            "Consult",
            now + CDuration::minutes(60 + 41 * i),
            true,
        ));
    }
    let c = common::connected(CalendarProvider::Google, TOKEN, USER).await;
    let settings = WorkerSettings {
        poll_every: Duration::from_secs(3600),
        // Nothing listens there: the channel's notifications go nowhere.
        google_notification_url: Some("http://127.0.0.1:9/webhooks/google".into()),
        limits: capped(20),
        ..Default::default()
    };
    // No Microsoft connection here; the Graph client is never called.
    let graph = GraphClient::new(reqwest::Client::new(), "http://127.0.0.1:9/v1.0").unwrap();
    let worker = SyncWorker::new(
        graph,
        c.tenants.clone(),
        AutoJoinRules::default(),
        settings,
        Default::default(),
    )
    .with_google(GoogleClient::new(&g.root_url()).unwrap().with_page_size(6));
    let first = worker.sync(&c.tenant, &c.conn).await.unwrap().unwrap();
    assert!(first.cut && first.events == 18, "{first:?}");
    assert_eq!(
        worker.ensure_push(&c.tenant, &c.conn, false).await.unwrap(),
        PushOutcome::Created
    );
    // Push is live, but no notification will come for what is still unread: the poll reads on.
    assert_eq!(worker.poll().await.unwrap(), 1);
    assert_eq!(state(&c).await.len(), 30);
    // Read to the end: with push live, polling leaves it to the notifications again.
    assert_eq!(worker.poll().await.unwrap(), 0);
}

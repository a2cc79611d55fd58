//! Push path for Microsoft calendars against the Graph stand-in: subscription with webhook
//! validation, notifications -> sync -> scheduler within seconds, forged notifications rejected,
//! renewal before expiry, lifecycle events, and polling with Retry-After when push is absent.

use chrono::{DateTime, Duration as CDuration, Utc};
use meetbot_calendar_sync::apply::meeting_id;
use meetbot_calendar_sync::graph::GraphClient;
use meetbot_calendar_sync::rules::AutoJoinRules;
use meetbot_calendar_sync::webhook::{WebhookCounters, WebhookState, router};
use meetbot_calendar_sync::worker::{
    PushOutcome, SubscriptionIndex, SyncWorker, Trigger, WorkerSettings,
};
use meetbot_core::TenantId;
use meetbot_core::model::*;
use meetbot_queue::{InProcessQueue, JobQueue};
use meetbot_scheduler::gate::{Claim, claim};
use meetbot_scheduler::{Scheduler, SchedulerSettings};
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use meetbot_testsupport::graph::{GraphStandIn, TOKEN};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod common;

const USER: &str = "anna@lawfirm.example";

fn fmt(t: DateTime<Utc>) -> String {
    format!("{}0", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

fn event(id: &str, start: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": "singleInstance", "subject": "Client call", "isCancelled": false,
        "responseStatus": {"response": "organizer"},
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(start + CDuration::minutes(30)), "timeZone": "UTC"},
        "organizer": {"emailAddress": {"address": USER}},
        "onlineMeeting": {"joinUrl": format!("https://teams.microsoft.com/l/meetup-join/19%3ameeting_{id}%40thread.v2/0")}
    })
}

struct World {
    g: GraphStandIn,
    tenants: Arc<Tenants>,
    store: Arc<dyn Store>,
    tenant: TenantId,
    conn: String,
    worker: Arc<SyncWorker>,
    counters: Arc<WebhookCounters>,
    triggers: Option<mpsc::Receiver<Trigger>>,
    hook: String,
    _dir: tempfile::TempDir,
}

async fn world(push: bool, settings: impl FnOnce(&mut WorkerSettings)) -> World {
    let g = GraphStandIn::start().await;
    let c = common::connected(CalendarProvider::Microsoft, TOKEN, USER).await;
    let (tenants, store, tenant, id, dir) = (c.tenants, c.store, c.tenant, c.conn, c._dir);
    let index: SubscriptionIndex = Default::default();
    let (tx, rx) = mpsc::channel(64);
    let counters = Arc::new(WebhookCounters::default());
    let app = router(WebhookState {
        tenants: tenants.clone(),
        index: index.clone(),
        triggers: tx,
        counters: counters.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut s = WorkerSettings {
        poll_every: Duration::from_secs(3600),
        ..Default::default()
    };
    if push {
        s.notification_url = Some(format!("{hook}/webhooks/microsoft"));
        s.lifecycle_url = Some(format!("{hook}/webhooks/microsoft/lifecycle"));
    }
    settings(&mut s);
    let graph = GraphClient::new(reqwest::Client::new(), &g.base_url()).unwrap();
    let worker = Arc::new(SyncWorker::new(
        graph,
        tenants.clone(),
        AutoJoinRules::default(),
        s,
        index,
    ));
    World {
        g,
        tenants,
        store,
        tenant,
        conn: id,
        worker,
        counters,
        triggers: Some(rx),
        hook,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_notification_reaches_the_scheduler_within_seconds() {
    let mut w = world(true, |_| {}).await;
    w.worker.sync(&w.tenant, &w.conn).await.unwrap();
    assert_eq!(
        w.worker
            .ensure_push(&w.tenant, &w.conn, false)
            .await
            .unwrap(),
        PushOutcome::Created
    );
    assert_eq!(
        w.g.subscriptions().len(),
        1,
        "the stand-in validated the webhook and created the subscription"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = w.worker.clone();
    let rx = w.triggers.take().unwrap();
    let mut stop = stop_rx.clone();
    let worker_task = tokio::spawn(async move {
        worker
            .run(rx, async move {
                let _ = stop.changed().await;
            })
            .await
    });
    let queue = InProcessQueue::new(5);
    let q: Arc<dyn JobQueue> = Arc::new(queue.clone());
    let sched = Scheduler::new(
        w.store.clone(),
        q.clone(),
        SchedulerSettings {
            lead: Duration::ZERO,
            grace: Duration::from_secs(600),
            tick: Duration::from_millis(100),
            lease: Duration::from_secs(5),
            replica: "r".into(),
        },
    );
    let mut stop = stop_rx.clone();
    let sched_task = tokio::spawn(async move {
        sched
            .run(async move {
                let _ = stop.changed().await;
            })
            .await
    });

    let t0 = Instant::now();
    w.g.upsert(event("pushed", Utc::now() + CDuration::seconds(1)));
    let mid = meeting_id(&w.conn, "pushed");
    let mut stored_after = None;
    while t0.elapsed() < Duration::from_secs(15) {
        if stored_after.is_none()
            && w.store
                .get_meeting(&w.tenant, &mid)
                .await
                .unwrap()
                .is_some()
        {
            stored_after = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored_after = stored_after.expect("the pushed event reached the store");
    let mut jobs = q.consume_jobs().await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(15), jobs.next())
        .await
        .expect("a bot job was dispatched")
        .unwrap();
    assert_eq!(d.job.meeting_id, mid);
    assert!(matches!(
        claim(w.store.as_ref(), &d.job).await.unwrap(),
        Claim::Launch(_)
    ));
    eprintln!(
        "push -> stored meeting: {} ms; push -> dispatched job: {} ms",
        stored_after.as_millis(),
        t0.elapsed().as_millis()
    );
    assert!(w.counters.accepted.load(Ordering::Relaxed) >= 1);
    stop_tx.send(true).unwrap();
    worker_task.await.unwrap();
    sched_task.await.unwrap();
}

/// Attack: a link to the webhook with `validationToken=<html><script>...` is echoed back; a
/// browser that sniffs the type renders it as a page of ours. The echo is text/plain with
/// `nosniff` (and a sandboxing CSP), and bounded in size.
#[tokio::test]
async fn a_validation_token_holding_html_is_echoed_only_as_unsniffable_bounded_text() {
    let w = world(true, |_| {}).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/webhooks/microsoft/lifecycle?validationToken=%3Chtml%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            w.hook
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(r.text().await.unwrap(), "<html><script>alert(1)</script>");
    let long = "a".repeat(meetbot_calendar_sync::webhook::MAX_VALIDATION_TOKEN + 1);
    let r = http
        .post(format!(
            "{}/webhooks/microsoft?validationToken={long}",
            w.hook
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(!r.text().await.unwrap().contains(&long));
}

#[tokio::test]
async fn the_webhook_echoes_validation_tokens_and_drops_forged_or_malformed_notifications() {
    let w = world(true, |_| {}).await;
    w.worker
        .ensure_push(&w.tenant, &w.conn, false)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/webhooks/microsoft?validationToken=abc%20123",
            w.hook
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "abc 123");
    let r = http
        .post(format!("{}/webhooks/microsoft", w.hook))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let sub = w.g.subscriptions()[0].0.clone();
    let before = w.g.requests();
    w.g.send_forged(&sub);
    let r = http
        .post(format!("{}/webhooks/microsoft", w.hook))
        .json(
            &serde_json::json!({"value": [{"subscriptionId": "unknown-sub", "clientState": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let t0 = Instant::now();
    while w.counters.rejected.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        w.counters.rejected.load(Ordering::Relaxed),
        1,
        "the forged clientState was rejected"
    );
    assert_eq!(w.counters.unknown.load(Ordering::Relaxed), 1);
    assert_eq!(w.counters.accepted.load(Ordering::Relaxed), 0);
    assert_eq!(w.g.requests(), before, "no sync was triggered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_renewed_before_expiry_and_recreated_after_lifecycle_events() {
    let mut w = world(true, |s| {
        s.push_lifetime = CDuration::minutes(10);
        s.renew_before = CDuration::minutes(15);
    })
    .await;
    assert_eq!(
        w.worker
            .ensure_push(&w.tenant, &w.conn, false)
            .await
            .unwrap(),
        PushOutcome::Created
    );
    // Ten minutes left, fifteen is the margin: renewed now.
    assert_eq!(
        w.worker
            .ensure_push(&w.tenant, &w.conn, false)
            .await
            .unwrap(),
        PushOutcome::Renewed
    );
    assert_eq!(w.g.renewals(), 1);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let worker = w.worker.clone();
    let rx = w.triggers.take().unwrap();
    let task = tokio::spawn(async move {
        worker
            .run(rx, async move {
                let _ = stop_rx.changed().await;
            })
            .await
    });
    let first = w.g.subscriptions()[0].0.clone();
    // The worker's first poll runs at once and renews too (ten minutes left, fifteen of margin).
    let t0 = Instant::now();
    while w.g.renewals() < 2 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        w.g.renewals(),
        2,
        "the poll renewed the subscription due for renewal"
    );
    w.g.send_lifecycle(&first, "reauthorizationRequired");
    while w.g.renewals() < 3 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        w.g.renewals(),
        3,
        "reauthorizationRequired renewed the subscription"
    );
    w.g.send_lifecycle(&first, "subscriptionRemoved");
    // Between the old one's deletion and the new one's creation the list is empty: wait for the
    // new one, not merely for the old one to be gone.
    while !(w.g.subscriptions().len() == 1 && w.g.subscriptions()[0].0 != first)
        && t0.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let subs = w.g.subscriptions();
    assert_eq!(subs.len(), 1);
    assert_ne!(
        subs[0].0, first,
        "a new subscription replaced the removed one"
    );
    // The worker stores the connection right after the provider confirmed the subscription.
    let stored = || async {
        w.store
            .get_connection(&w.tenant, &w.conn)
            .await
            .unwrap()
            .unwrap()
            .push
            .map(|p| p.id)
    };
    while stored().await.as_ref() != Some(&subs[0].0) && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored().await, Some(subs[0].0.clone()));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn without_push_the_worker_polls_and_waits_out_retry_after_when_throttled() {
    let w = world(false, |_| {}).await;
    w.g.upsert(event("e1", Utc::now() + CDuration::hours(2)));
    assert_eq!(
        w.worker.poll().await.unwrap(),
        1,
        "no push channel: polling syncs"
    );
    assert!(
        w.store
            .get_meeting(&w.tenant, &meeting_id(&w.conn, "e1"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(w.g.subscriptions().is_empty());

    w.g.throttle_next(1);
    w.g.upsert(event("e2", Utc::now() + CDuration::hours(3)));
    assert_eq!(
        w.worker.poll().await.unwrap(),
        0,
        "throttled (429, Retry-After: 1)"
    );
    let before = w.g.requests();
    assert_eq!(
        w.worker.poll().await.unwrap(),
        0,
        "still inside Retry-After: not even asked"
    );
    assert_eq!(w.g.requests(), before);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(w.worker.poll().await.unwrap(), 1);
    assert!(
        w.store
            .get_meeting(&w.tenant, &meeting_id(&w.conn, "e2"))
            .await
            .unwrap()
            .is_some()
    );
    let _ = &w.tenants;
}

//! The scheduler against the real RabbitMQ: every meeting gets exactly one bot, on time, through
//! reschedules, cancellations, replicas, restarts, a broker connection lost mid-dispatch and a
//! consumer dying before its ack.

use chrono::{DateTime, Duration as CDuration, Utc};
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_queue::{InProcessQueue, JobQueue, JobStream, RabbitQueue};
use meetbot_scheduler::gate::{Claim, claim};
use meetbot_scheduler::jobs::idempotency_key;
use meetbot_scheduler::{Scheduler, SchedulerSettings};
use meetbot_store::vault::Tenants;
use meetbot_store::{JobFilter, MongoEngine, SqliteEngine, Store, init_engine};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

struct World {
    tenants: Arc<Tenants>,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
}

async fn sqlite_world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = init_engine(SqliteEngine::open(&dir.path().join("store")).unwrap())
        .await
        .unwrap();
    world(store, dir)
}

fn world(store: Arc<dyn Store>, dir: tempfile::TempDir) -> World {
    let keys = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek.key")).unwrap());
    World {
        tenants: Arc::new(Tenants::new(store.clone(), keys)),
        store,
        dir,
    }
}

impl World {
    /// A second handle on the same embedded store, as another process would have.
    async fn second_sqlite_handle(&self) -> Arc<dyn Store> {
        init_engine(SqliteEngine::open(&self.dir.path().join("store")).unwrap())
            .await
            .unwrap()
    }

    async fn meeting(&self, t: &TenantId, start: DateTime<Utc>) -> Meeting {
        let v = self.tenants.vault(t).await.unwrap();
        let id = new_record_id();
        let m = Meeting {
            title: v.seal::<Meeting>(&id, "title", b"Weekly sync").unwrap(),
            attendees: v.seal::<Meeting>(&id, "attendees", b"[]").unwrap(),
            join_url: Some(
                v.seal::<Meeting>(&id, "join_url", b"https://meet.example/x")
                    .unwrap(),
            ),
            event_instance_id: format!("evt-{id}"),
            id,
            connection_id: Some("conn".into()),
            series_id: None,
            starts_at: start,
            ends_at: start + CDuration::minutes(30),
            all_day: false,
            status: MeetingStatus::Confirmed,
            platform: Some(Platform::GoogleMeet),
            wants_bot: true,
            join_reason: None,
            requested_by: None,
            deleted_at: None,
            meeting_ref: None,
            source_updated_at: None,
            updated_at: Utc::now(),
        };
        self.store.put_meeting(t, &m).await.unwrap();
        m
    }
}

fn settings(lead_ms: u64, tick_ms: u64, lease_ms: u64) -> SchedulerSettings {
    SchedulerSettings {
        lead: Duration::from_millis(lead_ms),
        grace: Duration::from_secs(600),
        tick: Duration::from_millis(tick_ms),
        lease: Duration::from_millis(lease_ms),
        replica: format!("replica-{}", new_record_id()),
    }
}

async fn rabbit(prefix: &str) -> Arc<RabbitQueue> {
    Arc::new(
        RabbitQueue::connect(
            &meetbot_testsupport::amqp_url(),
            prefix,
            prefix,
            5,
            Duration::from_secs(5),
        )
        .await
        .unwrap(),
    )
}

/// (tenant, meeting) -> idempotency keys of the jobs launched for it, with when.
type LaunchesByMeeting = HashMap<(TenantId, String), Vec<(String, DateTime<Utc>)>>;

/// What consumers saw.
#[derive(Default)]
struct Launches {
    by_meeting: LaunchesByMeeting,
    launches: u64,
    duplicates: u64,
    withdrawn: u64,
    lateness_ms: Vec<i64>,
}

/// A consumer as a bot launcher runs it: claim in the store, "launch", then ack.
fn spawn_consumer(
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn Store>,
    seen: Arc<Mutex<Launches>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut s: Box<dyn JobStream> = queue.consume_jobs().await.unwrap();
        loop {
            let d = tokio::select! {
                _ = stop.changed() => break,
                d = s.next() => d.unwrap(),
            };
            match claim(store.as_ref(), &d.job).await.unwrap() {
                Claim::Launch(job) => {
                    let mut l = seen.lock().unwrap();
                    l.launches += 1;
                    l.lateness_ms
                        .push((d.job.dispatched_at - d.job.join_at).num_milliseconds());
                    l.by_meeting
                        .entry((d.job.tenant_id.clone(), job.value.meeting_id.clone()))
                        .or_default()
                        .push((job.value.idempotency_key.clone(), Utc::now()));
                }
                Claim::Duplicate(_) => seen.lock().unwrap().duplicates += 1,
                Claim::Withdrawn => seen.lock().unwrap().withdrawn += 1,
                Claim::Unknown => panic!("job {} unknown", d.job.job_id),
            }
            d.ack().await.unwrap();
        }
    })
}

fn spawn_scheduler(
    store: Arc<dyn Store>,
    queue: Arc<dyn JobQueue>,
    s: SchedulerSettings,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sched = Scheduler::new(store, queue, s);
        sched
            .run(async move {
                let _ = stop.changed().await;
            })
            .await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_meetings_across_twenty_tenants_each_get_exactly_one_bot_through_reschedules_cancellations_and_two_replicas()
 {
    let w = sqlite_world().await;
    let prefix = meetbot_testsupport::unique("sch");
    let queue = rabbit(&prefix).await;
    let mut rng = rand::rng();
    let t0 = Utc::now();

    let mut meetings: Vec<(TenantId, Meeting)> = Vec::new();
    for i in 0..20 {
        let t = w.tenants.create(&format!("Tenant {i}")).await.unwrap().id;
        for _ in 0..50 {
            let start = t0 + CDuration::milliseconds(rng.random_range(6_000..18_000));
            meetings.push((t.clone(), w.meeting(&t, start).await));
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Launches::default()));
    let store_b = w.second_sqlite_handle().await;
    let q: Arc<dyn JobQueue> = queue.clone();
    let sched_a = spawn_scheduler(
        w.store.clone(),
        q.clone(),
        settings(1_000, 100, 2_000),
        stop_rx.clone(),
    );
    let sched_b = spawn_scheduler(
        store_b.clone(),
        q.clone(),
        settings(1_000, 100, 2_000),
        stop_rx.clone(),
    );
    let consumers: Vec<_> = (0..2)
        .map(|_| spawn_consumer(q.clone(), w.store.clone(), seen.clone(), stop_rx.clone()))
        .collect();

    // Random reschedules and cancellations while the schedulers run, each at least 2.5 s before
    // the meeting's join time so the schedulers see the change before it is due.
    let mut cancelled = 0;
    let mut moved = 0;
    let mutate_until = t0 + CDuration::milliseconds(14_000);
    while Utc::now() < mutate_until {
        let i = rng.random_range(0..meetings.len());
        let (t, m) = &mut meetings[i];
        let now = Utc::now();
        if m.status != MeetingStatus::Cancelled
            && m.starts_at - CDuration::seconds(1) > now + CDuration::milliseconds(2_500)
        {
            if rng.random_bool(0.25) {
                m.status = MeetingStatus::Cancelled;
                cancelled += 1;
            } else {
                let shift = CDuration::milliseconds(rng.random_range(-3_000..3_000));
                let earliest = now + CDuration::milliseconds(3_600);
                m.starts_at = (m.starts_at + shift).max(earliest);
                moved += 1;
            }
            m.updated_at = Utc::now();
            w.store.put_meeting(t, m).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let last_join = meetings
        .iter()
        .filter(|(_, m)| m.status != MeetingStatus::Cancelled)
        .map(|(_, m)| m.starts_at)
        .max()
        .unwrap()
        - CDuration::seconds(1);
    while Utc::now() < last_join + CDuration::seconds(3) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();
    for h in [sched_a, sched_b].into_iter().chain(consumers) {
        h.await.unwrap();
    }

    let l = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        moved > 100 && cancelled > 30,
        "the run exercised reschedules ({moved}) and cancellations ({cancelled})"
    );
    let mut surviving = 0;
    for (t, m) in &meetings {
        let launched = l
            .by_meeting
            .get(&(t.clone(), m.id.clone()))
            .cloned()
            .unwrap_or_default();
        if m.status == MeetingStatus::Cancelled {
            assert!(launched.is_empty(), "cancelled meeting {} got a bot", m.id);
        } else {
            surviving += 1;
            assert_eq!(
                launched.len(),
                1,
                "meeting {} got {} bots",
                m.id,
                launched.len()
            );
            assert_eq!(
                launched[0].0,
                idempotency_key(t, &m.event_instance_id, m.starts_at),
                "bot for the final start time"
            );
        }
    }
    assert_eq!(l.launches, surviving as u64);
    eprintln!(
        "{} meetings, {moved} moves, {cancelled} cancellations: {} launches, {} duplicate deliveries acked, {} withdrawn messages acked",
        meetings.len(),
        l.launches,
        l.duplicates,
        l.withdrawn
    );
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_publisher_reconnects_after_its_broker_connection_is_closed_mid_dispatch_and_no_job_is_lost_or_doubled()
 {
    let w = sqlite_world().await;
    let prefix = meetbot_testsupport::unique("sch");
    let queue = rabbit(&prefix).await;
    let t = w.tenants.create("T").await.unwrap().id;
    let t0 = Utc::now();
    let mut meetings = Vec::new();
    for i in 0..300 {
        meetings.push(
            w.meeting(&t, t0 + CDuration::milliseconds(1_500 + i * 30))
                .await,
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Launches::default()));
    let q: Arc<dyn JobQueue> = queue.clone();
    let sched = spawn_scheduler(
        w.store.clone(),
        q.clone(),
        settings(0, 50, 2_000),
        stop_rx.clone(),
    );
    let consumer = spawn_consumer(q.clone(), w.store.clone(), seen.clone(), stop_rx.clone());

    // Mid-dispatch: the broker closes the scheduler's publishing connection.
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(3_000)).await;
    let before = seen.lock().unwrap().launches;
    let closed = tokio::task::spawn_blocking({
        let name = queue.publisher_connection_name();
        move || meetbot_testsupport::rabbitmq_close_connections(&name).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(closed, 1, "the publisher's connection was found and closed");
    let still_scheduled = w
        .store
        .find_bot_jobs(
            &t,
            &JobFilter {
                state: Some("scheduled"),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .len();
    assert!(
        still_scheduled > 0,
        "closed while jobs were still to be published"
    );
    assert!(
        before > 0,
        "closed after dispatching began ({before} launched before)"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().launches < 300 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    sched.await.unwrap();
    consumer.await.unwrap();
    let l = std::mem::take(&mut *seen.lock().unwrap());
    for m in &meetings {
        let n = l
            .by_meeting
            .get(&(t.clone(), m.id.clone()))
            .map_or(0, Vec::len);
        assert_eq!(n, 1, "meeting {} got {n} bots", m.id);
    }
    assert!(
        queue.reconnects() >= 1,
        "the publisher reconnected by itself"
    );
    queue.delete_topology().await.unwrap();
}

/// Gets one delivery from a fresh consumer.
async fn one(queue: &Arc<dyn JobQueue>) -> (Box<dyn JobStream>, meetbot_queue::JobDelivery) {
    let mut s = queue.consume_jobs().await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
        .unwrap();
    (s, d)
}

#[tokio::test]
async fn a_consumer_dying_before_its_ack_gets_the_job_redelivered_and_launched_exactly_once() {
    let w = sqlite_world().await;
    let prefix = meetbot_testsupport::unique("sch");
    let rq = rabbit(&prefix).await;
    let queue: Arc<dyn JobQueue> = rq.clone();
    let t = w.tenants.create("T").await.unwrap().id;
    let m1 = w.meeting(&t, Utc::now()).await;
    let m2 = w.meeting(&t, Utc::now()).await;
    let sched = Scheduler::new(w.store.clone(), queue.clone(), settings(0, 100, 2_000));
    let r = sched
        .pass(Utc::now() + CDuration::seconds(1))
        .await
        .unwrap();
    assert_eq!(r.dispatched, 2);

    // Consumer A dies after receiving the first job, before claiming it.
    let (a, d) = one(&queue).await;
    let first = d.job.clone();
    drop(d);
    drop(a);
    // Consumer B gets it again and launches it.
    let (b, d) = one(&queue).await;
    assert_eq!(d.job.job_id, first.job_id);
    assert!(d.redelivered);
    assert!(matches!(
        claim(w.store.as_ref(), &d.job).await.unwrap(),
        Claim::Launch(_)
    ));
    d.ack().await.unwrap();
    drop(b);

    // Consumer C claims (records the launch) the second job and dies before acking.
    let (c, d) = one(&queue).await;
    let second = d.job.clone();
    assert!(matches!(
        claim(w.store.as_ref(), &d.job).await.unwrap(),
        Claim::Launch(_)
    ));
    drop(d);
    drop(c);
    // Consumer D gets the redelivery and must not launch a second bot.
    let (dd, d) = one(&queue).await;
    assert_eq!(d.job.job_id, second.job_id);
    assert_eq!(
        claim(w.store.as_ref(), &d.job).await.unwrap(),
        Claim::Duplicate("launched")
    );
    d.ack().await.unwrap();
    drop(dd);

    for m in [&m1, &m2] {
        let jobs = w
            .store
            .find_bot_jobs(
                &t,
                &JobFilter {
                    meeting_id: Some(m.id.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].value.state, BotJobState::Launched);
    }
    rq.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_killed_mid_run_is_replaced_and_every_job_still_goes_out_once() {
    let w = sqlite_world().await;
    let prefix = meetbot_testsupport::unique("sch");
    let queue = rabbit(&prefix).await;
    let q: Arc<dyn JobQueue> = queue.clone();
    let t = w.tenants.create("T").await.unwrap().id;
    let t0 = Utc::now();
    let mut meetings = Vec::new();
    for i in 0..100 {
        meetings.push(
            w.meeting(&t, t0 + CDuration::milliseconds(1_000 + i * 40))
                .await,
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Launches::default()));
    let consumer = spawn_consumer(q.clone(), w.store.clone(), seen.clone(), stop_rx.clone());
    // Replica A runs, then dies without releasing its lease (aborted, as by SIGKILL).
    let (_a_stop, a_rx) = watch::channel(false);
    let a = spawn_scheduler(w.store.clone(), q.clone(), settings(0, 50, 1_000), a_rx);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    a.abort();
    let _ = a.await;
    let mid = seen.lock().unwrap().launches;
    assert!(mid > 0 && mid < 100, "killed mid-run ({mid} launched)");
    // Replica B starts afresh and takes over once A's lease expires.
    let b = spawn_scheduler(
        w.second_sqlite_handle().await,
        q.clone(),
        settings(0, 50, 1_000),
        stop_rx.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().launches < 100 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    b.await.unwrap();
    consumer.await.unwrap();
    let l = std::mem::take(&mut *seen.lock().unwrap());
    for m in &meetings {
        assert_eq!(
            l.by_meeting
                .get(&(t.clone(), m.id.clone()))
                .map_or(0, Vec::len),
            1,
            "meeting {}",
            m.id
        );
    }
    queue.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_the_mongodb_store_dispatch_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let db_prefix = meetbot_testsupport::unique("s");
    let uri = meetbot_testsupport::mongodb_uri();
    let connect = || async {
        init_engine(
            MongoEngine::connect(&uri, &db_prefix, Duration::from_secs(10))
                .await
                .unwrap(),
        )
        .await
        .unwrap()
    };
    let store_a: Arc<dyn Store> = connect().await;
    let store_b: Arc<dyn Store> = connect().await;
    let w = world(store_a.clone(), dir);
    let prefix = meetbot_testsupport::unique("sch");
    let queue = rabbit(&prefix).await;
    let q: Arc<dyn JobQueue> = queue.clone();
    let t0 = Utc::now();
    let mut meetings = Vec::new();
    for i in 0..3 {
        let t = w.tenants.create(&format!("T{i}")).await.unwrap().id;
        for j in 0..15 {
            meetings.push((
                t.clone(),
                w.meeting(&t, t0 + CDuration::milliseconds(2_000 + j * 150))
                    .await,
            ));
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Launches::default()));
    let consumer = spawn_consumer(q.clone(), store_a.clone(), seen.clone(), stop_rx.clone());
    let a = spawn_scheduler(
        store_a.clone(),
        q.clone(),
        settings(0, 100, 2_000),
        stop_rx.clone(),
    );
    let b = spawn_scheduler(
        store_b.clone(),
        q.clone(),
        settings(0, 100, 2_000),
        stop_rx.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().launches < 45 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    for h in [a, b, consumer] {
        h.await.unwrap();
    }
    let l = std::mem::take(&mut *seen.lock().unwrap());
    for (t, m) in &meetings {
        assert_eq!(
            l.by_meeting
                .get(&(t.clone(), m.id.clone()))
                .map_or(0, Vec::len),
            1,
            "meeting {}",
            m.id
        );
    }
    queue.delete_topology().await.unwrap();
}

// ---- rules, with the in-process queue (same JobQueue seam) ----

async fn jobs_of(w: &World, t: &TenantId, m: &Meeting) -> Vec<BotJob> {
    w.store
        .find_bot_jobs(
            t,
            &JobFilter {
                meeting_id: Some(m.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect()
}

#[tokio::test]
async fn a_job_is_published_at_join_time_minus_the_lead_and_not_before() {
    let w = sqlite_world().await;
    let q = InProcessQueue::new(5);
    let sched = Scheduler::new(
        w.store.clone(),
        Arc::new(q.clone()),
        settings(60_000, 100, 2_000),
    );
    let t = w.tenants.create("T").await.unwrap().id;
    let start = Utc::now() + CDuration::minutes(10);
    let m = w.meeting(&t, start).await;
    let r = sched.pass(start - CDuration::seconds(61)).await.unwrap();
    assert_eq!((r.armed, r.dispatched), (1, 0));
    let j = &jobs_of(&w, &t, &m).await[0];
    assert_eq!(j.join_at, start - CDuration::seconds(60));
    assert_eq!(j.state, BotJobState::Scheduled);
    let r = sched.pass(start - CDuration::seconds(60)).await.unwrap();
    assert_eq!(r.dispatched, 1);
    let j = &jobs_of(&w, &t, &m).await[0];
    assert_eq!(j.state, BotJobState::Dispatched);
    assert!(j.published_at.is_some());
    let names: Vec<&str> = j.history.iter().map(|h| h.state.name()).collect();
    assert_eq!(names, ["scheduled", "dispatched"]);
}

#[tokio::test]
async fn a_job_found_later_than_the_grace_is_skipped_with_a_reason_and_not_published() {
    let w = sqlite_world().await;
    let q = InProcessQueue::new(5);
    let mut s = settings(60_000, 100, 2_000);
    s.grace = Duration::from_secs(600);
    let sched = Scheduler::new(w.store.clone(), Arc::new(q.clone()), s);
    let t = w.tenants.create("T").await.unwrap().id;
    let m = w.meeting(&t, Utc::now() - CDuration::minutes(15)).await;
    let r = sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.armed, r.skipped, r.dispatched), (1, 1, 0));
    match &jobs_of(&w, &t, &m).await[0].state {
        BotJobState::Skipped(reason) => assert!(
            reason.starts_with("late by 96") && reason.contains("grace 600 s"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let mut s = q.consume_jobs().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), s.next())
            .await
            .is_err(),
        "nothing was published"
    );
}

#[tokio::test]
async fn reschedule_withdraws_the_old_job_and_arms_the_new_time_and_moving_back_rearms_it() {
    let w = sqlite_world().await;
    let q = InProcessQueue::new(5);
    let sched = Scheduler::new(
        w.store.clone(),
        Arc::new(q.clone()),
        settings(60_000, 100, 2_000),
    );
    let t = w.tenants.create("T").await.unwrap().id;
    let start = Utc::now() + CDuration::hours(2);
    let mut m = w.meeting(&t, start).await;
    sched.pass(Utc::now()).await.unwrap();
    m.starts_at = start + CDuration::hours(1);
    m.updated_at = Utc::now();
    w.store.put_meeting(&t, &m).await.unwrap();
    let r = sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.withdrawn, r.armed), (1, 1));
    let jobs = jobs_of(&w, &t, &m).await;
    let states: Vec<&str> = jobs.iter().map(|j| j.state.name()).collect();
    assert_eq!(states.iter().filter(|s| **s == "cancelled").count(), 1);
    assert_eq!(states.iter().filter(|s| **s == "scheduled").count(), 1);
    // Back to the original time: the withdrawn job (same idempotency key) is armed again.
    m.starts_at = start;
    m.updated_at = Utc::now();
    w.store.put_meeting(&t, &m).await.unwrap();
    let r = sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.withdrawn, r.rearmed, r.armed), (1, 1, 0));
    assert_eq!(
        jobs_of(&w, &t, &m).await.len(),
        2,
        "no third job: keys are reused, not duplicated"
    );
    // Cancelled in the calendar: withdrawn, nothing left scheduled.
    m.status = MeetingStatus::Cancelled;
    m.updated_at = Utc::now();
    w.store.put_meeting(&t, &m).await.unwrap();
    let r = sched.pass(Utc::now()).await.unwrap();
    assert_eq!(r.withdrawn, 1);
    assert!(
        jobs_of(&w, &t, &m)
            .await
            .iter()
            .all(|j| j.state == BotJobState::Cancelled)
    );
}

#[tokio::test]
async fn withdrawing_a_dispatched_job_announces_it_and_its_message_no_longer_launches() {
    let w = sqlite_world().await;
    let q = InProcessQueue::new(5);
    let queue: Arc<dyn JobQueue> = Arc::new(q.clone());
    let mut events = queue.subscribe_events().await.unwrap();
    let sched = Scheduler::new(w.store.clone(), queue.clone(), settings(0, 100, 2_000));
    let t = w.tenants.create("T").await.unwrap().id;
    let mut m = w.meeting(&t, Utc::now()).await;
    assert_eq!(sched.pass(Utc::now()).await.unwrap().dispatched, 1);
    m.status = MeetingStatus::Cancelled;
    m.updated_at = Utc::now();
    w.store.put_meeting(&t, &m).await.unwrap();
    assert_eq!(sched.pass(Utc::now()).await.unwrap().withdrawn, 1);
    let ev = tokio::time::timeout(Duration::from_secs(2), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev.kind,
        meetbot_queue::EventKind::Withdrawn("meeting cancelled or no longer wants a bot".into())
    );
    let mut s = queue.consume_jobs().await.unwrap();
    let d = s.next().await.unwrap();
    assert_eq!(
        claim(w.store.as_ref(), &d.job).await.unwrap(),
        Claim::Withdrawn
    );
}

#[tokio::test]
async fn a_meeting_already_served_is_never_armed_again() {
    let w = sqlite_world().await;
    let q = InProcessQueue::new(5);
    let queue: Arc<dyn JobQueue> = Arc::new(q.clone());
    let sched = Scheduler::new(w.store.clone(), queue.clone(), settings(0, 100, 2_000));
    let t = w.tenants.create("T").await.unwrap().id;
    let mut m = w.meeting(&t, Utc::now()).await;
    sched.pass(Utc::now()).await.unwrap();
    let mut s = queue.consume_jobs().await.unwrap();
    let d = s.next().await.unwrap();
    let Claim::Launch(v) = claim(w.store.as_ref(), &d.job).await.unwrap() else {
        panic!()
    };
    let mut job = v.value;
    meetbot_scheduler::jobs::transition(&mut job, BotJobState::Joined, Utc::now()).unwrap();
    meetbot_scheduler::jobs::transition(&mut job, BotJobState::Done, Utc::now()).unwrap();
    w.store.update_bot_job(&t, &job, v.version).await.unwrap();
    // The organiser edits the past event: new time, still wants a bot.
    m.starts_at += CDuration::days(1);
    m.updated_at = Utc::now();
    w.store.put_meeting(&t, &m).await.unwrap();
    let r = sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.armed, r.rearmed, r.withdrawn), (0, 0, 0));
    assert_eq!(jobs_of(&w, &t, &m).await.len(), 1);
}

#[tokio::test]
async fn meetings_without_a_link_or_not_wanting_a_bot_get_no_job() {
    let w = sqlite_world().await;
    let sched = Scheduler::new(
        w.store.clone(),
        Arc::new(InProcessQueue::new(5)),
        settings(0, 100, 2_000),
    );
    let t = w.tenants.create("T").await.unwrap().id;
    let mut a = w.meeting(&t, Utc::now() + CDuration::hours(1)).await;
    a.join_url = None;
    w.store.put_meeting(&t, &a).await.unwrap();
    let mut b = w.meeting(&t, Utc::now() + CDuration::hours(1)).await;
    b.wants_bot = false;
    w.store.put_meeting(&t, &b).await.unwrap();
    let mut c = w.meeting(&t, Utc::now() + CDuration::hours(1)).await;
    c.all_day = true;
    w.store.put_meeting(&t, &c).await.unwrap();
    assert_eq!(sched.pass(Utc::now()).await.unwrap().armed, 0);
}

#[tokio::test]
async fn passes_over_a_tenant_with_no_meetings_are_quiet_and_do_not_fail() {
    let w = sqlite_world().await;
    let sched = Scheduler::new(
        w.store.clone(),
        Arc::new(InProcessQueue::new(5)),
        settings(0, 100, 2_000),
    );
    w.tenants.create("Empty").await.unwrap();
    for _ in 0..3 {
        let r = sched.pass(Utc::now()).await.unwrap();
        assert_eq!(
            r,
            meetbot_scheduler::PassReport {
                tenants: 1,
                ..Default::default()
            }
        );
    }
}

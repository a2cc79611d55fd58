//! Scheduler benchmark (not a test): publish throughput with publisher confirms, and dispatch
//! lateness versus the planned join time for 10,000 meetings, against the real RabbitMQ and the
//! embedded store. Prints a table.
//!
//!   cargo bench -p meetbot-scheduler --bench dispatch
//!
//! Environment: MEETBOT_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f),
//! MEETBOT_BENCH_MEETINGS (default 10000), MEETBOT_BENCH_TICK_MS (default 100).

use chrono::{Duration as CDuration, Utc};
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_queue::{JOB_MESSAGE_VERSION, JobMessage, JobQueue, RabbitQueue};
use meetbot_scheduler::gate::{Claim, claim};
use meetbot_scheduler::{Scheduler, SchedulerSettings};
use meetbot_store::vault::Tenants;
use meetbot_store::{SqliteEngine, Store, init_engine};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("MEETBOT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let n = env_num("MEETBOT_BENCH_MEETINGS", 10_000) as usize;
    let tick_ms = env_num("MEETBOT_BENCH_TICK_MS", 100);
    let tenants_n = 20usize;
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. Publish throughput with confirms (sequential, one publisher connection).
    let prefix = meetbot_testsupport::unique("bench");
    let queue = Arc::new(
        RabbitQueue::connect(&url, &prefix, &prefix, 5, Duration::from_secs(5))
            .await
            .expect("RabbitMQ"),
    );
    let msg = |i: usize| JobMessage {
        v: JOB_MESSAGE_VERSION,
        job_id: format!("bench-{i}"),
        tenant_id: "benchtenant".parse().unwrap(),
        meeting_id: format!("m{i}"),
        idempotency_key: format!("benchtenant:e{i}:0"),
        join_at: Utc::now(),
        dispatched_at: Utc::now(),
    };
    eprintln!("publishing {n} jobs with confirms...");
    let t = Instant::now();
    for i in 0..n {
        queue.publish_job(&msg(i)).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    rows.push((
        "publish with confirm (sequential)".into(),
        format!("{:.0} jobs/s ({n} in {secs:.2} s)", n as f64 / secs),
    ));
    queue.delete_topology().await.unwrap();

    // 2. End to end: meetings -> scheduler -> RabbitMQ -> consumer claims.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = init_engine(SqliteEngine::open(&dir.path().join("store")).unwrap())
        .await
        .unwrap();
    let keys = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek.key")).unwrap());
    let tenants = Tenants::new(store.clone(), keys);
    let prefix = meetbot_testsupport::unique("bench");
    let queue = Arc::new(
        RabbitQueue::connect(&url, &prefix, &prefix, 5, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let mut ids = Vec::new();
    for i in 0..tenants_n {
        ids.push(tenants.create(&format!("bench {i}")).await.unwrap().id);
    }
    eprintln!("storing {n} meetings...");
    let t = Instant::now();
    // Join times start once storing and arming are surely over (they are measured on their own
    // above and below), so lateness measures dispatching alone.
    let spread_ms = env_num("MEETBOT_BENCH_SPREAD_MS", 60_000) as i64;
    let lead_ms = 600_000i64;
    let head_start_ms = (n as i64) * 4 + 10_000;
    let base = Utc::now() + CDuration::milliseconds(head_start_ms + lead_ms);
    let mut metas = Vec::with_capacity(n);
    for i in 0..n {
        let tenant = &ids[i % tenants_n];
        let v = tenants.vault(tenant).await.unwrap();
        let id = new_record_id();
        let start = base + CDuration::milliseconds(spread_ms * i as i64 / n as i64);
        let m = Meeting {
            title: v.seal::<Meeting>(&id, "title", b"bench").unwrap(),
            attendees: v.seal::<Meeting>(&id, "attendees", b"[]").unwrap(),
            join_url: Some(
                v.seal::<Meeting>(&id, "join_url", b"https://meet.example/b")
                    .unwrap(),
            ),
            event_instance_id: format!("e-{id}"),
            id,
            connection_id: Some("c".into()),
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
        store.put_meeting(tenant, &m).await.unwrap();
        metas.push(m.starts_at);
    }
    let stored = t.elapsed().as_secs_f64();
    rows.push((
        "store meetings (embedded SQLite)".into(),
        format!("{:.0} meetings/s", n as f64 / stored),
    ));

    let settings = SchedulerSettings {
        lead: Duration::from_millis(lead_ms as u64),
        grace: Duration::from_secs(600),
        tick: Duration::from_millis(tick_ms),
        lease: Duration::from_secs(15),
        replica: "bench".into(),
    };
    let sched = Arc::new(Scheduler::new(store.clone(), queue.clone(), settings));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let arm_t = Instant::now();
    let first = sched.pass(Utc::now()).await.unwrap();
    let arm_secs = arm_t.elapsed().as_secs_f64();
    rows.push((
        "first pass: arm jobs".into(),
        format!(
            "{} jobs in {arm_secs:.2} s ({:.0} jobs/s)",
            first.armed,
            first.armed as f64 / arm_secs
        ),
    ));
    let sched_task = {
        let s = sched.clone();
        tokio::spawn(async move {
            s.run(async move {
                let _ = stop_rx.changed().await;
            })
            .await
        })
    };
    let q: Arc<dyn JobQueue> = queue.clone();
    let mut stream = q.consume_jobs().await.unwrap();
    let mut lateness = Vec::with_capacity(n);
    let mut delivery = Vec::with_capacity(n);
    let mut dup = 0;
    let deadline =
        Instant::now() + Duration::from_millis((head_start_ms + spread_ms + 60_000) as u64);
    eprintln!(
        "dispatching {n} jobs over {} s with tick {tick_ms} ms...",
        spread_ms / 1000
    );
    while lateness.len() < n && Instant::now() < deadline {
        let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await else {
            continue;
        };
        let now = Utc::now();
        match claim(store.as_ref(), &d.job).await.unwrap() {
            Claim::Launch(_) => {
                lateness.push((d.job.dispatched_at - d.job.join_at).num_milliseconds());
                delivery.push((now - d.job.join_at).num_milliseconds());
            }
            _ => dup += 1,
        }
        d.ack().await.unwrap();
    }
    let _ = stop_tx.send(true);
    let _ = sched_task.await;
    drop(stream);
    queue.delete_topology().await.unwrap();
    lateness.sort_unstable();
    delivery.sort_unstable();
    rows.push((
        "jobs dispatched / launched once".into(),
        format!("{} of {n} ({dup} duplicate deliveries)", lateness.len()),
    ));
    rows.push((
        format!("dispatch lateness vs plan (tick {tick_ms} ms)"),
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            pct(&lateness, 0.5),
            pct(&lateness, 0.99),
            lateness.last().copied().unwrap_or(0)
        ),
    ));
    rows.push((
        "consumer receipt lateness vs plan".into(),
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            pct(&delivery, 0.5),
            pct(&delivery, 0.99),
            delivery.last().copied().unwrap_or(0)
        ),
    ));

    println!(
        "
scheduler benchmark: {n} meetings due over {} s, {tenants_n} tenants, RabbitMQ {}, embedded store, 2 cores",
        spread_ms / 1000,
        meetbot_core::config::server_address(&url)
    );
    println!("| {:<42} | {:<52} |", "measure", "result");
    println!("|{:-<44}|{:-<54}|", "", "");
    for (k, v) in rows {
        println!("| {k:<42} | {v:<52} |");
    }
}

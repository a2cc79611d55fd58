//! One suite, every `JobQueue`: the in-process queue and RabbitMQ (the real broker on 127.0.0.1).

use chrono::Utc;
use meetbot_queue::{
    BotEvent, EventKind, InProcessQueue, JOB_MESSAGE_VERSION, JobMessage, JobQueue, RabbitQueue,
};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: u32 = 3;

enum Kind {
    InProcess(InProcessQueue),
    Rabbit(Arc<RabbitQueue>),
}

struct Env {
    queue: Arc<dyn JobQueue>,
    kind: Kind,
}

impl Env {
    async fn publish_raw(&self, bytes: &[u8]) {
        match &self.kind {
            Kind::InProcess(q) => q.publish_raw(bytes),
            Kind::Rabbit(q) => q.publish_raw(bytes).await.unwrap(),
        }
    }

    async fn teardown(self) {
        if let Kind::Rabbit(q) = &self.kind {
            q.delete_topology().await.unwrap();
        }
    }
}

async fn in_process() -> Env {
    let q = InProcessQueue::new(LIMIT);
    Env {
        queue: Arc::new(q.clone()),
        kind: Kind::InProcess(q),
    }
}

async fn rabbitmq() -> Env {
    let prefix = meetbot_testsupport::unique("qc");
    let q = RabbitQueue::connect(
        &meetbot_testsupport::amqp_url(),
        &prefix,
        &prefix,
        LIMIT,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let q = Arc::new(q);
    Env {
        queue: q.clone(),
        kind: Kind::Rabbit(q),
    }
}

fn job(n: u32) -> JobMessage {
    JobMessage {
        v: JOB_MESSAGE_VERSION,
        job_id: format!("job-{n}"),
        tenant_id: "tenant0001".parse().unwrap(),
        meeting_id: format!("m-{n}"),
        idempotency_key: format!("tenant0001:e{n}:0"),
        join_at: Utc::now(),
        dispatched_at: Utc::now(),
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .expect("timed out waiting for the queue")
}

async fn published_job_is_delivered_once_and_gone_after_ack(env: Env) {
    let sent = job(1);
    env.queue.publish_job(&sent).await.unwrap();
    let mut s = env.queue.consume_jobs().await.unwrap();
    let d = within(s.next()).await.unwrap();
    assert_eq!(d.job, sent);
    assert!(!d.redelivered);
    d.ack().await.unwrap();
    env.queue.publish_job(&job(2)).await.unwrap();
    let d = within(s.next()).await.unwrap();
    assert_eq!(
        d.job.job_id, "job-2",
        "job-1 is not delivered again after its ack"
    );
    d.ack().await.unwrap();
    drop(s);
    env.teardown().await;
}

async fn a_batch_of_jobs_is_confirmed_together_and_delivered_in_order(env: Env) {
    let batch: Vec<JobMessage> = (0..50).map(job).collect();
    env.queue.publish_jobs(&batch).await.unwrap();
    let mut s = env.queue.consume_jobs().await.unwrap();
    for want in &batch {
        let d = within(s.next()).await.unwrap();
        assert_eq!(&d.job, want);
        d.ack().await.unwrap();
    }
    drop(s);
    env.teardown().await;
}

async fn unsettled_job_is_redelivered_when_its_consumer_dies(env: Env) {
    env.queue.publish_job(&job(7)).await.unwrap();
    let mut a = env.queue.consume_jobs().await.unwrap();
    let d = within(a.next()).await.unwrap();
    assert_eq!(d.job.job_id, "job-7");
    // The consumer dies before acking.
    drop(d);
    drop(a);
    let mut b = env.queue.consume_jobs().await.unwrap();
    let d = within(b.next()).await.unwrap();
    assert_eq!(d.job.job_id, "job-7");
    assert!(d.redelivered, "the broker marks it redelivered");
    d.ack().await.unwrap();
    drop(b);
    env.teardown().await;
}

async fn poison_messages_are_dead_lettered_with_a_reason_and_the_consumer_keeps_going(env: Env) {
    env.publish_raw(b"{this is not json").await;
    let mut wrong_version = serde_json::to_value(job(1)).unwrap();
    wrong_version["v"] = 99.into();
    env.publish_raw(&serde_json::to_vec(&wrong_version).unwrap())
        .await;
    env.queue.publish_job(&job(3)).await.unwrap();
    let mut s = env.queue.consume_jobs().await.unwrap();
    let d = within(s.next()).await.unwrap();
    assert_eq!(
        d.job.job_id, "job-3",
        "the valid job after two poison messages arrives"
    );
    d.ack().await.unwrap();
    let dead = within(async {
        loop {
            let d = env.queue.take_dead_letters(10).await.unwrap();
            if !d.is_empty() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let mut dead = dead;
    if dead.len() < 2 {
        dead.extend(env.queue.take_dead_letters(10).await.unwrap());
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead[0].reason.contains("not JSON"), "{}", dead[0].reason);
    assert_eq!(dead[0].payload, b"{this is not json");
    assert!(
        dead[1].reason.contains("unknown message version Some(99)"),
        "{}",
        dead[1].reason
    );
    drop(s);
    env.teardown().await;
}

async fn a_job_requeued_past_the_delivery_limit_is_dead_lettered(env: Env) {
    env.queue.publish_job(&job(5)).await.unwrap();
    let mut s = env.queue.consume_jobs().await.unwrap();
    for _ in 0..=LIMIT {
        let r = tokio::time::timeout(Duration::from_secs(3), s.next()).await;
        match r {
            Ok(Ok(d)) => d.requeue().await.unwrap(),
            _ => break,
        }
    }
    let dead = within(async {
        loop {
            let d = env.queue.take_dead_letters(10).await.unwrap();
            if !d.is_empty() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("delivery"), "{}", dead[0].reason);
    assert_eq!(
        meetbot_queue::decode_job(&dead[0].payload).unwrap().job_id,
        "job-5"
    );
    drop(s);
    env.teardown().await;
}

async fn a_consumer_can_dead_letter_a_job_with_its_own_reason(env: Env) {
    env.queue.publish_job(&job(9)).await.unwrap();
    let mut s = env.queue.consume_jobs().await.unwrap();
    let d = within(s.next()).await.unwrap();
    d.dead_letter("tenant 0001 unknown to this launcher")
        .await
        .unwrap();
    let dead = within(async {
        loop {
            let d = env.queue.take_dead_letters(10).await.unwrap();
            if !d.is_empty() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(dead[0].reason, "tenant 0001 unknown to this launcher");
    drop(s);
    env.teardown().await;
}

async fn competing_consumers_each_get_different_jobs(env: Env) {
    for n in 0..20 {
        env.queue.publish_job(&job(n)).await.unwrap();
    }
    let q = env.queue.clone();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let q = q.clone();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = q.consume_jobs().await.unwrap();
            while let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(1500), s.next()).await
            {
                seen.lock().unwrap().push(d.job.job_id.clone());
                d.ack().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut ids = seen.lock().unwrap().clone();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, 20, "every job delivered");
    assert_eq!(ids.len(), 20, "no job delivered twice");
    env.teardown().await;
}

async fn lifecycle_events_reach_subscribers(env: Env) {
    let mut sub = env.queue.subscribe_events().await.unwrap();
    let ev = BotEvent {
        v: JOB_MESSAGE_VERSION,
        job_id: "job-1".into(),
        tenant_id: "tenant0001".parse().unwrap(),
        meeting_id: "m-1".into(),
        kind: EventKind::Withdrawn("meeting cancelled".into()),
        at: Utc::now(),
    };
    env.queue.publish_event(&ev).await.unwrap();
    assert_eq!(within(sub.next()).await.unwrap(), ev);
    drop(sub);
    env.teardown().await;
}

async fn an_event_nobody_subscribed_to_is_published_not_retried(env: Env) {
    let ev = BotEvent::new(
        "tenant0001".parse().unwrap(),
        "job-2".into(),
        "m-2".into(),
        EventKind::Failed("bot exited with code 3".into()),
    );
    // Events are notifications: with no subscriber the broker drops it, and that is success
    // (a job, by contrast, must reach its queue). `within` bounds the wait, far below the
    // publisher's retry deadline.
    within(env.queue.publish_event(&ev)).await.unwrap();
    env.teardown().await;
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod in_process { $( #[tokio::test] async fn $case() { super::$case(super::in_process().await).await } )* }
        mod rabbitmq { $( #[tokio::test] async fn $case() { super::$case(super::rabbitmq().await).await } )* }
    };
}

suite!(
    an_event_nobody_subscribed_to_is_published_not_retried,
    published_job_is_delivered_once_and_gone_after_ack,
    a_batch_of_jobs_is_confirmed_together_and_delivered_in_order,
    unsettled_job_is_redelivered_when_its_consumer_dies,
    poison_messages_are_dead_lettered_with_a_reason_and_the_consumer_keeps_going,
    a_job_requeued_past_the_delivery_limit_is_dead_lettered,
    a_consumer_can_dead_letter_a_job_with_its_own_reason,
    competing_consumers_each_get_different_jobs,
    lifecycle_events_reach_subscribers,
);

#[tokio::test]
async fn rabbitmq_topology_declaration_is_idempotent() {
    let prefix = meetbot_testsupport::unique("qc");
    let url = meetbot_testsupport::amqp_url();
    let a = RabbitQueue::connect(&url, &prefix, &prefix, LIMIT, Duration::from_secs(5))
        .await
        .unwrap();
    let b = RabbitQueue::connect(&url, &prefix, &prefix, LIMIT, Duration::from_secs(5))
        .await
        .unwrap();
    b.publish_job(&job(1)).await.unwrap();
    let mut s = a.consume_jobs().await.unwrap();
    let d = within(s.next()).await.unwrap();
    assert_eq!(d.job.job_id, "job-1");
    d.ack().await.unwrap();
    drop(s);
    a.delete_topology().await.unwrap();
}

//! RabbitMQ via lapin.
//!
//! Topology (declared idempotently on connect, names prefixed by `queue.prefix`):
//! * `<p>.jobs` (direct) -> `<p>.bot-jobs`: durable quorum queue, `x-delivery-limit`, dead-lettering
//!   to `<p>.dlx` (direct) -> `<p>.bot-jobs.dead`;
//! * `<p>.events` (topic) for lifecycle events, routing key `bot.<kind>`.
//!
//! Every publish waits for the broker's confirm; on a lost connection the publisher reconnects with
//! exponential backoff and publishes again (at-least-once; consumers deduplicate by job id).

use crate::{
    BotEvent, DeadLetter, EventStream, JobDelivery, JobMessage, JobQueue, JobStream, QueueError,
    Settle, decode_event, decode_job,
};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use meetbot_core::config::server_address;
use std::time::Duration;
use tokio::sync::Mutex;

const ROUTING_KEY: &str = "bot-jobs";
const REASON_HEADER: &str = "x-meetbot-reason";

/// Names of everything meetbot declares on the broker.
#[derive(Clone, Debug)]
pub struct Topology {
    pub jobs_exchange: String,
    pub jobs_queue: String,
    pub dead_exchange: String,
    pub dead_queue: String,
    pub events_exchange: String,
}

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Topology {
            jobs_exchange: format!("{prefix}.jobs"),
            jobs_queue: format!("{prefix}.bot-jobs"),
            dead_exchange: format!("{prefix}.dlx"),
            dead_queue: format!("{prefix}.bot-jobs.dead"),
            events_exchange: format!("{prefix}.events"),
        }
    }
}

struct Link {
    connection: Connection,
    channel: Channel,
}

pub struct RabbitQueue {
    url: String,
    address: String,
    name: String,
    topo: Topology,
    delivery_limit: u32,
    connect_timeout: Duration,
    publish_deadline: Duration,
    link: Mutex<Option<Link>>,
    reconnects: prometheus_client::metrics::counter::Counter,
}

fn short(s: &str) -> ShortString {
    s.into()
}

impl RabbitQueue {
    /// Connects, declares the topology and keeps the connection for publishing.
    /// `name` labels the broker connections (`<name>-publisher`, `<name>-consumer`, ...).
    pub async fn connect(
        url: &str,
        prefix: &str,
        name: &str,
        delivery_limit: u32,
        connect_timeout: Duration,
    ) -> Result<Self, QueueError> {
        let q = RabbitQueue {
            url: url.to_string(),
            address: server_address(url),
            name: name.to_string(),
            topo: Topology::new(prefix),
            delivery_limit,
            connect_timeout,
            publish_deadline: Duration::from_secs(60),
            link: Mutex::new(None),
            reconnects: Default::default(),
        };
        let link = q.open("publisher", true).await?;
        q.declare(&link.channel).await?;
        *q.link.lock().await = Some(link);
        Ok(q)
    }

    /// How long a publish keeps retrying through reconnects before it reports failure.
    pub fn with_publish_deadline(mut self, d: Duration) -> Self {
        self.publish_deadline = d;
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Connection name of the publisher as the broker shows it (for operators and fault tests).
    pub fn publisher_connection_name(&self) -> String {
        format!("{}-publisher", self.name)
    }

    /// Times the publisher had to reconnect.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.get()
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> QueueError {
        let s = e.to_string();
        QueueError::Unavailable {
            server: format!("RabbitMQ at {}", self.address),
            detail: s.lines().next().unwrap_or("").to_string(),
        }
    }

    async fn open(&self, role: &str, confirm: bool) -> Result<Link, QueueError> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{}-{role}", self.name).into());
        let connection =
            match tokio::time::timeout(self.connect_timeout, Connection::connect(&self.url, props))
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(self.unavailable(e)),
                Err(_) => {
                    return Err(self.unavailable(format!(
                        "no answer within {} ms",
                        self.connect_timeout.as_millis()
                    )));
                }
            };
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.unavailable(e))?;
        if confirm {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        Ok(Link {
            connection,
            channel,
        })
    }

    async fn declare(&self, ch: &Channel) -> Result<(), QueueError> {
        let t = &self.topo;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let err = |e: lapin::Error| QueueError::Other(format!("declaring the topology: {e}"));
        for (name, kind) in [
            (&t.jobs_exchange, ExchangeKind::Direct),
            (&t.dead_exchange, ExchangeKind::Direct),
            (&t.events_exchange, ExchangeKind::Topic),
        ] {
            ch.exchange_declare(short(name), kind, durable, FieldTable::default())
                .await
                .map_err(err)?;
        }
        let mut quorum = FieldTable::default();
        quorum.insert(
            short("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
        let mut jobs = quorum.clone();
        jobs.insert(
            short("x-delivery-limit"),
            AMQPValue::LongInt(self.delivery_limit as i32),
        );
        jobs.insert(
            short("x-dead-letter-exchange"),
            AMQPValue::LongString(t.dead_exchange.as_str().into()),
        );
        jobs.insert(
            short("x-dead-letter-routing-key"),
            AMQPValue::LongString(ROUTING_KEY.into()),
        );
        let qopts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(short(&t.jobs_queue), qopts, jobs)
            .await
            .map_err(err)?;
        ch.queue_declare(short(&t.dead_queue), qopts, quorum)
            .await
            .map_err(err)?;
        ch.queue_bind(
            short(&t.jobs_queue),
            short(&t.jobs_exchange),
            short(ROUTING_KEY),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        ch.queue_bind(
            short(&t.dead_queue),
            short(&t.dead_exchange),
            short(ROUTING_KEY),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
        Ok(())
    }

    /// Publishes with a confirm; reconnects and retries until confirmed or the deadline passes.
    async fn publish(
        &self,
        exchange: &str,
        key: &str,
        payload: &[u8],
        props: BasicProperties,
    ) -> Result<(), QueueError> {
        self.publish_batch(exchange, key, &[(payload.to_vec(), props)], true)
            .await
    }

    /// Publishes every message, then awaits all confirms; messages not confirmed are published
    /// again on a fresh connection (exponential backoff) until confirmed or the deadline passes.
    /// `mandatory`: a message no queue takes is an error (jobs); events may have no subscriber.
    async fn publish_batch(
        &self,
        exchange: &str,
        key: &str,
        msgs: &[(Vec<u8>, BasicProperties)],
        mandatory: bool,
    ) -> Result<(), QueueError> {
        let deadline = tokio::time::Instant::now() + self.publish_deadline;
        let mut backoff = Duration::from_millis(50);
        let mut pending: Vec<usize> = (0..msgs.len()).collect();
        loop {
            let mut guard = self.link.lock().await;
            let attempt: Result<(), QueueError> = async {
                if guard
                    .as_ref()
                    .is_none_or(|l| !l.channel.status().connected())
                {
                    *guard = None;
                    self.reconnects.inc();
                    let link = self.open("publisher", true).await?;
                    self.declare(&link.channel).await?;
                    tracing::info!(broker = %self.address, "publisher reconnected");
                    *guard = Some(link);
                }
                let link = guard
                    .as_ref()
                    .ok_or_else(|| QueueError::Other("no link".into()))?;
                let opts = BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                };
                let mut confirms = Vec::with_capacity(pending.len());
                for &i in &pending {
                    let (payload, props) = &msgs[i];
                    match link
                        .channel
                        .basic_publish(short(exchange), short(key), opts, payload, props.clone())
                        .await
                    {
                        Ok(c) => confirms.push((i, c)),
                        Err(e) => return Err(self.unavailable(e)),
                    }
                }
                let mut failed = Vec::new();
                let mut last_err = None;
                for (i, c) in confirms {
                    let r = match c.await {
                        Ok(Confirmation::Ack(None)) => Ok(()),
                        Ok(Confirmation::Ack(Some(_))) => {
                            Err(QueueError::Other(format!("{exchange}: message unroutable")))
                        }
                        Ok(Confirmation::Nack(_)) => Err(QueueError::Nacked(exchange.to_string())),
                        Ok(Confirmation::NotRequested) => {
                            Err(QueueError::Other("publisher confirms are off".into()))
                        }
                        Err(e) => Err(self.unavailable(e)),
                    };
                    if let Err(e) = r {
                        failed.push(i);
                        last_err = Some(e);
                    }
                }
                pending = failed;
                match last_err {
                    None => Ok(()),
                    Some(e) => Err(e),
                }
            }
            .await;
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Whatever went wrong, the next attempt starts on a fresh connection.
                    if let Some(l) = guard.take() {
                        let _ = l.connection.close(200, "reconnecting".into()).await;
                    }
                    drop(guard);
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, unconfirmed = pending.len(), retry_in_ms = backoff.as_millis() as u64, "publish failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Deletes every queue and exchange of this topology (test clean-up, decommissioning).
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let link = self.open("teardown", false).await?;
        let ch = &link.channel;
        let t = &self.topo;
        for q in [&t.jobs_queue, &t.dead_queue] {
            ch.queue_delete(short(q), QueueDeleteOptions::default())
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        for x in [&t.jobs_exchange, &t.dead_exchange, &t.events_exchange] {
            ch.exchange_delete(short(x), ExchangeDeleteOptions::default())
                .await
                .map_err(|e| self.unavailable(e))?;
        }
        let _ = link.connection.close(200, "teardown".into()).await;
        Ok(())
    }

    /// Publishes raw bytes to the jobs exchange (operators' replay tool and poison tests).
    pub async fn publish_raw(&self, payload: &[u8]) -> Result<(), QueueError> {
        self.publish(
            &self.topo.jobs_exchange.clone(),
            ROUTING_KEY,
            payload,
            persistent(),
        )
        .await
    }
}

fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(short("application/json"))
}

#[async_trait]
impl JobQueue for RabbitQueue {
    fn describe(&self) -> String {
        format!("RabbitMQ at {}", self.address)
    }

    async fn publish_job(&self, job: &JobMessage) -> Result<(), QueueError> {
        self.publish_jobs(std::slice::from_ref(job)).await
    }

    async fn publish_jobs(&self, jobs: &[JobMessage]) -> Result<(), QueueError> {
        let mut msgs = Vec::with_capacity(jobs.len());
        for job in jobs {
            let payload = serde_json::to_vec(job).map_err(|e| QueueError::Other(e.to_string()))?;
            msgs.push((payload, persistent().with_message_id(short(&job.job_id))));
        }
        self.publish_batch(&self.topo.jobs_exchange, ROUTING_KEY, &msgs, true)
            .await
    }

    async fn publish_event(&self, ev: &BotEvent) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(ev).map_err(|e| QueueError::Other(e.to_string()))?;
        // Events are notifications: with no subscriber bound, nobody needed this one.
        self.publish_batch(
            &self.topo.events_exchange,
            &format!("bot.{}", ev.kind.name()),
            &[(payload, persistent())],
            false,
        )
        .await
    }

    async fn consume_jobs(&self) -> Result<Box<dyn JobStream>, QueueError> {
        let link = self.open("consumer", false).await?;
        let ch = &link.channel;
        ch.basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(|e| self.unavailable(e))?;
        let dl_channel = link
            .connection
            .create_channel()
            .await
            .map_err(|e| self.unavailable(e))?;
        dl_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.unavailable(e))?;
        let consumer = ch
            .basic_consume(
                short(&self.topo.jobs_queue),
                short(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(Box::new(RabbitJobStream {
            link: Some(link),
            dl_channel,
            consumer,
            dead_exchange: self.topo.dead_exchange.clone(),
            server: self.describe(),
        }))
    }

    async fn subscribe_events(&self) -> Result<Box<dyn EventStream>, QueueError> {
        let link = self.open("events", false).await?;
        let ch = &link.channel;
        let opts = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare(short(""), opts, FieldTable::default())
            .await
            .map_err(|e| self.unavailable(e))?;
        let qname = q.name().clone();
        ch.queue_bind(
            qname.clone(),
            short(&self.topo.events_exchange),
            short("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| self.unavailable(e))?;
        let consumer = ch
            .basic_consume(
                qname,
                short(""),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(Box::new(RabbitEvents {
            _link: link,
            consumer,
        }))
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let link = self.open("dead-letters", false).await?;
        let mut out = Vec::new();
        while out.len() < max {
            let got = link
                .channel
                .basic_get(
                    short(&self.topo.dead_queue),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .map_err(|e| self.unavailable(e))?;
            let Some(m) = got else { break };
            let reason = dead_reason(&m.delivery.properties);
            out.push(DeadLetter {
                payload: m.delivery.data.clone(),
                reason,
            });
        }
        let _ = link.connection.close(200, "done".into()).await;
        Ok(out)
    }

    async fn check(&self) -> Result<(), QueueError> {
        let link = self.open("check", false).await?;
        let _ = link.connection.close(200, "check done".into()).await;
        Ok(())
    }
}

/// The reason meetbot attached, or the broker's own (`x-death` reason, e.g. `delivery_limit`).
fn dead_reason(props: &BasicProperties) -> String {
    let Some(h) = props.headers() else {
        return "unknown".into();
    };
    if let Some(AMQPValue::LongString(s)) = h.inner().get(REASON_HEADER) {
        return s.to_string();
    }
    if let Some(AMQPValue::FieldArray(deaths)) = h.inner().get("x-death")
        && let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first()
        && let Some(AMQPValue::LongString(r)) = first.inner().get("reason")
    {
        return format!("broker: {r}");
    }
    "unknown".into()
}

struct RabbitJobStream {
    link: Option<Link>,
    dl_channel: Channel,
    consumer: lapin::Consumer,
    dead_exchange: String,
    server: String,
}

async fn dead_letter_copy(
    ch: &Channel,
    exchange: &str,
    payload: &[u8],
    reason: &str,
) -> Result<(), QueueError> {
    let mut headers = FieldTable::default();
    headers.insert(short(REASON_HEADER), AMQPValue::LongString(reason.into()));
    let props = persistent().with_headers(headers);
    let confirm = ch
        .basic_publish(
            short(exchange),
            short(ROUTING_KEY),
            BasicPublishOptions::default(),
            payload,
            props,
        )
        .await
        .map_err(|e| QueueError::Other(format!("dead-lettering: {e}")))?;
    match confirm.await {
        Ok(Confirmation::Ack(_)) => Ok(()),
        other => Err(QueueError::Other(format!(
            "dead-lettering not confirmed: {other:?}"
        ))),
    }
}

#[async_trait]
impl JobStream for RabbitJobStream {
    async fn next(&mut self) -> Result<JobDelivery, QueueError> {
        loop {
            let d = match self.consumer.next().await {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    return Err(QueueError::Unavailable {
                        server: self.server.clone(),
                        detail: e.to_string(),
                    });
                }
                None => {
                    return Err(QueueError::Unavailable {
                        server: self.server.clone(),
                        detail: "consumer cancelled".into(),
                    });
                }
            };
            match decode_job(&d.data) {
                Ok(job) => {
                    let settle = RabbitSettle {
                        acker: d.acker,
                        dl_channel: self.dl_channel.clone(),
                        dead_exchange: self.dead_exchange.clone(),
                        payload: d.data,
                    };
                    return Ok(JobDelivery::new(job, d.redelivered, Box::new(settle)));
                }
                Err(poison) => {
                    let reason = poison.to_string();
                    tracing::warn!(reason = %reason, "poison job message dead-lettered");
                    dead_letter_copy(&self.dl_channel, &self.dead_exchange, &d.data, &reason)
                        .await?;
                    d.acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(|e| QueueError::Other(e.to_string()))?;
                }
            }
        }
    }
}

impl Drop for RabbitJobStream {
    /// A consumer that goes away closes its connection: the broker requeues what it had not settled.
    fn drop(&mut self) {
        if let Some(link) = self.link.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = link.connection.close(200, "consumer closed".into()).await;
            });
        }
    }
}

struct RabbitSettle {
    acker: lapin::Acker,
    dl_channel: Channel,
    dead_exchange: String,
    payload: Vec<u8>,
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Other(format!("ack: {e}")))
    }

    async fn requeue(self: Box<Self>) -> Result<(), QueueError> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Other(format!("nack: {e}")))
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        dead_letter_copy(&self.dl_channel, &self.dead_exchange, &self.payload, reason).await?;
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Other(format!("ack: {e}")))
    }
}

struct RabbitEvents {
    _link: Link,
    consumer: lapin::Consumer,
}

#[async_trait]
impl EventStream for RabbitEvents {
    async fn next(&mut self) -> Result<BotEvent, QueueError> {
        loop {
            match self.consumer.next().await {
                Some(Ok(d)) => match decode_event(&d.data) {
                    Ok(e) => return Ok(e),
                    Err(p) => tracing::warn!(reason = %p, "undecodable event ignored"),
                },
                Some(Err(e)) => return Err(QueueError::Other(e.to_string())),
                None => return Err(QueueError::Other("event consumer cancelled".into())),
            }
        }
    }
}

//! The in-process queue for `meetbot dev`: same semantics as RabbitMQ for what meetbot relies on
//! (competing consumers, redelivery of unsettled jobs, delivery limit, dead letters with a reason).

use crate::{
    BotEvent, DeadLetter, EventStream, JobDelivery, JobMessage, JobQueue, JobStream, QueueError,
    Settle, decode_job,
};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast};

struct Msg {
    payload: Vec<u8>,
    deliveries: u32,
}

struct Inner {
    ready: Mutex<VecDeque<Msg>>,
    dead: Mutex<VecDeque<DeadLetter>>,
    notify: Notify,
    events: broadcast::Sender<BotEvent>,
    delivery_limit: u32,
}

impl Inner {
    fn push_back(&self, m: Msg) {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(m);
        self.notify.notify_one();
    }

    fn push_front(&self, m: Msg) {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_front(m);
        self.notify.notify_one();
    }

    fn dead_letter(&self, payload: Vec<u8>, reason: String) {
        tracing::warn!(reason = %reason, "job message dead-lettered");
        self.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(DeadLetter { payload, reason });
    }
}

#[derive(Clone)]
pub struct InProcessQueue {
    inner: Arc<Inner>,
}

impl InProcessQueue {
    pub fn new(delivery_limit: u32) -> Self {
        let (events, _) = broadcast::channel(4096);
        InProcessQueue {
            inner: Arc::new(Inner {
                ready: Mutex::new(VecDeque::new()),
                dead: Mutex::new(VecDeque::new()),
                notify: Notify::new(),
                events,
                delivery_limit,
            }),
        }
    }

    /// Enqueues raw bytes as if a producer had sent them (tests of poison handling).
    pub fn publish_raw(&self, payload: &[u8]) {
        self.inner.push_back(Msg {
            payload: payload.to_vec(),
            deliveries: 0,
        });
    }
}

#[async_trait]
impl JobQueue for InProcessQueue {
    fn describe(&self) -> String {
        "in-process queue".into()
    }

    async fn publish_job(&self, job: &JobMessage) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(job).map_err(|e| QueueError::Other(e.to_string()))?;
        self.inner.push_back(Msg {
            payload,
            deliveries: 0,
        });
        Ok(())
    }

    async fn publish_event(&self, ev: &BotEvent) -> Result<(), QueueError> {
        let _ = self.inner.events.send(ev.clone());
        Ok(())
    }

    async fn consume_jobs(&self) -> Result<Box<dyn JobStream>, QueueError> {
        Ok(Box::new(InProcStream {
            inner: self.inner.clone(),
        }))
    }

    async fn subscribe_events(&self) -> Result<Box<dyn EventStream>, QueueError> {
        Ok(Box::new(InProcEvents {
            rx: self.inner.events.subscribe(),
        }))
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut d = self.inner.dead.lock().unwrap_or_else(|p| p.into_inner());
        let n = max.min(d.len());
        Ok(d.drain(..n).collect())
    }

    async fn check(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

struct InProcStream {
    inner: Arc<Inner>,
}

#[async_trait]
impl JobStream for InProcStream {
    async fn next(&mut self) -> Result<JobDelivery, QueueError> {
        loop {
            let popped = self
                .inner
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some(mut m) = popped else {
                self.inner.notify.notified().await;
                continue;
            };
            m.deliveries += 1;
            if m.deliveries > self.inner.delivery_limit {
                let reason = format!("delivery limit of {} exceeded", self.inner.delivery_limit);
                self.inner.dead_letter(m.payload, reason);
                continue;
            }
            match decode_job(&m.payload) {
                Ok(job) => {
                    let redelivered = m.deliveries > 1;
                    let settle = InProcSettle {
                        inner: self.inner.clone(),
                        msg: Some(m),
                    };
                    return Ok(JobDelivery::new(job, redelivered, Box::new(settle)));
                }
                Err(poison) => self.inner.dead_letter(m.payload, poison.to_string()),
            }
        }
    }
}

struct InProcSettle {
    inner: Arc<Inner>,
    msg: Option<Msg>,
}

#[async_trait]
impl Settle for InProcSettle {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.msg = None;
        Ok(())
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        if let Some(m) = self.msg.take() {
            self.inner.push_back(m);
        }
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        if let Some(m) = self.msg.take() {
            self.inner.dead_letter(m.payload, reason.to_string());
        }
        Ok(())
    }
}

impl Drop for InProcSettle {
    /// An unsettled delivery goes back to the head of the queue, as when a consumer dies.
    fn drop(&mut self) {
        if let Some(m) = self.msg.take() {
            self.inner.push_front(m);
        }
    }
}

struct InProcEvents {
    rx: broadcast::Receiver<BotEvent>,
}

#[async_trait]
impl EventStream for InProcEvents {
    async fn next(&mut self) -> Result<BotEvent, QueueError> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Ok(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event subscriber lagged");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(QueueError::Other("event channel closed".into()));
                }
            }
        }
    }
}

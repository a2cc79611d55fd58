//! A receiver for the bots' audio stream (the protocol of `meetbot_bot::audio_frame`), until the
//! transcriber exists: a WebSocket endpoint that checks the job token, tells a connecting bot
//! where to resume (the next sequence it lacks), keeps each frame once in sequence order, acks
//! every frame, and counts garbage. The test can make it drop every connection after a number of
//! frames, or stop accepting for a while.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use meetbot_bot::audio_frame::Frame;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Sink {
    token: String,
    /// Frames in sequence order, each once.
    frames: Vec<Frame>,
    garbage: u64,
    connections: u64,
    /// Drop the connection after this many frames on it (once).
    drop_after: Option<u64>,
    refusing: bool,
    ended: bool,
}

pub struct AudioSink {
    pub addr: SocketAddr,
    s: Arc<Mutex<Sink>>,
    _task: tokio::task::JoinHandle<()>,
}

impl AudioSink {
    pub async fn start(token: &str) -> Self {
        let s = Arc::new(Mutex::new(Sink {
            token: token.into(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/v1/audio", axum::routing::get(upgrade))
            .route("/v1/audio/{tenant}/{job}", axum::routing::get(upgrade))
            .with_state(s.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        AudioSink {
            addr,
            s,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/audio", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.s.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.lock().frames.clone()
    }
    pub fn garbage(&self) -> u64 {
        self.lock().garbage
    }
    pub fn connections(&self) -> u64 {
        self.lock().connections
    }
    pub fn ended(&self) -> bool {
        self.lock().ended
    }
    /// The next connection is dropped after `n` frames.
    pub fn drop_after(&self, n: u64) {
        self.lock().drop_after = Some(n);
    }
    /// Refuse (503) new connections while set.
    pub fn refuse(&self, on: bool) {
        self.lock().refusing = on;
    }
}

async fn upgrade(
    State(s): State<Arc<Mutex<Sink>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    {
        let g = s.lock().unwrap_or_else(|p| p.into_inner());
        if g.refusing {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let ok = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| meetbot_crypto::constant_time_eq(t.as_bytes(), g.token.as_bytes()));
        if !ok {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    ws.on_upgrade(move |socket| serve(s, socket))
}

async fn serve(s: Arc<Mutex<Sink>>, mut socket: WebSocket) {
    let (resume, drop_after) = {
        let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
        g.connections += 1;
        (
            g.frames.last().map(|f| f.seq() + 1).unwrap_or(1),
            g.drop_after.take(),
        )
    };
    let hello = Frame::Resume { seq: resume }
        .encode()
        .expect("resume frame");
    if socket.send(Message::Binary(hello.into())).await.is_err() {
        return;
    }
    let mut on_this = 0u64;
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Binary(b) = msg else {
            continue;
        };
        let ack = {
            let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
            match Frame::decode(&b) {
                Ok(f) => {
                    let next = g.frames.last().map(|x| x.seq() + 1).unwrap_or(1);
                    if f.seq() == next {
                        if matches!(f, Frame::EndOfStream { .. }) {
                            g.ended = true;
                        }
                        g.frames.push(f);
                    }
                    g.frames.last().map(|x| x.seq())
                }
                Err(_) => {
                    g.garbage += 1;
                    None
                }
            }
        };
        on_this += 1;
        if drop_after.is_some_and(|n| on_this >= n) {
            return; // dropped without a close frame, as a crash would
        }
        if let Some(seq) = ack {
            let a = Frame::Ack { seq }.encode().expect("ack frame");
            if socket.send(Message::Binary(a.into())).await.is_err() {
                return;
            }
        }
    }
}

//! Local stand-ins for Google Meet, Microsoft Teams and Zoom web clients, for the browser
//! connector's tests (served on 127.0.0.1; run them inside [`crate::janus::in_netns`] so the
//! browser's WebRTC stays in the test's own namespace).
//!
//! [`FakeMeetings`] serves `/<platform>/<id>` pages driven by a [`Scenario`] (`fake-meeting.js`
//! reproduces each platform's flow with the elements and texts the built-in profiles expect),
//! the speakers' WAVs, and collects what the page saw the bot do at `/events/<id>`.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PAGE_JS: &str = include_str!("browser/fake-meeting.js");

/// One speaker: a name (shown in the participant list) and what they say, from `start_ms` after
/// the bot is let in.
#[derive(Clone, Debug, Serialize)]
pub struct Speaker {
    pub name: String,
    /// `/audio/<n>.wav`, set by [`FakeMeetings::add`].
    pub wav: String,
    pub start_ms: u64,
    #[serde(skip)]
    pub pcm48: Vec<i16>,
}

impl Speaker {
    /// `text` spoken by espeak-ng (48 kHz).
    pub fn saying(name: &str, text: &str, start_ms: u64) -> Speaker {
        Speaker {
            name: name.into(),
            wav: String::new(),
            start_ms,
            pcm48: crate::janus::speech(text),
        }
    }
}

/// How the fake meeting treats the bot.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// "meet", "teams" or "zoom".
    pub platform: String,
    /// "admit" (lobby, then let in after `admit_after_ms`), "deny" (lobby, then refused),
    /// "open" (straight in), "lobby" (kept waiting).
    pub flow: String,
    pub admit_after_ms: u64,
    /// After admission: the meeting ends / the bot is removed this much later.
    pub end_after_ms: Option<u64>,
    pub remove_after_ms: Option<u64>,
    pub speakers: Vec<Speaker>,
    /// "per_track" (one track per speaker) or "mixed" (one track for all).
    pub audio: String,
    /// Teams: the join button's `data-tid` (a platform UI change).
    pub join_tid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_label: Option<String>,
    id: String,
}

impl Scenario {
    pub fn new(platform: &str, flow: &str) -> Scenario {
        Scenario {
            platform: platform.into(),
            flow: flow.into(),
            admit_after_ms: 2000,
            end_after_ms: None,
            remove_after_ms: None,
            speakers: Vec::new(),
            audio: if platform == "meet" {
                "per_track".into()
            } else {
                "mixed".into()
            },
            join_tid: None,
            join_label: None,
            id: String::new(),
        }
    }
}

#[derive(Default)]
struct Inner {
    pages: HashMap<String, String>,
    events: HashMap<String, Vec<Value>>,
    wavs: HashMap<String, Vec<u8>>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake platform server.
pub struct FakeMeetings {
    pub addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMeetings {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn page(State(s): State<Shared>, Path((_p, id)): Path<(String, String)>) -> Response {
    match lock(&s).pages.get(&id) {
        Some(html) => Html(html.clone()).into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such meeting").into_response(),
    }
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript")], PAGE_JS).into_response()
}

async fn wav(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    match lock(&s).wavs.get(&name) {
        Some(b) => ([(header::CONTENT_TYPE, "audio/wav")], b.clone()).into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such audio").into_response(),
    }
}

async fn event(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Json(v): axum::Json<Value>,
) -> &'static str {
    lock(&s).events.entry(id).or_default().push(v);
    "ok"
}

impl FakeMeetings {
    pub async fn start() -> FakeMeetings {
        let inner: Shared = Arc::default();
        let app = axum::Router::new()
            .route("/fake-meeting.js", get(script))
            .route("/audio/{name}", get(wav))
            .route("/events/{id}", post(event))
            .route("/{platform}/{id}", get(page))
            .with_state(inner.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        FakeMeetings { addr, inner, task }
    }

    /// Registers `sc`; returns its page's URL.
    pub fn add(&self, mut sc: Scenario) -> String {
        let id = crate::unique("meeting");
        sc.id = id.clone();
        let mut inner = lock(&self.inner);
        for (i, sp) in sc.speakers.iter_mut().enumerate() {
            let name = format!("{id}-{i}.wav");
            inner
                .wavs
                .insert(name.clone(), crate::speech::wav(48_000, &sp.pcm48));
            sp.wav = format!("/audio/{name}");
        }
        let json = serde_json::to_string(&sc).expect("scenario");
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body><div id=\"app\"></div><script>window.SCENARIO = {json};</script>\
             <script src=\"/fake-meeting.js\"></script></body></html>",
            sc.platform
        );
        inner.pages.insert(id.clone(), html);
        format!("http://{}/{}/{id}", self.addr, sc.platform)
    }

    /// What the page reported so far (`{"kind": "join" | "chat" | "admitted" | ...}`).
    pub fn events(&self, url: &str) -> Vec<Value> {
        let id = url.rsplit('/').next().unwrap_or_default();
        lock(&self.inner)
            .events
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits up to `within` for an event of `kind`.
    pub async fn wait_event(&self, url: &str, kind: &str, within: Duration) -> Option<Value> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(e) = self.events(url).into_iter().find(|e| e["kind"] == kind) {
                return Some(e);
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

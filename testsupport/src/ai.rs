//! Stand-ins for hosted AI APIs the transcriber calls (no emulator exists), following their
//! documented request and response shapes:
//! - OpenAI chat completions `POST /v1/chat/completions` (Bearer key) and the Azure OpenAI form
//!   `POST /openai/deployments/{d}/chat/completions?api-version=...` (`api-key` header);
//! - Anthropic Messages `POST /v1/messages` (`x-api-key`, `anthropic-version`);
//! - Deepgram live streaming `GET /v1/listen` WebSocket (`Authorization: Token <key>`).
//!
//! The chat stand-ins answer with a summary JSON whose overview names the request number and
//! whose action items carry the `owner:` lines found in the prompt, so tests can check that each
//! part of a long transcript was sent and the parts were merged.

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Chat {
    key: String,
    /// Every accepted request's user message.
    prompts: Vec<String>,
    /// Requests refused (bad key, bad shape).
    refused: Vec<String>,
}

pub struct ChatStandIn {
    pub addr: SocketAddr,
    s: Arc<Mutex<Chat>>,
    _task: tokio::task::JoinHandle<()>,
}

fn reply_summary(n: usize, prompt: &str) -> String {
    // Owners: every "Name: I'll ..." line of the prompt (a crude but deterministic extraction).
    let items: Vec<Value> = prompt
        .lines()
        .filter_map(|l| {
            let (who, text) = l.split_once(": ")?;
            let who = who.rsplit(' ').next()?;
            text.to_lowercase()
                .contains("i will")
                .then(|| json!({"owner": who, "text": text}))
        })
        .collect();
    json!({
        "overview": format!("request {n}"),
        "decisions": [],
        "action_items": items,
        "topics": [format!("part{n}")],
    })
    .to_string()
}

impl ChatStandIn {
    pub async fn start(key: &str) -> Self {
        let s = Arc::new(Mutex::new(Chat {
            key: key.into(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(openai))
            .route(
                "/openai/deployments/{d}/chat/completions",
                axum::routing::post(azure),
            )
            .route("/v1/messages", axum::routing::post(anthropic))
            .route(
                "/v1/audio/transcriptions",
                axum::routing::post(transcriptions),
            )
            .with_state(s.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        ChatStandIn {
            addr,
            s,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn prompts(&self) -> Vec<String> {
        self.s
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prompts
            .clone()
    }

    pub fn refused(&self) -> Vec<String> {
        self.s
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refused
            .clone()
    }
}

fn error(s: &Arc<Mutex<Chat>>, status: StatusCode, why: &str) -> Response {
    s.lock()
        .unwrap_or_else(|p| p.into_inner())
        .refused
        .push(why.into());
    (
        status,
        Json(json!({"error": {"message": why, "type": "invalid_request_error"}})),
    )
        .into_response()
}

/// Checks the chat-completions body; returns the user message.
fn chat_body(b: &Value) -> Result<String, &'static str> {
    let msgs = b["messages"]
        .as_array()
        .ok_or("messages must be an array")?;
    if msgs.first().and_then(|m| m["role"].as_str()) != Some("system") {
        return Err("the first message should be the system prompt");
    }
    msgs.iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .map(str::to_string)
        .ok_or("no user message")
}

fn completion(s: &Arc<Mutex<Chat>>, user: String, model: &str) -> Response {
    let n = {
        let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
        g.prompts.push(user.clone());
        g.prompts.len()
    };
    Json(json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply_summary(n, &user)},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }))
    .into_response()
}

async fn openai(State(s): State<Arc<Mutex<Chat>>>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    let key = s.lock().unwrap_or_else(|p| p.into_inner()).key.clone();
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {key}")) {
        return error(&s, StatusCode::UNAUTHORIZED, "Incorrect API key provided");
    }
    let Some(model) = b["model"].as_str().map(str::to_string) else {
        return error(&s, StatusCode::BAD_REQUEST, "model is required");
    };
    match chat_body(&b) {
        Ok(u) => completion(&s, u, &model),
        Err(e) => error(&s, StatusCode::BAD_REQUEST, e),
    }
}

async fn azure(
    State(s): State<Arc<Mutex<Chat>>>,
    Path(d): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    let key = s.lock().unwrap_or_else(|p| p.into_inner()).key.clone();
    if h.get("api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str()) {
        return error(
            &s,
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key",
        );
    }
    if !q.contains_key("api-version") {
        return error(&s, StatusCode::NOT_FOUND, "api-version is required");
    }
    match chat_body(&b) {
        Ok(u) => completion(&s, u, &d),
        Err(e) => error(&s, StatusCode::BAD_REQUEST, e),
    }
}

async fn anthropic(
    State(s): State<Arc<Mutex<Chat>>>,
    h: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    let key = s.lock().unwrap_or_else(|p| p.into_inner()).key.clone();
    if h.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str()) {
        return error(&s, StatusCode::UNAUTHORIZED, "invalid x-api-key");
    }
    if h.get("anthropic-version").is_none() {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "anthropic-version header is required",
        );
    }
    if b["max_tokens"].as_u64().is_none() || b["model"].as_str().is_none() {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "model and max_tokens are required",
        );
    }
    let Some(user) = b["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .map(str::to_string)
    else {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "messages: a user message is required",
        );
    };
    let n = {
        let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
        g.prompts.push(user.clone());
        g.prompts.len()
    };
    Json(json!({
        "id": format!("msg_{n}"),
        "type": "message",
        "role": "assistant",
        "model": b["model"],
        "content": [{"type": "text", "text": format!("Here is the summary:\n```json\n{}\n```", reply_summary(n, &user))}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1}
    }))
    .into_response()
}

/// OpenAI's `POST /v1/audio/transcriptions` (multipart: `file`, `model`, `response_format`):
/// checks the key and that a WAV file was sent; answers `verbose_json` with one segment saying
/// "transcribed by the stand-in" over the whole audio.
async fn transcriptions(
    State(s): State<Arc<Mutex<Chat>>>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key = s.lock().unwrap_or_else(|p| p.into_inner()).key.clone();
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {key}")) {
        return error(&s, StatusCode::UNAUTHORIZED, "Incorrect API key provided");
    }
    let multipart = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let find = |n: &[u8]| body.windows(n.len()).position(|w| w == n);
    let (Some(_), Some(riff), Some(_)) = (
        find(b"name=\"file\""),
        find(b"RIFF"),
        find(b"name=\"model\""),
    ) else {
        return error(&s, StatusCode::BAD_REQUEST, "file and model are required");
    };
    if !multipart {
        return error(
            &s,
            StatusCode::BAD_REQUEST,
            "multipart/form-data is required",
        );
    }
    // The WAV's data length gives the duration (16-bit samples).
    let data_len = body
        .get(riff + 40..riff + 44)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let rate = body
        .get(riff + 24..riff + 28)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(16_000)
        .max(1);
    let dur = data_len as f64 / 2.0 / rate as f64;
    s.lock()
        .unwrap_or_else(|p| p.into_inner())
        .prompts
        .push("audio".into());
    Json(json!({
        "task": "transcribe",
        "language": "english",
        "duration": dur,
        "text": "transcribed by the stand-in",
        "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": dur, "text": " transcribed by the stand-in",
                      "tokens": [], "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0, "no_speech_prob": 0.01}]
    }))
    .into_response()
}

#[derive(Default)]
struct Dg {
    key: String,
    /// The text the stand-in "recognises" for every stream.
    text: String,
    /// Audio bytes received per stream.
    received: Vec<usize>,
}

/// Deepgram's live API: answers each stream with interim results while audio arrives and, on
/// `CloseStream`, one final result holding the configured text, then `Metadata`.
pub struct DeepgramStandIn {
    pub addr: SocketAddr,
    s: Arc<Mutex<Dg>>,
    _task: tokio::task::JoinHandle<()>,
}

impl DeepgramStandIn {
    pub async fn start(key: &str, text: &str) -> Self {
        let s = Arc::new(Mutex::new(Dg {
            key: key.into(),
            text: text.into(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/v1/listen", axum::routing::get(listen))
            .with_state(s.clone());
        let (addr, task) = crate::serve_on_loopback(app).await;
        DeepgramStandIn {
            addr,
            s,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn received(&self) -> Vec<usize> {
        self.s
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .received
            .clone()
    }
}

async fn listen(
    State(s): State<Arc<Mutex<Dg>>>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let key = s.lock().unwrap_or_else(|p| p.into_inner()).key.clone();
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Token {key}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let fmt_ok = q.get("encoding").map(String::as_str) == Some("linear16")
        && q.get("sample_rate").map(String::as_str) == Some("16000")
        && q.get("channels").map(String::as_str) == Some("1");
    if !fmt_ok {
        return (
            StatusCode::BAD_REQUEST,
            "encoding, sample_rate and channels are required for raw audio",
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| dg_stream(s, socket))
}

async fn dg_stream(s: Arc<Mutex<Dg>>, mut socket: WebSocket) {
    let mut bytes = 0usize;
    let mut last_interim = 0usize;
    let text = s.lock().unwrap_or_else(|p| p.into_inner()).text.clone();
    let result = |start: f64, dur: f64, t: &str, fin: bool| {
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": dur,
            "start": start,
            "is_final": fin,
            "speech_final": fin,
            "channel": {"alternatives": [{"transcript": t, "confidence": 0.98, "words": []}]},
            "metadata": {"request_id": "standin", "model_info": {"name": "standin"}}
        })
        .to_string()
    };
    while let Some(Ok(m)) = socket.recv().await {
        match m {
            Message::Binary(b) => {
                bytes += b.len();
                // An interim result per second of audio (32,000 bytes of linear16 at 16 kHz).
                if bytes - last_interim >= 32_000 {
                    last_interim = bytes;
                    let first = text.split_whitespace().next().unwrap_or("");
                    let _ = socket
                        .send(Message::Text(
                            result(0.0, bytes as f64 / 32_000.0, first, false).into(),
                        ))
                        .await;
                }
            }
            Message::Text(t) if t.contains("CloseStream") => {
                let dur = bytes as f64 / 32_000.0;
                let _ = socket
                    .send(Message::Text(result(0.0, dur, &text, true).into()))
                    .await;
                let _ = socket
                    .send(Message::Text(
                        json!({"type": "Metadata", "request_id": "standin", "duration": dur, "channels": 1}).to_string().into(),
                    ))
                    .await;
                break;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    s.lock()
        .unwrap_or_else(|p| p.into_inner())
        .received
        .push(bytes);
    let _ = socket.send(Message::Close(None)).await;
}

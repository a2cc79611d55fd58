//! Deepgram live streaming (documented protocol): a WebSocket to `/v1/listen` with the audio
//! format in the query (`encoding=linear16&sample_rate=16000&channels=1`), `Authorization:
//! Token <key>`, binary audio messages, then `{"type":"CloseStream"}`. The service answers
//! `Results` messages (`is_final` marks text that will not change) and a closing `Metadata`.

use crate::audio::Pcm;
use crate::engine::{EngineError, Recognized, SpeechEngine, clean_text};
use futures_util::{SinkExt, StreamExt};
use meetbot_core::config::EngineConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub struct DeepgramEngine {
    url: String,
    key: Option<SecretString>,
}

#[derive(Deserialize)]
struct Msg {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    duration: f64,
    channel: Option<Channel>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct Channel {
    alternatives: Vec<Alt>,
}

#[derive(Deserialize)]
struct Alt {
    transcript: String,
}

impl DeepgramEngine {
    pub fn from_config(e: &EngineConfig) -> Result<Self, EngineError> {
        let base = e
            .base_url
            .as_deref()
            .unwrap_or("wss://api.deepgram.com")
            .trim_end_matches('/');
        Ok(DeepgramEngine {
            url: format!(
                "{base}/v1/listen?model={}&language={}&encoding=linear16&sample_rate=16000&channels=1&punctuate=true&smart_format=true",
                e.model, e.language
            ),
            key: e.api_key.clone().map(SecretString::from),
        })
    }

    fn unreachable(&self, reason: impl ToString) -> EngineError {
        EngineError::Unreachable {
            url: self.url.split('?').next().unwrap_or_default().to_string(),
            reason: reason.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl SpeechEngine for DeepgramEngine {
    fn name(&self) -> &str {
        "deepgram"
    }

    async fn transcribe(&self, audio: &Pcm) -> Result<Vec<Recognized>, EngineError> {
        if audio.is_empty() {
            return Err(EngineError::Empty);
        }
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| self.unreachable(e))?;
        if let Some(k) = &self.key {
            let v = format!("Token {}", k.expose_secret())
                .parse()
                .map_err(|_| EngineError::Failed("the API key is not a valid header".into()))?;
            req.headers_mut().insert("authorization", v);
        }
        let (ws, _) = match tokio_tungstenite::connect_async_tls_with_config(
            req,
            None,
            false,
            meetbot_bot::audio_stream::tls(),
        )
        .await
        {
            Ok(x) => x,
            Err(tokio_tungstenite::tungstenite::Error::Http(r))
                if r.status() == 401 || r.status() == 403 =>
            {
                return Err(EngineError::Unauthorized(r.status().as_u16()));
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                return Err(EngineError::Http {
                    status: r.status().as_u16(),
                    body: String::new(),
                });
            }
            Err(e) => return Err(self.unreachable(e)),
        };
        // 100 ms of linear16 per message, as a live client sends it.
        let (mut tx, mut rx) = ws.split();
        let send = async {
            for chunk in audio.chunks(1600) {
                let mut b = Vec::with_capacity(chunk.len() * 2);
                for s in chunk {
                    b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
                }
                tx.send(Message::Binary(b.into())).await?;
            }
            tx.send(Message::Text(r#"{"type":"CloseStream"}"#.into()))
                .await?;
            Ok::<_, tokio_tungstenite::tungstenite::Error>(tx)
        };
        let receive = async {
            let mut out = Vec::new();
            while let Some(m) = rx.next().await {
                let m = m.map_err(|e| self.unreachable(e))?;
                let text = match m {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let msg: Msg = serde_json::from_str(&text)
                    .map_err(|e| EngineError::Protocol(crate::engine::json_error(&e)))?;
                match msg.kind.as_str() {
                    "Results" if msg.is_final => {
                        let t = msg
                            .channel
                            .and_then(|c| c.alternatives.into_iter().next())
                            .map(|a| clean_text(&a.transcript))
                            .unwrap_or_default();
                        if !t.is_empty() {
                            out.push(Recognized {
                                start_ms: (msg.start.max(0.0) * 1000.0) as u64,
                                end_ms: ((msg.start + msg.duration).max(0.0) * 1000.0) as u64,
                                text: t,
                            });
                        }
                    }
                    "Metadata" => break,
                    "Error" => {
                        return Err(EngineError::Failed(
                            msg.description.unwrap_or_else(|| "Deepgram error".into()),
                        ));
                    }
                    _ => {}
                }
            }
            Ok(out)
        };
        let (sent, got) = tokio::time::timeout(Duration::from_secs(120), async {
            tokio::join!(send, receive)
        })
        .await
        .map_err(|_| self.unreachable("no final result within 120 s"))?;
        if let Ok(mut tx) = sent {
            let _ = tx.close().await;
        }
        got
    }
}

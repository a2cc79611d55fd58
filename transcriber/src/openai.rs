//! OpenAI-compatible transcription over HTTP: `POST /v1/audio/transcriptions` (multipart: the
//! audio as a WAV built in memory, `model`, `language`, `response_format=verbose_json`).
//! Works with OpenAI, Azure OpenAI deployments (`/openai/deployments/<d>/audio/transcriptions
//! ?api-version=...`, `api-key` header) and self-hosted faster-whisper servers.

use crate::audio::{Pcm, wav_bytes};
use crate::engine::{EngineError, Recognized, SpeechEngine, clean_text};
use meetbot_core::config::EngineConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

pub struct OpenAiEngine {
    client: reqwest::Client,
    url: String,
    model: String,
    language: String,
    key: Option<SecretString>,
    azure: bool,
}

#[derive(Deserialize)]
struct Verbose {
    #[serde(default)]
    text: String,
    #[serde(default)]
    segments: Option<Vec<VSeg>>,
}

#[derive(Deserialize)]
struct VSeg {
    start: f64,
    end: f64,
    text: String,
}

impl OpenAiEngine {
    pub fn from_config(e: &EngineConfig) -> Result<Self, EngineError> {
        let base = e
            .base_url
            .as_deref()
            .ok_or_else(|| EngineError::Failed("transcriber.engine.base_url is not set".into()))?
            .trim_end_matches('/');
        let (url, azure) = match (&e.azure_deployment, &e.azure_api_version) {
            (Some(d), Some(v)) => (
                format!("{base}/openai/deployments/{d}/audio/transcriptions?api-version={v}"),
                true,
            ),
            _ => (format!("{base}/v1/audio/transcriptions"), false),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| EngineError::Failed(e.to_string()))?;
        Ok(OpenAiEngine {
            client,
            url,
            model: e.model.clone(),
            language: e.language.clone(),
            key: e.api_key.clone().map(SecretString::from),
            azure,
        })
    }
}

#[async_trait::async_trait]
impl SpeechEngine for OpenAiEngine {
    fn name(&self) -> &str {
        "openai"
    }

    async fn transcribe(&self, audio: &Pcm) -> Result<Vec<Recognized>, EngineError> {
        if audio.is_empty() {
            return Err(EngineError::Empty);
        }
        let wav = wav_bytes(audio);
        // reqwest needs an owned body; it is dropped (not kept) once sent.
        let part = reqwest::multipart::Part::bytes(wav.to_vec())
            .file_name("audio.wav")
            .mime_str("audio/wav")
            .map_err(|e| EngineError::Failed(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", self.model.clone())
            .text("language", self.language.clone())
            .text("response_format", "verbose_json");
        let mut req = self.client.post(&self.url).multipart(form);
        if let Some(k) = &self.key {
            req = if self.azure {
                req.header("api-key", k.expose_secret())
            } else {
                req.bearer_auth(k.expose_secret())
            };
        }
        let resp = req.send().await.map_err(|e| EngineError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(EngineError::Unauthorized(status));
        }
        let body = resp.text().await.map_err(|e| EngineError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if !(200..300).contains(&status) {
            return Err(EngineError::Http {
                status,
                body: crate::engine::provider_error(&body),
            });
        }
        let v: Verbose = serde_json::from_str(&body)
            .map_err(|e| EngineError::Protocol(crate::engine::json_error(&e)))?;
        let dur_ms = audio.len() as u64 * 1000 / 16_000;
        Ok(match v.segments {
            Some(segs) => segs
                .into_iter()
                .filter_map(|s| {
                    let text = clean_text(&s.text);
                    (!text.is_empty()).then(|| Recognized {
                        start_ms: (s.start.max(0.0) * 1000.0) as u64,
                        end_ms: ((s.end.max(0.0) * 1000.0) as u64).min(dur_ms),
                        text,
                    })
                })
                .collect(),
            None => {
                let text = clean_text(&v.text);
                if text.is_empty() {
                    vec![]
                } else {
                    vec![Recognized {
                        start_ms: 0,
                        end_ms: dur_ms,
                        text,
                    }]
                }
            }
        })
    }
}

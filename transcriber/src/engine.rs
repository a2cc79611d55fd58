//! The `SpeechEngine` seam: 16 kHz mono audio of one utterance in, recognised text with offsets
//! out. Implementations: [`crate::whisper::WhisperEngine`] (whisper.cpp in process),
//! [`crate::openai::OpenAiEngine`] (OpenAI-compatible `/v1/audio/transcriptions`: OpenAI,
//! Azure OpenAI, faster-whisper servers) and [`crate::deepgram::DeepgramEngine`] (Deepgram live
//! streaming over WebSocket).

use crate::audio::Pcm;
use serde::{Deserialize, Serialize};

/// Recognised text for a part of the audio given to the engine; offsets are relative to the
/// start of that audio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recognized {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no audio to transcribe")]
    Empty,
    #[error(
        "the speech model could not be loaded from {path}: {reason} (run `meetbot model fetch`)"
    )]
    Model { path: String, reason: String },
    #[error("the speech engine failed: {0}")]
    Failed(String),
    #[error("the speech service at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the speech service refused the credentials (HTTP {0}); check the API key")]
    Unauthorized(u16),
    #[error("the speech service answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the speech service's answer was not understood: {0}")]
    Protocol(String),
}

#[async_trait::async_trait]
pub trait SpeechEngine: Send + Sync {
    /// A short name for logs and metrics (`whisper.cpp`, `openai`, `deepgram`).
    fn name(&self) -> &str;
    /// Transcribes one utterance (or a whole file). The audio is not kept.
    async fn transcribe(&self, audio: &Pcm) -> Result<Vec<Recognized>, EngineError>;
}

/// What a provider's error body says, for errors and logs: only the error's `type` and `code`
/// (OpenAI, Azure, Anthropic and Deepgram shapes), never its message, which may quote the
/// request (transcript text).
pub fn provider_error(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return "(the error body is not JSON)".into();
    };
    let e = if v["error"].is_object() {
        &v["error"]
    } else {
        &v
    };
    let field = |k: &str| match &e[k] {
        serde_json::Value::String(s) => Some(s.chars().take(64).collect::<String>()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match (field("type"), field("code").or_else(|| field("err_code"))) {
        (Some(t), Some(c)) => format!("{t} ({c})"),
        (Some(t), None) => t,
        (None, Some(c)) => c,
        (None, None) => "(no error type given)".into(),
    }
}

/// Where and how a provider's JSON failed to parse, without serde's message (which quotes the
/// offending value: it may be transcript text).
pub fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error in the JSON at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Collapses whitespace and drops the non-speech markers engines emit for silence or noise
/// (`[BLANK_AUDIO]`, `(music)`, ...).
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Word error rate of `hyp` against `reference`: word-level edit distance over reference
/// words, after lower-casing and dropping punctuation.
pub fn word_error_rate(reference: &str, hyp: &str) -> (usize, usize) {
    let norm = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| c.is_whitespace() || c == '-')
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (norm(reference), norm(hyp));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    (prev[h.len()], r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_extra_spaces_are_removed() {
        assert_eq!(
            clean_text(" [BLANK_AUDIO] hello  (music) world "),
            "hello world"
        );
        assert_eq!(clean_text("a ] b"), "a b");
    }

    #[test]
    fn provider_errors_keep_the_type_and_code_but_never_the_message() {
        let openai = r#"{"error":{"message":"the patient said hello","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(
            provider_error(openai),
            "invalid_request_error (context_length_exceeded)"
        );
        let anthropic = r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#;
        assert_eq!(provider_error(anthropic), "overloaded_error");
        let deepgram = r#"{"err_code":"Bad Request","err_msg":"quoted text"}"#;
        assert_eq!(provider_error(deepgram), "Bad Request");
        assert_eq!(
            provider_error("<html>quoted text</html>"),
            "(the error body is not JSON)"
        );
        assert!(!provider_error(openai).contains("patient"));
        let e = serde_json::from_str::<Vec<u64>>(r#"["the patient said hello"]"#).unwrap_err();
        assert!(!json_error(&e).contains("patient"), "{}", json_error(&e));
    }

    #[test]
    fn word_error_rate_counts_substitutions_insertions_deletions() {
        assert_eq!(word_error_rate("the cat sat", "the cat sat"), (0, 3));
        assert_eq!(word_error_rate("the cat sat", "The cat, sat."), (0, 3));
        assert_eq!(word_error_rate("the cat sat", "a cat"), (2, 3));
        assert_eq!(word_error_rate("the cat", "the big cat sat"), (2, 2));
        assert_eq!(word_error_rate("", "x"), (1, 0));
    }
}

//! A transcript: segments with participant, speaker label, offsets from the start of the
//! meeting and text. Stored as one sealed JSON document per meeting (the store's `Transcript`).

use meetbot_core::model::{Sealed, Transcript};
use meetbot_store::vault::{TenantVault, VaultError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The stream's participant id (opaque: a Janus feed id, a track id).
    pub participant: String,
    /// The name the meeting shows for that participant, when the platform tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<String>,
    pub language: String,
    pub engine: String,
    pub segments: Vec<Segment>,
    /// Who was in the call as the bot saw them join and leave, in the order they joined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence: Vec<crate::presence::Presence>,
}

impl TranscriptDoc {
    pub fn from_file_segments(segs: &[Segment], language: &str, engine: &str) -> Self {
        TranscriptDoc {
            meeting_id: None,
            language: language.into(),
            engine: engine.into(),
            segments: segs.to_vec(),
            presence: Vec::new(),
        }
    }

    /// Orders segments by start (then participant), the order people read a transcript in.
    pub fn sort(&mut self) {
        self.segments
            .sort_by(|a, b| (a.start_ms, &a.participant).cmp(&(b.start_ms, &b.participant)));
    }

    /// `Speaker: text` lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            let who = s.speaker.as_deref().unwrap_or(&s.participant);
            out.push_str(&format!("[{}] {who}: {}\n", clock(s.start_ms), s.text));
        }
        out
    }

    /// Seals the document into the store's record for `meeting_id`.
    pub fn seal(
        &self,
        vault: &TenantVault,
        id: &str,
        meeting_id: &str,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Transcript, VaultError> {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(self).unwrap_or_default());
        let segments = vault.seal::<Transcript>(id, "segments", &json)?;
        Ok(Transcript {
            id: id.into(),
            meeting_id: meeting_id.into(),
            language: Some(self.language.clone()),
            segments,
            created_at: chrono::Utc::now(),
            expires_at,
            held: None,
        })
    }

    pub fn open(vault: &TenantVault, t: &Transcript) -> Result<Self, OpenError> {
        open_json(vault, &t.id, &t.segments)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("the stored transcript {0} is not a transcript document: {1}")]
    Json(String, String),
}

fn open_json(vault: &TenantVault, id: &str, s: &Sealed) -> Result<TranscriptDoc, OpenError> {
    let plain = vault.open::<Transcript>(id, "segments", s)?;
    serde_json::from_slice(&plain)
        .map_err(|e| OpenError::Json(id.into(), crate::engine::json_error(&e)))
}

pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

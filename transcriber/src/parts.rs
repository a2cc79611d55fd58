//! Durable transcripts (decision 0041): each utterance's final segments are stored sealed as a
//! `TranscriptPart` as soon as they are recognised, and a stream that resumes on another
//! process (a restart, a crash, a rolling deploy) starts from what is stored: each
//! participant's frames up to its last stored utterance are skipped, its timeline and display
//! names continue. The bot keeps every frame until it is acknowledged, and a frame is
//! acknowledged only once everything up to it is stored or was silence ([`Durable`]).

use crate::transcript::Segment;
use chrono::{DateTime, Utc};
use meetbot_core::model::TranscriptPart;
use meetbot_store::vault::{TenantVault, VaultError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A part expires this long after it is written if its stream never ends (its transcriber and
/// every replica gone): long enough for any meeting, short enough not to become a second
/// transcript store.
pub const PART_LIFETIME: chrono::Duration = chrono::Duration::hours(48);

/// What a part holds, sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartBody {
    pub segments: Vec<Segment>,
    /// Display names by participant id as known when the part was made.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// Who joined and left so far, as known when the part was made (parts of names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence: Vec<crate::presence::Presence>,
}

/// The id of the part made of `participant`'s utterance that ended at frame `last_seq` of
/// `job` (the participant id digested: it is the bot's, of any length). A part of display
/// names only has an empty participant.
pub fn part_id(job: &str, stream: &str, participant: &str, last_seq: u64) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(participant.as_bytes());
    let s = sha2::Sha256::digest(stream.as_bytes());
    format!(
        "{job}.{}.{last_seq}.{}",
        hex::encode(&s[..4]),
        hex::encode(&d[..8])
    )
}

/// What a part needs besides its body.
pub struct PartOf<'a> {
    pub meeting_id: &'a str,
    pub job_id: &'a str,
    pub stream: &'a str,
    pub participant: &'a str,
    pub last_seq: u64,
    pub resume_ms: u64,
    pub last_ts: Option<u32>,
    pub stream_started_at: DateTime<Utc>,
}

pub fn seal(
    vault: &TenantVault,
    of: &PartOf<'_>,
    body: &PartBody,
) -> Result<TranscriptPart, VaultError> {
    let id = part_id(of.job_id, of.stream, of.participant, of.last_seq);
    let json = zeroize::Zeroizing::new(serde_json::to_vec(body).unwrap_or_default());
    let sealed = vault.seal::<TranscriptPart>(&id, "body", &json)?;
    let now = Utc::now();
    Ok(TranscriptPart {
        id,
        meeting_id: of.meeting_id.into(),
        job_id: of.job_id.into(),
        stream: of.stream.into(),
        participant: of.participant.into(),
        last_seq: of.last_seq,
        resume_ms: of.resume_ms,
        last_ts: of.last_ts,
        stream_started_at: of.stream_started_at,
        body: sealed,
        created_at: now,
        expires_at: Some(now + PART_LIFETIME),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("the stored transcript part {0} is not a part body: {1}")]
    Json(String, String),
}

pub fn open(vault: &TenantVault, p: &TranscriptPart) -> Result<PartBody, PartError> {
    let plain = vault.open::<TranscriptPart>(&p.id, "body", &p.body)?;
    serde_json::from_slice(&plain)
        .map_err(|e| PartError::Json(p.id.clone(), crate::engine::json_error(&e)))
}

/// Where one participant's stream resumes: its frames up to `skip_until` are stored already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    pub skip_until: u64,
    pub resume_ms: u64,
    pub last_ts: Option<u32>,
}

/// A stream's state rebuilt from its stored parts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    pub started_at: Option<DateTime<Utc>>,
    pub participants: BTreeMap<String, ResumePoint>,
    pub names: BTreeMap<String, String>,
}

impl Resumed {
    /// From a job's parts and the display names their bodies hold (any order), for its bot
    /// stream `stream`: the timeline starts with the job's first stream, names come from every
    /// stream, resume points from `stream`'s parts only (another bot numbered its frames
    /// differently).
    pub fn from_parts(parts: &[(TranscriptPart, BTreeMap<String, String>)], stream: &str) -> Self {
        let mut r = Resumed::default();
        let mut by_seq: Vec<&(TranscriptPart, BTreeMap<String, String>)> = parts.iter().collect();
        by_seq.sort_by_key(|(p, _)| p.last_seq);
        for (p, names) in by_seq {
            r.started_at = Some(match r.started_at {
                Some(s) => s.min(p.stream_started_at),
                None => p.stream_started_at,
            });
            r.names
                .extend(names.iter().map(|(k, v)| (k.clone(), v.clone())));
            if !p.participant.is_empty() && p.stream == stream {
                r.participants.insert(
                    p.participant.clone(),
                    ResumePoint {
                        skip_until: p.last_seq,
                        resume_ms: p.resume_ms,
                        last_ts: p.last_ts,
                    },
                );
            }
        }
        r
    }
}

/// The first frames of work handed to the engine (or names to store) and not yet stored: the
/// stream is acknowledged only below the lowest of them.
#[derive(Debug, Default)]
pub struct Durable {
    pending: BTreeMap<u64, usize>,
}

impl Durable {
    pub fn add(&mut self, first_seq: u64) {
        *self.pending.entry(first_seq).or_default() += 1;
    }
    pub fn done(&mut self, first_seq: u64) {
        if let Some(n) = self.pending.get_mut(&first_seq) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&first_seq);
            }
        }
    }
    pub fn lowest(&self) -> Option<u64> {
        self.pending.keys().next().copied()
    }
}

/// Segments of several parts (and of an earlier transcript) merged: ordered, each once (a part
/// stored twice, or merged into a transcript before a crash kept it from being removed, counts
/// once).
pub fn merge(into: &mut Vec<Segment>, more: impl IntoIterator<Item = Segment>) {
    into.extend(more);
    into.sort_by(|a, b| {
        (a.start_ms, &a.participant, a.end_ms, &a.text).cmp(&(
            b.start_ms,
            &b.participant,
            b.end_ms,
            &b.text,
        ))
    });
    into.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(participant: &str, last_seq: u64, resume_ms: u64, at: i64) -> TranscriptPart {
        TranscriptPart {
            id: part_id("job", "s1", participant, last_seq),
            meeting_id: "m".into(),
            job_id: "job".into(),
            stream: "s1".into(),
            participant: participant.into(),
            last_seq,
            resume_ms,
            last_ts: Some(last_seq as u32 * 960),
            stream_started_at: DateTime::from_timestamp(at, 0).unwrap(),
            body: meetbot_core::model::Sealed {
                key_version: 1,
                nonce: vec![],
                ciphertext: vec![],
            },
            created_at: Utc::now(),
            expires_at: None,
        }
    }

    fn seg(p: &str, start: u64, text: &str) -> Segment {
        Segment {
            participant: p.into(),
            speaker: None,
            start_ms: start,
            end_ms: start + 1000,
            text: text.into(),
        }
    }

    #[test]
    fn a_resumed_stream_skips_each_participants_stored_frames_and_keeps_names_and_its_start() {
        let names = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let parts = vec![
            (part("bob", 900, 18_000, 100), names("bob", "Bob")),
            (part("alice", 300, 6_000, 90), names("alice", "Alice")),
            (part("alice", 700, 14_000, 95), BTreeMap::new()),
            (part("", 50, 0, 120), names("carol", "Carol")),
        ];
        let mut other = part("alice", 9_000, 1, 80);
        other.stream = "s0".into();
        let mut parts = parts;
        parts.push((other, names("dave", "Dave")));
        let r = Resumed::from_parts(&parts, "s1");
        assert_eq!(
            r.started_at,
            DateTime::from_timestamp(80, 0),
            "the job's first stream began the timeline"
        );
        assert_eq!(
            r.participants["alice"].skip_until, 700,
            "an earlier bot's frame numbers do not count"
        );
        assert_eq!(r.participants["alice"].resume_ms, 14_000);
        assert_eq!(r.participants["bob"].skip_until, 900);
        assert!(
            !r.participants.contains_key(""),
            "a names part is no participant"
        );
        assert_eq!(r.names.len(), 4);
    }

    #[test]
    fn part_ids_are_the_same_for_the_same_audio_and_differ_per_participant_and_frame() {
        let id = |j, s, p, n| part_id(j, s, p, n);
        assert_eq!(id("j", "s", "p1", 5), id("j", "s", "p1", 5));
        assert_ne!(id("j", "s", "p1", 5), id("j", "s", "p2", 5));
        assert_ne!(id("j", "s", "p1", 5), id("j", "s", "p1", 6));
        assert_ne!(id("j", "s", "p1", 5), id("k", "s", "p1", 5));
        assert_ne!(
            id("j", "s", "p1", 5),
            id("j", "t", "p1", 5),
            "a relaunched bot"
        );
        // A participant id of any length or content makes a short, plain id.
        let long = "x.y/z".repeat(10_000);
        assert!(id("j", "s", &long, 1).len() < 64);
    }

    #[test]
    fn merging_a_part_twice_keeps_each_segment_once_in_order() {
        let mut all = vec![seg("a", 2000, "two")];
        merge(&mut all, [seg("b", 1000, "one"), seg("a", 2000, "two")]);
        merge(&mut all, [seg("b", 1000, "one")]);
        let texts: Vec<_> = all.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
    }

    #[test]
    fn the_acknowledgement_floor_is_the_lowest_unstored_first_frame() {
        let mut d = Durable::default();
        assert_eq!(d.lowest(), None);
        d.add(10);
        d.add(4);
        d.add(4);
        assert_eq!(d.lowest(), Some(4));
        d.done(4);
        assert_eq!(d.lowest(), Some(4), "two works began at frame 4");
        d.done(4);
        assert_eq!(d.lowest(), Some(10));
        d.done(99); // unknown: nothing changes
        d.done(10);
        assert_eq!(d.lowest(), None);
    }
}

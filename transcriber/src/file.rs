//! Transcribing a whole recording (a file): segmented by voice activity so each engine call gets
//! one utterance (whisper works on at most 30 s), with progress, offsets from the file's start.

use crate::audio::RATE;
use crate::engine::{EngineError, SpeechEngine};
use crate::transcript::Segment;
use crate::vad::{Vad, VadSettings};

const WINDOW_MS: u64 = 28_000;

/// Transcribes `pcm` (16 kHz mono); `progress(done, total)` in samples.
pub async fn transcribe_pcm(
    engine: &dyn SpeechEngine,
    pcm: &[f32],
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Segment>, EngineError> {
    if pcm.is_empty() {
        return Err(EngineError::Empty);
    }
    let mut vad = Vad::new(VadSettings::default());
    let mut utterances = vad.push(pcm);
    utterances.extend(vad.finish());
    let total = pcm.len();
    // Consecutive utterances are sent together, up to 28 s a window: engines cost about the
    // same for a short utterance as for a full window (whisper encodes 30 s at a time).
    let mut windows: Vec<(u64, u64)> = Vec::new();
    for u in &utterances {
        match windows.last_mut() {
            Some((s, e)) if u.end_ms() - *s <= WINDOW_MS => *e = u.end_ms(),
            _ => windows.push((u.start_ms, u.end_ms())),
        }
    }
    drop(utterances);
    let mut out = Vec::new();
    progress(0, total);
    for (start, end) in windows {
        let a = (start * RATE as u64 / 1000) as usize;
        let b = ((end * RATE as u64 / 1000) as usize).min(total);
        let chunk = zeroize::Zeroizing::new(pcm[a.min(b)..b].to_vec());
        for r in engine.transcribe(&chunk).await? {
            out.push(Segment {
                participant: "audio".into(),
                speaker: None,
                start_ms: start + r.start_ms,
                end_ms: (start + r.end_ms).min(end),
                text: r.text,
            });
        }
        progress(b, total);
    }
    progress(total, total);
    Ok(out)
}

//! Transcribing a whole recording (a file): segmented by voice activity so each engine call gets
//! one utterance (whisper works on at most 30 s), with progress, offsets from the file's start.

use crate::audio::RATE;
use crate::engine::{EngineError, SpeechEngine};
use crate::transcript::Segment;
use crate::vad::{Vad, VadSettings};

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
    let mut out = Vec::new();
    progress(0, total);
    for u in utterances {
        for r in engine.transcribe(&u.pcm).await? {
            out.push(Segment {
                participant: "audio".into(),
                speaker: None,
                start_ms: u.start_ms + r.start_ms,
                end_ms: (u.start_ms + r.end_ms).min(u.end_ms()),
                text: r.text,
            });
        }
        progress((u.end_ms() * RATE as u64 / 1000) as usize, total);
    }
    progress(total, total);
    Ok(out)
}

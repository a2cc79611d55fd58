//! Voice-activity segmentation of one participant's 16 kHz audio into utterances.
//!
//! Energy-based with an adaptive noise floor, in 20 ms frames: speech starts after
//! `start_frames` loud frames and ends after `hangover` of quiet. Every utterance carries a
//! pre-roll (the audio before speech was detected), so the first syllable after a silence is
//! never cut; long speech is split at `max_utterance`. Buffers are zeroized when dropped.

use crate::audio::{Pcm, RATE};
use std::collections::VecDeque;
use std::time::Duration;
use zeroize::Zeroizing;

const FRAME: usize = (RATE / 50) as usize; // 20 ms

#[derive(Clone, Debug)]
pub struct VadSettings {
    pub pre_roll: Duration,
    pub hangover: Duration,
    pub start_frames: usize,
    pub min_speech: Duration,
    pub max_utterance: Duration,
    /// Frames louder than this (RMS, full scale 1.0) and `ratio` times the noise floor are speech.
    pub threshold: f32,
    pub ratio: f32,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            pre_roll: Duration::from_millis(400),
            hangover: Duration::from_millis(700),
            start_frames: 3,
            min_speech: Duration::from_millis(250),
            max_utterance: Duration::from_secs(25),
            threshold: 0.006,
            ratio: 3.0,
        }
    }
}

/// A stretch of speech: where it starts in the participant's timeline, and its samples.
pub struct Utterance {
    pub start_ms: u64,
    pub pcm: Pcm,
}

impl Utterance {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.pcm.len() as u64 * 1000 / RATE as u64
    }
}

fn frames(d: Duration) -> usize {
    (d.as_millis() as usize / 20).max(1)
}

pub struct Vad {
    s: VadSettings,
    /// Samples not yet a whole frame.
    partial: Zeroizing<Vec<f32>>,
    /// Recent quiet frames (the pre-roll), oldest first.
    ring: VecDeque<Zeroizing<Vec<f32>>>,
    /// The utterance being collected (including pre-roll and trailing hangover frames).
    current: Option<(u64, Zeroizing<Vec<f32>>)>,
    loud_run: usize,
    quiet_run: usize,
    speech_frames: usize,
    noise: f32,
    /// Frames seen so far (the timeline, 20 ms each).
    position: u64,
}

impl Vad {
    pub fn new(s: VadSettings) -> Self {
        Vad {
            s,
            partial: Zeroizing::new(Vec::new()),
            ring: VecDeque::new(),
            current: None,
            loud_run: 0,
            quiet_run: 0,
            speech_frames: 0,
            noise: 0.001,
            position: 0,
        }
    }

    /// Where the next sample falls in this participant's timeline, in ms.
    pub fn position_ms(&self) -> u64 {
        self.position * 20 + self.partial.len() as u64 * 1000 / RATE as u64
    }

    /// Feeds samples; returns the utterances that ended.
    pub fn push(&mut self, pcm: &[f32]) -> Vec<Utterance> {
        let mut out = Vec::new();
        self.partial.extend_from_slice(pcm);
        let whole = self.partial.len() / FRAME * FRAME;
        let data: Zeroizing<Vec<f32>> = Zeroizing::new(self.partial.drain(..whole).collect());
        for f in data.chunks_exact(FRAME) {
            if let Some(u) = self.frame(f) {
                out.push(u);
            }
        }
        out
    }

    fn frame(&mut self, f: &[f32]) -> Option<Utterance> {
        let rms = (f.iter().map(|v| v * v).sum::<f32>() / f.len() as f32).sqrt();
        // Hysteresis: inside an utterance, half the ratio keeps speech going.
        let ratio = if self.current.is_some() {
            self.s.ratio / 2.0
        } else {
            self.s.ratio
        };
        let loud = rms > self.s.threshold && rms > self.noise * ratio;
        // The floor follows quieter frames at once and louder ones slowly (about 4 s), so
        // steady background noise stops counting as speech.
        self.noise = if rms < self.noise {
            rms.max(1e-5)
        } else {
            self.noise * 0.995 + rms * 0.005
        };
        let t = self.position;
        self.position += 1;
        let frame = Zeroizing::new(f.to_vec());
        match self.current.as_mut() {
            None => {
                self.loud_run = if loud { self.loud_run + 1 } else { 0 };
                self.ring.push_back(frame);
                let keep = frames(self.s.pre_roll) + self.s.start_frames;
                while self.ring.len() > keep {
                    self.ring.pop_front();
                }
                if self.loud_run >= self.s.start_frames {
                    let n = self.ring.len() as u64;
                    let mut buf = Zeroizing::new(Vec::with_capacity(FRAME * 50));
                    for r in self.ring.drain(..) {
                        buf.extend_from_slice(&r);
                    }
                    self.current = Some(((t + 1 - n) * 20, buf));
                    self.speech_frames = self.loud_run;
                    self.quiet_run = 0;
                }
                None
            }
            Some((_, buf)) => {
                buf.extend_from_slice(&frame);
                if loud {
                    self.quiet_run = 0;
                    self.speech_frames += 1;
                } else {
                    self.quiet_run += 1;
                }
                let long = buf.len() >= frames(self.s.max_utterance) * FRAME;
                if self.quiet_run >= frames(self.s.hangover) || long {
                    self.end()
                } else {
                    None
                }
            }
        }
    }

    fn end(&mut self) -> Option<Utterance> {
        let (start_ms, pcm) = self.current.take()?;
        let speech = self.speech_frames;
        self.loud_run = 0;
        self.quiet_run = 0;
        self.speech_frames = 0;
        (speech >= frames(self.s.min_speech)).then_some(Utterance { start_ms, pcm })
    }

    /// Whether speech is going on (an utterance is being collected).
    pub fn has_speech(&self) -> bool {
        self.current.is_some()
    }

    /// The utterance in progress so far (a copy, zeroized on drop), if speech is going on.
    pub fn in_progress(&self) -> Option<Utterance> {
        self.current.as_ref().map(|(start_ms, pcm)| Utterance {
            start_ms: *start_ms,
            pcm: Zeroizing::new(pcm.to_vec()),
        })
    }

    /// Ends the stream: the utterance in progress (if any) is returned.
    pub fn finish(&mut self) -> Option<Utterance> {
        if !self.partial.is_empty() {
            let mut last = Zeroizing::new(std::mem::take(&mut *self.partial));
            last.resize(FRAME, 0.0);
            if let Some(u) = self.frame(&last) {
                return Some(u);
            }
        }
        self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: u64, amp: f32) -> Vec<f32> {
        (0..(ms * 16) as usize)
            .map(|i| (i as f32 * 0.2).sin() * amp)
            .collect()
    }

    #[test]
    fn speech_after_silence_keeps_its_first_syllable() {
        let mut v = Vad::new(VadSettings::default());
        let mut all = Vec::new();
        all.extend(tone(1000, 0.0001));
        // A soft onset (the first 60 ms below threshold), then speech.
        all.extend(tone(60, 0.004));
        all.extend(tone(800, 0.3));
        all.extend(tone(1500, 0.0001));
        let mut us = v.push(&all);
        us.extend(v.finish());
        assert_eq!(us.len(), 1);
        let u = &us[0];
        // Starts at least the pre-roll before the loud part (1060 ms).
        assert!(u.start_ms <= 1060 - 300, "{}", u.start_ms);
        assert!(u.end_ms() >= 1860, "{}", u.end_ms());
    }

    #[test]
    fn two_sentences_with_a_pause_are_two_utterances_and_clicks_none() {
        let mut v = Vad::new(VadSettings::default());
        let mut all = Vec::new();
        all.extend(tone(500, 0.3));
        all.extend(tone(1500, 0.0));
        all.extend(tone(40, 0.5)); // a click: too short for speech
        all.extend(tone(1500, 0.0));
        all.extend(tone(700, 0.3));
        let mut us = v.push(&all);
        us.extend(v.finish());
        assert_eq!(
            us.len(),
            2,
            "{:?}",
            us.iter().map(|u| u.start_ms).collect::<Vec<_>>()
        );
        assert!(us[1].start_ms >= 3000 && us[1].start_ms < 3540);
    }

    #[test]
    fn long_speech_is_split_at_the_maximum() {
        let s = VadSettings {
            max_utterance: Duration::from_secs(2),
            ..Default::default()
        };
        let mut v = Vad::new(s);
        // Speech-like: 200 ms syllables with 60 ms dips, for five seconds.
        let mut speech = Vec::new();
        while speech.len() < 5 * 16_000 {
            speech.extend(tone(200, 0.3));
            speech.extend(tone(60, 0.02));
        }
        let mut us = v.push(&speech);
        us.extend(v.finish());
        assert!(us.len() >= 2);
        assert!(us.iter().all(|u| u.pcm.len() <= 2 * 16_000 + 320));
    }

    #[test]
    fn steady_background_noise_is_not_speech() {
        let mut v = Vad::new(VadSettings::default());
        // Noise at 0.02 RMS: after the floor has adapted (a few seconds), nothing more is speech.
        let noise: Vec<f32> = (0..16_000 * 12)
            .map(|i| if i % 2 == 0 { 0.02 } else { -0.02 })
            .collect();
        let early = v.push(&noise[..16_000 * 7]);
        assert!(early.len() <= 1);
        let mut us = v.push(&noise[16_000 * 7..]);
        us.extend(v.finish());
        assert!(us.is_empty());
    }
}

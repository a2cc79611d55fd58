//! whisper.cpp in process (whisper-rs), for self-hosted and air-gapped use. The model is the GGML
//! file `meetbot model fetch` converts from the registry's CTranslate2 model.

use crate::audio::Pcm;
use crate::engine::{EngineError, Recognized, SpeechEngine, clean_text};
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

pub struct WhisperEngine {
    /// Shared with the blocking threads that decode.
    decoder: Arc<Decoder>,
    /// At most this many utterances decode at once.
    permits: Arc<tokio::sync::Semaphore>,
}

struct Decoder {
    ctx: WhisperContext,
    /// Decoder states kept between calls (each holds whisper.cpp's work buffers).
    states: Mutex<Vec<whisper_rs::WhisperState>>,
    threads: i32,
    beam: i32,
    language: String,
}

static LOG_HOOK: Once = Once::new();

impl WhisperEngine {
    /// Loads a GGML model. `threads` per decode; `parallel` decodes at once.
    pub fn load(
        path: &Path,
        threads: usize,
        parallel: usize,
        beam: usize,
        language: &str,
    ) -> Result<Self, EngineError> {
        // whisper.cpp's own messages go to tracing (debug level), never to stderr.
        LOG_HOOK.call_once(whisper_rs::install_logging_hooks);
        let err = |reason: String| EngineError::Model {
            path: path.display().to_string(),
            reason,
        };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let mut p = WhisperContextParameters::default();
        p.use_gpu(false);
        let ctx = WhisperContext::new_with_params(path, p).map_err(|e| err(e.to_string()))?;
        Ok(WhisperEngine {
            decoder: Arc::new(Decoder {
                ctx,
                states: Mutex::new(Vec::new()),
                threads: threads.clamp(1, 64) as i32,
                beam: beam.clamp(1, 16) as i32,
                language: language.to_string(),
            }),
            permits: Arc::new(tokio::sync::Semaphore::new(parallel.max(1))),
        })
    }

    /// Transcribes synchronously (for callers on a blocking thread).
    pub fn transcribe_blocking(&self, audio: &[f32]) -> Result<Vec<Recognized>, EngineError> {
        self.decoder.decode(audio)
    }
}

impl Decoder {
    fn decode(&self, audio: &[f32]) -> Result<Vec<Recognized>, EngineError> {
        if audio.is_empty() {
            return Err(EngineError::Empty);
        }
        let mut state = match self.states.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(s) => s,
            None => self
                .ctx
                .create_state()
                .map_err(|e| EngineError::Failed(e.to_string()))?,
        };
        let mut fp = if self.beam > 1 {
            FullParams::new(SamplingStrategy::BeamSearch {
                beam_size: self.beam,
                patience: -1.0,
            })
        } else {
            FullParams::new(SamplingStrategy::Greedy { best_of: 1 })
        };
        fp.set_n_threads(self.threads);
        fp.set_language(Some(&self.language));
        fp.set_translate(false);
        fp.set_no_context(true);
        fp.set_print_progress(false);
        fp.set_print_realtime(false);
        fp.set_print_special(false);
        fp.set_print_timestamps(false);
        fp.set_suppress_blank(true);
        fp.set_suppress_nst(true);
        // whisper.cpp needs at least one second of input; pad short utterances with silence.
        let padded;
        let input: &[f32] = if audio.len() < 16_000 + 1_600 {
            let mut v = zeroize::Zeroizing::new(audio.to_vec());
            v.resize(16_000 + 1_600, 0.0);
            padded = v;
            &padded
        } else {
            audio
        };
        state
            .full(fp, input)
            .map_err(|e| EngineError::Failed(e.to_string()))?;
        // Timestamps are in 10 ms units; none may lie beyond the audio given.
        let dur_ms = audio.len() as u64 * 1000 / 16_000;
        let mut out = Vec::new();
        for seg in state.as_iter() {
            let text = clean_text(
                &seg.to_str_lossy()
                    .map_err(|e| EngineError::Failed(e.to_string()))?,
            );
            if text.is_empty() {
                continue;
            }
            let start_ms = (seg.start_timestamp().max(0) as u64 * 10).min(dur_ms);
            out.push(Recognized {
                start_ms,
                end_ms: (seg.end_timestamp().max(0) as u64 * 10).clamp(start_ms, dur_ms),
                text,
            });
        }
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(state);
        Ok(out)
    }
}

#[async_trait::async_trait]
impl SpeechEngine for WhisperEngine {
    fn name(&self) -> &str {
        "whisper.cpp"
    }

    async fn transcribe(&self, audio: &Pcm) -> Result<Vec<Recognized>, EngineError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Failed("engine closed".into()))?;
        let decoder = self.decoder.clone();
        let audio = zeroize::Zeroizing::new(audio.to_vec());
        tokio::task::spawn_blocking(move || decoder.decode(&audio))
            .await
            .map_err(|e| EngineError::Failed(e.to_string()))?
    }
}

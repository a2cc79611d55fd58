//! The transcriber: the bots' audio in, transcripts and summaries out.
//!
//! - [`audio`]: WAV / Ogg-Opus files and Opus packets to 16 kHz mono, in memory only.
//! - [`vad`]: per-participant voice-activity segmentation with pre-roll.
//! - [`engine`]: the `SpeechEngine` seam; [`whisper`] is whisper.cpp in process.
//! - [`parts`]: each utterance's text stored as it is made; a resumed stream starts from it.
//! - [`convert`] and [`model`]: the registry's CTranslate2 model to a GGML file.

pub mod audio;
pub mod convert;
pub mod deepgram;
pub mod engine;
pub mod file;
pub mod model;
pub mod openai;
pub mod parts;
pub mod presence;
pub mod service;
pub mod summarize;
pub mod transcript;
pub mod vad;
pub mod whisper;

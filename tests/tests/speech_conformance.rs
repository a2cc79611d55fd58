//! The `SpeechEngine` and `Summarizer` seams: every implementation obeys the same contract.
//! Engines: whisper.cpp in process (real tiny.en), OpenAI-compatible HTTP (a real
//! faster-whisper server), Deepgram live (its stand-in). Summarizers: extractive, OpenAI chat,
//! Azure OpenAI chat and Anthropic Messages (their stand-in).

use meetbot_core::config::{EngineConfig, EngineKind, SummarizerConfig, SummarizerKind};
use meetbot_testsupport::ai::{ChatStandIn, DeepgramStandIn};
use meetbot_testsupport::speech::{self, MEETING};
use meetbot_transcriber::audio::decode_file;
use meetbot_transcriber::engine::{EngineError, SpeechEngine};
use meetbot_transcriber::summarize::{SummarizeError, Summarizer};
use meetbot_transcriber::transcript::{Segment, TranscriptDoc};
use std::sync::Arc;

async fn engine_contract(e: Arc<dyn SpeechEngine>) {
    let name = e.name().to_string();
    // Empty audio is an error, not an empty answer or a crash.
    let empty = meetbot_transcriber::audio::Pcm::default();
    assert!(
        matches!(e.transcribe(&empty).await, Err(EngineError::Empty)),
        "{name}"
    );
    // Speech gives cleaned text with offsets inside the audio.
    let (voice, text) = MEETING[9];
    let (rate, pcm) = speech::espeak(text, voice);
    let audio = decode_file(&speech::wav(rate, &pcm)).unwrap();
    let dur_ms = audio.len() as u64 * 1000 / 16_000;
    // Two requests at once both succeed (engines are shared by every session).
    let (a, b) = tokio::join!(e.transcribe(&audio), e.transcribe(&audio));
    for r in [a.unwrap(), b.unwrap()] {
        assert!(!r.is_empty(), "{name}: no text");
        for seg in &r {
            assert!(
                seg.start_ms <= seg.end_ms && seg.end_ms <= dur_ms + 1000,
                "{name}: {seg:?}"
            );
            assert_eq!(seg.text, seg.text.trim(), "{name}");
            assert!(
                !seg.text.contains("  ") && !seg.text.contains('['),
                "{name}: {:?}",
                seg.text
            );
        }
    }
}

#[tokio::test]
async fn every_speech_engine_meets_the_contract() {
    engine_contract(Arc::new(
        meetbot_transcriber::whisper::WhisperEngine::load(&speech::whisper_model(), 2, 1, 5, "en")
            .unwrap(),
    ))
    .await;
    let fws = speech::FasterWhisperServer::start();
    engine_contract(Arc::new(
        meetbot_transcriber::openai::OpenAiEngine::from_config(&EngineConfig {
            kind: EngineKind::Openai,
            model: "tiny.en".into(),
            base_url: Some(fws.url()),
            ..Default::default()
        })
        .unwrap(),
    ))
    .await;
    let dg = DeepgramStandIn::start("k", "our budget is under discussion").await;
    engine_contract(Arc::new(
        meetbot_transcriber::deepgram::DeepgramEngine::from_config(&EngineConfig {
            kind: EngineKind::Deepgram,
            model: "nova-2".into(),
            base_url: Some(dg.url()),
            api_key: Some("k".into()),
            ..Default::default()
        })
        .unwrap(),
    ))
    .await;
}

async fn summarizer_contract(s: Box<dyn Summarizer>) {
    let name = s.name().to_string();
    let empty = TranscriptDoc {
        meeting_id: None,
        language: "en".into(),
        engine: "t".into(),
        segments: vec![],
        presence: vec![],
    };
    assert!(
        matches!(s.summarize(&empty).await, Err(SummarizeError::Empty)),
        "{name}"
    );
    let doc = TranscriptDoc {
        segments: vec![
            Segment {
                participant: "p1".into(),
                speaker: Some("Dana".into()),
                start_ms: 0,
                end_ms: 3000,
                text: "We decided to renew the hosting contract. I will send the signed copy by Friday.".into(),
            },
            Segment {
                participant: "p2".into(),
                speaker: Some("Eli".into()),
                start_ms: 3000,
                end_ms: 6000,
                text: "The hosting contract costs less this year.".into(),
            },
        ],
        ..empty
    };
    let sum = s.summarize(&doc).await.unwrap();
    assert!(!sum.overview.is_empty(), "{name}: {sum:?}");
    assert!(
        sum.action_items
            .iter()
            .any(|a| a.owner.as_deref() == Some("Dana")),
        "{name}: {sum:?}"
    );
}

#[tokio::test]
async fn every_summarizer_meets_the_contract() {
    summarizer_contract(Box::new(meetbot_transcriber::summarize::Extractive)).await;
    let chat = ChatStandIn::start("key").await;
    for (kind, azure) in [
        (SummarizerKind::Openai, false),
        (SummarizerKind::Openai, true),
        (SummarizerKind::Anthropic, false),
    ] {
        summarizer_contract(
            meetbot_transcriber::summarize::from_config(&SummarizerConfig {
                kind,
                base_url: Some(chat.url()),
                model: Some("m".into()),
                api_key: Some("key".into()),
                azure_deployment: azure.then(|| "d".into()),
                azure_api_version: azure.then(|| "2024-10-21".into()),
                ..Default::default()
            })
            .unwrap(),
        )
        .await;
    }
}

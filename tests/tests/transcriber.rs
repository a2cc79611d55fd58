//! The transcriber with real speech (espeak-ng in three voices) and the real tiny.en model:
//! accuracy of the in-process engine, the bot's audio stream turned into a sealed transcript and
//! summary (no plaintext and no audio in the raw store), the HTTP engine against a real
//! faster-whisper server, and the Deepgram / chat-model protocols against their stand-ins.

mod common;

use meetbot_bot::audio_stream::{Outgoing, StreamError, StreamSettings, job_token, stream_audio};
use meetbot_bot::connector::AudioPacket;
use meetbot_core::config::{EngineConfig, EngineKind, SummarizerConfig, SummarizerKind};
use meetbot_core::model::{Summary, TenantSettings};
use meetbot_delivery::outbox::{Outbox, RetryPolicy};
use meetbot_delivery::slack::SlackNotifier;
use meetbot_testsupport::delivery::SlackStandIn;
use meetbot_testsupport::speech::{self, MEETING};
use meetbot_testsupport::{contains, raw_bytes};
use meetbot_transcriber::audio::decode_file;
use meetbot_transcriber::engine::{SpeechEngine, word_error_rate};
use meetbot_transcriber::service::{Engines, Metrics, Service, Settings};
use meetbot_transcriber::summarize::{Extractive, SummaryDoc};
use meetbot_transcriber::transcript::{Segment, TranscriptDoc};
use meetbot_transcriber::whisper::WhisperEngine;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn whisper() -> Arc<WhisperEngine> {
    Arc::new(WhisperEngine::load(&speech::whisper_model(), 2, 1, 5, "en").unwrap())
}

fn sentence_pcm(i: usize) -> meetbot_transcriber::audio::Pcm {
    let (voice, text) = MEETING[i];
    let (rate, pcm) = speech::espeak(text, voice);
    decode_file(&speech::wav(rate, &pcm)).unwrap()
}

#[tokio::test]
async fn whisper_tiny_en_transcribes_three_voices_within_fifteen_percent_wer() {
    let engine = whisper();
    let (mut errors, mut words) = (0, 0);
    for (i, (_, said)) in MEETING.iter().enumerate().take(9) {
        let got = engine.transcribe(&sentence_pcm(i)).await.unwrap();
        let text: Vec<_> = got.iter().map(|r| r.text.as_str()).collect();
        let (e, n) = word_error_rate(said, &text.join(" "));
        eprintln!("{said} | {}", text.join(" "));
        errors += e;
        words += n;
    }
    let wer = errors as f64 / words as f64;
    eprintln!("WER {errors}/{words} = {:.1}%", wer * 100.0);
    assert!(wer <= 0.15, "WER {:.1}% > 15%", wer * 100.0);
}

struct Fixture {
    tenants: Arc<meetbot_store::vault::Tenants>,
    store: Arc<dyn meetbot_store::Store>,
    tenant: meetbot_core::TenantId,
    dir: tempfile::TempDir,
    url: String,
    metrics: Metrics,
    secret: SecretString,
    slack: SlackStandIn,
    outbox: Arc<Outbox>,
    _task: tokio::task::JoinHandle<()>,
}

async fn fixture(engine: Arc<dyn SpeechEngine>) -> Fixture {
    let (tenants, store, tenant, dir) = common::embedded_tenant("Clinic").await;
    store
        .insert_bot_job(
            &tenant,
            &speech::joined_job("job-1", "meeting-1", &format!("{tenant}:evt-1")),
        )
        .await
        .unwrap();
    let secret = SecretString::from("a shared secret of the bots".to_string());
    let metrics = Metrics::new();
    let svc = Service::new(
        tenants.clone(),
        Engines::single(engine),
        Arc::new(Extractive),
        Settings {
            secret: secret.clone(),
            vad: Default::default(),
            retention: Some(Duration::from_secs(30 * 86_400)),
            partial_every: Some(Duration::from_millis(1500)),
            meeting_pages: None,
            names: Some(Arc::new(
                meetbot_redact::Names::load(&speech::names_dataset()).unwrap(),
            )),
        },
        metrics.clone(),
    );
    // Summaries go to the tenant's Slack channel (a stand-in of the Web API).
    let slack = SlackStandIn::start("xoxb-clinic").await;
    let outbox = Arc::new(
        Outbox::new(store.clone(), tenants.clone(), RetryPolicy::default()).with(Arc::new(
            SlackNotifier::new(&slack.base_url(), "xoxb-clinic".to_string().into()).unwrap(),
        )),
    );
    svc.deliver_through(outbox.clone());
    let mut settings = TenantSettings::new(Default::default(), chrono::Utc::now());
    settings.delivery.slack_channel = Some("C0123CLINIC".into());
    store.put_tenant_settings(&tenant, &settings).await.unwrap();
    let (addr, task) = meetbot_testsupport::serve_on_loopback(svc.router()).await;
    Fixture {
        tenants,
        store,
        tenant,
        dir,
        url: format!("ws://{addr}/v1/audio"),
        metrics,
        secret,
        slack,
        outbox,
        _task: task,
    }
}

impl Fixture {
    fn settings(&self, job: &str, token: &str) -> StreamSettings {
        StreamSettings {
            url: format!("{}/{}/{job}", self.url, self.tenant),
            token: SecretString::from(token.to_string()),
            buffer_frames: 20_000,
            max_outage: Duration::from_secs(10),
            trusted_ca: Vec::new(),
        }
    }
    fn token(&self, job: &str) -> String {
        job_token(
            &self.secret,
            self.tenant.as_str(),
            job,
            Duration::from_secs(3600),
        )
    }

    /// Follows `job`'s live segments (as a dashboard would); the task ends with the stream.
    async fn follow_live(&self, job: &str) -> tokio::task::JoinHandle<String> {
        let live_url = self
            .url
            .replace("ws://", "http://")
            .replace("/v1/audio", &format!("/v1/live/{}/{job}", self.tenant));
        let live = reqwest::Client::new()
            .get(&live_url)
            .bearer_auth(self.token(job))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200);
        tokio::spawn(async move { live.text().await.unwrap_or_default() })
    }
}

/// `pcm48` as one participant's Opus frames, numbered from 0.
async fn send_speech(tx: &mpsc::Sender<Outgoing>, participant: &str, pcm48: &[i16]) {
    for (k, p) in speech::opus_packets(pcm48).into_iter().enumerate() {
        tx.send(Outgoing::Audio(AudioPacket {
            participant: participant.into(),
            ssrc: 1,
            sequence: k as u16,
            timestamp: k as u32 * 960,
            payload: p,
            received_at: Instant::now(),
        }))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn bot_audio_stream_becomes_a_sealed_transcript_and_summary_with_live_segments() {
    let f = fixture(whisper()).await;
    // Live segments, as a dashboard would follow them.
    let live_task = f.follow_live("job-1").await;

    // Two participants take turns: alice says sentences 5 and 7, bob says 11 and 18.
    let turns = [("alice", 5usize), ("bob", 11), ("alice", 7), ("bob", 18)];
    let (tx, rx) = mpsc::channel(4096);
    let stream = tokio::spawn(stream_audio(f.settings("job-1", &f.token("job-1")), rx));
    let mut ts = std::collections::HashMap::new();
    for (n, (who, i)) in turns.iter().enumerate() {
        say(&tx, &mut ts, who, *i).await;
        if n == 1 {
            // A corrupt packet in the middle: counted, not fatal.
            tx.send(Outgoing::Audio(AudioPacket {
                participant: "bob".into(),
                ssrc: 2,
                sequence: 0,
                timestamp: ts["bob"],
                payload: vec![0xff, 0xff, 0xfe, 0x01],
                received_at: Instant::now(),
            }))
            .await
            .unwrap();
        }
    }
    drop(tx);
    let rep = stream.await.unwrap().unwrap();
    assert_eq!(
        rep.acked,
        rep.frames + 1,
        "every frame and the end acknowledged"
    );

    // The transcript is stored sealed: the raw store holds neither the words nor any audio.
    let rec = f
        .store
        .transcript_for_meeting(&f.tenant, "meeting-1")
        .await
        .unwrap()
        .expect("transcript stored");
    assert!(rec.expires_at.is_some(), "retention applied");
    let vault = f.tenants.vault(&f.tenant).await.unwrap();
    let (doc, alice, bob) = heard(&f).await;
    words_within_a_fifth(&alice, &[5, 7], &bob, &[11, 18]);
    let raw = raw_bytes(f.dir.path());
    assert!(
        contains(&raw, b"meeting-1"),
        "the raw bytes include the tenant's database (its unsealed ids)"
    );
    for w in ["Sarah", "report", "Tuesday", "workshop"] {
        assert!(
            !contains(&raw, w.as_bytes()),
            "{w:?} in plaintext in the raw store"
        );
    }
    for magic in [&b"RIFF"[..], b"OggS", b"MBA1", b"OpusHead"] {
        assert!(!contains(&raw, magic), "audio ({magic:?}) in the raw store");
    }
    assert!(f.metrics.decode_errors.get() >= 1);
    // Participants the bot named nobody for are in the call from when they were first heard.
    let mut heard_from: Vec<_> = doc
        .presence
        .iter()
        .map(|p| p.participant.as_str())
        .collect();
    heard_from.sort_unstable();
    assert_eq!(heard_from, ["alice", "bob"], "{:?}", doc.presence);
    assert!(
        doc.presence
            .iter()
            .all(|p| p.name.is_none() && p.left_ms.is_none())
    );

    // The summary: sealed too, with the decision and Sarah's action item (tiny.en may spell
    // her "Sara").
    let sum = f
        .store
        .summary_for_meeting(&f.tenant, "meeting-1")
        .await
        .unwrap()
        .expect("summary stored");
    let body = vault.open::<Summary>(&sum.id, "body", &sum.body).unwrap();
    let sum: SummaryDoc = serde_json::from_slice(&body).unwrap();
    assert!(
        sum.decisions.iter().any(|d| d.contains("decided")),
        "{sum:?}"
    );
    assert!(
        sum.action_items
            .iter()
            .any(|a| a.owner.as_deref().is_some_and(|o| o.starts_with("Sar"))),
        "{sum:?}"
    );

    // The summary went to the tenant's Slack channel, once, with Sarah's action item.
    let start = Instant::now();
    while f.slack.accepted().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no summary delivered"
        );
        f.outbox.run_once(&f.tenant, 10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.outbox.run_once(&f.tenant, 10).await.unwrap();
    let posted = f.slack.accepted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["channel"], "C0123CLINIC");
    let blocks = posted[0]["blocks"].to_string();
    assert!(
        blocks.contains("*Action items*") && blocks.contains("Sar"),
        "{blocks}"
    );
    // The outbox record holds the message sealed: the raw store still has no transcript words.
    let raw = raw_bytes(f.dir.path());
    for w in ["Sarah", "workshop"] {
        assert!(
            !contains(&raw, w.as_bytes()),
            "{w:?} in plaintext in the raw store"
        );
    }

    // The live stream carried each segment, then the end.
    let events = tokio::time::timeout(Duration::from_secs(10), live_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        events.matches("event: segment").count(),
        doc.segments.len(),
        "{events}"
    );
    assert!(events.contains("event: end\ndata: stored"), "{events}");
    // Partial results came for utterances still going on (the engine was idle), not stored.
    assert!(events.contains("event: partial"), "{events}");
    assert!(events.contains("\"final\":false") && events.contains("\"final\":true"));
    assert!(
        !events.contains("latency_seconds\":-"),
        "latencies are measured"
    );
}

#[tokio::test]
async fn a_token_for_another_job_is_refused() {
    let f = fixture(whisper()).await;
    let (tx, rx) = mpsc::channel(8);
    drop(tx);
    let r = stream_audio(f.settings("job-1", &f.token("job-2")), rx).await;
    assert!(matches!(r, Err(StreamError::Unauthorized)), "{r:?}");
    let live = reqwest::get(
        f.url
            .replace("ws://", "http://")
            .replace("/v1/audio", &format!("/v1/live/{}/job-1", f.tenant)),
    )
    .await
    .unwrap();
    assert_eq!(live.status(), 401);
}

#[tokio::test]
async fn an_earlier_bots_audio_token_is_refused_once_a_new_ticket_holds_the_job() {
    use meetbot_bot::audio_stream::{job_token_expiring, unix_now};
    let f = fixture(whisper()).await;
    // Two tickets of one job, the second (a relaunch) now the job's: each carries its own
    // audio token, told apart by its expiry.
    let (old_exp, new_exp) = (unix_now() + 3600, unix_now() + 3700);
    let cur = f
        .store
        .get_bot_job(&f.tenant, "job-1")
        .await
        .unwrap()
        .unwrap();
    let mut j = cur.value.clone();
    j.ticket = Some(meetbot_core::model::TicketRecord {
        id: "second".into(),
        control_sha256: "00".repeat(32),
        audio_expires: Some(new_exp),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    });
    f.store
        .update_bot_job(&f.tenant, &j, cur.version)
        .await
        .unwrap();
    let old = job_token_expiring(&f.secret, f.tenant.as_str(), "job-1", old_exp);
    let (tx, rx) = mpsc::channel(8);
    drop(tx);
    let r = stream_audio(f.settings("job-1", &old), rx).await;
    assert!(matches!(r, Err(StreamError::Unauthorized)), "{r:?}");
    assert_eq!(f.metrics.frames.get(), 0);
    // The current bot's token opens the stream.
    let new = job_token_expiring(&f.secret, f.tenant.as_str(), "job-1", new_exp);
    let (tx, rx) = mpsc::channel(8);
    drop(tx);
    let r = stream_audio(f.settings("job-1", &new), rx).await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn an_expired_audio_token_is_refused_for_the_stream_and_the_live_text() {
    let f = fixture(whisper()).await;
    let now = meetbot_bot::audio_stream::unix_now();
    let expired = meetbot_bot::audio_stream::job_token_expiring(
        &f.secret,
        f.tenant.as_str(),
        "job-1",
        now - 1,
    );
    let (tx, rx) = mpsc::channel(8);
    drop(tx);
    let r = stream_audio(f.settings("job-1", &expired), rx).await;
    assert!(matches!(r, Err(StreamError::Unauthorized)), "{r:?}");
    let live_url = f
        .url
        .replace("ws://", "http://")
        .replace("/v1/audio", &format!("/v1/live/{}/job-1", f.tenant));
    let live = reqwest::Client::new()
        .get(&live_url)
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 401);
    assert!(live.text().await.unwrap().contains("expired"));
    // The old never-expiring form (the bare MAC) is malformed now.
    let old = expired.rsplit('.').next().unwrap().to_string();
    let live = reqwest::Client::new()
        .get(&live_url)
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 401);
    assert_eq!(f.metrics.frames.get(), 0);
}

#[tokio::test]
async fn a_valid_audio_token_replayed_after_the_transcript_was_stored_is_refused_and_appends_nothing()
 {
    let f = fixture(whisper()).await;
    let token = f.token("job-1");
    let (rate, pcm) = speech::espeak(MEETING[5].1, "en-us");
    let mut pcm48 = speech::resample(&pcm, rate, 48_000);
    pcm48.extend(std::iter::repeat_n(0i16, 48_000));
    // The meeting: streamed to its end, the transcript stored.
    let (tx, rx) = mpsc::channel(4096);
    let stream = tokio::spawn(stream_audio(f.settings("job-1", &token), rx));
    send_speech(&tx, "alice", &pcm48).await;
    drop(tx);
    stream.await.unwrap().unwrap();
    let before = f
        .store
        .transcript_for_meeting(&f.tenant, "meeting-1")
        .await
        .unwrap()
        .expect("transcript stored");
    let frames = f.metrics.frames.get();
    // After the meeting, the same (unexpired) token is replayed with more speech.
    let (tx, rx) = mpsc::channel(4096);
    let replay = tokio::spawn(stream_audio(f.settings("job-1", &token), rx));
    send_speech(&tx, "mallory", &pcm48).await;
    drop(tx);
    let r = tokio::time::timeout(Duration::from_secs(20), replay)
        .await
        .expect("the replay ends")
        .unwrap();
    assert!(matches!(r, Err(StreamError::Unauthorized)), "{r:?}");
    // Live text of the finished job is refused too.
    let live = reqwest::Client::new()
        .get(
            f.url
                .replace("ws://", "http://")
                .replace("/v1/audio", &format!("/v1/live/{}/job-1", f.tenant)),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 403);
    // Nothing was taken or appended.
    assert_eq!(f.metrics.frames.get(), frames, "replayed frames were read");
    let after = f
        .store
        .transcript_for_meeting(&f.tenant, "meeting-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, before, "the stored transcript changed");
    assert_eq!(f.metrics.transcripts.get(), 1);
}

#[tokio::test]
async fn a_valid_audio_token_for_a_finished_failed_or_cancelled_job_is_refused_at_connect() {
    use meetbot_core::model::BotJobState;
    let f = fixture(whisper()).await;
    let token = f.token("job-1");
    for state in [
        BotJobState::Done,
        BotJobState::Failed("left".into()),
        BotJobState::Cancelled,
    ] {
        let cur = f
            .store
            .get_bot_job(&f.tenant, "job-1")
            .await
            .unwrap()
            .unwrap();
        let mut j = cur.value.clone();
        j.state = state.clone();
        f.store
            .update_bot_job(&f.tenant, &j, cur.version)
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        tx.send(Outgoing::ParticipantLeft("p".into()))
            .await
            .unwrap();
        drop(tx);
        let r = stream_audio(f.settings("job-1", &token), rx).await;
        assert!(
            matches!(r, Err(StreamError::Unauthorized)),
            "{state:?}: {r:?}"
        );
    }
    // Another job's token: no such job in this tenant.
    let r = stream_audio(f.settings("job-9", &f.token("job-9")), mpsc::channel(1).1).await;
    assert!(matches!(r, Err(StreamError::Unauthorized)), "{r:?}");
    assert_eq!(f.metrics.frames.get(), 0);
    assert!(
        f.store
            .transcript_for_meeting(&f.tenant, "meeting-1")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn faster_whisper_server_gives_the_same_words_as_the_local_engine() {
    let server = speech::FasterWhisperServer::start();
    let http = meetbot_transcriber::openai::OpenAiEngine::from_config(&EngineConfig {
        kind: EngineKind::Openai,
        model: "tiny.en".into(),
        base_url: Some(server.url()),
        ..Default::default()
    })
    .unwrap();
    let local = whisper();
    let mut worst = 0;
    // The en-us clips (every third sentence of the script).
    for i in (0..MEETING.len()).step_by(3) {
        let pcm = sentence_pcm(i);
        let a: Vec<_> = local
            .transcribe(&pcm)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        let b: Vec<_> = http
            .transcribe(&pcm)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        let (d, _) = word_error_rate(&a.join(" "), &b.join(" "));
        eprintln!("{d} | local: {} | http: {}", a.join(" "), b.join(" "));
        worst = worst.max(d);
    }
    assert!(worst <= 1, "up to {worst} words differ in a sentence");
}

#[tokio::test]
async fn deepgram_engine_streams_linear16_and_takes_the_final_result() {
    let dg =
        meetbot_testsupport::ai::DeepgramStandIn::start("dg-key", "hello from the stand-in").await;
    let cfg = |key: &str| EngineConfig {
        kind: EngineKind::Deepgram,
        model: "nova-2".into(),
        base_url: Some(dg.url()),
        api_key: Some(key.into()),
        ..Default::default()
    };
    let engine =
        meetbot_transcriber::deepgram::DeepgramEngine::from_config(&cfg("dg-key")).unwrap();
    let pcm = sentence_pcm(1);
    let got = engine.transcribe(&pcm).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "hello from the stand-in");
    assert_eq!(
        dg.received(),
        vec![pcm.len() * 2],
        "every sample sent as linear16"
    );
    let bad = meetbot_transcriber::deepgram::DeepgramEngine::from_config(&cfg("wrong")).unwrap();
    assert!(matches!(
        bad.transcribe(&pcm).await,
        Err(meetbot_transcriber::engine::EngineError::Unauthorized(401))
    ));
}

fn long_transcript(n: usize) -> TranscriptDoc {
    TranscriptDoc {
        meeting_id: Some("m".into()),
        language: "en".into(),
        engine: "test".into(),
        segments: (0..n)
            .map(|i| Segment {
                participant: format!("p{}", i % 2),
                speaker: Some(if i % 2 == 0 { "Alice" } else { "Bob" }.into()),
                start_ms: i as u64 * 5_000,
                end_ms: i as u64 * 5_000 + 4_000,
                text: if i == 3 {
                    "I will send the contract to the client tomorrow.".into()
                } else {
                    format!("This is sentence number {i} about the quarterly planning and budget.")
                },
            })
            .collect(),
        presence: vec![],
    }
}

#[tokio::test]
async fn chat_summarizers_send_every_part_of_a_long_transcript_and_merge_them() {
    let chat = meetbot_testsupport::ai::ChatStandIn::start("sk-test").await;
    let doc = long_transcript(120);
    for (kind, azure) in [
        (SummarizerKind::Openai, false),
        (SummarizerKind::Openai, true),
        (SummarizerKind::Anthropic, false),
    ] {
        let before = chat.prompts().len();
        let s = meetbot_transcriber::summarize::from_config(&SummarizerConfig {
            kind,
            base_url: Some(chat.url()),
            model: Some("some-model".into()),
            api_key: Some("sk-test".into()),
            azure_deployment: azure.then(|| "summaries".into()),
            azure_api_version: azure.then(|| "2024-10-21".into()),
            max_chunk_chars: 2_000,
        })
        .unwrap();
        let sum = s.summarize(&doc).await.unwrap();
        let prompts = &chat.prompts()[before..];
        let parts = meetbot_transcriber::summarize::chunks(&doc.to_text(), 2_000).len();
        assert!(parts >= 4);
        assert_eq!(
            prompts.len(),
            parts + 1,
            "{kind:?}: each part, then the merge"
        );
        assert!(prompts.last().unwrap().contains("Partial summaries"));
        assert_eq!(sum.overview, format!("request {}", before + parts + 1));
        // The part holding the action item was answered with it, and the merge saw it.
        assert!(
            prompts
                .iter()
                .any(|p| p.contains("I will send the contract"))
        );
    }
    assert!(chat.refused().is_empty(), "{:?}", chat.refused());
    let bad = meetbot_transcriber::summarize::from_config(&SummarizerConfig {
        kind: SummarizerKind::Anthropic,
        base_url: Some(chat.url()),
        model: Some("m".into()),
        api_key: Some("wrong".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        bad.summarize(&doc).await,
        Err(meetbot_transcriber::summarize::SummarizeError::Unauthorized(401))
    ));
}

#[tokio::test]
async fn a_reconnecting_bot_takes_over_from_a_stalled_connection() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let f = fixture(whisper()).await;
    // A connection that went silent (a dead network path): open, greeted, never closed.
    let mut req = format!("{}/{}/job-1", f.url, f.tenant)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", f.token("job-1")).parse().unwrap(),
    );
    let (mut stalled, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let hello = stalled.next().await.unwrap().unwrap();
    // A stream new to this transcriber starts at the oldest frame the bot holds (decision 0041).
    assert_eq!(
        meetbot_bot::audio_frame::Frame::decode(&hello.into_data()).unwrap(),
        meetbot_bot::audio_frame::Frame::Resume { seq: 0 }
    );
    // The bot reconnects and streams: it is served at once, to the end.
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(stream_audio(f.settings("job-1", &f.token("job-1")), rx));
    send_speech(&tx, "p", &[0i16; 48_000]).await;
    drop(tx);
    let rep = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the new connection was not served while the old one stalled")
        .unwrap()
        .unwrap();
    assert_eq!(rep.acked, rep.frames + 1);
    drop(stalled);
}

#[tokio::test]
async fn a_tenant_with_redaction_on_has_names_and_dates_removed_before_storage_and_streaming() {
    let f = fixture(whisper()).await;
    let mut settings = f
        .store
        .get_tenant_settings(&f.tenant)
        .await
        .unwrap()
        .unwrap();
    settings.redaction = Some(meetbot_core::model::RedactionSettings {
        enabled: true,
        ..Default::default()
    });
    f.store
        .put_tenant_settings(&f.tenant, &settings)
        .await
        .unwrap();
    let live_task = f.follow_live("job-1").await;

    let said = "Please call Sarah Mitchell on March third.";
    let (rate, pcm) = speech::espeak(said, "en-us");
    let mut pcm48 = speech::resample(&pcm, rate, 48_000);
    pcm48.extend(std::iter::repeat_n(0i16, 48_000));
    let (tx, rx) = mpsc::channel(4096);
    let stream = tokio::spawn(stream_audio(f.settings("job-1", &f.token("job-1")), rx));
    send_speech(&tx, "alice", &pcm48).await;
    drop(tx);
    stream.await.unwrap().unwrap();

    let doc = stored_transcript(&f).await;
    let text: Vec<&str> = doc.segments.iter().map(|s| s.text.as_str()).collect();
    let text = text.join(" ");
    eprintln!("stored: {text}");
    assert!(text.contains("[NAME]"), "{text}");
    assert!(text.contains("[DATE]"), "{text}");
    assert!(text.contains("Please call"), "the rest is kept: {text}");
    for w in ["Sar", "Mitchell", "March"] {
        assert!(!text.contains(w), "{w:?} stored: {text}");
    }
    let events = tokio::time::timeout(Duration::from_secs(10), live_task)
        .await
        .unwrap()
        .unwrap();
    assert!(events.contains("[NAME]"), "{events}");
    for w in ["Sar", "Mitchell", "March"] {
        assert!(!events.contains(w), "{w:?} streamed live: {events}");
    }
}

/// A transcriber service over `f`'s store, with `engine`, as a second process would run it.
fn replica(f: &Fixture, engine: Arc<dyn SpeechEngine>, metrics: Metrics) -> Arc<Service> {
    Service::new(
        f.tenants.clone(),
        Engines::single(engine),
        Arc::new(Extractive),
        Settings {
            secret: f.secret.clone(),
            vad: Default::default(),
            retention: None,
            partial_every: None,
            meeting_pages: None,
            names: None,
        },
        metrics,
    )
}

/// Alice's and Bob's turns (sentences of `MEETING`), each followed by a second of silence, as
/// one participant's frames with running RTP timestamps.
async fn say(
    tx: &mpsc::Sender<Outgoing>,
    ts: &mut std::collections::HashMap<String, u32>,
    who: &str,
    i: usize,
) {
    let (voice, text) = MEETING[i];
    let (rate, pcm) = speech::espeak(text, voice);
    let mut pcm48 = speech::resample(&pcm, rate, 48_000);
    pcm48.extend(std::iter::repeat_n(0i16, 48_000));
    let t = ts.entry(who.to_string()).or_insert(0);
    for (k, p) in speech::opus_packets(&pcm48).into_iter().enumerate() {
        tx.send(Outgoing::Audio(AudioPacket {
            participant: who.to_string(),
            ssrc: if who == "alice" { 1 } else { 2 },
            sequence: k as u16,
            timestamp: *t,
            payload: p,
            received_at: Instant::now(),
        }))
        .await
        .unwrap();
        *t = t.wrapping_add(960);
    }
}

/// The stored transcript of meeting-1, opened.
async fn stored_transcript(f: &Fixture) -> TranscriptDoc {
    let rec = f
        .store
        .transcript_for_meeting(&f.tenant, "meeting-1")
        .await
        .unwrap()
        .expect("transcript stored");
    let vault = f.tenants.vault(&f.tenant).await.unwrap();
    TranscriptDoc::open(&vault, &rec).unwrap()
}

/// The transcript of meeting-1 (printed): each participant's words, and its segments.
async fn heard(f: &Fixture) -> (TranscriptDoc, String, String) {
    let doc = stored_transcript(f).await;
    for s in &doc.segments {
        eprintln!("{} {}-{} {}", s.participant, s.start_ms, s.end_ms, s.text);
    }
    let said = |who: &str| -> String {
        doc.segments
            .iter()
            .filter(|s| s.participant == who)
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (a, b) = (said("alice"), said("bob"));
    (doc, a, b)
}

/// A bot streaming job-1 to the transcriber on 127.0.0.1:`port` (it keeps trying for a minute
/// while nothing answers there), once Alice and Bob have joined (named as the meeting shows
/// them) and each said a sentence.
async fn bot_talking_to(
    f: &Fixture,
    port: u16,
) -> (
    mpsc::Sender<Outgoing>,
    tokio::task::JoinHandle<Result<meetbot_bot::audio_stream::StreamReport, StreamError>>,
    std::collections::HashMap<String, u32>,
) {
    let mut settings = f.settings("job-1", &f.token("job-1"));
    settings.url = format!("ws://127.0.0.1:{port}/v1/audio/{}/job-1", f.tenant);
    settings.max_outage = Duration::from_secs(60);
    let (tx, rx) = mpsc::channel(8192);
    let stream = tokio::spawn(stream_audio(settings, rx));
    let mut ts = Default::default();
    for (participant, name) in [("alice", "Alice Moreau"), ("bob", "Bob Okafor")] {
        tx.send(Outgoing::ParticipantNamed {
            participant: participant.into(),
            name: name.into(),
        })
        .await
        .unwrap();
    }
    say(&tx, &mut ts, "alice", 5).await;
    say(&tx, &mut ts, "bob", 11).await;
    (tx, stream, ts)
}

/// The bot's stream, ended within two minutes after at least one reconnect.
async fn ends_after_reconnecting(
    stream: tokio::task::JoinHandle<Result<meetbot_bot::audio_stream::StreamReport, StreamError>>,
) {
    let rep = tokio::time::timeout(Duration::from_secs(120), stream)
        .await
        .expect("the stream ends")
        .unwrap()
        .unwrap();
    assert!(rep.reconnects >= 1, "{rep:?}");
}

/// Alice and Bob said these sentences of `MEETING` (in order) and were heard as `alice` and
/// `bob`: at most 20% word errors over both, so a lost or a doubled utterance fails it.
fn words_within_a_fifth(alice: &str, alice_said: &[usize], bob: &str, bob_said: &[usize]) {
    let said = |is: &[usize]| {
        is.iter()
            .map(|i| MEETING[*i].1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (ea, na) = word_error_rate(&said(alice_said), alice);
    let (eb, nb) = word_error_rate(&said(bob_said), bob);
    let wer = (ea + eb) as f64 / (na + nb) as f64;
    assert!(
        wer <= 0.2,
        "WER {:.1}%: alice {alice:?} bob {bob:?}",
        wer * 100.0
    );
}

/// Serves `svc` on 127.0.0.1:`port` in a runtime of its own (a process, as far as the bot can
/// tell): dropping the runtime kills it with every stream it serves, as `kill -9` would.
fn serve_in_own_runtime(svc: Arc<Service>, port: u16) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let _ = axum::serve(listener, svc.router()).await;
    });
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcriber_killed_mid_meeting_loses_no_utterance_and_stores_none_twice() {
    let f = fixture(whisper()).await;
    let engine: Arc<dyn SpeechEngine> = whisper();
    let port = meetbot_testsupport::free_port();
    let first = Metrics::new();
    let a = serve_in_own_runtime(replica(&f, engine.clone(), first.clone()), port);
    let (tx, stream, mut ts) = bot_talking_to(&f, port).await;
    // Killed once the first utterance is stored (not only the names part before it), the
    // second one still in the engine or queue.
    let start = Instant::now();
    while !f
        .store
        .transcript_parts(&f.tenant, "meeting-1", Some("job-1"))
        .await
        .unwrap()
        .iter()
        .any(|p| !p.participant.is_empty())
    {
        assert!(start.elapsed() < Duration::from_secs(60), "no part stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(move || a.shutdown_timeout(Duration::ZERO))
        .await
        .unwrap();
    let stored_before = f
        .store
        .transcript_parts(&f.tenant, "meeting-1", Some("job-1"))
        .await
        .unwrap()
        .len();
    assert!(stored_before >= 1);
    // The bot keeps taking audio while the transcriber is gone; a new one comes up.
    say(&tx, &mut ts, "alice", 7).await;
    let second = Metrics::new();
    let b = serve_in_own_runtime(replica(&f, engine, second.clone()), port);
    say(&tx, &mut ts, "bob", 18).await;
    tx.send(Outgoing::ParticipantLeft("bob".into()))
        .await
        .unwrap();
    drop(tx);
    ends_after_reconnecting(stream).await;
    assert_eq!(
        second.resumed.get(),
        1,
        "the new transcriber resumed from the parts"
    );
    let (doc, alice, bob) = heard(&f).await;
    // Every sentence, once: a lost or a doubled utterance would break the bound.
    words_within_a_fifth(&alice, &[5, 7], &bob, &[11, 18]);
    // Who was in the call survived the restart: each joined once (named before the kill),
    // Bob's leaving (after it) closed his stay, Alice stayed until the bot left.
    let stays: Vec<_> = doc
        .presence
        .iter()
        .map(|p| {
            (
                p.participant.as_str(),
                p.name.as_deref(),
                p.left_ms.is_some(),
            )
        })
        .collect();
    assert_eq!(
        stays,
        [
            ("alice", Some("Alice Moreau"), false),
            ("bob", Some("Bob Okafor"), true)
        ],
        "{:?}",
        doc.presence
    );
    let bob_stay = &doc.presence[1];
    assert!(bob_stay.left_ms.unwrap() > bob_stay.joined_ms);
    // Each participant's segments on its timeline in the order spoken (the words' order is
    // checked by the WER above). Across participants only an estimate is possible for audio
    // replayed after the restart: these test streams send faster than real time.
    for who in ["alice", "bob"] {
        let starts: Vec<_> = doc
            .segments
            .iter()
            .filter(|s| s.participant == who)
            .map(|s| s.start_ms)
            .collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{who}: {starts:?}");
    }
    // The parts are gone once in the transcript; the summary was made once.
    assert!(
        f.store
            .transcript_parts(&f.tenant, "meeting-1", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(second.summaries.get(), 1);
    assert_eq!(first.summaries.get(), 0);
    tokio::task::spawn_blocking(move || drop(b)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcriber_shutting_down_stores_what_it_holds_and_its_bot_resumes_on_the_next() {
    let f = fixture(whisper()).await;
    let engine: Arc<dyn SpeechEngine> = whisper();
    let port = meetbot_testsupport::free_port();
    let first = Metrics::new();
    let svc_a = replica(&f, engine.clone(), first.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = {
        let svc = svc_a.clone();
        tokio::spawn(async move {
            axum::serve(listener, svc.router())
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.changed().await;
                })
                .await
        })
    };
    let (tx, stream, mut ts) = bot_talking_to(&f, port).await;
    let start = Instant::now();
    while first.frames.get() < 100 {
        assert!(start.elapsed() < Duration::from_secs(30), "no audio taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM: streams are handed over; new ones are refused while it stops.
    svc_a.hand_over();
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(30), svc_a.handed_over())
        .await
        .expect("every stream handed over within the bound");
    server.await.unwrap().unwrap();
    let second = Metrics::new();
    let b = serve_in_own_runtime(replica(&f, engine, second.clone()), port);
    say(&tx, &mut ts, "alice", 7).await;
    drop(tx);
    ends_after_reconnecting(stream).await;
    let (_, alice, bob) = heard(&f).await;
    words_within_a_fifth(&alice, &[5, 7], &bob, &[11]);
    assert_eq!(first.transcripts.get(), 0);
    assert_eq!(second.transcripts.get(), 1);
    tokio::task::spawn_blocking(move || drop(b)).await.unwrap();
}

/// A participant muted in the middle of a sentence (its feed just stops, no leave) must not
/// hold the acknowledgement for the rest of the meeting: with a bot buffer of 14 s of audio,
/// the others' 20 s of speech only get through if the cut utterance is ended and stored.
#[tokio::test]
async fn a_participant_muted_mid_sentence_does_not_hold_the_bots_buffer() {
    let f = fixture(whisper()).await;
    let mut settings = f.settings("job-1", &f.token("job-1"));
    settings.buffer_frames = 700;
    let (tx, rx) = mpsc::channel(64);
    let stream = tokio::spawn(stream_audio(settings, rx));
    let (voice, text) = MEETING[5];
    let (rate, pcm) = speech::espeak(text, voice);
    let pcm48 = speech::resample(&pcm, rate, 48_000);
    let talk = async move {
        // Alice's first two thirds, then nothing.
        send_speech(&tx, "alice", &pcm48[..pcm48.len() * 2 / 3]).await;
        let mut ts = std::collections::HashMap::new();
        for i in [11, 18, 7, 12] {
            say(&tx, &mut ts, "bob", i).await;
        }
    };
    // A held acknowledgement fills the bot's buffer and the talk stops: bounded in time.
    let rep = tokio::time::timeout(Duration::from_secs(180), async {
        talk.await;
        stream.await
    })
    .await
    .expect("the stream went on to its end")
    .unwrap()
    .unwrap();
    assert_eq!(rep.acked, rep.frames + 1);
    let (_, alice, bob) = heard(&f).await;
    assert!(!alice.is_empty(), "the cut utterance was transcribed");
    let reference = [11, 18, 7, 12].map(|i| MEETING[i].1).join(" ");
    let (e, n) = word_error_rate(&reference, &bob);
    assert!(e as f64 / n as f64 <= 0.25, "bob: {bob:?}");
}

/// A bot replaced mid-meeting (a relaunch: a new ticket, frames numbered from 1 again) whose
/// predecessor's text is stored: the new bot's audio is not mistaken for what was stored (its
/// frame numbers are its own), and the transcript has both bots' words.
#[tokio::test]
async fn a_relaunched_bot_numbers_its_frames_anew_and_both_bots_words_are_kept() {
    let f = fixture(whisper()).await;
    let mut first = f.settings("job-1", &f.token("job-1"));
    first.max_outage = Duration::from_secs(5);
    let (tx, rx) = mpsc::channel(8192);
    let lost = tokio::spawn(stream_audio(first, rx));
    let mut ts = Default::default();
    say(&tx, &mut ts, "alice", 5).await;
    let start = Instant::now();
    while f.metrics.parts.get() == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "no part stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first bot dies (its connection drops, no end of stream).
    lost.abort();
    drop(tx);
    // Its replacement: another token (the launcher's new ticket), frames from 1.
    let token = job_token(
        &f.secret,
        f.tenant.as_str(),
        "job-1",
        Duration::from_secs(7200),
    );
    let (tx, rx) = mpsc::channel(8192);
    let stream = tokio::spawn(stream_audio(f.settings("job-1", &token), rx));
    let mut ts = Default::default();
    say(&tx, &mut ts, "alice", 7).await;
    say(&tx, &mut ts, "bob", 11).await;
    drop(tx);
    tokio::time::timeout(Duration::from_secs(120), stream)
        .await
        .expect("the stream ends")
        .unwrap()
        .unwrap();
    let (_, alice, bob) = heard(&f).await;
    words_within_a_fifth(&alice, &[5, 7], &bob, &[11]);
}

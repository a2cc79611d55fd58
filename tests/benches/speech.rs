//! Transcription benchmark: word error rate, real-time factor and peak memory per engine and
//! model on the 24-sentence, three-voice espeak-ng meeting script, and streaming latency (end of
//! an utterance to its text on the live stream) through the transcriber service, and end of
//! meeting to summary delivered (woken delivery worker against poll only).
//!
//! `cargo bench -p meetbot-tests --bench speech` (needs `bash scripts/test.sh` run once: the
//! tiny.en model and the faster-whisper-server venv; the base model is fetched if missing);
//! `cargo bench -p meetbot-tests --bench speech -- delivery` runs only the last table.
//! Each measurement runs in a child process of its own so its peak RSS is its own.

use meetbot_core::config::{EngineConfig, EngineKind};
use meetbot_testsupport::speech::{self, MEETING};
use meetbot_transcriber::audio::decode_file;
use meetbot_transcriber::engine::{SpeechEngine, word_error_rate};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn engine(name: &str) -> (Arc<dyn SpeechEngine>, Option<speech::FasterWhisperServer>) {
    let dir = speech::whisper_model().parent().unwrap().to_path_buf();
    let whisper = |model: &str, beam: usize| -> Arc<dyn SpeechEngine> {
        Arc::new(
            meetbot_transcriber::whisper::WhisperEngine::load(
                &meetbot_transcriber::model::model_path(&dir, model),
                2,
                1,
                beam,
                "en",
            )
            .unwrap(),
        )
    };
    match name {
        "whisper.cpp tiny.en greedy" => (whisper("tiny.en", 1), None),
        "whisper.cpp tiny.en beam 5" => (whisper("tiny.en", 5), None),
        "whisper.cpp base beam 5" => (whisper("base", 5), None),
        "faster-whisper-server tiny.en (HTTP)" => {
            let s = speech::FasterWhisperServer::start();
            let e = meetbot_transcriber::openai::OpenAiEngine::from_config(&EngineConfig {
                kind: EngineKind::Openai,
                model: "tiny.en".into(),
                base_url: Some(s.url()),
                ..Default::default()
            })
            .unwrap();
            (Arc::new(e), Some(s))
        }
        o => panic!("unknown engine {o}"),
    }
}

/// One engine: WER over the sentences one by one, then the whole script as one recording (RTF).
async fn measure(name: &str) -> serde_json::Value {
    let (e, _server) = engine(name);
    let mut clips = Vec::new();
    for (voice, text) in MEETING {
        let (rate, pcm) = speech::espeak(text, voice);
        clips.push((text, rate, pcm));
    }
    let (mut errors, mut words) = (0, 0);
    for (text, rate, pcm) in &clips {
        let a = decode_file(&speech::wav(*rate, pcm)).unwrap();
        let got: Vec<String> = e
            .transcribe(&a)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        let (er, n) = word_error_rate(text, &got.join(" "));
        errors += er;
        words += n;
    }
    // The whole meeting as one recording, with a 0.8 s pause between speakers.
    let rate = clips[0].1;
    let mut all = Vec::new();
    for (_, _, pcm) in &clips {
        all.extend_from_slice(pcm);
        all.extend(std::iter::repeat_n(0i16, rate as usize * 4 / 5));
    }
    let audio = decode_file(&speech::wav(rate, &all)).unwrap();
    let secs = audio.len() as f64 / 16_000.0;
    let t = Instant::now();
    let segs = meetbot_transcriber::file::transcribe_pcm(e.as_ref(), &audio, |_, _| {})
        .await
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    let reference: Vec<&str> = MEETING.iter().map(|m| m.1).collect();
    let hyp: Vec<&str> = segs.iter().map(|s| s.text.as_str()).collect();
    let (fe, fw) = word_error_rate(&reference.join(" "), &hyp.join(" "));
    serde_json::json!({
        "engine": name,
        "wer": errors as f64 / words as f64,
        "words": words,
        "file_wer": fe as f64 / fw as f64,
        "audio_s": secs,
        "rtf": took / secs,
        "peak_rss_mib": peak_rss_mib(),
    })
}

/// The transcriber service (whisper.cpp tiny.en beam 5, extractive summaries) on an embedded
/// store with one tenant and a joined bot job `job`.
struct BenchService {
    _dir: tempfile::TempDir,
    store: Arc<dyn meetbot_store::Store>,
    tenants: Arc<meetbot_store::vault::Tenants>,
    tenant: meetbot_core::TenantId,
    secret: secrecy::SecretString,
    svc: Arc<meetbot_transcriber::service::Service>,
    addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

async fn bench_service(job: &str) -> BenchService {
    use secrecy::SecretString;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn meetbot_store::Store> = meetbot_store::init_engine(
        meetbot_store::SqliteEngine::open(&dir.path().join("s")).unwrap(),
    )
    .await
    .unwrap();
    let tenants = Arc::new(meetbot_store::vault::Tenants::new(
        store.clone(),
        Arc::new(meetbot_crypto::LocalKeyFile::open_or_create(&dir.path().join("k")).unwrap()),
    ));
    let tenant = tenants.create("Bench").await.unwrap().id;
    store
        .insert_bot_job(&tenant, &speech::joined_job(job, &format!("m-{job}"), job))
        .await
        .unwrap();
    let (e, _) = engine("whisper.cpp tiny.en beam 5");
    let secret = SecretString::from("bench secret 0123456789".to_string());
    let svc = meetbot_transcriber::service::Service::new(
        tenants.clone(),
        meetbot_transcriber::service::Engines::single(e),
        Arc::new(meetbot_transcriber::summarize::Extractive),
        meetbot_transcriber::service::Settings {
            secret: secret.clone(),
            vad: Default::default(),
            retention: None,
            partial_every: None,
            meeting_pages: None,
            names: None,
        },
        meetbot_transcriber::service::Metrics::new(),
    );
    let (addr, task) = meetbot_testsupport::serve_on_loopback(svc.router()).await;
    BenchService {
        _dir: dir,
        store,
        tenants,
        tenant,
        secret,
        svc,
        addr,
        _task: task,
    }
}

/// Sends `sentences` of the script in real time as one participant's speech to `job`; returns
/// when the last frame is sent (the bot's end of the meeting follows) and the stream task.
async fn speak(
    b: &BenchService,
    job: &str,
    sentences: std::ops::Range<usize>,
) -> (
    Instant,
    tokio::task::JoinHandle<
        Result<meetbot_bot::audio_stream::StreamReport, meetbot_bot::audio_stream::StreamError>,
    >,
) {
    use meetbot_bot::audio_stream::{Outgoing, StreamSettings, job_token, stream_audio};
    use meetbot_bot::connector::AudioPacket;
    let token = job_token(
        &b.secret,
        b.tenant.as_str(),
        job,
        std::time::Duration::from_secs(3600),
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let stream = tokio::spawn(stream_audio(
        StreamSettings {
            url: format!("ws://{}/v1/audio/{}/{job}", b.addr, b.tenant),
            token: secrecy::SecretString::from(token),
            buffer_frames: 20_000,
            max_outage: Duration::from_secs(10),
            trusted_ca: Vec::new(),
        },
        rx,
    ));
    let start = Instant::now();
    let mut sent = 0u64;
    for k in sentences {
        let (voice, text) = MEETING[k];
        let (rate, pcm) = speech::espeak(text, voice);
        let mut pcm48 = speech::resample(&pcm, rate, 48_000);
        pcm48.extend(std::iter::repeat_n(0i16, 48_000));
        for payload in speech::opus_packets(&pcm48) {
            sent += 1;
            tokio::time::sleep_until((start + Duration::from_millis(sent * 20)).into()).await;
            tx.send(Outgoing::Audio(AudioPacket {
                participant: "p0".into(),
                ssrc: 1,
                sequence: sent as u16,
                timestamp: (sent as u32).wrapping_mul(960),
                payload,
                received_at: Instant::now(),
            }))
            .await
            .unwrap();
        }
    }
    let end = Instant::now();
    drop(tx);
    (end, stream)
}

/// One transcriber service with its delivery worker and a Slack stand-in (the Web API).
/// `wake`: the worker runs on the outbox the transcriber enqueues through (as in the
/// transcriber process), so each new delivery wakes it; otherwise the worker has an outbox of
/// its own (as a separate `meetbot delivery` process) and only its poll finds the summaries.
struct DeliveryRig {
    b: BenchService,
    slack: meetbot_testsupport::delivery::SlackStandIn,
    meetings: usize,
    stored: Vec<f64>,
    delivered: Vec<f64>,
}

impl DeliveryRig {
    async fn start(wake: bool, poll: Duration) -> DeliveryRig {
        use meetbot_delivery::outbox::{Outbox, RetryPolicy};
        use meetbot_delivery::slack::SlackNotifier;
        let b = bench_service("job0").await;
        let slack = meetbot_testsupport::delivery::SlackStandIn::start("xoxb-bench").await;
        let outbox = Arc::new(
            Outbox::new(b.store.clone(), b.tenants.clone(), RetryPolicy::default()).with(Arc::new(
                SlackNotifier::new(&slack.base_url(), "xoxb-bench".to_string().into()).unwrap(),
            )),
        );
        if wake {
            b.svc.deliver_through(outbox.clone());
        } else {
            b.svc.deliver_through(Arc::new(Outbox::new(
                b.store.clone(),
                b.tenants.clone(),
                RetryPolicy::default(),
            )));
        }
        let mut settings =
            meetbot_core::model::TenantSettings::new(Default::default(), chrono::Utc::now());
        settings.delivery.slack_channel = Some("C0123BENCH".into());
        b.store
            .put_tenant_settings(&b.tenant, &settings)
            .await
            .unwrap();
        tokio::spawn(meetbot_delivery::service::run(
            outbox,
            b.store.clone(),
            poll,
            std::future::pending(),
        ));
        DeliveryRig {
            b,
            slack,
            meetings: 0,
            stored: Vec::new(),
            delivered: Vec::new(),
        }
    }

    /// One meeting of three sentences; records end (the bot's last frame) to summary stored
    /// and to summary posted.
    async fn meeting(&mut self) {
        let (b, r) = (&self.b, self.meetings);
        let job = format!("job{r}");
        if r > 0 {
            b.store
                .insert_bot_job(
                    &b.tenant,
                    &speech::joined_job(&job, &format!("m-{job}"), &job),
                )
                .await
                .unwrap();
        }
        let (end, stream) = speak(b, &job, 5..8).await;
        let mut stored_at = None;
        loop {
            if stored_at.is_none()
                && b.store
                    .summary_for_meeting(&b.tenant, &format!("m-{job}"))
                    .await
                    .unwrap()
                    .is_some()
            {
                stored_at = Some(end.elapsed().as_secs_f64());
            }
            if self.slack.accepted().len() > r {
                break;
            }
            assert!(end.elapsed() < Duration::from_secs(120), "no delivery");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.delivered.push(end.elapsed().as_secs_f64());
        self.stored.push(stored_at.unwrap_or(f64::NAN));
        stream.await.unwrap().unwrap();
        self.meetings += 1;
    }

    fn figures(&self) -> serde_json::Value {
        // Nearest rank, as in the streaming table.
        let pct = |v: &[f64], p: f64| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        };
        // The delivery's own part: summary stored to posted (5 ms resolution).
        let wait: Vec<f64> = (self.delivered.iter().zip(&self.stored))
            .map(|(d, s)| d - s)
            .collect();
        let mut out = serde_json::Map::new();
        for (name, v) in [
            ("stored", &self.stored),
            ("delivered", &self.delivered),
            ("wait", &wait),
        ] {
            for (p, q) in [("p50", 0.5), ("p95", 0.95), ("max", 1.0)] {
                out.insert(format!("{name}_{p}_s"), pct(v, q).into());
            }
        }
        out.into()
    }
}

/// End of a meeting (the bot's last frame) to its summary stored, and to its summary posted to
/// Slack by the delivery worker polling at its default interval: the same meetings, taking
/// turns, through a transcriber whose worker is woken at enqueue and one whose worker only
/// polls (so both see the same load). `MEETBOT_BENCH_DELIVERY_MEETINGS` meetings each
/// (default 20); they end at different points of the polling cycle.
async fn delivery() -> serde_json::Value {
    let poll = Duration::from_secs(
        meetbot_core::config::Config::default()
            .delivery
            .poll_seconds,
    );
    let rounds: usize = std::env::var("MEETBOT_BENCH_DELIVERY_MEETINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut woken = DeliveryRig::start(true, poll).await;
    let mut polled = DeliveryRig::start(false, poll).await;
    for r in 0..rounds {
        tokio::time::sleep(Duration::from_millis(
            (r as u64 * 1_700) % poll.as_millis().max(1) as u64,
        ))
        .await;
        woken.meeting().await;
        polled.meeting().await;
    }
    serde_json::json!({
        "meetings": rounds,
        "poll_s": poll.as_secs(),
        "woken": woken.figures(),
        "polled": polled.figures(),
    })
}

/// Streams the script through the transcriber service in real time (two participants taking
/// turns) and measures, per utterance, the time from its last audio frame sent to its text on
/// the live stream.
async fn streaming() -> serde_json::Value {
    use futures_util::StreamExt;
    use meetbot_bot::audio_stream::{Outgoing, StreamSettings, job_token, stream_audio};
    use meetbot_bot::connector::AudioPacket;
    use secrecy::SecretString;

    let b = bench_service("job").await;
    let (addr, tenant, secret) = (b.addr, b.tenant.clone(), b.secret.clone());
    let token = job_token(
        &secret,
        tenant.as_str(),
        "job",
        std::time::Duration::from_secs(3600),
    );
    let live = reqwest::Client::new()
        .get(format!("http://{addr}/v1/live/{tenant}/job"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let arrivals = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut body = live.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find("\n\n") {
                let ev: String = buf.drain(..i + 2).collect();
                if ev.contains("event: segment") {
                    out.push(Instant::now());
                }
                if ev.contains("event: end") {
                    return out;
                }
            }
        }
        out
    });
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let stream = tokio::spawn(stream_audio(
        StreamSettings {
            url: format!("ws://{addr}/v1/audio/{tenant}/job"),
            token: SecretString::from(token),
            buffer_frames: 20_000,
            max_outage: Duration::from_secs(10),
            trusted_ca: Vec::new(),
        },
        rx,
    ));
    let mut ends = Vec::new();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut ts = [0u32; 2];
    for (k, (voice, text)) in MEETING.iter().enumerate() {
        let (rate, pcm) = speech::espeak(text, voice);
        let mut pcm48 = speech::resample(&pcm, rate, 48_000);
        pcm48.extend(std::iter::repeat_n(0i16, 48_000 * 6 / 5));
        let who = k % 2;
        let speech_frames = pcm.len() as u64 * 48_000 / rate as u64 / 960;
        for (i, payload) in speech::opus_packets(&pcm48).into_iter().enumerate() {
            // Real time: one 20 ms frame every 20 ms.
            sent += 1;
            let due = start + Duration::from_millis(sent * 20);
            tokio::time::sleep_until(due.into()).await;
            tx.send(Outgoing::Audio(AudioPacket {
                participant: format!("p{who}"),
                ssrc: who as u32,
                sequence: i as u16,
                timestamp: ts[who],
                payload,
                received_at: Instant::now(),
            }))
            .await
            .unwrap();
            ts[who] = ts[who].wrapping_add(960);
            if i as u64 + 1 == speech_frames {
                ends.push(Instant::now());
            }
        }
    }
    drop(tx);
    stream.await.unwrap().unwrap();
    let arr = arrivals.await.unwrap();
    // Utterance k's text is the first segment arriving after its end.
    let mut lat: Vec<f64> = Vec::new();
    let mut j = 0;
    for end in &ends {
        while j < arr.len() && arr[j] < *end {
            j += 1;
        }
        if j < arr.len() {
            lat.push((arr[j] - *end).as_secs_f64());
            j += 1;
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    serde_json::json!({
        "utterances": ends.len(),
        "matched": lat.len(),
        "p50_s": pct(0.5),
        "p95_s": pct(0.95),
        "max_s": lat.last().copied().unwrap_or(0.0),
        "peak_rss_mib": peak_rss_mib(),
    })
}

const ENGINES: &[&str] = &[
    "whisper.cpp tiny.en greedy",
    "whisper.cpp tiny.en beam 5",
    "whisper.cpp base beam 5",
    "faster-whisper-server tiny.en (HTTP)",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Child mode: one measurement, JSON on stdout.
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let what = &args[i + 1];
        let v = if what == "streaming" {
            rt.block_on(streaming())
        } else if what == "delivery" {
            rt.block_on(delivery())
        } else {
            rt.block_on(measure(what))
        };
        println!("{v}");
        return;
    }
    let me = std::env::current_exe().unwrap();
    let child = |what: &str| -> serde_json::Value {
        eprintln!("measuring {what} ...");
        let out = std::process::Command::new(&me)
            .args(["--child", what])
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{what} failed");
        serde_json::from_slice(out.stdout.trim_ascii()).unwrap()
    };
    // `-- delivery`: only the end-of-meeting-to-delivery table.
    if args.iter().any(|a| a == "delivery") {
        delivery_table(&child);
        return;
    }
    // The base model: fetched (and verified) once.
    let dir = speech::whisper_model().parent().unwrap().to_path_buf();
    let base = meetbot_transcriber::model::model_path(&dir, "base");
    if !meetbot_transcriber::model::verify(&base) {
        eprintln!("fetching the base model into {} ...", dir.display());
        rt.block_on(meetbot_transcriber::model::fetch(
            &meetbot_transcriber::model::BASE,
            meetbot_transcriber::model::FILE_HOST,
            &dir,
            &reqwest::Client::new(),
            &mut |_| {},
        ))
        .unwrap();
    }
    println!(
        "\n## Transcription: 24 sentences, 3 espeak-ng voices (en-us, en-gb, en-sc), 2 threads\n"
    );
    println!("| engine | WER per sentence | WER whole recording | real-time factor | peak RSS |");
    println!("| --- | --- | --- | --- | --- |");
    for e in ENGINES {
        let v = child(e);
        println!(
            "| {} | {:.1}% ({} words) | {:.1}% | {:.3} ({:.0}x faster than real time, {:.0} s of audio) | {:.0} MiB |",
            e,
            v["wer"].as_f64().unwrap() * 100.0,
            v["words"],
            v["file_wer"].as_f64().unwrap() * 100.0,
            v["rtf"].as_f64().unwrap(),
            1.0 / v["rtf"].as_f64().unwrap(),
            v["audio_s"].as_f64().unwrap(),
            v["peak_rss_mib"].as_f64().unwrap(),
        );
    }
    let s = child("streaming");
    println!(
        "\n## Streaming: the script in real time through the transcriber service (whisper.cpp tiny.en beam 5)\n"
    );
    println!("| utterances | with text | end of utterance to text p50 | p95 | max | peak RSS |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {:.2} s | {:.2} s | {:.2} s | {:.0} MiB |",
        s["utterances"],
        s["matched"],
        s["p50_s"].as_f64().unwrap(),
        s["p95_s"].as_f64().unwrap(),
        s["max_s"].as_f64().unwrap(),
        s["peak_rss_mib"].as_f64().unwrap(),
    );
    delivery_table(&child);
    println!(
        "\n(The RSS of the HTTP engine is the client's; the server is a separate Python process.)"
    );
}

/// The end-of-meeting-to-delivery table: the delivery worker woken at enqueue against the poll
/// alone, in one run.
fn delivery_table(child: &dyn Fn(&str) -> serde_json::Value) {
    let d = child("delivery");
    let runs = [
        ("woken at enqueue (the transcriber's own)", &d["woken"]),
        ("poll only (a separate worker)", &d["polled"]),
    ];
    println!(
        "\n## End of meeting to summary: {} meetings of three sentences per worker, taking turns, delivery worker polling every {} s\n",
        d["meetings"], d["poll_s"]
    );
    println!(
        "| delivery worker | to summary stored p50 | p95 | max | to summary posted to Slack p50 | p95 | max | stored to posted p50 | p95 | max |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, d) in &runs {
        let f = |k: &str| d[k].as_f64().unwrap();
        println!(
            "| {name} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s |",
            f("stored_p50_s"),
            f("stored_p95_s"),
            f("stored_max_s"),
            f("delivered_p50_s"),
            f("delivered_p95_s"),
            f("delivered_max_s"),
            f("wait_p50_s"),
            f("wait_p95_s"),
            f("wait_max_s"),
        );
    }
}

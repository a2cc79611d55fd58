//! `meetbot transcriber` as deployed: a tenant's own speech-engine key set with
//! `meetbot tenant speech-key` (sealed; survives key rotation, re-encryption and retirement), the
//! service started from configuration with that tenant on an OpenAI-compatible engine, a bot's
//! audio stream in, and the sealed transcript in the store.

use meetbot_bot::audio_stream::{Outgoing, StreamError, StreamSettings, job_token, stream_audio};
use meetbot_bot::connector::AudioPacket;
use meetbot_core::config::Config;
use meetbot_crypto::LocalKeyFile;
use meetbot_store::vault::Tenants;
use meetbot_testsupport::ai::ChatStandIn;
use meetbot_testsupport::delivery::{MailDev, WebhookReceiver};
use meetbot_testsupport::speech;
use secrecy::SecretString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "audio secret shared with the bots";

fn meetbot(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MEETBOT_") {
            c.env_remove(k);
        }
    }
    c.env("MEETBOT_STORE__EMBEDDED_DIR", dir.join("data"))
        .env("MEETBOT_KEYS__LOCAL_KEY_FILE", dir.join("key"))
        .env("MEETBOT_TELEMETRY__LOG_LEVEL", "warn");
    c
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn raw_contains(dir: &Path, needle: &[u8]) -> bool {
    meetbot_testsupport::contains(&meetbot_testsupport::raw_bytes(dir), needle)
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_service_uses_the_tenants_sealed_key_and_stores_a_sealed_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tenant = run(meetbot(d).args(["tenant", "create", "Clinic"]))
        .trim()
        .to_string();

    // The key goes in on stdin and is stored sealed.
    let mut c = meetbot(d)
        .args(["tenant", "speech-key", &tenant])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"sk-tenant-own-key\n")
        .unwrap();
    assert!(c.wait().unwrap().success());
    assert!(!raw_contains(&d.join("data"), b"sk-tenant-own-key"));
    // Rotation, re-encryption and retirement of the old key version keep it readable, and
    // setting the bot rules keeps it.
    for step in ["rotate", "reencrypt", "retire"] {
        run(meetbot(d).args(["keys", step, &tenant]));
    }
    let rules = d.join("rules.json");
    std::fs::write(&rules, r#"{"alone_timeout_seconds": 45}"#).unwrap();
    run(meetbot(d).args([
        "tenant",
        "bot-rules",
        &tenant,
        "--set",
        rules.to_str().unwrap(),
    ]));

    // A job for the bot whose audio will arrive.
    let mut cfg = Config::default();
    cfg.store.embedded_dir = d.join("data");
    cfg.keys.local_key_file = d.join("key");
    let store = meetbot_store::open(&cfg.store).await.unwrap();
    let tenants = Tenants::new(
        store.clone(),
        Arc::new(LocalKeyFile::open_or_create(&cfg.keys.local_key_file).unwrap()),
    );
    let tid: meetbot_core::TenantId = tenant.parse().unwrap();
    store
        .insert_bot_job(&tid, &speech::joined_job("job-7", "meeting-7", "k7"))
        .await
        .unwrap();

    // Its summaries go to an address (real maildev) and a signed webhook.
    let mail = MailDev::start().await.unwrap();
    let hook = WebhookReceiver::start("whsec-clinic", 0).await;
    let out = meetbot(d)
        .args(["tenant", "delivery", &tenant, "--email", "ops@clinic.test"])
        .args(["--webhook-url", &hook.url()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["emails"], 1);
    assert_eq!(shown["webhook"], true);
    // The tenant's own signing secret, shown once; the receiver verifies with it (the
    // deployment's secret, also configured below, no longer signs this tenant's webhooks).
    let secret = shown["new_webhook_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() == 70);
    hook.set_secret(secret);
    assert!(!raw_contains(&d.join("data"), secret.as_bytes()));
    assert!(!raw_contains(&d.join("data"), b"ops@clinic.test"));
    let bad = meetbot(d)
        .args(["tenant", "delivery", &tenant, "--email", "not an address"])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    // The service: whisper.cpp by default, this tenant on the OpenAI-compatible stand-in.
    let api = ChatStandIn::start("sk-tenant-own-key").await;
    let (port, ops) = (free_port(), free_port());
    let t = format!("MEETBOT_TRANSCRIBER__TENANTS__{tenant}__");
    let _svc = Child(
        meetbot(d)
            .arg("transcriber")
            .env("MEETBOT_TRANSCRIBER__LISTEN", format!("127.0.0.1:{port}"))
            .env("MEETBOT_OPS__LISTEN", format!("127.0.0.1:{ops}"))
            .env("MEETBOT_TRANSCRIBER__AUDIO_TOKEN_SECRET", SECRET)
            .env(
                "MEETBOT_TRANSCRIBER__MODEL_DIR",
                speech::whisper_model().parent().unwrap(),
            )
            .env(format!("{t}KIND"), "openai")
            .env(format!("{t}MODEL"), "whisper-1")
            .env(format!("{t}BASE_URL"), api.url())
            .env("MEETBOT_DELIVERY__SMTP_HOST", "127.0.0.1")
            .env("MEETBOT_DELIVERY__SMTP_PORT", mail.smtp_port.to_string())
            .env("MEETBOT_DELIVERY__SMTP_SECURITY", "none")
            .env("MEETBOT_DELIVERY__FROM", "meetbot <summaries@meetbot.test>")
            .env("MEETBOT_DELIVERY__WEBHOOK_SECRET", "whsec-clinic")
            // The webhook receiver is on loopback: named in the egress allow-list.
            .env("MEETBOT_EGRESS__ALLOW_PRIVATE", r#"["127.0.0.1/32"]"#)
            .env("MEETBOT_DELIVERY__POLL_SECONDS", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "transcriber did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A bot's audio: one sentence, Opus, then the end of the stream.
    let (rate, pcm) = speech::espeak(speech::MEETING[13].1, "en-us");
    let mut pcm48 = speech::resample(&pcm, rate, 48_000);
    pcm48.extend(std::iter::repeat_n(0i16, 48_000));
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let token = job_token(
        &SecretString::from(SECRET.to_string()),
        &tenant,
        "job-7",
        Duration::from_secs(3600),
    );
    let stream = tokio::spawn(stream_audio(
        StreamSettings {
            url: format!("ws://127.0.0.1:{port}/v1/audio/{tenant}/job-7"),
            token: SecretString::from(token),
            buffer_frames: 10_000,
            max_outage: Duration::from_secs(10),
            trusted_ca: Vec::new(),
        },
        rx,
    ));
    for (i, payload) in speech::opus_packets(&pcm48).into_iter().enumerate() {
        tx.send(Outgoing::Audio(AudioPacket {
            participant: "feed-1".into(),
            ssrc: 1,
            sequence: i as u16,
            timestamp: i as u32 * 960,
            payload,
            received_at: Instant::now(),
        }))
        .await
        .unwrap();
    }
    drop(tx);
    stream.await.unwrap().unwrap();

    // The stand-in was called with the tenant's own key, and the transcript is sealed.
    assert!(api.refused().is_empty(), "{:?}", api.refused());
    assert!(api.prompts().iter().any(|p| p == "audio"));
    let rec = store
        .transcript_for_meeting(&tid, "meeting-7")
        .await
        .unwrap()
        .expect("transcript stored");
    let doc = meetbot_transcriber::transcript::TranscriptDoc::open(
        &tenants.vault(&tid).await.unwrap(),
        &rec,
    )
    .unwrap();
    assert_eq!(doc.engine, "openai");
    assert!(
        doc.segments
            .iter()
            .all(|s| s.text == "transcribed by the stand-in" && s.participant == "feed-1")
    );
    assert!(!doc.segments.is_empty());
    assert!(!raw_contains(
        &d.join("data"),
        b"transcribed by the stand-in"
    ));

    // The summary reached the address and the webhook, once each, from the service's outbox.
    let start = Instant::now();
    while mail.emails().await.unwrap().is_empty() || hook.received().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "summary not delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emails = mail.emails().await.unwrap();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["envelope"]["to"][0]["address"], "ops@clinic.test");
    let got = hook.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].0, "signed with the tenant's own webhook secret");
    assert_eq!(got[0].2["summary"]["meeting_id"], "meeting-7");
    assert!(!raw_contains(&d.join("data"), b"ops@clinic.test"));
    assert!(
        raw_contains(&d.join("data"), b"job-7"),
        "the raw bytes include the tenant's database (its unsealed ids)"
    );
}

/// `meetbot transcriber` serving TLS (`transcriber.tls_cert_file`/`tls_key_file`) with a
/// certificate for 127.0.0.1 from a test CA made here; the default engine is the
/// OpenAI-compatible stand-in. Holds a joined job `job-7` of `tenant`.
struct TlsTranscriber {
    dir: tempfile::TempDir,
    tenant: String,
    port: u16,
    ops: u16,
    /// The test CA's certificate, PEM, in a file (as `bot.transcriber_ca_file` names it).
    ca_file: std::path::PathBuf,
    store: Arc<dyn meetbot_store::Store>,
    tenants: Tenants,
    api: ChatStandIn,
    _svc: Child,
}

impl TlsTranscriber {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tenant = run(meetbot(d).args(["tenant", "create", "Clinic"]))
            .trim()
            .to_string();
        let mut cfg = Config::default();
        cfg.store.embedded_dir = d.join("data");
        cfg.keys.local_key_file = d.join("key");
        let store = meetbot_store::open(&cfg.store).await.unwrap();
        let tenants = Tenants::new(
            store.clone(),
            Arc::new(LocalKeyFile::open_or_create(&cfg.keys.local_key_file).unwrap()),
        );
        let tid: meetbot_core::TenantId = tenant.parse().unwrap();
        store
            .insert_bot_job(&tid, &speech::joined_job("job-7", "meeting-7", "k7"))
            .await
            .unwrap();
        let ca = meetbot_testsupport::oidc::TestCa::for_loopback().unwrap();
        let (cert, key, ca_file) = (d.join("tls.crt"), d.join("tls.key"), d.join("ca.crt"));
        std::fs::write(&cert, &ca.leaf_pem).unwrap();
        std::fs::write(&key, &ca.leaf_key_pem).unwrap();
        std::fs::write(&ca_file, &ca.ca_pem).unwrap();
        let api = ChatStandIn::start("sk-default-key").await;
        let (port, ops) = (free_port(), free_port());
        let svc = Child(
            meetbot(d)
                .arg("transcriber")
                .env("MEETBOT_TRANSCRIBER__LISTEN", format!("127.0.0.1:{port}"))
                .env("MEETBOT_OPS__LISTEN", format!("127.0.0.1:{ops}"))
                .env("MEETBOT_TRANSCRIBER__AUDIO_TOKEN_SECRET", SECRET)
                .env("MEETBOT_TRANSCRIBER__MODEL_DIR", d.join("models"))
                .env("MEETBOT_TRANSCRIBER__TLS_CERT_FILE", &cert)
                .env("MEETBOT_TRANSCRIBER__TLS_KEY_FILE", &key)
                .env("MEETBOT_TRANSCRIBER__ENGINE__KIND", "openai")
                .env("MEETBOT_TRANSCRIBER__ENGINE__MODEL", "whisper-1")
                .env("MEETBOT_TRANSCRIBER__ENGINE__BASE_URL", api.url())
                .env("MEETBOT_TRANSCRIBER__ENGINE__API_KEY", "sk-default-key")
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", ops)).is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "transcriber did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        TlsTranscriber {
            dir,
            tenant,
            port,
            ops,
            ca_file,
            store,
            tenants,
            api,
            _svc: svc,
        }
    }

    fn settings(&self, scheme: &str, trusted_ca: bool) -> StreamSettings {
        let token = job_token(
            &SecretString::from(SECRET.to_string()),
            &self.tenant,
            "job-7",
            Duration::from_secs(3600),
        );
        StreamSettings {
            url: format!(
                "{scheme}://127.0.0.1:{}/v1/audio/{}/job-7",
                self.port, self.tenant
            ),
            token: SecretString::from(token),
            buffer_frames: 10_000,
            max_outage: Duration::from_secs(2),
            trusted_ca: if trusted_ca {
                meetbot_bot::audio_stream::read_ca_file(&self.ca_file).unwrap()
            } else {
                Vec::new()
            },
        }
    }

    /// Audio frames the transcriber has taken (its `/metrics`).
    async fn frames_taken(&self) -> u64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.ops))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("meetbot_transcriber_audio_frames_total "))
            .unwrap_or_else(|| panic!("no audio frame counter in {text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// One spoken sentence as the bot's Opus packets, then the end of the stream.
async fn speak(
    s: StreamSettings,
) -> Result<meetbot_bot::audio_stream::StreamReport, meetbot_bot::audio_stream::StreamError> {
    let (rate, pcm) = speech::espeak(speech::MEETING[13].1, "en-us");
    let mut pcm48 = speech::resample(&pcm, rate, 48_000);
    pcm48.extend(std::iter::repeat_n(0i16, 48_000));
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let stream = tokio::spawn(stream_audio(s, rx));
    for (i, payload) in speech::opus_packets(&pcm48).into_iter().enumerate() {
        if tx
            .send(Outgoing::Audio(AudioPacket {
                participant: "feed-1".into(),
                ssrc: 1,
                sequence: i as u16,
                timestamp: i as u32 * 960,
                payload,
                received_at: Instant::now(),
            }))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    stream.await.unwrap()
}

#[tokio::test]
async fn a_bot_trusting_the_transcribers_ca_streams_over_wss_and_its_transcript_is_stored() {
    let t = TlsTranscriber::start().await;
    let rep = speak(t.settings("wss", true)).await.unwrap();
    assert!(rep.frames > 50, "{rep:?}");
    assert_eq!(
        rep.acked,
        rep.frames + 1,
        "every frame and the end acknowledged"
    );
    assert_eq!(rep.reconnects, 0);
    assert_eq!(
        t.frames_taken().await,
        rep.frames,
        "every audio frame taken"
    );
    assert!(t.api.refused().is_empty(), "{:?}", t.api.refused());
    let tid: meetbot_core::TenantId = t.tenant.parse().unwrap();
    let rec = t
        .store
        .transcript_for_meeting(&tid, "meeting-7")
        .await
        .unwrap()
        .expect("transcript stored");
    let doc = meetbot_transcriber::transcript::TranscriptDoc::open(
        &t.tenants.vault(&tid).await.unwrap(),
        &rec,
    )
    .unwrap();
    assert!(!doc.segments.is_empty());
    assert!(
        doc.segments
            .iter()
            .all(|s| s.text == "transcribed by the stand-in" && s.participant == "feed-1")
    );
}

#[tokio::test]
async fn a_bot_not_trusting_the_transcribers_ca_is_refused_at_the_handshake_and_no_audio_is_taken()
{
    let t = TlsTranscriber::start().await;
    // Only the system's roots: the test CA is not among them.
    let r = speak(t.settings("wss", false)).await;
    match &r {
        Err(StreamError::Untrusted(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("expected the certificate refused, got {other:?}"),
    }
    // Plain ws:// to the TLS listener gets no stream either.
    let r = speak(t.settings("ws", false)).await;
    assert!(matches!(r, Err(StreamError::Unreachable(..))), "{r:?}");
    assert_eq!(t.frames_taken().await, 0, "no audio was accepted");
    assert!(t.api.prompts().is_empty(), "nothing reached the engine");
    let tid: meetbot_core::TenantId = t.tenant.parse().unwrap();
    assert!(
        t.store
            .transcript_for_meeting(&tid, "meeting-7")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!raw_contains(&t.dir.path().join("data"), b"transcribed"));
}

#[test]
fn the_transcriber_refuses_to_start_with_a_tls_certificate_but_no_key_or_an_unreadable_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let start = |env: &[(&str, &Path)]| {
        let mut c = meetbot(d);
        c.arg("transcriber")
            .env(
                "MEETBOT_TRANSCRIBER__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("MEETBOT_OPS__LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("MEETBOT_TRANSCRIBER__AUDIO_TOKEN_SECRET", SECRET)
            .env("MEETBOT_TRANSCRIBER__MODEL_DIR", d.join("models"))
            .env("MEETBOT_TRANSCRIBER__ENGINE__KIND", "openai")
            .env("MEETBOT_TRANSCRIBER__ENGINE__MODEL", "whisper-1")
            .env(
                "MEETBOT_TRANSCRIBER__ENGINE__BASE_URL",
                "http://127.0.0.1:9",
            )
            .env("MEETBOT_TRANSCRIBER__ENGINE__API_KEY", "sk-unused");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cert = d.join("tls.crt");
    let err = start(&[("MEETBOT_TRANSCRIBER__TLS_CERT_FILE", &cert)]);
    assert!(err.contains("transcriber.tls_key_file"), "{err}");
    let err = start(&[
        ("MEETBOT_TRANSCRIBER__TLS_CERT_FILE", &cert),
        ("MEETBOT_TRANSCRIBER__TLS_KEY_FILE", &d.join("tls.key")),
    ]);
    assert!(err.contains(&cert.display().to_string()), "{err}");
}

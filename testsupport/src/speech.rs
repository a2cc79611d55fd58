//! Speech for the transcriber tests: espeak-ng sentences in several voices (in memory, never a
//! file), the fetched whisper model, and a real faster-whisper server.

use meetbot_core::model::{BotJob, BotJobState};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A meeting script: (voice, sentence). Three voices; numbers spelled as they are spoken.
pub const MEETING: &[(&str, &str)] = &[
    (
        "en-us",
        "Good morning everyone, thanks for joining the weekly planning meeting.",
    ),
    (
        "en-gb",
        "Let's start with the status of the mobile release.",
    ),
    (
        "en-sc",
        "The new login screen is finished and ready for testing.",
    ),
    ("en-us", "We found two bugs in the payment flow last week."),
    ("en-gb", "Both bugs are fixed and the patch is in review."),
    (
        "en-sc",
        "Sarah will send the test report to the whole team by Friday.",
    ),
    (
        "en-us",
        "The customer asked for a demo of the reporting dashboard.",
    ),
    (
        "en-gb",
        "We decided to schedule the demo for next Tuesday afternoon.",
    ),
    (
        "en-sc",
        "Can you prepare the slides for the quarterly review?",
    ),
    (
        "en-us",
        "Our budget for the second quarter is still under discussion.",
    ),
    (
        "en-gb",
        "Marketing wants to launch the campaign in early April.",
    ),
    ("en-sc", "I will update the project plan after this call."),
    ("en-us", "The server costs went down this month."),
    ("en-gb", "We need a new contract with the hosting provider."),
    (
        "en-sc",
        "Please review the draft agreement before our next meeting.",
    ),
    (
        "en-us",
        "The design team shared three options for the landing page.",
    ),
    (
        "en-gb",
        "Most of us prefer the second option with the larger images.",
    ),
    ("en-sc", "Let's collect feedback from the sales team first."),
    (
        "en-us",
        "Michael will organize a workshop with the support staff.",
    ),
    (
        "en-gb",
        "The training material should be ready by the end of the month.",
    ),
    ("en-sc", "Does anyone have questions about the hiring plan?"),
    (
        "en-us",
        "We are looking for two engineers and one product manager.",
    ),
    (
        "en-gb",
        "The interviews will start at the beginning of next week.",
    ),
    ("en-sc", "Thank you all, let's meet again on Thursday."),
];

/// `text` spoken by espeak-ng in `voice`: its sample rate and 16-bit mono samples.
pub fn espeak(text: &str, voice: &str) -> (u32, Vec<i16>) {
    espeak_at(text, Some(voice), 160)
}

/// `text` spoken by espeak-ng (in `voice`, else its default) at `wpm` words per minute.
pub fn espeak_at(text: &str, voice: Option<&str>, wpm: u32) -> (u32, Vec<i16>) {
    let mut c = Command::new("espeak-ng");
    c.arg("--stdout");
    if let Some(v) = voice {
        c.args(["-v", v]);
    }
    let out = c
        .args(["-s", &wpm.to_string(), text])
        .output()
        .expect("espeak-ng is not installed (scripts/test.sh installs it)");
    assert!(out.status.success(), "espeak-ng failed for voice {voice:?}");
    meetbot_bot::room::wav_pcm(&out.stdout).expect("espeak-ng writes 16-bit WAV")
}

/// A WAV file (in memory) of 16-bit mono samples.
pub fn wav(rate: u32, pcm: &[i16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(44 + pcm.len() * 2);
    let n = (pcm.len() * 2) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + n).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&n.to_le_bytes());
    for s in pcm {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

/// Linear resampling of 16-bit PCM (the demo room's; good enough to feed an Opus encoder).
pub fn resample(pcm: &[i16], from: u32, to: u32) -> Vec<i16> {
    meetbot_bot::room::resample(pcm, from, to)
}

/// 20 ms Opus packets of 48 kHz mono PCM (the last frame padded with silence), as a bot
/// receives them from a meeting.
pub fn opus_packets(pcm48: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .expect("opus encoder");
    pcm48
        .chunks(960)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(960, 0);
            enc.encode_vec(&f, 1500).expect("opus encode")
        })
        .collect()
}

/// A bot job that has joined `meeting_id`: what the transcriber finds the meeting by.
pub fn joined_job(id: &str, meeting_id: &str, idempotency_key: &str) -> BotJob {
    let now = chrono::Utc::now();
    BotJob {
        id: id.into(),
        meeting_id: meeting_id.into(),
        idempotency_key: idempotency_key.into(),
        join_at: now,
        state: BotJobState::Joined,
        history: vec![],
        published_at: Some(now),
        bot_rules: None,
        ticket: None,
    }
}

/// The tiny.en GGML model `meetbot model fetch` wrote: `MEETBOT_TEST_WHISPER_MODEL`, else the
/// default model directory.
pub fn whisper_model() -> PathBuf {
    let p = std::env::var_os("MEETBOT_TEST_WHISPER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache/meetbot/models/ggml-tiny.en.bin")
        });
    assert!(
        p.is_file(),
        "no whisper model at {}: run `bash scripts/test.sh` (it runs `meetbot model fetch tiny.en`)",
        p.display()
    );
    p
}

/// The names dataset for redaction (`names-0.3.0.tar.gz`), fetched beside the whisper model
/// by `meetbot model fetch` (scripts/test.sh runs it).
pub fn names_dataset() -> PathBuf {
    let p = whisper_model()
        .parent()
        .map(|d| d.join("names-0.3.0.tar.gz"))
        .unwrap_or_default();
    assert!(
        p.is_file(),
        "no names dataset at {}: run `bash scripts/test.sh` (its `meetbot model fetch` fetches it)",
        p.display()
    );
    p
}

/// A real faster-whisper-server (PyPI 0.0.3) with tiny.en, on a free loopback port. The venv
/// and the CTranslate2 model come from scripts/test.sh (`target/test-env/fws`).
pub struct FasterWhisperServer {
    pub port: u16,
    child: Child,
}

impl FasterWhisperServer {
    pub fn start() -> Self {
        let env = crate::workspace_root().join("target/test-env/fws");
        let bin = std::env::var_os("MEETBOT_TEST_FWS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| env.join("bin/faster-whisper-server"));
        let model = std::env::var_os("MEETBOT_TEST_FWS_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| env.join("model"));
        assert!(
            bin.is_file() && model.is_dir(),
            "faster-whisper-server is not set up ({} / {}): run `bash scripts/test.sh`",
            bin.display(),
            model.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(&bin)
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("HF_HUB_OFFLINE", "1")
            .env("CT2_VERBOSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting faster-whisper-server");
        let s = FasterWhisperServer { port, child };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = c.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut r = String::new();
                let _ = c.read_to_string(&mut r);
                if r.contains("200 OK") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "faster-whisper-server did not answer /health within 120 s"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FasterWhisperServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

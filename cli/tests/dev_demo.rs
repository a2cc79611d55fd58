//! `meetbot dev`'s demo, as a newcomer runs it (the real binary, embedded defaults, whisper
//! tiny.en): the ICS feed's meeting is synced, scheduled and joined by a bot process, the three
//! voices of the demo room are transcribed under their names, the summary finds the action
//! items spoken, the email lands in the outbox folder, no audio file is left, and the store on
//! disk holds none of the conversation in plain text. The audio check counts what meetbot
//! wrote (its data directory and its private temporary directory), so another program's WAV
//! in the machine's temporary directory does not fool it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Stops the `meetbot dev` this test started (by PID) when the test ends, however it ends.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn eml_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_dev_demo_goes_from_calendar_to_an_emailed_summary_with_no_audio_kept() {
    let dir = tempfile::tempdir().unwrap();
    let model = meetbot_testsupport::speech::whisper_model();
    let outbox = dir.path().join("outbox");
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEETBOT_")) {
        c.env_remove(k);
    }
    c.args(["dev", "--demo-in", "5"])
        .current_dir(dir.path())
        .env("MEETBOT_STORE__EMBEDDED_DIR", dir.path().join("data"))
        .env("MEETBOT_KEYS__LOCAL_KEY_FILE", dir.path().join("key"))
        .env("MEETBOT_TRANSCRIBER__MODEL_DIR", model.parent().unwrap())
        .env("MEETBOT_DELIVERY__EMAIL_DIR", &outbox)
        .env("MEETBOT_DELIVERY__POLL_SECONDS", "1")
        .env("MEETBOT_API__LISTEN", "127.0.0.1:0")
        .env("MEETBOT_OPS__LISTEN", "127.0.0.1:0")
        .env("MEETBOT_TRANSCRIBER__LISTEN", "127.0.0.1:0")
        .env("MEETBOT_TELEMETRY__LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("meetbot dev starts");
    let stderr = child.stderr.take().unwrap();
    let dev = Dev(child);
    // Another program's audio in the temporary directory this test (and so `meetbot dev`)
    // was started with, written after meetbot started: not meetbot's, not counted.
    let mut decoy = tempfile::Builder::new()
        .prefix("not-meetbot-")
        .suffix(".wav")
        .tempfile_in(std::env::temp_dir())
        .unwrap();
    std::io::Write::write_all(&mut decoy, b"RIFF\x24\0\0\0WAVEfmt ").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let start = Instant::now();
    // A newcomer's browser: the `sign in:` link, the demo meeting's live transcript, its summary.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let modules = repo.join("testsupport/web/node_modules");
    assert!(
        modules.join("playwright-core/package.json").exists(),
        "playwright-core is missing: run scripts/test.sh (npm ci in testsupport/web)"
    );
    let shots = repo.join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = None;
    let mut web = String::new();
    loop {
        let left = Duration::from_secs(240).saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with("[demo] done");
                if let Some(link) = line.strip_prefix("sign in: ") {
                    let link = link.split_whitespace().next().unwrap_or_default();
                    assert!(
                        link.starts_with("http://127.0.0.1:")
                            && link.contains("/app/sign-in/link/"),
                        "{line}"
                    );
                    web = link.split("/app/").next().unwrap_or_default().to_string();
                    browser = Some(
                        // Bounded: a browser that hangs fails the test, never CI.
                        Command::new("timeout")
                            .args(["--kill-after=5", "240", "node"])
                            .arg(repo.join("tests/web/demo.test.mjs"))
                            .env("MEETBOT_WEB_MODULES", &modules)
                            .env("LINK", link)
                            .env("SHOTS", &shots)
                            .env(
                                "CHROMIUM",
                                std::env::var("MEETBOT_TEST_CHROMIUM")
                                    .unwrap_or_else(|_| "/usr/bin/chromium".into()),
                            )
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .spawn()
                            .expect("node starts"),
                    );
                }
                out.push(line);
                if done {
                    break;
                }
            }
            Err(_) => panic!(
                "the demo did not finish in 240 s; it said:\n{}",
                out.join("\n")
            ),
        }
    }
    let said = out.join("\n");
    let browser = browser.unwrap_or_else(|| panic!("no `sign in:` line:\n{said}"));
    let seen = browser.wait_with_output().unwrap();
    let seen_log = format!(
        "{}{}",
        String::from_utf8_lossy(&seen.stdout),
        String::from_utf8_lossy(&seen.stderr)
    );
    assert!(
        seen.status.success(),
        "the browser did not see the live transcript and the summary:\n{seen_log}\nmeetbot said:\n{said}"
    );
    for step in [
        "[demo] calendar: ICS feed http://127.0.0.1:",
        "platform Some(WebRtc), bot wanted: true",
        "bot joined the room",
        "[demo] transcript  Alex (clinic manager):",
        "[demo] transcript  Sam (IT):",
        "[demo] transcript  Jordan (front desk):",
        "bot left the meeting",
        "summary stored, sealed",
        "audio files written since start under",
        "[demo] the meeting in the web app: http://127.0.0.1:",
    ] {
        assert!(said.contains(step), "missing {step:?} in:\n{said}");
    }
    let audio = said
        .lines()
        .find(|l| l.starts_with("[demo] audio:"))
        .unwrap_or_else(|| panic!("no audio line:\n{said}"));
    assert!(audio.ends_with(": 0"), "no audio file is left: {audio}");
    // It looked where meetbot writes: its data directory and its own temporary directory
    // (which exists while it runs, inside the data directory, and goes when it stops).
    let data = dir.path().join("data");
    let private = format!("{}/tmp-{}", data.display(), dev.0.id());
    assert!(
        audio.contains(&format!("under {} ", data.display())) && audio.contains(&private),
        "{audio}"
    );
    assert!(std::path::Path::new(&private).is_dir(), "{private}");
    assert!(decoy.path().is_file());
    assert!(
        said.contains("[Sam (IT)] I will send the launch announcement"),
        "the action item is owned by its speaker's name:\n{said}"
    );
    // The summary's action items, each owned by its speaker, in the email.
    let emails = eml_in(&outbox);
    assert_eq!(emails.len(), 1, "one email: {emails:?}");
    let email = emails[0].replace("=\r\n", "").replace("\r\n", "\n");
    assert!(email.contains("To: newcomer@example.com"), "{email}");
    assert!(email.contains("Subject: Meeting summary: Clinic weekly operations"));
    assert!(
        email.contains(&format!("{web}/app/meetings/")),
        "the email links to the meeting's page where this run serves it ({web}):\n{email}"
    );
    for item in ["Friday", "announcement", "appointment reminders"] {
        assert!(
            email.contains(item),
            "action item {item:?} missing:\n{email}"
        );
    }
    // The store on disk holds the conversation sealed only.
    let raw = meetbot_testsupport::raw_bytes(&dir.path().join("data"));
    for plain in [
        &b"appointment reminders"[..],
        b"patient portal",
        b"Clinic weekly operations",
        b"newcomer@example.com",
    ] {
        assert!(
            !meetbot_testsupport::contains(&raw, plain),
            "{} in plain text on disk",
            String::from_utf8_lossy(plain)
        );
    }
    drop(dev);
    assert!(
        !std::path::Path::new(&private).exists(),
        "meetbot's temporary directory is removed when it stops"
    );
}

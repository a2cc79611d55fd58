//! Every service stops within its grace (`ops.shutdown_grace_seconds`, 20 s by default) after
//! SIGTERM or SIGINT, whatever it is doing: `meetbot dev` right at start, while its speech model
//! loads and the demo is being prepared, and in the middle of the demo meeting (its bot process
//! stopped, none left behind); every other service at random moments after start, several
//! times. Each run is bounded itself: a process still there after the grace and a margin is
//! killed (SIGKILL) and the test fails. Models come from MEETBOT_TEST_WHISPER_MODEL, never
//! from the default place (HOME is a temporary directory).

#[allow(dead_code)]
mod common;

use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The default grace; the tests run with it.
const GRACE: Duration = Duration::from_secs(20);
/// What a test allows beyond the grace (process exit, a loaded machine) before it kills.
const MARGIN: Duration = Duration::from_secs(5);

/// A `meetbot` process this test started, its stderr as lines, killed (SIGKILL) if still
/// running when the test ends, however it ends.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    said: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Proc {
    fn start(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Proc {
        let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEETBOT_")) {
            c.env_remove(k);
        }
        c.args(args)
            .current_dir(dir)
            // Nothing is looked for in the default places (~/.cache/meetbot).
            .env("HOME", dir)
            .env("MEETBOT_STORE__EMBEDDED_DIR", dir.join("data"))
            .env("MEETBOT_KEYS__LOCAL_KEY_FILE", dir.join("key"))
            .env("MEETBOT_OPS__LISTEN", "127.0.0.1:0")
            .env("MEETBOT_TELEMETRY__LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("meetbot starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            said: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn said(&self) -> String {
        self.said.join("\n")
    }

    /// Waits (at most `secs`) for a line containing `what`; fails if the process ends first.
    fn wait_for_line(&mut self, what: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let left = Duration::from_secs(secs).saturating_sub(start.elapsed());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => {
                    self.said.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => panic!(
                    "no line with {what:?} within {secs} s (exit: {:?}); it said:\n{}",
                    self.child.try_wait(),
                    self.said()
                ),
            }
        }
    }

    /// Waits until the process handles SIGTERM and SIGINT itself (its handlers are in
    /// place: /proc/<pid>/status SigCgt), so a signal from now on is its stop, not death.
    fn wait_until_it_handles_signals(&mut self) {
        let start = Instant::now();
        loop {
            if handles_term_and_int(self.child.id()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("exited ({st}) before handling signals");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no SIGTERM/SIGINT handler after 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends `sig` and waits for the exit, at most the grace and the margin (then SIGKILL
    /// and fail). Returns how long the stop took and the rest of what the process said.
    fn stop_with(&mut self, sig: i32) -> (Duration, ExitStatus) {
        let sent = Instant::now();
        // SAFETY: kill(2) on the child this test started.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if sent.elapsed() > GRACE + MARGIN {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.drain();
                panic!(
                    "still running {:?} after signal {sig} (grace {GRACE:?}): killed; it said:\n{}",
                    sent.elapsed(),
                    self.said()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = sent.elapsed();
        self.drain();
        (took, status)
    }

    /// Collects what is left of stderr (the process has ended).
    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.said.push(line);
        }
    }
}

/// Whether the process catches SIGTERM (15) and SIGINT (2).
fn handles_term_and_int(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0 && m & (1 << (libc::SIGINT - 1)) != 0)
}

/// Processes whose command line holds `needle` (arguments joined by spaces).
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) {
            found.push((pid, cmd));
        }
    }
    found
}

fn random_below(ms: u64) -> Duration {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(r % ms)
}

fn assert_clean_stop(what: &str, took: Duration, status: ExitStatus, p: &Proc) {
    assert!(
        status.success(),
        "{what}: exit {status} after {took:?}; it said:\n{}",
        p.said()
    );
    assert!(
        took <= GRACE + MARGIN,
        "{what}: took {took:?}; it said:\n{}",
        p.said()
    );
    eprintln!("{what}: stopped in {:.2} s", took.as_secs_f64());
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// As soon as the process handles signals (the store is being opened).
    Start,
    /// While the speech model loads and the demo's conversation is being spoken.
    ModelLoading,
    /// The demo meeting under way: the bot has joined, the voices are talking.
    MidMeeting,
}

/// `meetbot dev` with its demo, stopped by `sig` in `phase`.
fn dev_stops_within_the_grace(sig: i32, phase: Phase) {
    let dir = tempfile::tempdir().unwrap();
    let model = meetbot_testsupport::speech::whisper_model();
    let mut p = Proc::start(
        dir.path(),
        &["dev", "--demo-in", "5"],
        &[
            (
                "MEETBOT_TRANSCRIBER__MODEL_DIR",
                model.parent().unwrap().display().to_string(),
            ),
            (
                "MEETBOT_DELIVERY__EMAIL_DIR",
                dir.path().join("outbox").display().to_string(),
            ),
            ("MEETBOT_API__LISTEN", "127.0.0.1:0".into()),
            ("MEETBOT_TRANSCRIBER__LISTEN", "127.0.0.1:0".into()),
        ],
    );
    let what = format!("meetbot dev, signal {sig}, {phase:?}");
    p.wait_until_it_handles_signals();
    let mut bot = None;
    match phase {
        Phase::Start => {}
        Phase::ModelLoading => {
            p.wait_for_line("transcriber: loading the speech model", 60);
        }
        Phase::MidMeeting => {
            let tenant = p.wait_for_line("[2/3] demo tenant ", 60);
            let tenant = tenant.split_whitespace().nth(3).unwrap().to_string();
            let joined = p.wait_for_line("bot joined the room; the voices are talking", 120);
            let job = joined
                .split_whitespace()
                .nth(3)
                .unwrap()
                .trim_end_matches(':');
            let args = format!("bot --tenant {tenant} --job {job}");
            assert_eq!(
                processes_with(&args).len(),
                1,
                "the bot runs as a child process ({args})"
            );
            bot = Some((args, job.to_string()));
        }
    }
    let (took, status) = p.stop_with(sig);
    assert_clean_stop(&what, took, status, &p);
    let said = p.said();
    match phase {
        Phase::Start => assert!(
            !said.contains("ops server on"),
            "{what}: the stop came after start-up:\n{said}"
        ),
        Phase::ModelLoading => assert!(
            !said.contains("transcriber on ws"),
            "{what}: the stop came after the model was loaded:\n{said}"
        ),
        Phase::MidMeeting => {
            let (args, job) = bot.unwrap();
            assert!(
                said.contains(&format!("bot {job}: left (stopped)")),
                "{what}: the bot left on its SIGTERM:\n{said}"
            );
            assert!(said.contains("launcher: 1 bot(s) stopped"), "{said}");
            let left = processes_with(&args);
            assert!(left.is_empty(), "{what}: bot processes left: {left:?}");
        }
    }
    assert!(said.contains("meetbot dev: stopped"), "{said}");
    // Its private temporary directory went with it.
    let tmp: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .map(|e| e.path())
        .collect();
    assert!(tmp.is_empty(), "{what}: left {tmp:?}");
}

#[test]
fn dev_stops_within_the_grace_on_sigterm_right_at_start() {
    dev_stops_within_the_grace(libc::SIGTERM, Phase::Start);
}

#[test]
fn dev_stops_within_the_grace_on_sigint_right_at_start() {
    dev_stops_within_the_grace(libc::SIGINT, Phase::Start);
}

#[test]
fn dev_stops_within_the_grace_on_sigterm_while_the_model_loads_and_the_demo_is_prepared() {
    dev_stops_within_the_grace(libc::SIGTERM, Phase::ModelLoading);
}

#[test]
fn dev_stops_within_the_grace_on_sigint_while_the_model_loads_and_the_demo_is_prepared() {
    dev_stops_within_the_grace(libc::SIGINT, Phase::ModelLoading);
}

#[test]
fn dev_stops_within_the_grace_on_sigterm_mid_meeting_and_leaves_no_bot_process() {
    dev_stops_within_the_grace(libc::SIGTERM, Phase::MidMeeting);
}

#[test]
fn dev_stops_within_the_grace_on_sigint_mid_meeting_and_leaves_no_bot_process() {
    dev_stops_within_the_grace(libc::SIGINT, Phase::MidMeeting);
}

/// `meetbot <args>`, stopped by SIGTERM at a random moment in its first `window`, `rounds`
/// times; each stop must be clean and within the grace.
fn service_stops_within_the_grace_at_random_moments(
    args: &[&str],
    env: impl Fn(&Path) -> Vec<(&'static str, String)>,
    rounds: usize,
) {
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proc::start(dir.path(), args, &env(dir.path()));
        p.wait_until_it_handles_signals();
        let after = random_below(2_000);
        std::thread::sleep(after);
        let (took, status) = p.stop_with(libc::SIGTERM);
        let what = format!(
            "meetbot {}, round {round}, SIGTERM {} ms after its handlers",
            args.join(" "),
            after.as_millis()
        );
        assert_clean_stop(&what, took, status, &p);
    }
}

fn rabbitmq(_: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("MEETBOT_QUEUE__KIND", "rabbitmq".into()),
        ("MEETBOT_QUEUE__AMQP_URL", meetbot_testsupport::amqp_url()),
        (
            "MEETBOT_QUEUE__PREFIX",
            meetbot_testsupport::unique("shutdown"),
        ),
    ]
}

#[test]
fn scheduler_stops_within_the_grace_on_sigterm_at_random_moments() {
    service_stops_within_the_grace_at_random_moments(&["scheduler"], rabbitmq, 3);
}

#[test]
fn launcher_stops_within_the_grace_on_sigterm_at_random_moments() {
    service_stops_within_the_grace_at_random_moments(
        &["launcher"],
        |d| {
            let mut env = rabbitmq(d);
            env.push(("MEETBOT_LAUNCHER__CONTROL_LISTEN", "127.0.0.1:0".into()));
            env
        },
        3,
    );
}

#[test]
fn calendar_sync_stops_within_the_grace_on_sigterm_at_random_moments() {
    service_stops_within_the_grace_at_random_moments(
        &["calendar-sync"],
        |_| {
            vec![(
                "MEETBOT_CALENDAR__WEBHOOK_LISTEN",
                format!("127.0.0.1:{}", common::free_port()),
            )]
        },
        3,
    );
}

#[test]
fn api_stops_within_the_grace_on_sigterm_at_random_moments() {
    service_stops_within_the_grace_at_random_moments(
        &["api"],
        |_| vec![("MEETBOT_API__LISTEN", "127.0.0.1:0".into())],
        3,
    );
}

#[test]
fn delivery_stops_within_the_grace_on_sigterm_at_random_moments() {
    service_stops_within_the_grace_at_random_moments(&["delivery"], |_| Vec::new(), 3);
}

#[test]
fn transcriber_stops_within_the_grace_on_sigterm_at_random_moments() {
    let model = meetbot_testsupport::speech::whisper_model();
    let dir = model.parent().unwrap().display().to_string();
    service_stops_within_the_grace_at_random_moments(
        &["transcriber"],
        move |_| {
            vec![
                ("MEETBOT_TRANSCRIBER__LISTEN", "127.0.0.1:0".into()),
                ("MEETBOT_TRANSCRIBER__MODEL_DIR", dir.clone()),
                (
                    "MEETBOT_TRANSCRIBER__AUDIO_TOKEN_SECRET",
                    "a-test-secret-of-enough-length".into(),
                ),
            ]
        },
        3,
    );
}

/// `meetbot api` held open by a request that never finishes its headers.
fn api_with_an_unfinished_request(dir: &Path, grace: &str) -> (Proc, std::net::TcpStream) {
    let port = common::free_port();
    let mut p = Proc::start(
        dir,
        &["api"],
        &[
            ("MEETBOT_API__LISTEN", format!("127.0.0.1:{port}")),
            ("MEETBOT_OPS__SHUTDOWN_GRACE_SECONDS", grace.into()),
        ],
    );
    p.wait_for_line("api: http://", 30);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (p, s)
}

#[test]
fn a_service_that_cannot_finish_within_its_grace_exits_after_it_with_code_5_naming_what_did_not_stop()
 {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _held) = api_with_an_unfinished_request(dir.path(), "2");
    let (took, status) = p.stop_with(libc::SIGTERM);
    let said = p.said();
    assert_eq!(status.code(), Some(5), "{said}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(2) + MARGIN,
        "{took:?}"
    );
    assert!(
        said.contains(
            "error: meetbot api: did not stop within 2 s of SIGTERM (ops.shutdown_grace_seconds); still running: API server (open requests)"
        ),
        "{said}"
    );
}

#[test]
fn a_second_ctrl_c_exits_at_once_naming_what_did_not_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _held) = api_with_an_unfinished_request(dir.path(), "60");
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(p.pid(), libc::SIGINT) }, 0);
    p.wait_for_line("meetbot api: stopping (SIGINT)", 10);
    let (took, status) = p.stop_with(libc::SIGINT);
    let said = p.said();
    assert_eq!(status.code(), Some(5), "{said}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        said.contains("told to stop again") && said.contains("API server (open requests)"),
        "{said}"
    );
}

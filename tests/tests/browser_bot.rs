//! The browser connector (Debian's Chromium, driven over CDP) against local pages that
//! reproduce Google Meet's, Microsoft Teams' and Zoom's web-client flows, inside a network
//! namespace the test creates. Each test runs a whole bot session (`run_session`) and checks the
//! lifecycle it reported, the reason it left for, what the page saw it do (name typed,
//! microphone and camera off, the recording notice in the chat) and the audio it relayed: each
//! speaker's speech, under the speaker's name where the page shows who speaks.

use meetbot_bot::audio_stream::Outgoing;
use meetbot_bot::browser::profile::{Loaded, Profiles};
use meetbot_bot::browser::{BrowserConnector, BrowserSettings};
use meetbot_bot::connector::{AudioPacket, ConnectError, MeetingConnector};
use meetbot_bot::session::{LeaveReason, Lifecycle, Outcome, Rules, run_session};
use meetbot_testsupport::browser::{FakeMeetings, Scenario, Speaker};
use meetbot_testsupport::janus::{ice_ip, in_netns, voiced_span};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const NAME: &str = "meetbot (recording)";
const NOTICE: &str = "meetbot is recording this meeting to transcribe it.";

fn settings() -> BrowserSettings {
    BrowserSettings {
        ice_ip: ice_ip(),
        // Nothing but the test's own server resolves.
        extra_args: vec!["host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".into()],
        // Tests run as root, where Chromium refuses its sandbox; production bots keep it on.
        no_sandbox: true,
        ..BrowserSettings::default()
    }
}

fn profile(platform: &str) -> Arc<Loaded> {
    Profiles::load(None).unwrap().get(platform).unwrap()
}

fn rules() -> Rules {
    Rules {
        waiting_room_timeout: Duration::from_secs(60),
        alone_timeout: Duration::from_secs(120),
        silence_timeout: Duration::from_secs(120),
        max_duration: Duration::from_secs(120),
        ..Rules::default()
    }
}

struct Run {
    outcome: Result<Outcome, ConnectError>,
    lifecycle: Vec<Lifecycle>,
    audio: BTreeMap<String, Vec<AudioPacket>>,
}

async fn session(bot: &BrowserConnector, stop_after: Option<Duration>) -> Run {
    let (report_tx, mut report_rx) = mpsc::channel(64);
    let (audio_tx, mut audio_rx) = mpsc::channel::<Outgoing>(8192);
    let lifecycle = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(l) = report_rx.recv().await {
            v.push(l);
        }
        v
    });
    let audio = tokio::spawn(async move {
        let mut m: BTreeMap<String, Vec<AudioPacket>> = BTreeMap::new();
        while let Some(o) = audio_rx.recv().await {
            if let Outgoing::Audio(p) = o {
                m.entry(p.participant.clone()).or_default().push(p);
            }
        }
        m
    });
    let stop = async move {
        match stop_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let outcome = run_session(bot, NAME, NOTICE, rules(), report_tx, audio_tx, stop).await;
    Run {
        outcome,
        lifecycle: lifecycle.await.unwrap(),
        audio: audio.await.unwrap(),
    }
}

fn decode(pkts: &[AudioPacket]) -> Vec<i16> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut buf = vec![0i16; 5760];
    let mut pcm = Vec::new();
    for p in pkts {
        if let Ok(n) = dec.decode(&p.payload, &mut buf, false) {
            pcm.extend_from_slice(&buf[..n]);
        }
    }
    pcm
}

/// The speech relayed as `label` lasts as long as `speaker`'s (within `tol`).
fn assert_same_speech(run: &Run, label: &str, speaker: &Speaker, tol: f64) {
    let pkts = run
        .audio
        .get(label)
        .unwrap_or_else(|| panic!("no audio under {label:?}; got {:?}", run.audio.keys()));
    let got = voiced_span(&decode(pkts), 300.0);
    let want = voiced_span(&speaker.pcm48, 300.0);
    let off = (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64();
    eprintln!(
        "{label}: {} packets, speech sent {want:?}, relayed {got:?}",
        pkts.len()
    );
    assert!(
        off <= tol,
        "{label}: sent {want:?} of speech, relayed {got:?} ({:.0}% off)",
        off * 100.0
    );
}

fn speakers() -> Vec<Speaker> {
    vec![
        Speaker::saying(
            "Ann Example",
            "Please send the signed contract by Friday.",
            500,
        ),
        Speaker::saying(
            "Bob Example",
            "We will review the treatment plan at the next appointment, and then we decide on the budget.",
            4500,
        ),
    ]
}

/// A call on `platform`'s page: the bot waits `admit_after_ms` in the lobby, two people speak
/// (Ann, then Bob), and after 14 s the host ends the call (`ended`) or removes the bot.
/// Checks what every platform shares: the reason, the lifecycle, the name typed with
/// microphone and camera off, and the recording notice in the chat.
async fn call(platform: &str, profile_name: &str, admit_after_ms: u64, removed: bool) -> Run {
    let fake = FakeMeetings::start().await;
    let mut sc = Scenario::new(platform, "admit");
    sc.admit_after_ms = admit_after_ms;
    sc.speakers = speakers();
    if removed {
        sc.remove_after_ms = Some(14_000);
    } else {
        sc.end_after_ms = Some(14_000);
    }
    let url = fake.add(sc);
    let bot = BrowserConnector::new(settings(), profile(profile_name), url.clone());
    let run = session(&bot, None).await;
    let reason = LeaveReason::Ended(
        if removed {
            "removed from the meeting"
        } else {
            "the meeting ended"
        }
        .into(),
    );
    assert_eq!(run.outcome.as_ref().expect("session ran").reason, reason);
    assert_eq!(
        run.lifecycle,
        vec![
            Lifecycle::Joining,
            Lifecycle::WaitingRoom,
            Lifecycle::InCall,
            Lifecycle::Recording,
            Lifecycle::Leaving(reason),
        ]
    );
    let join = fake.wait_event(&url, "join", Duration::ZERO).await.unwrap();
    assert_eq!(join["name"], NAME, "display name typed");
    assert_eq!(join["mic"], false, "microphone off before joining");
    assert_eq!(join["cam"], false, "camera off before joining");
    let chat = fake.wait_event(&url, "chat", Duration::ZERO).await;
    assert_eq!(chat.expect("notice posted")["text"], NOTICE);
    run
}

#[test]
fn meet_bot_waits_in_the_lobby_is_let_in_posts_its_notice_relays_each_speaker_and_leaves_when_the_call_ends()
 {
    in_netns(|| async {
        let run = call("meet", "google-meet", 2500, false).await;
        // Meet: one track per speaker, in the order they first spoke.
        let spk = speakers();
        assert_eq!(run.audio.len(), 2, "two tracks: {:?}", run.audio.keys());
        assert_same_speech(&run, "track-1", &spk[0], 0.1);
        assert_same_speech(&run, "track-2", &spk[1], 0.1);
    });
}

#[test]
fn teams_anonymous_join_through_the_launcher_names_each_speaker_from_the_roster_until_removed() {
    in_netns(|| async {
        let run = call("teams", "teams", 1500, true).await;
        // One mixed track, split by who the roster shows speaking: under their names.
        let spk = speakers();
        assert_same_speech(&run, "Ann Example", &spk[0], 0.25);
        assert_same_speech(&run, "Bob Example", &spk[1], 0.25);
    });
}

#[test]
fn zoom_link_in_the_web_client_names_speakers_posts_with_enter_and_leaves_when_the_host_ends_it() {
    in_netns(|| async {
        let run = call("zoom", "zoom", 1000, false).await;
        let spk = speakers();
        assert_same_speech(&run, "Ann Example", &spk[0], 0.25);
        assert_same_speech(&run, "Bob Example", &spk[1], 0.25);
    });
}

#[test]
fn a_host_who_denies_entry_fails_the_session_with_the_denial_and_screenshots_of_each_step() {
    in_netns(|| async {
        let fake = FakeMeetings::start().await;
        let mut sc = Scenario::new("zoom", "deny");
        sc.admit_after_ms = 1500;
        let url = fake.add(sc);
        let bot = BrowserConnector::new(settings(), profile("zoom"), url.clone());
        let run = session(&bot, None).await;
        let out = run.outcome.expect("session ran");
        assert_eq!(
            out.reason,
            LeaveReason::Denied("the host denied entry".into())
        );
        assert!(!out.reason.is_success(), "a denial fails the job");
        assert_eq!(run.lifecycle[1], Lifecycle::WaitingRoom);
        assert!(!run.lifecycle.contains(&Lifecycle::InCall));
        let shots = bot.screenshots();
        let steps: Vec<&str> = shots.iter().map(|s| s.step.as_str()).collect();
        assert!(
            steps.contains(&"join") && steps.contains(&"denied"),
            "{steps:?}"
        );
        assert!(
            shots
                .iter()
                .all(|s| s.jpeg.starts_with(&[0xff, 0xd8, 0xff])),
            "JPEG images"
        );
    });
}

#[test]
fn a_changed_join_selector_in_the_profile_file_changes_behaviour_without_a_rebuild() {
    in_netns(|| async {
        let fake = FakeMeetings::start().await;
        let mut sc = Scenario::new("teams", "open");
        sc.join_tid = Some("prejoin-join-button-v2".into());
        let url = fake.add(sc);

        // The shipped profile looks for the old button: the join fails, saying which step.
        let mut p = profile("teams").profile.clone();
        p.timeouts.step_seconds = 4;
        let quick = Arc::new(Loaded::parse("t.toml", &toml_of(&p)).unwrap());
        let bot = BrowserConnector::new(settings(), quick, url.clone());
        let (tx, _rx) = mpsc::channel(64);
        let err = match bot.join(NAME, tx).await {
            Err(e) => e,
            Ok(_) => panic!("joined with the old selector"),
        };
        assert!(
            matches!(&err, ConnectError::Refused(m) if m.contains("step 'join'")),
            "{err}"
        );
        assert!(bot.screenshots().iter().any(|s| s.step == "join"));

        // The same profile as a file, with the selector edited, read at start.
        let dir = tempfile::tempdir().unwrap();
        let text = meetbot_bot::browser::profile::BUILT_IN
            .iter()
            .find(|(n, _)| *n == "teams")
            .unwrap()
            .1
            .replace(
                "button[data-tid=\"prejoin-join-button\"]",
                "button[data-tid=\"prejoin-join-button-v2\"]",
            );
        std::fs::write(dir.path().join("teams.toml"), text).unwrap();
        let edited = Profiles::load(Some(dir.path()))
            .unwrap()
            .get("teams")
            .unwrap();
        let bot = BrowserConnector::new(settings(), edited, url.clone());
        let run = session(&bot, Some(Duration::from_secs(6))).await;
        let out = run.outcome.expect("session ran");
        assert_eq!(out.reason, LeaveReason::Stopped);
        assert!(
            run.lifecycle.contains(&Lifecycle::InCall),
            "{:?}",
            run.lifecycle
        );
        assert!(
            fake.wait_event(&url, "join", Duration::ZERO)
                .await
                .is_some()
        );
    });
}

fn toml_of(p: &meetbot_bot::browser::profile::Profile) -> String {
    toml::to_string(p).unwrap()
}

/// Runs a session that is in the call when `harm` is done to its Chromium; returns the error and
/// how long after the harm the session ended.
async fn harmed(signal: i32) -> (ConnectError, Duration) {
    let fake = FakeMeetings::start().await;
    let mut sc = Scenario::new("meet", "open");
    sc.speakers = speakers();
    let url = fake.add(sc);
    let bot = Arc::new(BrowserConnector::new(
        settings(),
        profile("google-meet"),
        url.clone(),
    ));
    let harmed_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (b, at, f_url) = (bot.clone(), harmed_at.clone(), url.clone());
    let fake = Arc::new(fake);
    let f = fake.clone();
    let harm = tokio::spawn(async move {
        f.wait_event(&f_url, "audio-ready", Duration::from_secs(30))
            .await
            .expect("the call started");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = b.browser_pid().expect("chromium runs") as i32;
        *at.lock().unwrap() = Some(Instant::now());
        // SAFETY: kill(2) on the Chromium this test's connector started, by its PID.
        unsafe { libc::kill(pid, signal) };
        pid
    });
    let run = session(&bot, Some(Duration::from_secs(60))).await;
    let ended = Instant::now();
    let pid = harm.await.unwrap();
    // SAFETY: as above; a stopped process is let go so it can die.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
        libc::kill(pid, libc::SIGKILL);
    }
    let after = ended - harmed_at.lock().unwrap().expect("harm done");
    match run.outcome {
        Err(e) => (e, after),
        Ok(o) => panic!("the session did not fail: {:?}", o.reason),
    }
}

#[test]
fn a_chromium_crash_mid_meeting_fails_the_session_within_ten_seconds() {
    in_netns(|| async {
        let (e, after) = harmed(libc::SIGKILL).await;
        eprintln!("crash detected after {after:?}: {e}");
        assert!(
            matches!(&e, ConnectError::Lost(m) if m.contains("exited")),
            "{e}"
        );
        assert!(after < Duration::from_secs(10), "detected after {after:?}");
    });
}

#[test]
fn a_hung_chromium_mid_meeting_fails_the_session_within_ten_seconds() {
    in_netns(|| async {
        let (e, after) = harmed(libc::SIGSTOP).await;
        eprintln!("hang detected after {after:?}: {e}");
        assert!(
            matches!(&e, ConnectError::Lost(m) if m.contains("stopped responding")),
            "{e}"
        );
        assert!(after < Duration::from_secs(10), "detected after {after:?}");
    });
}

#[test]
fn an_unreachable_meeting_page_fails_the_join_with_the_network_error_and_not_the_link() {
    in_netns(|| async {
        // A port that was free a moment ago: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let link = format!("http://127.0.0.1:{port}/meet/abc-defg-hij?pwd=secret-passcode");
        let bot = BrowserConnector::new(settings(), profile("google-meet"), link);
        let (tx, _rx) = mpsc::channel(64);
        let err = match bot.join(NAME, tx).await {
            Err(e) => e,
            Ok(_) => panic!("joined an unreachable page"),
        };
        let text = err.to_string();
        assert!(matches!(err, ConnectError::Unreachable(_)), "{text}");
        assert!(text.contains("net::ERR_CONNECTION_REFUSED"), "{text}");
        assert!(
            !text.contains("secret-passcode") && !text.contains("abc-defg"),
            "{text}"
        );
    });
}

#[test]
fn a_chromium_that_hangs_at_start_is_started_again_and_the_join_goes_on() {
    in_netns(|| async {
        // A Chromium whose first start hangs before announcing DevTools (as one did on a
        // loaded CI machine), whose later starts are the real one.
        let dir = tempfile::tempdir().unwrap();
        let starts = dir.path().join("starts");
        let script = dir.path().join("chromium");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho start >> '{}'\n[ $(wc -l < '{}') -gt 1 ] || exec sleep 60\nexec /usr/bin/chromium \"$@\"\n",
                starts.display(),
                starts.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let link = format!("http://127.0.0.1:{port}/meet/abc-defg-hij");
        let run = |attempts: u32| {
            let s = BrowserSettings {
                chromium: script.clone(),
                launch_timeout: Duration::from_secs(3),
                launch_attempts: attempts,
                ..settings()
            };
            BrowserConnector::new(s, profile("google-meet"), link.clone())
        };
        // One attempt: the hang is the join's failure.
        let (tx, _rx) = mpsc::channel(64);
        let err = run(1)
            .join(NAME, tx)
            .await
            .err()
            .expect("a hung start fails");
        assert!(err.to_string().contains("cannot start chromium"), "{err}");
        // Again, with the default attempts: the second start is used and the join goes on to
        // the page (which refuses: nothing listens there).
        std::fs::remove_file(&starts).unwrap();
        let (tx, _rx) = mpsc::channel(64);
        let err = run(BrowserSettings::default().launch_attempts)
            .join(NAME, tx)
            .await
            .err()
            .expect("nothing listens on the meeting's port");
        assert!(
            err.to_string().contains("net::ERR_CONNECTION_REFUSED"),
            "{err}"
        );
        let n = std::fs::read_to_string(&starts).unwrap().lines().count();
        assert_eq!(n, 2, "started twice");
    });
}

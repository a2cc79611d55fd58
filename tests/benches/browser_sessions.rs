//! CPU and memory per browser bot session (Chromium driving a meeting page, audio relayed to the
//! bot over loopback WebRTC) next to a Janus session (pure WebRTC, webrtc-rs), in a network
//! namespace like the tests.
//!
//! Browser: N sessions on the local Meet-like page, two speakers talking without pause (the
//! page itself plays them into a peer connection, so its Chromium also encodes them: a
//! real meeting's Chromium only receives — these figures are an upper bound). Janus: N
//! VideoRooms with one publisher each (a helper process) and N bot sessions. Over a window it
//! reads, from /proc, CPU time (utime + stime) of this process and of every Chromium process
//! tree, and memory as PSS (shared pages split between the processes that map them), and
//! prints per-session CPU % (of one core) and memory, and audio packets per second received.
//!
//! Run (root): `cargo bench -p meetbot-tests --bench browser_sessions`
//! Options: `-- --counts 1,3 --seconds 15`.

use meetbot_bot::browser::profile::Profiles;
use meetbot_bot::browser::{BrowserConnector, BrowserSettings};
use meetbot_bot::connector::{ConnectorEvent, MeetingConnector};
use meetbot_bot::janus::{JanusVideoRoom, VideoRoomSettings};
use meetbot_testsupport::browser::{FakeMeetings, Scenario, Speaker};
use meetbot_testsupport::janus::{JanusServer, ice_ip, in_netns, speech, talk_in_rooms};
use meetbot_testsupport::procstat::{arg, pss, respawn, stat, tree};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

const URL: &str = "http://127.0.0.1:8088/janus";
const FIRST_ROOM: u64 = 7000;

/// (CPU seconds, PSS bytes) of the given processes.
fn usage(pids: &[u32]) -> (f64, u64) {
    pids.iter().fold((0.0, 0), |(c, m), p| {
        (c + stat(*p).map(|s| s.0).unwrap_or(0.0), m + pss(*p))
    })
}

struct Row {
    kind: &'static str,
    n: u64,
    bot_cpu: f64,
    bot_mem: u64,
    browser_cpu: f64,
    browser_mem: u64,
    pps: f64,
}

async fn browser_rows(counts: &[u64], window: u64) -> Vec<Row> {
    let fake = FakeMeetings::start().await;
    let mut long_a = Vec::new();
    let mut long_b = Vec::new();
    for _ in 0..12 {
        long_a.extend(speech(
            "Please send the signed contract to the client by Friday.",
        ));
        long_b.extend(speech(
            "We will review the treatment plan at the next appointment.",
        ));
    }
    let profile = Profiles::load(None).unwrap().get("google-meet").unwrap();
    let me = std::process::id();
    let mut rows = Vec::new();
    for &n in counts {
        let packets = Arc::new(AtomicU64::new(0));
        let mut bots = Vec::new();
        let mut tasks = Vec::new();
        let (_, mem0) = usage(&[me]);
        for _ in 0..n {
            let mut sc = Scenario::new("meet", "open");
            let mut a = Speaker::saying("Ann Example", "x", 0);
            a.pcm48 = long_a.clone();
            let mut b = Speaker::saying("Bob Example", "x", 0);
            b.pcm48 = long_b.clone();
            sc.speakers = vec![a, b];
            let url = fake.add(sc);
            let bot = Arc::new(BrowserConnector::new(
                BrowserSettings {
                    ice_ip: ice_ip(),
                    extra_args: vec![
                        "host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".into(),
                    ],
                    // Run as root, where Chromium refuses its sandbox; production keeps it on.
                    no_sandbox: true,
                    ..BrowserSettings::default()
                },
                profile.clone(),
                url,
            ));
            let (tx, mut rx) = mpsc::channel(8192);
            let joined = bot.join("meetbot (recording)", tx).await.expect("join");
            let p = packets.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if let ConnectorEvent::Audio(_) = ev {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
            bots.push((bot, joined));
        }
        tokio::time::sleep(Duration::from_secs(8)).await;
        let browsers = || -> Vec<u32> {
            bots.iter()
                .filter_map(|(b, _)| b.browser_pid())
                .flat_map(tree)
                .collect()
        };
        let (c0, _) = usage(&[me]);
        let (bc0, _) = usage(&browsers());
        let p0 = packets.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(window)).await;
        let (c1, mem1) = usage(&[me]);
        let (bc1, bmem) = usage(&browsers());
        let p1 = packets.load(Ordering::Relaxed);
        for (_, j) in bots {
            j.leave().await;
        }
        for t in tasks {
            let _ = t.await;
        }
        let w = window as f64;
        rows.push(Row {
            kind: "browser (Chromium + relay)",
            n,
            bot_cpu: (c1 - c0) / w * 100.0 / n as f64,
            bot_mem: mem1.saturating_sub(mem0) / n,
            browser_cpu: (bc1 - bc0) / w * 100.0 / n as f64,
            browser_mem: bmem / n,
            pps: (p1 - p0) as f64 / w / n as f64,
        });
    }
    rows
}

fn publishers(first: u64, n: u64, seconds: u64) -> Child {
    respawn(&[
        "--publishers",
        &first.to_string(),
        "--n",
        &n.to_string(),
        "--seconds",
        &seconds.to_string(),
    ])
}

async fn janus_rows(counts: &[u64], window: u64) -> Vec<Row> {
    let j = JanusServer::start().await;
    let me = std::process::id();
    let mut rows = Vec::new();
    let mut room = FIRST_ROOM;
    for &n in counts {
        for r in room..room + n {
            j.create_room(r, None).await;
        }
        let mut pubs = publishers(room, n, window + 14);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let packets = Arc::new(AtomicU64::new(0));
        let (_, mem0) = usage(&[me]);
        let mut joined = Vec::new();
        let mut tasks = Vec::new();
        for r in room..room + n {
            let bot = JanusVideoRoom::new(VideoRoomSettings {
                url: URL.into(),
                room: r,
                pin: None,
                ice_ip: ice_ip(),
                channel_depth: 4096,
            });
            let (tx, mut rx) = mpsc::channel(8192);
            joined.push(bot.join("meetbot (recording)", tx).await.expect("join"));
            let p = packets.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if let ConnectorEvent::Audio(_) = ev {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (c0, _) = usage(&[me]);
        let p0 = packets.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(window)).await;
        let (c1, mem1) = usage(&[me]);
        let p1 = packets.load(Ordering::Relaxed);
        for x in joined {
            x.leave().await;
        }
        for t in tasks {
            let _ = t.await;
        }
        let _ = pubs.kill();
        let _ = pubs.wait();
        let w = window as f64;
        rows.push(Row {
            kind: "Janus (webrtc-rs)",
            n,
            bot_cpu: (c1 - c0) / w * 100.0 / n as f64,
            bot_mem: mem1.saturating_sub(mem0) / n,
            browser_cpu: 0.0,
            browser_mem: 0,
            pps: (p1 - p0) as f64 / w / n as f64,
        });
        room += n;
    }
    rows
}

fn main() {
    if let Some(first) = arg("--publishers") {
        let first: u64 = first.parse().expect("room");
        let n: u64 = arg("--n").and_then(|v| v.parse().ok()).unwrap_or(1);
        let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(20);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(talk_in_rooms(URL, first, n, seconds));
        return;
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; this bench only runs on `cargo bench`
    }
    let counts: Vec<u64> = arg("--counts")
        .unwrap_or_else(|| "1,3".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let window: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(15);
    let c2 = counts.clone();
    let mut rows = in_netns(move || async move { janus_rows(&c2, window).await });
    rows.extend(in_netns(move || async move {
        browser_rows(&counts, window).await
    }));
    let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
    println!("\nper session, {window} s window, 2 speakers (browser) / 1 speaker (Janus)\n");
    println!(
        "| connector | sessions | bot CPU % | bot memory MiB | Chromium CPU % | Chromium PSS MiB | total CPU % | packets/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} |",
            r.kind,
            r.n,
            r.bot_cpu,
            mib(r.bot_mem),
            r.browser_cpu,
            mib(r.browser_mem),
            r.bot_cpu + r.browser_cpu,
            r.pps
        );
    }
}

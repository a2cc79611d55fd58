//! CPU and memory per concurrent bot session, against the real Janus in a network namespace.
//!
//! For each count N (default 1, 10, 50, 100): N VideoRooms, each with one participant publishing
//! a spoken Opus stream (all publishers in one helper process), and N bot sessions each receiving
//! that one stream — first all in this process, then as N separate `bot` processes. Over a
//! measuring window it reads CPU time (utime + stime) and RSS from /proc and prints per-session
//! CPU % (of one core) and RSS, and the packets each session received per second.
//!
//! Run (root, like the tests): `cargo bench -p meetbot-tests --bench bot_sessions`
//! Options: `-- --counts 1,10 --seconds 10`.

use meetbot_bot::connector::{ConnectorEvent, MeetingConnector};
use meetbot_bot::janus::{JanusVideoRoom, VideoRoomSettings};
use meetbot_testsupport::janus::{JanusServer, ice_ip, in_netns, talk_in_rooms};
use meetbot_testsupport::procstat::{arg, respawn, rss, stat};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

const FIRST_ROOM: u64 = 5000;
const URL: &str = "http://127.0.0.1:8088/janus";

/// (CPU seconds used so far, RSS bytes) of `pid`.
fn usage(pid: u32) -> (f64, u64) {
    (stat(pid).map(|s| s.0).unwrap_or(0.0), rss(pid))
}

fn settings(room: u64) -> VideoRoomSettings {
    VideoRoomSettings {
        url: URL.into(),
        room,
        pin: None,
        ice_ip: ice_ip(),
        channel_depth: 4096,
    }
}

/// One bot session: joins `room`, counts packets until `stop`.
async fn session(room: u64, packets: Arc<AtomicU64>, seconds: u64) {
    let (tx, mut rx) = mpsc::channel(4096);
    let bot = JanusVideoRoom::new(settings(room));
    let Ok(joined) = bot.join("meetbot (recording)", tx).await else {
        eprintln!("room {room}: join failed");
        return;
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let ConnectorEvent::Audio(_) = ev {
            packets.fetch_add(1, Ordering::Relaxed);
        }
    }
    joined.leave().await;
}

fn child(role: &str, first: u64, n: u64, seconds: u64) -> Child {
    respawn(&[
        "--role",
        role,
        "--first",
        &first.to_string(),
        "--n",
        &n.to_string(),
        "--seconds",
        &seconds.to_string(),
    ])
}

fn run_role(role: &str) {
    let first: u64 = arg("--first")
        .and_then(|v| v.parse().ok())
        .unwrap_or(FIRST_ROOM);
    let n: u64 = arg("--n").and_then(|v| v.parse().ok()).unwrap_or(1);
    let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match role {
            "publishers" => talk_in_rooms(URL, first, n, seconds).await,
            _ => {
                let packets = Arc::new(AtomicU64::new(0));
                session(first, packets, seconds).await;
            }
        }
    });
}

fn main() {
    if let Some(role) = arg("--role") {
        run_role(&role);
        return;
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; this bench only runs on `cargo bench`
    }
    let counts: Vec<u64> = arg("--counts")
        .unwrap_or_else(|| "1,10,50,100".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let window: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(10);
    let rows = in_netns(move || async move {
        let j = JanusServer::start().await;
        let mut rows = Vec::new();
        let mut room = FIRST_ROOM;
        for &n in &counts {
            for mode in ["one process", "separate processes"] {
                for r in room..room + n {
                    j.create_room(r, None).await;
                }
                let settle = 4 + n / 10;
                let total = settle + window + 2;
                let mut publishers = child("publishers", room, n, total + 2);
                tokio::time::sleep(Duration::from_secs(2 + n / 20)).await;
                let me = std::process::id();
                let (cpu, rss, pkts) = if mode == "one process" {
                    let packets = Arc::new(AtomicU64::new(0));
                    let (_, rss0) = usage(me);
                    let mut tasks = Vec::new();
                    for r in room..room + n {
                        tasks.push(tokio::spawn(session(r, packets.clone(), total)));
                    }
                    tokio::time::sleep(Duration::from_secs(settle)).await;
                    let (c0, _) = usage(me);
                    let p0 = packets.load(Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(window)).await;
                    let (c1, rss1) = usage(me);
                    let p1 = packets.load(Ordering::Relaxed);
                    for t in tasks {
                        let _ = t.await;
                    }
                    (c1 - c0, rss1.saturating_sub(rss0), p1 - p0)
                } else {
                    let mut bots: Vec<Child> = (room..room + n)
                        .map(|r| child("bot", r, 1, total))
                        .collect();
                    tokio::time::sleep(Duration::from_secs(settle)).await;
                    let c0: f64 = bots.iter().map(|b| usage(b.id()).0).sum();
                    tokio::time::sleep(Duration::from_secs(window)).await;
                    let (c1, rss): (f64, u64) = bots
                        .iter()
                        .map(|b| usage(b.id()))
                        .fold((0.0, 0), |(c, r), (bc, br)| (c + bc, r + br));
                    for b in bots.iter_mut() {
                        let _ = b.wait();
                    }
                    (c1 - c0, rss, 0)
                };
                let _ = publishers.wait();
                for r in room..room + n {
                    j.destroy_room(r).await;
                }
                room += n;
                rows.push((n, mode, cpu, rss, pkts));
                eprintln!("measured {n} sessions, {mode}");
            }
        }
        rows
    });
    println!(
        "\n{:>8}  {:<20} {:>14} {:>14} {:>16}",
        "sessions", "mode", "CPU %/session", "RSS/session", "packets/s/session"
    );
    for (n, mode, cpu, rss, pkts) in rows {
        let per_cpu = cpu / window as f64 / n as f64 * 100.0;
        let per_rss = rss as f64 / n as f64 / (1024.0 * 1024.0);
        let pps = if pkts > 0 {
            format!("{:.1}", pkts as f64 / window as f64 / n as f64)
        } else {
            "-".into()
        };
        println!("{n:>8}  {mode:<20} {per_cpu:>13.2}% {per_rss:>11.1} MiB {pps:>16}");
    }
}

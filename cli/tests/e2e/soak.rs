//! The chaos soak (#23 item 5, RELIABILITY.md): the end-to-end topology of `e2e.rs` (every
//! service a real `meetbot` process, real RabbitMQ, the MongoDB-wire store, real Janus rooms where
//! espeak-ng speakers talk, whisper tiny.en, maildev and the Slack stand-in) with several meetings
//! at once, while a chaos loop kills, at random, the scheduler, the launcher, a bot, the
//! transcriber, the delivery worker (SIGKILL or SIGTERM) or cuts every RabbitMQ connection, and
//! restarts what it killed, as Kubernetes would. Any service that exits by itself is restarted
//! too, and counted.
//!
//! Then, per meeting: at no moment two bot processes for its job; every sentence spoken while a
//! bot was in the room is in the transcript, none twice; one summary; one email and one Slack
//! post. Memory of each service is sampled from /proc. The table is printed and, with
//! `MEETBOT_TEST_SOAK_REPORT=FILE`, written there.
//!
//! Size: `MEETBOT_TEST_SOAK_MEETINGS` (default 3) and `MEETBOT_TEST_SOAK_SECONDS` of speech
//! (default 100); `bash scripts/soak.sh` runs 20 meetings for 10 minutes.

use super::*;
use meetbot_testsupport::janus::{Script, relay_with_cut};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Instant;

const FIRST_ROOM: u64 = 7100;
const BOT_NAME: &str = "Soak notetaker";

/// From a bot process's start to its bot in the room (seconds; about 1 s here).
const JOIN_TIME: f64 = 3.0;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator seeded from the clock (the seed is printed: a failing run can be
/// repeated with `MEETBOT_TEST_SOAK_SEED`).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Words of a sentence as compared: lower case, letters and digits only.
fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// A spoken sentence counts as heard when enough of its words are in one stretch of the
/// transcript of its speaker: the longest common subsequence with some window covers at least
/// 30% of its words and two of them (whisper tiny.en mishears espeak-ng now and then: "Both bugs
/// are fixed and the patch is in review" came back as "Both were marthicced and the passion in
/// review", "The interviews will start at the beginning of next week" as "They didn't move
/// wheels to our time, but we'll be beginning on next week"). What was not transcribed at all
/// matches none.
fn heard(sentence: &str, speaker_words: &[String]) -> bool {
    let s = words(sentence);
    if s.is_empty() {
        return true;
    }
    let n = s.len();
    // Windows of the speaker's words about the sentence's length, every start.
    let w = n + n / 2 + 2;
    let best = (0..speaker_words.len().max(1))
        .map(|i| {
            let win = &speaker_words[i.min(speaker_words.len())..(i + w).min(speaker_words.len())];
            lcs(&s, win)
        })
        .max()
        .unwrap_or(0);
    best * 10 >= n * 3 && best >= 2.min(n)
}

fn lcs(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `meetbot bot` processes of this tenant on the machine: pid -> job id.
fn bot_processes(tenant: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) != Some("bot") {
            continue;
        }
        let val = |k: &str| {
            args.iter()
                .position(|a| a == k)
                .and_then(|i| args.get(i + 1).cloned())
        };
        // A zombie (killed, not yet reaped) has an empty cmdline and is skipped above.
        if val("--tenant").as_deref() == Some(tenant)
            && let Some(job) = val("--job")
        {
            out.insert(pid, job);
        }
    }
    out
}

fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started (a service or one of its bots).
    unsafe { libc::kill(pid as i32, sig) };
}

/// One incarnation of a service.
struct Proc {
    name: String,
    child: std::process::Child,
    started: Instant,
    /// (seconds since its start, RSS MiB)
    rss: Vec<(f64, f64)>,
}

#[derive(Default)]
struct Chaos {
    /// (seconds since speech began, victim, how)
    events: Vec<(f64, String, String)>,
    /// Exits nobody asked for, per service.
    unexpected: BTreeMap<String, u32>,
    /// job id -> [(killed at, seconds since speech began)]
    bot_kills: HashMap<String, Vec<f64>>,
    /// Finished incarnations' memory: service -> [(lifetime s, first RSS after 20 s, last RSS, max)]
    memory: BTreeMap<String, Vec<(f64, f64, f64, f64)>>,
}

fn retire(p: &Proc, chaos: &mut Chaos) {
    let life = p.started.elapsed().as_secs_f64();
    let settled: Vec<f64> = p
        .rss
        .iter()
        .filter(|(t, _)| *t >= 20.0)
        .map(|(_, r)| *r)
        .collect();
    if let (Some(first), Some(last)) = (settled.first(), settled.last()) {
        let max = settled.iter().cloned().fold(0.0, f64::max);
        chaos
            .memory
            .entry(p.name.clone())
            .or_default()
            .push((life, *first, *last, max));
    }
}

#[test]
fn meetings_come_through_whole_while_services_bots_and_the_broker_link_are_killed_at_random() {
    let meetings = env_num("MEETBOT_TEST_SOAK_MEETINGS", 3).clamp(1, 40) as usize;
    let speech_secs = env_num("MEETBOT_TEST_SOAK_SECONDS", 100).clamp(30, 3600);
    let seed = env_num(
        "MEETBOT_TEST_SOAK_SEED",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    eprintln!("soak: {meetings} meetings, {speech_secs} s of speech, seed {seed}");
    let amqp = meetbot_testsupport::amqp_url();
    let mongo = meetbot_testsupport::mongodb_uri();
    let model = meetbot_testsupport::speech::whisper_model();
    let host = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = host.handle().clone();
    in_netns(move || async move {
        let mut rng = Rng(seed);
        let (amqp_relay, cut) = relay_with_cut(&handle, socket_of(&host_port(&amqp)));
        let mongo_relay = relay_from_host(&handle, socket_of(&host_port(&mongo)));
        let amqp_in = amqp.replace(&host_port(&amqp), &amqp_relay.to_string());
        let mongo_in = mongo.replace(&host_port(&mongo), &mongo_relay.to_string());

        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        let prefix = meetbot_testsupport::unique("soak");
        let Clinic {
            engine,
            store,
            t,
            vault,
        } = Clinic::open(
            &mongo_in,
            &prefix,
            &key_file,
            "Soak clinic",
            BotRuleOverrides {
                display_name: Some(BOT_NAME.into()),
                // Long enough for the speakers of every room to arrive after the bots.
                alone_timeout_seconds: Some((3 * meetings as u64).max(20)),
                ..Default::default()
            },
            "C0SOAK",
        )
        .await;

        // N meetings in N rooms, all starting in 30 s, each long enough for the speech.
        let google = GoogleStandIn::start().await;
        google.set_owner(USER);
        let start = Utc::now() + CDuration::seconds(30);
        for i in 0..meetings {
            let room = FIRST_ROOM + i as u64;
            google.upsert(serde_json::json!({
                "kind": "calendar#event", "id": format!("soak{i}"), "status": "confirmed",
                "summary": format!("Soak meeting {i:02}"),
                "location": format!("https://rooms.clinic.example/room/{room}"),
                "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
                "end": {"dateTime": (start + CDuration::seconds(speech_secs as i64 + 600)).to_rfc3339(), "timeZone": "UTC"},
                "organizer": {"email": USER, "self": true},
                "attendees": [{"email": USER, "self": true, "organizer": true, "responseStatus": "accepted"}]
            }));
        }
        google_connection(&*store, &vault, &t).await;

        let janus = JanusServer::start().await;
        for i in 0..meetings {
            janus.create_room(FIRST_ROOM + i as u64, None).await;
        }
        let mail = MailDev::start().await.unwrap();
        let slack = SlackStandIn::start("xoxb-soak").await;

        let transcriber_port = free_port();
        let control_port = free_port();
        let mut env = service_env(&Deployment {
            mongo: &mongo_in,
            prefix: &prefix,
            key_file: &key_file,
            amqp: &amqp_in,
            google: &google,
            janus: &janus,
            transcriber_port,
            model: &model,
            mail: &mail,
            slack: &slack,
            slack_token: "xoxb-soak",
        });
        // One address across launcher restarts: the bots a killed launcher left running
        // report to the next one.
        env.push((
            "MEETBOT_LAUNCHER__CONTROL_LISTEN".into(),
            format!("127.0.0.1:{control_port}"),
        ));
        env.push((
            "MEETBOT_LAUNCHER__MAX_CONCURRENT".into(),
            (meetings + 4).to_string(),
        ));
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let incarnation = std::sync::atomic::AtomicU32::new(0);
        let spawn = |name: &str| {
            let n = incarnation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let log = std::fs::File::create(logs.join(format!("{n:03}-{name}.log"))).unwrap();
            Proc {
                name: name.to_string(),
                child: service_command(name, &env, dir.path())
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("meetbot {name}: {e}")),
                started: Instant::now(),
                rss: Vec::new(),
            }
        };
        const SERVICES: [&str; 5] = [
            "transcriber",
            "launcher",
            "scheduler",
            "calendar-sync",
            "delivery",
        ];
        let mut procs: Vec<Proc> = SERVICES.iter().map(|s| spawn(s)).collect();
        let mut c = Chaos::default();
        let tenant = t.as_str().to_string();

        // Every meeting gets its job and its bot joins.
        let all_joined = Instant::now();
        let jobs: Vec<(String, String)> = loop {
            let js = store
                .find_bot_jobs(&t, &JobFilter::default())
                .await
                .unwrap();
            let joined: Vec<_> = js
                .iter()
                .filter(|j| j.value.state.name() == "joined")
                .map(|j| (j.value.id.clone(), j.value.meeting_id.clone()))
                .collect();
            if joined.len() == meetings {
                break joined;
            }
            for p in &mut procs {
                if let Ok(Some(st)) = p.child.try_wait() {
                    panic!(
                        "`meetbot {}` exited ({st}) before the meetings began",
                        p.name
                    );
                }
            }
            assert!(
                all_joined.elapsed() < Duration::from_secs(150 + 5 * meetings as u64),
                "only {} of {meetings} bots joined: {:?}",
                joined.len(),
                js.iter().map(|j| j.value.state.name()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let mut meeting_of_room: BTreeMap<u64, String> = BTreeMap::new();
        for (_, mid) in &jobs {
            let m = store.get_meeting(&t, mid).await.unwrap().unwrap();
            let title = vault.open::<Meeting>(&m.id, "title", &m.title).unwrap();
            let title = String::from_utf8(title.to_vec()).unwrap();
            let room: u64 = FIRST_ROOM + title.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
            meeting_of_room.insert(room, mid.clone());
        }
        let job_of_meeting: HashMap<String, String> =
            jobs.iter().map(|(j, m)| (m.clone(), j.clone())).collect();

        // The speech: per meeting two speakers taking turns, a sentence about every 12 s,
        // each meeting starting at its own moment.
        let lines: Vec<(String, Arc<Vec<i16>>)> = meetbot_testsupport::speech::MEETING
            .iter()
            .map(|(_, s)| (s.to_string(), Arc::new(speech(s))))
            .collect();
        let t0 = Instant::now() + Duration::from_secs(3);
        // room -> [(speaker, sentence, from s, to s)] (seconds after t0)
        let mut spoken: BTreeMap<u64, Vec<(String, String, f64, f64)>> = BTreeMap::new();
        let mut publishers = Vec::new();
        for i in 0..meetings {
            let room = FIRST_ROOM + i as u64;
            let mut at = 1.0 + rng.below(8000) as f64 / 1000.0;
            let mut scripts: [Script; 2] = [Vec::new(), Vec::new()];
            let mut k = rng.below(lines.len() as u64) as usize;
            let mut who = 0usize;
            // One sentence per meeting about every `pause` s: with many meetings, sparser, so
            // that the 2 cores keep up with the speech (the soak is about faults, not speed).
            let pause = (meetings as f64 * 3.0).max(6.0);
            while at + 8.0 < speech_secs as f64 {
                let (text, pcm) = &lines[k % lines.len()];
                let len = pcm.len() as f64 / 48_000.0;
                scripts[who].push((Duration::from_secs_f64(at + 3.0), pcm.clone()));
                spoken.entry(room).or_default().push((
                    format!("Speaker {who}"),
                    text.clone(),
                    at,
                    at + len,
                ));
                at += len + pause + rng.below(4000) as f64 / 1000.0;
                k += 1;
                who ^= 1;
            }
            let [a, b] = scripts;
            // Joined 3 s before t0: offsets are from their joining.
            publishers.push(Publisher::speak(&janus.url(), room, "Speaker 0", a).await);
            publishers.push(Publisher::speak(&janus.url(), room, "Speaker 1", b).await);
        }
        tokio::time::sleep_until(t0.into()).await;

        // Chaos until the speech ends; bots counted every 250 ms, memory every 2 s.
        let end = t0 + Duration::from_secs(speech_secs);
        let mut max_bots: HashMap<String, usize> = HashMap::new();
        let mut absent: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        let mut next_kill = Instant::now() + Duration::from_secs(5 + rng.below(10));
        let mut next_rss = Instant::now();
        let mut pending: Vec<(Instant, String)> = Vec::new();
        let mut bot_rss: Vec<f64> = Vec::new();
        let kill_gap = env_num("MEETBOT_TEST_SOAK_KILL_GAP", 15).max(3);
        while Instant::now() < end {
            let since = (Instant::now() - t0).as_secs_f64();
            let bots = bot_processes(&tenant);
            let mut per_job: HashMap<&str, usize> = HashMap::new();
            for j in bots.values() {
                *per_job.entry(j).or_default() += 1;
            }
            for (j, n) in &per_job {
                let m = max_bots.entry(j.to_string()).or_default();
                *m = (*m).max(*n);
            }
            // No bot process for a job: a gap in its meeting, until a new one has had time to
            // join.
            for (job, _) in &jobs {
                let here = per_job.contains_key(job.as_str());
                let open = absent.entry(job.clone()).or_default();
                match (here, open.last_mut()) {
                    (false, Some((_, b))) if b.is_infinite() => {}
                    (false, _) => open.push((since, f64::INFINITY)),
                    (true, Some((_, b))) if b.is_infinite() => *b = since + JOIN_TIME,
                    (true, _) => {}
                }
            }
            // Services that exited by themselves come back (as in Kubernetes), counted.
            for p in procs.iter_mut() {
                if let Ok(Some(st)) = p.child.try_wait() {
                    *c.unexpected.entry(p.name.clone()).or_default() += 1;
                    c.events
                        .push((since, p.name.clone(), format!("exited by itself: {st}")));
                    retire(p, &mut c);
                    let name = p.name.clone();
                    *p = spawn(&name);
                }
            }
            if Instant::now() >= next_rss {
                next_rss += Duration::from_secs(2);
                for p in procs.iter_mut() {
                    if let Some(r) = rss_mib(p.child.id()) {
                        p.rss.push((p.started.elapsed().as_secs_f64(), r));
                    }
                }
                for pid in bots.keys() {
                    if let Some(r) = rss_mib(*pid) {
                        bot_rss.push(r);
                    }
                }
            }
            pending.retain(|(when, name)| {
                if Instant::now() < *when {
                    return true;
                }
                procs.push(spawn(name));
                false
            });
            if Instant::now() >= next_kill {
                next_kill =
                    Instant::now() + Duration::from_secs(kill_gap / 2 + rng.below(kill_gap));
                let how = if rng.below(10) < 7 {
                    ("SIGKILL", libc::SIGKILL)
                } else {
                    ("SIGTERM", libc::SIGTERM)
                };
                match rng.below(6) {
                    0 => {
                        cut.cut();
                        c.events
                            .push((since, "rabbitmq".into(), "every connection cut".into()));
                    }
                    1 => {
                        let mut pids: Vec<_> = bots.iter().collect();
                        pids.sort();
                        if !pids.is_empty() {
                            let (pid, job) = pids[rng.below(pids.len() as u64) as usize];
                            signal(*pid, libc::SIGKILL);
                            c.bot_kills.entry(job.clone()).or_default().push(since);
                            c.events.push((since, "bot".into(), "SIGKILL".into()));
                        }
                    }
                    v => {
                        let name =
                            ["scheduler", "launcher", "transcriber", "delivery"][v as usize - 2];
                        if let Some(i) = procs.iter().position(|p| p.name == name) {
                            let mut p = procs.remove(i);
                            // A local-process launcher stopped with SIGTERM ends its bots (a
                            // clean stop of a single-machine install): killed, it leaves them to
                            // the next one, which adopts them.
                            let how = if name == "launcher" {
                                ("SIGKILL", libc::SIGKILL)
                            } else {
                                how
                            };
                            signal(p.child.id(), how.1);
                            // SIGTERM: it has its grace (20 s) to hand over; then it is gone.
                            let deadline = Instant::now() + Duration::from_secs(25);
                            while Instant::now() < deadline {
                                if let Ok(Some(_)) = p.child.try_wait() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            let _ = p.child.kill();
                            let _ = p.child.wait();
                            retire(&p, &mut c);
                            c.events.push((since, name.into(), how.0.into()));
                            pending.push((
                                Instant::now() + Duration::from_millis(500 + rng.below(4000)),
                                name.to_string(),
                            ));
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for (_, name) in pending.drain(..) {
            procs.push(spawn(&name));
        }
        futures::future::join_all(publishers.into_iter().map(|p| p.leave())).await;

        // Every bot done, every transcript, summary, email and post; then a pause in which
        // nothing more may arrive.
        let mut services = Services(Vec::new());
        let waited = Instant::now();
        let done_by = Duration::from_secs(240 + 10 * meetings as u64);
        loop {
            let js = store
                .find_bot_jobs(&t, &JobFilter::default())
                .await
                .unwrap();
            let finished = js
                .iter()
                .filter(|j| matches!(j.value.state.name(), "done" | "failed"))
                .count();
            let mut summaries = 0;
            for (_, mid) in &jobs {
                if store.summary_for_meeting(&t, mid).await.unwrap().is_some() {
                    summaries += 1;
                }
            }
            let emails = mail.emails().await.unwrap_or_default().len();
            let posts = slack.accepted().len();
            if finished == js.len()
                && summaries == meetings
                && emails >= meetings
                && posts >= meetings
            {
                break;
            }
            for p in procs.iter_mut() {
                if let Ok(Some(_)) = p.child.try_wait() {
                    *c.unexpected.entry(p.name.clone()).or_default() += 1;
                    let name = p.name.clone();
                    *p = spawn(&name);
                }
            }
            if waited.elapsed() > done_by {
                eprintln!(
                    "soak: gave up waiting after {done_by:?}: jobs {:?}, summaries {summaries}/{meetings}, emails {emails}, posts {posts}",
                    js.iter().map(|j| j.value.state.name()).collect::<Vec<_>>()
                );
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let finished_after = waited.elapsed();

        // Per meeting: what was heard of what was said while a bot was there.
        for p in &procs {
            retire(p, &mut c);
        }
        let emails = mail.emails().await.unwrap_or_default();
        let posts = slack.accepted();
        let mut rows = Vec::new();
        let mut histories = Vec::new();
        let mut failures = Vec::new();
        let mut total = (0usize, 0usize, 0usize, 0usize, 0usize);
        for (room, mid) in &meeting_of_room {
            let job_id = &job_of_meeting[mid];
            let job = store.get_bot_job(&t, job_id).await.unwrap().unwrap().value;
            // Gaps with no bot in the room: from the moment no bot process of the job was left
            // until a new one had had JOIN_TIME to join (sampled every 250 ms).
            let t0_utc = Utc::now() - CDuration::from_std(t0.elapsed()).unwrap();
            let secs = |at: chrono::DateTime<Utc>| (at - t0_utc).num_milliseconds() as f64 / 1000.0;
            let gaps: Vec<(f64, f64)> = absent
                .get(job_id)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(a, b)| (a - 0.5, b))
                .collect();
            let kills: Vec<f64> = c.bot_kills.get(job_id).cloned().unwrap_or_default();
            let transcript = store.transcript_for_meeting(&t, mid).await.unwrap();
            let doc = transcript.as_ref().map(|tr| {
                meetbot_transcriber::transcript::TranscriptDoc::open(&vault, tr).unwrap()
            });
            let segments = doc.as_ref().map(|d| d.segments.clone()).unwrap_or_default();
            // The same words from the same speaker twice, in segments that start within 2 s:
            // a stretch stored twice.
            let mut doubled = 0;
            for (i, a) in segments.iter().enumerate() {
                for b in &segments[i + 1..] {
                    if a.speaker == b.speaker
                        && words(&a.text) == words(&b.text)
                        && !words(&a.text).is_empty()
                        && (a.start_ms as i64 - b.start_ms as i64).abs() < 2000
                    {
                        doubled += 1;
                    }
                }
            }
            let said = spoken.get(room).cloned().unwrap_or_default();
            let no_bot: f64 = gaps
                .iter()
                .map(|(a, b)| (b.min(speech_secs as f64) - a.max(0.0)).max(0.0))
                .fold(0.0, |a, b| a + b);
            if !gaps.is_empty() {
                histories.push(format!(
                    "- meeting {}: {}",
                    room - FIRST_ROOM,
                    job.history
                        .iter()
                        .filter(|h| secs(h.at) > 0.0)
                        .map(|h| format!(
                            "{:.1} s {}",
                            secs(h.at),
                            match &h.state {
                                BotJobState::Failed(r) => r.clone(),
                                other => other.name().to_string(),
                            }
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            let (mut in_gap, mut heard_n, mut missed) = (0, 0, Vec::new());
            let mut with_bot = 0;
            for (speaker, text, from, to) in &said {
                let theirs: Vec<String> = segments
                    .iter()
                    .filter(|s| s.speaker.as_deref() == Some(speaker.as_str()))
                    .flat_map(|s| words(&s.text))
                    .collect();
                if gaps.iter().any(|(a, b)| from < b && to > a) {
                    in_gap += 1;
                } else if heard(text, &theirs) {
                    heard_n += 1;
                } else if kills.iter().any(|k| *to <= *k) {
                    // Said before its bot was killed, and not in the transcript: its audio was
                    // still only in that bot's memory, not yet transcribed and stored (decision
                    // 0041: acknowledged only once stored, never written to disk). How far back
                    // that reaches is how far the transcriber was behind.
                    with_bot += 1;
                } else {
                    missed.push(format!("{from:.1} s {speaker}: {text}"));
                }
            }
            let title = format!("Soak meeting {:02}", room - FIRST_ROOM);
            let mails = emails
                .iter()
                .filter(|e| e.to_string().contains(&title))
                .count();
            let slack_posts = posts
                .iter()
                .filter(|p| p.to_string().contains(&title))
                .count();
            let summary = store.summary_for_meeting(&t, mid).await.unwrap().is_some();
            let bots = max_bots.get(job_id).copied().unwrap_or(0);
            rows.push(format!(
                "| {} | {} | {} | {:.0} s | {} / {} / {} / {} | {} | {} | {} | {} / {} |",
                room - FIRST_ROOM,
                job.state.name(),
                bots,
                no_bot,
                said.len(),
                heard_n,
                in_gap,
                with_bot,
                missed.len(),
                doubled,
                if summary { "yes" } else { "NO" },
                mails,
                slack_posts
            ));
            total.0 += said.len();
            total.1 += heard_n;
            total.2 += in_gap;
            total.3 += missed.len();
            total.4 += with_bot;
            if bots > 1 {
                failures.push(format!("meeting {room}: {bots} bots at once"));
            }
            if !missed.is_empty() {
                failures.push(format!(
                    "meeting {room}: not heard although a bot was there: {missed:?}"
                ));
            }
            if doubled > 0 {
                failures.push(format!("meeting {room}: {} segments twice", doubled));
            }
            if !summary || mails != 1 || slack_posts != 1 {
                failures.push(format!(
                    "meeting {room}: summary {summary}, {mails} emails, {slack_posts} Slack posts (want one each)"
                ));
            }
            if job.state.name() != "done" {
                failures.push(format!("meeting {room}: job ended {:?}", job.state));
            }
            if !missed.is_empty() || !summary || job.state.name() != "done" {
                // What the store says happened, to read beside the events below.
                let history: Vec<String> = job
                    .history
                    .iter()
                    .map(|h| format!("{:.1} s {:?}", secs(h.at), h.state))
                    .collect();
                let deliveries = store.list_deliveries(&t, Some(mid)).await.unwrap();
                failures.push(format!(
                    "meeting {room}: job history {history:?}; transcript stored at {:?} s; {} deliveries; said {:?}",
                    transcript.as_ref().map(|tr| secs(tr.created_at)),
                    deliveries.len(),
                    said.iter()
                        .map(|(w, _, a, b)| format!("{w} {a:.1}-{b:.1}"))
                        .collect::<Vec<_>>()
                ));
                failures.push(format!(
                    "meeting {room}: transcript {:?}",
                    segments
                        .iter()
                        .map(|g| format!(
                            "{} ms {}: {}",
                            g.start_ms,
                            g.speaker.as_deref().unwrap_or("?"),
                            g.text
                        ))
                        .collect::<Vec<_>>()
                ));
            }
        }
        let mut report = String::new();
        let _ = writeln!(
            report,
            "{meetings} meetings, {speech_secs} s of speech each, {} chaos events (seed {seed}); all delivered {:.0} s after the speech ended\n",
            c.events.len(),
            finished_after.as_secs_f64() - 10.0
        );
        let _ = writeln!(
            report,
            "| meeting | job | bots at once (max) | no bot in the room | sentences said / heard / said while no bot was there / lost with a killed bot | missed | stored twice | summary | emails / Slack posts |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for r in &rows {
            let _ = writeln!(report, "{r}");
        }
        let _ = writeln!(
            report,
            "| all | | | | {} / {} / {} / {} | {} | | | |\n",
            total.0, total.1, total.2, total.4, total.3
        );
        let mut by_victim: BTreeMap<(String, String), u32> = BTreeMap::new();
        for (_, v, how) in &c.events {
            *by_victim.entry((v.clone(), how.clone())).or_default() += 1;
        }
        let _ = writeln!(report, "| killed | how | times |\n| --- | --- | --- |");
        for ((v, how), n) in &by_victim {
            let _ = writeln!(report, "| {v} | {how} | {n} |");
        }
        let _ = writeln!(
            report,
            "\n| service | incarnations | longest life | RSS 20 s after start -> at its end (longest life) | max RSS |\n| --- | --- | --- | --- | --- |"
        );
        for (name, lives) in &c.memory {
            let longest = lives
                .iter()
                .cloned()
                .fold((0.0, 0.0, 0.0, 0.0), |a, l| if l.0 > a.0 { l } else { a });
            let max = lives.iter().map(|l| l.3).fold(0.0, f64::max);
            let _ = writeln!(
                report,
                "| {name} | {} | {:.0} s | {:.0} -> {:.0} MiB | {:.0} MiB |",
                lives.len(),
                longest.0,
                longest.1,
                longest.2,
                max
            );
        }
        if !bot_rss.is_empty() {
            let max = bot_rss.iter().cloned().fold(0.0, f64::max);
            let _ = writeln!(report, "| bot (each) | | | | {max:.0} MiB |");
        }
        if !histories.is_empty() {
            let _ = writeln!(
                report,
                "\njobs that lost their bot (s after the speech began):"
            );
            for h in &histories {
                let _ = writeln!(report, "{h}");
            }
        }
        let _ = writeln!(report, "\nevents (s after the speech began):");
        for (at, v, how) in &c.events {
            let _ = writeln!(report, "- {at:.1} s: {v} {how}");
        }
        println!("{report}");
        if let Ok(path) = std::env::var("MEETBOT_TEST_SOAK_REPORT") {
            let _ = std::fs::write(&path, &report);
        }

        // Stop everything started here, the bots a killed launcher left included.
        services.0 = procs.into_iter().map(|p| (p.name, p.child)).collect();
        drop(services);
        for pid in bot_processes(&tenant).keys() {
            signal(*pid, libc::SIGKILL);
        }
        // Every service's log, for reading beside the report.
        let kept = meetbot_testsupport::workspace_root().join("target/soak-logs");
        let _ = std::fs::remove_dir_all(&kept);
        if std::fs::create_dir_all(&kept).is_ok() {
            for f in std::fs::read_dir(&logs).unwrap().flatten() {
                let _ = std::fs::copy(f.path(), kept.join(f.file_name()));
            }
        }
        if !failures.is_empty() {
            for f in std::fs::read_dir(&logs).unwrap().flatten() {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                if !tail.is_empty() {
                    eprintln!("--- {}:", f.file_name().to_string_lossy());
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
        drop_databases(&engine, &prefix, &t).await;
        assert!(failures.is_empty(), "soak failed:\n{}", failures.join("\n"));
    });
    drop(host);
}

//! `meetbot dev`'s built-in demo: a calendar feed (ICS, served on loopback and connected as a
//! real calendar of a demo user) holding a meeting that starts a minute after start, in a room
//! of meetbot's room server where three voices hold a short conversation. The rest is the real
//! pipeline: calendar sync, scheduler, a bot process, the transcriber, the summary, and the
//! email, written to the outbox folder. Progress goes to stderr as it happens.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use meetbot_bot::room::{Rendered, RoomServer, Script};
use meetbot_core::TenantId;
use meetbot_core::config::Config;
use meetbot_core::model::{BotJobState, BotRuleOverrides, Role, TenantSettings};
use meetbot_core::ops::Shutdown;
use meetbot_store::vault::Tenants;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The demo user's address (a name only: the email goes to the outbox folder).
pub const DEMO_EMAIL: &str = "newcomer@example.com";

/// The demo's server on loopback (room and calendar feed), bound before anything else so the
/// configuration can name it.
pub struct Host {
    listener: tokio::net::TcpListener,
    pub base: String,
    rooms: RoomServer,
    lead_in: i64,
    conversation: tokio::task::JoinHandle<Result<Rendered, meetbot_bot::room::RoomError>>,
    /// A moment before start: files changed since are this run's.
    since: SystemTime,
    /// The web app's address (`http://<api>`), once the API listens: the demo names the
    /// meeting's page there.
    pub pages: Option<String>,
}

/// Binds the demo server (the meeting `lead_in_seconds` after start) and points the configuration at it: bots join its rooms, the calendar
/// worker reads its plain-http feed (loopback), and email without an SMTP relay goes to
/// `<store.embedded_dir>/outbox`. Starts speaking the conversation (espeak-ng) meanwhile.
pub async fn prepare(config: &mut Config, lead_in_seconds: u64) -> Result<Host> {
    let listener = tokio::net::TcpListener::bind((config.bot.ice_ip, 0))
        .await
        .with_context(|| format!("cannot listen for the demo room on {}", config.bot.ice_ip))?;
    let base = format!("http://{}", listener.local_addr()?);
    config.bot.room_servers.push(base.clone());
    config.calendar.ics_allow_http = true;
    // The feed is on loopback: the egress client reaches it only because the demo names its
    // exact address here (the default allow-list is empty).
    let ip = listener.local_addr()?.ip();
    config
        .egress
        .allow_private
        .push(format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }));
    if config.delivery.smtp_host.is_none() && config.delivery.email_dir.is_none() {
        config.delivery.email_dir = Some(config.store.embedded_dir.join("outbox"));
    }
    // File times come from a coarse clock: a second's margin keeps this run's files in.
    let since = SystemTime::now() - Duration::from_secs(1);
    let conversation = tokio::task::spawn_blocking(|| Rendered::speak(&Script::demo()));
    Ok(Host {
        since,
        listener,
        base,
        rooms: RoomServer::new(config.bot.ice_ip),
        lead_in: lead_in_seconds.min(3600) as i64,
        conversation,
        pages: None,
    })
}

/// The demo owner of `tenant` (`DEMO_EMAIL`), made on first use.
pub async fn owner(tenants: &Tenants, tenant: &TenantId) -> Result<meetbot_core::model::User> {
    let hash = meetbot_api::auth::email_hash(tenant, DEMO_EMAIL);
    Ok(
        match tenants.store().user_by_email_hash(tenant, &hash).await? {
            Some(u) => u,
            None => meetbot_api::routes::create_user(tenants, tenant, DEMO_EMAIL, Role::Owner)
                .await
                .map_err(|e| anyhow::anyhow!("creating the demo user: {e}"))?,
        },
    )
}

fn say(line: impl std::fmt::Display) {
    eprintln!("[demo] {line}");
}

/// The feed: one meeting, `title`, at `at` for ten minutes, its room in the location.
fn feed(uid: &str, title: &str, at: DateTime<Utc>, room: &str) -> String {
    let f = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//meetbot//dev demo//EN",
        "BEGIN:VEVENT",
        &format!("UID:{uid}"),
        &format!("DTSTAMP:{}", f(Utc::now())),
        &format!("DTSTART:{}", f(at)),
        &format!("DTEND:{}", f(at + chrono::Duration::minutes(10))),
        &format!("SUMMARY:{title}"),
        &format!("LOCATION:{room}"),
        &format!("ORGANIZER:mailto:{DEMO_EMAIL}"),
        &format!("ATTENDEE;PARTSTAT=ACCEPTED:mailto:{DEMO_EMAIL}"),
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    .join("\r\n")
}

/// Runs the demo until `stop`: serves the room and the feed, connects the feed for the demo
/// user of `tenant`, and reports each step of the meeting's way to the email. `live` is the
/// transcriber's base URL and audio secret, for following the transcript as it is made.
///
/// The stop ends it in any step (the conversation still being spoken, the feed being
/// connected, the meeting under way); what it started ends with it: its server and calendar
/// worker see the stop, the live transcript it follows is dropped.
pub async fn run(
    host: Host,
    config: Config,
    tenants: Arc<Tenants>,
    tenant: TenantId,
    live: Option<(String, String)>,
    stop: Shutdown,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let demo = demo(host, config, tenants, tenant, live, &stop, &mut tasks);
    let r = tokio::select! {
        r = demo => r,
        _ = stop.stopped() => Ok(()),
    };
    match &r {
        // Done: the room, feed and calendar worker stay until the stop.
        Ok(()) => stop.stopped().await,
        Err(_) => tasks.abort_all(),
    }
    while tasks.join_next().await.is_some() {}
    r
}

async fn demo(
    host: Host,
    config: Config,
    tenants: Arc<Tenants>,
    tenant: TenantId,
    live: Option<(String, String)>,
    stop: &Shutdown,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<()> {
    let pages = host.pages.clone();
    let started = Instant::now();
    let since = host.since;
    let conversation = host
        .conversation
        .await
        .context("speaking the demo conversation")??;
    say(format_args!(
        "conversation ready: 3 voices, {} s, spoken by espeak-ng in memory",
        conversation.duration().as_secs()
    ));
    let now = Utc::now();
    let name = format!("demo-{}", now.timestamp());
    host.rooms.add_room(&name, Arc::new(conversation));
    let room = format!("{}/rooms/{name}", host.base);
    let at = now + chrono::Duration::seconds(host.lead_in);
    let title = "Clinic weekly operations (meetbot demo)";
    let ics = feed(&format!("{name}@meetbot.dev"), title, at, &room);
    let app = host.rooms.router().route(
        "/calendar.ics",
        axum::routing::get(move || {
            let ics = ics.clone();
            async move { ([("content-type", "text/calendar; charset=utf-8")], ics) }
        }),
    );
    let server_stop = stop.stopped();
    tasks.spawn(async move {
        let _ = axum::serve(host.listener, app)
            .with_graceful_shutdown(server_stop)
            .await;
    });
    say(format_args!("room {room}"));

    // The demo user, their settings (summaries by email; a bot that leaves 5 s after the last
    // voice), and their calendar: the feed, connected as any ICS calendar is.
    let store = tenants.store().clone();
    let user = owner(&tenants, &tenant).await?;
    let vault = tenants.vault(&tenant).await?;
    let mut settings = store
        .get_tenant_settings(&tenant)
        .await?
        .unwrap_or_else(|| TenantSettings::new(BotRuleOverrides::default(), Utc::now()));
    settings.bot.alone_timeout_seconds = Some(5);
    settings.delivery.emails =
        Some(vault.seal::<TenantSettings>("settings", "delivery_emails", DEMO_EMAIL.as_bytes())?);
    settings.updated_at = Utc::now();
    store.put_tenant_settings(&tenant, &settings).await?;
    let (trigger_tx, trigger_rx) = tokio::sync::mpsc::channel(16);
    let worker = Arc::new(crate::runtime::sync_worker(
        &config,
        tenants.clone(),
        Default::default(),
    )?);
    for c in store.list_connections(&tenant).await? {
        // Feeds of earlier runs point at servers that are gone.
        if c.user_id == user.id && c.provider == meetbot_core::model::CalendarProvider::Ics {
            let _ = worker.disconnect(&tenant, &c.id, "meetbot dev").await;
        }
    }
    let feed_url = format!("{}/calendar.ics", host.base);
    let (_, report) = worker
        .connect_ics(&tenant, &user.id, DEMO_EMAIL, &feed_url)
        .await
        .context("connecting the demo calendar feed")?;
    say(format_args!(
        "calendar: ICS feed {feed_url} connected for {DEMO_EMAIL} ({} event, {} meeting written); \"{title}\" starts at {} UTC, in {} s",
        report.as_ref().map_or(0, |r| r.events),
        report.as_ref().map_or(0, |r| r.applied.written),
        at.format("%H:%M:%S"),
        (at - Utc::now()).num_seconds().max(0),
    ));
    {
        let (worker, s) = (worker.clone(), stop.stopped());
        tasks.spawn(async move {
            let _keep = trigger_tx;
            worker.run(trigger_rx, s).await
        });
    }

    let outbox = config.delivery.email_dir.clone();
    let before = outbox.as_deref().map(eml_files).unwrap_or_default();
    let follow = follow(
        store.clone(),
        tenants.clone(),
        tenant.clone(),
        room.clone(),
        at,
        Checked {
            outbox,
            before,
            data: config.store.embedded_dir.clone(),
            since,
        },
        live,
        pages,
        started,
    );
    if let Err(e) = follow.await {
        say(format_args!("stopped following: {e:#}"));
    }
    Ok(())
}

/// Where the demo looks for what it made: the outbox (and the emails in it before start), and
/// the data directory, which holds meetbot's private temporary directory (`TMPDIR`, made at
/// start: `runtime::PrivateTmp`), for audio files written since start.
struct Checked {
    outbox: Option<PathBuf>,
    before: Vec<PathBuf>,
    data: PathBuf,
    since: SystemTime,
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// Audio files under `dirs` (recursively, not following links, each file once) created or
/// changed since `since`: a name that says audio, or content that starts like an audio or
/// media container (WAV, Ogg/Opus, FLAC, MP3 with a tag, WebM/Matroska, MP4/M4A, AMR). Only
/// files of this run count (their ctime, which no program can set back), so what other
/// programs keep in the same directories does not.
pub(crate) fn audio_files_since(dirs: &[&Path], since: SystemTime) -> usize {
    fn walk(dir: &Path, since: SystemTime, found: &mut std::collections::BTreeSet<PathBuf>) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                walk(&p, since, found);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let changed = u64::try_from(meta.ctime()).ok().map(|s| {
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(s)
                    + Duration::from_nanos(u64::try_from(meta.ctime_nsec()).unwrap_or(0))
            });
            if changed.is_some_and(|c| c >= since) && is_audio(&p) {
                found.insert(p);
            }
        }
    }
    let mut found = std::collections::BTreeSet::new();
    for dir in dirs {
        walk(dir, since, &mut found);
    }
    found.len()
}

/// Whether the file's name or first bytes say audio.
fn is_audio(p: &Path) -> bool {
    use std::io::Read;
    let ext = p
        .extension()
        .map(|x| x.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if matches!(
        ext.as_str(),
        "wav"
            | "opus"
            | "ogg"
            | "oga"
            | "webm"
            | "pcm"
            | "raw"
            | "mp3"
            | "m4a"
            | "flac"
            | "amr"
            | "aac"
    ) {
        return true;
    }
    let mut head = [0u8; 12];
    let n = std::fs::File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let h = &head[..n];
    (h.starts_with(b"RIFF") && h.get(8..12) == Some(b"WAVE"))
        || h.starts_with(b"OggS")
        || h.starts_with(b"fLaC")
        || h.starts_with(b"ID3")
        || h.starts_with(&[0x1a, 0x45, 0xdf, 0xa3])
        || h.starts_with(b"#!AMR")
        || h.get(4..8) == Some(b"ftyp")
}

/// Reports the demo meeting's way: found in the calendar, its bot's states, the transcript as it
/// is made, the summary, the email; then that no audio was kept.
#[allow(clippy::too_many_arguments)]
async fn follow(
    store: Arc<dyn meetbot_store::Store>,
    tenants: Arc<Tenants>,
    tenant: TenantId,
    room: String,
    at: DateTime<Utc>,
    checked: Checked,
    live: Option<(String, String)>,
    pages: Option<String>,
    started: Instant,
) -> Result<()> {
    let Checked {
        outbox,
        before,
        data,
        since,
    } = checked;
    let vault = tenants.vault(&tenant).await?;
    let mut meeting_id = None;
    let mut job_id: Option<String> = None;
    let mut last_state = String::new();
    // The live transcript, dropped (and its stream closed) when following ends, however.
    let mut following = tokio::task::JoinSet::new();
    let mut last_wait = Instant::now();
    let mut summary_seen = false;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if meeting_id.is_none() {
            let from = at - chrono::Duration::minutes(1);
            for m in store
                .list_meetings(&tenant, Some(from), Some(at + chrono::Duration::minutes(1)))
                .await?
            {
                let link = match &m.join_url {
                    Some(s) => {
                        vault.open_string::<meetbot_core::model::Meeting>(&m.id, "join_url", s)?
                    }
                    None => continue,
                };
                if link == room {
                    say(format_args!(
                        "meeting {} in the store (title and link sealed), platform {:?}, bot wanted: {}",
                        m.id, m.platform, m.wants_bot
                    ));
                    meeting_id = Some(m.id.clone());
                }
            }
        }
        let Some(mid) = meeting_id.clone() else {
            continue;
        };
        let jobs = store
            .find_bot_jobs(&tenant, &meetbot_store::JobFilter::of_meeting(&mid))
            .await?;
        let Some(job) = jobs.into_iter().next() else {
            if last_wait.elapsed() > Duration::from_secs(15) {
                let left = (at - Utc::now()).num_seconds().max(0);
                say(format_args!("waiting for the meeting to start: {left} s"));
                last_wait = Instant::now();
            }
            continue;
        };
        let job = job.value;
        if job_id.is_none() {
            job_id = Some(job.id.clone());
        }
        let state = job.state.name().to_string();
        if state != last_state {
            let what = match &job.state {
                BotJobState::Scheduled => "armed by the scheduler".to_string(),
                BotJobState::Dispatched => "published on the queue".to_string(),
                BotJobState::Launched => "bot process started".to_string(),
                BotJobState::Joined => "bot joined the room; the voices are talking".to_string(),
                BotJobState::Done => "bot left the meeting (everybody else had left)".to_string(),
                BotJobState::Failed(r) => format!("failed: {r}"),
                other => other.name().to_string(),
            };
            say(format_args!("bot job {}: {what}", job.id));
            last_state = state;
        }
        if following.is_empty()
            && matches!(job.state, BotJobState::Launched | BotJobState::Joined)
            && let Some((url, secret)) = &live
        {
            following.spawn(transcript_stream(
                url.clone(),
                secret.clone(),
                tenant.clone(),
                job.id.clone(),
            ));
        }
        if !summary_seen && let Some(s) = store.summary_for_meeting(&tenant, &mid).await? {
            summary_seen = true;
            let raw = vault.open::<meetbot_core::model::Summary>(&s.id, "body", &s.body)?;
            let doc: meetbot_transcriber::summarize::SummaryDoc =
                serde_json::from_slice(&raw).with_context(|| format!("summary {}", s.id))?;
            say("summary stored, sealed under the demo tenant's key:");
            for line in doc.to_text().lines().filter(|l| !l.trim().is_empty()) {
                eprintln!("         {line}");
            }
        }
        if summary_seen {
            let emails: Vec<_> = outbox
                .as_deref()
                .map(eml_files)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            let delivered = store
                .list_deliveries(&tenant, Some(&mid))
                .await?
                .iter()
                .any(|d| {
                    matches!(
                        d.value.state,
                        meetbot_core::model::DeliveryState::Sent { .. }
                    )
                });
            if delivered && (outbox.is_none() || !emails.is_empty()) {
                for e in &emails {
                    say(format_args!("email written: {}", e.display()));
                }
                let tmp = std::env::temp_dir();
                say(format_args!(
                    "audio: streamed in memory only; audio files written since start under {} and in meetbot's temporary directory {}: {}",
                    data.display(),
                    tmp.display(),
                    audio_files_since(&[&data, &tmp], since)
                ));
                if let (Some(p), Some(m)) = (&pages, &meeting_id) {
                    say(format_args!(
                        "the meeting in the web app: {p}/app/meetings/{m} (signed in with the `sign in:` link above)"
                    ));
                }
                say(format_args!(
                    "done {} s after start: calendar -> bot -> transcript -> summary -> email. The API, the web app and the ops server keep running; Ctrl-C stops.",
                    started.elapsed().as_secs()
                ));
                following.abort_all();
                return Ok(());
            }
        }
    }
}

/// Prints the transcriber's live segments of `job` (server-sent events) as they come.
async fn transcript_stream(url: String, secret: String, tenant: TenantId, job: String) {
    use futures_util::StreamExt;
    let base = url
        .replace("ws://", "http://")
        .replace("wss://", "https://")
        .trim_end_matches("/v1/audio")
        .to_string();
    // The demo follows its own job while it runs (a few minutes); an hour covers it.
    let token = meetbot_bot::audio_stream::job_token(
        &secrecy::SecretString::from(secret),
        tenant.as_str(),
        &job,
        Duration::from_secs(3600),
    );
    let Ok(r) = reqwest::Client::new()
        .get(format!("{base}/v1/live/{tenant}/{job}"))
        .bearer_auth(token)
        .send()
        .await
    else {
        return;
    };
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    let mut event = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(nl) = buf.find('\n') {
            let line: String = buf.drain(..=nl).collect();
            let line = line.trim_end();
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:")
                && event == "segment"
                && let Ok(seg) = serde_json::from_str::<serde_json::Value>(d.trim())
            {
                say(format_args!(
                    "transcript  {}: {}",
                    seg["speaker"]
                        .as_str()
                        .or(seg["participant"].as_str())
                        .unwrap_or("?"),
                    seg["text"].as_str().unwrap_or("").trim()
                ));
            } else if line.is_empty() {
                event.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn wav() -> Vec<u8> {
        let mut b = b"RIFF".to_vec();
        b.extend_from_slice(&36u32.to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&[0; 28]);
        b
    }

    #[test]
    fn the_audio_check_counts_this_runs_files_by_name_or_content_and_not_older_ones() {
        let data = tempfile::tempdir().unwrap();
        let tmp = data.path().join("tmp-1");
        std::fs::create_dir(&tmp).unwrap();
        // From before the start: not this run's.
        let old = data.path().join("old.wav");
        std::fs::write(&old, wav()).unwrap();
        let c = std::fs::metadata(&old).unwrap();
        let old_change = SystemTime::UNIX_EPOCH
            + Duration::from_secs(c.ctime() as u64)
            + Duration::from_nanos(c.ctime_nsec() as u64);
        std::thread::sleep(Duration::from_millis(300));
        let since = old_change + Duration::from_millis(100);
        assert_eq!(audio_files_since(&[data.path(), &tmp], since), 0);
        // What meetbot's private temporary directory would hold: a WAV under any name, and
        // a recording named as one.
        std::fs::write(tmp.join("chunk-0001.tmp"), wav()).unwrap();
        std::fs::create_dir(tmp.join("profile")).unwrap();
        std::fs::write(tmp.join("profile").join("capture.webm"), b"x").unwrap();
        // Not audio: the store's files.
        std::fs::write(data.path().join("control.sqlite"), b"SQLite format 3\0").unwrap();
        // The private directory is inside the data directory: each file counts once.
        assert_eq!(audio_files_since(&[data.path(), &tmp], since), 2);
        assert_eq!(audio_files_since(&[&tmp], since), 2);
    }

    #[test]
    fn the_audio_check_does_not_look_outside_the_directories_it_is_given() {
        let data = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let since = SystemTime::now() - Duration::from_secs(1);
        // Another program's test WAV in the machine's temporary directory.
        std::fs::write(elsewhere.path().join("test-data.wav"), wav()).unwrap();
        assert_eq!(audio_files_since(&[data.path()], since), 0);
        assert_eq!(audio_files_since(&[elsewhere.path()], since), 1);
    }
}

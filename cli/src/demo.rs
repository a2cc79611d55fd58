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
use meetbot_store::vault::Tenants;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

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
    let conversation = tokio::task::spawn_blocking(|| Rendered::speak(&Script::demo()));
    Ok(Host {
        listener,
        base,
        rooms: RoomServer::new(config.bot.ice_ip),
        lead_in: lead_in_seconds.min(3600) as i64,
        conversation,
    })
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
pub async fn run(
    host: Host,
    config: Config,
    tenants: Arc<Tenants>,
    tenant: TenantId,
    live: Option<(String, String)>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let started = Instant::now();
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
    let mut server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(host.listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.changed().await;
            })
            .await
    });
    say(format_args!("room {room}"));

    // The demo user, their settings (summaries by email; a bot that leaves 5 s after the last
    // voice), and their calendar: the feed, connected as any ICS calendar is.
    let store = tenants.store().clone();
    let hash = meetbot_api::auth::email_hash(&tenant, DEMO_EMAIL);
    let user = match store.user_by_email_hash(&tenant, &hash).await? {
        Some(u) => u,
        None => meetbot_api::routes::create_user(&*tenants, &tenant, DEMO_EMAIL, Role::Owner)
            .await
            .map_err(|e| anyhow::anyhow!("creating the demo user: {e}"))?,
    };
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
    let sync = {
        let (worker, mut s) = (worker.clone(), stop.clone());
        tokio::spawn(async move {
            let _keep = trigger_tx;
            worker
                .run(trigger_rx, async move {
                    let _ = s.changed().await;
                })
                .await
        })
    };

    let outbox = config.delivery.email_dir.clone();
    let before = outbox.as_deref().map(eml_files).unwrap_or_default();
    let follow = follow(
        store.clone(),
        tenants.clone(),
        tenant.clone(),
        room.clone(),
        at,
        outbox,
        before,
        live,
        started,
    );
    tokio::select! {
        r = follow => if let Err(e) = r { say(format_args!("stopped following: {e:#}")) },
        _ = stop.changed() => {}
    }
    let _ = stop.wait_for(|s| *s).await;
    let _ = sync.await;
    let _ = server.await;
    Ok(())
}

fn eml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// Files under `dir` (recursively) whose names say audio.
fn audio_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                audio_files(&p)
            } else {
                let ext = p
                    .extension()
                    .map(|x| x.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                usize::from(matches!(
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
                ))
            }
        })
        .sum()
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
    outbox: Option<std::path::PathBuf>,
    before: Vec<std::path::PathBuf>,
    live: Option<(String, String)>,
    started: Instant,
) -> Result<()> {
    let vault = tenants.vault(&tenant).await?;
    let mut meeting_id = None;
    let mut job_id: Option<String> = None;
    let mut last_state = String::new();
    let mut following = None;
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
        if following.is_none()
            && matches!(job.state, BotJobState::Launched | BotJobState::Joined)
            && let Some((url, secret)) = &live
        {
            following = Some(tokio::spawn(transcript_stream(
                url.clone(),
                secret.clone(),
                tenant.clone(),
                job.id.clone(),
            )));
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
                let data = outbox
                    .as_deref()
                    .and_then(|o| o.parent())
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_else(|| ".".into());
                say(format_args!(
                    "audio: streamed in memory only; audio files under {} and {}: {}",
                    data.display(),
                    std::env::temp_dir().display(),
                    audio_files(&data) + audio_files(&std::env::temp_dir())
                ));
                say(format_args!(
                    "done {} s after start: calendar -> bot -> transcript -> summary -> email. The API and ops server keep running; Ctrl-C stops.",
                    started.elapsed().as_secs()
                ));
                if let Some(f) = following {
                    f.abort();
                }
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

//! `meetbot`: every service and tool of meetbot in one binary.

mod api;
mod bots;
mod demo;
mod runtime;
mod speech;
mod tenant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use meetbot_core::config::Config;
use meetbot_core::ops::Shutdown;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "meetbot",
    version,
    about = "Self-hostable meeting-bot orchestrator",
    propagate_version = true
)]
struct Cli {
    /// TOML config file (also MEETBOT_CONFIG). Without one, embedded single-machine defaults apply;
    /// `MEETBOT_*` environment variables override either.
    #[arg(long, global = true, env = "MEETBOT_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on one machine: embedded store, local key file, ops server; creates a demo
    /// tenant, and (unless --no-demo) a demo meeting a minute after start, in a local room where
    /// three voices talk, whose summary arrives by email in the outbox folder.
    Dev {
        /// Only the services: no demo calendar, room or meeting.
        #[arg(long)]
        no_demo: bool,
        /// Seconds from start to the demo meeting.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
        demo_in: u64,
    },
    /// Validates the configuration and checks every configured server answers.
    Check,
    /// The scheduler service: arms a bot job per meeting and publishes it at join time minus the lead.
    Scheduler,
    /// The calendar-sync service: push webhooks, push channels kept alive, sync rounds, polling.
    CalendarSync,
    /// The launcher service: consumes bot jobs, launches one bot each (Kubernetes Job or process).
    Launcher,
    /// One bot for one job (started by the launcher, which hands it its ticket in
    /// MEETBOT_BOT_TICKET; the ids say which job the ticket must be for).
    Bot {
        #[arg(long)]
        tenant: meetbot_core::TenantId,
        #[arg(long)]
        job: String,
    },
    /// Tenants: create, list, delete (crypto-erasure with a deletion receipt).
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// Tenant data keys: rotate, re-encrypt, retire old versions.
    #[command(subcommand)]
    Keys(tenant::KeysCmd),
    /// Opens what customer-held key mode sealed (a transcript or summary the API returned as
    /// `customer_sealed`), read from FILE or standard input, with the age identity file.
    Decrypt {
        #[arg(long)]
        identity: PathBuf,
        file: Option<PathBuf>,
    },
    /// Makes a customer key pair for customer-held key mode: writes the identity (the secret
    /// part; keep it offline) to FILE with mode 0600 and prints the recipient to register.
    CustomerKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Deletion receipts (what was erased, when, by whom, counts, keys destroyed), verified.
    #[command(subcommand)]
    Privacy(tenant::PrivacyCmd),
    /// The tenant's audit log: verify its hash chain.
    #[command(subcommand)]
    Audit(tenant::AuditCmd),
    /// Calendar tools for support staff.
    #[command(subcommand)]
    Calendar(CalendarCmd),
    /// The REST API: sign-in, sessions, API keys, meetings, bots, transcripts, settings.
    Api,
    /// The delivery worker alone: every tenant's outbox (Slack, email, webhooks) and the
    /// retention purge.
    Delivery,
    /// The transcriber service: the bots' audio in, sealed transcripts and summaries out.
    Transcriber,
    /// Speech models for the in-process engine: fetch (download, verify, convert), list.
    #[command(subcommand)]
    Model(speech::ModelCmd),
    /// Transcribes a WAV or Ogg/Opus file (nothing is written; progress on stderr).
    Transcribe {
        file: PathBuf,
        /// Engine (default: transcriber.engine, i.e. whisper.cpp with tiny.en).
        #[arg(long, value_enum)]
        engine: Option<speech::EngineArg>,
        /// Model: a fetched model name or GGML path (whisper), or the service's model name.
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: speech::Format,
    },
    /// Redacts text from standard input to standard output, line by line, as the transcriber
    /// does for tenants with redaction on: identifiers become [NAME], [DATE], [PHONE], ... and
    /// sentences on a sensitive topic [TOPIC:<name>].
    Redact {
        /// Only these classes (comma-separated labels: NAME,DATE,PHONE,...); default: all.
        #[arg(long, value_delimiter = ',')]
        classes: Vec<String>,
        /// Topic phrase lists (a TOML file with a [topics] table); default: the built-in ones.
        #[arg(long, conflicts_with = "no_topics")]
        topics: Option<PathBuf>,
        /// No topics, identifiers only.
        #[arg(long)]
        no_topics: bool,
        /// The names dataset (default: names-0.3.0.tar.gz in the model directory, from
        /// `meetbot model fetch`; Faker's and the English words' packages are read from beside
        /// it).
        #[arg(long)]
        names: Option<PathBuf>,
    },
    /// Summarises a transcript (the JSON of `meetbot transcribe --format json`).
    Summarize {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: speech::Format,
    },
}

#[derive(Subcommand)]
pub(crate) enum CalendarCmd {
    /// Prints the normalised meeting(s) of a provider JSON payload (an event or a list/delta page),
    /// or of an ICS file: every instance overlapping --from..--to. Events that cannot be read are
    /// named on stderr; the exit code is non-zero only when nothing could be read.
    Parse {
        #[arg(long, value_enum)]
        provider: Provider,
        /// The JSON or ICS file (`-` for standard input).
        file: PathBuf,
        /// Start of the window (RFC 3339), with --provider ics.
        #[arg(long, value_parser = rfc3339)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End of the window (RFC 3339), with --provider ics.
        #[arg(long, value_parser = rfc3339)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
    // No `connect` (OAuth): a consent URL printed here could be finished by anyone it is sent
    // to. Users connect Google and Microsoft calendars from their signed-in browser
    // (`POST /v1/calendars`), which binds the consent to that browser and person (ADR 0027).
    /// Disconnects a calendar: stops push, revokes tokens at the provider, erases them here,
    /// withdraws bots from its future meetings.
    Disconnect {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        connection: String,
    },
    /// Connects a user's calendar by its ICS feed address (an https URL; http only with
    /// calendar.ics_allow_http), checks it, and runs the first sync; calendar-sync then polls it.
    ConnectIcs {
        #[arg(long)]
        tenant: String,
        /// The meetbot user id (opaque, not an email).
        #[arg(long)]
        user: String,
        /// The user's own address (their answers in the feed are found by it).
        #[arg(long)]
        email: String,
        /// The feed's address; `-` reads it from standard input (it is a secret).
        #[arg(long)]
        url: String,
    },
    /// Lists a tenant's calendar connections (ids, provider, status; no addresses).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Shows a user's auto-join rules, or sets them from a JSON file (`--set FILE`).
    Rules {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        set: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Provider {
    Google,
    Microsoft,
    /// An iCalendar (RFC 5545) file, e.g. a calendar's export or published feed.
    Ics,
}

fn rfc3339(s: &str) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time (2026-11-02T00:00:00Z): {e}"))
}

fn main() -> ExitCode {
    // A bot's ticket is not configuration, and nothing the bot starts (Chromium) inherits it:
    // taken out of the environment before anything reads it (decision 0032).
    let ticket = std::env::var(meetbot_bot::ticket::TICKET_ENV)
        .ok()
        .map(zeroize::Zeroizing::new);
    if ticket.is_some() {
        // SAFETY: no other thread exists yet (the async runtime starts below), so nothing
        // reads the environment concurrently.
        unsafe { std::env::remove_var(meetbot_bot::ticket::TICKET_ENV) };
        // The kernel keeps the starting environment (/proc/<pid>/environ): not dumpable, so
        // another process of the same user (another bot) cannot read it or this memory.
        not_dumpable();
    }
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // `meetbot dev` and its bots write temporary files only to a directory of their own
    // (TMPDIR), set while this is the only thread.
    let private_tmp = match cli.command {
        Command::Dev { .. } => match runtime::PrivateTmp::create(&config.store.embedded_dir) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {}", one_line(&e));
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    meetbot_core::telemetry::init(
        &config.telemetry,
        &format!("meetbot-{}", cli.command.service().unwrap_or("cli")),
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let service = cli.command.service();
    let grace = std::time::Duration::from_secs(config.ops.shutdown_grace_seconds);
    let outcome = rt.block_on(async move {
        let Some(name) = service else {
            return Ok(run(cli.command, config, ticket, Shutdown::new()).await);
        };
        // A service: SIGTERM and SIGINT are its stop from here on, in every phase, and it
        // has `grace` to finish (decision 0040).
        let stop = match Shutdown::on_signals() {
            Ok(s) => s,
            Err(e) => return Ok(Err(anyhow::anyhow!("cannot listen for SIGTERM/SIGINT: {e}"))),
        };
        let announce = stop.clone();
        tokio::spawn(async move {
            announce.stopped().await;
            eprintln!(
                "meetbot {name}: stopping ({}); at most {} s (ops.shutdown_grace_seconds), Ctrl-C again exits at once",
                announce.why().unwrap_or_default(),
                grace.as_secs()
            );
        });
        stop.finish(run(cli.command, config, ticket, stop.clone()), grace)
            .await
    });
    // Nothing waits for blocking work still under way (a model loading, an utterance being
    // decoded): the process ends now.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    // The spans not yet exported (a no-op without telemetry.otlp_endpoint).
    meetbot_core::telemetry::flush();
    drop(private_tmp);
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => match e.downcast_ref::<bots::BotExit>() {
            Some(exit) => {
                eprintln!("{exit}");
                ExitCode::from(exit.code)
            }
            None => {
                eprintln!("error: {}", one_line(&e));
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: meetbot {}: {e}", service.unwrap_or_default());
            ExitCode::from(meetbot_core::ops::EXIT_NOT_STOPPED)
        }
    }
}

impl Command {
    /// The name of a long-running command (a service: it runs until SIGTERM or SIGINT), else
    /// none (a tool: the signals end it as they end any program).
    fn service(&self) -> Option<&'static str> {
        Some(match self {
            Command::Dev { .. } => "dev",
            Command::Scheduler => "scheduler",
            Command::CalendarSync => "calendar-sync",
            Command::Launcher => "launcher",
            Command::Bot { .. } => "bot",
            Command::Api => "api",
            Command::Delivery => "delivery",
            Command::Transcriber => "transcriber",
            _ => return None,
        })
    }
}

/// Makes this process not dumpable (prctl PR_SET_DUMPABLE 0): its /proc files (environ, mem)
/// become root's, so processes of the same user cannot read its credentials or tickets.
pub fn not_dumpable() {
    // SAFETY: prctl(2) with PR_SET_DUMPABLE takes plain integers and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        tracing::warn!("could not make the process non-dumpable");
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn decrypt(identity: &std::path::Path, file: Option<&std::path::Path>) -> Result<()> {
    use anyhow::Context;
    use std::io::{Read, Write};
    let ids = zeroize::Zeroizing::new(
        std::fs::read_to_string(identity)
            .with_context(|| format!("reading the identity file {}", identity.display()))?,
    );
    let mut message = Vec::new();
    match file {
        Some(f) => {
            message = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => {
            std::io::stdin().read_to_end(&mut message)?;
        }
    }
    // The API returns it as a JSON string: accept that too.
    if let Ok(s) = serde_json::from_slice::<String>(&message) {
        message = s.into_bytes();
    }
    let plain = meetbot_delivery::hold::open_with(&ids, &message)?;
    std::io::stdout().write_all(&plain)?;
    Ok(())
}

fn customer_key(out: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (identity, recipient) = meetbot_delivery::hold::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
    writeln!(f, "# meetbot customer key; public key: {recipient}")?;
    writeln!(f, "{}", identity.as_str())?;
    println!("{recipient}");
    eprintln!(
        "identity written to {} (mode 0600): keep it offline; register the public key with PATCH /v1/settings {{\"customer_key\": \"{recipient}\"}}",
        out.display()
    );
    Ok(())
}

fn calendar_parse(
    provider: Provider,
    file: &std::path::Path,
    window: (
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ),
) -> Result<()> {
    use anyhow::Context;
    use std::io::Read;
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    }
    let provider = match (provider, window) {
        (Provider::Ics, (Some(from), Some(to))) => {
            anyhow::ensure!(from < to, "--from must be before --to");
            // Files from Windows machines are not always UTF-8: read what can be read.
            let text = String::from_utf8_lossy(&bytes);
            let feed = meetbot_calendar_sync::ics::read_feed(&text, "", (from, to))
                .with_context(|| format!("parsing {}", file.display()))?;
            for e in &feed.errors {
                eprintln!("{}: {e}", file.display());
            }
            anyhow::ensure!(
                feed.read > 0 || feed.errors.is_empty(),
                "parsing {}: none of its {} events could be read",
                file.display(),
                feed.errors.len()
            );
            use std::io::Write;
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&feed.events)?
            )
            .context("writing standard output")?;
            return Ok(());
        }
        (Provider::Ics, _) => anyhow::bail!("--provider ics needs --from and --to (RFC 3339)"),
        (_, (Some(_), _) | (_, Some(_))) => {
            anyhow::bail!(
                "--from and --to are for --provider ics (JSON payloads are printed whole)"
            )
        }
        (Provider::Google, _) => meetbot_core::model::CalendarProvider::Google,
        (Provider::Microsoft, _) => meetbot_core::model::CalendarProvider::Microsoft,
    };
    let events = meetbot_calendar_sync::parse_payload(provider, &bytes)
        .with_context(|| format!("parsing {}", file.display()))?;
    println!("{}", serde_json::to_string_pretty(&events)?);
    Ok(())
}

/// Runs `cmd`; services run until `stop`.
async fn run(
    cmd: Command,
    config: Config,
    ticket: Option<zeroize::Zeroizing<String>>,
    stop: Shutdown,
) -> Result<()> {
    match cmd {
        Command::Dev { no_demo, demo_in } => {
            runtime::dev(config, (!no_demo).then_some(demo_in), stop).await
        }
        Command::Check => runtime::check(&config).await,
        Command::Scheduler => runtime::scheduler(config, stop).await,
        Command::CalendarSync => runtime::calendar_sync(config, stop).await,
        Command::Launcher => bots::launcher_service(config, stop).await,
        Command::Bot { tenant, job } => bots::bot(ticket, tenant, job, stop).await,
        Command::Tenant(c) => tenant::run_tenant(c, &config).await,
        Command::Keys(c) => tenant::run_keys(c, &config).await,
        Command::Audit(c) => tenant::run_audit(c, &config).await,
        Command::Privacy(c) => tenant::run_privacy(c, &config).await,
        Command::Decrypt { identity, file } => decrypt(&identity, file.as_deref()),
        Command::CustomerKey { out } => customer_key(&out),
        Command::Calendar(CalendarCmd::Parse {
            provider,
            file,
            from,
            to,
        }) => calendar_parse(provider, &file, (from, to)),
        Command::Calendar(cmd) => tenant::run_calendar(cmd, &config).await,
        Command::Transcriber => speech::transcriber_service(config, stop).await,
        Command::Api => api::api_service(config, stop).await,
        Command::Delivery => api::delivery_service(config, stop).await,
        Command::Model(c) => speech::run_model(c, &config).await,
        Command::Transcribe {
            file,
            engine,
            model,
            format,
        } => speech::transcribe(&config, &file, engine, model, format).await,
        Command::Summarize { file, format } => speech::summarize(&config, &file, format).await,
        Command::Redact {
            classes,
            topics,
            no_topics,
            names,
        } => speech::redact(&config, classes, topics, no_topics, names),
    }
}

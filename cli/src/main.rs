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
        /// `meetbot model fetch`).
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
    /// Prints the normalised meeting(s) of a provider JSON payload (an event or a list/delta page).
    Parse {
        #[arg(long, value_enum)]
        provider: Provider,
        /// The JSON file (`-` for standard input).
        file: PathBuf,
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
    }
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    meetbot_core::telemetry::init(&config.telemetry);
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
    match rt.block_on(run(cli.command, config, ticket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
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

fn calendar_parse(provider: Provider, file: &std::path::Path) -> Result<()> {
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
    let provider = match provider {
        Provider::Google => meetbot_core::model::CalendarProvider::Google,
        Provider::Microsoft => meetbot_core::model::CalendarProvider::Microsoft,
    };
    let events = meetbot_calendar_sync::parse_payload(provider, &bytes)
        .with_context(|| format!("parsing {}", file.display()))?;
    println!("{}", serde_json::to_string_pretty(&events)?);
    Ok(())
}

async fn run(
    cmd: Command,
    config: Config,
    ticket: Option<zeroize::Zeroizing<String>>,
) -> Result<()> {
    match cmd {
        Command::Dev { no_demo, demo_in } => {
            runtime::dev(config, (!no_demo).then_some(demo_in)).await
        }
        Command::Check => runtime::check(&config).await,
        Command::Scheduler => runtime::scheduler(config).await,
        Command::CalendarSync => runtime::calendar_sync(config).await,
        Command::Launcher => bots::launcher_service(config).await,
        Command::Bot { tenant, job } => bots::bot(ticket, tenant, job).await,
        Command::Tenant(c) => tenant::run_tenant(c, &config).await,
        Command::Keys(c) => tenant::run_keys(c, &config).await,
        Command::Audit(c) => tenant::run_audit(c, &config).await,
        Command::Privacy(c) => tenant::run_privacy(c, &config).await,
        Command::Decrypt { identity, file } => decrypt(&identity, file.as_deref()),
        Command::CustomerKey { out } => customer_key(&out),
        Command::Calendar(CalendarCmd::Parse { provider, file }) => calendar_parse(provider, &file),
        Command::Calendar(cmd) => tenant::run_calendar(cmd, &config).await,
        Command::Transcriber => speech::transcriber_service(config).await,
        Command::Api => api::api_service(config).await,
        Command::Delivery => api::delivery_service(config).await,
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

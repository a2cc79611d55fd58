//! `meetbot api`: the REST API service, and building it for `meetbot dev`.

use anyhow::{Context, Result};
use meetbot_api::{Api, Settings, limits::Limits, oidc};
use meetbot_calendar_sync::oauth::OAuthHttp;
use meetbot_core::config::Config;
use meetbot_store::vault::Tenants;
use std::sync::Arc;

/// The API as configured: sign-in providers, limits, calendar connect/disconnect; bot stops
/// announced on `queue`; one-time sign-in links only when `links` is given (`meetbot dev`).
pub fn build(
    config: &Config,
    tenants: Arc<Tenants>,
    queue: Option<Arc<dyn meetbot_queue::JobQueue>>,
    links: Option<meetbot_api::signin_link::SignInLinks>,
) -> Result<Arc<Api>> {
    let a = &config.api;
    let settings = Settings::from_config(config);
    let mut builder = reqwest::Client::builder();
    if let Some(f) = &a.oidc_ca_file {
        let pem = std::fs::read(f)
            .with_context(|| format!("reading api.oidc_ca_file {}", f.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", f.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    let redirect = format!("{}/v1/auth/callback", settings.public_url);
    let mut o = oidc::Oidc::new(OAuthHttp::new(builder)?, &redirect)
        .map_err(|e| anyhow::anyhow!("api.public_url: {e}"))?;
    for (name, p) in &a.oidc {
        o = o.with(
            name,
            oidc::Provider::new(&p.issuer, &p.client_id, p.client_secret.clone()),
        );
    }
    let calendars = crate::runtime::sync_worker(config, tenants.clone(), Default::default())?;
    let proxies = a
        .trusted_proxies
        .iter()
        .map(|p| {
            p.parse()
                .map_err(|e| anyhow::anyhow!("api.trusted_proxies: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Api {
        tenants,
        settings,
        oidc: o,
        limits: Limits::new(a.rate_per_ip_per_minute, a.rate_per_tenant_per_minute)
            .trusting(proxies),
        calendars: Some(Arc::new(calendars)),
        queue,
        sign_in_links: links,
    }))
}

/// The API and the web app beside it, as one service.
pub struct Served {
    pub addr: std::net::SocketAddr,
    pub api: Arc<Api>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Listens on `api.listen` and serves the API and the web app (`/app/`) until `stop`.
pub async fn spawn(
    config: &Config,
    tenants: Arc<Tenants>,
    queue: Option<Arc<dyn meetbot_queue::JobQueue>>,
    links: Option<meetbot_api::signin_link::SignInLinks>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Served> {
    let api = build(config, tenants, queue, links)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen for the API on {}", config.api.listen))?;
    let addr = listener.local_addr()?;
    let app = meetbot_api::app(api.clone(), meetbot_web::routes());
    let task = tokio::spawn(meetbot_api::serve_app(api.clone(), app, listener, stop));
    Ok(Served { addr, api, task })
}

/// `meetbot api`: the REST API and the ops server.
pub async fn api_service(config: Config, stop: meetbot_core::ops::Shutdown) -> Result<()> {
    use meetbot_core::ops::Ops;
    use tokio::sync::watch;
    let store = crate::runtime::open_store(&config).await?;
    let keys = crate::runtime::key_provider(&config)?;
    let tenants = Arc::new(Tenants::new(store.clone(), keys.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut api_stop = stop_rx.clone();
    // Stopping a bot is announced to launchers on the broker; without one (or while it is
    // down at start) bots still find their job stopped at their next look.
    let queue: Option<Arc<dyn meetbot_queue::JobQueue>> = match config.queue.kind {
        meetbot_core::config::QueueKind::Rabbitmq => {
            match crate::runtime::rabbitmq(&config, "api").await {
                Ok(q) => Some(q),
                Err(e) => {
                    eprintln!(
                        "api: bot stop events off ({e:#}); bots notice stopped jobs themselves"
                    );
                    None
                }
            }
        }
        meetbot_core::config::QueueKind::InProcess => None,
    };
    let Served {
        addr, task: server, ..
    } = spawn(&config, tenants, queue, None, async move {
        let _ = api_stop.changed().await;
    })
    .await?;
    let mut ops_stop = stop_rx;
    let (ops_addr, ops) = Ops::new(
        "api",
        prometheus_client::registry::Registry::default(),
        crate::runtime::readiness(store, keys, None),
    )
    .serve(config.ops.listen, async move {
        let _ = ops_stop.changed().await;
    })
    .await?;
    eprintln!(
        "api: http://{addr}/v1 (OpenAPI at /v1/openapi.json; web app at /app/; sign-in providers: {}), ops on http://{ops_addr}",
        if config.api.oidc.is_empty() {
            "none configured (api.oidc)".to_string()
        } else {
            config
                .api
                .oidc
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    stop.stopped().await;
    let _ = stop_tx.send(true);
    stop.track("API server (open requests)", server).await??;
    stop.track("ops server", ops).await??;
    Ok(())
}

/// `meetbot delivery`: works off every tenant's outbox (summaries to Slack, email, webhooks) and
/// purges expired records; the transcriber does the same, so this scales delivery on its own.
pub async fn delivery_service(config: Config, stop: meetbot_core::ops::Shutdown) -> Result<()> {
    use meetbot_core::ops::Ops;
    use tokio::sync::watch;
    let store = crate::runtime::open_store(&config).await?;
    let keys = crate::runtime::key_provider(&config)?;
    let tenants = Arc::new(Tenants::new(store.clone(), keys.clone()));
    let outbox = Arc::new(
        meetbot_delivery::service::outbox(
            store.clone(),
            tenants,
            &config.delivery,
            &config.egress.allow_private,
        )
        .map_err(|e| anyhow::anyhow!("delivery: {e}"))?,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut s1 = stop_rx.clone();
    let worker = tokio::spawn(meetbot_delivery::service::run(
        outbox,
        store.clone(),
        std::time::Duration::from_secs(config.delivery.poll_seconds),
        async move {
            let _ = s1.changed().await;
        },
    ));
    let mut s2 = stop_rx.clone();
    let purger = tokio::spawn(meetbot_store::retention::run(
        store.clone(),
        std::time::Duration::from_secs(config.store.purge_seconds),
        format!("delivery-{}", meetbot_core::ids::new_record_id()),
        async move {
            let _ = s2.changed().await;
        },
    ));
    let mut s3 = stop_rx;
    let (ops_addr, ops) = Ops::new(
        "delivery",
        prometheus_client::registry::Registry::default(),
        crate::runtime::readiness(store, keys, None),
    )
    .serve(config.ops.listen, async move {
        let _ = s3.changed().await;
    })
    .await?;
    eprintln!(
        "delivery: every {} s over every tenant's outbox, ops on http://{ops_addr}",
        config.delivery.poll_seconds
    );
    stop.stopped().await;
    let _ = stop_tx.send(true);
    stop.track("delivery worker (a send in flight)", worker)
        .await?;
    stop.track("retention purge", purger).await?;
    stop.track("ops server", ops).await??;
    Ok(())
}

//! Connecting to the configured servers, and the long-running commands.

use anyhow::{Context, Result};
use meetbot_core::config::{Config, KeyProviderKind, QueueKind, server_address};
use meetbot_core::ops::{Ops, ReadinessCheck, shutdown_signal};
use meetbot_crypto::{AzureKeyVaultProvider, KeyProvider, LocalKeyFile};
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    Ok(meetbot_store::open(&config.store).await?)
}

pub fn key_provider(config: &Config) -> Result<Arc<dyn KeyProvider>> {
    Ok(match config.keys.provider {
        KeyProviderKind::Local => {
            Arc::new(LocalKeyFile::open_or_create(&config.keys.local_key_file)?)
        }
        KeyProviderKind::AzureKeyVault => {
            Arc::new(AzureKeyVaultProvider::from_config(&config.keys.azure)?)
        }
    })
}

pub async fn tenants(config: &Config) -> Result<Tenants> {
    let store = open_store(config).await?;
    Ok(Tenants::new(store, key_provider(config)?))
}

/// Opens an AMQP connection to check RabbitMQ answers, with the configured timeout.
pub async fn check_rabbitmq(config: &Config) -> Result<()> {
    let addr = server_address(&config.queue.amqp_url);
    let timeout = Duration::from_millis(config.queue.connect_timeout_ms);
    let connect = lapin::Connection::connect(
        &config.queue.amqp_url,
        lapin::ConnectionProperties::default(),
    );
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(conn)) => {
            let _ = conn.close(200, "check done".into()).await;
            Ok(())
        }
        Ok(Err(e)) => anyhow::bail!(
            "cannot reach RabbitMQ at {addr}: {}",
            first_line(&e.to_string())
        ),
        Err(_) => anyhow::bail!(
            "cannot reach RabbitMQ at {addr}: no answer within {} ms",
            timeout.as_millis()
        ),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// `meetbot check`: every configured dependency, one line each.
pub async fn check(config: &Config) -> Result<()> {
    println!("config: ok");
    let store = open_store(config).await?;
    println!("store: ok ({})", store.describe());
    let keys = key_provider(config)?;
    keys.check().await.context("key provider")?;
    println!("keys: ok ({})", keys.name());
    if config.queue.kind == QueueKind::Rabbitmq {
        check_rabbitmq(config).await?;
        println!(
            "queue: ok (RabbitMQ at {})",
            server_address(&config.queue.amqp_url)
        );
    } else {
        println!("queue: ok (in-process)");
    }
    Ok(())
}

/// Readiness checks for the dependencies a service uses.
pub fn readiness(store: Arc<dyn Store>, keys: Arc<dyn KeyProvider>) -> Vec<ReadinessCheck> {
    vec![
        ReadinessCheck::new("store", move || {
            let s = store.clone();
            async move { s.ping().await.map_err(|e| e.to_string()) }
        }),
        ReadinessCheck::new("keys", move || {
            let k = keys.clone();
            async move { k.check().await.map_err(|e| e.to_string()) }
        }),
    ]
}

/// `meetbot dev`: the single-machine runtime on embedded defaults.
pub async fn dev(config: Config) -> Result<()> {
    eprintln!(
        "meetbot dev: store {:?} at {}",
        config.store.kind,
        config.store.embedded_dir.display()
    );
    let store = open_store(&config).await?;
    let keys = key_provider(&config)?;
    let tenants = Tenants::new(store.clone(), keys.clone());
    eprintln!("[1/3] store open: {}", store.describe());
    let demo = match store
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.name == "Demo" && t.status == meetbot_core::model::TenantStatus::Active)
    {
        Some(t) => t,
        None => tenants.create("Demo").await?,
    };
    tenants
        .vault(&demo.id)
        .await
        .context("opening the demo tenant's keys")?;
    eprintln!(
        "[2/3] demo tenant {} ready (data key v{}, wrapped by {})",
        demo.id,
        demo.current_key_version,
        keys.name()
    );
    let ops = Ops::new("dev", Registry::default(), readiness(store, keys));
    let (addr, server) = ops.serve(config.ops.listen, shutdown_signal()).await?;
    eprintln!("[3/3] ops server on http://{addr} (/healthz /readyz /metrics); Ctrl-C stops");
    server.await??;
    eprintln!("meetbot dev: stopped");
    Ok(())
}

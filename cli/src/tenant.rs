//! `meetbot tenant ...` and `meetbot keys ...`.

use crate::runtime::tenants;
use anyhow::Result;
use clap::Subcommand;
use meetbot_core::TenantId;
use meetbot_core::config::Config;

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Registers a tenant with its own database and a fresh data key.
    Create { name: String },
    /// Lists tenants (id, status, key version, name).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Crypto-erases a tenant: destroys its keys, drops its database, prints the deletion receipt.
    Delete {
        id: TenantId,
        /// Who asked for it (recorded in the receipt).
        #[arg(long, default_value = "cli")]
        requested_by: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Adds a new data-key version; new seals use it, old records still open.
    Rotate { tenant: TenantId },
    /// Re-seals every record under the current data-key version.
    Reencrypt { tenant: TenantId },
    /// Destroys data-key versions no record uses any more.
    Retire { tenant: TenantId },
}

pub async fn run_tenant(cmd: TenantCmd, config: &Config) -> Result<()> {
    let t = tenants(config).await?;
    match cmd {
        TenantCmd::Create { name } => {
            let tenant = t.create(&name).await?;
            println!("{}", tenant.id);
            eprintln!(
                "created tenant {} ({name}) in {}",
                tenant.id,
                t.store().describe()
            );
        }
        TenantCmd::List { json } => {
            let list = t.store().list_tenants().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<22} {:<8} {:<4} {:<25} NAME",
                    "ID", "STATUS", "KEY", "CREATED"
                );
                for x in list {
                    println!(
                        "{:<22} {:<8} v{:<3} {:<25} {}",
                        x.id,
                        format!("{:?}", x.status).to_lowercase(),
                        x.current_key_version,
                        x.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        x.name
                    );
                }
            }
        }
        TenantCmd::Delete { id, requested_by } => {
            let receipt = t.erase(&id, &requested_by).await?;
            println!("{}", serde_json::to_string_pretty(&receipt)?);
            eprintln!(
                "tenant {id} erased: keys destroyed, database dropped; receipt {} recorded",
                receipt.id
            );
        }
    }
    Ok(())
}

pub async fn run_keys(cmd: KeysCmd, config: &Config) -> Result<()> {
    let t = tenants(config).await?;
    match cmd {
        KeysCmd::Rotate { tenant } => {
            let v = t.rotate(&tenant).await?;
            println!(
                "tenant {tenant}: data key v{v} is now current; run `meetbot keys reencrypt {tenant}` to move old records"
            );
        }
        KeysCmd::Reencrypt { tenant } => {
            let r = t.reencrypt(&tenant).await?;
            println!(
                "tenant {tenant}: re-sealed {} fields in {} records",
                r.fields, r.records
            );
        }
        KeysCmd::Retire { tenant } => {
            let gone = t.retire_old_keys(&tenant).await?;
            let v: Vec<String> = gone.iter().map(|k| format!("v{}", k.version)).collect();
            println!("tenant {tenant}: destroyed key versions [{}]", v.join(", "));
        }
    }
    Ok(())
}

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
    /// Shows the tenant's bot rules, or sets them from a JSON file (`--set FILE`): display_name,
    /// chat_notice, waiting_room_/alone_/silence_timeout_seconds, max_duration_seconds.
    BotRules {
        id: TenantId,
        #[arg(long)]
        set: Option<std::path::PathBuf>,
    },
    /// Sets the tenant's own API key for its HTTP speech engine (read from standard input, one
    /// line; never an argument, so it stays out of shell history), sealed under the tenant's key.
    /// The transcriber uses it for `transcriber.tenants.<id>` when that has no `api_key`.
    SpeechKey {
        id: TenantId,
        /// Removes the key instead.
        #[arg(long)]
        clear: bool,
    },
    /// Where the tenant's meeting summaries go: shows the targets (addresses and URLs are
    /// shown only as counts), or sets them. Addresses and the webhook URL are sealed.
    Delivery {
        id: TenantId,
        /// A Slack channel id (e.g. C0123ABCD).
        #[arg(long)]
        slack_channel: Option<String>,
        /// Reads the tenant's own Slack bot token from standard input (one line; sealed); without
        /// one, the deployment's app (delivery.slack_token) posts.
        #[arg(long)]
        slack_token_stdin: bool,
        /// An email address (repeat for more); replaces the list.
        #[arg(long = "email")]
        emails: Vec<String>,
        /// A webhook URL; bodies are signed with the deployment's delivery.webhook_secret.
        #[arg(long)]
        webhook_url: Option<String>,
        /// Removes every target instead.
        #[arg(long)]
        clear: bool,
    },
    /// Adds a person who may sign in to the tenant's API (by the email address of their Google
    /// or Microsoft account); use it for the first owner, who then adds the others.
    AddUser {
        id: TenantId,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value = "member")]
        role: RoleArg,
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
pub enum PrivacyCmd {
    /// Lists deletion receipts (all tenants, or one) as JSON lines, each with `verified`
    /// (its digest recomputed); exits 1 if any does not verify.
    Receipts {
        #[arg(long)]
        tenant: Option<TenantId>,
    },
}

pub async fn run_privacy(cmd: PrivacyCmd, config: &Config) -> Result<()> {
    match cmd {
        PrivacyCmd::Receipts { tenant } => {
            let store = crate::runtime::open_store(config).await?;
            let mut bad = 0;
            for r in store.deletion_receipts(tenant.as_ref()).await? {
                let ok = meetbot_store::vault::verify_receipt(&r);
                bad += usize::from(!ok);
                let mut v = serde_json::to_value(&r)?;
                v["verified"] = ok.into();
                println!("{v}");
            }
            anyhow::ensure!(bad == 0, "{bad} deletion receipt(s) do not verify");
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Recomputes the tenant's audit chain; names the first altered, removed or unreadable
    /// entry (exit 1) or prints how many entries it holds.
    Verify { tenant: TenantId },
}

pub async fn run_audit(cmd: AuditCmd, config: &Config) -> Result<()> {
    match cmd {
        AuditCmd::Verify { tenant } => {
            let store = crate::runtime::open_store(config).await?;
            match meetbot_store::audit::verify(&*store, &tenant).await? {
                Ok(r) => {
                    println!(
                        "audit chain of tenant {tenant}: ok, {} entries{}",
                        r.entries,
                        r.head
                            .map(|h| format!(", head {} {}", h.seq, h.hash))
                            .unwrap_or_default()
                    );
                    Ok(())
                }
                Err(b) => anyhow::bail!("audit chain of tenant {tenant} is broken: {b}"),
            }
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Owner,
    Admin,
    Member,
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
        TenantCmd::BotRules { id, set } => {
            use anyhow::Context;
            use meetbot_core::model::{BotRuleOverrides, TenantSettings};
            if let Some(f) = set {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let bot: BotRuleOverrides = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not valid bot rules", f.display()))?;
                bot.validate()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                // Only the bot rules change; the rest of the settings stays.
                let mut settings = t
                    .store()
                    .get_tenant_settings(&id)
                    .await?
                    .unwrap_or_else(|| TenantSettings::new(bot.clone(), chrono::Utc::now()));
                settings.bot = bot;
                settings.updated_at = chrono::Utc::now();
                t.store().put_tenant_settings(&id, &settings).await?;
                eprintln!("bot rules of tenant {id} saved; bots started from now on use them");
            }
            let current = t
                .store()
                .get_tenant_settings(&id)
                .await?
                .map(|s| s.bot)
                .unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&current)?);
        }
        TenantCmd::SpeechKey { id, clear } => {
            use anyhow::Context;
            use meetbot_core::model::TenantSettings;
            let mut settings = t
                .store()
                .get_tenant_settings(&id)
                .await?
                .unwrap_or_else(|| TenantSettings::new(Default::default(), chrono::Utc::now()));
            if clear {
                settings.speech_api_key = None;
            } else {
                let mut line = zeroize::Zeroizing::new(String::new());
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the API key from standard input")?;
                let key = line.trim();
                anyhow::ensure!(!key.is_empty(), "no API key on standard input");
                let vault = t.vault(&id).await?;
                settings.speech_api_key = Some(vault.seal::<TenantSettings>(
                    "settings",
                    "speech_api_key",
                    key.as_bytes(),
                )?);
            }
            settings.updated_at = chrono::Utc::now();
            t.store().put_tenant_settings(&id, &settings).await?;
            eprintln!(
                "speech API key of tenant {id} {}",
                if clear { "removed" } else { "sealed and saved" }
            );
        }
        TenantCmd::Delivery {
            id,
            slack_channel,
            slack_token_stdin,
            emails,
            webhook_url,
            clear,
        } => {
            use meetbot_core::model::{DeliveryTargets, TenantSettings};
            let mut new_webhook_secret: Option<String> = None;
            let mut settings = t
                .store()
                .get_tenant_settings(&id)
                .await?
                .unwrap_or_else(|| TenantSettings::new(Default::default(), chrono::Utc::now()));
            let changing = clear
                || slack_channel.is_some()
                || slack_token_stdin
                || !emails.is_empty()
                || webhook_url.is_some();
            if changing {
                let vault = t.vault(&id).await?;
                if clear {
                    settings.delivery = DeliveryTargets::default();
                }
                if let Some(c) = slack_channel {
                    anyhow::ensure!(
                        !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric()),
                        "--slack-channel: give the channel id (letters and digits, e.g. C0123ABCD)"
                    );
                    settings.delivery.slack_channel = Some(c);
                }
                if slack_token_stdin {
                    use anyhow::Context;
                    let mut line = zeroize::Zeroizing::new(String::new());
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the Slack token from standard input")?;
                    let token = line.trim();
                    anyhow::ensure!(!token.is_empty(), "no Slack token on standard input");
                    settings.delivery.slack_token = Some(vault.seal::<TenantSettings>(
                        "settings",
                        "delivery_slack_token",
                        token.as_bytes(),
                    )?);
                }
                if !emails.is_empty() {
                    for e in &emails {
                        anyhow::ensure!(
                            meetbot_delivery::email::is_address(e),
                            "--email {e:?} is not an email address"
                        );
                    }
                    settings.delivery.emails = Some(vault.seal::<TenantSettings>(
                        "settings",
                        "delivery_emails",
                        emails.join("\n").as_bytes(),
                    )?);
                }
                if let Some(u) = webhook_url {
                    anyhow::ensure!(
                        url::Url::parse(&u).is_ok_and(|x| matches!(x.scheme(), "https" | "http")),
                        "--webhook-url must be an http(s) URL"
                    );
                    settings.delivery.webhook_url = Some(vault.seal::<TenantSettings>(
                        "settings",
                        "delivery_webhook_url",
                        u.as_bytes(),
                    )?);
                    if settings.delivery.webhook_secret.is_none() {
                        let secret = meetbot_delivery::webhook::new_secret()?;
                        settings.delivery.webhook_secret = Some(vault.seal::<TenantSettings>(
                            "settings",
                            "delivery_webhook_secret",
                            secret.as_bytes(),
                        )?);
                        new_webhook_secret = Some(secret);
                    }
                }
                settings.updated_at = chrono::Utc::now();
                t.store().put_tenant_settings(&id, &settings).await?;
            }
            let targets = meetbot_delivery::service::Targets::of(&**t.store(), &t, &id).await?;
            let mut out = serde_json::json!({
                "slack_channel": targets.slack_channel,
                "own_slack_token": settings.delivery.slack_token.is_some(),
                "emails": targets.emails.len(),
                "webhook": targets.webhook_url.is_some(),
                "own_webhook_secret": settings.delivery.webhook_secret.is_some(),
            });
            if let Some(secret) = new_webhook_secret {
                // Shown once: the receiver verifies signatures with it.
                out["new_webhook_secret"] = secret.into();
            }
            println!("{out}");
        }
        TenantCmd::AddUser { id, email, role } => {
            use meetbot_core::model::Role;
            let role = match role {
                RoleArg::Owner => Role::Owner,
                RoleArg::Admin => Role::Admin,
                RoleArg::Member => Role::Member,
            };
            let u = meetbot_api::routes::create_user(&t, &id, &email, role)
                .await
                .map_err(|e| anyhow::anyhow!("cannot add the user: {e}"))?;
            println!("{}", u.id);
            eprintln!(
                "added user {} as {} of tenant {id}; they sign in at /v1/auth/<provider>/login?tenant={id}",
                u.id,
                role.name()
            );
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

/// `meetbot calendar connect-ics|disconnect|list|rules`.
pub async fn run_calendar(cmd: crate::CalendarCmd, config: &Config) -> Result<()> {
    use crate::CalendarCmd;
    use anyhow::Context;
    use meetbot_calendar_sync::rules::{AutoJoinRules, rules_for, save_rules};
    use std::sync::Arc;

    let t = Arc::new(tenants(config).await?);
    let parse = |s: &str| -> Result<TenantId> {
        s.parse()
            .map_err(|e| anyhow::anyhow!("--tenant {s:?}: {e}"))
    };
    match cmd {
        CalendarCmd::Parse { .. } => unreachable!("handled in main"),
        CalendarCmd::ConnectIcs {
            tenant,
            user,
            email,
            url,
        } => {
            let tenant = parse(&tenant)?;
            let url = if url == "-" {
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)?;
                s.trim().to_string()
            } else {
                url
            };
            if !meetbot_delivery::email::is_address(email.trim()) {
                anyhow::bail!("--email {email:?} is not an email address");
            }
            let worker = crate::runtime::sync_worker(config, t, Default::default())?;
            let (conn, report) = worker.connect_ics(&tenant, &user, &email, &url).await?;
            let id = conn.id;
            println!("{id}");
            if let Some(r) = report {
                eprintln!(
                    "ICS feed connected as {id}: {} events in the window, {} meetings written",
                    r.events, r.applied.written
                );
            }
        }
        CalendarCmd::Disconnect { tenant, connection } => {
            let tenant = parse(&tenant)?;
            let worker = crate::runtime::sync_worker(config, t, Default::default())?;
            let r = worker.disconnect(&tenant, &connection, "cli").await?;
            eprintln!(
                "calendar {connection} disconnected; tokens {}",
                match r {
                    Some(meetbot_calendar_sync::oauth::Revocation::Revoked) =>
                        "revoked at the provider and erased",
                    _ => "erased (the provider offers no revocation endpoint)",
                }
            );
        }
        CalendarCmd::List { tenant } => {
            let tenant = parse(&tenant)?;
            println!(
                "{:<38} {:<10} {:<16} {:<20} EXPIRES",
                "ID", "PROVIDER", "STATUS", "USER"
            );
            for c in t.store().list_connections(&tenant).await? {
                println!(
                    "{:<38} {:<10} {:<16} {:<20} {}",
                    c.id,
                    format!("{:?}", c.provider).to_lowercase(),
                    format!("{:?}", c.status).to_lowercase(),
                    c.user_id,
                    c.access_expires_at
                        .map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        CalendarCmd::Rules { tenant, user, set } => {
            let tenant = parse(&tenant)?;
            if let Some(f) = set {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let rules: AutoJoinRules = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not valid auto-join rules", f.display()))?;
                save_rules(&t, &tenant, &user, &rules).await?;
                eprintln!("rules saved; the next sync round applies them");
            }
            let rules = rules_for(&t, &tenant, &user).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&rules.unwrap_or_default())?
            );
        }
    }
    Ok(())
}

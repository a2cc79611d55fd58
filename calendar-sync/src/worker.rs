//! The sync worker: turns push notifications into sync rounds, keeps each Microsoft connection's
//! subscription alive (created, renewed before expiry), and polls connections without a working
//! push channel  A throttled connection waits as long as the provider asked (`Retry-After`), or
//! an exponentially growing pause when it did not say.

use crate::google::GoogleClient;
use crate::graph::GraphClient;
use crate::oauth::{OAuth, OAuthError, Revocation};
use crate::rules::AutoJoinRules;
use crate::sync::{Provider, SyncError, SyncReport, sync_connection_within};
use chrono::{Duration as CDuration, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::{
    CalendarConnection, CalendarProvider, ConnectionStatus, PushChannel, TenantStatus,
};
use meetbot_store::vault::{TenantVault, Tenants};
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{RwLock, mpsc};

/// A fresh channel secret (Graph `clientState`, Google channel token).
fn new_secret() -> Result<String, SyncError> {
    meetbot_crypto::random_hex(32).map_err(|e| SyncError::Vault(e.into()))
}

/// How `add_ics` waits for the user's connection lease: tries, pause between, lifetime.
const ADD_LEASE_TRIES: u32 = 200;
const ADD_LEASE_PAUSE: Duration = Duration::from_millis(25);
const ADD_LEASE_TTL: Duration = Duration::from_secs(15);

/// Held while one round of a connection runs.
type RoundLock = Arc<tokio::sync::Mutex<()>>;

/// Subscription id -> (tenant, connection), shared with the webhook.
pub type SubscriptionIndex = Arc<RwLock<HashMap<String, (TenantId, String)>>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    Sync {
        tenant: TenantId,
        connection: String,
    },
    Renew {
        tenant: TenantId,
        connection: String,
    },
    Resubscribe {
        tenant: TenantId,
        connection: String,
    },
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub window_back: CDuration,
    pub window_ahead: CDuration,
    pub poll_every: Duration,
    /// Public URLs of the webhook; without them no subscriptions are made and polling carries sync.
    pub notification_url: Option<String>,
    pub lifecycle_url: Option<String>,
    /// Public URL of the Google webhook (`/webhooks/google`).
    pub google_notification_url: Option<String>,
    /// Lifetime asked for a new or renewed subscription (Graph allows 4230 min for events).
    pub push_lifetime: CDuration,
    /// Renew when less than this is left.
    pub renew_before: CDuration,
    /// What one sync round may cost (ICS feed caps, events per round).
    pub limits: crate::sync::RoundLimits,
    /// Calendar connections one user may have (any provider, disconnected ones not counted).
    pub max_connections_per_user: usize,
    /// ICS rounds (fetch, parse, apply) run at once in this process: with the feed caps,
    /// the bound on the memory feeds can take here.
    pub ics_concurrency: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            window_back: CDuration::days(1),
            window_ahead: CDuration::days(28),
            poll_every: Duration::from_secs(300),
            notification_url: None,
            lifecycle_url: None,
            google_notification_url: None,
            push_lifetime: CDuration::minutes(4200),
            renew_before: CDuration::hours(6),
            limits: Default::default(),
            max_connections_per_user: 10,
            ics_concurrency: 2,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Current,
    Created,
    Renewed,
    Disabled,
}

pub struct SyncWorker {
    graph: GraphClient,
    /// Google connections are synced (and watched) when set.
    google: Option<GoogleClient>,
    /// ICS feed connections are polled when set.
    ics: Option<crate::ics::IcsClient>,
    tenants: Arc<Tenants>,
    rules: AutoJoinRules,
    s: WorkerSettings,
    index: SubscriptionIndex,
    /// Refreshes access tokens and handles connect/disconnect when set.
    oauth: Option<Arc<OAuth>>,
    /// (tenant, connection) -> (not before, last pause)
    backoff: Mutex<HashMap<(TenantId, String), (Instant, Duration)>>,
    /// Permits for ICS rounds (`WorkerSettings::ics_concurrency`).
    ics_slots: Arc<tokio::sync::Semaphore>,
    /// (tenant, connection) -> its round lock: one round per connection at a time (a pass,
    /// a trigger and the API's first sync may ask for the same one).
    rounds: Mutex<HashMap<(TenantId, String), RoundLock>>,
}

impl SyncWorker {
    pub fn new(
        graph: GraphClient,
        tenants: Arc<Tenants>,
        rules: AutoJoinRules,
        s: WorkerSettings,
        index: SubscriptionIndex,
    ) -> Self {
        SyncWorker {
            graph,
            google: None,
            ics: None,
            tenants,
            rules,
            ics_slots: Arc::new(tokio::sync::Semaphore::new(s.ics_concurrency.max(1))),
            s,
            index,
            oauth: None,
            backoff: Mutex::new(HashMap::new()),
            rounds: Mutex::new(HashMap::new()),
        }
    }

    /// Access tokens are refreshed before they expire, and `connect`/`disconnect` work.
    pub fn with_oauth(mut self, oauth: Arc<OAuth>) -> Self {
        self.oauth = Some(oauth);
        self
    }

    pub fn oauth(&self) -> Option<&OAuth> {
        self.oauth.as_deref()
    }

    /// The connection's access token: refreshed when due (or `force`d) if OAuth is set up,
    /// else as stored.
    async fn token(
        &self,
        t: &TenantId,
        conn: &CalendarConnection,
        force: bool,
    ) -> Result<String, SyncError> {
        if let Some(o) = &self.oauth {
            return Ok(o
                .access_token(t, &conn.id, force)
                .await?
                .expose_secret()
                .to_string());
        }
        let vault = self.tenants.vault(t).await?;
        Ok(
            vault.open_string::<CalendarConnection>(
                &conn.id,
                "access_token",
                &conn.access_token,
            )?,
        )
    }

    /// Finishes an OAuth authorization (the `/oauth/callback` query and the browser's cookies,
    /// see [`OAuth::finish`]): stores the connection, opens its push channel and runs its first
    /// sync. Push and sync failures are logged, not returned: the connection exists and polling
    /// retries them. An account whose address is not the user's own is stored
    /// `AwaitingApproval`: no push, no sync, no meetings until an admin approves it.
    pub async fn connect(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
        presented: crate::oauth::Presented<'_>,
    ) -> Result<(TenantId, CalendarConnection), SyncError> {
        let oauth = self
            .oauth
            .as_ref()
            .ok_or(OAuthError::NotConfigured(CalendarProvider::Google))?;
        let granted = oauth.finish(state, code, error, presented).await?;
        let token = granted.access_token.expose_secret().to_string();
        let email = match (granted.provider, &self.google) {
            (CalendarProvider::Google, Some(g)) => g.account_address(&token).await?,
            (CalendarProvider::Google, None) => {
                return Err(OAuthError::NotConfigured(CalendarProvider::Google).into());
            }
            _ => self.graph.account_address(&token).await?,
        };
        let t = granted.tenant.clone();
        let status = if self.own_address(&t, &granted.user_id, &email).await? {
            ConnectionStatus::Active
        } else {
            ConnectionStatus::AwaitingApproval
        };
        let conn = oauth.store_connection(&granted, &email, status).await?;
        if status != ConnectionStatus::Active {
            tracing::warn!(tenant = %t, connection = %conn.id, "calendar account is not the user's own address; awaiting an admin's approval");
            return Ok((t, conn));
        }
        tracing::info!(tenant = %t, connection = %conn.id, provider = ?conn.provider, "calendar connected");
        if let Err(e) = self.ensure_push(&t, &conn.id, false).await {
            tracing::warn!(tenant = %t, error = %e, "push channel not opened; polling covers it");
        }
        if let Err(e) = self.sync(&t, &conn.id).await {
            tracing::warn!(tenant = %t, error = %e, "first sync failed; polling retries it");
        }
        Ok((t, conn))
    }

    /// Whether `account` (the address the calendar API names) is `user_id`'s own address.
    async fn own_address(
        &self,
        t: &TenantId,
        user_id: &str,
        account: &str,
    ) -> Result<bool, SyncError> {
        let user = self
            .tenants
            .store()
            .get_user(t, user_id)
            .await?
            .ok_or(OAuthError::NotBound)?;
        let vault = self.tenants.vault(t).await?;
        let own = vault.open_string::<meetbot_core::model::User>(&user.id, "email", &user.email)?;
        Ok(own.trim().to_lowercase() == account.trim().to_lowercase())
    }

    /// Disconnects a calendar: stops its push channel, revokes its tokens at the provider
    /// (where it can), erases them here, and withdraws bots from its future meetings.
    pub async fn disconnect(
        &self,
        t: &TenantId,
        connection: &str,
        actor: &str,
    ) -> Result<Option<Revocation>, SyncError> {
        if let Err(e) = self.stop_push(t, connection).await {
            tracing::warn!(tenant = %t, error = %e, "push channel not stopped; it expires by itself");
            // Forget it here regardless: a disconnected calendar gets no more syncs.
            let store = self.tenants.store();
            if let Some(mut c) = store.get_connection(t, connection).await?
                && let Some(p) = c.push.take()
            {
                self.index.write().await.remove(&p.id);
                store.put_connection(t, &c).await?;
            }
        }
        let revocation = match &self.oauth {
            Some(o) => Some(o.revoke(t, connection, actor).await?),
            None => None,
        };
        let withdrawn = crate::apply::withdraw_connection(
            &self.tenants,
            t,
            connection,
            "calendar disconnected",
        )
        .await?;
        tracing::info!(tenant = %t, connection = %connection, withdrawn, "calendar disconnected");
        Ok(revocation)
    }

    /// Also syncs and watches Google connections.
    pub fn with_google(mut self, google: GoogleClient) -> Self {
        self.google = Some(google);
        self
    }

    /// Connects user `user_id`'s ICS feed (its address is sealed like a token) and runs the
    /// first round at once (the CLI and the dev demo; the API uses [`Self::add_ics`] and runs
    /// the round in the background). A feed that cannot be fetched or read is an error here,
    /// not a silent empty calendar, and leaves no connection behind. Returns the connection as
    /// stored and that round.
    pub async fn connect_ics(
        &self,
        t: &TenantId,
        user_id: &str,
        user_email: &str,
        feed_url: &str,
    ) -> Result<(meetbot_core::model::CalendarConnection, Option<SyncReport>), SyncError> {
        let conn = self.add_ics(t, user_id, user_email, feed_url).await?;
        let store = self.tenants.store();
        match self.sync(t, &conn.id).await {
            Err(e @ (SyncError::Ics(_) | SyncError::Limit(_))) => {
                // The feed was refused: the address is not kept.
                store.delete_connection(t, &conn.id).await?;
                Err(e)
            }
            other => Ok((conn, other?)),
        }
    }

    /// Stores user `user_id`'s ICS feed as a connection (its address sealed like a token)
    /// whose first round has not run yet (`last_sync` empty: "syncing"); [`Self::sync`] runs
    /// it, or the next poll does. Refused: an address this worker does not fetch, or a user
    /// at `max_connections_per_user`.
    pub async fn add_ics(
        &self,
        t: &TenantId,
        user_id: &str,
        user_email: &str,
        feed_url: &str,
    ) -> Result<meetbot_core::model::CalendarConnection, SyncError> {
        let ics = self
            .ics
            .as_ref()
            .ok_or(SyncError::Ics(crate::ics::IcsError::Http(
                "ICS feeds are not enabled in this calendar worker".into(),
            )))?;
        // Scheme, host and address literal (egress rules) are refused here, before anything is
        // stored; a name is checked when the round looks it up.
        ics.check(feed_url.trim())?;
        let store = self.tenants.store();
        let id = meetbot_core::ids::new_record_id();
        // Count and insert one request at a time per user (a short control lease), so
        // parallel requests cannot all pass the count; the count after the insert below keeps
        // the cap even if the lease could not be had in time.
        let lease = format!("calendar-connections:{t}:{user_id}");
        let mut leased = false;
        for _ in 0..ADD_LEASE_TRIES {
            if store.try_lease(&lease, &id, ADD_LEASE_TTL).await? {
                leased = true;
                break;
            }
            tokio::time::sleep(ADD_LEASE_PAUSE).await;
        }
        let added = self
            .add_ics_counted(t, user_id, user_email, feed_url, &id)
            .await;
        if leased && let Err(e) = store.release_lease(&lease, &id).await {
            tracing::warn!(tenant = %t, error = %e, "connection lease not released; it expires by itself");
        }
        added
    }

    async fn add_ics_counted(
        &self,
        t: &TenantId,
        user_id: &str,
        user_email: &str,
        feed_url: &str,
        id: &str,
    ) -> Result<meetbot_core::model::CalendarConnection, SyncError> {
        let store = self.tenants.store();
        let theirs = || async {
            Ok::<_, SyncError>(
                store
                    .list_connections(t)
                    .await?
                    .iter()
                    .filter(|c| c.user_id == user_id && c.status != ConnectionStatus::Disconnected)
                    .count(),
            )
        };
        let cap = self.s.max_connections_per_user;
        if theirs().await? >= cap {
            return Err(SyncError::TooManyConnections(cap));
        }
        let vault = self.tenants.vault(t).await?;
        let id = id.to_string();
        let now = Utc::now();
        let conn = meetbot_core::model::CalendarConnection {
            account_email: vault.seal::<meetbot_core::model::CalendarConnection>(
                &id,
                "account_email",
                user_email.trim().to_lowercase().as_bytes(),
            )?,
            access_token: vault.seal::<meetbot_core::model::CalendarConnection>(
                &id,
                "access_token",
                feed_url.trim().as_bytes(),
            )?,
            refresh_token: None,
            id: id.clone(),
            user_id: user_id.to_string(),
            provider: CalendarProvider::Ics,
            scopes: vec![],
            access_expires_at: None,
            status: meetbot_core::model::ConnectionStatus::Active,
            sync_cursor: None,
            push: None,
            last_sync: None,
            created_at: now,
            updated_at: now,
        };
        store.put_connection(t, &conn).await?;
        // Counted again with this one stored: of requests racing past the first count, the
        // last to store sees every earlier one, so no more than the cap remain.
        if theirs().await? > cap {
            store.delete_connection(t, &conn.id).await?;
            return Err(SyncError::TooManyConnections(cap));
        }
        Ok(conn)
    }

    /// ICS feed connections are polled (every `poll_every`) with this client.
    pub fn with_ics(mut self, ics: crate::ics::IcsClient) -> Self {
        self.ics = Some(ics);
        self
    }

    /// Rebuilds the subscription index from the store (at start).
    pub async fn load_index(&self) -> Result<usize, SyncError> {
        let mut map = HashMap::new();
        for t in self.tenants.store().list_tenants().await? {
            if t.status != TenantStatus::Active {
                continue;
            }
            for c in self.tenants.store().list_connections(&t.id).await? {
                if let Some(p) = &c.push {
                    map.insert(p.id.clone(), (t.id.clone(), c.id.clone()));
                }
            }
        }
        let n = map.len();
        *self.index.write().await = map;
        Ok(n)
    }

    fn key(t: &TenantId, c: &str) -> (TenantId, String) {
        (t.clone(), c.to_string())
    }

    /// One sync round, unless the connection is paused after throttling (`Ok(None)`).
    /// Rounds of one connection run one after another, never at once.
    pub async fn sync(
        &self,
        t: &TenantId,
        connection: &str,
    ) -> Result<Option<SyncReport>, SyncError> {
        let key = Self::key(t, connection);
        let lock = self
            .rounds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let _round = lock.lock().await;
            self.sync_now(t, connection).await
        };
        let mut rounds = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the lock when nobody else holds or waits for it (the map and this one).
        if Arc::strong_count(&lock) == 2 {
            rounds.remove(&key);
        }
        result
    }

    async fn sync_now(
        &self,
        t: &TenantId,
        connection: &str,
    ) -> Result<Option<SyncReport>, SyncError> {
        let now = Instant::now();
        if let Some((until, _)) = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::key(t, connection))
            && *until > now
        {
            return Ok(None);
        }
        let conn = self
            .tenants
            .store()
            .get_connection(t, connection)
            .await?
            .ok_or_else(|| SyncError::NoConnection(connection.into()))?;
        let provider = match (conn.provider, &self.google) {
            (CalendarProvider::Microsoft, _) => Provider::Microsoft(&self.graph),
            (CalendarProvider::Google, Some(g)) => Provider::Google(g),
            (CalendarProvider::Ics, _) => match &self.ics {
                Some(c) => Provider::Ics(c),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        let window = (
            Utc::now() - self.s.window_back,
            Utc::now() + self.s.window_ahead,
        );
        if conn.status != ConnectionStatus::Active {
            return Ok(None);
        }
        // One feed at a time per permit: the feed caps times the permits bound the memory.
        let _slot = match provider {
            Provider::Ics(_) => Some(
                self.ics_slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| SyncError::NoConnection(connection.into()))?,
            ),
            _ => None,
        };
        let round = |token: String| {
            sync_connection_within(
                provider,
                &self.tenants,
                t,
                connection,
                Some(token.into()),
                &self.rules,
                window,
                &self.s.limits,
            )
        };
        let mut result = round(self.token(t, &conn, false).await?).await;
        if let Err(e) = &result
            && e.unauthorized()
            && self.oauth.is_some()
        {
            // Revoked or expired early: one refresh, one retry.
            result = round(self.token(t, &conn, true).await?).await;
        }
        match result {
            Ok(r) => {
                self.backoff
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&Self::key(t, connection));
                Ok(Some(r))
            }
            Err(e) => {
                // The failure is shown on the connection (GET /v1/calendars); polling retries.
                if let Err(w) = self.record_failure(t, connection, &e).await {
                    tracing::warn!(tenant = %t, connection = %connection, error = %w, "sync failure not recorded");
                }
                if let Some((status, retry_after)) = e.throttled() {
                    let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                    let last = b
                        .get(&Self::key(t, connection))
                        .map(|x| x.1)
                        .unwrap_or(Duration::from_millis(500));
                    let pause = retry_after.unwrap_or((last * 2).min(Duration::from_secs(600)));
                    b.insert(Self::key(t, connection), (Instant::now() + pause, pause));
                    tracing::warn!(tenant = %t, status, pause_ms = pause.as_millis() as u64, "calendar provider throttling; pausing this connection");
                }
                Err(e)
            }
        }
    }

    /// Records on the connection why its round failed.
    async fn record_failure(
        &self,
        t: &TenantId,
        connection: &str,
        e: &SyncError,
    ) -> Result<(), SyncError> {
        let store = self.tenants.store();
        let Some(mut conn) = store.get_connection(t, connection).await? else {
            return Ok(());
        };
        conn.last_sync = Some(meetbot_core::model::SyncOutcome {
            skipped: Vec::new(),
            at: Utc::now(),
            events: 0,
            error: Some(e.reason()),
        });
        store.put_connection(t, &conn).await?;
        Ok(())
    }

    /// Makes sure the connection has a live push channel: creates it, or renews it when due
    /// (a Graph subscription is renewed in place; a Google channel is replaced and the old stopped).
    pub async fn ensure_push(
        &self,
        t: &TenantId,
        connection: &str,
        force_new: bool,
    ) -> Result<PushOutcome, SyncError> {
        let store = self.tenants.store();
        let conn = store
            .get_connection(t, connection)
            .await?
            .ok_or_else(|| SyncError::NoConnection(connection.into()))?;
        let now = Utc::now();
        let current = conn
            .push
            .as_ref()
            .is_some_and(|p| p.expires_at > now + self.s.renew_before);
        let enabled = match conn.provider {
            CalendarProvider::Microsoft => {
                self.s.notification_url.is_some() && self.s.lifecycle_url.is_some()
            }
            CalendarProvider::Google => {
                self.google.is_some() && self.s.google_notification_url.is_some()
            }
            CalendarProvider::Ics => false,
        };
        if !enabled {
            return Ok(PushOutcome::Disabled);
        }
        if current && !force_new {
            return Ok(PushOutcome::Current);
        }
        let vault = self.tenants.vault(t).await?;
        let token = self.token(t, &conn, false).await?;
        // A refresh rewrote the stored connection: continue from that version.
        let mut conn = store
            .get_connection(t, connection)
            .await?
            .ok_or_else(|| SyncError::NoConnection(connection.into()))?;
        let expires = now + self.s.push_lifetime;
        let old = conn.push.clone();
        let outcome = match (conn.provider, &self.google) {
            (CalendarProvider::Google, Some(google)) => {
                let address = self.s.google_notification_url.clone().unwrap_or_default();
                let secret = new_secret()?;
                let id = uuid::Uuid::new_v4().to_string();
                let ch = google
                    .watch(&token, &id, &address, &secret, expires)
                    .await?;
                self.install(
                    t,
                    &mut conn,
                    &vault,
                    ch.id,
                    ch.expires_at,
                    &secret,
                    Some(ch.resource_id),
                )
                .await?;
                if let Some(p) = &old {
                    self.index.write().await.remove(&p.id);
                    if let Some(r) = &p.resource_id
                        && let Err(e) = google.stop(&token, &p.id, r).await
                    {
                        tracing::warn!(tenant = %t, error = %e, "old Google channel not stopped; it expires by itself");
                    }
                }
                if old.is_some() && !force_new {
                    PushOutcome::Renewed
                } else {
                    PushOutcome::Created
                }
            }
            _ => match old {
                Some(p) if !force_new && p.expires_at > now => {
                    let sub = self
                        .graph
                        .renew_subscription(&token, &p.id, expires)
                        .await?;
                    conn.push = Some(PushChannel {
                        expires_at: sub.expires_at,
                        ..p
                    });
                    PushOutcome::Renewed
                }
                old => {
                    if let Some(p) = old {
                        self.index.write().await.remove(&p.id);
                        let _ = self.graph.delete_subscription(&token, &p.id).await;
                    }
                    let (url, lifecycle) = (
                        self.s.notification_url.clone().unwrap_or_default(),
                        self.s.lifecycle_url.clone().unwrap_or_default(),
                    );
                    let secret = new_secret()?;
                    let sub = self
                        .graph
                        .create_subscription(&token, &url, &lifecycle, &secret, expires)
                        .await?;
                    self.install(t, &mut conn, &vault, sub.id, sub.expires_at, &secret, None)
                        .await?;
                    PushOutcome::Created
                }
            },
        };
        conn.updated_at = now;
        store.put_connection(t, &conn).await?;
        Ok(outcome)
    }

    /// Records a new push channel on the connection: its secret sealed, its id indexed for the webhook.
    #[allow(clippy::too_many_arguments)]
    async fn install(
        &self,
        t: &TenantId,
        conn: &mut CalendarConnection,
        vault: &TenantVault,
        id: String,
        expires_at: chrono::DateTime<Utc>,
        secret: &str,
        resource_id: Option<String>,
    ) -> Result<(), SyncError> {
        let client_state =
            vault.seal::<CalendarConnection>(&conn.id, "push_client_state", secret.as_bytes())?;
        self.index
            .write()
            .await
            .insert(id.clone(), (t.clone(), conn.id.clone()));
        conn.push = Some(PushChannel {
            id,
            expires_at,
            client_state,
            resource_id,
        });
        Ok(())
    }

    /// Stops the connection's push channel (on disconnect).
    pub async fn stop_push(&self, t: &TenantId, connection: &str) -> Result<(), SyncError> {
        let store = self.tenants.store();
        let mut conn = store
            .get_connection(t, connection)
            .await?
            .ok_or_else(|| SyncError::NoConnection(connection.into()))?;
        let Some(p) = conn.push.take() else {
            return Ok(());
        };
        let token = self.token(t, &conn, false).await?;
        let mut conn = store
            .get_connection(t, connection)
            .await?
            .ok_or_else(|| SyncError::NoConnection(connection.into()))?;
        conn.push = None;
        self.index.write().await.remove(&p.id);
        match (&p.resource_id, &self.google) {
            (Some(r), Some(g)) => g.stop(&token, &p.id, r).await?,
            _ => self.graph.delete_subscription(&token, &p.id).await?,
        }
        conn.updated_at = Utc::now();
        store.put_connection(t, &conn).await?;
        Ok(())
    }

    /// Handles one trigger from the webhook.
    pub async fn handle(&self, trigger: Trigger) {
        let (t, c, what) = match &trigger {
            Trigger::Sync { tenant, connection } => (tenant, connection, "sync"),
            Trigger::Renew { tenant, connection } => (tenant, connection, "renew"),
            Trigger::Resubscribe { tenant, connection } => (tenant, connection, "resubscribe"),
        };
        let result = match &trigger {
            Trigger::Sync { .. } => self.sync(t, c).await.map(|_| ()),
            Trigger::Renew { .. } => self.ensure_push(t, c, false).await.map(|_| ()),
            Trigger::Resubscribe { .. } => self.ensure_push(t, c, true).await.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(tenant = %t, action = what, error = %e, "calendar trigger failed");
        }
    }

    /// One polling pass: every active Microsoft and Google connection gets its push channel
    /// checked, and those without a live one are synced (the fallback when push is
    /// unavailable); ICS feeds, which have no push, are synced every pass. ICS rounds run
    /// beside the others, one tenant's feeds one after another, at most `ics_concurrency`
    /// at once: a slow feed holds its own tenant's next feed, not the pass. The pass ends
    /// when every round has.
    pub async fn poll(&self) -> Result<u64, SyncError> {
        let mut pushed = Vec::new();
        let mut feeds = Vec::new();
        for t in self.tenants.store().list_tenants().await? {
            if t.status != TenantStatus::Active {
                continue;
            }
            // One tenant's failure (its database unreachable, erased meanwhile) does not end
            // the pass for the others.
            let conns = match self.tenants.store().list_connections(&t.id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(tenant = %t.id, error = %e, "calendar connections not listed; next tenant");
                    continue;
                }
            };
            let mut ics = Vec::new();
            for c in conns {
                let syncable = match c.provider {
                    CalendarProvider::Microsoft => true,
                    CalendarProvider::Google => self.google.is_some(),
                    CalendarProvider::Ics => self.ics.is_some(),
                };
                if !syncable || c.status != ConnectionStatus::Active {
                    continue;
                }
                if c.provider == CalendarProvider::Ics {
                    ics.push(c.id);
                } else {
                    pushed.push((t.id.clone(), c));
                }
            }
            if !ics.is_empty() {
                feeds.push((t.id, ics));
            }
        }
        let feeds = futures::future::join_all(feeds.into_iter().map(|(t, ics)| async move {
            let mut synced = 0;
            for c in ics {
                if matches!(self.sync(&t, &c).await, Ok(Some(_))) {
                    synced += 1;
                }
            }
            synced
        }));
        let pushed = async {
            let mut synced = 0;
            for (t, c) in pushed {
                // `ensure_push` either leaves a live channel or leaves the stored one as listed.
                let live_push = match self.ensure_push(&t, &c.id, false).await {
                    Ok(PushOutcome::Current | PushOutcome::Created | PushOutcome::Renewed) => true,
                    Ok(PushOutcome::Disabled) => {
                        c.push.as_ref().is_some_and(|p| p.expires_at > Utc::now())
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %t, error = %e, "push channel unavailable; polling");
                        c.push.as_ref().is_some_and(|p| p.expires_at > Utc::now())
                    }
                };
                if (!live_push
                    || c.sync_cursor.is_none()
                    || crate::sync::continues_a_cut_round(c.sync_cursor.as_deref()))
                    && matches!(self.sync(&t, &c.id).await, Ok(Some(_)))
                {
                    synced += 1;
                }
            }
            synced
        };
        let (feeds, pushed) = tokio::join!(feeds, pushed);
        Ok(feeds.into_iter().sum::<u64>() + pushed)
    }

    /// Runs until `shutdown`: webhook triggers as they come, a poll every `poll_every`.
    pub async fn run(
        &self,
        mut triggers: mpsc::Receiver<Trigger>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        type Work<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.s.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A pass runs beside the triggers (one at a time, in order), so a slow feed in the
        // pass does not hold push notifications; the next pass starts after this one ends.
        let mut pass: Option<Work<'_, Result<u64, SyncError>>> = None;
        let mut trigger: Option<Work<'_, ()>> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(t) = triggers.recv(), if trigger.is_none() => {
                    trigger = Some(Box::pin(self.handle(t)));
                }
                () = async { trigger.as_mut().expect("guarded").await }, if trigger.is_some() => {
                    trigger = None;
                }
                r = async { pass.as_mut().expect("guarded").await }, if pass.is_some() => {
                    pass = None;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "calendar poll failed");
                    }
                }
                _ = tick.tick(), if pass.is_none() => pass = Some(Box::pin(self.poll())),
            }
        }
        // Work under way is finished, not cut in the middle of a round.
        let (pass, trigger) = (
            async {
                if let Some(p) = pass
                    && let Err(e) = p.await
                {
                    tracing::warn!(error = %e, "calendar poll failed");
                }
            },
            async {
                if let Some(t) = trigger {
                    t.await
                }
            },
        );
        tokio::join!(pass, trigger);
    }
}

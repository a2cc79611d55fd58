//! The `Store` seam: typed repositories for everything meetbot keeps, isolated per tenant.
//!
//! * [`Store`] is what services use. It speaks in domain records (`meetbot_core::model`), takes
//!   the tenant on every tenant-scoped call, and routes each call to that tenant's own database.
//!   Sensitive fields arrive already sealed (see [`vault`]); the store never sees their plaintext.
//! * Below it, an [`engine::Engine`] stores documents: [`MongoEngine`] (one database per tenant)
//!   and [`SqliteEngine`] (one file per tenant). Both run the same conformance suite
//!   (`tests/tests/store_conformance.rs`).
//! * [`vault::Tenants`] creates, rotates and erases tenants and their keys and seals/opens fields.

pub mod audit;
pub mod browser;
pub mod engine;
pub mod erase;
mod mongo;
pub mod retention;
mod specs;
mod sqlite;
mod typed;
pub mod vault;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::config::{StoreConfig, StoreKind};
use meetbot_core::model::*;
use std::sync::Arc;
use std::time::Duration;

pub use mongo::MongoEngine;
pub use specs::{CONTROL_COLLECTIONS, TENANT_COLLECTIONS};
pub use sqlite::SqliteEngine;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach {server}: {detail}")]
    Unavailable { server: String, detail: String },
    #[error(
        "write conflict in {collection}: the record changed meanwhile or its unique key is taken"
    )]
    Conflict { collection: String },
    #[error("tenant {0} does not exist or has been erased")]
    UnknownTenant(TenantId),
    #[error("stored {collection} record {id} cannot be read: {detail}")]
    Corrupt {
        collection: String,
        id: String,
        detail: String,
    },
    #[error("{0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A record with the version the store holds, for compare-and-set updates.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// What erasing a tenant removed.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantErasure {
    pub counts: Vec<(String, u64)>,
    pub keys_destroyed: Vec<WrappedKey>,
}

/// Selects bot jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub state: Option<&'static str>,
    pub meeting_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub join_before: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

impl JobFilter {
    /// Every job of meeting `meeting_id`.
    pub fn of_meeting(meeting_id: &str) -> JobFilter {
        JobFilter {
            meeting_id: Some(meeting_id.to_string()),
            ..Default::default()
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Which server or directory this store talks to (no credentials).
    fn describe(&self) -> String;
    async fn ping(&self) -> Result<()>;

    // ---- control database: registry, wrapped keys, leases, deletion log ----
    /// Registers a tenant with its first wrapped data key and creates its database and indexes.
    async fn create_tenant(&self, tenant: &Tenant, key: &WrappedKey) -> Result<()>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    /// Stores a new data-key version and makes it the tenant's current one.
    async fn add_key_version(&self, key: &WrappedKey) -> Result<()>;
    async fn wrapped_keys(&self, id: &TenantId) -> Result<Vec<WrappedKey>>;
    /// Stores the tenant's blind-index key (a version that is never current and never retired);
    /// `Conflict` when it exists already.
    async fn add_index_key(&self, key: &WrappedKey) -> Result<()>;
    /// Destroys wrapped key versions below `keep_from`; returns what was destroyed.
    async fn destroy_key_versions_below(
        &self,
        id: &TenantId,
        keep_from: u32,
    ) -> Result<Vec<WrappedKey>>;
    /// Crypto-erasure: destroys every wrapped key, drops the tenant database, marks the tenant erased.
    async fn erase_tenant(&self, id: &TenantId) -> Result<TenantErasure>;
    async fn record_deletion(&self, receipt: &DeletionReceipt) -> Result<()>;
    async fn deletion_receipts(&self, tenant: Option<&TenantId>) -> Result<Vec<DeletionReceipt>>;
    /// Takes or renews the named lease for `holder` if it is free, expired or already theirs.
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// Who holds the named lease now (`None`: free, released or expired).
    async fn lease_holder(&self, name: &str) -> Result<Option<String>>;

    // ---- tenant databases ----
    async fn put_connection(&self, t: &TenantId, c: &CalendarConnection) -> Result<()>;
    async fn get_connection(&self, t: &TenantId, id: &str) -> Result<Option<CalendarConnection>>;
    async fn list_connections(&self, t: &TenantId) -> Result<Vec<CalendarConnection>>;
    async fn delete_connection(&self, t: &TenantId, id: &str) -> Result<bool>;

    async fn put_meeting(&self, t: &TenantId, m: &Meeting) -> Result<()>;
    async fn get_meeting(&self, t: &TenantId, id: &str) -> Result<Option<Meeting>>;
    /// Meetings starting in `[from, to)`, by start time.
    async fn list_meetings(
        &self,
        t: &TenantId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Meeting>>;
    async fn delete_meeting(&self, t: &TenantId, id: &str) -> Result<bool>;
    /// Every copy of one meeting (`Meeting::meeting_ref`) in the tenant's calendars.
    async fn meetings_with_ref(&self, t: &TenantId, meeting_ref: &str) -> Result<Vec<Meeting>>;
    /// Meetings whose `updated_at` is at or after `since` (all when `None`), oldest change first.
    async fn meetings_updated_since(
        &self,
        t: &TenantId,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Meeting>>;

    /// Inserts a job; `Conflict` if its id or idempotency key exists already.
    async fn insert_bot_job(&self, t: &TenantId, job: &BotJob) -> Result<u64>;
    async fn get_bot_job(&self, t: &TenantId, id: &str) -> Result<Option<Versioned<BotJob>>>;
    /// Replaces the job if the store still holds `expected_version`; `Conflict` otherwise.
    async fn update_bot_job(
        &self,
        t: &TenantId,
        job: &BotJob,
        expected_version: u64,
    ) -> Result<u64>;
    async fn find_bot_jobs(&self, t: &TenantId, f: &JobFilter) -> Result<Vec<Versioned<BotJob>>>;
    /// Removes every bot job of a meeting; returns how many.
    async fn delete_bot_jobs_of(&self, t: &TenantId, meeting_id: &str) -> Result<u64>;

    async fn put_transcript(&self, t: &TenantId, tr: &Transcript) -> Result<()>;
    async fn get_transcript(&self, t: &TenantId, id: &str) -> Result<Option<Transcript>>;
    async fn transcript_for_meeting(
        &self,
        t: &TenantId,
        meeting_id: &str,
    ) -> Result<Option<Transcript>>;
    async fn list_transcripts(&self, t: &TenantId) -> Result<Vec<Transcript>>;
    async fn delete_transcript(&self, t: &TenantId, id: &str) -> Result<bool>;

    /// Stores one utterance's part of a running stream (idempotent by id).
    async fn put_transcript_part(&self, t: &TenantId, p: &TranscriptPart) -> Result<()>;
    /// The parts of a meeting's running streams (of one job, or of all), oldest first.
    async fn transcript_parts(
        &self,
        t: &TenantId,
        meeting_id: &str,
        job_id: Option<&str>,
    ) -> Result<Vec<TranscriptPart>>;
    /// Every part of the tenant (key rotation).
    async fn all_transcript_parts(&self, t: &TenantId) -> Result<Vec<TranscriptPart>>;
    /// Removes the parts of a meeting (of one job, or of all); returns how many.
    async fn delete_transcript_parts(
        &self,
        t: &TenantId,
        meeting_id: &str,
        job_id: Option<&str>,
    ) -> Result<u64>;

    async fn put_summary(&self, t: &TenantId, s: &Summary) -> Result<()>;
    async fn summary_for_meeting(&self, t: &TenantId, meeting_id: &str) -> Result<Option<Summary>>;
    async fn list_summaries(&self, t: &TenantId) -> Result<Vec<Summary>>;
    async fn delete_summary(&self, t: &TenantId, id: &str) -> Result<bool>;

    /// Adds `d` to the outbox; `Ok(false)` when a delivery with its idempotency key exists.
    async fn insert_delivery(&self, t: &TenantId, d: &Delivery) -> Result<bool>;
    async fn get_delivery(&self, t: &TenantId, id: &str) -> Result<Option<Versioned<Delivery>>>;
    /// Compare-and-set on the delivery's version.
    async fn update_delivery(
        &self,
        t: &TenantId,
        d: &Delivery,
        expected_version: u64,
    ) -> Result<u64>;
    /// Deliveries in `state` ("pending" or "sending") whose `next_at` is at or before `now`,
    /// oldest first.
    async fn due_deliveries(
        &self,
        t: &TenantId,
        state: &'static str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Versioned<Delivery>>>;
    /// Removes every delivery of a meeting; returns how many.
    async fn delete_deliveries_of(&self, t: &TenantId, meeting_id: &str) -> Result<u64>;
    /// The outbox (of one meeting, or all of it), by `next_at`.
    async fn list_deliveries(
        &self,
        t: &TenantId,
        meeting_id: Option<&str>,
    ) -> Result<Vec<Versioned<Delivery>>>;

    async fn put_tenant_settings(&self, t: &TenantId, s: &TenantSettings) -> Result<()>;
    async fn get_tenant_settings(&self, t: &TenantId) -> Result<Option<TenantSettings>>;

    async fn put_user_settings(&self, t: &TenantId, s: &UserSettings) -> Result<()>;
    async fn get_user_settings(&self, t: &TenantId, user_id: &str) -> Result<Option<UserSettings>>;
    async fn list_user_settings(&self, t: &TenantId) -> Result<Vec<UserSettings>>;

    async fn put_oauth_pending(&self, t: &TenantId, p: &OAuthPending) -> Result<()>;
    /// Removes and returns a pending authorization: at most one caller gets it, and never once
    /// it has expired.
    async fn take_oauth_pending(&self, t: &TenantId, id: &str) -> Result<Option<OAuthPending>>;

    /// Adds a user; `Conflict` if the id or the email hash is taken.
    async fn insert_user(&self, t: &TenantId, u: &User) -> Result<()>;
    /// Replaces a user that exists (`Ok(false)` if it does not).
    async fn update_user(&self, t: &TenantId, u: &User) -> Result<bool>;
    /// A user with the version the store holds, for [`Store::update_user_at`].
    async fn get_user_versioned(&self, t: &TenantId, id: &str) -> Result<Option<Versioned<User>>>;
    /// Replaces the user only if the store still holds `expected_version` (compare-and-set:
    /// of two writers that read the same version, exactly one succeeds); `Conflict` otherwise,
    /// also when the user no longer exists. Returns the new version.
    async fn update_user_at(&self, t: &TenantId, u: &User, expected_version: u64) -> Result<u64>;
    async fn get_user(&self, t: &TenantId, id: &str) -> Result<Option<User>>;
    async fn user_by_email_hash(&self, t: &TenantId, email_hash: &str) -> Result<Option<User>>;
    async fn list_users(&self, t: &TenantId) -> Result<Vec<User>>;
    /// Removes the user and every session of theirs.
    async fn delete_user(&self, t: &TenantId, id: &str) -> Result<bool>;

    /// Stores (or refreshes) a session; it is hidden from reads once `expires_at` passes.
    async fn put_session(&self, t: &TenantId, s: &Session) -> Result<()>;
    async fn get_session(&self, t: &TenantId, id: &str) -> Result<Option<Session>>;
    async fn delete_session(&self, t: &TenantId, id: &str) -> Result<bool>;
    /// Replaces a session only while it still exists (the idle-clock refresh): `Ok(false)` once
    /// it has been deleted (signed out), so a refresh racing a sign-out never brings it back.
    async fn refresh_session(&self, t: &TenantId, s: &Session) -> Result<bool>;
    /// Ends every session of a user (role change, removal); returns how many.
    async fn delete_user_sessions(&self, t: &TenantId, user_id: &str) -> Result<u64>;

    /// Stores a key whole (creation; tests). Changes to a key in use go through
    /// [`Store::update_api_key_at`], so a stale copy cannot undo a revocation.
    async fn put_api_key(&self, t: &TenantId, k: &ApiKey) -> Result<()>;
    async fn get_api_key(&self, t: &TenantId, id: &str) -> Result<Option<ApiKey>>;
    /// An API key with the version the store holds, for [`Store::update_api_key_at`].
    async fn get_api_key_versioned(
        &self,
        t: &TenantId,
        id: &str,
    ) -> Result<Option<Versioned<ApiKey>>>;
    /// Replaces the key only if the store still holds `expected_version` (compare-and-set: a
    /// use recorded from a copy read before a revocation fails instead of un-revoking it);
    /// `Conflict` otherwise, also when the key does not exist. Returns the new version.
    async fn update_api_key_at(
        &self,
        t: &TenantId,
        k: &ApiKey,
        expected_version: u64,
    ) -> Result<u64>;
    async fn list_api_keys(&self, t: &TenantId) -> Result<Vec<ApiKey>>;

    async fn put_signin_pending(&self, t: &TenantId, p: &SignInPending) -> Result<()>;
    /// Removes and returns a pending sign-in: at most one caller gets it, never once expired.
    async fn take_signin_pending(&self, t: &TenantId, id: &str) -> Result<Option<SignInPending>>;

    /// Appends `e` to the tenant's audit chain: numbered after the last entry, linked to its
    /// hash (concurrent appends each get their own number); the chain's head is recorded in the
    /// control database. Returns the entry as stored.
    /// Stores an export (hidden and purged once `expires_at` passes).
    async fn put_export(&self, t: &TenantId, e: &Export) -> Result<()>;
    async fn get_export(&self, t: &TenantId, id: &str) -> Result<Option<Export>>;

    async fn append_audit(&self, t: &TenantId, e: &AuditEvent) -> Result<AuditEvent>;
    /// Audit events, in chain order.
    async fn list_audit(&self, t: &TenantId) -> Result<Vec<AuditEvent>>;
    /// The audit chain's records as stored (record id, body), in chain order, undecoded: for
    /// checking the chain even where an entry was damaged.
    async fn audit_records(&self, t: &TenantId) -> Result<Vec<(String, serde_json::Value)>>;
    /// The newest entry the control database knows of the tenant's chain.
    async fn audit_head(&self, t: &TenantId) -> Result<Option<AuditHead>>;

    /// Deletes records whose retention has expired; returns counts per collection.
    async fn purge_expired(&self, t: &TenantId, now: DateTime<Utc>) -> Result<Vec<(String, u64)>>;
}

/// Opens the configured store, checks the server answers and creates the control collections.
pub async fn open(cfg: &StoreConfig) -> Result<Arc<dyn Store>> {
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    match cfg.kind {
        StoreKind::Mongodb => {
            let e = MongoEngine::connect(&cfg.mongodb_uri, &cfg.db_prefix, timeout).await?;
            typed::init(&e).await?;
            Ok(Arc::new(e))
        }
        StoreKind::Embedded => {
            let e = SqliteEngine::open(&cfg.embedded_dir)?;
            typed::init(&e).await?;
            Ok(Arc::new(e))
        }
    }
}

/// Opens an engine as a store (for tests and tools that need the concrete engine too).
pub async fn init_engine<E: engine::Engine>(e: E) -> Result<Arc<E>> {
    typed::init(&e).await?;
    Ok(Arc::new(e))
}

//! The document engines below the [`crate::Store`] seam.
//!
//! An engine stores opaque JSON bodies plus a few index fields per record, in named collections,
//! inside a [`Scope`]: the control database or one tenant's own database. It knows nothing of
//! meetings or transcripts; the typed repository in `typed.rs` does, once, for every engine.
//! Every engine passes the same conformance suite through the typed `Store`.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;

/// Where a record lives. A tenant scope is a database of its own: no query can reach across.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Control,
    Tenant(TenantId),
}

/// A value the engine can index, filter and sort on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IndexVal {
    Str(String),
    Int(i64),
}

impl From<&str> for IndexVal {
    fn from(s: &str) -> Self {
        IndexVal::Str(s.to_string())
    }
}
impl From<String> for IndexVal {
    fn from(s: String) -> Self {
        IndexVal::Str(s)
    }
}
impl From<i64> for IndexVal {
    fn from(v: i64) -> Self {
        IndexVal::Int(v)
    }
}
impl From<DateTime<Utc>> for IndexVal {
    fn from(t: DateTime<Utc>) -> Self {
        IndexVal::Int(t.timestamp_millis())
    }
}

/// One stored record.
#[derive(Clone, Debug, PartialEq)]
pub struct RawRecord {
    pub id: String,
    /// Bumped by the engine on every write; used for compare-and-set.
    pub version: u64,
    pub index: Vec<(&'static str, IndexVal)>,
    /// Retention: hidden from reads from this instant, purged soon after.
    pub expires_at: Option<DateTime<Utc>>,
    pub body: serde_json::Value,
}

/// Precondition of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Insert or overwrite.
    Any,
    /// Insert only; a record with this id (or these unique fields) must not exist.
    Absent,
    /// Overwrite only the record at exactly this version.
    Version(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A conjunction of equalities, at most one range, an optional order and limit.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub eq: Vec<(&'static str, IndexVal)>,
    /// `field >= lo` and `field < hi`.
    pub range: Option<(&'static str, Option<IndexVal>, Option<IndexVal>)>,
    pub order: Option<(&'static str, Order)>,
    pub limit: Option<u32>,
}

/// A collection and the indexes it needs; created idempotently with its scope.
#[derive(Debug)]
pub struct CollectionSpec {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub unique: &'static [&'static [&'static str]],
    /// Records carry an expiry: MongoDB gets a TTL index, the embedded store a sweeper.
    pub ttl: bool,
}

impl CollectionSpec {
    pub fn has_field(&self, f: &str) -> bool {
        self.fields.contains(&f)
    }
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Which server or directory, for error messages and logs (never credentials).
    fn describe(&self) -> String;

    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates the scope's collections and indexes if they do not exist yet.
    async fn ensure_scope(
        &self,
        scope: &Scope,
        specs: &[&'static CollectionSpec],
    ) -> Result<(), StoreError>;

    /// Removes a tenant's whole database; returns how many records each collection held.
    async fn drop_scope(
        &self,
        tenant: &TenantId,
        specs: &[&'static CollectionSpec],
    ) -> Result<Vec<(String, u64)>, StoreError>;

    async fn get(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        id: &str,
    ) -> Result<Option<RawRecord>, StoreError>;

    async fn find(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        q: &Query,
    ) -> Result<Vec<RawRecord>, StoreError>;

    /// Writes `rec` (its `version` is ignored) under `expect`; returns the new version.
    async fn put(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        rec: RawRecord,
        expect: Expect,
    ) -> Result<u64, StoreError>;

    async fn delete(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        id: &str,
    ) -> Result<bool, StoreError>;

    /// Deletes records whose expiry has passed; returns how many.
    async fn purge_expired(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

//! The typed repository, written once over any [`Engine`].

use crate::engine::{CollectionSpec, Engine, Expect, IndexVal, Order, Query, RawRecord, Scope};
use crate::specs::*;
use crate::{JobFilter, Result, Store, StoreError, TenantErasure, Versioned};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::model::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub(crate) async fn init<E: Engine>(e: &E) -> Result<()> {
    e.ensure_scope(&Scope::Control, CONTROL_COLLECTIONS).await?;
    // Tenants created by an older version get the collections added since.
    for t in Store::list_tenants(e).await? {
        if t.status == TenantStatus::Active {
            e.ensure_scope(&tenant(&t.id), TENANT_COLLECTIONS).await?;
        }
    }
    Ok(())
}

fn encode<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| StoreError::Backend(format!("cannot encode record: {e}")))
}

fn decode<T: DeserializeOwned>(spec: &CollectionSpec, raw: RawRecord) -> Result<T> {
    serde_json::from_value(raw.body).map_err(|e| StoreError::Corrupt {
        collection: spec.name.into(),
        id: raw.id,
        detail: e.to_string(),
    })
}

fn decode_versioned<T: DeserializeOwned>(
    spec: &CollectionSpec,
    raw: RawRecord,
) -> Result<Versioned<T>> {
    let version = raw.version;
    Ok(Versioned {
        value: decode(spec, raw)?,
        version,
    })
}

fn record<T: Serialize>(
    id: &str,
    index: Vec<(&'static str, IndexVal)>,
    expires_at: Option<DateTime<Utc>>,
    v: &T,
) -> Result<RawRecord> {
    Ok(RawRecord {
        id: id.to_string(),
        version: 0,
        index,
        expires_at,
        body: encode(v)?,
    })
}

/// An enum's serialised name (`"active"`, `"cancelled"`), as stored in index fields.
fn wire_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn tenant(t: &TenantId) -> Scope {
    Scope::Tenant(t.clone())
}

async fn all<E: Engine + ?Sized, T: DeserializeOwned>(
    e: &E,
    scope: &Scope,
    spec: &'static CollectionSpec,
    q: Query,
) -> Result<Vec<T>> {
    e.find(scope, spec, &q)
        .await?
        .into_iter()
        .map(|r| decode(spec, r))
        .collect()
}

/// [`all`], keeping each record's version (for compare-and-set updates).
async fn all_versioned<E: Engine + ?Sized, T: DeserializeOwned>(
    e: &E,
    scope: &Scope,
    spec: &'static CollectionSpec,
    q: Query,
) -> Result<Vec<Versioned<T>>> {
    e.find(scope, spec, &q)
        .await?
        .into_iter()
        .map(|r| decode_versioned(spec, r))
        .collect()
}

async fn one<E: Engine + ?Sized, T: DeserializeOwned>(
    e: &E,
    scope: &Scope,
    spec: &'static CollectionSpec,
    q: Query,
) -> Result<Option<T>> {
    let q = Query {
        limit: Some(1),
        ..q
    };
    Ok(all(e, scope, spec, q).await?.into_iter().next())
}

async fn by_id<E: Engine + ?Sized, T: DeserializeOwned>(
    e: &E,
    scope: &Scope,
    spec: &'static CollectionSpec,
    id: &str,
) -> Result<Option<T>> {
    e.get(scope, spec, id)
        .await?
        .map(|r| decode(spec, r))
        .transpose()
}

/// The parts of a meeting, of one job or all.
fn parts_query(meeting_id: &str, job_id: Option<&str>) -> Query {
    let mut q = eq("meeting_id", meeting_id);
    if let Some(j) = job_id {
        q.eq.push(("job_id", j.into()));
    }
    q
}

fn eq(field: &'static str, v: impl Into<IndexVal>) -> Query {
    Query {
        eq: vec![(field, v.into())],
        ..Default::default()
    }
}

fn key_id(t: &TenantId, version: u32) -> String {
    format!("{t}/v{version}")
}

/// Destroys every wrapped key of `id`, the index key included; returns them.
async fn destroy_all_keys<E: Engine>(e: &E, id: &TenantId) -> Result<Vec<WrappedKey>> {
    let keys = Store::wrapped_keys(e, id).await?;
    for k in &keys {
        e.delete(&Scope::Control, &DATA_KEYS, &key_id(id, k.version))
            .await?;
    }
    Ok(keys)
}

fn key_record(key: &WrappedKey) -> Result<RawRecord> {
    let t = &key.tenant_id;
    record(
        &key_id(t, key.version),
        vec![
            ("tenant_id", t.as_str().into()),
            ("version", i64::from(key.version).into()),
        ],
        None,
        key,
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Lease {
    holder: String,
    expires_at: DateTime<Utc>,
}

trait Guard {
    async fn require_active(&self, t: &TenantId) -> Result<()>;
    async fn advance_audit_head(&self, t: &TenantId, e: &AuditEvent) -> Result<()>;
}

impl<E: Engine> Guard for E {
    /// Writes into a tenant database are refused unless the tenant is registered and active, so
    /// no write can resurrect an erased tenant's database.
    async fn require_active(&self, t: &TenantId) -> Result<()> {
        let found: Option<Tenant> = by_id(self, &Scope::Control, &TENANTS, t.as_str()).await?;
        match found {
            Some(x) if x.status == TenantStatus::Active => Ok(()),
            _ => Err(StoreError::UnknownTenant(t.clone())),
        }
    }

    /// Moves the chain's head in the control database forward to `e` (never back).
    async fn advance_audit_head(&self, t: &TenantId, e: &AuditEvent) -> Result<()> {
        for _ in 0..100 {
            let current = self.get(&Scope::Control, &AUDIT_HEADS, t.as_str()).await?;
            let expect = match &current {
                Some(raw) => {
                    let version = raw.version;
                    let head: AuditHead = decode(&AUDIT_HEADS, raw.clone())?;
                    if head.seq >= e.seq {
                        return Ok(());
                    }
                    Expect::Version(version)
                }
                None => Expect::Absent,
            };
            let head = AuditHead {
                tenant_id: t.clone(),
                seq: e.seq,
                hash: e.hash.clone(),
            };
            let rec = record(t.as_str(), vec![], None, &head)?;
            match self.put(&Scope::Control, &AUDIT_HEADS, rec, expect).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<E: Engine> Store for E {
    fn describe(&self) -> String {
        Engine::describe(self)
    }

    async fn ping(&self) -> Result<()> {
        Engine::ping(self).await
    }

    async fn create_tenant(&self, t: &Tenant, key: &WrappedKey) -> Result<()> {
        if key.tenant_id != t.id {
            return Err(StoreError::Backend(
                "wrapped key belongs to another tenant".into(),
            ));
        }
        self.ensure_scope(&tenant(&t.id), TENANT_COLLECTIONS)
            .await?;
        let k = key_record(key)?;
        self.put(&Scope::Control, &DATA_KEYS, k, Expect::Absent)
            .await?;
        let rec = record(t.id.as_str(), vec![("status", "active".into())], None, t)?;
        self.put(&Scope::Control, &TENANTS, rec, Expect::Absent)
            .await?;
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        by_id(self, &Scope::Control, &TENANTS, id.as_str()).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        all(self, &Scope::Control, &TENANTS, Query::default()).await
    }

    async fn add_key_version(&self, key: &WrappedKey) -> Result<()> {
        let t = &key.tenant_id;
        let raw = self
            .get(&Scope::Control, &TENANTS, t.as_str())
            .await?
            .ok_or_else(|| StoreError::UnknownTenant(t.clone()))?;
        let version = raw.version;
        let mut ten: Tenant = decode(&TENANTS, raw)?;
        if ten.status != TenantStatus::Active {
            return Err(StoreError::UnknownTenant(t.clone()));
        }
        let k = key_record(key)?;
        self.put(&Scope::Control, &DATA_KEYS, k, Expect::Absent)
            .await?;
        ten.current_key_version = key.version;
        let rec = record(t.as_str(), vec![("status", "active".into())], None, &ten)?;
        self.put(&Scope::Control, &TENANTS, rec, Expect::Version(version))
            .await?;
        Ok(())
    }

    async fn add_index_key(&self, key: &WrappedKey) -> Result<()> {
        let t = &key.tenant_id;
        match Store::get_tenant(self, t).await? {
            Some(ten) if ten.status == TenantStatus::Active => {}
            _ => return Err(StoreError::UnknownTenant(t.clone())),
        }
        let k = key_record(key)?;
        self.put(&Scope::Control, &DATA_KEYS, k, Expect::Absent)
            .await?;
        // An erasure that marked the tenant while this key was written did not see it: remove it.
        match Store::get_tenant(self, t).await? {
            Some(ten) if ten.status == TenantStatus::Active => Ok(()),
            _ => {
                self.delete(&Scope::Control, &DATA_KEYS, &key_id(t, key.version))
                    .await?;
                Err(StoreError::UnknownTenant(t.clone()))
            }
        }
    }

    async fn wrapped_keys(&self, id: &TenantId) -> Result<Vec<WrappedKey>> {
        let q = Query {
            order: Some(("version", Order::Asc)),
            ..eq("tenant_id", id.as_str())
        };
        all(self, &Scope::Control, &DATA_KEYS, q).await
    }

    async fn destroy_key_versions_below(
        &self,
        id: &TenantId,
        keep_from: u32,
    ) -> Result<Vec<WrappedKey>> {
        let mut destroyed = Vec::new();
        for k in Store::wrapped_keys(self, id).await? {
            if k.version < keep_from {
                self.delete(&Scope::Control, &DATA_KEYS, &key_id(id, k.version))
                    .await?;
                destroyed.push(k);
            }
        }
        Ok(destroyed)
    }

    async fn erase_tenant(&self, id: &TenantId) -> Result<TenantErasure> {
        let raw = self
            .get(&Scope::Control, &TENANTS, id.as_str())
            .await?
            .ok_or_else(|| StoreError::UnknownTenant(id.clone()))?;
        let version = raw.version;
        let mut ten: Tenant = decode(&TENANTS, raw)?;
        if ten.status == TenantStatus::Erased {
            return Err(StoreError::UnknownTenant(id.clone()));
        }
        // Keys first: once they are gone, whatever copy of the data survives anywhere is unreadable.
        let mut keys_destroyed = destroy_all_keys(self, id).await?;
        ten.status = TenantStatus::Erased;
        ten.erased_at = Some(Utc::now());
        let rec = record(id.as_str(), vec![("status", "erased".into())], None, &ten)?;
        self.put(&Scope::Control, &TENANTS, rec, Expect::Version(version))
            .await?;
        // A key stored while the first sweep ran (a lazily made index key) is gone too.
        keys_destroyed.extend(destroy_all_keys(self, id).await?);
        let counts = self.drop_scope(id, TENANT_COLLECTIONS).await?;
        Ok(TenantErasure {
            counts,
            keys_destroyed,
        })
    }

    async fn record_deletion(&self, r: &DeletionReceipt) -> Result<()> {
        let rec = record(
            &r.id,
            vec![
                ("tenant_id", r.tenant_id.as_str().into()),
                ("erased_at", r.erased_at.into()),
            ],
            None,
            r,
        )?;
        self.put(&Scope::Control, &DELETION_LOG, rec, Expect::Absent)
            .await
            .map(|_| ())
    }

    async fn deletion_receipts(&self, t: Option<&TenantId>) -> Result<Vec<DeletionReceipt>> {
        let mut q = Query {
            order: Some(("erased_at", Order::Asc)),
            ..Default::default()
        };
        if let Some(t) = t {
            q.eq.push(("tenant_id", t.as_str().into()));
        }
        all(self, &Scope::Control, &DELETION_LOG, q).await
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = Utc::now();
        let lease = Lease {
            holder: holder.to_string(),
            expires_at: now
                + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30)),
        };
        let rec = record(name, vec![], None, &lease)?;
        let expect = match self.get(&Scope::Control, &LEASES, name).await? {
            None => Expect::Absent,
            Some(raw) => {
                let v = raw.version;
                let cur: Lease = decode(&LEASES, raw)?;
                if cur.holder != holder && cur.expires_at > now {
                    return Ok(false);
                }
                Expect::Version(v)
            }
        };
        match self.put(&Scope::Control, &LEASES, rec, expect).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn lease_holder(&self, name: &str) -> Result<Option<String>> {
        let Some(raw) = self.get(&Scope::Control, &LEASES, name).await? else {
            return Ok(None);
        };
        let cur: Lease = decode(&LEASES, raw)?;
        Ok((!cur.holder.is_empty() && cur.expires_at > Utc::now()).then_some(cur.holder))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        if let Some(raw) = self.get(&Scope::Control, &LEASES, name).await? {
            let v = raw.version;
            let cur: Lease = decode(&LEASES, raw)?;
            if cur.holder == holder {
                let expired = Lease {
                    holder: String::new(),
                    expires_at: DateTime::<Utc>::MIN_UTC,
                };
                let rec = record(name, vec![], None, &expired)?;
                match self
                    .put(&Scope::Control, &LEASES, rec, Expect::Version(v))
                    .await
                {
                    Ok(_) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn put_connection(&self, t: &TenantId, c: &CalendarConnection) -> Result<()> {
        self.require_active(t).await?;
        let status = wire_name(&c.status);
        let rec = record(
            &c.id,
            vec![
                ("user_id", c.user_id.clone().into()),
                ("status", status.into()),
            ],
            None,
            c,
        )?;
        self.put(&tenant(t), &CONNECTIONS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_connection(&self, t: &TenantId, id: &str) -> Result<Option<CalendarConnection>> {
        by_id(self, &tenant(t), &CONNECTIONS, id).await
    }

    async fn list_connections(&self, t: &TenantId) -> Result<Vec<CalendarConnection>> {
        all(self, &tenant(t), &CONNECTIONS, Query::default()).await
    }

    async fn delete_connection(&self, t: &TenantId, id: &str) -> Result<bool> {
        self.delete(&tenant(t), &CONNECTIONS, id).await
    }

    async fn put_meeting(&self, t: &TenantId, m: &Meeting) -> Result<()> {
        self.require_active(t).await?;
        let status = wire_name(&m.status);
        let rec = record(
            &m.id,
            vec![
                (
                    "connection_id",
                    m.connection_id.clone().unwrap_or_default().into(),
                ),
                ("event_instance_id", m.event_instance_id.clone().into()),
                ("starts_at", m.starts_at.into()),
                ("status", status.into()),
                ("updated_at", m.updated_at.into()),
                (
                    "meeting_ref",
                    m.meeting_ref.clone().unwrap_or_default().into(),
                ),
            ],
            None,
            m,
        )?;
        self.put(&tenant(t), &MEETINGS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_meeting(&self, t: &TenantId, id: &str) -> Result<Option<Meeting>> {
        by_id(self, &tenant(t), &MEETINGS, id).await
    }

    async fn list_meetings(
        &self,
        t: &TenantId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Meeting>> {
        let q = Query {
            range: Some(("starts_at", from.map(Into::into), to.map(Into::into))),
            order: Some(("starts_at", Order::Asc)),
            ..Default::default()
        };
        all(self, &tenant(t), &MEETINGS, q).await
    }

    async fn delete_meeting(&self, t: &TenantId, id: &str) -> Result<bool> {
        self.delete(&tenant(t), &MEETINGS, id).await
    }

    async fn meetings_with_ref(&self, t: &TenantId, meeting_ref: &str) -> Result<Vec<Meeting>> {
        if meeting_ref.is_empty() {
            return Ok(Vec::new());
        }
        all(self, &tenant(t), &MEETINGS, eq("meeting_ref", meeting_ref)).await
    }

    async fn meetings_updated_since(
        &self,
        t: &TenantId,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Meeting>> {
        let q = Query {
            range: Some(("updated_at", since.map(Into::into), None)),
            order: Some(("updated_at", Order::Asc)),
            ..Default::default()
        };
        all(self, &tenant(t), &MEETINGS, q).await
    }

    async fn insert_bot_job(&self, t: &TenantId, job: &BotJob) -> Result<u64> {
        self.require_active(t).await?;
        self.put(&tenant(t), &BOT_JOBS, job_record(job)?, Expect::Absent)
            .await
    }

    async fn get_bot_job(&self, t: &TenantId, id: &str) -> Result<Option<Versioned<BotJob>>> {
        self.get(&tenant(t), &BOT_JOBS, id)
            .await?
            .map(|r| decode_versioned(&BOT_JOBS, r))
            .transpose()
    }

    async fn update_bot_job(
        &self,
        t: &TenantId,
        job: &BotJob,
        expected_version: u64,
    ) -> Result<u64> {
        self.put(
            &tenant(t),
            &BOT_JOBS,
            job_record(job)?,
            Expect::Version(expected_version),
        )
        .await
    }

    async fn find_bot_jobs(&self, t: &TenantId, f: &JobFilter) -> Result<Vec<Versioned<BotJob>>> {
        let mut q = Query {
            order: Some(("join_at", Order::Asc)),
            limit: f.limit,
            ..Default::default()
        };
        if let Some(s) = f.state {
            q.eq.push(("state", s.into()));
        }
        if let Some(m) = &f.meeting_id {
            q.eq.push(("meeting_id", m.clone().into()));
        }
        if let Some(k) = &f.idempotency_key {
            q.eq.push(("idempotency_key", k.clone().into()));
        }
        if let Some(b) = f.join_before {
            q.range = Some(("join_at", None, Some(b.into())));
        }
        all_versioned(self, &tenant(t), &BOT_JOBS, q).await
    }

    async fn delete_bot_jobs_of(&self, t: &TenantId, meeting_id: &str) -> Result<u64> {
        delete_where(self, t, &BOT_JOBS, eq("meeting_id", meeting_id)).await
    }

    async fn delete_deliveries_of(&self, t: &TenantId, meeting_id: &str) -> Result<u64> {
        delete_where(self, t, &DELIVERIES, eq("meeting_id", meeting_id)).await
    }

    async fn insert_delivery(&self, t: &TenantId, d: &Delivery) -> Result<bool> {
        self.require_active(t).await?;
        match self
            .put(&tenant(t), &DELIVERIES, delivery_record(d)?, Expect::Absent)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_delivery(&self, t: &TenantId, id: &str) -> Result<Option<Versioned<Delivery>>> {
        self.get(&tenant(t), &DELIVERIES, id)
            .await?
            .map(|r| decode_versioned(&DELIVERIES, r))
            .transpose()
    }

    async fn update_delivery(
        &self,
        t: &TenantId,
        d: &Delivery,
        expected_version: u64,
    ) -> Result<u64> {
        self.put(
            &tenant(t),
            &DELIVERIES,
            delivery_record(d)?,
            Expect::Version(expected_version),
        )
        .await
    }

    async fn due_deliveries(
        &self,
        t: &TenantId,
        state: &'static str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Versioned<Delivery>>> {
        let q = Query {
            eq: vec![("state", state.into())],
            // The range is half-open: "at or before now" ends a millisecond later.
            range: Some((
                "next_at",
                None,
                Some((now + chrono::Duration::milliseconds(1)).into()),
            )),
            order: Some(("next_at", Order::Asc)),
            limit: Some(limit),
        };
        all_versioned(self, &tenant(t), &DELIVERIES, q).await
    }

    async fn list_deliveries(
        &self,
        t: &TenantId,
        meeting_id: Option<&str>,
    ) -> Result<Vec<Versioned<Delivery>>> {
        let q = Query {
            eq: meeting_id
                .map(|m| vec![("meeting_id", m.into())])
                .unwrap_or_default(),
            order: Some(("next_at", Order::Asc)),
            ..Default::default()
        };
        all_versioned(self, &tenant(t), &DELIVERIES, q).await
    }

    async fn put_transcript(&self, t: &TenantId, tr: &Transcript) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(
            &tr.id,
            vec![("meeting_id", tr.meeting_id.clone().into())],
            tr.expires_at,
            tr,
        )?;
        self.put(&tenant(t), &TRANSCRIPTS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_transcript(&self, t: &TenantId, id: &str) -> Result<Option<Transcript>> {
        by_id(self, &tenant(t), &TRANSCRIPTS, id).await
    }

    async fn transcript_for_meeting(
        &self,
        t: &TenantId,
        meeting_id: &str,
    ) -> Result<Option<Transcript>> {
        one(self, &tenant(t), &TRANSCRIPTS, eq("meeting_id", meeting_id)).await
    }

    async fn list_transcripts(&self, t: &TenantId) -> Result<Vec<Transcript>> {
        all(self, &tenant(t), &TRANSCRIPTS, Query::default()).await
    }

    async fn delete_transcript(&self, t: &TenantId, id: &str) -> Result<bool> {
        self.delete(&tenant(t), &TRANSCRIPTS, id).await
    }

    async fn put_transcript_part(&self, t: &TenantId, p: &TranscriptPart) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(
            &p.id,
            vec![
                ("meeting_id", p.meeting_id.clone().into()),
                ("job_id", p.job_id.clone().into()),
            ],
            p.expires_at,
            p,
        )?;
        self.put(&tenant(t), &TRANSCRIPT_PARTS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn transcript_parts(
        &self,
        t: &TenantId,
        meeting_id: &str,
        job_id: Option<&str>,
    ) -> Result<Vec<TranscriptPart>> {
        let mut parts: Vec<TranscriptPart> = all(
            self,
            &tenant(t),
            &TRANSCRIPT_PARTS,
            parts_query(meeting_id, job_id),
        )
        .await?;
        parts.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(parts)
    }

    async fn all_transcript_parts(&self, t: &TenantId) -> Result<Vec<TranscriptPart>> {
        all(self, &tenant(t), &TRANSCRIPT_PARTS, Query::default()).await
    }

    async fn delete_transcript_parts(
        &self,
        t: &TenantId,
        meeting_id: &str,
        job_id: Option<&str>,
    ) -> Result<u64> {
        delete_where(self, t, &TRANSCRIPT_PARTS, parts_query(meeting_id, job_id)).await
    }

    async fn put_summary(&self, t: &TenantId, s: &Summary) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(
            &s.id,
            vec![("meeting_id", s.meeting_id.clone().into())],
            s.expires_at,
            s,
        )?;
        self.put(&tenant(t), &SUMMARIES, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn summary_for_meeting(&self, t: &TenantId, meeting_id: &str) -> Result<Option<Summary>> {
        one(self, &tenant(t), &SUMMARIES, eq("meeting_id", meeting_id)).await
    }

    async fn list_summaries(&self, t: &TenantId) -> Result<Vec<Summary>> {
        all(self, &tenant(t), &SUMMARIES, Query::default()).await
    }

    async fn delete_summary(&self, t: &TenantId, id: &str) -> Result<bool> {
        self.delete(&tenant(t), &SUMMARIES, id).await
    }

    async fn put_tenant_settings(&self, t: &TenantId, s: &TenantSettings) -> Result<()> {
        self.require_active(t).await?;
        let rec = record("settings", vec![], None, s)?;
        self.put(&tenant(t), &TENANT_SETTINGS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_tenant_settings(&self, t: &TenantId) -> Result<Option<TenantSettings>> {
        by_id(self, &tenant(t), &TENANT_SETTINGS, "settings").await
    }

    async fn put_user_settings(&self, t: &TenantId, s: &UserSettings) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(&s.user_id, vec![], None, s)?;
        self.put(&tenant(t), &USER_SETTINGS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_user_settings(&self, t: &TenantId, user_id: &str) -> Result<Option<UserSettings>> {
        by_id(self, &tenant(t), &USER_SETTINGS, user_id).await
    }

    async fn list_user_settings(&self, t: &TenantId) -> Result<Vec<UserSettings>> {
        all(self, &tenant(t), &USER_SETTINGS, Query::default()).await
    }

    async fn put_oauth_pending(&self, t: &TenantId, p: &OAuthPending) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(&p.id, vec![], Some(p.expires_at), p)?;
        self.put(&tenant(t), &OAUTH_PENDING, rec, Expect::Absent)
            .await
            .map(|_| ())
    }

    async fn take_oauth_pending(&self, t: &TenantId, id: &str) -> Result<Option<OAuthPending>> {
        let Some(p) = by_id::<_, OAuthPending>(self, &tenant(t), &OAUTH_PENDING, id).await? else {
            return Ok(None);
        };
        // Only the caller whose delete removed the record may use it.
        if !self.delete(&tenant(t), &OAUTH_PENDING, id).await? || p.expires_at <= Utc::now() {
            return Ok(None);
        }
        Ok(Some(p))
    }

    async fn insert_user(&self, t: &TenantId, u: &User) -> Result<()> {
        self.require_active(t).await?;
        self.put(&tenant(t), &USERS, user_record(u)?, Expect::Absent)
            .await
            .map(|_| ())
    }

    async fn update_user(&self, t: &TenantId, u: &User) -> Result<bool> {
        self.require_active(t).await?;
        let Some(raw) = self.get(&tenant(t), &USERS, &u.id).await? else {
            return Ok(false);
        };
        self.put(
            &tenant(t),
            &USERS,
            user_record(u)?,
            Expect::Version(raw.version),
        )
        .await
        .map(|_| true)
    }

    async fn get_user_versioned(&self, t: &TenantId, id: &str) -> Result<Option<Versioned<User>>> {
        self.get(&tenant(t), &USERS, id)
            .await?
            .map(|r| decode_versioned(&USERS, r))
            .transpose()
    }

    async fn update_user_at(&self, t: &TenantId, u: &User, expected_version: u64) -> Result<u64> {
        self.require_active(t).await?;
        self.put(
            &tenant(t),
            &USERS,
            user_record(u)?,
            Expect::Version(expected_version),
        )
        .await
    }

    async fn get_user(&self, t: &TenantId, id: &str) -> Result<Option<User>> {
        by_id(self, &tenant(t), &USERS, id).await
    }

    async fn user_by_email_hash(&self, t: &TenantId, email_hash: &str) -> Result<Option<User>> {
        one(self, &tenant(t), &USERS, eq("email_hash", email_hash)).await
    }

    async fn list_users(&self, t: &TenantId) -> Result<Vec<User>> {
        all(self, &tenant(t), &USERS, Query::default()).await
    }

    async fn delete_user(&self, t: &TenantId, id: &str) -> Result<bool> {
        Store::delete_user_sessions(self, t, id).await?;
        self.delete(&tenant(t), &USERS, id).await
    }

    async fn put_session(&self, t: &TenantId, s: &Session) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(
            &s.id,
            vec![("user_id", s.user_id.clone().into())],
            Some(s.expires_at),
            s,
        )?;
        self.put(&tenant(t), &SESSIONS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_session(&self, t: &TenantId, id: &str) -> Result<Option<Session>> {
        by_id(self, &tenant(t), &SESSIONS, id).await
    }

    async fn delete_session(&self, t: &TenantId, id: &str) -> Result<bool> {
        self.delete(&tenant(t), &SESSIONS, id).await
    }

    async fn refresh_session(&self, t: &TenantId, s: &Session) -> Result<bool> {
        self.require_active(t).await?;
        let Some(raw) = self.get(&tenant(t), &SESSIONS, &s.id).await? else {
            return Ok(false);
        };
        let rec = record(
            &s.id,
            vec![("user_id", s.user_id.clone().into())],
            Some(s.expires_at),
            s,
        )?;
        // Compare-and-set on the version read: a session deleted meanwhile is not re-created.
        match self
            .put(&tenant(t), &SESSIONS, rec, Expect::Version(raw.version))
            .await
        {
            Ok(_) => Ok(true),
            // Deleted, or refreshed by a concurrent request: it lives only in the second case.
            Err(StoreError::Conflict { .. }) => Ok(self
                .get(&tenant(t), &SESSIONS, &s.id)
                .await?
                .is_some_and(|r| r.expires_at.is_none_or(|e| e > Utc::now()))),
            Err(e) => Err(e),
        }
    }

    async fn delete_user_sessions(&self, t: &TenantId, user_id: &str) -> Result<u64> {
        delete_where(self, t, &SESSIONS, eq("user_id", user_id)).await
    }

    async fn put_api_key(&self, t: &TenantId, k: &ApiKey) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(&k.id, vec![], None, k)?;
        self.put(&tenant(t), &API_KEYS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_api_key(&self, t: &TenantId, id: &str) -> Result<Option<ApiKey>> {
        by_id(self, &tenant(t), &API_KEYS, id).await
    }

    async fn get_api_key_versioned(
        &self,
        t: &TenantId,
        id: &str,
    ) -> Result<Option<Versioned<ApiKey>>> {
        self.get(&tenant(t), &API_KEYS, id)
            .await?
            .map(|r| decode_versioned(&API_KEYS, r))
            .transpose()
    }

    async fn update_api_key_at(
        &self,
        t: &TenantId,
        k: &ApiKey,
        expected_version: u64,
    ) -> Result<u64> {
        self.require_active(t).await?;
        let rec = record(&k.id, vec![], None, k)?;
        self.put(
            &tenant(t),
            &API_KEYS,
            rec,
            Expect::Version(expected_version),
        )
        .await
    }

    async fn list_api_keys(&self, t: &TenantId) -> Result<Vec<ApiKey>> {
        all(self, &tenant(t), &API_KEYS, Query::default()).await
    }

    async fn put_signin_pending(&self, t: &TenantId, p: &SignInPending) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(&p.id, vec![], Some(p.expires_at), p)?;
        self.put(&tenant(t), &SIGNIN_PENDING, rec, Expect::Absent)
            .await
            .map(|_| ())
    }

    async fn take_signin_pending(&self, t: &TenantId, id: &str) -> Result<Option<SignInPending>> {
        let Some(p) = by_id::<_, SignInPending>(self, &tenant(t), &SIGNIN_PENDING, id).await?
        else {
            return Ok(None);
        };
        if !self.delete(&tenant(t), &SIGNIN_PENDING, id).await? || p.expires_at <= Utc::now() {
            return Ok(None);
        }
        Ok(Some(p))
    }

    async fn put_export(&self, t: &TenantId, e: &Export) -> Result<()> {
        self.require_active(t).await?;
        let rec = record(&e.id, vec![], Some(e.expires_at), e)?;
        self.put(&tenant(t), &EXPORTS, rec, Expect::Any)
            .await
            .map(|_| ())
    }

    async fn get_export(&self, t: &TenantId, id: &str) -> Result<Option<Export>> {
        by_id(self, &tenant(t), &EXPORTS, id).await
    }

    async fn append_audit(&self, t: &TenantId, e: &AuditEvent) -> Result<AuditEvent> {
        self.require_active(t).await?;
        for attempt in 0..100u64 {
            let last = one::<_, AuditEvent>(
                self,
                &tenant(t),
                &AUDIT,
                Query {
                    order: Some(("seq", Order::Desc)),
                    ..Default::default()
                },
            )
            .await?;
            let mut x = e.clone();
            x.seq = last.as_ref().map_or(1, |l| l.seq + 1);
            x.prev = last.map_or_else(|| AUDIT_GENESIS.to_string(), |l| l.hash);
            x.hash = x.chain_hash();
            let rec = record(
                &format!("a{:020}", x.seq),
                vec![("at", x.at.into()), ("seq", (x.seq as i64).into())],
                None,
                &x,
            )?;
            match self.put(&tenant(t), &AUDIT, rec, Expect::Absent).await {
                Ok(_) => {
                    self.advance_audit_head(t, &x).await?;
                    return Ok(x);
                }
                // Another writer took this number: link after theirs.
                Err(StoreError::Conflict { .. }) => {
                    tokio::time::sleep(Duration::from_millis(1 + attempt % 7)).await;
                }
                Err(err) => return Err(err),
            }
        }
        Err(StoreError::Conflict {
            collection: AUDIT.name.into(),
        })
    }

    async fn list_audit(&self, t: &TenantId) -> Result<Vec<AuditEvent>> {
        let q = Query {
            order: Some(("seq", Order::Asc)),
            ..Default::default()
        };
        all(self, &tenant(t), &AUDIT, q).await
    }

    async fn audit_records(&self, t: &TenantId) -> Result<Vec<(String, serde_json::Value)>> {
        let q = Query {
            order: Some(("seq", Order::Asc)),
            ..Default::default()
        };
        Ok(self
            .find(&tenant(t), &AUDIT, &q)
            .await?
            .into_iter()
            .map(|r| (r.id, r.body))
            .collect())
    }

    async fn audit_head(&self, t: &TenantId) -> Result<Option<AuditHead>> {
        by_id(self, &Scope::Control, &AUDIT_HEADS, t.as_str()).await
    }

    async fn purge_expired(&self, t: &TenantId, now: DateTime<Utc>) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for spec in TENANT_COLLECTIONS.iter().filter(|s| s.ttl) {
            out.push((
                spec.name.to_string(),
                Engine::purge_expired(self, &tenant(t), spec, now).await?,
            ));
        }
        Ok(out)
    }
}

/// Deletes the records `q` finds in one tenant collection; returns how many.
async fn delete_where<E: Engine + ?Sized>(
    e: &E,
    t: &TenantId,
    spec: &'static CollectionSpec,
    q: Query,
) -> Result<u64> {
    let mut n = 0;
    for r in e.find(&tenant(t), spec, &q).await? {
        if e.delete(&tenant(t), spec, &r.id).await? {
            n += 1;
        }
    }
    Ok(n)
}

fn user_record(u: &User) -> Result<RawRecord> {
    record(
        &u.id,
        vec![("email_hash", u.email_hash.clone().into())],
        None,
        u,
    )
}

fn delivery_record(d: &Delivery) -> Result<RawRecord> {
    record(
        &d.id,
        vec![
            ("idempotency_key", d.idempotency_key.clone().into()),
            ("meeting_id", d.meeting_id.clone().into()),
            ("state", d.state.name().into()),
            ("next_at", d.next_at.into()),
        ],
        None,
        d,
    )
}

fn job_record(job: &BotJob) -> Result<RawRecord> {
    record(
        &job.id,
        vec![
            ("meeting_id", job.meeting_id.clone().into()),
            ("idempotency_key", job.idempotency_key.clone().into()),
            ("state", job.state.name().into()),
            ("join_at", job.join_at.into()),
        ],
        None,
        job,
    )
}

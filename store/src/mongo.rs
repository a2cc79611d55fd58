//! MongoDB engine: database `<prefix>_control` for the registry, `<prefix>_t_<tenant>` per tenant.
//!
//! Stays within what MongoDB 7+ and the wire-compatible test server both support: CRUD,
//! `findOneAndUpdate`, unique and TTL indexes, `dropDatabase`. No change streams, no transactions.

use crate::StoreError;
use crate::engine::{CollectionSpec, Engine, Expect, IndexVal, Order, Query, RawRecord, Scope};
use async_trait::async_trait;
use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use meetbot_core::TenantId;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, IndexModel};
use std::time::Duration;

/// The engine's compare-and-set counter; prefixed so it cannot collide with an index field.
const REV: &str = "_rev";

pub struct MongoEngine {
    client: Client,
    prefix: String,
    address: String,
}

impl MongoEngine {
    /// Connects and pings the server; fails with the server's address if it does not answer
    /// within `timeout`.
    pub async fn connect(uri: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let address = meetbot_core::config::server_address(uri);
        let unavailable = |detail: String| StoreError::Unavailable {
            server: format!("MongoDB at {address}"),
            detail,
        };
        let mut opts = ClientOptions::parse(uri)
            .await
            .map_err(|e| unavailable(first_line(&e.to_string())))?;
        opts.connect_timeout = Some(timeout);
        opts.server_selection_timeout = Some(timeout);
        opts.app_name = Some("meetbot".into());
        let client =
            Client::with_options(opts).map_err(|e| unavailable(first_line(&e.to_string())))?;
        let engine = MongoEngine {
            client,
            prefix: prefix.to_string(),
            address,
        };
        engine.ping().await?;
        Ok(engine)
    }

    /// Name of the database that holds `scope`.
    pub fn database_name(&self, scope: &Scope) -> String {
        match scope {
            Scope::Control => format!("{}_control", self.prefix),
            Scope::Tenant(t) => format!("{}_t_{}", self.prefix, t),
        }
    }

    /// The driver's client, for operational tooling and tests that inspect raw documents.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn coll(&self, scope: &Scope, spec: &CollectionSpec) -> Collection<Document> {
        self.client
            .database(&self.database_name(scope))
            .collection(spec.name)
    }

    fn err(&self, e: mongodb::error::Error) -> StoreError {
        if matches!(
            *e.kind,
            ErrorKind::ServerSelection { .. }
                | ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
        ) {
            StoreError::Unavailable {
                server: format!("MongoDB at {}", self.address),
                detail: first_line(&e.to_string()),
            }
        } else {
            StoreError::Backend(format!(
                "MongoDB at {}: {}",
                self.address,
                first_line(&e.to_string())
            ))
        }
    }
}

/// A short cause for an error message: the driver's server-selection errors embed the whole
/// topology; the underlying I/O error is what an operator needs.
fn first_line(s: &str) -> String {
    for cause in [
        "Connection refused",
        "timed out",
        "No route to host",
        "failed to lookup address",
    ] {
        if s.contains(cause) {
            return format!("{} (no server answered)", cause.to_lowercase());
        }
    }
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(we)) => we.code == 11000,
        ErrorKind::Command(ce) => ce.code == 11000,
        _ => e.to_string().contains("E11000"),
    }
}

fn bson_val(v: &IndexVal) -> Bson {
    match v {
        IndexVal::Str(s) => Bson::String(s.clone()),
        IndexVal::Int(i) => Bson::Int64(*i),
    }
}

fn live(now: DateTime<Utc>) -> Document {
    doc! { "$or": [ { "expire_at": Bson::Null }, { "expire_at": { "$gt": bson::DateTime::from_chrono(now) } } ] }
}

fn fields_doc(rec: &RawRecord) -> Result<Document, StoreError> {
    let mut d = Document::new();
    for (k, v) in &rec.index {
        d.insert(*k, bson_val(v));
    }
    d.insert(
        "expire_at",
        rec.expires_at
            .map(|t| Bson::DateTime(bson::DateTime::from_chrono(t)))
            .unwrap_or(Bson::Null),
    );
    let body = bson::to_bson(&rec.body)
        .map_err(|e| StoreError::Backend(format!("cannot encode record: {e}")))?;
    d.insert("body", body);
    Ok(d)
}

fn to_raw(spec: &CollectionSpec, d: Document) -> Result<RawRecord, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        collection: spec.name.into(),
        id: d.get_str("_id").unwrap_or("?").to_string(),
        detail: detail.to_string(),
    };
    let id = d
        .get_str("_id")
        .map_err(|_| corrupt("no string _id"))?
        .to_string();
    let version = match d.get(REV) {
        Some(Bson::Int64(v)) => *v as u64,
        Some(Bson::Int32(v)) => *v as u64,
        Some(Bson::Double(v)) => *v as u64,
        _ => return Err(corrupt("no version")),
    };
    let expires_at = match d.get("expire_at") {
        Some(Bson::DateTime(t)) => Some(t.to_chrono()),
        _ => None,
    };
    let body = d
        .get("body")
        .cloned()
        .ok_or_else(|| corrupt("no body"))?
        .into_relaxed_extjson();
    let mut index = Vec::new();
    for f in spec.fields {
        match d.get(*f) {
            Some(Bson::String(s)) => index.push((*f, IndexVal::Str(s.clone()))),
            Some(Bson::Int64(i)) => index.push((*f, IndexVal::Int(*i))),
            Some(Bson::Int32(i)) => index.push((*f, IndexVal::Int(i64::from(*i)))),
            _ => {}
        }
    }
    Ok(RawRecord {
        id,
        version,
        index,
        expires_at,
        body,
    })
}

#[async_trait]
impl Engine for MongoEngine {
    fn describe(&self) -> String {
        format!("MongoDB at {}", self.address)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable {
                server: format!("MongoDB at {}", self.address),
                detail: first_line(&e.to_string()),
            })
    }

    async fn ensure_scope(
        &self,
        scope: &Scope,
        specs: &[&'static CollectionSpec],
    ) -> Result<(), StoreError> {
        for spec in specs {
            let coll = self.coll(scope, spec);
            let mut models = Vec::new();
            // A single-field unique index already serves lookups on that field; MongoDB refuses
            // a second index on the same key pattern.
            for f in spec
                .fields
                .iter()
                .filter(|f| !spec.unique.iter().any(|u| u == &[**f]))
            {
                models.push(IndexModel::builder().keys(doc! { *f: 1 }).build());
            }
            for (i, set) in spec.unique.iter().enumerate() {
                let mut keys = Document::new();
                for f in *set {
                    keys.insert(*f, 1);
                }
                let opts = IndexOptions::builder()
                    .unique(true)
                    .name(format!("unique_{i}"))
                    .build();
                models.push(IndexModel::builder().keys(keys).options(opts).build());
            }
            if spec.ttl {
                let opts = IndexOptions::builder()
                    .expire_after(Duration::from_secs(0))
                    .name("ttl".to_string())
                    .build();
                models.push(
                    IndexModel::builder()
                        .keys(doc! { "expire_at": 1 })
                        .options(opts)
                        .build(),
                );
            }
            for m in models {
                coll.create_index(m).await.map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    async fn drop_scope(
        &self,
        tenant: &TenantId,
        specs: &[&'static CollectionSpec],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let scope = Scope::Tenant(tenant.clone());
        let mut counts = Vec::new();
        for spec in specs {
            let n = self
                .coll(&scope, spec)
                .count_documents(doc! {})
                .await
                .map_err(|e| self.err(e))?;
            counts.push((spec.name.to_string(), n));
        }
        self.client
            .database(&self.database_name(&scope))
            .drop()
            .await
            .map_err(|e| self.err(e))?;
        Ok(counts)
    }

    async fn get(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        id: &str,
    ) -> Result<Option<RawRecord>, StoreError> {
        let mut filter = live(Utc::now());
        filter.insert("_id", id);
        let found = self
            .coll(scope, spec)
            .find_one(filter)
            .await
            .map_err(|e| self.err(e))?;
        found.map(|d| to_raw(spec, d)).transpose()
    }

    async fn find(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        q: &Query,
    ) -> Result<Vec<RawRecord>, StoreError> {
        let mut filter = live(Utc::now());
        for (k, v) in &q.eq {
            filter.insert(*k, bson_val(v));
        }
        if let Some((f, lo, hi)) = &q.range {
            let mut r = Document::new();
            if let Some(lo) = lo {
                r.insert("$gte", bson_val(lo));
            }
            if let Some(hi) = hi {
                r.insert("$lt", bson_val(hi));
            }
            if !r.is_empty() {
                filter.insert(*f, r);
            }
        }
        let coll = self.coll(scope, spec);
        let mut action = coll.find(filter);
        let sort = match q.order {
            Some((f, o)) => doc! { f: if o == Order::Asc { 1 } else { -1 }, "_id": 1 },
            None => doc! { "_id": 1 },
        };
        action = action.sort(sort);
        if let Some(l) = q.limit {
            action = action.limit(i64::from(l));
        }
        let docs: Vec<Document> = action
            .await
            .map_err(|e| self.err(e))?
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        docs.into_iter().map(|d| to_raw(spec, d)).collect()
    }

    async fn put(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        rec: RawRecord,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let coll = self.coll(scope, spec);
        let conflict = || StoreError::Conflict {
            collection: spec.name.to_string(),
        };
        let fields = fields_doc(&rec)?;
        match expect {
            Expect::Absent => {
                let mut d = fields;
                d.insert("_id", rec.id.clone());
                d.insert(REV, 1i64);
                match coll.insert_one(d).await {
                    Ok(_) => Ok(1),
                    Err(e) if is_duplicate(&e) => Err(conflict()),
                    Err(e) => Err(self.err(e)),
                }
            }
            Expect::Any | Expect::Version(_) => {
                let mut filter = doc! { "_id": rec.id.clone() };
                if let Expect::Version(v) = expect {
                    filter.insert(REV, v as i64);
                }
                let update = doc! { "$set": fields, "$inc": { REV: 1i64 } };
                let res = coll
                    .find_one_and_update(filter, update)
                    .upsert(expect == Expect::Any)
                    .return_document(ReturnDocument::After)
                    .projection(doc! { REV: 1 })
                    .await;
                match res {
                    Ok(Some(d)) => match d.get(REV) {
                        Some(Bson::Int64(v)) => Ok(*v as u64),
                        Some(Bson::Int32(v)) => Ok(*v as u64),
                        _ => Ok(0),
                    },
                    Ok(None) => Err(conflict()),
                    Err(e) if is_duplicate(&e) => Err(conflict()),
                    Err(e) => Err(self.err(e)),
                }
            }
        }
    }

    async fn delete(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        id: &str,
    ) -> Result<bool, StoreError> {
        let r = self
            .coll(scope, spec)
            .delete_one(doc! { "_id": id })
            .await
            .map_err(|e| self.err(e))?;
        Ok(r.deleted_count > 0)
    }

    async fn purge_expired(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // Only dates: MongoDB never matches null against a date, but some MongoDB-wire servers
        // order null first (mongoeco 4.11 did), which would purge every record kept for good.
        let filter =
            doc! { "expire_at": { "$type": "date", "$lte": bson::DateTime::from_chrono(now) } };
        let r = self
            .coll(scope, spec)
            .delete_many(filter)
            .await
            .map_err(|e| self.err(e))?;
        Ok(r.deleted_count)
    }
}

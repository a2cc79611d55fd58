//! Embedded engine: SQLite files on local disk, `control.sqlite3` for the registry and
//! `tenants/<tenant>.sqlite3` per tenant, mirroring the one-database-per-tenant isolation.
//!
//! `secure_delete` is on, so deleted records are overwritten in the file, not left in free pages.
//! Write-ahead logging with `synchronous = FULL`: one fsync per commit and every commit durable;
//! the log is truncated at each checkpoint (`journal_size_limit = 0`) and removed with the tenant.

use crate::StoreError;
use crate::engine::{CollectionSpec, Engine, Expect, IndexVal, Order, Query, RawRecord, Scope};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use meetbot_core::TenantId;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params_from_iter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct SqliteEngine {
    dir: PathBuf,
    conns: Mutex<HashMap<Scope, Arc<Mutex<Connection>>>>,
}

impl SqliteEngine {
    /// Opens (creating if needed) the store directory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir.join("tenants")).map_err(|e| StoreError::Unavailable {
            server: format!("embedded store at {}", dir.display()),
            detail: format!("cannot create the directory: {e}"),
        })?;
        Ok(SqliteEngine {
            dir: dir.to_path_buf(),
            conns: Mutex::new(HashMap::new()),
        })
    }

    /// Path of the file that holds `scope`.
    pub fn file_of(&self, scope: &Scope) -> PathBuf {
        match scope {
            Scope::Control => self.dir.join("control.sqlite3"),
            Scope::Tenant(t) => self.dir.join("tenants").join(format!("{t}.sqlite3")),
        }
    }

    /// The connection for `scope`. Tenant files are only created by `ensure_scope`; `None` means
    /// the tenant has no database here.
    fn conn(
        &self,
        scope: &Scope,
        create: bool,
    ) -> Result<Option<Arc<Mutex<Connection>>>, StoreError> {
        let mut map = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(scope) {
            return Ok(Some(c.clone()));
        }
        let path = self.file_of(scope);
        let may_create = create || *scope == Scope::Control;
        if !may_create && !path.exists() {
            return Ok(None);
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if may_create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| self.err(e))?;
        conn.execute_batch("PRAGMA secure_delete = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 0; PRAGMA busy_timeout = 5000;")
            .map_err(|e| self.err(e))?;
        let c = Arc::new(Mutex::new(conn));
        map.insert(scope.clone(), c.clone());
        Ok(Some(c))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Backend(format!("embedded store at {}: {e}", self.dir.display()))
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        scope: &Scope,
        create: bool,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        let Some(conn) = self.conn(scope, create)? else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c).map(Some)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("embedded store task failed: {e}")))?
    }
}

fn col(field: &str) -> String {
    format!("\"f_{field}\"")
}

fn sql_val(v: &IndexVal) -> Value {
    match v {
        IndexVal::Str(s) => Value::Text(s.clone()),
        IndexVal::Int(i) => Value::Integer(*i),
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn select_list(spec: &CollectionSpec) -> String {
    let mut cols = vec![
        "id".to_string(),
        "version".to_string(),
        "expires_at".to_string(),
        "body".to_string(),
    ];
    cols.extend(spec.fields.iter().map(|f| col(f)));
    cols.join(", ")
}

fn row_to_raw(
    spec: &'static CollectionSpec,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<RawRecord, StoreError>> {
    let id: String = row.get(0)?;
    let version: i64 = row.get(1)?;
    let expires: Option<i64> = row.get(2)?;
    let body: String = row.get(3)?;
    let mut index = Vec::new();
    for (i, f) in spec.fields.iter().enumerate() {
        match row.get::<_, Value>(4 + i)? {
            Value::Text(s) => index.push((*f, IndexVal::Str(s))),
            Value::Integer(n) => index.push((*f, IndexVal::Int(n))),
            _ => {}
        }
    }
    let body = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Err(StoreError::Corrupt {
                collection: spec.name.into(),
                id,
                detail: e.to_string(),
            }));
        }
    };
    Ok(Ok(RawRecord {
        id,
        version: version as u64,
        index,
        expires_at: expires.and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        body,
    }))
}

/// Deletes, then checkpoints and truncates the write-ahead log, so the deleted rows (zeroed in
/// their pages by `secure_delete`) do not linger on disk in older log frames.
fn delete_and_flush(
    c: &mut Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    let n = c
        .execute(sql, params)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    if n > 0 {
        let busy: i64 = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        if busy != 0 {
            tracing::debug!("write-ahead log checkpoint deferred: a reader is active");
        }
    }
    Ok(n)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

#[async_trait]
impl Engine for SqliteEngine {
    fn describe(&self) -> String {
        format!("embedded store at {}", self.dir.display())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(&Scope::Control, true, |c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| StoreError::Backend(e.to_string()))
        })
        .await
        .map(|_| ())
    }

    async fn ensure_scope(
        &self,
        scope: &Scope,
        specs: &[&'static CollectionSpec],
    ) -> Result<(), StoreError> {
        let specs: Vec<&'static CollectionSpec> = specs.to_vec();
        let dir = self.dir.display().to_string();
        self.with_conn(scope, true, move |c| {
            let mut sql = String::new();
            for s in &specs {
                let cols: Vec<String> = s.fields.iter().map(|f| col(f)).collect();
                let extra = if cols.is_empty() { String::new() } else { format!(", {}", cols.join(", ")) };
                sql.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS \"{n}\" (id TEXT PRIMARY KEY, version INTEGER NOT NULL, expires_at INTEGER, body TEXT NOT NULL{extra});\n",
                    n = s.name
                ));
                c.execute_batch(&sql).map_err(|e| StoreError::Backend(format!("embedded store at {dir}: {e}")))?;
                sql.clear();
                // A table made by an older version lacks the index columns added since: add them
                // (empty; the typed layer fills them as records are written again).
                let have: Vec<String> = {
                    let mut st = c
                        .prepare(&format!("SELECT name FROM pragma_table_info('{}')", s.name))
                        .map_err(|e| StoreError::Backend(format!("embedded store at {dir}: {e}")))?;
                    st.query_map([], |r| r.get::<_, String>(0))
                        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| StoreError::Backend(format!("embedded store at {dir}: {e}")))?
                };
                for f in s.fields {
                    if !have.iter().any(|h| *h == format!("f_{f}")) {
                        sql.push_str(&format!("ALTER TABLE \"{n}\" ADD COLUMN {c};\n", n = s.name, c = col(f)));
                    }
                }
                for f in s.fields {
                    sql.push_str(&format!("CREATE INDEX IF NOT EXISTS \"{n}_{f}\" ON \"{n}\" ({c});\n", n = s.name, c = col(f)));
                }
                for (i, set) in s.unique.iter().enumerate() {
                    let cs: Vec<String> = set.iter().map(|f| col(f)).collect();
                    sql.push_str(&format!("CREATE UNIQUE INDEX IF NOT EXISTS \"{n}_unique_{i}\" ON \"{n}\" ({});\n", cs.join(", "), n = s.name));
                }
                if s.ttl {
                    sql.push_str(&format!("CREATE INDEX IF NOT EXISTS \"{n}_ttl\" ON \"{n}\" (expires_at);\n", n = s.name));
                }
            }
            c.execute_batch(&sql).map_err(|e| StoreError::Backend(format!("embedded store at {dir}: {e}")))
        })
        .await
        .map(|_| ())
    }

    async fn drop_scope(
        &self,
        tenant: &TenantId,
        specs: &[&'static CollectionSpec],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let scope = Scope::Tenant(tenant.clone());
        let specs_v: Vec<&'static CollectionSpec> = specs.to_vec();
        let counts = self
            .with_conn(&scope, false, move |c| {
                let mut out = Vec::new();
                for s in specs_v {
                    let n: i64 = c
                        .query_row(&format!("SELECT count(*) FROM \"{}\"", s.name), [], |r| {
                            r.get(0)
                        })
                        .unwrap_or(0);
                    out.push((s.name.to_string(), n as u64));
                }
                Ok(out)
            })
            .await?
            .unwrap_or_else(|| specs.iter().map(|s| (s.name.to_string(), 0)).collect());
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&scope);
        let path = self.file_of(&scope);
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "cannot remove {}: {e}",
                        p.display()
                    )));
                }
            }
        }
        Ok(counts)
    }

    async fn get(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        id: &str,
    ) -> Result<Option<RawRecord>, StoreError> {
        let id = id.to_string();
        let r = self
            .with_conn(scope, false, move |c| {
                let sql = format!(
                    "SELECT {} FROM \"{}\" WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                    select_list(spec),
                    spec.name
                );
                c.query_row(&sql, rusqlite::params![id, now_ms()], |row| row_to_raw(spec, row))
                    .optional()
                    .map_err(|e| StoreError::Backend(e.to_string()))?
                    .transpose()
            })
            .await?;
        Ok(r.flatten())
    }

    async fn find(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        q: &Query,
    ) -> Result<Vec<RawRecord>, StoreError> {
        let mut sql = format!(
            "SELECT {} FROM \"{}\" WHERE (expires_at IS NULL OR expires_at > ?)",
            select_list(spec),
            spec.name
        );
        let mut args: Vec<Value> = vec![Value::Integer(now_ms())];
        for (k, v) in &q.eq {
            sql.push_str(&format!(" AND {} = ?", col(k)));
            args.push(sql_val(v));
        }
        if let Some((f, lo, hi)) = &q.range {
            if let Some(lo) = lo {
                sql.push_str(&format!(" AND {} >= ?", col(f)));
                args.push(sql_val(lo));
            }
            if let Some(hi) = hi {
                sql.push_str(&format!(" AND {} < ?", col(f)));
                args.push(sql_val(hi));
            }
        }
        match q.order {
            Some((f, o)) => sql.push_str(&format!(
                " ORDER BY {} {}, id ASC",
                col(f),
                if o == Order::Asc { "ASC" } else { "DESC" }
            )),
            None => sql.push_str(" ORDER BY id ASC"),
        }
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let r = self
            .with_conn(scope, false, move |c| {
                let mut stmt = c
                    .prepare(&sql)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let rows = stmt
                    .query_map(params_from_iter(args), |row| row_to_raw(spec, row))
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let mut out = Vec::new();
                for r in rows {
                    out.push(r.map_err(|e| StoreError::Backend(e.to_string()))??);
                }
                Ok(out)
            })
            .await?;
        Ok(r.unwrap_or_default())
    }

    async fn put(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        rec: RawRecord,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let tenant_missing = match scope {
            Scope::Tenant(t) => Some(StoreError::UnknownTenant(t.clone())),
            Scope::Control => None,
        };
        let body =
            serde_json::to_string(&rec.body).map_err(|e| StoreError::Backend(e.to_string()))?;
        let r = self
            .with_conn(scope, false, move |c| {
                let conflict = || StoreError::Conflict {
                    collection: spec.name.to_string(),
                };
                // IMMEDIATE takes the write lock up front: processes sharing the file wait for each
                // other (busy_timeout) instead of failing on a read-to-write lock upgrade.
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let current: Option<i64> = tx
                    .query_row(
                        &format!("SELECT version FROM \"{}\" WHERE id = ?1", spec.name),
                        [&rec.id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let next = match (expect, current) {
                    (Expect::Absent, Some(_)) => return Err(conflict()),
                    (Expect::Version(v), Some(cur)) if cur as u64 != v => return Err(conflict()),
                    (Expect::Version(_), None) => return Err(conflict()),
                    (_, cur) => cur.unwrap_or(0) + 1,
                };
                let mut cols = vec![
                    "id".to_string(),
                    "version".into(),
                    "expires_at".into(),
                    "body".into(),
                ];
                let mut args: Vec<Value> = vec![
                    Value::Text(rec.id.clone()),
                    Value::Integer(next),
                    rec.expires_at
                        .map(|t| Value::Integer(t.timestamp_millis()))
                        .unwrap_or(Value::Null),
                    Value::Text(body),
                ];
                for (k, v) in &rec.index {
                    cols.push(col(k));
                    args.push(sql_val(v));
                }
                let marks: Vec<&str> = cols.iter().map(|_| "?").collect();
                let sql = format!(
                    "INSERT OR REPLACE INTO \"{}\" ({}) VALUES ({})",
                    spec.name,
                    cols.join(", "),
                    marks.join(", ")
                );
                // INSERT OR REPLACE would silently delete a *different* row holding the same unique
                // fields; check the unique sets first so that is a conflict instead.
                for set in spec.unique {
                    let vals: Vec<Value> = set
                        .iter()
                        .map(|f| {
                            rec.index
                                .iter()
                                .find(|(k, _)| k == f)
                                .map(|(_, v)| sql_val(v))
                                .unwrap_or(Value::Null)
                        })
                        .collect();
                    let cond: Vec<String> = set.iter().map(|f| format!("{} = ?", col(f))).collect();
                    let mut a = vals;
                    a.push(Value::Text(rec.id.clone()));
                    let clash: Option<String> = tx
                        .query_row(
                            &format!(
                                "SELECT id FROM \"{}\" WHERE {} AND id != ? LIMIT 1",
                                spec.name,
                                cond.join(" AND ")
                            ),
                            params_from_iter(a),
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    if clash.is_some() {
                        return Err(conflict());
                    }
                }
                match tx.execute(&sql, params_from_iter(args)) {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Err(conflict()),
                    Err(e) => return Err(StoreError::Backend(e.to_string())),
                }
                tx.commit()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                Ok(next as u64)
            })
            .await?;
        match (r, tenant_missing) {
            (Some(v), _) => Ok(v),
            (None, Some(e)) => Err(e),
            (None, None) => Err(StoreError::Backend("control database missing".into())),
        }
    }

    async fn delete(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        id: &str,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        let r = self
            .with_conn(scope, false, move |c| {
                delete_and_flush(
                    c,
                    &format!("DELETE FROM \"{}\" WHERE id = ?1", spec.name),
                    [id],
                )
                .map(|n| n > 0)
            })
            .await?;
        Ok(r.unwrap_or(false))
    }

    async fn purge_expired(
        &self,
        scope: &Scope,
        spec: &'static CollectionSpec,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let r = self
            .with_conn(scope, false, move |c| {
                delete_and_flush(
                    c,
                    &format!(
                        "DELETE FROM \"{}\" WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                        spec.name
                    ),
                    [now.timestamp_millis()],
                )
                .map(|n| n as u64)
            })
            .await?;
        Ok(r.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Expect, Query, RawRecord};

    static BEFORE: CollectionSpec = CollectionSpec {
        name: "things",
        fields: &["a"],
        unique: &[],
        ttl: false,
    };
    static SINCE: CollectionSpec = CollectionSpec {
        name: "things",
        fields: &["a", "b"],
        unique: &[],
        ttl: false,
    };

    #[tokio::test]
    async fn a_table_made_by_an_older_version_gets_the_index_columns_added_since() {
        let dir = tempfile::tempdir().unwrap();
        let e = SqliteEngine::open(dir.path()).unwrap();
        e.ensure_scope(&Scope::Control, &[&BEFORE]).await.unwrap();
        let old = RawRecord {
            id: "old".into(),
            version: 0,
            index: vec![("a", "1".into())],
            expires_at: None,
            body: serde_json::json!({}),
        };
        e.put(&Scope::Control, &BEFORE, old, Expect::Absent)
            .await
            .unwrap();
        // The next version opens the same file with one more indexed field, twice (idempotent).
        for _ in 0..2 {
            e.ensure_scope(&Scope::Control, &[&SINCE]).await.unwrap();
        }
        let new = RawRecord {
            id: "new".into(),
            version: 0,
            index: vec![("a", "1".into()), ("b", "x".into())],
            expires_at: None,
            body: serde_json::json!({}),
        };
        e.put(&Scope::Control, &SINCE, new, Expect::Absent)
            .await
            .unwrap();
        let q = Query {
            eq: vec![("b", "x".into())],
            ..Default::default()
        };
        let found = e.find(&Scope::Control, &SINCE, &q).await.unwrap();
        assert_eq!(
            found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        let all = e
            .find(&Scope::Control, &SINCE, &Query::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 2, "the old record is still there");
    }
}

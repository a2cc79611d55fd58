//! One suite, every `Store` engine: embedded SQLite and MongoDB (the MongoDB-wire test server).
//!
//! Covers tenant isolation for every repository method, compare-and-set, leases, retention,
//! envelope encryption as stored (raw dumps hold no plaintext), key rotation and crypto-erasure.

use chrono::{Duration as CDuration, Utc};
use futures::TryStreamExt;
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_crypto::{KeyProvider, LocalKeyFile};
use meetbot_store::vault::{TenantVault, Tenants, VaultError, verify_receipt};
use meetbot_store::{JobFilter, MongoEngine, SqliteEngine, Store, StoreError, init_engine};
use meetbot_testsupport::contains;
use std::sync::Arc;
use std::time::Duration;

enum Raw {
    Sqlite(Arc<SqliteEngine>),
    Mongo(Arc<MongoEngine>, String),
}

struct Env {
    store: Arc<dyn Store>,
    tenants: Tenants,
    keys: Arc<dyn KeyProvider>,
    raw: Raw,
    _dir: tempfile::TempDir,
}

impl Env {
    /// Every byte the engine holds for the control database and `t`'s database.
    async fn dump(&self, t: &TenantId) -> Vec<u8> {
        use meetbot_store::engine::Scope;
        match &self.raw {
            Raw::Sqlite(e) => {
                let mut files = Vec::new();
                for scope in [Scope::Control, Scope::Tenant(t.clone())] {
                    let path = e.file_of(&scope);
                    for suffix in ["", "-journal", "-wal"] {
                        files.push(std::path::PathBuf::from(format!(
                            "{}{suffix}",
                            path.display()
                        )));
                    }
                }
                meetbot_testsupport::raw_file_bytes(&files)
            }
            Raw::Mongo(e, prefix) => {
                let mut out = Vec::new();
                for db_name in [format!("{prefix}_control"), format!("{prefix}_t_{t}")] {
                    let db = e.client().database(&db_name);
                    for coll in db.list_collection_names().await.unwrap() {
                        let docs: Vec<bson::Document> = db
                            .collection::<bson::Document>(&coll)
                            .find(bson::doc! {})
                            .await
                            .unwrap()
                            .try_collect()
                            .await
                            .unwrap();
                        for d in docs {
                            out.extend(bson::to_vec(&d).unwrap());
                        }
                    }
                }
                out
            }
        }
    }

    /// Rewrites the target of audit entry `seq` (`None`: removes the entry) in the engine's own
    /// storage, below every meetbot code path: what someone with database access could do.
    async fn tamper_audit(&self, t: &TenantId, seq: u64, target: Option<&str>) {
        use meetbot_store::engine::Scope;
        let id = format!("a{seq:020}");
        match &self.raw {
            Raw::Sqlite(e) => {
                let c = rusqlite::Connection::open(e.file_of(&Scope::Tenant(t.clone()))).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                match target {
                    Some(x) => {
                        let body: String = c
                            .query_row("SELECT body FROM audit_log WHERE id = ?1", [&id], |r| {
                                r.get(0)
                            })
                            .unwrap();
                        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        v["target"] = x.into();
                        c.execute(
                            "UPDATE audit_log SET body = ?1 WHERE id = ?2",
                            [v.to_string(), id],
                        )
                        .unwrap();
                    }
                    None => {
                        c.execute("DELETE FROM audit_log WHERE id = ?1", [id])
                            .unwrap();
                    }
                }
            }
            Raw::Mongo(e, prefix) => {
                let coll = e
                    .client()
                    .database(&format!("{prefix}_t_{t}"))
                    .collection::<bson::Document>("audit_log");
                let filter = bson::doc! {"_id": &id};
                match target {
                    Some(x) => {
                        let d = coll.find_one(filter.clone()).await.unwrap().unwrap();
                        let mut d = d.clone();
                        let body = d.get_document_mut("body").unwrap();
                        body.insert("target", x);
                        coll.replace_one(filter, d).await.unwrap();
                    }
                    None => {
                        coll.delete_one(filter).await.unwrap();
                    }
                }
            }
        }
    }

    /// Whether the tenant's database still exists in the engine.
    async fn tenant_db_exists(&self, t: &TenantId) -> bool {
        use meetbot_store::engine::Scope;
        match &self.raw {
            Raw::Sqlite(e) => e.file_of(&Scope::Tenant(t.clone())).exists(),
            Raw::Mongo(e, prefix) => e
                .client()
                .list_database_names()
                .await
                .unwrap()
                .contains(&format!("{prefix}_t_{t}")),
        }
    }
}

async fn sqlite() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let engine = init_engine(SqliteEngine::open(&dir.path().join("store")).unwrap())
        .await
        .unwrap();
    finish(engine.clone(), Raw::Sqlite(engine), dir)
}

async fn mongodb() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let prefix = meetbot_testsupport::unique("t");
    let engine = MongoEngine::connect(
        &meetbot_testsupport::mongodb_uri(),
        &prefix,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let engine = init_engine(engine).await.unwrap();
    finish(engine.clone(), Raw::Mongo(engine, prefix), dir)
}

fn finish(store: Arc<dyn Store>, raw: Raw, dir: tempfile::TempDir) -> Env {
    let keys: Arc<dyn KeyProvider> =
        Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek.key")).unwrap());
    Env {
        tenants: Tenants::new(store.clone(), keys.clone()),
        store,
        keys,
        raw,
        _dir: dir,
    }
}

const TRANSCRIPT_TEXT: &str = "Dr. Okafor: the biopsy results for Mrs. Delacroix came back benign";
const ACCESS_TOKEN: &str = "ya29.a0AfB_byC-plaintext-oauth-access-token-7781";
const EMAIL: &str = "j.delacroix@example-clinic.org";
const TITLE: &str = "Oncology case review: Delacroix";

fn connection(v: &TenantVault) -> CalendarConnection {
    let id = new_record_id();
    let now = Utc::now();
    CalendarConnection {
        account_email: v
            .seal::<CalendarConnection>(&id, "account_email", EMAIL.as_bytes())
            .unwrap(),
        access_token: v
            .seal::<CalendarConnection>(&id, "access_token", ACCESS_TOKEN.as_bytes())
            .unwrap(),
        refresh_token: Some(
            v.seal::<CalendarConnection>(&id, "refresh_token", b"1//refresh-plaintext-token")
                .unwrap(),
        ),
        id,
        user_id: "user-1".into(),
        provider: CalendarProvider::Google,
        scopes: vec!["https://www.googleapis.com/auth/calendar.events.readonly".into()],
        access_expires_at: Some(now + CDuration::hours(1)),
        status: ConnectionStatus::Active,
        sync_cursor: None,
        push: None,
        last_sync: None,
        created_at: now,
        updated_at: now,
    }
}

fn meeting(v: &TenantVault, starts_in_min: i64) -> Meeting {
    let id = new_record_id();
    let start = Utc::now() + CDuration::minutes(starts_in_min);
    Meeting {
        title: v.seal::<Meeting>(&id, "title", TITLE.as_bytes()).unwrap(),
        attendees: v
            .seal::<Meeting>(
                &id,
                "attendees",
                format!("[{{\"email\":\"{EMAIL}\"}}]").as_bytes(),
            )
            .unwrap(),
        join_url: Some(
            v.seal::<Meeting>(&id, "join_url", b"https://meet.example/abc-defg-hij")
                .unwrap(),
        ),
        event_instance_id: format!("evt_{id}"),
        id,
        connection_id: Some("conn-1".into()),
        series_id: None,
        starts_at: start,
        ends_at: start + CDuration::minutes(30),
        all_day: false,
        status: MeetingStatus::Confirmed,
        platform: Some(Platform::GoogleMeet),
        wants_bot: true,
        join_reason: None,
        requested_by: None,
        deleted_at: None,
        meeting_ref: None,
        source_updated_at: None,
        updated_at: Utc::now(),
    }
}

fn transcript(
    v: &TenantVault,
    meeting_id: &str,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> Transcript {
    let id = new_record_id();
    Transcript {
        segments: v
            .seal::<Transcript>(&id, "segments", TRANSCRIPT_TEXT.as_bytes())
            .unwrap(),
        id,
        meeting_id: meeting_id.into(),
        language: Some("en".into()),
        created_at: Utc::now(),
        expires_at,
        held: None,
    }
}

fn summary(v: &TenantVault, meeting_id: &str) -> Summary {
    let id = new_record_id();
    Summary {
        body: v
            .seal::<Summary>(&id, "body", b"Decision: no further treatment")
            .unwrap(),
        id,
        meeting_id: meeting_id.into(),
        created_at: Utc::now(),
        expires_at: None,
        held: None,
    }
}

fn job(meeting: &Meeting, t: &TenantId) -> BotJob {
    BotJob {
        id: new_record_id(),
        meeting_id: meeting.id.clone(),
        idempotency_key: format!(
            "{t}:{}:{}",
            meeting.event_instance_id,
            meeting.starts_at.timestamp()
        ),
        join_at: meeting.starts_at - CDuration::seconds(60),
        state: BotJobState::Scheduled,
        history: vec![StateChange {
            state: BotJobState::Scheduled,
            at: Utc::now(),
        }],
        published_at: None,
        bot_rules: None,
        ticket: None,
    }
}

fn audit(action: &str) -> AuditEvent {
    AuditEvent::new("user-1", action, "t-1")
}

// ---------------------------------------------------------------- cases

async fn tenants_are_registered_listed_and_get_their_own_database(env: Env) {
    let a = env.tenants.create("Acme Clinic").await.unwrap();
    let b = env.tenants.create("Beta Law").await.unwrap();
    assert_ne!(a.id, b.id);
    let list = env.store.list_tenants().await.unwrap();
    assert!(list.iter().any(|t| t.id == a.id && t.name == "Acme Clinic"));
    assert!(list.iter().any(|t| t.id == b.id));
    assert!(env.tenant_db_exists(&a.id).await && env.tenant_db_exists(&b.id).await);
    let keys = env.store.wrapped_keys(&a.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].provider, "local");
}

async fn no_repository_method_reads_or_deletes_across_tenants(env: Env) {
    let a = env.tenants.create("A").await.unwrap().id;
    let b = env.tenants.create("B").await.unwrap().id;
    let va = env.tenants.vault(&a).await.unwrap();
    let s = &env.store;

    let c = connection(&va);
    let m = meeting(&va, 30);
    let j = job(&m, &a);
    let tr = transcript(&va, &m.id, None);
    let su = summary(&va, &m.id);
    s.put_connection(&a, &c).await.unwrap();
    s.put_meeting(&a, &m).await.unwrap();
    s.insert_bot_job(&a, &j).await.unwrap();
    s.put_transcript(&a, &tr).await.unwrap();
    s.put_summary(&a, &su).await.unwrap();
    s.append_audit(&a, &audit("transcript.read")).await.unwrap();

    // Tenant B sees nothing of A's, by id or by listing.
    assert_eq!(s.get_connection(&b, &c.id).await.unwrap(), None);
    assert!(s.list_connections(&b).await.unwrap().is_empty());
    assert_eq!(s.get_meeting(&b, &m.id).await.unwrap(), None);
    assert!(s.list_meetings(&b, None, None).await.unwrap().is_empty());
    assert_eq!(s.get_bot_job(&b, &j.id).await.unwrap(), None);
    assert!(
        s.find_bot_jobs(&b, &JobFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.find_bot_jobs(
            &b,
            &JobFilter {
                meeting_id: Some(m.id.clone()),
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(s.get_transcript(&b, &tr.id).await.unwrap(), None);
    assert_eq!(s.transcript_for_meeting(&b, &m.id).await.unwrap(), None);
    assert!(s.list_transcripts(&b).await.unwrap().is_empty());
    assert_eq!(s.summary_for_meeting(&b, &m.id).await.unwrap(), None);
    assert!(s.list_summaries(&b).await.unwrap().is_empty());
    assert!(s.list_audit(&b).await.unwrap().is_empty());

    // Updating A's job through B fails; deleting A's records through B removes nothing.
    assert!(matches!(
        s.update_bot_job(&b, &j, 1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(!s.delete_connection(&b, &c.id).await.unwrap());
    assert!(!s.delete_meeting(&b, &m.id).await.unwrap());
    assert!(!s.delete_transcript(&b, &tr.id).await.unwrap());
    assert!(!s.delete_summary(&b, &su.id).await.unwrap());
    let purged: u64 = s
        .purge_expired(&b, Utc::now() + CDuration::days(3650))
        .await
        .unwrap()
        .iter()
        .map(|x| x.1)
        .sum();
    assert_eq!(purged, 0);

    // A still has everything, intact.
    assert_eq!(s.get_connection(&a, &c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(s.get_meeting(&a, &m.id).await.unwrap(), Some(m.clone()));
    assert_eq!(s.get_bot_job(&a, &j.id).await.unwrap().unwrap().value, j);
    assert_eq!(
        s.get_transcript(&a, &tr.id).await.unwrap(),
        Some(tr.clone())
    );
    assert_eq!(
        s.transcript_for_meeting(&a, &m.id).await.unwrap(),
        Some(tr.clone())
    );
    assert_eq!(
        s.summary_for_meeting(&a, &m.id).await.unwrap(),
        Some(su.clone())
    );
    assert_eq!(s.list_audit(&a).await.unwrap().len(), 1);

    // And A's own deletes work.
    assert!(s.delete_transcript(&a, &tr.id).await.unwrap());
    assert_eq!(s.get_transcript(&a, &tr.id).await.unwrap(), None);
}

async fn writes_to_an_unknown_tenant_are_refused(env: Env) {
    let ghost: TenantId = "ghosttenant1".parse().unwrap();
    let real = env.tenants.create("R").await.unwrap().id;
    let v = env.tenants.vault(&real).await.unwrap();
    let m = meeting(&v, 5);
    assert!(matches!(
        env.store.put_meeting(&ghost, &m).await,
        Err(StoreError::UnknownTenant(_))
    ));
    assert!(matches!(
        env.store.insert_bot_job(&ghost, &job(&m, &ghost)).await,
        Err(StoreError::UnknownTenant(_))
    ));
    assert!(
        !env.tenant_db_exists(&ghost).await,
        "a refused write must not create a database"
    );
    assert!(matches!(
        env.tenants.vault(&ghost).await,
        Err(VaultError::UnknownTenant(_))
    ));
}

async fn raw_database_holds_no_plaintext_of_transcripts_tokens_emails_or_titles(env: Env) {
    let t = env.tenants.create("Clinic").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let c = connection(&v);
    let m = meeting(&v, 10);
    let tr = transcript(&v, &m.id, None);
    env.store.put_connection(&t, &c).await.unwrap();
    env.store.put_meeting(&t, &m).await.unwrap();
    env.store.put_transcript(&t, &tr).await.unwrap();
    env.store
        .put_summary(&t, &summary(&v, &m.id))
        .await
        .unwrap();

    let dump = env.dump(&t).await;
    assert!(
        dump.len() > 1000,
        "the dump has the records ({} bytes)",
        dump.len()
    );
    assert!(
        contains(&dump, m.id.as_bytes()),
        "the dump does contain the records' ids"
    );
    for secret in [
        TRANSCRIPT_TEXT,
        ACCESS_TOKEN,
        EMAIL,
        TITLE,
        "1//refresh-plaintext-token",
        "Delacroix",
        "no further treatment",
    ] {
        assert!(
            !contains(&dump, secret.as_bytes()),
            "plaintext {secret:?} found in the raw store"
        );
    }
    // The store gives back what it was given, and the vault opens it.
    let back = env.store.get_transcript(&t, &tr.id).await.unwrap().unwrap();
    assert_eq!(
        &v.open::<Transcript>(&back.id, "segments", &back.segments)
            .unwrap()[..],
        TRANSCRIPT_TEXT.as_bytes()
    );
    let back = env.store.get_connection(&t, &c.id).await.unwrap().unwrap();
    assert_eq!(
        &v.open::<CalendarConnection>(&back.id, "access_token", &back.access_token)
            .unwrap()[..],
        ACCESS_TOKEN.as_bytes()
    );
}

async fn sealed_record_fails_to_open_as_another_tenant_or_record(env: Env) {
    let a = env.tenants.create("A").await.unwrap().id;
    let b = env.tenants.create("B").await.unwrap().id;
    let va = env.tenants.vault(&a).await.unwrap();
    let vb = env.tenants.vault(&b).await.unwrap();
    let m = meeting(&va, 10);
    let tr = transcript(&va, &m.id, None);
    env.store.put_transcript(&a, &tr).await.unwrap();
    let stored = env.store.get_transcript(&a, &tr.id).await.unwrap().unwrap();
    assert!(
        va.open::<Transcript>(&stored.id, "segments", &stored.segments)
            .is_ok()
    );
    // B's key, same record id: refused.
    assert!(
        vb.open::<Transcript>(&stored.id, "segments", &stored.segments)
            .is_err()
    );
    // A's key, copied onto another record: refused.
    let other = new_record_id();
    assert!(
        va.open::<Transcript>(&other, "segments", &stored.segments)
            .is_err()
    );
    // Moved into another collection or field: refused.
    assert!(
        va.open::<Summary>(&stored.id, "segments", &stored.segments)
            .is_err()
    );
    assert!(
        va.open::<Transcript>(&stored.id, "title", &stored.segments)
            .is_err()
    );
    // Copied into tenant B's database as-is, it still does not open there.
    let mut moved = stored.clone();
    moved.meeting_id = "m-b".into();
    env.store.put_transcript(&b, &moved).await.unwrap();
    let in_b = env
        .store
        .get_transcript(&b, &moved.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        vb.open::<Transcript>(&in_b.id, "segments", &in_b.segments)
            .is_err()
    );
}

async fn bot_job_idempotency_key_is_unique_and_updates_are_compare_and_set(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let m = meeting(&v, 10);
    let j = job(&m, &t);
    let v1 = env.store.insert_bot_job(&t, &j).await.unwrap();
    // Same idempotency key under a new job id: refused.
    let dup = BotJob {
        id: new_record_id(),
        ..j.clone()
    };
    assert!(matches!(
        env.store.insert_bot_job(&t, &dup).await,
        Err(StoreError::Conflict { .. })
    ));
    // Same id again: refused.
    assert!(matches!(
        env.store.insert_bot_job(&t, &j).await,
        Err(StoreError::Conflict { .. })
    ));

    let mut next = j.clone();
    next.state = BotJobState::Dispatched;
    next.history.push(StateChange {
        state: BotJobState::Dispatched,
        at: Utc::now(),
    });
    let v2 = env.store.update_bot_job(&t, &next, v1).await.unwrap();
    assert!(v2 > v1);
    // A second writer holding the old version loses.
    let mut stale = j.clone();
    stale.state = BotJobState::Cancelled;
    assert!(matches!(
        env.store.update_bot_job(&t, &stale, v1).await,
        Err(StoreError::Conflict { .. })
    ));
    let got = env.store.get_bot_job(&t, &j.id).await.unwrap().unwrap();
    assert_eq!(got.value.state, BotJobState::Dispatched);
    assert_eq!(got.version, v2);

    let due = env
        .store
        .find_bot_jobs(
            &t,
            &JobFilter {
                state: Some("dispatched"),
                join_before: Some(Utc::now() + CDuration::hours(1)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert!(
        env.store
            .find_bot_jobs(
                &t,
                &JobFilter {
                    state: Some("scheduled"),
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
}

fn delivery(v: &TenantVault, key: &str, meeting_id: &str, next_in_s: i64) -> Delivery {
    let id = format!("dl-{key}");
    let now = Utc::now();
    Delivery {
        target: v
            .seal::<Delivery>(&id, "target", b"ops-secret@example.com")
            .unwrap(),
        message: v
            .seal::<Delivery>(&id, "message", b"Budget approved; Sarah sends the contract")
            .unwrap(),
        id,
        idempotency_key: key.into(),
        meeting_id: meeting_id.into(),
        channel: DeliveryChannel::Email,
        state: DeliveryState::Pending,
        attempts: 0,
        next_at: now + CDuration::seconds(next_in_s),
        last_error: None,
        created_at: now,
    }
}

async fn the_outbox_keeps_one_delivery_per_key_lists_due_ones_and_updates_by_compare_and_set(
    env: Env,
) {
    let t = env.tenants.create("T").await.unwrap().id;
    let other = env.tenants.create("U").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let due = delivery(&v, "m1:email:a", "m1", -5);
    let later = delivery(&v, "m1:slack:b", "m1", 3600);
    assert!(env.store.insert_delivery(&t, &due).await.unwrap());
    assert!(env.store.insert_delivery(&t, &later).await.unwrap());
    // The same key again (a re-enqueue after a restart): kept once.
    assert!(!env.store.insert_delivery(&t, &due).await.unwrap());
    let now = Utc::now();
    let got = env
        .store
        .due_deliveries(&t, "pending", now, 10)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.value.id.as_str()).collect::<Vec<_>>(),
        [due.id.as_str()]
    );
    assert!(
        env.store
            .due_deliveries(&other, "pending", now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        env.store
            .get_delivery(&other, &due.id)
            .await
            .unwrap()
            .is_none()
    );

    // Claimed by one sender: a second holding the old version loses.
    let v1 = got[0].version;
    let mut claimed = got[0].value.clone();
    claimed.state = DeliveryState::Sending;
    claimed.next_at = now + CDuration::seconds(30);
    let v2 = env.store.update_delivery(&t, &claimed, v1).await.unwrap();
    assert!(matches!(
        env.store.update_delivery(&t, &claimed, v1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        env.store
            .due_deliveries(&t, "pending", now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let lapsed = env
        .store
        .due_deliveries(&t, "sending", now + CDuration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(lapsed.len(), 1);
    assert_eq!(lapsed[0].version, v2);
    let mut sent = claimed.clone();
    sent.state = DeliveryState::Sent { at: Utc::now() };
    env.store.update_delivery(&t, &sent, v2).await.unwrap();
    let all = env.store.list_deliveries(&t, Some("m1")).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(matches!(all[0].value.state, DeliveryState::Sent { .. }));
    assert!(
        env.store
            .list_deliveries(&t, Some("m2"))
            .await
            .unwrap()
            .is_empty()
    );
    // Targets and messages are sealed in the raw database.
    let raw = env.dump(&t).await;
    assert!(!contains(&raw, b"ops-secret@example.com"));
    assert!(!contains(&raw, b"Sarah sends the contract"));
    let opened = v
        .open_string::<Delivery>(&all[1].value.id, "target", &all[1].value.target)
        .unwrap();
    assert_eq!(opened, "ops-secret@example.com");
}

async fn meetings_list_by_start_window_in_order(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let ms: Vec<Meeting> = [90, 10, 50, -30].iter().map(|m| meeting(&v, *m)).collect();
    for m in &ms {
        env.store.put_meeting(&t, m).await.unwrap();
    }
    let now = Utc::now();
    let got = env
        .store
        .list_meetings(&t, Some(now), Some(now + CDuration::minutes(60)))
        .await
        .unwrap();
    let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec![ms[1].id.as_str(), ms[2].id.as_str()]);
    // Same provider instance id on the same connection is one meeting: a second record is a conflict.
    let mut clash = meeting(&v, 20);
    clash.event_instance_id = ms[0].event_instance_id.clone();
    assert!(matches!(
        env.store.put_meeting(&t, &clash).await,
        Err(StoreError::Conflict { .. })
    ));
}

async fn meetings_changed_since_a_point_are_listed_oldest_change_first(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let base = Utc::now() - CDuration::minutes(10);
    let mut ms = Vec::new();
    for i in 0..3 {
        let mut m = meeting(&v, 10 + i);
        m.updated_at = base + CDuration::minutes(i * 2);
        env.store.put_meeting(&t, &m).await.unwrap();
        ms.push(m);
    }
    let all = env.store.meetings_updated_since(&t, None).await.unwrap();
    assert_eq!(all.len(), 3);
    let recent = env
        .store
        .meetings_updated_since(&t, Some(base + CDuration::minutes(1)))
        .await
        .unwrap();
    let ids: Vec<&str> = recent.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec![ms[1].id.as_str(), ms[2].id.as_str()]);
    let other = env.tenants.create("O").await.unwrap().id;
    assert!(
        env.store
            .meetings_updated_since(&other, None)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn leases_are_exclusive_until_released_or_expired(env: Env) {
    let name = meetbot_testsupport::unique("lease-");
    assert!(
        env.store
            .try_lease(&name, "a", Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(
        !env.store
            .try_lease(&name, "b", Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(
        env.store
            .try_lease(&name, "a", Duration::from_secs(30))
            .await
            .unwrap(),
        "holder renews"
    );
    env.store.release_lease(&name, "b").await.unwrap();
    assert!(
        !env.store
            .try_lease(&name, "b", Duration::from_secs(30))
            .await
            .unwrap(),
        "non-holder cannot release"
    );
    assert_eq!(
        env.store.lease_holder(&name).await.unwrap().as_deref(),
        Some("a")
    );
    env.store.release_lease(&name, "a").await.unwrap();
    assert_eq!(env.store.lease_holder(&name).await.unwrap(), None);
    assert!(
        env.store
            .try_lease(&name, "b", Duration::from_millis(200))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        env.store.lease_holder(&name).await.unwrap(),
        None,
        "an expired lease has no holder"
    );
    assert!(
        env.store
            .try_lease(&name, "c", Duration::from_secs(30))
            .await
            .unwrap(),
        "expired lease is taken over"
    );
}

async fn concurrent_lease_attempts_have_exactly_one_winner(env: Env) {
    let store = env.store.clone();
    let name = meetbot_testsupport::unique("lease-");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        let n = name.clone();
        tasks.push(tokio::spawn(async move {
            s.try_lease(&n, &format!("h{i}"), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

async fn expired_transcripts_are_hidden_at_once_and_purged(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let m = meeting(&v, -60);
    let old = transcript(&v, &m.id, Some(Utc::now() - CDuration::seconds(1)));
    let m2 = meeting(&v, -30);
    let kept = transcript(&v, &m2.id, Some(Utc::now() + CDuration::days(30)));
    env.store.put_transcript(&t, &old).await.unwrap();
    env.store.put_transcript(&t, &kept).await.unwrap();
    assert_eq!(
        env.store.get_transcript(&t, &old.id).await.unwrap(),
        None,
        "expired is hidden before any purge"
    );
    assert_eq!(
        env.store.transcript_for_meeting(&t, &m.id).await.unwrap(),
        None
    );
    assert_eq!(
        env.store.list_transcripts(&t).await.unwrap(),
        vec![kept.clone()]
    );
    // A record without expiry is kept for good (a MongoDB-wire server that orders null before
    // dates in `$lte`, as mongoeco 4.11 does, must not make the purge take it).
    let m3 = meeting(&v, -20);
    let forever = transcript(&v, &m3.id, None);
    env.store.put_transcript(&t, &forever).await.unwrap();
    // MongoDB's TTL monitor may have removed it already; either way the purge leaves nothing.
    let counts = env.store.purge_expired(&t, Utc::now()).await.unwrap();
    assert!(counts.iter().all(|(_, n)| *n <= 1), "{counts:?}");
    assert_eq!(
        env.store.get_transcript(&t, &forever.id).await.unwrap(),
        Some(forever),
        "a record without expiry survives the purge"
    );
    assert!(
        !contains(&env.dump(&t).await, old.id.as_bytes()),
        "the purged record is gone from the raw store"
    );
}

async fn oauth_pending_is_taken_exactly_once_never_after_expiry_and_only_in_its_tenant(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let other = env.tenants.create("U").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let pending = |id: &str, ttl: i64| OAuthPending {
        id: id.into(),
        user_id: "user-1".into(),
        provider: CalendarProvider::Google,
        pkce_verifier: v
            .seal::<OAuthPending>(id, "pkce_verifier", b"verifier-secret-value")
            .unwrap(),
        browser_hash: "ab".repeat(32),
        created_at: Utc::now(),
        expires_at: Utc::now() + CDuration::seconds(ttl),
    };
    env.store
        .put_oauth_pending(&t, &pending("p1", 600))
        .await
        .unwrap();
    env.store
        .put_oauth_pending(&t, &pending("p2", -1))
        .await
        .unwrap();
    assert!(
        env.store
            .put_oauth_pending(&t, &pending("p1", 600))
            .await
            .is_err(),
        "an id is never reused"
    );
    assert_eq!(
        env.store.take_oauth_pending(&other, "p1").await.unwrap(),
        None
    );
    // Two callbacks with the same state at once: exactly one gets it.
    let (a, b) = tokio::join!(
        env.store.take_oauth_pending(&t, "p1"),
        env.store.take_oauth_pending(&t, "p1")
    );
    let got: Vec<OAuthPending> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].user_id, "user-1");
    assert_eq!(env.store.take_oauth_pending(&t, "p1").await.unwrap(), None);
    assert_eq!(
        env.store.take_oauth_pending(&t, "p2").await.unwrap(),
        None,
        "expired"
    );
    assert!(!contains(&env.dump(&t).await, b"verifier-secret-value"));
}

async fn user_settings_are_sealed_per_user_and_kept_through_key_rotation(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let settings = UserSettings {
        user_id: "user-1".into(),
        auto_join: v
            .seal::<UserSettings>(
                "user-1",
                "auto_join",
                br#"{"include_keywords":["Acme merger"]}"#,
            )
            .unwrap(),
        summary_email: false,
        updated_at: Utc::now(),
    };
    env.store.put_user_settings(&t, &settings).await.unwrap();
    assert_eq!(
        env.store.get_user_settings(&t, "user-1").await.unwrap(),
        Some(settings.clone())
    );
    assert_eq!(
        env.store.get_user_settings(&t, "user-2").await.unwrap(),
        None
    );
    assert!(!contains(&env.dump(&t).await, b"Acme merger"));
    env.tenants.rotate(&t).await.unwrap();
    env.tenants.reencrypt(&t).await.unwrap();
    env.tenants.retire_old_keys(&t).await.unwrap();
    let s = env
        .store
        .get_user_settings(&t, "user-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.auto_join.key_version, 2);
    let v2 = env.tenants.vault(&t).await.unwrap();
    assert!(
        v2.open_string::<UserSettings>("user-1", "auto_join", &s.auto_join)
            .unwrap()
            .contains("Acme merger")
    );
}

async fn tenant_settings_are_one_record_per_tenant_and_stay_in_it(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let u = env.tenants.create("U").await.unwrap().id;
    assert_eq!(env.store.get_tenant_settings(&t).await.unwrap(), None);
    let mut s = TenantSettings::new(
        BotRuleOverrides {
            alone_timeout_seconds: Some(30),
            ..Default::default()
        },
        Utc::now(),
    );
    env.store.put_tenant_settings(&t, &s).await.unwrap();
    s.bot.display_name = Some("Clinic notetaker (recording)".into());
    env.store.put_tenant_settings(&t, &s).await.unwrap();
    assert_eq!(env.store.get_tenant_settings(&t).await.unwrap(), Some(s));
    assert_eq!(env.store.get_tenant_settings(&u).await.unwrap(), None);
}

async fn rotation_keeps_old_records_readable_and_reencryption_moves_them(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let v1 = env.tenants.vault(&t).await.unwrap();
    let m = meeting(&v1, 10);
    let tr = transcript(&v1, &m.id, None);
    let c = connection(&v1);
    env.store.put_meeting(&t, &m).await.unwrap();
    env.store.put_transcript(&t, &tr).await.unwrap();
    env.store.put_connection(&t, &c).await.unwrap();

    assert_eq!(env.tenants.rotate(&t).await.unwrap(), 2);
    let v2 = env.tenants.vault(&t).await.unwrap();
    assert_eq!(v2.current_version(), 2);
    // Old record still opens; new seals use v2.
    let stored = env.store.get_transcript(&t, &tr.id).await.unwrap().unwrap();
    assert_eq!(stored.segments.key_version, 1);
    assert_eq!(
        &v2.open::<Transcript>(&tr.id, "segments", &stored.segments)
            .unwrap()[..],
        TRANSCRIPT_TEXT.as_bytes()
    );
    assert_eq!(
        v2.seal::<Summary>("x", "body", b"y").unwrap().key_version,
        2
    );

    // Old keys cannot be retired while records use them.
    assert!(matches!(
        env.tenants.retire_old_keys(&t).await,
        Err(VaultError::KeysInUse(2, _))
    ));
    let rep = env.tenants.reencrypt(&t).await.unwrap();
    assert_eq!(rep.records, 3);
    assert_eq!(rep.fields, 3 + 3 + 1);
    let destroyed = env.tenants.retire_old_keys(&t).await.unwrap();
    assert_eq!(
        destroyed.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(env.store.wrapped_keys(&t).await.unwrap().len(), 1);

    let v = env.tenants.vault(&t).await.unwrap();
    let stored = env.store.get_transcript(&t, &tr.id).await.unwrap().unwrap();
    assert_eq!(stored.segments.key_version, 2);
    assert_eq!(
        &v.open::<Transcript>(&tr.id, "segments", &stored.segments)
            .unwrap()[..],
        TRANSCRIPT_TEXT.as_bytes()
    );
    let cm = env.store.get_meeting(&t, &m.id).await.unwrap().unwrap();
    assert_eq!(
        &v.open::<Meeting>(&m.id, "title", &cm.title).unwrap()[..],
        TITLE.as_bytes()
    );
}

async fn tenant_erasure_destroys_keys_drops_the_database_and_leaves_a_verifiable_receipt(env: Env) {
    let t = env.tenants.create("Leaving Co").await.unwrap().id;
    let other = env.tenants.create("Staying Co").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let m = meeting(&v, 10);
    env.store.put_meeting(&t, &m).await.unwrap();
    let tr = transcript(&v, &m.id, None);
    env.store.put_transcript(&t, &tr).await.unwrap();
    let backup = env.store.get_transcript(&t, &tr.id).await.unwrap().unwrap();
    let wrapped_before = env.store.wrapped_keys(&t).await.unwrap();

    let receipt = env.tenants.erase(&t, "operator-7").await.unwrap();
    assert!(verify_receipt(&receipt));
    assert_eq!(receipt.scope, "tenant");
    assert!(
        receipt
            .counts
            .iter()
            .any(|(c, n)| c == "transcripts" && *n == 1)
    );
    assert!(
        receipt
            .counts
            .iter()
            .any(|(c, n)| c == "meetings" && *n == 1)
    );
    assert_eq!(receipt.keys_destroyed.len(), 1);
    assert!(receipt.keys_destroyed[0].starts_with(&format!("{t}/v1@local:")));

    assert!(!env.tenant_db_exists(&t).await, "tenant database dropped");
    assert!(
        env.store.wrapped_keys(&t).await.unwrap().is_empty(),
        "wrapped keys destroyed"
    );
    assert_eq!(
        env.store.get_tenant(&t).await.unwrap().unwrap().status,
        TenantStatus::Erased
    );
    assert!(matches!(
        env.tenants.vault(&t).await,
        Err(VaultError::UnknownTenant(_))
    ));
    assert!(matches!(
        env.store.put_meeting(&t, &m).await,
        Err(StoreError::UnknownTenant(_))
    ));
    assert!(
        !env.tenant_db_exists(&t).await,
        "a late write did not resurrect it"
    );

    // A backup of the sealed record cannot be opened: the only key that could is gone. Even
    // someone holding a copy of the old wrapped key and the KEK gets a key for tenant t v1 only,
    // which the receipt shows destroyed; without that copy nothing unwraps.
    assert!(env.store.wrapped_keys(&t).await.unwrap().is_empty());
    assert!(
        env.keys
            .unwrap(&t, 1, &wrapped_before[0].kek_id, b"not the wrapped key")
            .await
            .is_err()
    );
    let _ = backup;

    let receipts = env.store.deletion_receipts(Some(&t)).await.unwrap();
    assert_eq!(receipts, vec![receipt.clone()]);
    let mut forged = receipt.clone();
    forged.counts[0].1 += 1;
    assert!(!verify_receipt(&forged));
    // The other tenant is untouched.
    assert!(env.tenants.vault(&other).await.is_ok());
    assert!(env.tenant_db_exists(&other).await);
    // Erasing twice is an error, not a second receipt.
    assert!(env.tenants.erase(&t, "operator-7").await.is_err());
}

async fn users_sessions_and_api_keys_stay_in_their_tenant_expire_and_end_with_their_user(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let other = env.tenants.create("U").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let now = Utc::now();
    let user = |id: &str, hash: &str| User {
        id: id.into(),
        email_hash: hash.into(),
        email: v
            .seal::<User>(id, "email", format!("{id}@clinic.example").as_bytes())
            .unwrap(),
        role: Role::Member,
        subject_hash: None,
        totp: None,
        created_at: now,
        updated_at: now,
    };
    env.store.insert_user(&t, &user("u1", "h1")).await.unwrap();
    assert!(
        matches!(
            env.store.insert_user(&t, &user("u2", "h1")).await,
            Err(StoreError::Conflict { .. })
        ),
        "one user per address"
    );
    env.store.insert_user(&t, &user("u2", "h2")).await.unwrap();
    assert_eq!(
        env.store
            .user_by_email_hash(&t, "h2")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u2"
    );
    assert_eq!(
        env.store.user_by_email_hash(&other, "h2").await.unwrap(),
        None
    );
    let mut u = env.store.get_user(&t, "u1").await.unwrap().unwrap();
    u.role = Role::Owner;
    assert!(env.store.update_user(&t, &u).await.unwrap());
    assert_eq!(
        env.store.get_user(&t, "u1").await.unwrap().unwrap().role,
        Role::Owner
    );
    assert!(
        !env.store.update_user(&other, &u).await.unwrap(),
        "not in the other tenant"
    );
    assert_eq!(env.store.list_users(&t).await.unwrap().len(), 2);

    let session = |id: &str, user: &str, life: i64| Session {
        id: id.into(),
        user_id: user.into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + CDuration::seconds(life),
        mfa_passed: true,
        mfa_at: None,
    };
    env.store
        .put_session(&t, &session("s1", "u1", 600))
        .await
        .unwrap();
    env.store
        .put_session(&t, &session("s2", "u1", 600))
        .await
        .unwrap();
    env.store
        .put_session(&t, &session("s3", "u2", 600))
        .await
        .unwrap();
    env.store
        .put_session(&t, &session("s4", "u2", -1))
        .await
        .unwrap();
    assert!(env.store.get_session(&t, "s1").await.unwrap().is_some());
    assert_eq!(env.store.get_session(&other, "s1").await.unwrap(), None);
    assert_eq!(
        env.store.get_session(&t, "s4").await.unwrap(),
        None,
        "expired"
    );
    assert!(env.store.delete_session(&t, "s3").await.unwrap());
    assert_eq!(env.store.get_session(&t, "s3").await.unwrap(), None);
    // Removing a user ends their sessions.
    assert!(env.store.delete_user(&t, "u1").await.unwrap());
    assert_eq!(env.store.get_session(&t, "s1").await.unwrap(), None);
    assert_eq!(env.store.get_session(&t, "s2").await.unwrap(), None);
    assert_eq!(env.store.get_user(&t, "u1").await.unwrap(), None);

    let key = ApiKey {
        id: "k1".into(),
        name: "crm".into(),
        secret_hash: "aa".repeat(32),
        scopes: vec!["meetings:read".into()],
        created_by: "u2".into(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
        expires_at: Some(now + CDuration::days(90)),
    };
    env.store.put_api_key(&t, &key).await.unwrap();
    assert_eq!(env.store.get_api_key(&other, "k1").await.unwrap(), None);
    let mut k = env.store.get_api_key(&t, "k1").await.unwrap().unwrap();
    k.revoked_at = Some(now);
    env.store.put_api_key(&t, &k).await.unwrap();
    assert!(
        env.store.list_api_keys(&t).await.unwrap()[0]
            .revoked_at
            .is_some()
    );

    let pending = |id: &str, ttl: i64| SignInPending {
        id: id.into(),
        provider: "google".into(),
        nonce: v
            .seal::<SignInPending>(id, "nonce", b"nonce-value-secret")
            .unwrap(),
        pkce_verifier: v
            .seal::<SignInPending>(id, "pkce_verifier", b"sign-in-verifier-secret")
            .unwrap(),
        browser_hash: "cd".repeat(32),
        created_at: now,
        expires_at: now + CDuration::seconds(ttl),
    };
    env.store
        .put_signin_pending(&t, &pending("p1", 600))
        .await
        .unwrap();
    env.store
        .put_signin_pending(&t, &pending("p2", -1))
        .await
        .unwrap();
    assert_eq!(
        env.store.take_signin_pending(&other, "p1").await.unwrap(),
        None
    );
    let (a, b) = tokio::join!(
        env.store.take_signin_pending(&t, "p1"),
        env.store.take_signin_pending(&t, "p1")
    );
    assert_eq!([a.unwrap(), b.unwrap()].into_iter().flatten().count(), 1);
    assert_eq!(
        env.store.take_signin_pending(&t, "p2").await.unwrap(),
        None,
        "expired"
    );

    let raw = env.dump(&t).await;
    assert!(!contains(&raw, b"u2@clinic.example"));
    assert!(!contains(&raw, b"sign-in-verifier-secret"));
    assert!(contains(&raw, b"crm"), "the check can fail");
}

async fn the_audit_log_is_one_hash_chain_and_tampering_below_the_store_is_named(env: Env) {
    use meetbot_store::audit::{ChainBreak, verify};
    let t = env.tenants.create("T").await.unwrap().id;
    let other = env.tenants.create("U").await.unwrap().id;
    // Concurrent appends each get their own number, all linked.
    let appends = (0..12).map(|i| {
        let s = env.store.clone();
        let t = t.clone();
        async move { s.append_audit(&t, &audit(&format!("a{i}"))).await.unwrap() }
    });
    let stored = futures::future::join_all(appends).await;
    let mut seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    env.store
        .append_audit(&other, &audit("elsewhere"))
        .await
        .unwrap();
    let ok = verify(&*env.store, &t).await.unwrap().unwrap();
    assert_eq!(ok.entries, 12);
    assert_eq!(ok.head.as_ref().unwrap().seq, 12);
    assert_eq!(env.store.list_audit(&t).await.unwrap().len(), 12);

    env.tamper_audit(&t, 5, Some("meeting:someone-else")).await;
    let broken = verify(&*env.store, &t).await.unwrap().unwrap_err();
    assert!(
        matches!(broken, ChainBreak::Altered { seq: 5, .. }),
        "{broken}"
    );
    assert!(broken.to_string().contains("entry 5"));
    env.tamper_audit(&t, 5, Some("t-1")).await;
    assert!(verify(&*env.store, &t).await.unwrap().is_ok(), "restored");

    env.tamper_audit(&t, 7, None).await;
    let broken = verify(&*env.store, &t).await.unwrap().unwrap_err();
    assert!(
        matches!(
            broken,
            ChainBreak::Missing {
                seq: 8,
                before: 6,
                missing: 1,
                ..
            }
        ),
        "{broken}"
    );

    // Removing the newest entries is noticed through the head kept in the control database.
    let t2 = env.tenants.create("V").await.unwrap().id;
    for i in 0..3 {
        env.store
            .append_audit(&t2, &audit(&format!("b{i}")))
            .await
            .unwrap();
    }
    env.tamper_audit(&t2, 3, None).await;
    assert_eq!(
        verify(&*env.store, &t2).await.unwrap().unwrap_err(),
        ChainBreak::Truncated { last: 2, head: 3 }
    );
    // The other tenant's chain is its own and sound.
    assert_eq!(
        verify(&*env.store, &other).await.unwrap().unwrap().entries,
        1
    );
}

/// Attack: an idle refresh racing a sign-out re-created the deleted session (`put_session` is
/// an upsert). The refresh replaces a session only while it exists.
async fn a_signed_out_session_is_not_brought_back_by_an_idle_refresh(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let now = Utc::now();
    let s = Session {
        id: "s1".into(),
        user_id: "u1".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + CDuration::seconds(600),
        mfa_passed: true,
        mfa_at: None,
    };
    env.store.put_session(&t, &s).await.unwrap();
    let later = Session {
        last_seen_at: now + CDuration::seconds(30),
        ..s.clone()
    };
    assert!(env.store.refresh_session(&t, &later).await.unwrap());
    assert_eq!(
        env.store
            .get_session(&t, "s1")
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        later.last_seen_at
    );
    // Signed out, then a request that read the session before the sign-out refreshes it.
    assert!(env.store.delete_session(&t, "s1").await.unwrap());
    assert!(!env.store.refresh_session(&t, &later).await.unwrap());
    assert_eq!(env.store.get_session(&t, "s1").await.unwrap(), None);
    // Concurrent refreshes of a live session all see it alive; a concurrent sign-out wins.
    env.store.put_session(&t, &s).await.unwrap();
    let (a, b) = tokio::join!(
        env.store.refresh_session(&t, &later),
        env.store.refresh_session(&t, &later)
    );
    assert!(a.unwrap() && b.unwrap());
    for _ in 0..20 {
        env.store.put_session(&t, &s).await.unwrap();
        let (_, del) = tokio::join!(
            env.store.refresh_session(&t, &later),
            env.store.delete_session(&t, "s1")
        );
        assert!(del.unwrap());
        assert_eq!(
            env.store.get_session(&t, "s1").await.unwrap(),
            None,
            "a sign-out stays a sign-out"
        );
    }
}

async fn user_updates_by_compare_and_set_have_exactly_one_winner(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let other = env.tenants.create("U").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let now = Utc::now();
    let u = User {
        id: "u1".into(),
        email_hash: "h1".into(),
        email: v.seal::<User>("u1", "email", b"u1@clinic.example").unwrap(),
        role: Role::Member,
        subject_hash: None,
        totp: Some(TotpState {
            secret: v.seal::<User>("u1", "totp_secret", b"0123456789").unwrap(),
            confirmed: true,
            last_step: 7,
            failures: 2,
            locked_until: Some(now),
            lockouts: 1,
        }),
        created_at: now,
        updated_at: now,
    };
    env.store.insert_user(&t, &u).await.unwrap();
    let got = env
        .store
        .get_user_versioned(&t, "u1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, u, "the TOTP counts are kept as written");
    assert_eq!(
        env.store.get_user_versioned(&other, "u1").await.unwrap(),
        None
    );
    assert_eq!(
        env.store.get_user_versioned(&t, "nobody").await.unwrap(),
        None
    );
    // Two writers read the same version (two requests spending one TOTP code): one wins.
    let mut a = got.value.clone();
    a.totp.as_mut().unwrap().last_step = 8;
    let mut b = got.value.clone();
    b.totp.as_mut().unwrap().failures = 3;
    let (ra, rb) = tokio::join!(
        env.store.update_user_at(&t, &a, got.version),
        env.store.update_user_at(&t, &b, got.version)
    );
    assert!(ra.is_ok() != rb.is_ok(), "exactly one wins: {ra:?} {rb:?}");
    let loser = if ra.is_ok() { rb } else { ra };
    assert!(
        matches!(loser, Err(StoreError::Conflict { .. })),
        "{loser:?}"
    );
    let now_held = env
        .store
        .get_user_versioned(&t, "u1")
        .await
        .unwrap()
        .unwrap();
    assert!(now_held.version > got.version);
    assert!(now_held.value == a || now_held.value == b);
    // The winner's next write at the new version passes; a stale one keeps failing.
    let v3 = env
        .store
        .update_user_at(&t, &now_held.value, now_held.version)
        .await
        .unwrap();
    assert!(v3 > now_held.version);
    assert!(matches!(
        env.store.update_user_at(&t, &a, got.version).await,
        Err(StoreError::Conflict { .. })
    ));
    // Not in another tenant, and not once the user is gone.
    assert!(matches!(
        env.store.update_user_at(&other, &a, v3).await,
        Err(StoreError::Conflict { .. })
    ));
    env.store.delete_user(&t, "u1").await.unwrap();
    assert!(matches!(
        env.store.update_user_at(&t, &a, v3).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(env.store.get_user(&t, "u1").await.unwrap(), None);
}

async fn api_key_updates_by_compare_and_set_never_undo_a_revocation(env: Env) {
    let t = env.tenants.create("T").await.unwrap().id;
    let other = env.tenants.create("U").await.unwrap().id;
    let now = Utc::now();
    let key = ApiKey {
        id: "k1".into(),
        name: "crm".into(),
        secret_hash: "aa".repeat(32),
        scopes: vec!["meetings:read".into()],
        created_by: "u1".into(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
        expires_at: Some(now + CDuration::days(90)),
    };
    // Not there yet: nothing to compare against.
    assert!(matches!(
        env.store.update_api_key_at(&t, &key, 1).await,
        Err(StoreError::Conflict { .. })
    ));
    env.store.put_api_key(&t, &key).await.unwrap();
    let read = env
        .store
        .get_api_key_versioned(&t, "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.value, key);
    assert_eq!(
        env.store.get_api_key_versioned(&other, "k1").await.unwrap(),
        None
    );
    // A request's use and an admin's revocation, both from the same read: one wins.
    let mut used = read.value.clone();
    used.last_used_at = Some(now);
    let mut revoked = read.value.clone();
    revoked.revoked_at = Some(now);
    let (ru, rr) = tokio::join!(
        env.store.update_api_key_at(&t, &used, read.version),
        env.store.update_api_key_at(&t, &revoked, read.version)
    );
    assert!(ru.is_ok() != rr.is_ok(), "exactly one wins: {ru:?} {rr:?}");
    // Whichever lost, revoking from a fresh read lands, and a stale use cannot undo it.
    let held = env
        .store
        .get_api_key_versioned(&t, "k1")
        .await
        .unwrap()
        .unwrap();
    assert!(held.version > read.version);
    let mut revoke = held.value.clone();
    revoke.revoked_at = Some(now);
    let v = env
        .store
        .update_api_key_at(&t, &revoke, held.version)
        .await
        .unwrap();
    assert!(v > held.version);
    for stale in [&used, &held.value] {
        for version in [read.version, held.version] {
            assert!(matches!(
                env.store.update_api_key_at(&t, stale, version).await,
                Err(StoreError::Conflict { .. })
            ));
        }
    }
    assert!(
        env.store
            .get_api_key(&t, "k1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    // Not in another tenant.
    assert!(matches!(
        env.store.update_api_key_at(&other, &revoke, v).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(env.store.get_api_key(&other, "k1").await.unwrap(), None);
}

async fn transcript_parts_are_idempotent_by_id_listed_per_job_removed_per_job_and_stay_in_their_tenant(
    env: Env,
) {
    let t = env.tenants.create("T").await.unwrap().id;
    let other = env.tenants.create("U").await.unwrap().id;
    let v = env.tenants.vault(&t).await.unwrap();
    let part = |id: &str, job: &str, last_seq: u64, expires: CDuration| TranscriptPart {
        id: id.into(),
        meeting_id: "m1".into(),
        job_id: job.into(),
        stream: "s1".into(),
        participant: "feed-7".into(),
        last_seq,
        resume_ms: last_seq * 20,
        last_ts: Some(960),
        stream_started_at: Utc::now(),
        body: v
            .seal::<TranscriptPart>(id, "body", b"the words of a running meeting")
            .unwrap(),
        created_at: Utc::now(),
        expires_at: Some(Utc::now() + expires),
    };
    let s = &env.store;
    let p1 = part("p1", "j1", 10, CDuration::hours(48));
    s.put_transcript_part(&t, &p1).await.unwrap();
    // The same part again (a replayed utterance): still one.
    s.put_transcript_part(&t, &p1).await.unwrap();
    s.put_transcript_part(&t, &part("p2", "j1", 20, CDuration::hours(48)))
        .await
        .unwrap();
    s.put_transcript_part(&t, &part("p3", "j2", 5, CDuration::hours(48)))
        .await
        .unwrap();
    s.put_transcript_part(&t, &part("gone", "j1", 30, CDuration::seconds(-1)))
        .await
        .unwrap();
    let ids = |ps: Vec<TranscriptPart>| ps.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.transcript_parts(&t, "m1", Some("j1")).await.unwrap()),
        ["p1", "p2"],
        "one job's parts, oldest first, the expired one hidden"
    );
    assert_eq!(s.transcript_parts(&t, "m1", None).await.unwrap().len(), 3);
    assert!(s.transcript_parts(&t, "m2", None).await.unwrap().is_empty());
    // Another tenant neither sees nor removes them.
    assert!(
        s.transcript_parts(&other, "m1", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.delete_transcript_parts(&other, "m1", None).await.unwrap(),
        0
    );
    // Sealed as stored.
    assert!(!contains(
        &env.dump(&t).await,
        b"the words of a running meeting"
    ));
    assert_eq!(
        s.delete_transcript_parts(&t, "m1", Some("j1"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        ids(s.transcript_parts(&t, "m1", None).await.unwrap()),
        ["p3"]
    );
    // Key rotation reaches parts: retiring the old key waits until they are re-sealed.
    env.tenants.rotate(&t).await.unwrap();
    assert!(matches!(
        env.tenants.retire_old_keys(&t).await,
        Err(VaultError::KeysInUse(2, 1))
    ));
    assert_eq!(env.tenants.reencrypt(&t).await.unwrap().records, 1);
    env.tenants.retire_old_keys(&t).await.unwrap();
    let p3 = s.all_transcript_parts(&t).await.unwrap().remove(0);
    assert_eq!(p3.body.key_version, 2);
    let v2 = env.tenants.vault(&t).await.unwrap();
    assert_eq!(
        &v2.open::<TranscriptPart>(&p3.id, "body", &p3.body).unwrap()[..],
        b"the words of a running meeting"
    );
    assert_eq!(s.delete_transcript_parts(&t, "m1", None).await.unwrap(), 1);
}

async fn copies_of_a_meeting_are_found_by_reference_and_the_index_key_outlives_rotation_not_the_tenant(
    env: Env,
) {
    let t = env.tenants.create("T").await.unwrap().id;
    let u = env.tenants.create("U").await.unwrap().id;
    let parts: [&[u8]; 2] = [b"teams:19:meeting_x/0", b"UID-1"];
    let r = env
        .tenants
        .blind_index(&t, "meeting/v1", &parts)
        .await
        .unwrap();
    assert_eq!(
        r,
        env.tenants
            .blind_index(&t, "meeting/v1", &parts)
            .await
            .unwrap()
    );
    assert_ne!(
        r,
        env.tenants
            .blind_index(&u, "meeting/v1", &parts)
            .await
            .unwrap(),
        "another tenant's index key"
    );
    let v = env.tenants.vault(&t).await.unwrap();
    let mut copies = Vec::new();
    for minutes in [10, 20] {
        let mut m = meeting(&v, minutes);
        m.meeting_ref = Some(r.clone());
        env.store.put_meeting(&t, &m).await.unwrap();
        copies.push(m.id);
    }
    let lone = meeting(&v, 30);
    env.store.put_meeting(&t, &lone).await.unwrap();
    let mut found: Vec<String> = env
        .store
        .meetings_with_ref(&t, &r)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    found.sort();
    copies.sort();
    assert_eq!(found, copies);
    assert!(
        env.store
            .meetings_with_ref(&u, &r)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        env.store
            .meetings_with_ref(&t, "")
            .await
            .unwrap()
            .is_empty()
    );

    // Rotation and retirement of data keys leave the index key, and so every reference, as is.
    env.tenants.rotate(&t).await.unwrap();
    env.tenants.reencrypt(&t).await.unwrap();
    env.tenants.retire_old_keys(&t).await.unwrap();
    assert_eq!(
        env.tenants
            .blind_index(&t, "meeting/v1", &parts)
            .await
            .unwrap(),
        r
    );

    // Erasing the tenant destroys it with the data keys.
    let receipt = env.tenants.erase(&t, "operator").await.unwrap();
    assert!(
        receipt
            .keys_destroyed
            .iter()
            .any(|k| k.contains(&format!("/v{}@", u32::MAX))),
        "{:?}",
        receipt.keys_destroyed
    );
    assert!(env.store.wrapped_keys(&t).await.unwrap().is_empty());
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod embedded_sqlite { $( #[tokio::test] async fn $case() { super::$case(super::sqlite().await).await } )* }
        mod mongodb_wire { $( #[tokio::test] async fn $case() { super::$case(super::mongodb().await).await } )* }
    };
}

suite!(
    tenants_are_registered_listed_and_get_their_own_database,
    no_repository_method_reads_or_deletes_across_tenants,
    writes_to_an_unknown_tenant_are_refused,
    raw_database_holds_no_plaintext_of_transcripts_tokens_emails_or_titles,
    sealed_record_fails_to_open_as_another_tenant_or_record,
    bot_job_idempotency_key_is_unique_and_updates_are_compare_and_set,
    the_outbox_keeps_one_delivery_per_key_lists_due_ones_and_updates_by_compare_and_set,
    meetings_list_by_start_window_in_order,
    meetings_changed_since_a_point_are_listed_oldest_change_first,
    leases_are_exclusive_until_released_or_expired,
    concurrent_lease_attempts_have_exactly_one_winner,
    expired_transcripts_are_hidden_at_once_and_purged,
    rotation_keeps_old_records_readable_and_reencryption_moves_them,
    oauth_pending_is_taken_exactly_once_never_after_expiry_and_only_in_its_tenant,
    user_settings_are_sealed_per_user_and_kept_through_key_rotation,
    tenant_settings_are_one_record_per_tenant_and_stay_in_it,
    tenant_erasure_destroys_keys_drops_the_database_and_leaves_a_verifiable_receipt,
    users_sessions_and_api_keys_stay_in_their_tenant_expire_and_end_with_their_user,
    user_updates_by_compare_and_set_have_exactly_one_winner,
    the_audit_log_is_one_hash_chain_and_tampering_below_the_store_is_named,
    a_signed_out_session_is_not_brought_back_by_an_idle_refresh,
    api_key_updates_by_compare_and_set_never_undo_a_revocation,
    transcript_parts_are_idempotent_by_id_listed_per_job_removed_per_job_and_stay_in_their_tenant,
    copies_of_a_meeting_are_found_by_reference_and_the_index_key_outlives_rotation_not_the_tenant,
);

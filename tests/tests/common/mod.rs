#![allow(dead_code)] // each test binary uses its own part of this module
//! Set-up shared by the calendar tests.

use chrono::Utc;
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_crypto::LocalKeyFile;
use meetbot_store::vault::Tenants;
use meetbot_store::{SqliteEngine, Store, init_engine};
use std::sync::Arc;

/// A tenant on its own embedded store with one connected calendar.
pub struct Connected {
    pub tenants: Arc<Tenants>,
    pub store: Arc<dyn Store>,
    pub tenant: TenantId,
    pub conn: String,
    pub _dir: tempfile::TempDir,
}

/// A tenant named `name` on its own embedded store and local key file.
pub async fn embedded_tenant(
    name: &str,
) -> (Arc<Tenants>, Arc<dyn Store>, TenantId, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = init_engine(SqliteEngine::open(&dir.path().join("s")).unwrap())
        .await
        .unwrap();
    let tenants = Arc::new(Tenants::new(
        store.clone(),
        Arc::new(LocalKeyFile::open_or_create(&dir.path().join("k")).unwrap()),
    ));
    let tenant = tenants.create(name).await.unwrap().id;
    (tenants, store, tenant, dir)
}

/// A calendar connection of `user_id` in `t`, with its token and address sealed; its id.
pub async fn connection(
    tenants: &Tenants,
    t: &TenantId,
    user_id: &str,
    provider: CalendarProvider,
    token: &str,
    user_email: &str,
) -> String {
    let v = tenants.vault(t).await.unwrap();
    let id = new_record_id();
    let now = Utc::now();
    let conn = CalendarConnection {
        account_email: v
            .seal::<CalendarConnection>(&id, "account_email", user_email.as_bytes())
            .unwrap(),
        access_token: v
            .seal::<CalendarConnection>(&id, "access_token", token.as_bytes())
            .unwrap(),
        refresh_token: None,
        id: id.clone(),
        user_id: user_id.into(),
        provider,
        scopes: vec![],
        access_expires_at: None,
        status: ConnectionStatus::Active,
        sync_cursor: None,
        push: None,
        last_sync: None,
        created_at: now,
        updated_at: now,
    };
    tenants.store().put_connection(t, &conn).await.unwrap();
    id
}

pub async fn connected(provider: CalendarProvider, token: &str, user_email: &str) -> Connected {
    let (tenants, store, tenant, dir) = embedded_tenant("Customer").await;
    let id = connection(&tenants, &tenant, "user-1", provider, token, user_email).await;
    Connected {
        tenants,
        store,
        tenant,
        conn: id,
        _dir: dir,
    }
}

/// A session of `user` in `t` with every factor given, living `life`: its token.
pub async fn mint(store: &dyn Store, t: &TenantId, user: &str, life: chrono::Duration) -> String {
    let (token, id) = meetbot_api::auth::new_session_token(t).unwrap();
    let now = Utc::now();
    store
        .put_session(
            t,
            &Session {
                id,
                user_id: user.into(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + life,
                mfa_passed: true,
                mfa_at: None,
            },
        )
        .await
        .unwrap();
    token
}

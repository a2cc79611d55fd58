//! Tenants and their keys: creation, sealing and opening of fields, rotation, re-encryption and
//! crypto-erasure with a deletion receipt.

use crate::{Store, StoreError};
use chrono::Utc;
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::*;
use meetbot_crypto::{Aad, CryptoError, DataKey, KeyProvider, KeyProviderError, open, seal};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyProviderError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("tenant {0} does not exist or has been erased")]
    UnknownTenant(TenantId),
    #[error("tenant {tenant} has no data key version {version} (destroyed or never created)")]
    MissingKeyVersion { tenant: TenantId, version: u32 },
    #[error(
        "key versions below {0} are still in use by {1} sealed fields: run re-encryption first"
    )]
    KeysInUse(u32, u64),
    #[error("stored data is malformed: {0}")]
    Malformed(String),
}

/// The wrapped-key version under which a tenant's blind-index key is kept: never current (no
/// field is sealed under it), never retired by rotation, destroyed with the tenant.
pub const INDEX_KEY_VERSION: u32 = u32::MAX;

/// One tenant's unwrapped data keys, in memory only.
pub struct TenantVault {
    tenant: TenantId,
    current: u32,
    keys: HashMap<u32, DataKey>,
    /// The blind-index key, once created (see [`Tenants::blind_index`]).
    index: Option<DataKey>,
}

impl TenantVault {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Seals one field of record `record_id` of collection `R::COLLECTION`.
    pub fn seal<R: SealedRecord>(
        &self,
        record_id: &str,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Sealed, VaultError> {
        self.seal_in(R::COLLECTION, record_id, field, plaintext)
    }

    pub fn seal_in(
        &self,
        collection: &str,
        record_id: &str,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Sealed, VaultError> {
        let key = self.key(self.current)?;
        let aad = Aad {
            tenant: &self.tenant,
            collection,
            record_id,
            field,
        };
        Ok(seal(key, self.current, &aad, plaintext)?)
    }

    /// Opens a field sealed by [`TenantVault::seal`] for the same record and field.
    pub fn open<R: SealedRecord>(
        &self,
        record_id: &str,
        field: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.open_in(R::COLLECTION, record_id, field, sealed)
    }

    /// [`TenantVault::open`], as text (invalid UTF-8 replaced, as stored values are always text).
    pub fn open_string<R: SealedRecord>(
        &self,
        record_id: &str,
        field: &str,
        sealed: &Sealed,
    ) -> Result<String, VaultError> {
        Ok(String::from_utf8_lossy(&self.open::<R>(record_id, field, sealed)?).into_owned())
    }

    pub fn open_in(
        &self,
        collection: &str,
        record_id: &str,
        field: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self.key(sealed.key_version)?;
        let aad = Aad {
            tenant: &self.tenant,
            collection,
            record_id,
            field,
        };
        Ok(open(key, &aad, sealed)?)
    }

    fn key(&self, version: u32) -> Result<&DataKey, VaultError> {
        self.keys
            .get(&version)
            .ok_or(VaultError::MissingKeyVersion {
                tenant: self.tenant.clone(),
                version,
            })
    }

    /// Re-seals every field of `rec` not under the current key; returns how many changed.
    fn reseal<R: SealedRecord>(&self, rec: &mut R) -> Result<u64, VaultError> {
        let id = rec.record_id().to_string();
        let mut n = 0;
        for (field, sealed) in rec.sealed_fields_mut() {
            if sealed.key_version != self.current {
                let plain = self.open_in(R::COLLECTION, &id, field, sealed)?;
                *sealed = self.seal_in(R::COLLECTION, &id, field, &plain)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// What a re-encryption pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReencryptReport {
    pub records: u64,
    pub fields: u64,
}

/// Tenant lifecycle over a [`Store`] and a [`KeyProvider`].
pub struct Tenants {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyProvider>,
    cache: Mutex<HashMap<TenantId, Arc<TenantVault>>>,
}

impl Tenants {
    pub fn new(store: Arc<dyn Store>, keys: Arc<dyn KeyProvider>) -> Self {
        Tenants {
            store,
            keys,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Registers a tenant with a fresh data key (v1), wrapped by the key provider.
    pub async fn create(&self, name: &str) -> Result<Tenant, VaultError> {
        let id = TenantId::generate();
        let key = DataKey::generate()?;
        let w = self.keys.wrap(&id, 1, &key).await?;
        let now = Utc::now();
        let tenant = Tenant {
            id: id.clone(),
            name: name.to_string(),
            status: TenantStatus::Active,
            current_key_version: 1,
            created_at: now,
            erased_at: None,
        };
        let wrapped = WrappedKey {
            tenant_id: id.clone(),
            version: 1,
            provider: self.keys.name().to_string(),
            kek_id: w.kek_id,
            algorithm: w.algorithm,
            wrapped: w.wrapped,
            created_at: now,
        };
        self.store.create_tenant(&tenant, &wrapped).await?;
        Ok(tenant)
    }

    /// The tenant's unwrapped keys (cached in memory after the first call).
    pub async fn vault(&self, t: &TenantId) -> Result<Arc<TenantVault>, VaultError> {
        if let Some(v) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(t) {
            return Ok(v.clone());
        }
        let v = Arc::new(self.load(t).await?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t.clone(), v.clone());
        Ok(v)
    }

    fn forget(&self, t: &TenantId) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(t);
    }

    async fn load(&self, t: &TenantId) -> Result<TenantVault, VaultError> {
        let tenant = match self.store.get_tenant(t).await? {
            Some(x) if x.status == TenantStatus::Active => x,
            _ => return Err(VaultError::UnknownTenant(t.clone())),
        };
        let mut keys = HashMap::new();
        let mut index = None;
        for w in self.store.wrapped_keys(t).await? {
            let k = self
                .keys
                .unwrap(t, w.version, &w.kek_id, &w.wrapped)
                .await?;
            if w.version == INDEX_KEY_VERSION {
                index = Some(k);
            } else {
                keys.insert(w.version, k);
            }
        }
        if !keys.contains_key(&tenant.current_key_version) {
            return Err(VaultError::MissingKeyVersion {
                tenant: t.clone(),
                version: tenant.current_key_version,
            });
        }
        Ok(TenantVault {
            tenant: t.clone(),
            current: tenant.current_key_version,
            keys,
            index,
        })
    }

    /// A blind index of `parts` under the tenant's index key (HMAC-SHA-256, hex): the same
    /// value for the same parts whatever the data-key rotations, and nothing an attacker with
    /// the database alone can recompute. The key is made on first use, once per tenant (two
    /// replicas racing keep the one stored first), and destroyed with the tenant.
    pub async fn blind_index(
        &self,
        t: &TenantId,
        domain: &str,
        parts: &[&[u8]],
    ) -> Result<String, VaultError> {
        let vault = self.vault(t).await?;
        if let Some(k) = &vault.index {
            return Ok(k.blind_index(domain, parts));
        }
        let key = DataKey::generate()?;
        let w = self.keys.wrap(t, INDEX_KEY_VERSION, &key).await?;
        let wrapped = WrappedKey {
            tenant_id: t.clone(),
            version: INDEX_KEY_VERSION,
            provider: self.keys.name().to_string(),
            kek_id: w.kek_id,
            algorithm: w.algorithm,
            wrapped: w.wrapped,
            created_at: Utc::now(),
        };
        match self.store.add_index_key(&wrapped).await {
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(StoreError::UnknownTenant(t)) => return Err(VaultError::UnknownTenant(t)),
            Err(e) => return Err(e.into()),
        }
        self.forget(t);
        let vault = self.vault(t).await?;
        let k = vault.index.as_ref().ok_or_else(|| {
            VaultError::Malformed("the blind-index key was stored but does not load".into())
        })?;
        Ok(k.blind_index(domain, parts))
    }

    /// Adds a new data-key version and makes it current. Records sealed under older versions
    /// still open; [`Tenants::reencrypt`] moves them.
    pub async fn rotate(&self, t: &TenantId) -> Result<u32, VaultError> {
        let vault = self.load(t).await?;
        let version = vault.current + 1;
        let key = DataKey::generate()?;
        let w = self.keys.wrap(t, version, &key).await?;
        self.store
            .add_key_version(&WrappedKey {
                tenant_id: t.clone(),
                version,
                provider: self.keys.name().to_string(),
                kek_id: w.kek_id,
                algorithm: w.algorithm,
                wrapped: w.wrapped,
                created_at: Utc::now(),
            })
            .await?;
        self.forget(t);
        Ok(version)
    }

    /// Re-seals every sealed field of the tenant under its current key version.
    pub async fn reencrypt(&self, t: &TenantId) -> Result<ReencryptReport, VaultError> {
        self.forget(t);
        let vault = self.vault(t).await?;
        let s = &self.store;
        let mut rep = ReencryptReport::default();
        let mut count = |n: u64| {
            if n > 0 {
                rep.records += 1;
                rep.fields += n;
            }
            n > 0
        };
        for mut c in s.list_connections(t).await? {
            if count(vault.reseal(&mut c)?) {
                s.put_connection(t, &c).await?;
            }
        }
        for mut m in s.list_meetings(t, None, None).await? {
            if count(vault.reseal(&mut m)?) {
                s.put_meeting(t, &m).await?;
            }
        }
        for mut x in s.list_transcripts(t).await? {
            if count(vault.reseal(&mut x)?) {
                s.put_transcript(t, &x).await?;
            }
        }
        for mut x in s.list_summaries(t).await? {
            if count(vault.reseal(&mut x)?) {
                s.put_summary(t, &x).await?;
            }
        }
        for mut x in s.all_transcript_parts(t).await? {
            if count(vault.reseal(&mut x)?) {
                s.put_transcript_part(t, &x).await?;
            }
        }
        for mut x in s.list_user_settings(t).await? {
            if count(vault.reseal(&mut x)?) {
                s.put_user_settings(t, &x).await?;
            }
        }
        if let Some(mut x) = s.get_tenant_settings(t).await?
            && count(vault.reseal(&mut x)?)
        {
            s.put_tenant_settings(t, &x).await?;
        }
        for mut x in s.list_users(t).await? {
            if count(vault.reseal(&mut x)?) {
                s.update_user(t, &x).await?;
            }
        }
        for d in s.list_deliveries(t, None).await? {
            let mut x = d.value;
            if count(vault.reseal(&mut x)?) {
                // A delivery changing meanwhile (sent, retried) keeps its old key version;
                // retiring that version then refuses until reencrypt runs again.
                let _ = s.update_delivery(t, &x, d.version).await;
            }
        }
        Ok(rep)
    }

    /// Destroys key versions older than the current one, after checking no record still uses them.
    pub async fn retire_old_keys(&self, t: &TenantId) -> Result<Vec<WrappedKey>, VaultError> {
        let vault = self.load(t).await?;
        let current = vault.current;
        let s = &self.store;
        let mut stale = 0u64;
        let mut tally = |fields: Vec<(&'static str, &mut Sealed)>| {
            stale += fields
                .iter()
                .filter(|(_, f)| f.key_version < current)
                .count() as u64;
        };
        for mut c in s.list_connections(t).await? {
            tally(c.sealed_fields_mut());
        }
        for mut m in s.list_meetings(t, None, None).await? {
            tally(m.sealed_fields_mut());
        }
        for mut x in s.list_transcripts(t).await? {
            tally(x.sealed_fields_mut());
        }
        for mut x in s.list_summaries(t).await? {
            tally(x.sealed_fields_mut());
        }
        for mut x in s.all_transcript_parts(t).await? {
            tally(x.sealed_fields_mut());
        }
        for mut x in s.list_user_settings(t).await? {
            tally(x.sealed_fields_mut());
        }
        if let Some(mut x) = s.get_tenant_settings(t).await? {
            tally(x.sealed_fields_mut());
        }
        for mut x in s.list_users(t).await? {
            tally(x.sealed_fields_mut());
        }
        for d in s.list_deliveries(t, None).await? {
            let mut x = d.value;
            tally(x.sealed_fields_mut());
        }
        if stale > 0 {
            return Err(VaultError::KeysInUse(current, stale));
        }
        let destroyed = s.destroy_key_versions_below(t, current).await?;
        self.forget(t);
        Ok(destroyed)
    }

    /// Crypto-erasure of a whole tenant: its wrapped keys destroyed, its database dropped, and a
    /// receipt written to the deletion log (outside the tenant database).
    pub async fn erase(
        &self,
        t: &TenantId,
        requested_by: &str,
    ) -> Result<DeletionReceipt, VaultError> {
        let erasure = self.store.erase_tenant(t).await.map_err(|e| match e {
            StoreError::UnknownTenant(t) => VaultError::UnknownTenant(t),
            other => VaultError::Store(other),
        })?;
        self.forget(t);
        let mut receipt = DeletionReceipt {
            id: new_record_id(),
            tenant_id: t.clone(),
            scope: "tenant".into(),
            target: t.to_string(),
            requested_by: requested_by.to_string(),
            erased_at: Utc::now(),
            counts: erasure.counts,
            keys_destroyed: erasure
                .keys_destroyed
                .iter()
                .map(|k| format!("{}/v{}@{}", k.tenant_id, k.version, k.kek_id))
                .collect(),
            digest: String::new(),
        };
        receipt.digest = receipt_digest(&receipt);
        self.store.record_deletion(&receipt).await?;
        Ok(receipt)
    }
}

/// SHA-256 (hex) of `b`.
pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// SHA-256 (hex) of the receipt's JSON with an empty digest field.
pub fn receipt_digest(r: &DeletionReceipt) -> String {
    let mut copy = r.clone();
    copy.digest = String::new();
    let json = serde_json::to_vec(&copy).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// True when the receipt's digest matches its content.
pub fn verify_receipt(r: &DeletionReceipt) -> bool {
    receipt_digest(r) == r.digest
}

//! One suite, every `KeyProvider`: the local key file and Azure Key Vault (SDK against the
//! stand-in of the documented REST API).

use meetbot_core::TenantId;
use meetbot_crypto::{AzureKeyVaultProvider, DataKey, KeyProvider, LocalKeyFile};
use meetbot_testsupport::keyvault::{KeyVaultStandIn, StandInCredential, client_options};
use std::sync::Arc;

struct Env {
    provider: Arc<dyn KeyProvider>,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn local() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalKeyFile::open_or_create(&dir.path().join("kek.key")).unwrap();
    Env {
        provider: Arc::new(p),
        _keep: Box::new(dir),
    }
}

async fn azure() -> Env {
    let vault = KeyVaultStandIn::start("meetbot-kek").await;
    let p = AzureKeyVaultProvider::new(
        &vault.vault_url(),
        "meetbot-kek",
        Arc::new(StandInCredential),
        client_options(),
        false,
    )
    .unwrap();
    Env {
        provider: Arc::new(p),
        _keep: Box::new(vault),
    }
}

fn tenant(s: &str) -> TenantId {
    s.parse().unwrap()
}

async fn wrapped_key_unwraps_to_the_same_key(env: Env) {
    let p = &env.provider;
    let t = tenant("tenantaaa1");
    let key = DataKey::generate().unwrap();
    let w = p.wrap(&t, 1, &key).await.unwrap();
    assert!(
        !w.wrapped.windows(32).any(|x| x == key.expose()),
        "wrapped form contains the key"
    );
    let back = p.unwrap(&t, 1, &w.kek_id, &w.wrapped).await.unwrap();
    assert_eq!(back.expose(), key.expose());
}

async fn wrapped_key_refuses_another_tenant_or_version(env: Env) {
    let p = &env.provider;
    let key = DataKey::generate().unwrap();
    let w = p.wrap(&tenant("tenantaaa1"), 1, &key).await.unwrap();
    assert!(
        p.unwrap(&tenant("tenantbbb1"), 1, &w.kek_id, &w.wrapped)
            .await
            .is_err()
    );
    assert!(
        p.unwrap(&tenant("tenantaaa1"), 2, &w.kek_id, &w.wrapped)
            .await
            .is_err()
    );
}

async fn tampered_wrapped_key_is_refused(env: Env) {
    let p = &env.provider;
    let t = tenant("tenantaaa1");
    let w = p.wrap(&t, 1, &DataKey::generate().unwrap()).await.unwrap();
    let mut bad = w.wrapped.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    assert!(p.unwrap(&t, 1, &w.kek_id, &bad).await.is_err());
    assert!(
        p.unwrap(&t, 1, &w.kek_id, &w.wrapped[..w.wrapped.len() / 2])
            .await
            .is_err()
    );
}

async fn readiness_check_passes_when_the_kek_is_usable(env: Env) {
    env.provider.check().await.unwrap();
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod local_key_file { $( #[tokio::test] async fn $case() { super::$case(super::local().await).await } )* }
        mod azure_key_vault { $( #[tokio::test] async fn $case() { super::$case(super::azure().await).await } )* }
    };
}

suite!(
    wrapped_key_unwraps_to_the_same_key,
    wrapped_key_refuses_another_tenant_or_version,
    tampered_wrapped_key_is_refused,
    readiness_check_passes_when_the_kek_is_usable,
);

#[tokio::test]
async fn azure_provider_answers_the_vault_challenge_then_sends_a_bearer_token() {
    let vault = KeyVaultStandIn::start("meetbot-kek").await;
    let p = AzureKeyVaultProvider::new(
        &vault.vault_url(),
        "meetbot-kek",
        Arc::new(StandInCredential),
        client_options(),
        false,
    )
    .unwrap();
    let t = tenant("tenantaaa1");
    let w = p.wrap(&t, 1, &DataKey::generate().unwrap()).await.unwrap();
    assert!(
        w.kek_id.contains("/keys/meetbot-kek/"),
        "kid names the key and version: {}",
        w.kek_id
    );
    assert_eq!(w.algorithm, "RSA-OAEP-256");
    assert_eq!(
        vault.challenges(),
        1,
        "first request is sent without a token and challenged"
    );
    assert_eq!(vault.requests(), 2, "then retried once with the token");
}

#[tokio::test]
async fn azure_provider_reports_a_deleted_vault_key_as_an_error_naming_the_vault() {
    let vault = KeyVaultStandIn::start("meetbot-kek").await;
    let p = AzureKeyVaultProvider::new(
        &vault.vault_url(),
        "meetbot-kek",
        Arc::new(StandInCredential),
        client_options(),
        false,
    )
    .unwrap();
    let t = tenant("tenantaaa1");
    let w = p.wrap(&t, 1, &DataKey::generate().unwrap()).await.unwrap();
    vault.delete_key();
    let err = p
        .unwrap(&t, 1, &w.kek_id, &w.wrapped)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&vault.vault_url()), "{err}");
    assert!(p.check().await.is_err());
}

use crate::{DataKey, KeyProvider, KeyProviderError, WrapOutput};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientUnwrapKeyOptions, KeyOperationParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions, ResourceId};
use meetbot_core::TenantId;
use meetbot_core::config::{AzureCredentialKind, AzureKeyVaultConfig};
use std::sync::Arc;
use zeroize::Zeroizing;

const PROVIDER: &str = "azure-key-vault";
const ALG: &str = "RSA-OAEP-256";

/// Data keys wrapped by an RSA key in Azure Key Vault (`wrapKey` / `unwrapKey`, RSA-OAEP-256).
///
/// The wrapped payload is `meetbot:v1:<tenant>:<version>:` followed by the 32 key bytes, so a
/// wrapped key moved to another tenant or version is refused on unwrap.
pub struct AzureKeyVaultProvider {
    client: KeyClient,
    key_name: String,
    vault_url: String,
}

impl AzureKeyVaultProvider {
    /// `client_options` is where deployments add proxies, retries or extra pipeline policies.
    pub fn new(
        vault_url: &str,
        key_name: &str,
        credential: Arc<dyn TokenCredential>,
        client_options: ClientOptions,
        verify_challenge_resource: bool,
    ) -> Result<Self, KeyProviderError> {
        let options = KeyClientOptions {
            client_options,
            verify_challenge_resource: Some(verify_challenge_resource),
            ..Default::default()
        };
        let client = KeyClient::new(vault_url, credential, Some(options))
            .map_err(|e| unavailable(vault_url, e))?;
        Ok(AzureKeyVaultProvider {
            client,
            key_name: key_name.to_string(),
            vault_url: vault_url.to_string(),
        })
    }

    pub fn from_config(cfg: &AzureKeyVaultConfig) -> Result<Self, KeyProviderError> {
        let cred = azure_credential_from_config(cfg)?;
        Self::new(
            &cfg.vault_url,
            &cfg.key_name,
            cred,
            ClientOptions::default(),
            true,
        )
    }
}

/// The credential the production deployment authenticates to Key Vault with.
pub fn azure_credential_from_config(
    cfg: &AzureKeyVaultConfig,
) -> Result<Arc<dyn TokenCredential>, KeyProviderError> {
    let err = |e: azure_core::Error| KeyProviderError::Unavailable {
        provider: PROVIDER,
        detail: format!("cannot build the {:?} credential: {e}", cfg.credential),
    };
    Ok(match cfg.credential {
        AzureCredentialKind::ManagedIdentity => {
            let opts =
                cfg.client_id
                    .clone()
                    .map(|id| azure_identity::ManagedIdentityCredentialOptions {
                        user_assigned_id: Some(azure_identity::UserAssignedId::ClientId(id)),
                        ..Default::default()
                    });
            azure_identity::ManagedIdentityCredential::new(opts).map_err(err)?
        }
        AzureCredentialKind::ClientSecret => azure_identity::ClientSecretCredential::new(
            cfg.tenant_id.as_deref().unwrap_or_default(),
            cfg.client_id.clone().unwrap_or_default(),
            cfg.client_secret.clone().unwrap_or_default().into(),
            None,
        )
        .map_err(err)?,
    })
}

fn unavailable(vault_url: &str, e: impl std::fmt::Display) -> KeyProviderError {
    KeyProviderError::Unavailable {
        provider: PROVIDER,
        detail: format!("{vault_url}: {e}"),
    }
}

fn binding(tenant: &TenantId, version: u32) -> String {
    format!("meetbot:v1:{tenant}:{version}:")
}

fn params(value: Vec<u8>) -> KeyOperationParameters {
    KeyOperationParameters {
        algorithm: Some(EncryptionAlgorithm::RsaOaep256),
        value: Some(value),
        ..Default::default()
    }
}

#[async_trait]
impl KeyProvider for AzureKeyVaultProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn wrap(
        &self,
        tenant: &TenantId,
        version: u32,
        key: &DataKey,
    ) -> Result<WrapOutput, KeyProviderError> {
        let mut payload = Zeroizing::new(binding(tenant, version).into_bytes());
        payload.extend_from_slice(key.expose());
        let body = params(payload.to_vec())
            .try_into()
            .map_err(|e| unavailable(&self.vault_url, e))?;
        let result = self
            .client
            .wrap_key(&self.key_name, body, None)
            .await
            .map_err(|e| unavailable(&self.vault_url, e))?
            .into_model()
            .map_err(|e| unavailable(&self.vault_url, e))?;
        let (Some(kid), Some(wrapped)) = (result.kid, result.result) else {
            return Err(unavailable(
                &self.vault_url,
                "wrapKey answered without kid or value",
            ));
        };
        Ok(WrapOutput {
            kek_id: kid,
            algorithm: ALG.into(),
            wrapped,
        })
    }

    async fn unwrap(
        &self,
        tenant: &TenantId,
        version: u32,
        kek_id: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, KeyProviderError> {
        let refused = |detail: String| KeyProviderError::Unwrap {
            provider: PROVIDER,
            detail,
        };
        let rid: ResourceId = kek_id
            .parse()
            .map_err(|e| refused(format!("key id {kek_id:?} is not a Key Vault key URL: {e}")))?;
        let Some(kek_version) = rid.version else {
            return Err(refused(format!("key id {kek_id:?} has no key version")));
        };
        let body = params(wrapped.to_vec())
            .try_into()
            .map_err(|e| unavailable(&self.vault_url, e))?;
        let result = self
            .client
            .unwrap_key(
                &rid.name,
                &kek_version,
                body,
                None::<KeyClientUnwrapKeyOptions<'_>>,
            )
            .await
            .map_err(|e| unavailable(&self.vault_url, e))?
            .into_model()
            .map_err(|e| unavailable(&self.vault_url, e))?;
        let plain = Zeroizing::new(
            result
                .result
                .ok_or_else(|| refused("unwrapKey answered without a value".into()))?,
        );
        let expect = binding(tenant, version);
        match plain.strip_prefix(expect.as_bytes()) {
            Some(key) => Ok(DataKey::from_bytes(key)?),
            None => Err(refused(format!(
                "the wrapped key is not data key v{version} of tenant {tenant}"
            ))),
        }
    }

    async fn check(&self) -> Result<(), KeyProviderError> {
        // A wrap of a throwaway key proves the credential, the vault and the key permission together.
        let probe_tenant: TenantId = "readinessprobe"
            .parse()
            .map_err(|e| unavailable(&self.vault_url, e))?;
        self.wrap(&probe_tenant, 0, &DataKey::generate()?)
            .await
            .map(|_| ())
    }
}

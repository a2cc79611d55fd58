use crate::DataKey;
use async_trait::async_trait;
use meetbot_core::TenantId;

/// A wrapped data key and what is needed to unwrap it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrapOutput {
    /// Identifier of the KEK that wrapped it (with its version where the provider has versions).
    pub kek_id: String,
    pub algorithm: String,
    pub wrapped: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyProviderError {
    #[error("key provider {provider} is unreachable or refused the request: {detail}")]
    Unavailable {
        provider: &'static str,
        detail: String,
    },
    #[error("key provider {provider} cannot unwrap this key: {detail}")]
    Unwrap {
        provider: &'static str,
        detail: String,
    },
    #[error("key file {path}: {detail}")]
    KeyFile { path: String, detail: String },
    #[error(transparent)]
    Crypto(#[from] crate::CryptoError),
}

/// The seam between meetbot and whatever holds key-encryption keys.
///
/// Implementations: [`crate::LocalKeyFile`] (single machine) and
/// [`crate::AzureKeyVaultProvider`] (production). Both pass the same conformance suite
/// (`tests/tests/key_provider_conformance.rs`).
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// Short provider name stored beside every wrapped key.
    fn name(&self) -> &'static str;

    /// Wraps `key`, the data key `version` of `tenant`. The wrapping is bound to that tenant and
    /// version where the algorithm allows associated data.
    async fn wrap(
        &self,
        tenant: &TenantId,
        version: u32,
        key: &DataKey,
    ) -> Result<WrapOutput, KeyProviderError>;

    /// Unwraps what [`KeyProvider::wrap`] produced.
    async fn unwrap(
        &self,
        tenant: &TenantId,
        version: u32,
        kek_id: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, KeyProviderError>;

    /// Readiness: the KEK is reachable and usable.
    async fn check(&self) -> Result<(), KeyProviderError>;
}

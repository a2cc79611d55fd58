//! Envelope encryption for meetbot.
//!
//! * Each tenant has a random 256-bit **data key** per version; it exists in plain only in memory
//!   ([`DataKey`] zeroizes on drop) and is stored only **wrapped** by a key-encryption key (KEK)
//!   held by a [`KeyProvider`]: a local key file or Azure Key Vault.
//! * Sensitive fields are [`seal`]ed with AES-256-GCM under the data key with a fresh random 96-bit
//!   nonce and associated data binding the ciphertext to its tenant, collection, record and field
//!   ([`Aad`]): a ciphertext copied anywhere else fails to open.

mod aead;
mod azure;
mod local;
mod provider;

pub use aead::{Aad, CryptoError, DataKey, open, seal};
pub use azure::{AzureKeyVaultProvider, azure_credential_from_config};
pub use local::LocalKeyFile;
pub use provider::{KeyProvider, KeyProviderError, WrapOutput};

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// `n` random bytes from the system CSPRNG, hex-encoded (for channel secrets and the like).
pub fn random_hex(n: usize) -> Result<String, CryptoError> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CryptoError::Random)?;
    Ok(hex::encode(b))
}

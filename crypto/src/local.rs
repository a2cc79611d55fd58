use crate::{Aad, DataKey, KeyProvider, KeyProviderError, WrapOutput, open, seal};
use async_trait::async_trait;
use meetbot_core::TenantId;
use meetbot_core::model::Sealed;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A key-encryption key kept in a local file (32 random bytes, mode 0600), for single-machine
/// installs and `meetbot dev`. Data keys are wrapped with AES-256-GCM bound to tenant and version.
pub struct LocalKeyFile {
    path: PathBuf,
    kek: DataKey,
    kek_id: String,
}

const ALG: &str = "A256GCM-local";

impl LocalKeyFile {
    /// Opens the key file, creating it (and its directory) with a fresh key if it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyProviderError> {
        let err = |detail: String| KeyProviderError::KeyFile {
            path: path.display().to_string(),
            detail,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| err(format!("cannot create its directory: {e}")))?;
                }
                let key = DataKey::generate()?;
                write_private(path, key.expose())
                    .map_err(|e| err(format!("cannot create it: {e}")))?;
                key.expose().to_vec()
            }
            Err(e) => return Err(err(format!("cannot read it: {e}"))),
        };
        let kek = DataKey::from_bytes(&bytes).map_err(|_| {
            err(format!(
                "holds {} bytes; a key file holds exactly 32",
                bytes.len()
            ))
        })?;
        let kek_id = format!("local:{}", &hex::encode(Sha256::digest(kek.expose()))[..16]);
        Ok(LocalKeyFile {
            path: path.to_path_buf(),
            kek,
            kek_id,
        })
    }

    pub fn kek_id(&self) -> &str {
        &self.kek_id
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn wrap_aad(tenant: &TenantId, version: u32) -> (TenantId, String) {
    (tenant.clone(), format!("v{version}"))
}

#[async_trait]
impl KeyProvider for LocalKeyFile {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn wrap(
        &self,
        tenant: &TenantId,
        version: u32,
        key: &DataKey,
    ) -> Result<WrapOutput, KeyProviderError> {
        let (t, v) = wrap_aad(tenant, version);
        let aad = Aad {
            tenant: &t,
            collection: "data_keys",
            record_id: &v,
            field: "key",
        };
        let s = seal(&self.kek, 0, &aad, key.expose())?;
        let mut wrapped = s.nonce;
        wrapped.extend_from_slice(&s.ciphertext);
        Ok(WrapOutput {
            kek_id: self.kek_id.clone(),
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
        if kek_id != self.kek_id {
            return Err(KeyProviderError::Unwrap {
                provider: "local",
                detail: format!(
                    "it was wrapped by {kek_id}, but {} holds {}",
                    self.path.display(),
                    self.kek_id
                ),
            });
        }
        if wrapped.len() < 12 {
            return Err(KeyProviderError::Unwrap {
                provider: "local",
                detail: "wrapped key is truncated".into(),
            });
        }
        let (t, v) = wrap_aad(tenant, version);
        let aad = Aad {
            tenant: &t,
            collection: "data_keys",
            record_id: &v,
            field: "key",
        };
        let sealed = Sealed {
            key_version: 0,
            nonce: wrapped[..12].to_vec(),
            ciphertext: wrapped[12..].to_vec(),
        };
        let plain = open(&self.kek, &aad, &sealed).map_err(|e| KeyProviderError::Unwrap {
            provider: "local",
            detail: e.to_string(),
        })?;
        Ok(DataKey::from_bytes(&plain)?)
    }

    async fn check(&self) -> Result<(), KeyProviderError> {
        match std::fs::metadata(&self.path) {
            Ok(_) => Ok(()),
            Err(e) => Err(KeyProviderError::KeyFile {
                path: self.path.display().to_string(),
                detail: format!("no longer readable: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn key_file_is_created_private_and_reopened_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/kek.key");
        let a = LocalKeyFile::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let b = LocalKeyFile::open_or_create(&path).unwrap();
        assert_eq!(a.kek_id(), b.kek_id());
    }

    #[tokio::test]
    async fn a_corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.key");
        std::fs::write(&path, b"short").unwrap();
        let err = LocalKeyFile::open_or_create(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("exactly 32") && err.contains("kek.key"),
            "{err}"
        );
    }
}

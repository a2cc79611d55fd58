use aws_lc_rs::aead::{AES_256_GCM, Aad as LcAad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use meetbot_core::TenantId;
use meetbot_core::model::Sealed;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A 256-bit AES key, wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh key from the system CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| CryptoError::Random)?;
        Ok(DataKey(k))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        Ok(DataKey(arr))
    }

    /// The raw key, for wrapping by a [`crate::KeyProvider`] only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// A blind index of `parts` under this key: HMAC-SHA-256 over the length-prefixed parts,
    /// hex. Equal inputs give equal indexes; without the key an index reveals nothing of its
    /// input, not even a guessable one (a meeting id, an address).
    pub fn blind_index(&self, domain: &str, parts: &[&[u8]]) -> String {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        hex::encode(ctx.sign().as_ref())
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the system random number generator failed")]
    Random,
    #[error("a data key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("sealed value is malformed (nonce of {0} bytes)")]
    Malformed(usize),
    #[error(
        "sealed value does not open: wrong key, or it belongs to another tenant, record or field, or it was altered"
    )]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// Associated data that binds a ciphertext to where it lives.
#[derive(Clone, Debug)]
pub struct Aad<'a> {
    pub tenant: &'a TenantId,
    pub collection: &'a str,
    pub record_id: &'a str,
    pub field: &'a str,
}

impl Aad<'_> {
    fn bytes(&self, key_version: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"meetbot/seal/v1");
        for part in [
            self.tenant.as_str(),
            self.collection,
            self.record_id,
            self.field,
        ] {
            v.push(0);
            v.extend_from_slice(&(part.len() as u32).to_be_bytes());
            v.extend_from_slice(part.as_bytes());
        }
        v.extend_from_slice(&key_version.to_be_bytes());
        v
    }
}

/// Seals `plaintext` under `key` (version `key_version`) with a fresh random nonce.
pub fn seal(
    key: &DataKey,
    key_version: u32,
    aad: &Aad<'_>,
    plaintext: &[u8],
) -> Result<Sealed, CryptoError> {
    let lkey =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).map_err(|_| CryptoError::Seal)?);
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::Random)?;
    let mut buf = plaintext.to_vec();
    lkey.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        LcAad::from(aad.bytes(key_version)),
        &mut buf,
    )
    .map_err(|_| CryptoError::Seal)?;
    Ok(Sealed {
        key_version,
        nonce: nonce.to_vec(),
        ciphertext: buf,
    })
}

/// Opens a value sealed by [`seal`]; the plaintext is wiped when the returned buffer drops.
pub fn open(
    key: &DataKey,
    aad: &Aad<'_>,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let nonce: [u8; NONCE_LEN] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Malformed(sealed.nonce.len()))?;
    let lkey =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).map_err(|_| CryptoError::Open)?);
    let mut buf = Zeroizing::new(sealed.ciphertext.clone());
    let len = lkey
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            LcAad::from(aad.bytes(sealed.key_version)),
            &mut buf,
        )
        .map_err(|_| CryptoError::Open)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blind_index_depends_on_the_key_the_domain_and_every_part_boundary() {
        let k = DataKey::generate().unwrap();
        let other = DataKey::generate().unwrap();
        let a = k.blind_index("meeting", &[b"ab", b"c"]);
        assert_eq!(a, k.blind_index("meeting", &[b"ab", b"c"]));
        assert_eq!(a.len(), 64);
        assert_ne!(
            a,
            k.blind_index("meeting", &[b"a", b"bc"]),
            "part boundaries"
        );
        assert_ne!(a, k.blind_index("person", &[b"ab", b"c"]), "domain");
        assert_ne!(a, other.blind_index("meeting", &[b"ab", b"c"]), "key");
    }
    use proptest::prelude::*;

    fn t(s: &str) -> TenantId {
        s.parse().unwrap()
    }

    fn aad<'a>(tenant: &'a TenantId, record: &'a str) -> Aad<'a> {
        Aad {
            tenant,
            collection: "transcripts",
            record_id: record,
            field: "segments",
        }
    }

    #[test]
    fn sealed_value_opens_only_in_its_own_tenant_record_and_field() {
        let key = DataKey::generate().unwrap();
        let (a, b) = (t("tenanta1"), t("tenantb1"));
        let s = seal(&key, 1, &aad(&a, "r1"), b"the quarterly numbers").unwrap();
        assert_eq!(
            &open(&key, &aad(&a, "r1"), &s).unwrap()[..],
            b"the quarterly numbers"
        );
        assert_eq!(
            open(&key, &aad(&b, "r1"), &s),
            Err(CryptoError::Open),
            "other tenant"
        );
        assert_eq!(
            open(&key, &aad(&a, "r2"), &s),
            Err(CryptoError::Open),
            "other record"
        );
        let other_field = Aad {
            field: "title",
            ..aad(&a, "r1")
        };
        assert_eq!(
            open(&key, &other_field, &s),
            Err(CryptoError::Open),
            "other field"
        );
        let mut relabelled = s.clone();
        relabelled.key_version = 2;
        assert_eq!(
            open(&key, &aad(&a, "r1"), &relabelled),
            Err(CryptoError::Open),
            "version label"
        );
        assert_eq!(
            open(&DataKey::generate().unwrap(), &aad(&a, "r1"), &s),
            Err(CryptoError::Open)
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let key = DataKey::generate().unwrap();
        let a = t("tenanta1");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let s = seal(&key, 1, &aad(&a, "r"), b"x").unwrap();
            assert_eq!(s.nonce.len(), 12);
            assert!(seen.insert(s.nonce), "nonce reused");
        }
    }

    #[test]
    fn ciphertext_does_not_contain_the_plaintext() {
        let key = DataKey::generate().unwrap();
        let a = t("tenanta1");
        let p = b"patient reports chest pain since Tuesday";
        let s = seal(&key, 1, &aad(&a, "r"), p).unwrap();
        assert!(
            !s.ciphertext
                .windows(8)
                .any(|w| p.windows(8).any(|x| x == w))
        );
    }

    proptest! {
        #[test]
        fn tampered_or_truncated_ciphertext_never_opens_and_never_panics(
            pt in proptest::collection::vec(any::<u8>(), 0..256),
            flip in any::<usize>(),
            nonce_len in (0usize..20).prop_filter("not the real length", |n| *n != 12),
        ) {
            let key = DataKey::generate().unwrap();
            let a = t("tenanta1");
            let s = seal(&key, 3, &aad(&a, "r"), &pt).unwrap();
            prop_assert_eq!(&open(&key, &aad(&a, "r"), &s).unwrap()[..], &pt[..]);
            let mut bad = s.clone();
            let i = flip % bad.ciphertext.len();
            bad.ciphertext[i] ^= 0x01;
            prop_assert_eq!(open(&key, &aad(&a, "r"), &bad), Err(CryptoError::Open));
            let mut short = s.clone();
            short.nonce.resize(nonce_len, 0);
            prop_assert!(open(&key, &aad(&a, "r"), &short).is_err());
        }
    }
}

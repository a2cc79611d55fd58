//! Identifiers that cross crate and process boundaries.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A tenant (customer) identifier.
///
/// It names the tenant's own database (`<prefix>_t_<id>` in MongoDB, `<id>.sqlite3` on disk),
/// so its alphabet is restricted to what both allow: 6 to 32 lowercase ASCII letters and digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("tenant id {0:?} is invalid: use 6 to 32 lowercase letters and digits")]
    Tenant(String),
}

impl TenantId {
    /// A fresh random tenant id (20 characters, 100 bits of entropy in base32-ish lowercase hex).
    pub fn generate() -> Self {
        let raw = uuid::Uuid::new_v4().simple().to_string();
        TenantId(raw[..20].to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (6..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(TenantId(s.to_string()))
        } else {
            Err(IdError::Tenant(s.chars().take(64).collect()))
        }
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh record id: a UUIDv7 (time-ordered) in its hyphenated form.
pub fn new_record_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tenant_ids_parse_back() {
        for _ in 0..100 {
            let t = TenantId::generate();
            assert_eq!(t.as_str().parse::<TenantId>().unwrap(), t);
        }
    }

    #[test]
    fn tenant_id_rejects_characters_that_could_escape_a_database_name() {
        for bad in [
            "abc",
            "ABCDEFGH",
            "abc/def",
            "abc.def",
            "abc$def1",
            "a b c d e f",
            "",
            &"a".repeat(33),
        ] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn tenant_id_parser_never_panics_and_accepts_only_its_alphabet(s in ".{0,40}") {
            if let Ok(t) = s.parse::<TenantId>() {
                prop_assert!(t.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            }
        }
    }
}

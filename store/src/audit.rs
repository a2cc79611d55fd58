//! Checking a tenant's audit chain (`meetbot audit verify`).
//!
//! Each entry carries its number (`seq`, from 1, no gaps), the hash of the entry before
//! (`prev`) and its own hash over all of that ([`AuditEvent::chain_hash`]); the control
//! database keeps the newest (seq, hash). An edited entry no longer matches its hash; a removed
//! one leaves a gap; a removed tail falls short of the head; entries that cannot even be read
//! are named as such.

use crate::{Result, Store};
use meetbot_core::TenantId;
use meetbot_core::model::{AUDIT_GENESIS, AuditEvent, AuditHead};

/// Where the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq} (record {record}) cannot be read: {detail}")]
    Unreadable {
        seq: u64,
        record: String,
        detail: String,
    },
    #[error("entry {seq} (id {id}) was altered: its content no longer matches its hash")]
    Altered { seq: u64, id: String },
    #[error(
        "entry {seq} (id {id}) does not follow entry {before}: {missing} entry(ies) before it were removed"
    )]
    Missing {
        seq: u64,
        id: String,
        before: u64,
        missing: u64,
    },
    #[error("entry {seq} (id {id}) is not linked to the entry before it")]
    Unlinked { seq: u64, id: String },
    #[error(
        "the chain ends at entry {last}, but the head recorded entry {head}: the newest entries were removed"
    )]
    Truncated { last: u64, head: u64 },
    #[error("entry {seq} is not the one the head recorded")]
    HeadMismatch { seq: u64 },
}

/// What a sound chain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    pub entries: u64,
    pub head: Option<AuditHead>,
}

/// Checks `entries` (in stored order) against each other and against `head`.
pub fn check(entries: &[AuditEvent], head: Option<&AuditHead>) -> Result<u64, ChainBreak> {
    let mut prev_seq = 0u64;
    let mut prev_hash = AUDIT_GENESIS.to_string();
    for e in entries {
        if e.hash != e.chain_hash() {
            return Err(ChainBreak::Altered {
                seq: e.seq,
                id: e.id.clone(),
            });
        }
        if e.seq != prev_seq + 1 {
            return Err(ChainBreak::Missing {
                seq: e.seq,
                id: e.id.clone(),
                before: prev_seq,
                missing: e.seq.saturating_sub(prev_seq + 1),
            });
        }
        if e.prev != prev_hash {
            return Err(ChainBreak::Unlinked {
                seq: e.seq,
                id: e.id.clone(),
            });
        }
        prev_seq = e.seq;
        prev_hash = e.hash.clone();
    }
    if let Some(h) = head {
        if prev_seq < h.seq {
            return Err(ChainBreak::Truncated {
                last: prev_seq,
                head: h.seq,
            });
        }
        if let Some(e) = entries.iter().find(|e| e.seq == h.seq)
            && e.hash != h.hash
        {
            return Err(ChainBreak::HeadMismatch { seq: h.seq });
        }
    }
    Ok(prev_seq)
}

/// Reads the tenant's chain record by record (so that one unreadable entry is named, not
/// fatal) and checks it.
pub async fn verify(store: &dyn Store, t: &TenantId) -> Result<Result<ChainReport, ChainBreak>> {
    let raws = store.audit_records(t).await?;
    let mut entries = Vec::with_capacity(raws.len());
    for (i, (record, body)) in raws.into_iter().enumerate() {
        match serde_json::from_value::<AuditEvent>(body) {
            Ok(e) => entries.push(e),
            Err(err) => {
                return Ok(Err(ChainBreak::Unreadable {
                    seq: i as u64 + 1,
                    record,
                    detail: err.to_string(),
                }));
            }
        }
    }
    let head = store.audit_head(t).await?;
    Ok(check(&entries, head.as_ref()).map(|n| ChainReport { entries: n, head }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = Vec::new();
        for i in 1..=n {
            let mut e = AuditEvent::new("user:u1", "transcript.read", format!("meeting:m{i}"));
            e.seq = i;
            e.prev = out
                .last()
                .map_or(AUDIT_GENESIS.to_string(), |l| l.hash.clone());
            e.hash = e.chain_hash();
            out.push(e);
        }
        out
    }

    fn head(c: &[AuditEvent]) -> AuditHead {
        let l = c.last().unwrap();
        AuditHead {
            tenant_id: "tenant01".parse().unwrap(),
            seq: l.seq,
            hash: l.hash.clone(),
        }
    }

    #[test]
    fn a_sound_chain_passes() {
        let c = chain(5);
        assert_eq!(check(&c, Some(&head(&c))), Ok(5));
        assert_eq!(check(&[], None), Ok(0));
    }

    #[test]
    fn each_kind_of_tampering_names_the_entry() {
        let c = chain(5);
        let h = head(&c);
        let mut edited = c.clone();
        edited[2].target = "meeting:other".into();
        assert!(matches!(
            check(&edited, Some(&h)),
            Err(ChainBreak::Altered { seq: 3, .. })
        ));
        // Edited and re-hashed: the next entry's link breaks.
        edited[2].hash = edited[2].chain_hash();
        assert!(matches!(
            check(&edited, Some(&h)),
            Err(ChainBreak::Unlinked { seq: 4, .. })
        ));
        let mut removed = c.clone();
        removed.remove(1);
        assert!(matches!(
            check(&removed, Some(&h)),
            Err(ChainBreak::Missing {
                seq: 3,
                before: 1,
                missing: 1,
                ..
            })
        ));
        let mut tail = c.clone();
        tail.pop();
        assert_eq!(
            check(&tail, Some(&h)),
            Err(ChainBreak::Truncated { last: 4, head: 5 })
        );
        let mut first = c.clone();
        first.remove(0);
        assert!(matches!(
            check(&first, Some(&h)),
            Err(ChainBreak::Missing {
                seq: 2,
                before: 0,
                ..
            })
        ));
    }
}

//! Customer-held key mode: once a meeting's summary has been delivered (nothing of it is left
//! in the outbox), its transcript and summary are sealed to the tenant's own age X25519
//! recipient and the copies sealed under the tenant's data key are overwritten, so the service
//! can no longer read them. The holder of the identity opens them (`meetbot decrypt`).

use crate::outbox::OutboxError;
use meetbot_core::TenantId;
use meetbot_core::model::{DeliveryState, Summary, Transcript};
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use std::io::{Read, Write};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("{0:?} is not an age X25519 recipient (age1...)")]
    BadRecipient(String),
    #[error("the identity file holds no age X25519 identity (AGE-SECRET-KEY-1...)")]
    BadIdentity,
    #[error("cannot seal to the customer's key: {0}")]
    Encrypt(String),
    #[error("cannot open: {0} (is it the right identity?)")]
    Decrypt(String),
}

/// A new key pair: the identity (secret, `AGE-SECRET-KEY-1...`) and its recipient (`age1...`).
pub fn generate() -> (zeroize::Zeroizing<String>, String) {
    let id = age::x25519::Identity::generate();
    let secret =
        zeroize::Zeroizing::new(secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string());
    (secret, id.to_public().to_string())
}

/// Parses an age X25519 recipient (`age1...`).
pub fn recipient(s: &str) -> Result<age::x25519::Recipient, HoldError> {
    age::x25519::Recipient::from_str(s.trim())
        .map_err(|_| HoldError::BadRecipient(s.chars().take(80).collect()))
}

/// `plain` sealed to `to`, ASCII-armored.
pub fn seal_to(to: &age::x25519::Recipient, plain: &[u8]) -> Result<String, HoldError> {
    let e = |x: &dyn std::fmt::Display| HoldError::Encrypt(x.to_string());
    let enc = age::Encryptor::with_recipients(std::iter::once(to as &dyn age::Recipient))
        .map_err(|x| e(&x))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|x| e(&x))?;
    let mut w = enc.wrap_output(armor).map_err(|x| e(&x))?;
    w.write_all(plain).map_err(|x| e(&x))?;
    w.finish().and_then(|a| a.finish()).map_err(|x| e(&x))?;
    String::from_utf8(out).map_err(|x| e(&x))
}

/// Opens an armored (or binary) age message with the identities of an identity file's text.
pub fn open_with(
    identity_file: &str,
    message: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, HoldError> {
    let ids: Vec<age::x25519::Identity> = identity_file
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| age::x25519::Identity::from_str(l).ok())
        .collect();
    if ids.is_empty() {
        return Err(HoldError::BadIdentity);
    }
    let d = |x: &dyn std::fmt::Display| HoldError::Decrypt(x.to_string());
    let dec = age::Decryptor::new(age::armor::ArmoredReader::new(message)).map_err(|x| d(&x))?;
    let mut r = dec
        .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map_err(|x| d(&x))?;
    let mut out = zeroize::Zeroizing::new(Vec::new());
    r.read_to_end(&mut out).map_err(|x| d(&x))?;
    Ok(out)
}

/// Seals every delivered meeting's transcript and summary of `t` to its customer key (if it
/// has one); returns how many meetings were sealed this round.
pub async fn hold_delivered(
    store: &dyn Store,
    tenants: &Tenants,
    t: &TenantId,
) -> Result<u32, OutboxError> {
    let Some(key) = store
        .get_tenant_settings(t)
        .await?
        .and_then(|s| s.customer_key)
    else {
        return Ok(0);
    };
    let to =
        recipient(&key).map_err(|e| OutboxError::Corrupt("customer_key".into(), e.to_string()))?;
    let vault = tenants.vault(t).await?;
    let mut n = 0;
    for s in store.list_summaries(t).await? {
        if s.held.is_some() {
            continue;
        }
        let outstanding = store
            .list_deliveries(t, Some(&s.meeting_id))
            .await?
            .iter()
            .any(|d| {
                matches!(
                    d.value.state,
                    DeliveryState::Pending | DeliveryState::Sending
                )
            });
        if outstanding {
            continue;
        }
        let hold = |e: HoldError| OutboxError::Corrupt(s.id.clone(), e.to_string());
        if let Some(tr) = store.transcript_for_meeting(t, &s.meeting_id).await?
            && tr.held.is_none()
        {
            let plain = vault.open::<Transcript>(&tr.id, "segments", &tr.segments)?;
            let held = seal_to(&to, &plain).map_err(hold)?;
            let segments = vault.seal::<Transcript>(&tr.id, "segments", b"{}")?;
            // Deleted first: a deletion also clears the old copy from the engine's log.
            store.delete_transcript(t, &tr.id).await?;
            store
                .put_transcript(
                    t,
                    &Transcript {
                        segments,
                        held: Some(held),
                        ..tr
                    },
                )
                .await?;
        }
        let plain = vault.open::<Summary>(&s.id, "body", &s.body)?;
        let held = seal_to(&to, &plain).map_err(hold)?;
        let body = vault.seal::<Summary>(&s.id, "body", b"{}")?;
        store.delete_summary(t, &s.id).await?;
        store
            .put_summary(
                t,
                &Summary {
                    body,
                    held: Some(held),
                    ..s
                },
            )
            .await?;
        n += 1;
    }
    if n > 0 {
        tracing::info!(tenant = %t, meetings = n, "sealed to the customer's key");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sealed_to_a_recipient_opens_only_with_its_identity() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let msg = seal_to(&id.to_public(), b"the transcript").unwrap();
        assert!(msg.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        let file = format!(
            "# created: now\n{}\n",
            secrecy::ExposeSecret::expose_secret(&id.to_string())
        );
        assert_eq!(
            &open_with(&file, msg.as_bytes()).unwrap()[..],
            b"the transcript"
        );
        let wrong = secrecy::ExposeSecret::expose_secret(&other.to_string()).to_string();
        assert!(matches!(
            open_with(&wrong, msg.as_bytes()),
            Err(HoldError::Decrypt(_))
        ));
        assert!(matches!(
            open_with("nothing", msg.as_bytes()),
            Err(HoldError::BadIdentity)
        ));
        assert!(matches!(
            recipient("age1nope"),
            Err(HoldError::BadRecipient(_))
        ));
    }
}

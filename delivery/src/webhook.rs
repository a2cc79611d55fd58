//! Webhooks: the notice as JSON, POSTed to the tenant's URL and signed.
//!
//! Headers: `X-Meetbot-Timestamp` (Unix seconds), `X-Meetbot-Signature: v1=<hex>` where the
//! hex is HMAC-SHA256 under the tenant's webhook secret over `<timestamp>.<body>`, and
//! `Idempotency-Key` (the same on every attempt of one delivery). A receiver checks the
//! signature and the timestamp's age with [`verify`], and drops repeats by the key.

use crate::notice::Notice;
use crate::{Notifier, NotifyError, retry_after};
use async_trait::async_trait;
use aws_lc_rs::hmac;
use meetbot_core::model::DeliveryChannel;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

pub const TIMESTAMP_HEADER: &str = "x-meetbot-timestamp";
pub const SIGNATURE_HEADER: &str = "x-meetbot-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Whether `signature` is `body`'s at `timestamp` under `secret` (constant time) and the
/// timestamp is within `tolerance` of `now` (both Unix seconds).
pub fn verify(
    secret: &str,
    timestamp: i64,
    body: &[u8],
    signature: &str,
    now: i64,
    tolerance: Duration,
) -> bool {
    match now.checked_sub(timestamp) {
        Some(age) if age.unsigned_abs() <= tolerance.as_secs() => {}
        _ => return false,
    }
    let Some(hex_sig) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_sig) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut msg = Vec::with_capacity(body.len() + 24);
    msg.extend_from_slice(timestamp.to_string().as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &tag).is_ok()
}

/// A new signing secret for one tenant's webhook endpoint (`whsec_` + 256 random bits, hex).
pub fn new_secret() -> Result<String, NotifyError> {
    meetbot_crypto::random_hex(32)
        .map(|h| format!("whsec_{h}"))
        .map_err(|e| NotifyError::Permanent(format!("random: {e}")))
}

/// POSTs signed notices to a tenant's webhook URL through the egress client
/// (`meetbot-egress`): public https addresses only, internal ones only inside
/// `egress.allow_private`; redirects are not followed.
pub struct WebhookNotifier {
    egress: meetbot_egress::Egress,
    secret: SecretString,
}

impl WebhookNotifier {
    /// Signs with `secret` and sends through `egress` (see [`WebhookNotifier::egress`]).
    pub fn new(secret: SecretString, egress: meetbot_egress::Egress) -> WebhookNotifier {
        WebhookNotifier { egress, secret }
    }

    /// The egress client for webhooks, over the system resolver: `allow_private` is
    /// `egress.allow_private`; 10 s to connect, 20 s in all, no redirects.
    pub fn egress<S: AsRef<str>>(
        allow_private: &[S],
    ) -> Result<meetbot_egress::Egress, NotifyError> {
        let allow = meetbot_egress::AllowList::from_config(allow_private)
            .map_err(NotifyError::Permanent)?;
        meetbot_egress::Egress::new(allow, Self::limits())
            .map_err(|e| NotifyError::Permanent(e.to_string()))
    }

    /// The egress limits of a webhook call.
    pub fn limits() -> meetbot_egress::Limits {
        meetbot_egress::Limits {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
            max_redirects: 0,
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn channel(&self) -> DeliveryChannel {
        DeliveryChannel::Webhook
    }

    async fn send(
        &self,
        url: &str,
        notice: &Notice,
        idempotency_key: &str,
    ) -> Result<(), NotifyError> {
        let refused = |e: meetbot_egress::EgressError| match e {
            meetbot_egress::EgressError::NotAUrl => {
                NotifyError::Permanent("the webhook URL is not an http(s) URL".into())
            }
            e if e.is_retryable() => NotifyError::Retry {
                reason: e.to_string(),
                after: None,
            },
            e => NotifyError::Permanent(e.to_string()),
        };
        // Address literals are refused before anything is built or sent.
        self.egress.check(url).map_err(refused)?;
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "meeting.summary",
            "idempotency_key": idempotency_key,
            "summary": notice,
        }))
        .map_err(|e| NotifyError::Permanent(format!("cannot encode the notice: {e}")))?;
        let ts = chrono::Utc::now().timestamp();
        let sig = sign(self.secret.expose_secret(), ts, &body);
        let mut headers = meetbot_egress::HeaderMap::new();
        let value = |v: &str| {
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| NotifyError::Permanent("a header value is not valid".into()))
        };
        headers.insert(reqwest::header::CONTENT_TYPE, value("application/json")?);
        headers.insert(TIMESTAMP_HEADER, value(&ts.to_string())?);
        headers.insert(SIGNATURE_HEADER, value(&sig)?);
        headers.insert(IDEMPOTENCY_HEADER, value(idempotency_key)?);
        let r = self
            .egress
            .post(url, headers, body)
            .await
            .map_err(refused)?;
        let status = r.status();
        if status.is_success() {
            Ok(())
        } else if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
            Err(NotifyError::Retry {
                reason: format!("the webhook answered {}", status.as_u16()),
                after: retry_after(r.headers()),
            })
        } else {
            Err(NotifyError::Permanent(format!(
                "the webhook answered {}",
                status.as_u16()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_a_fresh_timestamp() {
        let sig = sign("s3cret", 1_700_000_000, b"{\"a\":1}");
        let ok = |secret: &str, ts: i64, body: &[u8], now: i64| {
            verify(secret, ts, body, &sig, now, Duration::from_secs(300))
        };
        assert!(ok("s3cret", 1_700_000_000, b"{\"a\":1}", 1_700_000_100));
        assert!(!ok("s3cret", 1_700_000_000, b"{\"a\":2}", 1_700_000_100));
        assert!(!ok("other", 1_700_000_000, b"{\"a\":1}", 1_700_000_100));
        assert!(!ok("s3cret", 1_700_000_001, b"{\"a\":1}", 1_700_000_100));
        assert!(
            !ok("s3cret", 1_700_000_000, b"{\"a\":1}", 1_700_001_000),
            "too old"
        );
    }

    proptest! {
        #[test]
        fn any_signature_header_is_checked_without_panicking(s in "\\PC{0,200}", ts in any::<i64>()) {
            let _ = verify("k", ts, b"body", &s, 0, Duration::from_secs(300));
        }
    }
}

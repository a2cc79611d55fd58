//! Webhooks: the notice as JSON, POSTed to the tenant's URL and signed.
//!
//! Headers: `X-Meetbot-Timestamp` (Unix seconds), `X-Meetbot-Signature: v1=<hex>` where the
//! hex is HMAC-SHA256 under the tenant's webhook secret over `<timestamp>.<body>`, and
//! `Idempotency-Key` (the same on every attempt of one delivery). A receiver checks the
//! signature and the timestamp's age with [`verify`], and drops repeats by the key.

use crate::notice::Notice;
use crate::{Notifier, NotifyError, retry_after, transport};
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

pub struct WebhookNotifier {
    http: reqwest::Client,
    secret: SecretString,
}

impl WebhookNotifier {
    pub fn new(secret: SecretString) -> Result<WebhookNotifier, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Permanent(format!("HTTP client: {e}")))?;
        Ok(WebhookNotifier { http, secret })
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
        let parsed = url::Url::parse(url)
            .map_err(|_| NotifyError::Permanent("the webhook URL is not a URL".into()))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(NotifyError::Permanent(
                "the webhook URL must be http(s)".into(),
            ));
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "meeting.summary",
            "idempotency_key": idempotency_key,
            "summary": notice,
        }))
        .map_err(|e| NotifyError::Permanent(format!("cannot encode the notice: {e}")))?;
        let ts = chrono::Utc::now().timestamp();
        let sig = sign(self.secret.expose_secret(), ts, &body);
        let r = self
            .http
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sig)
            .header(IDEMPOTENCY_HEADER, idempotency_key)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
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

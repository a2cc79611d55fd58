//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of clock skew either way) with the
//! totp-rs crate. A code is accepted once: the step it matched must be later than the last one
//! accepted.

use totp_rs::{Algorithm, TOTP};

pub const STEP: u64 = 30;

pub fn totp(secret: &[u8], account: &str) -> Result<TOTP, String> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP,
        secret.to_vec(),
        Some("meetbot".into()),
        account.to_string(),
    )
    .map_err(|e| e.to_string())
}

/// The step `code` matches at `now` (unix seconds), if any, later than `last_step`.
pub fn accept(t: &TOTP, code: &str, now: u64, last_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now / STEP;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .filter(|s| *s > last_step)
        .find(|s| {
            meetbot_crypto::constant_time_eq(t.generate(s * STEP).as_bytes(), code.as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_test_vector() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", T = 59 -> 94287082 (8 digits);
        // 6 digits are its last six.
        let t = TOTP::new(
            Algorithm::SHA1,
            6,
            1,
            30,
            b"12345678901234567890".to_vec(),
            None,
            "x".into(),
        )
        .unwrap();
        assert_eq!(t.generate(59), "287082");
        assert_eq!(t.generate(1111111109), "081804");
    }

    #[test]
    fn a_code_is_accepted_once_and_only_near_its_time() {
        let t = totp(&[7u8; 20], "u").unwrap();
        let now = 1_800_000_000;
        let code = t.generate(now);
        let step = accept(&t, &code, now, 0).expect("fresh code");
        assert_eq!(step, now / STEP);
        assert_eq!(accept(&t, &code, now, step), None, "replayed");
        assert_eq!(accept(&t, &code, now + 120, 0), None, "too late");
        assert_eq!(accept(&t, "12345", now, 0), None);
        assert_eq!(accept(&t, "abcdef", now, 0), None);
    }
}

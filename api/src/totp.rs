//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of clock skew either way) with the
//! totp-rs crate. A code is accepted once: the step it matched must be later than the last one
//! accepted (the handler stores that step by compare-and-set, so of two requests with the same
//! code exactly one wins).
//!
//! Guessing is bounded per user: after [`TRIES`] wrong codes in a row the user's TOTP is locked
//! for [`FIRST_LOCK`], each further lock-out twice as long (at most [`MAX_LOCK`]); a right code
//! resets both counts. The counts live in the user's record, so every API replica sees them.

use chrono::{DateTime, Utc};
use meetbot_core::model::TotpState;
use totp_rs::{Algorithm, TOTP};

pub const STEP: u64 = 30;
/// Wrong codes in a row before a lock-out.
pub const TRIES: u32 = 5;
pub const FIRST_LOCK: chrono::Duration = chrono::Duration::minutes(5);
pub const MAX_LOCK: chrono::Duration = chrono::Duration::hours(24);

/// Until when `s` refuses every code, if it is locked at `now`.
pub fn locked(s: &TotpState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    s.locked_until.filter(|u| *u > now)
}

/// Counts a wrong code; returns the end of the lock-out it starts, if it starts one.
pub fn record_failure(s: &mut TotpState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    s.failures = s.failures.saturating_add(1);
    if s.failures < TRIES {
        return None;
    }
    let lock = FIRST_LOCK
        .checked_mul(1i32 << s.lockouts.min(16))
        .unwrap_or(MAX_LOCK)
        .min(MAX_LOCK);
    s.failures = 0;
    s.lockouts = s.lockouts.saturating_add(1);
    let until = now + lock;
    s.locked_until = Some(until);
    Some(until)
}

/// A right code: the step it used is spent, and the failure counts start again.
pub fn record_success(s: &mut TotpState, step: u64) {
    s.last_step = step;
    s.confirmed = true;
    s.failures = 0;
    s.lockouts = 0;
    s.locked_until = None;
}

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

/// Whether `code` is one already spent: it matches a step of the window at `now` that is not
/// later than `last_step` (a replay, or a second click: refused, but not counted as a guess).
pub fn spent(t: &TOTP, code: &str, now: u64, last_step: u64) -> bool {
    accept(t, code, now, 0).is_some_and(|s| s <= last_step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> TotpState {
        TotpState {
            secret: meetbot_core::model::Sealed {
                key_version: 1,
                nonce: vec![],
                ciphertext: vec![],
            },
            confirmed: true,
            last_step: 0,
            failures: 0,
            locked_until: None,
            lockouts: 0,
        }
    }

    #[test]
    fn guessing_codes_locks_the_user_after_five_failures_for_growing_periods() {
        let mut s = state();
        let t0 = Utc::now();
        for _ in 0..TRIES - 1 {
            assert_eq!(record_failure(&mut s, t0), None);
            assert_eq!(locked(&s, t0), None);
        }
        let until = record_failure(&mut s, t0).expect("the fifth failure locks");
        assert_eq!(until, t0 + FIRST_LOCK);
        assert_eq!(locked(&s, t0 + chrono::Duration::minutes(4)), Some(until));
        let t1 = until + chrono::Duration::seconds(1);
        assert_eq!(locked(&s, t1), None, "the lock ends");
        // The next five wrong codes lock for twice as long, and so on up to the maximum.
        let mut last = None;
        for _ in 0..TRIES {
            last = record_failure(&mut s, t1);
        }
        assert_eq!(last, Some(t1 + FIRST_LOCK * 2));
        for _ in 0..20 * TRIES {
            last = record_failure(&mut s, t1).or(last);
        }
        assert_eq!(last, Some(t1 + MAX_LOCK));
        // A right code starts the counts again.
        record_success(&mut s, 42);
        assert_eq!(
            (s.failures, s.lockouts, s.locked_until, s.last_step),
            (0, 0, None, 42)
        );
    }

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
        assert!(spent(&t, &code, now, step));
        assert!(!spent(&t, &code, now, step - 1));
        assert_eq!(accept(&t, &code, now + 120, 0), None, "too late");
        assert_eq!(accept(&t, "12345", now, 0), None);
        assert_eq!(accept(&t, "abcdef", now, 0), None);
    }
}

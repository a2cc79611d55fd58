//! Structured logs through `tracing`: JSON in production, human-readable text on a terminal.
//!
//! Logging rule for every crate: log ids, counts, durations and states, never transcript text,
//! tokens, emails or names.

use crate::config::{LogFormat, TelemetryConfig};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls are ignored).
pub fn init(cfg: &TelemetryConfig) {
    // whisper.cpp reports model loading and buffer sizes at info level: too chatty for a CLI.
    // chromiumoxide warns about every DevTools event newer than its protocol bindings.
    // webrtc-rs reports every ICE and connection state at info, and warns about ICE's normal
    // course (role conflicts, checks before candidates) and DTLS's missing server name.
    let quiet = |f: EnvFilter| {
        [
            "whisper_rs=warn",
            "chromiumoxide=error",
            "webrtc=warn",
            "rtc=warn",
            "rtc_ice=error",
            "rtc_dtls=error",
        ]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(f, |f, d| f.add_directive(d))
    };
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(&cfg.log_level).map(quiet))
        .unwrap_or_else(|_| quiet(EnvFilter::new("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

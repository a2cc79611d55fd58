//! Structured logs through `tracing`: JSON in production, human-readable text on a terminal;
//! and, when `telemetry.otlp_endpoint` is set, the spans of each meeting exported as one
//! OpenTelemetry trace over OTLP/HTTP (decision 0043).
//!
//! Logging rule for every crate: log ids, counts, durations and states, never transcript text,
//! tokens, emails or names. Spans follow the same rule: their fields are ids, counts and states,
//! and they are exported with nothing else (no log message bodies become span events).
//!
//! One trace per meeting without passing a context between services: every service derives the
//! trace id from the tenant and the meeting id it already has ([`meeting_trace_ids`]), so the
//! calendar sync, the scheduler, the launcher, the bot, the transcriber and the delivery worker
//! put their spans in the same trace, whatever queue or socket lies between them.

use crate::TenantId;
use crate::config::{LogFormat, TelemetryConfig};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The exporter of this process, when one was configured (flushed by [`flush`]).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber; `service` names this process in exported traces
/// (`meetbot-scheduler`, ...). Safe to call more than once (later calls are ignored).
/// Call it before any async runtime starts: the exporter runs on its own thread.
pub fn init(cfg: &TelemetryConfig, service: &str) {
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
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cfg.log_format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt.with_target(false).with_filter(filter).boxed(),
    };
    let otel = cfg
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
        .and_then(|endpoint| match exporter(endpoint, service) {
            Ok(provider) => {
                let tracer = provider.tracer("meetbot");
                let _ = PROVIDER.set(provider);
                // Only meetbot's own spans, and no log events inside them: a span carries ids.
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_error_records_to_exceptions(false)
                    .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                        m.is_span() && m.target().starts_with("meetbot")
                    }));
                Some(layer)
            }
            Err(e) => {
                eprintln!("warning: traces not exported: {e}");
                None
            }
        });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
}

fn exporter(endpoint: &str, service: &str) -> Result<SdkTracerProvider, String> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(std::time::Duration::from_secs(5))
        .with_headers(Default::default())
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter for {endpoint}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Sends the spans not yet exported (at exit; a no-op without an exporter). Blocks up to the
/// exporter's timeout.
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

/// The trace of a meeting and the span id every service's span names as its parent: the first
/// 16 and the next 8 bytes of SHA-256 over the tenant and meeting ids (opaque record ids, so the
/// trace names no person), never zero.
pub fn meeting_trace_ids(tenant: &TenantId, meeting_id: &str) -> (TraceId, SpanId) {
    use sha2::Digest;
    let b = sha2::Sha256::new()
        .chain_update(b"meetbot meeting trace v1\0")
        .chain_update(tenant.as_str().as_bytes())
        .chain_update(b"\0")
        .chain_update(meeting_id.as_bytes())
        .finalize();
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&b[..16]);
    let mut span = [0u8; 8];
    span.copy_from_slice(&b[16..24]);
    // An all-zero id is invalid in OpenTelemetry; SHA-256 giving one is only theoretical.
    trace[15] |= (trace == [0; 16]) as u8;
    span[7] |= (span == [0; 8]) as u8;
    (TraceId::from_bytes(trace), SpanId::from_bytes(span))
}

/// Puts `span` in the trace of the meeting (call it right after creating the span, before it is
/// entered). Without an exporter it does nothing.
pub fn in_meeting_trace(span: &tracing::Span, tenant: &TenantId, meeting_id: &str) {
    if PROVIDER.get().is_none() {
        return;
    }
    let (trace, parent) = meeting_trace_ids(tenant, meeting_id);
    let cx = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        trace,
        parent,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    let _ = span.set_parent(cx);
}

/// A span of `meeting`'s trace: `meeting_span!("bot.session", &tenant, &meeting_id, job = %j)`.
/// Its fields are the tenant and meeting ids and what the call site adds (ids, counts, states
/// only).
#[macro_export]
macro_rules! meeting_span {
    ($name:literal, $tenant:expr, $meeting:expr $(, $($field:tt)*)?) => {{
        let tenant: &$crate::TenantId = $tenant;
        let meeting: &str = $meeting;
        let span = ::tracing::info_span!(
            target: "meetbot",
            $name,
            tenant = %tenant,
            meeting = %meeting
            $(, $($field)*)?
        );
        $crate::telemetry::in_meeting_trace(&span, tenant, meeting);
        span
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meeting_has_one_trace_whoever_asks_and_another_meeting_another() {
        let t: TenantId = "tenant1".parse().unwrap();
        let u: TenantId = "tenant2".parse().unwrap();
        let a = meeting_trace_ids(&t, "m1");
        assert_eq!(a, meeting_trace_ids(&t, "m1"));
        assert_ne!(a.0, meeting_trace_ids(&t, "m2").0);
        assert_ne!(a.0, meeting_trace_ids(&u, "m1").0);
        assert_ne!(a.0, TraceId::INVALID);
        assert_ne!(a.1, SpanId::INVALID);
    }
}

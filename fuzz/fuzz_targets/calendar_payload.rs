//! Any bytes as a Google or Microsoft calendar payload: a clear error or events, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_core::model::CalendarProvider;

fuzz_target!(|data: &[u8]| {
    let _ = meetbot_calendar_sync::parse_payload(CalendarProvider::Google, data);
    let _ = meetbot_calendar_sync::parse_payload(CalendarProvider::Microsoft, data);
});

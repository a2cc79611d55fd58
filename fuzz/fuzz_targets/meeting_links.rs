//! Any text as an event's location or description: link extraction never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_calendar_sync::links::{Source, link_in};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = link_in(s, Source::Location);
        let _ = link_in(s, Source::Description);
    }
});

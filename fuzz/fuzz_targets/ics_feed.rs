//! Any bytes as an ICS feed: events, per-event errors or the feed's error, never a panic, and
//! never more than the caps allow.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let from = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let to = from + chrono::Duration::days(60);
    if let Ok(feed) = meetbot_calendar_sync::ics::read_feed(&text, "a@b.c", (from, to)) {
        assert!(feed.events.len() <= 5_000);
        assert!(feed.unreadable.len() <= feed.errors.len());
    }
    for name in text.lines().take(4) {
        let _ = meetbot_calendar_sync::tz::named(name);
    }
});

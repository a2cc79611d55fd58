//! Any text as a Janus room link: parsing never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = meetbot_bot::janus::room_from_link(s, "rooms.example");
        let _ = meetbot_bot::janus::janus_room(s, "rooms.example");
    }
});

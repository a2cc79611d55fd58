//! Any text as a platform profile file, and as a meeting link for the built-in profiles:
//! parsing and link rewriting never panic; a rewritten link is never empty.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_bot::browser::profile::{Loaded, Profiles};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Loaded::parse("fuzz.toml", s);
        if let Ok(p) = Profiles::load(None)
            && let Some((_, url)) = p.for_link(s)
        {
            assert!(!url.is_empty());
        }
    }
});

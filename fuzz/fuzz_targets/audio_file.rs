//! Any bytes as an audio file (WAV, Ogg/Opus, anything) and as an Opus packet from a bot:
//! decoding returns samples or an error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_transcriber::audio::{OpusTo16k, decode_file};

fuzz_target!(|data: &[u8]| {
    if let Ok(pcm) = decode_file(data) {
        assert!(pcm.iter().all(|s| s.is_finite()));
    }
    if let Ok(mut d) = OpusTo16k::new() {
        let _ = d.packet(data);
    }
});

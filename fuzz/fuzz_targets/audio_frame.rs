//! Any bytes on the audio socket: decoding never panics, and what decodes re-encodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_bot::audio_frame::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::decode(data) {
        let again = f.encode().expect("a decoded frame encodes");
        assert_eq!(Frame::decode(&again).expect("re-decodes"), f);
    }
});

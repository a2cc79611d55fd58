//! Any bytes as a room server's answers (join answer, event lines), as espeak-ng's WAV, and as a
//! meeting link: parsed or refused, never a panic; resampling keeps its length ratio.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_bot::room::{JoinAnswer, RoomEvent, is_room_link, resample, wav_pcm};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<JoinAnswer>(data);
    for line in data.split(|b| *b == b'\n') {
        let _ = serde_json::from_slice::<RoomEvent>(line);
    }
    if let Some((rate, pcm)) = wav_pcm(data) {
        let out = resample(&pcm, rate, 48_000);
        assert_eq!(out.len() as u64, pcm.len() as u64 * 48_000 / rate as u64);
    }
    if let Ok(link) = std::str::from_utf8(data) {
        let _ = is_room_link(link, &["http://127.0.0.1:8095".to_string()]);
    }
});

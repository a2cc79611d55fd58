//! Any bytes as a CTranslate2 model.bin (a mirror may serve garbage): parsing and converting
//! return an error, never panic or allocate what the input does not hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_transcriber::convert::{Ct2Model, ct2_to_ggml, text_tokens};

fuzz_target!(|data: &[u8]| {
    let _ = Ct2Model::parse(data);
    let _ = ct2_to_ggml(data, "a\n<|endoftext|>\n");
    let _ = text_tokens(&String::from_utf8_lossy(data));
});

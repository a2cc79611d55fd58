//! Any text through the redactor (alone and with a meeting's name memory), any bytes as each of
//! the names dataset's three lists (Census, Faker, English words), a topics file and a labelled
//! line: spans stay in order, inside the text and on character boundaries; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meetbot_redact::{Names, Redactor, Topics};

fuzz_target!(|data: &[u8]| {
    let _ = Names::from_sdist(data);
    let mut n = Names::default();
    let _ = n.add_faker_sdist(data);
    let _ = n.add_words_sdist(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Topics::from_toml(text);
    let _ = meetbot_redact::eval::parse_line(text);
    let r = Redactor::new().with_topics(Topics::builtin());
    let spans = r.find(text);
    let mut at = 0;
    for s in &spans {
        assert!(s.start >= at && s.start < s.end && s.end <= text.len());
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        at = s.end;
    }
    let _ = r.redact(text);
    let mut memory = meetbot_redact::Memory::default();
    memory.learn_label(text);
    for part in text.split('\n') {
        let spans = r.find_in(part, &mut memory);
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
    }
});

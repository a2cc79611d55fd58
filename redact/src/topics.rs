//! Sensitive topics: named phrase lists. A sentence that contains a phrase of a topic (whole
//! words, any case, any spacing) is replaced whole by `[TOPIC:<name>]`.

use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The built-in lists (immigration, abuse, explicit), editable per tenant.
pub const DEFAULT_TOML: &str = include_str!("../topics/default.toml");

pub const MAX_TOPICS: usize = 50;
pub const MAX_PHRASES: usize = 500;
pub const MAX_PHRASE_LEN: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    #[error("topic name {0:?}: use 1 to 40 lower-case letters, digits, '_' or '-'")]
    Name(String),
    #[error("topic {0:?} has no phrases: give at least one or remove the topic")]
    Empty(String),
    #[error(
        "topic {topic:?}: phrase {phrase:?} must be 1 to {MAX_PHRASE_LEN} characters, not only spaces"
    )]
    Phrase { topic: String, phrase: String },
    #[error(
        "too many topics or phrases: at most {MAX_TOPICS} topics and {MAX_PHRASES} phrases in all"
    )]
    TooMany,
    #[error("topics file: {0}")]
    File(String),
}

#[derive(Clone, Debug, Default)]
pub struct Topics {
    topics: Vec<(String, Regex)>,
    lists: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct File {
    topics: BTreeMap<String, Vec<String>>,
}

static SENTENCE_END: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| Regex::new(r"[.!?]+(?:\s+|$)").expect("built-in pattern"));

/// Words whose full stop does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "dr", "mr", "mrs", "ms", "mx", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "no",
    "apt", "ave", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
    "dec", "inc", "ltd", "co", "corp", "dept", "approx", "min", "max",
];

/// Sentence spans of `text` (start, end), without surrounding spaces; a full stop after an
/// abbreviation or an initial does not end one.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for m in SENTENCE_END.find_iter(text) {
        let before = &text[start..m.start()];
        let word = before
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let stop = m.as_str().trim_end();
        if stop == "." && (ABBREVIATIONS.contains(&word.as_str()) || word.chars().count() == 1) {
            continue;
        }
        let end = m.start() + stop.len();
        let s = start + (text[start..end].len() - text[start..end].trim_start().len());
        if s < end {
            out.push((s, end));
        }
        start = m.end();
    }
    let s = start + (text[start..].len() - text[start..].trim_start().len());
    if s < text.len() {
        out.push((s, text.trim_end().len().max(s)));
    }
    out
}

impl Topics {
    /// The built-in lists.
    pub fn builtin() -> Topics {
        Topics::from_toml(DEFAULT_TOML).expect("built-in topics are valid")
    }

    /// The built-in lists as data (what a tenant starts from).
    pub fn builtin_lists() -> BTreeMap<String, Vec<String>> {
        Topics::builtin().lists
    }

    /// A file with a `[topics]` table of phrase lists.
    pub fn from_toml(s: &str) -> Result<Topics, TopicError> {
        let f: File = toml::from_str(s).map_err(|e| TopicError::File(e.to_string()))?;
        Topics::from_lists(f.topics)
    }

    /// Checks names and phrases (see [`TopicError`]) and compiles one matcher per topic.
    pub fn from_lists(
        lists: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Result<Topics, TopicError> {
        let lists: BTreeMap<String, Vec<String>> = lists.into_iter().collect();
        if lists.len() > MAX_TOPICS || lists.values().map(Vec::len).sum::<usize>() > MAX_PHRASES {
            return Err(TopicError::TooMany);
        }
        let mut topics = Vec::new();
        for (name, phrases) in &lists {
            let ok = !name.is_empty()
                && name.len() <= 40
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok {
                return Err(TopicError::Name(name.clone()));
            }
            if phrases.is_empty() {
                return Err(TopicError::Empty(name.clone()));
            }
            let mut alts = Vec::new();
            for p in phrases {
                let words: Vec<&str> = p.split_whitespace().collect();
                if words.is_empty() || p.chars().count() > MAX_PHRASE_LEN {
                    return Err(TopicError::Phrase {
                        topic: name.clone(),
                        phrase: p.clone(),
                    });
                }
                let body = words
                    .iter()
                    .map(|w| regex::escape(w))
                    .collect::<Vec<_>>()
                    .join(r"\s+");
                alts.push(format!(r"(?:^|\b|\W){body}(?:\b|\W|$)"));
            }
            let re = Regex::new(&format!("(?i)(?:{})", alts.join("|")))
                .map_err(|e| TopicError::File(e.to_string()))?;
            topics.push((name.clone(), re));
        }
        Ok(Topics { topics, lists })
    }

    pub fn lists(&self) -> &BTreeMap<String, Vec<String>> {
        &self.lists
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The sentences of `text` that touch a topic: (start, end, topic), in order.
    pub fn find(&self, text: &str) -> Vec<(usize, usize, String)> {
        if self.topics.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (start, end) in sentences(text) {
            let s = &text[start..end];
            if let Some((name, _)) = self.topics.iter().find(|(_, re)| re.is_match(s)) {
                out.push((start, end, name.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_topics_cover_immigration_abuse_and_explicit_content() {
        let t = Topics::builtin();
        assert_eq!(
            t.lists().keys().cloned().collect::<Vec<_>>(),
            ["abuse", "explicit", "immigration"]
        );
        let hits = t.find("Fine. He said he is undocumented. Ok.");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].2, "immigration");
        assert_eq!(
            &"Fine. He said he is undocumented. Ok."[hits[0].0..hits[0].1],
            "He said he is undocumented."
        );
        assert!(t.find("The sexton rang the bell.").is_empty());
    }

    #[test]
    fn sentences_do_not_end_at_titles_or_initials() {
        let t = "Dr. Okafor met J. Smith. Then? Yes!  Done";
        let got: Vec<&str> = sentences(t).into_iter().map(|(s, e)| &t[s..e]).collect();
        assert_eq!(got, ["Dr. Okafor met J. Smith.", "Then?", "Yes!", "Done"]);
        assert!(sentences("   ").is_empty());
    }

    #[test]
    fn bad_topic_lists_are_refused_with_the_field_named() {
        let e = Topics::from_lists([("Bad Name".to_string(), vec!["x".to_string()])]).unwrap_err();
        assert!(matches!(e, TopicError::Name(_)));
        let e = Topics::from_lists([("t".to_string(), vec![])]).unwrap_err();
        assert_eq!(e, TopicError::Empty("t".into()));
        let e = Topics::from_lists([("t".to_string(), vec!["  ".to_string()])]).unwrap_err();
        assert!(e.to_string().contains("phrase"), "{e}");
        assert!(Topics::from_toml("topics = 3").is_err());
    }

    #[test]
    fn phrases_match_whole_words_across_spacing_and_case() {
        let t = Topics::from_lists([(
            "x".to_string(),
            vec!["green card".to_string(), "c++".to_string()],
        )])
        .unwrap();
        assert_eq!(t.find("His GREEN   card came.").len(), 1);
        assert!(t.find("Greencard.").is_empty());
        assert_eq!(t.find("We use C++ here.").len(), 1);
    }
}

//! Scoring against a labelled set: one sentence per line, identifiers marked `{CLASS:text}`
//! (`#` starts a comment line). An identifier counts as found when spans of its class cover all
//! of its letters and digits; a predicted span counts as right when it overlaps a marked
//! identifier of its class. Both per class, plus "any class" (covered by any redaction).

use crate::{Class, Kind, Redactor};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labelled {
    pub text: String,
    pub gold: Vec<(usize, usize, Class)>,
}

/// Parses one line of the set; `Err` names what is wrong with it.
pub fn parse_line(line: &str) -> Result<Labelled, String> {
    let mut text = String::new();
    let mut gold = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {line:?}"))?;
        let (class, body) = after[..close]
            .split_once(':')
            .ok_or_else(|| format!("mark without CLASS: in {line:?}"))?;
        let class = Class::parse(class).ok_or_else(|| format!("unknown class {class:?}"))?;
        let start = text.len();
        text.push_str(body);
        gold.push((start, text.len(), class));
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    Ok(Labelled { text, gold })
}

/// Parses a whole set (comments and blank lines skipped).
pub fn parse_set(set: &str) -> Result<Vec<Labelled>, String> {
    set.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(parse_line)
        .collect()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Marked identifiers.
    pub gold: usize,
    /// Marked identifiers fully covered by spans of their class.
    pub found: usize,
    /// Predicted spans.
    pub predicted: usize,
    /// Predicted spans overlapping a marked identifier of their class.
    pub right: usize,
}

impl Counts {
    pub fn recall(&self) -> f64 {
        if self.gold == 0 {
            1.0
        } else {
            self.found as f64 / self.gold as f64
        }
    }
    pub fn precision(&self) -> f64 {
        if self.predicted == 0 {
            1.0
        } else {
            self.right as f64 / self.predicted as f64
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub sentences: usize,
    pub per_class: BTreeMap<Class, Counts>,
    /// Marked identifiers covered by any redaction / all of them.
    pub any_found: usize,
    pub any_gold: usize,
    /// Sentences without marks that came out changed.
    pub clean_sentences: usize,
    pub clean_changed: usize,
    /// Lines whose marks were missed or whose spans were wrong, for reading.
    pub misses: Vec<String>,
}

fn covered(text: &str, start: usize, end: usize, spans: &[(usize, usize)]) -> bool {
    text[start..end].char_indices().all(|(i, c)| {
        !c.is_alphanumeric() || spans.iter().any(|&(s, e)| s <= start + i && start + i < e)
    })
}

pub fn score(redactor: &Redactor, set: &[Labelled]) -> Report {
    let mut r = Report {
        sentences: set.len(),
        ..Report::default()
    };
    for l in set {
        let spans: Vec<(usize, usize, Class)> = redactor
            .find(&l.text)
            .into_iter()
            .filter_map(|s| match s.kind {
                Kind::Identifier(c) => Some((s.start, s.end, c)),
                Kind::Topic(_) => None,
            })
            .collect();
        let all: Vec<(usize, usize)> = spans.iter().map(|&(s, e, _)| (s, e)).collect();
        let mut wrong = Vec::new();
        for &(s, e, c) in &l.gold {
            let of_class: Vec<(usize, usize)> = spans
                .iter()
                .filter(|x| x.2 == c)
                .map(|&(s, e, _)| (s, e))
                .collect();
            let k = r.per_class.entry(c).or_default();
            k.gold += 1;
            if covered(&l.text, s, e, &of_class) {
                k.found += 1;
            } else {
                wrong.push(format!("missed {c} {:?}", &l.text[s..e]));
            }
            r.any_gold += 1;
            if covered(&l.text, s, e, &all) {
                r.any_found += 1;
            }
        }
        for &(s, e, c) in &spans {
            let k = r.per_class.entry(c).or_default();
            k.predicted += 1;
            if l.gold
                .iter()
                .any(|&(gs, ge, gc)| gc == c && s < ge && e > gs)
            {
                k.right += 1;
            } else {
                wrong.push(format!("extra {c} {:?}", &l.text[s..e]));
            }
        }
        if l.gold.is_empty() {
            r.clean_sentences += 1;
            if !spans.is_empty() {
                r.clean_changed += 1;
            }
        }
        if !wrong.is_empty() {
            r.misses
                .push(format!("{}  <- {}", l.text, wrong.join("; ")));
        }
    }
    r
}

impl Report {
    /// A plain table: class, marked, recall, precision.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<12} {:>6} {:>6} {:>9} {:>10}\n",
            "class", "marked", "spans", "recall", "precision"
        );
        for (c, k) in &self.per_class {
            s.push_str(&format!(
                "{:<12} {:>6} {:>6} {:>8.1}% {:>9.1}%\n",
                c.label(),
                k.gold,
                k.predicted,
                k.recall() * 100.0,
                k.precision() * 100.0
            ));
        }
        let (g, f, p, rt) = self.per_class.values().fold((0, 0, 0, 0), |a, k| {
            (
                a.0 + k.gold,
                a.1 + k.found,
                a.2 + k.predicted,
                a.3 + k.right,
            )
        });
        let all = Counts {
            gold: g,
            found: f,
            predicted: p,
            right: rt,
        };
        s.push_str(&format!(
            "{:<12} {:>6} {:>6} {:>8.1}% {:>9.1}%\n",
            "all",
            g,
            p,
            all.recall() * 100.0,
            all.precision() * 100.0
        ));
        s.push_str(&format!(
            "sentences: {}; identifiers redacted under any label: {}/{} ({:.1}%); sentences without identifiers left unchanged: {}/{}\n",
            self.sentences,
            self.any_found,
            self.any_gold,
            if self.any_gold == 0 { 100.0 } else { self.any_found as f64 * 100.0 / self.any_gold as f64 },
            self.clean_sentences - self.clean_changed,
            self.clean_sentences
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_parsed_into_text_and_spans() {
        let l = parse_line("Call {NAME:Ann Lee} at {PHONE:555-867-5309}.").unwrap();
        assert_eq!(l.text, "Call Ann Lee at 555-867-5309.");
        assert_eq!(l.gold, vec![(5, 12, Class::Name), (16, 28, Class::Phone)]);
        assert!(parse_line("{NAME Ann").is_err());
        assert!(parse_line("{COLOUR:red}").is_err());
    }

    #[test]
    fn a_miss_and_an_extra_count_against_recall_and_precision() {
        let set = parse_set("# c\nMail {EMAIL:a@b.com} now.\nCall {NAME:Zed} at 555-867-5309.\n")
            .unwrap();
        let r = score(&Redactor::new(), &set);
        assert_eq!(r.per_class[&Class::Email].recall(), 1.0);
        assert_eq!(r.per_class[&Class::Name].recall(), 0.0);
        assert_eq!(r.per_class[&Class::Phone].precision(), 0.0);
        assert!(r.table().contains("EMAIL"));
    }
}

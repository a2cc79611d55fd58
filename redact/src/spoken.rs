//! Numbers said in words, written as digits, so that the rules for written identifiers also find
//! spoken ones: "five five five, one two one two" reads as "555 1212", "thirty-nine sixty-eight
//! Bay Street" as "3968 Bay Street", "four hundred fifty" as "450", "nineteen eighty-seven" as
//! "1987". [`normalize`] keeps, for every byte of the new text, the bytes of the original it came
//! from, so a finding maps back onto what was said.

use regex::Regex;
use std::sync::LazyLock;

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:-(?:one|two|three|four|five|six|seven|eight|nine))?|zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|hundred|thousand)\b",
    )
    .expect("built-in pattern")
});

#[derive(Clone, Copy, Debug, PartialEq)]
enum Word {
    /// 0 to 19.
    Unit(u32),
    /// 20, 30, ... 90.
    Tens(u32),
    /// 21 to 99 but the round tens ("thirty-nine").
    Compound(u32),
    Hundred,
    Thousand,
}

fn word(w: &str) -> Option<Word> {
    let w = w.to_ascii_lowercase();
    const UNITS: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if w == "oh" {
        return Some(Word::Unit(0));
    }
    if w == "hundred" {
        return Some(Word::Hundred);
    }
    if w == "thousand" {
        return Some(Word::Thousand);
    }
    if let Some(i) = UNITS.iter().position(|u| *u == w) {
        return Some(Word::Unit(i as u32));
    }
    let (tens, unit) = w.split_once('-').unwrap_or((&w, ""));
    let t = TENS.iter().position(|x| *x == tens)? as u32 * 10 + 20;
    if unit.is_empty() {
        return Some(Word::Tens(t));
    }
    let u = UNITS[1..10].iter().position(|x| *x == unit)? as u32 + 1;
    Some(Word::Compound(t + u))
}

/// The digits a run of number words stands for.
fn digits(words: &[Word]) -> String {
    if words
        .iter()
        .any(|w| matches!(w, Word::Hundred | Word::Thousand))
    {
        // A cardinal: "four hundred fifty", "two thousand four".
        let (mut total, mut current) = (0u64, 0u64);
        for w in words {
            match *w {
                Word::Unit(v) | Word::Tens(v) | Word::Compound(v) => {
                    current = current.saturating_add(u64::from(v));
                }
                Word::Hundred => current = current.max(1).saturating_mul(100),
                Word::Thousand => {
                    total = total.saturating_add(current.max(1).saturating_mul(1000));
                    current = 0;
                }
            }
        }
        return total.saturating_add(current).to_string();
    }
    // Said digit by digit or in pairs: "five five five", "nineteen eighty-seven", "twenty three".
    let mut out = String::new();
    let mut i = 0;
    while i < words.len() {
        match (words[i], words.get(i + 1)) {
            (Word::Tens(t), Some(Word::Unit(u))) if (1..=9).contains(u) => {
                out.push_str(&(t + u).to_string());
                i += 2;
                continue;
            }
            (Word::Unit(v) | Word::Tens(v) | Word::Compound(v), _) => out.push_str(&v.to_string()),
            _ => {}
        }
        i += 1;
    }
    out
}

/// The text with numbers said in words written as digits, and where each byte came from.
pub(crate) struct Normalized {
    /// A copy of what was said: wiped when dropped.
    pub text: zeroize::Zeroizing<String>,
    starts: Vec<usize>,
    ends: Vec<usize>,
}

impl Normalized {
    /// The original byte range a range of the new text came from.
    pub fn original(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= end || end > self.text.len() {
            return None;
        }
        Some((self.starts[start], self.ends[end - 1]))
    }

    fn push(&mut self, s: &str, from: usize, to: usize) {
        self.text.push_str(s);
        for _ in 0..s.len() {
            self.starts.push(from);
            self.ends.push(to);
        }
    }

    fn copy(&mut self, original: &str, from: usize, to: usize) {
        for (i, c) in original[from..to].char_indices() {
            let at = from + i;
            let len = c.len_utf8();
            self.text.push(c);
            for _ in 0..len {
                self.starts.push(at);
                self.ends.push(at + len);
            }
        }
    }
}

/// A spelled letter ("G B eight eight": an IBAN said aloud) or "plus" before a number.
static SPELLED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:[A-Z]|plus|Plus)\b").expect("built-in pattern"));

#[derive(Clone, Copy, Debug, PartialEq)]
enum Said {
    Number(Word),
    Letter(char),
    Plus,
}

/// `None` when nothing is said in number words (the usual case: nothing to do).
pub(crate) fn normalize(text: &str) -> Option<Normalized> {
    let mut found: Vec<(usize, usize, Said)> = NUMBER
        .find_iter(text)
        .filter_map(|m| word(m.as_str()).map(|w| (m.start(), m.end(), Said::Number(w))))
        .collect();
    if found.is_empty() {
        return None;
    }
    for m in SPELLED.find_iter(text) {
        let said = match m.as_str() {
            "plus" | "Plus" => Said::Plus,
            l => Said::Letter(l.chars().next().unwrap_or('X')),
        };
        found.push((m.start(), m.end(), said));
    }
    found.sort_by_key(|f| f.0);
    let mut n = Normalized {
        text: zeroize::Zeroizing::new(String::with_capacity(text.len())),
        starts: Vec::with_capacity(text.len()),
        ends: Vec::with_capacity(text.len()),
    };
    let mut at = 0;
    let mut i = 0;
    while i < found.len() {
        // A run: number words with only spaces between them.
        let mut j = i + 1;
        while j < found.len() && text[found[j - 1].1..found[j].0].chars().all(|c| c == ' ') {
            j += 1;
        }
        let numbers = found[i..j]
            .iter()
            .filter(|f| matches!(f.2, Said::Number(_)))
            .count();
        // Letters and "plus" join only a run that says two numbers or more.
        if numbers < 2 && found[i..j].iter().any(|f| !matches!(f.2, Said::Number(_))) {
            let (start, end) = (found[i].0, found[i].1);
            if let Said::Number(w) = found[i].2 {
                n.copy(text, at, start);
                n.push(&digits(&[w]), start, end);
                at = end;
            }
            i += 1;
            continue;
        }
        let (start, end) = (found[i].0, found[j - 1].1);
        n.copy(text, at, start);
        // Runs said one after another with a comma between ("five five five, one two"): one
        // space, as a written number groups its digits.
        if n.text.ends_with(", ")
            && n.text[..n.text.len() - 2].ends_with(|c: char| c.is_ascii_digit())
        {
            let keep = n.text.len() - 2;
            n.text.truncate(keep);
            n.starts.truncate(keep);
            n.ends.truncate(keep);
            n.push(" ", start - 2, start);
        }
        let mut said = String::new();
        let mut words = Vec::new();
        for f in &found[i..j] {
            match f.2 {
                Said::Number(w) => words.push(w),
                other => {
                    said.push_str(&digits(&words));
                    words.clear();
                    match other {
                        Said::Letter(c) => said.push(c),
                        _ => said.push('+'),
                    }
                }
            }
        }
        said.push_str(&digits(&words));
        n.push(&said, start, end);
        at = end;
        i = j;
    }
    n.copy(text, at, text.len());
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_said_in_words_read_as_digits_and_map_back() {
        let t = "Call five five five, one two one two or go to thirty-nine sixty-eight Bay Street";
        let n = normalize(t).unwrap();
        assert_eq!(n.text.as_str(), "Call 555 1212 or go to 3968 Bay Street");
        let at = n.text.find("3968").unwrap();
        let (s, e) = n.original(at, at + 4).unwrap();
        assert_eq!(&t[s..e], "thirty-nine sixty-eight");
        let at = n.text.find("555 1212").unwrap();
        let (s, e) = n.original(at, at + 8).unwrap();
        assert_eq!(&t[s..e], "five five five, one two one two");
        assert_eq!(
            normalize("four hundred fifty, nineteen eighty-seven, two thousand four, twenty three")
                .unwrap()
                .text
                .as_str(),
            "450 1987 2004 23"
        );
        assert!(normalize("nothing said in numbers").is_none());
        // Multipliers said over and over saturate instead of overflowing.
        let many = "hundred ".repeat(40) + "thousand ".repeat(40).as_str();
        assert!(!normalize(&many).unwrap().text.is_empty());
        assert_eq!(
            normalize("G B eight eight X D H F zero five, or plus four four seven seven")
                .unwrap()
                .text
                .as_str(),
            "GB88XDHF05, or +4477"
        );
        assert_eq!(
            normalize("I met A one time").unwrap().text.as_str(),
            "I met A 1 time"
        );
        assert_eq!(normalize("Zoë, oh, one").unwrap().text.as_str(), "Zoë, 0 1");
    }
}

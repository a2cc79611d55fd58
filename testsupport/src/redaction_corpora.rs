//! Public gold-labelled text for measuring redaction: corpora nobody on this project wrote, read
//! into one shape, a speech-style rendering of them, and the scoring rule.
//!
//! * [`presidio_synth`]: `data/synth_dataset_v2.json` of the PyPI sdist
//!   `presidio-evaluator==0.3.2` (MIT; its identities from Fake Name Generator, CC BY-SA 3.0 US),
//!   1,500 synthetic sentences with multi-country names, addresses and numbers;
//! * [`i2b2_notes`]: the five i2b2-style clinical notes with surrogate PHI and gold XML that PyPI
//!   `philter-lite==0.6.0` ships (`philter_lite/data/i2b2_xml/`, BSD-3-Clause package).
//!
//! Both are fetched by `scripts/redaction-data.sh` (pinned by SHA-256) into [`data_dir`], never
//! committed.
//! * [`spoken`]: each document as a transcript would read it (digits, emails, dates and house
//!   numbers said aloud, lines joined), its labels carried over.
//!
//! The rule ([`score`]): an identifier counts as removed only when every word and digit group of
//! it lies inside the predicted spans; the year of a date may stay (a bare year is not counted),
//! and ages of 89 or under are not counted, as HIPAA Safe Harbor allows. "Ordinary words" are
//! the words outside every gold span; one is kept when no predicted span touches it. Classes the
//! corpora label that are not HIPAA identifiers (organisations, titles, nationalities) are in
//! neither count; `PLACE` (a city, region or country: the labels do not tell them apart) is
//! reported on its own line and not in "all identifiers".

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Where `scripts/redaction-data.sh` put the corpora (`MEETBOT_TEST_REDACTION_DATA`, default
/// `target/test-env/redaction`).
pub fn data_dir() -> std::path::PathBuf {
    std::env::var_os("MEETBOT_TEST_REDACTION_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/test-env/redaction"))
}

/// A labelled span: byte range into [`Doc::text`] and a label: one of meetbot's class labels
/// (`NAME`, `DATE`, ...), `PLACE`, or `OTHER` (not a HIPAA identifier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gold {
    pub start: usize,
    pub end: usize,
    pub label: &'static str,
}

#[derive(Clone, Debug)]
pub struct Doc {
    pub corpus: &'static str,
    /// In the blind part: chosen by a hash of the document before any was read, never tuned on.
    pub blind: bool,
    pub id: String,
    pub text: String,
    pub gold: Vec<Gold>,
}

/// The blind quarter: the first byte of SHA-256(key) below 64.
pub fn is_blind(key: &str) -> bool {
    Sha256::digest(key.as_bytes())[0] < 64
}

fn byte_offset(text: &str, chars: usize) -> Option<usize> {
    if chars == text.chars().count() {
        return Some(text.len());
    }
    text.char_indices().nth(chars).map(|(b, _)| b)
}

/// presidio-research's entity types as meetbot's labels.
fn synth_label(entity: &str) -> &'static str {
    match entity {
        "PERSON" => "NAME",
        "STREET_ADDRESS" => "ADDRESS",
        "ZIP_CODE" => "ZIP",
        "DATE_TIME" => "DATE",
        "AGE" => "AGE",
        "PHONE_NUMBER" => "PHONE",
        "EMAIL_ADDRESS" => "EMAIL",
        "US_SSN" => "SSN",
        "IP_ADDRESS" => "IP",
        "US_DRIVER_LICENSE" => "LICENSE",
        "CREDIT_CARD" | "IBAN_CODE" => "ACCOUNT",
        "DOMAIN_NAME" => "URL",
        "GPE" => "PLACE",
        _ => "OTHER",
    }
}

/// Reads presidio-research's `synth_dataset_v2.json`.
pub fn presidio_synth(path: &Path) -> anyhow::Result<Vec<Doc>> {
    #[derive(serde::Deserialize)]
    struct Sample {
        full_text: String,
        spans: Vec<SynthSpan>,
    }
    #[derive(serde::Deserialize)]
    struct SynthSpan {
        entity_type: String,
        start_position: usize,
        end_position: usize,
    }
    let raw = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run scripts/redaction-data.sh)", path.display()))?;
    let samples: Vec<Sample> = serde_json::from_str(&raw)?;
    let mut docs = Vec::with_capacity(samples.len());
    for (i, s) in samples.into_iter().enumerate() {
        let mut gold = Vec::new();
        for sp in &s.spans {
            let (Some(start), Some(end)) = (
                byte_offset(&s.full_text, sp.start_position),
                byte_offset(&s.full_text, sp.end_position),
            ) else {
                anyhow::bail!(
                    "sample {i}: span {}..{} outside the text",
                    sp.start_position,
                    sp.end_position
                );
            };
            gold.push(Gold {
                start,
                end,
                label: synth_label(&sp.entity_type),
            });
        }
        gold.sort_by_key(|g| g.start);
        docs.push(Doc {
            corpus: "presidio-synth",
            blind: is_blind(&s.full_text),
            id: format!("synth-{i}"),
            text: s.full_text,
            gold,
        });
    }
    Ok(docs)
}

/// i2b2 2014 tag types as meetbot's labels.
fn i2b2_label(tag: &str, kind: &str) -> &'static str {
    match (tag, kind) {
        ("NAME", _) => "NAME",
        ("DATE", _) => "DATE",
        ("AGE", _) => "AGE",
        ("ID", "MEDICALRECORD") => "RECORD",
        ("ID", "HEALTHPLAN") => "HEALTH_PLAN",
        ("ID", "DEVICE") => "DEVICE",
        ("ID", "LICENSE") => "LICENSE",
        ("ID", _) => "ID",
        ("CONTACT", "PHONE") => "PHONE",
        ("CONTACT", "FAX") => "FAX",
        ("CONTACT", "EMAIL") => "EMAIL",
        ("CONTACT", "URL") => "URL",
        ("CONTACT", "IPADDR") => "IP",
        ("LOCATION", "STREET") => "ADDRESS",
        ("LOCATION", "CITY") => "ADDRESS",
        ("LOCATION", "ZIP") => "ZIP",
        _ => "OTHER",
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let len = tag[at..].find('"')?;
    Some(&tag[at..at + len])
}

/// Reads the i2b2 XML files (`<TEXT>` then `<TAGS>`, offsets in characters) in `dir`.
pub fn i2b2_notes(dir: &Path) -> anyhow::Result<Vec<Doc>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run scripts/redaction-data.sh)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let raw = std::fs::read_to_string(&f)?;
        let name = f
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let body = raw
            .split_once("<TEXT>")
            .and_then(|(_, r)| r.split_once("</TEXT>"))
            .map(|(t, _)| t)
            .ok_or_else(|| anyhow::anyhow!("{}: no <TEXT>", f.display()))?;
        let body = body
            .strip_prefix("<![CDATA[")
            .and_then(|b| b.strip_suffix("]]>"))
            .map_or_else(|| xml_unescape(body), str::to_string);
        let tags = raw.split_once("<TAGS>").map_or("", |(_, r)| r);
        let mut gold = Vec::new();
        for t in tags.split('<').skip(1) {
            let Some(tag) = t.split_whitespace().next() else {
                continue;
            };
            let (Some(kind), Some(s), Some(e)) =
                (attr(t, "TYPE"), attr(t, "start"), attr(t, "end"))
            else {
                continue;
            };
            let (s, e): (usize, usize) = (s.parse()?, e.parse()?);
            let (Some(start), Some(end)) = (byte_offset(&body, s), byte_offset(&body, e)) else {
                anyhow::bail!("{}: tag {s}..{e} outside the text", f.display());
            };
            gold.push(Gold {
                start,
                end,
                label: i2b2_label(tag, kind),
            });
        }
        gold.sort_by_key(|g| g.start);
        docs.push(Doc {
            corpus: "i2b2-notes",
            blind: false,
            id: name,
            text: body,
            gold,
        });
    }
    // Five notes: the two whose names hash lowest are blind.
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.sort_by_key(|&i| Sha256::digest(docs[i].id.as_bytes()).to_vec());
    for &i in order.iter().take(docs.len().div_ceil(3)) {
        docs[i].blind = true;
    }
    Ok(docs)
}

const DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
const TEENS: [&str; 10] = [
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
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A number below 1,000,000 in words ("three hundred twelve").
fn cardinal(n: u32) -> String {
    match n {
        0..=9 => DIGITS[n as usize].to_string(),
        10..=19 => TEENS[n as usize - 10].to_string(),
        20..=99 if n.is_multiple_of(10) => TENS[n as usize / 10].to_string(),
        20..=99 => format!("{}-{}", TENS[n as usize / 10], DIGITS[n as usize % 10]),
        100..=999 if n.is_multiple_of(100) => format!("{} hundred", DIGITS[n as usize / 100]),
        100..=999 => format!("{} hundred {}", DIGITS[n as usize / 100], cardinal(n % 100)),
        _ if n.is_multiple_of(1000) => format!("{} thousand", cardinal(n / 1000)),
        _ => format!("{} thousand {}", cardinal(n / 1000), cardinal(n % 1000)),
    }
}

fn ordinal(n: u32) -> String {
    let c = cardinal(n);
    let irregular = [
        ("one", "first"),
        ("two", "second"),
        ("three", "third"),
        ("five", "fifth"),
        ("eight", "eighth"),
        ("nine", "ninth"),
        ("twelve", "twelfth"),
    ];
    for (a, b) in irregular {
        if let Some(head) = c.strip_suffix(a) {
            return format!("{head}{b}");
        }
    }
    if let Some(head) = c.strip_suffix('y') {
        return format!("{head}ieth");
    }
    format!("{c}th")
}

/// Each digit as a word, groups of digits separated by commas, letters kept.
fn digit_by_digit(s: &str) -> String {
    let mut out = String::new();
    let mut group_open = false;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            out.push_str(DIGITS[d as usize]);
            group_open = true;
        } else if c.is_alphabetic() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            out.push(c);
            group_open = true;
        } else if c == '+' {
            out.push_str("plus ");
        } else if group_open {
            out.push_str(", ");
            group_open = false;
        }
    }
    out.trim_end_matches([',', ' ']).to_string()
}

fn spoken_email(s: &str) -> String {
    s.replace('@', " at ")
        .replace('.', " dot ")
        .replace('_', " underscore ")
}

fn spoken_url(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    s.replace('.', " dot ").replace('/', " slash ")
}

/// `9/15/1946` and `1984-04-27 15:25:53` said aloud; anything else as written.
fn spoken_date(s: &str) -> String {
    let nums: Vec<u32> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    // Speech engines write the year in digits ("September 15th, 1946" or "September
    // fifteenth, 1946"); the day is said as an ordinal, a time after the date is not said.
    let month_day_year = |m: u32, d: u32, y: u32| -> Option<String> {
        let month = MONTHS.get(m.checked_sub(1)? as usize)?;
        (1..=31)
            .contains(&d)
            .then(|| format!("{month} {}, {y}", ordinal(d)))
    };
    let said = if s.contains('/') && nums.len() == 3 {
        month_day_year(nums[0], nums[1], nums[2])
    } else if s.contains('-') && nums.len() >= 3 && nums[0] > 999 {
        month_day_year(nums[1], nums[2], nums[0])
    } else {
        None
    };
    said.unwrap_or_else(|| s.to_string())
}

/// A street address said aloud: the house number in words, other numbers digit by digit, lines
/// joined by commas.
fn spoken_address(s: &str) -> String {
    let mut out = Vec::new();
    for (i, word) in s
        .split(|c: char| c.is_whitespace())
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        let digits: String = word.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() && digits.len() == word.trim_end_matches(',').len() {
            let n: u32 = digits.parse().unwrap_or(0);
            let said = if i == 0 && digits.len() <= 3 {
                cardinal(n)
            } else if i == 0 && digits.len() == 4 && n % 100 >= 10 {
                format!("{} {}", cardinal(n / 100), cardinal(n % 100))
            } else {
                digit_by_digit(&digits)
            };
            out.push(format!(
                "{said}{}",
                if word.ends_with(',') { "," } else { "" }
            ));
        } else {
            out.push(word.to_string());
        }
    }
    out.join(" ")
}

fn spoken_age(s: &str) -> String {
    match s.trim().parse::<u32>() {
        Ok(n) if n < 1_000_000 => cardinal(n),
        _ => s.to_string(),
    }
}

/// Text outside identifiers: lines joined as one utterance.
fn spoken_plain(s: &str) -> String {
    s.replace('\n', " ")
}

/// Every document as speech-to-text would write it: identifiers said aloud (phone numbers, ids
/// and card numbers digit by digit, emails and web addresses with "at" and "dot", dates as
/// "September fifteenth, 1946", house numbers in words), lines joined. The labels
/// move with the text; the blind part stays blind.
pub fn spoken(docs: &[Doc]) -> Vec<Doc> {
    docs.iter()
        .map(|d| {
            let mut text = String::new();
            let mut gold = Vec::new();
            let mut at = 0;
            for g in &d.gold {
                if g.start < at {
                    // Overlapping labels (none in these corpora): the first one stands.
                    continue;
                }
                text.push_str(&spoken_plain(&d.text[at..g.start]));
                let span = &d.text[g.start..g.end];
                let said = match g.label {
                    "PHONE" | "FAX" | "SSN" | "ZIP" | "ACCOUNT" | "LICENSE" | "RECORD" | "ID"
                    | "HEALTH_PLAN" | "DEVICE" | "IP" => digit_by_digit(span),
                    "EMAIL" => spoken_email(span),
                    "URL" => spoken_url(span),
                    "DATE" => spoken_date(span),
                    "ADDRESS" => spoken_address(span),
                    "AGE" => spoken_age(span),
                    _ => spoken_plain(span),
                };
                let start = text.len();
                text.push_str(&said);
                gold.push(Gold {
                    start,
                    end: text.len(),
                    label: g.label,
                });
                at = g.end;
            }
            text.push_str(&spoken_plain(&d.text[at..]));
            Doc {
                corpus: "spoken",
                blind: d.blind,
                id: format!("{}-spoken", d.id),
                text,
                gold,
            }
        })
        .collect()
}

/// Words and digit groups: maximal runs of letters and digits, as byte ranges.
fn tokens(text: &str, from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text[from..to].char_indices() {
        let i = from + i;
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push((s, i));
        }
    }
    if let Some(s) = start {
        out.push((s, to));
    }
    out
}

const NUMBER_WORDS: [(&str, u32); 9] = [
    ("ninety", 90),
    ("hundred", 100),
    ("one hundred", 100),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
];

/// Whether an age span states an age over 89 (digits or words).
fn age_over_89(s: &str) -> bool {
    let lower = s.to_lowercase();
    if let Some(n) = lower
        .split(|c: char| !c.is_ascii_digit())
        .find(|p| !p.is_empty())
        .and_then(|p| p.parse::<u32>().ok())
    {
        return n > 89;
    }
    NUMBER_WORDS
        .iter()
        .any(|(w, n)| *n > 89 && lower.contains(w))
}

fn is_year(t: &str) -> bool {
    t.len() == 4 && t.chars().all(|c| c.is_ascii_digit()) && matches!(&t[..2], "18" | "19" | "20")
}

/// Counts for one label (or "ordinary words").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: usize,
    /// Identifiers: removed; ordinary words: kept.
    pub good: usize,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.good as f64 / self.total as f64
    }
}

/// One redactor's results on a set of documents.
#[derive(Clone, Debug, Default)]
pub struct Score {
    /// Per label (PLACE included); see [`Score::all`] for HIPAA identifiers together.
    pub per_label: BTreeMap<&'static str, Tally>,
    pub ordinary: Tally,
    /// Identifiers left (partly) in place: document id, label, the identifier's text.
    pub misses: Vec<(String, &'static str, String)>,
}

impl Score {
    /// Every HIPAA identifier together (`PLACE` and `OTHER` left out).
    pub fn all(&self) -> Tally {
        let mut t = Tally::default();
        for (l, k) in &self.per_label {
            if *l != "PLACE" {
                t.total += k.total;
                t.good += k.good;
            }
        }
        t
    }
}

/// Scores predicted spans (byte ranges into each document's text, any class) with the rule in
/// the module's documentation. `predicted[i]` belongs to `docs[i]`.
pub fn score(docs: &[Doc], predicted: &[Vec<(usize, usize)>]) -> Score {
    assert_eq!(docs.len(), predicted.len(), "one prediction per document");
    let mut s = Score::default();
    for (d, pred) in docs.iter().zip(predicted) {
        let covered = |a: usize, b: usize| {
            // Fully inside the union of the predicted spans.
            let mut at = a;
            let mut spans: Vec<_> = pred.iter().filter(|(x, y)| *y > a && *x < b).collect();
            spans.sort();
            for (x, y) in spans {
                if *x > at {
                    return false;
                }
                at = at.max(*y);
                if at >= b {
                    return true;
                }
            }
            at >= b
        };
        for g in &d.gold {
            if g.label == "OTHER" {
                continue;
            }
            let text = &d.text[g.start..g.end];
            let mut toks = tokens(&d.text, g.start, g.end);
            if g.label == "DATE" {
                toks.retain(|&(a, b)| !is_year(&d.text[a..b]));
            }
            if toks.is_empty() || (g.label == "AGE" && !age_over_89(text)) {
                continue;
            }
            let t = s.per_label.entry(g.label).or_default();
            t.total += 1;
            if toks.iter().all(|&(a, b)| covered(a, b)) {
                t.good += 1;
            } else {
                s.misses.push((d.id.clone(), g.label, text.to_string()));
            }
        }
        for (a, b) in tokens(&d.text, 0, d.text.len()) {
            if d.gold.iter().any(|g| a < g.end && b > g.start) {
                continue;
            }
            s.ordinary.total += 1;
            if !pred.iter().any(|&(x, y)| a < y && b > x) {
                s.ordinary.good += 1;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str, gold: &[(&str, &'static str)]) -> Doc {
        let gold = gold
            .iter()
            .map(|(t, l)| {
                let start = text.find(t).unwrap();
                Gold {
                    start,
                    end: start + t.len(),
                    label: l,
                }
            })
            .collect();
        Doc {
            corpus: "t",
            blind: false,
            id: "d".into(),
            text: text.into(),
            gold,
        }
    }

    #[test]
    fn an_identifier_counts_as_removed_only_when_none_of_its_words_survive() {
        let d = doc(
            "Seen by Gilbert P. Perez today",
            &[("Gilbert P. Perez", "NAME")],
        );
        let start = d.text.find("Gilbert").unwrap();
        let s = score(std::slice::from_ref(&d), &[vec![(start, start + 10)]]);
        assert_eq!(s.per_label["NAME"], Tally { total: 1, good: 0 });
        let s = score(std::slice::from_ref(&d), &[vec![(start, start + 16)]]);
        assert_eq!(s.per_label["NAME"], Tally { total: 1, good: 1 });
        assert_eq!(s.ordinary, Tally { total: 3, good: 3 });
    }

    #[test]
    fn years_and_ages_under_90_are_not_counted_and_ordinary_words_lost_are() {
        let d = doc(
            "In 2004 aged 79 and 94, on 2075-01-07",
            &[
                ("2004", "DATE"),
                ("79", "AGE"),
                ("94", "AGE"),
                ("2075-01-07", "DATE"),
            ],
        );
        let at = d.text.find("01-07").unwrap();
        let s = score(std::slice::from_ref(&d), &[vec![(at, at + 5), (0, 2)]]);
        assert_eq!(s.per_label["DATE"], Tally { total: 1, good: 1 });
        assert_eq!(s.per_label["AGE"], Tally { total: 1, good: 0 });
        assert_eq!(s.ordinary, Tally { total: 4, good: 3 });
    }

    #[test]
    fn the_spoken_rendering_says_numbers_and_keeps_the_labels_on_them() {
        let d = doc(
            "Call 555-867-5309 or mail a.b@ex.com, born 9/15/1946, at 3968 Bay Street",
            &[
                ("555-867-5309", "PHONE"),
                ("a.b@ex.com", "EMAIL"),
                ("9/15/1946", "DATE"),
                ("3968 Bay Street", "ADDRESS"),
            ],
        );
        let s = &spoken(&[d])[0];
        assert_eq!(
            s.text,
            "Call five five five, eight six seven, five three zero nine or mail a dot b at ex dot com, \
             born September fifteenth, 1946, at thirty-nine sixty-eight Bay Street"
        );
        let said: Vec<_> = s.gold.iter().map(|g| &s.text[g.start..g.end]).collect();
        assert_eq!(said[3], "thirty-nine sixty-eight Bay Street");
        assert_eq!(ordinal(23), "twenty-third");
    }
}

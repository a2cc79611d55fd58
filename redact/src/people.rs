//! Names: the Census names dataset plus context. A run of capitalised words is a name when
//! - a title starts it ("Dr. Patel", "Mrs. Foster's"), or a cue comes just before it
//!   ("my name is", "this is", "I'm", "thanks", "hello"): any capitalised words that are not
//!   calendar, place or product words;
//! - it starts with a first name that is not also a common word ("Linda Garcia", "Paul"); a
//!   first name that is a common word ("Will", "Mark", "Rose") only with a surname after it;
//! - a surname from the dataset stands alone, not at the start of a sentence ("It's Kowalski").
//!
//! The words after a name's first word join it while they are capitalised and not stop words.

use crate::names::{Names, possessive_trim};
use crate::{Class, Hit};
use regex::Regex;
use std::sync::LazyLock;

static WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\p{L}[\p{L}\p{M}'’]*(?:-\p{L}[\p{L}\p{M}]*)*").expect("built-in pattern")
});

const TITLES: &[&str] = &[
    "dr",
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "prof",
    "professor",
    "judge",
    "doctor",
];

/// Capitalised words that are never part of a name (calendar, places, products, phrases).
const STOP: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "today",
    "tomorrow",
    "yesterday",
    "christmas",
    "easter",
    "thanksgiving",
    "new",
    "north",
    "south",
    "east",
    "west",
    "street",
    "avenue",
    "road",
    "drive",
    "lane",
    "court",
    "center",
    "centre",
    "hospital",
    "clinic",
    "university",
    "college",
    "school",
    "county",
    "city",
    "lake",
    "river",
    "bank",
    "group",
    "inc",
    "corp",
    "company",
    "team",
    "teams",
    "slack",
    "zoom",
    "google",
    "microsoft",
    "apple",
    "amazon",
    "outlook",
    "gmail",
    "excel",
    "word",
    "office",
    "windows",
    "linux",
    "medicare",
    "medicaid",
    "okay",
    "ok",
    "yes",
    "no",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "please",
    "sorry",
    "god",
    "english",
    "spanish",
    "french",
    "american",
    "america",
    "europe",
    "african",
    "asian",
    "internet",
    "web",
    "email",
    "phone",
    "the",
    "a",
    "an",
    "and",
    "or",
    "but",
    "so",
    "our",
    "my",
    "your",
    "his",
    "her",
    "their",
    "its",
    "it",
    "it's",
    "i'm",
    "we",
    "we're",
    "you",
    "they",
    "he",
    "she",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "what",
    "who",
    "when",
    "where",
    "why",
    "how",
    "if",
    "then",
    "also",
    "just",
    "well",
    "now",
    "let's",
    "can",
    "could",
    "would",
    "should",
    "will",
    "did",
    "do",
    "does",
    "is",
    "are",
    "was",
    "were",
    "has",
    "have",
    "had",
    "not",
    "all",
    "any",
    "some",
    "everyone",
    "everybody",
    "anyone",
    "nobody",
    "someone",
    "state",
    "federal",
    "court's",
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "california",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
    "georgia",
    "hawaii",
    "idaho",
    "illinois",
    "indiana",
    "iowa",
    "kansas",
    "kentucky",
    "louisiana",
    "maine",
    "maryland",
    "massachusetts",
    "michigan",
    "minnesota",
    "mississippi",
    "missouri",
    "montana",
    "nebraska",
    "nevada",
    "ohio",
    "oklahoma",
    "oregon",
    "pennsylvania",
    "tennessee",
    "texas",
    "utah",
    "vermont",
    "virginia",
    "washington",
    "wisconsin",
    "wyoming",
    "york",
    "nothing",
    "everything",
    "something",
    "anything",
    "none",
    "each",
    "both",
    "either",
    "neither",
    "one",
    "another",
    "other",
    "others",
    "many",
    "most",
    "much",
    "several",
    "python",
    "java",
    "rust",
    "postgres",
    "mysql",
    "excel",
    "salesforce",
    "hubspot",
    "jira",
    "github",
    "gitlab",
    "aws",
    "azure",
    "docker",
    "kubernetes",
    "iphone",
    "android",
    "chrome",
    "firefox",
    "safari",
    "powerpoint",
    "sharepoint",
    "onedrive",
    "dropbox",
    "legal",
    "finance",
    "sales",
    "marketing",
    "support",
    "engineering",
    "security",
    "hr",
    "congress",
    "senate",
    "covid",
    "internet",
];

/// Verbs that, right after a capitalised word opening a sentence, make it a person.
const REPORTING: &[&str] = &[
    "said",
    "says",
    "asked",
    "asks",
    "mentioned",
    "thinks",
    "thought",
    "agreed",
    "wants",
    "wanted",
    "told",
    "tells",
    "called",
    "emailed",
    "texted",
    "confirmed",
    "suggested",
    "explained",
    "replied",
    "noted",
    "promised",
    "recommended",
    "signed",
    "joined",
];

/// Verbs only people do, after a word that opens a sentence ("Zak shouted").
const PERSON_VERBS: &[&str] = &[
    "shouted",
    "lives",
    "lived",
    "spent",
    "went",
    "told",
    "asked",
    "wants",
    "wanted",
    "thinks",
    "thought",
    "knows",
    "knew",
    "works",
    "worked",
    "gave",
    "married",
    "loves",
    "loved",
    "likes",
    "liked",
    "died",
    "visited",
    "moved",
    "says",
    "said",
    "replied",
    "wrote",
    "feels",
    "felt",
    "smiled",
    "laughed",
    "cried",
    "agreed",
    "explained",
];

/// Verbs after which a capitalised word is who spoke ("says Gerste").
const AFTER_REPORTING: &[&str] = &[
    "says",
    "said",
    "asks",
    "asked",
    "adds",
    "added",
    "writes",
    "wrote",
    "explains",
    "explained",
    "recalls",
    "recalled",
    "notes",
    "noted",
    "according",
];

/// Words that, before a capitalised word inside a sentence, announce a person.
const PERSON_CUES: &[&str] = &[
    "with",
    "ask",
    "asked",
    "tell",
    "told",
    "give",
    "get",
    "let",
    "cc",
    "met",
    "meet",
    "emailed",
    "called",
    "texted",
    "introduce",
    "thank",
    "ping",
    "remind",
    "reminded",
    "invite",
    "invited",
];

/// Words after a sentence's first word that show it is an imperative verb, not a name.
const OBJECTS: &[&str] = &[
    "me", "us", "him", "her", "them", "it", "the", "a", "an", "your", "my", "our", "this", "that",
];

/// First names that are also common words: a name only with a surname after them, or after a
/// title or cue.
const AMBIGUOUS: &[&str] = &[
    "will", "may", "mark", "grant", "hope", "bill", "guy", "art", "pat", "sue", "rose", "joy",
    "faith", "chase", "dawn", "miles", "drew", "june", "april", "august", "summer", "autumn",
    "winter", "spring", "rich", "ray", "gene", "jack", "sterling", "king", "young", "white",
    "brown", "green", "black", "gray", "grey", "long", "little", "hall", "wood", "lane", "love",
    "page", "major", "sharp", "price", "mercy", "iris", "ivy", "lily", "ruby", "pearl", "crystal",
    "amber", "jade", "sky", "rain", "storm", "star", "angel", "sunny", "honey", "candy", "cherry",
    "penny", "sandy", "dusty", "rusty", "buck", "bud", "chip", "duke", "earl", "harley", "hunter",
    "carter", "mason", "parker", "porter", "cooper", "tucker", "baker", "taylor", "jordan",
    "dallas", "austin", "houston", "phoenix", "paris", "london", "florence", "georgia", "virginia",
    "carolina", "madison", "savannah", "sydney", "chelsea", "brooklyn", "cliff", "dean", "don",
    "glen", "gay", "ward", "lee", "kim", "van", "rod", "sun", "moon", "field", "bell", "case",
    "check", "call", "ask", "text", "send", "call", "note", "dot", "ace", "max", "can", "bob",
    "joe", "robin", "wade", "wes", "noble", "royal", "colt", "blaze", "reed", "forest", "river",
    "lake", "stone", "rock", "brook", "heath", "moss", "fern", "holly", "olive", "violet", "daisy",
    "poppy", "hazel", "sage", "basil", "clay", "flint", "ash",
];

/// Words just before a name that announce it.
const CUES: &[&[&str]] = &[
    &["my", "name", "is"],
    &["name", "is"],
    &["my", "name's"],
    &["name's"],
    &["this", "is"],
    &["i'm"],
    &["i", "am"],
    &["call", "me"],
    &["named"],
    &["thanks"],
    &["thank", "you"],
    &["hi"],
    &["hello"],
    &["hey"],
    &["dear"],
    &["spoke", "with"],
    &["talked", "to"],
    &["signed", "by"],
    &["name"],
    &["patient"],
    &["pt"],
    &["attending"],
    &["physician"],
    &["provider"],
    &["pcp"],
    &["dictated", "by"],
    &["resident"],
    &["surgeon"],
];

struct Tok<'a> {
    start: usize,
    /// End without a possessive `'s`.
    end: usize,
    text: &'a str,
    lower: String,
    cap: bool,
    /// Two letters or more, all upper case ("OROZCO").
    upper: bool,
    /// One upper-case letter ("P" in "Gilbert P. Perez").
    letter: bool,
    initial: bool,
    /// Only spaces (or nothing) between the previous token and this one.
    joined: bool,
}

fn tokens(text: &str) -> Vec<Tok<'_>> {
    let mut out: Vec<Tok<'_>> = Vec::new();
    let mut prev_end = 0;
    for m in WORD.find_iter(text) {
        let w = m.as_str();
        let mut chars = w.chars();
        let first_upper = chars.next().is_some_and(char::is_uppercase);
        let has_lower = w.chars().skip(1).any(char::is_lowercase);
        let gap = &text[prev_end..m.start()];
        let before = text[..m.start()].trim_end_matches([' ', '"', '\'', '“', '(']);
        let initial = before.is_empty() || before.ends_with(['.', '!', '?', ':', ';', '\n']);
        let trimmed = possessive_trim(w);
        out.push(Tok {
            start: m.start(),
            end: m.start() + trimmed.len(),
            text: trimmed,
            lower: w.to_lowercase(),
            cap: first_upper && has_lower,
            upper: w.chars().count() >= 2
                && w.chars().all(|c| !c.is_alphabetic() || c.is_uppercase()),
            letter: w.chars().count() == 1 && first_upper,
            initial,
            joined: !out.is_empty() && gap.chars().all(|c| c == ' '),
        });
        prev_end = m.end();
    }
    out
}

fn is_title(t: &Tok<'_>) -> bool {
    t.cap && TITLES.contains(&t.lower.as_str())
}

fn stop(t: &Tok<'_>) -> bool {
    STOP.contains(&possessive_trim(&t.lower))
}

fn ambiguous(t: &Tok<'_>) -> bool {
    AMBIGUOUS.contains(&possessive_trim(&t.lower))
}

/// Whether a cue phrase ends just before token `i`.
fn cued(toks: &[Tok<'_>], i: usize) -> bool {
    CUES.iter().any(|cue| {
        if cue.len() > i {
            return false;
        }
        let at = i - cue.len();
        cue.iter()
            .zip(&toks[at..i])
            .all(|(c, t)| *c == t.lower.as_str())
    }) || (i >= 1 && toks[i - 1].lower == "it's" && {
        // "the name? It's Okafor": "name" among the few words before.
        let from = i.saturating_sub(6);
        toks[from..i - 1].iter().any(|t| t.lower == "name")
    })
}

pub(crate) fn find(text: &str, names: Option<&Names>) -> Vec<Hit> {
    let toks = tokens(text);
    let mut out = Vec::new();
    let first = |t: &Tok<'_>| names.is_some_and(|n| n.get(t.text).first);
    let common = |t: &Tok<'_>| names.is_some_and(|n| n.get(t.text).common);
    let census_first = |t: &Tok<'_>| names.is_some_and(|n| n.get(t.text).census_first);
    // A first name from outside the Census or a surname that is also an ordinary English word
    // ("General", "Reason", "Signs") needs context, like the built-in ambiguous words.
    let ambiguous = |t: &Tok<'_>| {
        ambiguous(t)
            || names.is_some_and(|n| {
                let i = n.get(t.text);
                i.common && !i.census_first
            })
    };
    let last = |t: &Tok<'_>| names.is_some_and(|n| n.get(t.text).last_rank.is_some());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if !t.cap && !t.upper && !t.text.chars().all(char::is_lowercase) {
            i += 1;
            continue;
        }
        // Where the name starts (token index) and whether its first word is settled.
        let start = if !t.cap {
            // An upper-case name after a cue ("Attending: YBARRA").
            (t.upper
                && t.text.chars().count() >= 3
                && cued(&toks, i)
                && (first(t) || last(t) || !common(t)))
            .then_some((i, i))
        } else if is_title(t) {
            let next = toks.get(i + 1);
            let dotted = next.is_some_and(|n| {
                let gap = &text[t.end..n.start];
                (gap == ". " || gap == " " || gap == ".") && n.cap && !stop(n)
            });
            dotted.then_some((i, i + 1))
        } else {
            let next = toks.get(i + 1);
            // Whether a capitalised surname is joined right after this word.
            let surname_next = |strict: bool| {
                next.is_some_and(|n| {
                    n.joined && n.cap && last(n) && !stop(n) && (!strict || !ambiguous(n))
                })
            };
            let starts = !stop(t)
                && (cued(&toks, i)
                    || (first(t) && !ambiguous(t))
                    // A common word that is also a name: only with a surname after it.
                    || ((first(t) || (last(t) && ambiguous(t)))
                        && ((surname_next(false) && !t.initial)
                            || (first(t) && surname_next(true))))
                    // A surname alone, inside a sentence.
                    || (!first(t) && last(t) && !t.initial && !ambiguous(t))
                    // After a verb that takes a person ("checked with", "ask").
                    || (!t.initial
                        && i >= 1
                        && t.joined
                        && PERSON_CUES.contains(&toks[i - 1].lower.as_str())
                        && !ambiguous(t))
                    // Opening a sentence before a reporting verb ("Abdullah said").
                    || (t.initial
                        && next.is_some_and(|n| {
                            n.joined
                                && (REPORTING.contains(&n.lower.as_str())
                                    || (last(t) && !ambiguous(t) && n.lower == "will"))
                        }))
                    // After a reporting verb ("says Gerste", "said Ms Okafor").
                    || (i >= 1
                        && t.joined
                        && !common(t)
                        && AFTER_REPORTING.contains(&toks[i - 1].lower.as_str()))
                    // A middle initial between capitalised words ("Ravil G Yefimov").
                    || (!ambiguous(t)
                        && !common(t)
                        && next.is_some_and(|n| {
                            let g = &text[t.end..n.start];
                            n.letter
                                && g == " "
                                && toks.get(i + 2).is_some_and(|m| {
                                    let g2 = &text[n.end..m.start];
                                    (g2 == " " || g2 == ". ") && m.cap && !stop(m) && !common(m)
                                })
                        }))
                    // Two capitalised words side by side, neither an English word nor a
                    // calendar, place or product word ("Cendrillon Coudert", "Rubija Liberšar").
                    || (!common(t)
                        && !ambiguous(t)
                        && next.is_some_and(|n| {
                            n.joined && n.cap && !stop(n) && !is_title(n) && !common(n) && !ambiguous(n)
                        })));
            starts.then_some((i, i))
        };
        // A sentence's first word followed by an object is an imperative ("Ping me", "Call
        // the"), whatever the dataset says.
        let start = match start {
            Some((from, _))
                if toks[from].initial
                    && !is_title(&toks[from])
                    && toks
                        .get(from + 1)
                        .is_some_and(|n| n.joined && OBJECTS.contains(&n.lower.as_str())) =>
            {
                None
            }
            s => s,
        };
        // Upper-case names in headers and signatures: "FILBERT BRIGHT", "OROZCO,KYLE" (a first
        // name and a surname from the dataset, side by side).
        let start = start.or_else(|| {
            let n = toks.get(i + 1)?;
            let gap = &text[t.end..n.start];
            let pair = t.upper
                && n.upper
                && t.text.chars().count() >= 3
                && n.text.chars().count() >= 3
                && matches!(gap, " " | "," | ", ")
                && ((first(t) && last(n)) || (last(t) && first(n)))
                && !stop(t)
                && !stop(n);
            pair.then_some((i, i + 1))
        });
        // A first name and a surname in lower case, neither an English word ("eva kleist").
        let start = start.or_else(|| {
            let n = toks.get(i + 1)?;
            let lower = |x: &Tok<'_>| x.text.chars().all(char::is_lowercase);
            let pair = lower(t)
                && lower(n)
                && text[t.end..n.start] == *" "
                && first(t)
                && last(n)
                && !common(t)
                && !common(n)
                && !stop(t)
                && !stop(n);
            pair.then_some((i, i + 1))
        });
        // A Census first name in lower case that is no English word ("pamela, donna and
        // brian"), with a middle initial and a surname after it when they are there
        // ("benjamin a seiler").
        let start = start.or_else(|| {
            let lower = |x: &Tok<'_>| x.text.chars().all(char::is_lowercase);
            let known = lower(t)
                && t.text.chars().count() >= 3
                && census_first(t)
                && !common(t)
                && !stop(t);
            if !known {
                return None;
            }
            let n = toks.get(i + 1);
            let m = toks.get(i + 2);
            let initial_then_word = n.zip(m).is_some_and(|(n, m)| {
                n.text.chars().count() == 1
                    && lower(n)
                    && matches!(&text[t.end..n.start], " ")
                    && matches!(&text[n.end..m.start], " " | ". ")
                    && lower(m)
                    && !common(m)
                    && !stop(m)
            });
            Some(if initial_then_word {
                (i, i + 2)
            } else {
                (i, i)
            })
        });
        // A word opening a line and followed by a colon, no English word: a speaker
        // ("Gijsbrecht: \"Who are you?\"").
        let start = start.or_else(|| {
            let line_start = text[..t.start].trim_end_matches([' ', '\t']);
            let opens_line = line_start.is_empty() || line_start.ends_with('\n');
            let colon = text[t.end..].starts_with(':');
            let cue_word = CUES.iter().any(|c| c.len() == 1 && c[0] == t.lower);
            // Only with the English words loaded: without them every heading would pass.
            (names.is_some()
                && t.cap
                && opens_line
                && colon
                && !cue_word
                && !common(t)
                && !stop(t)
                && !is_title(t))
            .then_some((i, i))
        });
        // A word opening a sentence before a verb only people do ("Zak shouted", "Trivo
        // lives on"), no English word.
        let start = start.or_else(|| {
            let n = toks.get(i + 1)?;
            (names.is_some()
                && t.cap
                && t.initial
                && n.joined
                && PERSON_VERBS.contains(&n.lower.as_str())
                && !common(t)
                && !stop(t)
                && !is_title(t))
            .then_some((i, i))
        });
        let Some((from, mut to)) = start else {
            i += 1;
            continue;
        };
        // Join the capitalised words that follow, up to three in all after a title; a middle
        // initial ("Gilbert P. Perez", "Owen M Gallagher") joins when a capitalised word
        // follows it.
        while to + 1 < toks.len() && to + 1 - from < 5 {
            let n = &toks[to + 1];
            let gap = &text[toks[to].end..n.start];
            let after_initial = toks[to].letter && (gap == ". " || gap == ".");
            let linked = n.joined || after_initial;
            let word = n.cap && !stop(n) && !is_title(n);
            let middle = n.letter
                && toks.get(to + 2).is_some_and(|m| {
                    let g = &text[n.end..m.start];
                    (g == " " || g == ". ") && m.cap && !stop(m)
                });
            if linked && (word || middle) {
                to += 1;
            } else {
                break;
            }
        }
        // Capitalised words just before the name belong to it ("Bonifacy Kaczmarek", "Velimir R.
        // Janković"): a word opening a sentence only when it is a known first name.
        let mut from = from;
        for _ in 0..3 {
            let Some(p) = from.checked_sub(1).map(|k| &toks[k]) else {
                break;
            };
            let gap = &text[p.end..toks[from].start];
            let initial_before =
                p.letter && !matches!(p.text, "I" | "A") && (gap == ". " || gap == " ");
            // Before a middle initial ("Xzavian G. Tavares") any capitalised word is the
            // first name, even opening a line.
            let word_before = gap == " "
                && p.cap
                && !stop(p)
                && !is_title(p)
                && (toks[from].letter || (!ambiguous(p) && (!p.initial || first(p))));
            if initial_before || word_before {
                from -= 1;
            } else {
                break;
            }
        }
        // "Kevin Veitonen II", "Ravi Patel Jr."
        if let Some(n) = toks.get(to + 1) {
            let gap = &text[toks[to].end..n.start];
            if (gap == " " || gap == ", ") && matches!(n.text, "II" | "III" | "IV" | "Jr" | "Sr") {
                to += 1;
            }
        }
        // "Villegas, Yosef": a surname, a comma, then a first name.
        if let Some(n) = toks.get(to + 1) {
            let gap = &text[toks[to].end..n.start];
            if (gap == ", " || gap == ",") && (n.cap || n.upper) && first(n) && !ambiguous(n) {
                to += 1;
            }
        }
        out.push(Hit {
            start: toks[from].start,
            end: toks[to].end,
            class: Class::Name,
        });
        i = to + 1;
    }
    // Lists: "our founders: Morrison, Rogers and Torres". A capitalised word listed next to a
    // name found above is a name too (a few rounds, for longer lists). Sets and a sorted index
    // keep each round linear in the text.
    const SEPARATORS: [&str; 5] = [", ", " and ", ", and ", " & ", " or "];
    // A list of surnames and words no dictionary knows ("Monjeau, Graves and Reed", "Usamov and
    // Bowers"): all names, when one of them is an unknown word and one a known surname.
    let mut k = 0;
    while k < toks.len() {
        let item = |t: &Tok<'_>| t.cap && !stop(t) && !is_title(t);
        if !item(&toks[k]) {
            k += 1;
            continue;
        }
        let mut end = k;
        while end + 1 < toks.len()
            && item(&toks[end + 1])
            && SEPARATORS.contains(&&text[toks[end].end..toks[end + 1].start])
        {
            end += 1;
        }
        let run = &toks[k..=end];
        if run.len() >= 2
            && run.iter().all(|t| last(t) || !common(t))
            && run.iter().any(|t| !common(t))
            && run.iter().any(last)
        {
            for t in run {
                out.push(Hit {
                    start: t.start,
                    end: t.end,
                    class: Class::Name,
                });
            }
        }
        k = end + 1;
    }
    for _ in 0..4 {
        let mut added = false;
        let ends: std::collections::HashSet<usize> = out
            .iter()
            .filter(|h| h.class == Class::Name)
            .map(|h| h.end)
            .collect();
        let starts: std::collections::HashSet<usize> = out
            .iter()
            .filter(|h| h.class == Class::Name)
            .map(|h| h.start)
            .collect();
        let mut spans: Vec<(usize, usize)> = out.iter().map(|h| (h.start, h.end)).collect();
        spans.sort_unstable();
        let mut reach = Vec::with_capacity(spans.len());
        let mut far = 0;
        for &(_, e) in &spans {
            far = far.max(e);
            reach.push(far);
        }
        let covered = |t: &Tok<'_>| {
            let k = spans.partition_point(|s| s.0 < t.end);
            k > 0 && reach[k - 1] > t.start
        };
        let mut new_hits = Vec::new();
        for t in &toks {
            if !t.cap
                || stop(t)
                || is_title(t)
                || (common(t) && !first(t) && !last(t))
                || covered(t)
            {
                continue;
            }
            let beside = SEPARATORS.iter().any(|sep| {
                let before = t
                    .start
                    .checked_sub(sep.len())
                    .is_some_and(|at| text.get(at..t.start) == Some(*sep) && ends.contains(&at));
                let after = text.get(t.end..t.end + sep.len()) == Some(*sep)
                    && starts.contains(&(t.end + sep.len()));
                before || after
            });
            if beside {
                new_hits.push(Hit {
                    start: t.start,
                    end: t.end,
                    class: Class::Name,
                });
                added = true;
            }
        }
        out.extend(new_hits);
        if !added {
            break;
        }
    }
    out
}

/// Words a speaker label carries that are not a name.
const LABEL_WORDS: &[&str] = &[
    "guest",
    "host",
    "co-host",
    "speaker",
    "participant",
    "unknown",
    "phone",
    "iphone",
    "android",
    "user",
    "admin",
    "bot",
    "notetaker",
    "recorder",
    "room",
    "conference",
    "meeting",
    "external",
    "presenter",
    "organizer",
    "organiser",
    "me",
    "caller",
    "dial-in",
];

/// The words of a found name worth remembering: two letters or more, capitalised or upper
/// case, not a title, a stop word or a first name that is also a common word.
pub(crate) fn name_words(name: &str) -> Vec<String> {
    tokens(name)
        .iter()
        .filter(|t| (t.cap || t.upper) && !is_title_word(t) && !stop(t) && !ambiguous(t))
        .map(|t| possessive_trim(&t.lower).to_string())
        .collect()
}

fn is_title_word(t: &Tok<'_>) -> bool {
    TITLES.contains(&t.lower.trim_end_matches('.'))
}

/// The name words of a speaker label (bracketed notes left out).
pub(crate) fn label_words(label: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut depth = 0usize;
    for c in label.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    name_words(&plain)
        .into_iter()
        .filter(|w| !LABEL_WORDS.contains(&w.as_str()))
        .collect()
}

/// Every capitalised or upper-case word of `text` that the meeting already knows as a name.
pub(crate) fn remembered(text: &str, known: &std::collections::HashSet<String>) -> Vec<Hit> {
    if known.is_empty() {
        return Vec::new();
    }
    tokens(text)
        .iter()
        .filter(|t| (t.cap || t.upper) && known.contains(possessive_trim(&t.lower)))
        .map(|t| Hit {
            start: t.start,
            end: t.end,
            class: Class::Name,
        })
        .collect()
}

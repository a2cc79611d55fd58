//! Identifiers found by pattern and by keyword context (everything but names).

use crate::{Class, Hit};
use regex::Regex;
use std::sync::LazyLock;

fn re(p: &str) -> Regex {
    Regex::new(p).expect("built-in pattern")
}

const MONTH: &str = r"(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?";
const WEEKDAY: &str = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
const ORD_WORD: &str = r"(?:(?:twenty|thirty)[- ](?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth)";
const DIGIT_WORD: &str = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)";
const STATES: &str = r"(?:Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming|AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)";

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
});
static SPOKEN_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:[a-z0-9]+ (?:dot|underscore) )*[a-z0-9]+ at [a-z0-9-]+(?: dot [a-z0-9-]+)*? dot (?:com|org|net|edu|gov|io|co|us|uk|info|biz|[a-z]{2})\b",
    )
});
/// A web address said aloud: "www dot example dot se", "example dot com slash login".
static SPOKEN_URL: LazyLock<Regex> = LazyLock::new(|| {
    // After "www dot" any ending is a web address; without it, only endings that are not also
    // little English words ("the dot at nine").
    re(
        r"(?i)\b(?:https?\s+(?:colon\s+)?(?:slash\s+slash\s+)?)?(?:www\s+dot\s+[a-z0-9-]+(?:\s+dot\s+[a-z0-9-]+)*\s+dot\s+[a-z]{2,6}|[a-z0-9-]+(?:\s+dot\s+[a-z0-9-]+)*\s+dot\s+(?:com|org|net|edu|gov|io|co|info|biz|app|dev|uk|us|ca|au|nz|ie|de|fr|es|nl|be|se|dk|fi|pl|cz|sk|pt|br|ch|ee|lv|lt|hu|gr|tr|za|mx|ar|jp|cn|ru|ua|ro|bg|hr|si|rs|il|sg|hk))\b(?:\s+slash\s+[a-z0-9-]+)*",
    )
});
static URL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:https?://|www\.)[^\s<>]+|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|co|us|info|biz|app|dev)\b(?:/[^\s<>]*)?",
    )
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b")
});
static IPV6: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:\b[0-9a-f]{1,4})?(?:::?[0-9a-f]{1,4}){2,7}(?:::)?"));
static MAC: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}\b"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b"));
static SSN_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:social security|social|ssn)\b\D{0,25}?\b(\d{9})\b"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\+1[\s.-]?|\b1[\s.-])?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b(?:\s*(?:ext\.?|extension|x)\s*\d{1,5}\b)?",
    )
});
static SPOKEN_DIGITS: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?i)\b(?:{DIGIT_WORD}[\s,.-]+){{6,}}{DIGIT_WORD}\b"
    ))
});
static DATES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    let wd = format!(r"(?:{WEEKDAY},?\s+)?");
    let ord = format!(r"(?:\d{{1,2}}(?:st|nd|rd|th)?|{ORD_WORD})");
    vec![
        // the 14th of March (2024)
        re(&format!(
            r"\b{wd}(?:the\s+)?{ord}\s+of\s+{MONTH}(?:,?\s+\d{{4}})?\b"
        )),
        // March 3rd, 2024 / Thursday, May 16th / Sept 30 / March the first
        re(&format!(
            r"\b{wd}{MONTH}\s+(?:the\s+)?{ord}\b(?:,?\s+\d{{4}}\b)?"
        )),
        // 5 May 2024, 14th March
        re(&format!(
            r"\b{wd}\d{{1,2}}(?:st|nd|rd|th)?\s+{MONTH}(?:,?\s+\d{{4}})?\b"
        )),
        // on the 30th
        re(r"\b(?:on|by|before|after|until|till|since|from)\s+(the\s+\d{1,2}(?:st|nd|rd|th))\b"),
        // March 2019
        re(&format!(r"\b{MONTH},?\s+(?:of\s+)?(?:19|20)\d\d\b")),
        // Wednesday the 9th
        re(&format!(r"\b{WEEKDAY},?\s+the\s+{ord}\b")),
        // 9/12/2023, 12-01-98, 1975-04-09, 12.05.2024
        re(
            r"\b\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})\b|\b\d{1,2}-\d{1,2}-(?:\d{4}|\d{2})\b|\b\d{1,2}\.\d{1,2}\.(?:19|20)\d\d\b|\b(?:19|20|21)\d\d[/-]\d{1,2}[/-]\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?\b",
        ),
    ]
});
static AGE: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    let old = r"(?:9\d|1[0-4]\d)";
    let words = r"(?:ninety|a hundred|one hundred)(?:[- ](?:and[- ])?(?:one|two|three|four|five|six|seven|eight|nine|ten))?";
    vec![
        re(&format!(
            r"(?i)\b(?:{old}|{words})(?:\s+years?\s+old|-years?-old|\s*y/?o)\b"
        )),
        re(&format!(r"(?i)\b(?:age|aged)\s+({old}|{words})\b")),
        re(&format!(
            r"\b(?:He|She|he|she)(?:'s|’s| is| was| turned| turns)\s+({old}|{words})\b"
        )),
        // "is ninety-four." / "was 96, and": a bare age closes its clause.
        re(&format!(
            r"(?i)\b(?:is|was|turned|turns|turning)\s+({old}|{words})(?:[.,;!?]|\s+(?:and|now|today|this|last|next)\b|$)"
        )),
    ]
});
static STREET: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b\d{1,6}\s+(?:(?:[A-Z][a-z]+|[NSEW]\.?|\d{1,3}(?:st|nd|rd|th))\s+){0,3}(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?|Terrace|Parkway|Pkwy\.?|Circle|Highway|Hwy\.?|Square|Trail|Broadway)\b(?:,?\s+(?:Apt\.?|Apartment|Suite|Unit|Floor|Room|#)\s*[A-Za-z0-9-]+)?",
    )
});
/// A street named without its number ("on Cedar Lane").
static STREET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:on|at|off|along|near)\s+((?:[A-Z][a-z]+\s+){1,2}(?:Street|Avenue|Road|Boulevard|Lane|Drive|Court|Terrace|Parkway|Place))\b",
    )
});
static PO_BOX: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:P\.?\s?O\.?\s+Box|Post Office Box)\s+\d+\b"));
static CITY: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b((?:(?:New|San|Los|Las|Fort|Saint|St\.|Salt|Santa|El|Palm|Grand|Little|North|South|East|West|Lake|Mount|Port|Sioux|Baton|Cedar|Des|Corpus|Colorado|Kansas|Oklahoma|Jersey|Long|Virginia|Ann|Bowling|Beverly|Miami|Palo|Key|Glen|Green)\s+)?[A-Z][a-z]+),\s+{STATES}\b"
    ))
});
static ZIP: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        re(&format!(r"\b{STATES},?\s+(\d{{5}}(?:-\d{{4}})?)\b")),
        re(r"(?i)\bzip(?:\s*code)?\b\D{0,15}?\b(\d{5}(?:-\d{4})?)\b"),
        // Any country's postcode after the word: "ZIP: 6280", "postal code B0J 2H0".
        re(
            r"(?i)\b(?:zip|postal|postcode|post code)(?:\s*code)?\b[\s:#-]{0,4}(?:is\s+)?((?-i:[A-Z0-9]{2,5}(?:[ -][A-Z0-9]{2,4})?))\b",
        ),
        re(&format!(
            r"(?i)\b(?:zip|postal|postcode|post code)(?:\s*code)?\b[\s:#-]{{0,4}}(?:is\s+)?((?:{DIGIT_WORD}[\s,-]+){{2,8}}{DIGIT_WORD})\b"
        )),
    ]
});
/// A month and a two-digit year or day with nothing around it ("seen on 2/03", "CABG in 3/80");
/// checked by [`short_dates`] so that ratios and longer numbers stay.
static SHORT_DATE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:0?[1-9]|1[0-2])/\d{2}\b"));
/// A month named alone ("in November"); "May" only where a date is plain from the words around.
static MONTH_ALONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:January|February|March|April|June|July|August|September|October|November|December)\b|(?i:\b(?:in|of|since|until|till|early|late|mid|last|next|this|during)\s+)(May)\b",
    )
});
/// Any run of digit groups that could be a phone number, in any country's grouping.
static PHONE_ANY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\+\s?)?(?:\(\d{1,5}\)[\s.-]?|\b)\d{1,13}(?:(?:[ .-]?\(\d{1,4}\)[ .-]?|[ .-])\d{1,8}){0,6}(?:\s*(?:x|ext\.?|extension)\s*\d{1,5})?\b",
    )
});
/// Words just before a number that make it a phone number.
static PHONE_CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:phone|telephone|tel|cell|mobile|cellphone|number|numbers|call|called|calling|dial|reach|reached|text|texted|whatsapp|fax|contact|landline|line|ph|mob|pager|pgr|beeper|bleep|ext|extension)\b[^.!?]{0,25}$",
    )
});
/// International bank account numbers.
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"));
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}\b"));
/// Keywords that announce an identifier, with the class they announce (longest first).
static KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(medical record|record|mrn|chart|patient id|member|beneficiary|health plan|plan id|policy|medicare|medicaid|insurance|group number|account|acct|routing|card|license plate|licence plate|plate|vin|vehicle|license|licence|certificate|passport|permit|dea|npi|serial|device|imei|udi|case|file|claim|customer|client id|employee|badge|student|contract|confirmation|ticket|identification|id)\b",
    )
});
/// An id-shaped token: letters and digits with at least one digit, or digit groups.
static ID_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:[A-Z]{1,4}[ -]\d{3,}(?:-[A-Za-z0-9]+)*|\d{4}(?: \d{4}){1,3}|[A-Za-z0-9]*\d[A-Za-z0-9]*(?:-[A-Za-z0-9]+)*)\b",
    )
});
static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| re(r"[.!?](?:\s|$)"));

fn keyword_class(k: &str) -> Class {
    match k.to_ascii_lowercase().as_str() {
        "medical record" | "record" | "mrn" | "chart" | "patient id" => Class::Record,
        "member" | "beneficiary" | "health plan" | "plan id" | "policy" | "medicare"
        | "medicaid" | "insurance" | "group number" => Class::HealthPlan,
        "account" | "acct" | "routing" | "card" => Class::Account,
        "license plate" | "licence plate" | "plate" | "vin" | "vehicle" => Class::Vehicle,
        "license" | "licence" | "certificate" | "passport" | "permit" | "dea" | "npi" => {
            Class::License
        }
        "serial" | "device" | "imei" | "udi" => Class::Device,
        _ => Class::Id,
    }
}

/// A token is id-like: at least four letters and digits with at least one digit; not a year
/// (19xx, 20xx) nor an ordinal ("10th").
fn id_like(tok: &str) -> bool {
    let alnum = tok.chars().filter(|c| c.is_ascii_alphanumeric()).count();
    let digits = tok.chars().filter(|c| c.is_ascii_digit()).count();
    let year = alnum == 4 && digits == 4 && (tok.starts_with("19") || tok.starts_with("20"));
    let ordinal = ["st", "nd", "rd", "th"].iter().any(|s| {
        tok.strip_suffix(s)
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    });
    alnum >= 4 && digits >= 1 && !year && !ordinal
}

/// An id with no keyword before it: mixes letters and at least three digits (6+ characters),
/// or is a run of eight or more digits.
fn bare_id(tok: &str) -> bool {
    let alnum = tok.chars().filter(|c| c.is_ascii_alphanumeric()).count();
    let digits = tok.chars().filter(|c| c.is_ascii_digit()).count();
    let upper_or_digit = tok
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
    (upper_or_digit && alnum >= 6 && digits >= 3 && digits < alnum) || (digits >= 8)
}

fn push_all(out: &mut Vec<Hit>, r: &Regex, text: &str, class: Class) {
    for m in r.find_iter(text) {
        out.push(Hit {
            start: m.start(),
            end: m.end(),
            class,
        });
    }
}

fn push_group(out: &mut Vec<Hit>, r: &Regex, text: &str, class: Class) {
    for c in r.captures_iter(text) {
        if let Some(m) = c.get(1) {
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                class,
            });
        }
    }
}

fn trim_url(s: &str) -> usize {
    s.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"'])
        .len()
}

pub(crate) fn find(text: &str) -> Vec<Hit> {
    let mut out = Vec::new();
    push_all(&mut out, &EMAIL, text, Class::Email);
    push_all(&mut out, &SPOKEN_EMAIL, text, Class::Email);
    for m in URL.find_iter(text) {
        let end = m.start() + trim_url(m.as_str());
        out.push(Hit {
            start: m.start(),
            end,
            class: Class::Url,
        });
    }
    push_all(&mut out, &SPOKEN_URL, text, Class::Url);
    push_all(&mut out, &IPV4, text, Class::Ip);
    for m in IPV6.find_iter(text) {
        let s = m.as_str();
        let colons = s.matches(':').count();
        if (s.contains("::") && colons >= 3) || colons == 7 {
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                class: Class::Ip,
            });
        }
    }
    push_all(&mut out, &MAC, text, Class::Device);
    push_all(&mut out, &SSN, text, Class::Ssn);
    push_group(&mut out, &SSN_CONTEXT, text, Class::Ssn);
    let lower = zeroize::Zeroizing::new(text.to_ascii_lowercase());
    for m in PHONE.find_iter(text) {
        let before = window_before(&lower, m.start(), 30);
        let class = if before.contains("fax") {
            Class::Fax
        } else {
            Class::Phone
        };
        out.push(Hit {
            start: m.start(),
            end: m.end(),
            class,
        });
    }
    for m in SPOKEN_DIGITS.find_iter(text) {
        let digits = m
            .as_str()
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
            .count();
        let before = window_before(&lower, m.start(), 30);
        let class = if before.contains("social") || before.contains("ssn") {
            Class::Ssn
        } else if before.contains("fax") {
            Class::Fax
        } else if matches!(digits, 7 | 10 | 11) {
            Class::Phone
        } else {
            Class::Id
        };
        out.push(Hit {
            start: m.start(),
            end: m.end(),
            class,
        });
    }
    for r in DATES.iter() {
        for c in r.captures_iter(text) {
            if let Some(m) = c.get(1).or_else(|| c.get(0)) {
                out.push(Hit {
                    start: m.start(),
                    end: m.end(),
                    class: Class::Date,
                });
            }
        }
    }
    short_dates(text, &mut out);
    for c in MONTH_ALONE.captures_iter(text) {
        if let Some(m) = c.get(1).or_else(|| c.get(0)) {
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                class: Class::Date,
            });
        }
    }
    any_phones(text, &lower, &mut out);
    push_all(&mut out, &IBAN, text, Class::Account);
    push_all(&mut out, &AGE[0], text, Class::Age);
    push_group(&mut out, &AGE[1], text, Class::Age);
    push_group(&mut out, &AGE[3], text, Class::Age);
    for c in AGE[2].captures_iter(text) {
        if let Some(m) = c.get(1) {
            let after = text[m.end()..].trim_start();
            if !after.starts_with('%') && !after.starts_with("percent") {
                out.push(Hit {
                    start: m.start(),
                    end: m.end(),
                    class: Class::Age,
                });
            }
        }
    }
    keyword_ids(text, &mut out);
    push_group(&mut out, &MR, text, Class::Record);
    push_all(&mut out, &CARD, text, Class::Account);
    push_all(&mut out, &STREET, text, Class::Address);
    push_all(&mut out, &PO_BOX, text, Class::Address);
    push_group(&mut out, &STREET_NAME, text, Class::Address);
    // Restart after each city, not after its state: "Avenue, New York, NY" holds two.
    let mut at = 0;
    while let Some(c) = CITY.captures_at(text, at) {
        let Some(m) = c.get(1) else { break };
        out.push(Hit {
            start: m.start(),
            end: m.end(),
            class: Class::Address,
        });
        at = m.end();
    }
    for r in ZIP.iter() {
        push_group(&mut out, r, text, Class::Zip);
    }
    for m in ID_TOKEN.find_iter(text) {
        if bare_id(m.as_str()) {
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                class: Class::Id,
            });
        }
    }
    out
}

/// Up to `n` bytes of `text` before `at`, starting on a character boundary.
fn window_before(text: &str, at: usize, n: usize) -> &str {
    let mut from = at.saturating_sub(n);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    text.get(from..at).unwrap_or("")
}

/// `M/YY` and `M/DD` not inside a longer number, fraction or path.
fn short_dates(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    for m in SHORT_DATE.find_iter(text) {
        let before = m.start().checked_sub(1).map(|i| b[i]);
        let after = b.get(m.end()).copied();
        let glued =
            |c: Option<u8>| c.is_some_and(|c| c == b'/' || c == b'.' || c.is_ascii_alphanumeric());
        let decimal_after =
            after == Some(b'.') && b.get(m.end() + 1).is_some_and(u8::is_ascii_digit);
        if glued(before)
            || decimal_after
            || (after.is_some_and(|c| c == b'/' || c.is_ascii_alphanumeric()))
        {
            continue;
        }
        out.push(Hit {
            start: m.start(),
            end: m.end(),
            class: Class::Date,
        });
    }
}

/// Phone numbers in any country's grouping ("0490 75 40 81", "+44 7700 900123", "99 668472",
/// "pager 84710"): 7 to 15 digits, written as a phone is (a leading `+` or area code in
/// brackets, or three groups and more) or after a word that announces one; never a date
/// (dates are found first and win).
fn any_phones(text: &str, lower: &str, out: &mut Vec<Hit>) {
    let dates: Vec<(usize, usize)> = out
        .iter()
        .filter(|h| h.class == Class::Date)
        .map(|h| (h.start, h.end))
        .collect();
    for m in PHONE_ANY.find_iter(text) {
        let s = m.as_str();
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        let groups = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .count();
        let before = window_before(lower, m.start(), 40);
        // Glued to letters ("HPB-2209-7741", "MD-0098812"): an id, not a phone.
        let b = text.as_bytes();
        let glued_before = m.start() >= 2
            && matches!(b[m.start() - 1], b'-' | b'/')
            && b[m.start() - 2].is_ascii_alphanumeric();
        let glued_after = b
            .get(m.end())
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'/');
        if glued_before || glued_after {
            continue;
        }
        // "record number 4482917", "routing number ...": the id rules own it, unless a phone
        // word is there too.
        let strong = [
            "phone", "tel", "call", "cell", "mobile", "fax", "pager", "pgr", "beeper", "dial",
            "text", "whatsapp", "reach",
        ]
        .iter()
        .any(|w| before.contains(w));
        if KEYWORD.is_match(before) && !strong {
            continue;
        }
        let cue = PHONE_CUE.is_match(before);
        let pager = cue
            && ["pager", "pgr", "beeper", "bleep", "ext"]
                .iter()
                .any(|w| before.contains(w));
        // Two groups of eight digits and more ("99 668472", "0341 8387176"), unless they are
        // years side by side.
        let years = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .all(|g| g.len() == 4 && (g.starts_with("19") || g.starts_with("20")));
        let shaped = s.starts_with('+')
            || s.starts_with('(')
            || groups >= 3
            || (groups == 2 && digits >= 8 && !years);
        let ok = match digits {
            7..=15 => shaped || cue,
            4..=6 => pager,
            _ => false,
        };
        let card = digits >= 13 && !s.starts_with('+') && s.split([' ', '-']).all(|g| g.len() == 4);
        let is_date = dates.iter().any(|&(a, b)| m.start() < b && m.end() > a);
        let dotted_ip = s.matches('.').count() == 3 && groups == 4 && !s.contains(' ');
        if ok && !card && !is_date && !dotted_ip {
            let class = if before.contains("fax") {
                Class::Fax
            } else {
                Class::Phone
            };
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                class,
            });
        }
    }
}

/// "MR: 8249813", "MR# 8249813": a medical record number (the title "Mr." never has a colon).
static MR: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:MR|Mr|mr)\s*[:#]\s*([A-Za-z0-9][A-Za-z0-9-]*\d[A-Za-z0-9-]*)"));

/// The first id-shaped token after a keyword, within its sentence and 60 bytes.
fn keyword_ids(text: &str, out: &mut Vec<Hit>) {
    for k in KEYWORD.find_iter(text) {
        let class = keyword_class(k.as_str());
        let mut end = (k.end() + 60).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let window = &text[k.end()..end];
        let window = match SENTENCE_END.find(window) {
            Some(m) => &window[..m.start()],
            None => window,
        };
        if let Some(m) = ID_TOKEN.find_iter(window).find(|m| id_like(m.as_str())) {
            out.push(Hit {
                start: k.end() + m.start(),
                end: k.end() + m.end(),
                class,
            });
        }
    }
}

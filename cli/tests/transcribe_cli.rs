//! `meetbot transcribe` and `meetbot summarize` as a user runs them: real speech in, text out,
//! and no file created anywhere (an empty private TMPDIR, HOME and working directory stay empty).

use meetbot_testsupport::speech::{self, MEETING};
use std::path::Path;
use std::process::{Command, Output};

fn meetbot(args: &[&str], dirs: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    // Only what the test gives: no MEETBOT_* from the runner, a private TMPDIR, HOME and cwd.
    for (k, _) in std::env::vars() {
        if k.starts_with("MEETBOT_") {
            c.env_remove(k);
        }
    }
    c.args(args)
        .current_dir(dirs.join("cwd"))
        .env("TMPDIR", dirs.join("tmp"))
        .env("HOME", dirs.join("home"))
        .env("XDG_CACHE_HOME", dirs.join("home/.cache"))
        .output()
        .unwrap()
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn transcribing_a_file_writes_nothing_anywhere_and_prints_the_words() {
    let model = speech::whisper_model();
    let dirs = tempfile::tempdir().unwrap();
    for d in ["cwd", "tmp", "home", "input"] {
        std::fs::create_dir(dirs.path().join(d)).unwrap();
    }
    // Two sentences in two voices, with a pause, as one WAV file (the input, not ours to write).
    let (r1, mut a) = speech::espeak(MEETING[0].1, MEETING[0].0);
    let (r2, b) = speech::espeak(MEETING[7].1, MEETING[7].0);
    assert_eq!(r1, r2);
    a.extend(std::iter::repeat_n(0i16, r1 as usize));
    a.extend(b);
    let input = dirs.path().join("input/meeting.wav");
    std::fs::write(&input, speech::wav(r1, &a)).unwrap();

    let out = meetbot(
        &[
            "transcribe",
            input.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--format",
            "json",
        ],
        dirs.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("done in"), "progress on stderr: {stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text: Vec<&str> = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let (e, n) = meetbot_transcriber::engine::word_error_rate(
        &format!("{} {}", MEETING[0].1, MEETING[7].1),
        &text.join(" "),
    );
    assert!(e * 5 <= n, "{e}/{n} words wrong: {text:?}");
    for d in ["cwd", "tmp", "home"] {
        assert!(
            files(&dirs.path().join(d)).is_empty(),
            "{d} has {:?}",
            files(&dirs.path().join(d))
        );
    }
    assert_eq!(files(&dirs.path().join("input")).len(), 1);

    // The JSON is what `meetbot summarize` reads; it also writes nothing.
    let tr = dirs.path().join("input/transcript.json");
    std::fs::write(&tr, &out.stdout).unwrap();
    let sum = meetbot(
        &["summarize", tr.to_str().unwrap(), "--format", "json"],
        dirs.path(),
    );
    assert!(
        sum.status.success(),
        "{}",
        String::from_utf8_lossy(&sum.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&sum.stdout).unwrap();
    assert!(
        s["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("decided")),
        "{s}"
    );
    for d in ["cwd", "tmp", "home"] {
        assert!(files(&dirs.path().join(d)).is_empty());
    }
}

#[test]
fn corrupt_truncated_and_empty_audio_files_are_clear_errors_not_panics() {
    let dirs = tempfile::tempdir().unwrap();
    for d in ["cwd", "tmp", "home", "input"] {
        std::fs::create_dir(dirs.path().join(d)).unwrap();
    }
    let (rate, pcm) = speech::espeak("hello", "en-us");
    let wav = speech::wav(rate, &pcm);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.wav",
            wav[..wav.len() / 2 + 1].to_vec(),
            "bad WAV file",
        ),
        ("empty.wav", speech::wav(rate, &[]), "empty audio"),
        ("nothing.ogg", vec![], "empty audio"),
        (
            "garbage.ogg",
            b"OggS\x00\x02garbage".to_vec(),
            "bad Ogg/Opus file",
        ),
        (
            "song.mp3",
            b"ID3\x04\x00 not supported".to_vec(),
            "unrecognised audio format",
        ),
        (
            "rate.wav",
            {
                let mut w = wav.clone();
                w[24..28].copy_from_slice(&4_000u32.to_le_bytes());
                w[28..32].copy_from_slice(&8_000u32.to_le_bytes());
                w
            },
            "unsupported sample rate 4000",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = dirs.path().join("input").join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = meetbot(&["transcribe", p.to_str().unwrap()], dirs.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

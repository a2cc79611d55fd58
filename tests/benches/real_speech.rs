//! Real-speech benchmark: meetbot's default engine (whisper.cpp tiny.en, beam 5, 2 threads, in
//! process) beside faster-whisper (CTranslate2 tiny.en int8, beam 5, 2 threads, Python) in one
//! run, on recordings of real people with human reference transcripts that registry packages
//! ship (see scripts/speech-data.sh for each source, its version and licence). Both sides'
//! text goes through Whisper's English normaliser (PyPI whisper-normalizer) before the word
//! error rate is counted. The blind part is reported apart and never tuned on.
//!
//! `bash scripts/bench.sh real_speech` (or, after `bash scripts/test.sh --setup-only`:
//! `eval "$(bash scripts/speech-data.sh)"` then `cargo bench -p meetbot-tests --bench
//! real_speech`). Each engine decodes every clip alone, one after the other (no contention
//! between them); times are per clip after the model is loaded, summed.

use meetbot_testsupport::speech;
use meetbot_transcriber::audio::decode_file;
use meetbot_transcriber::engine::{SpeechEngine, word_error_rate};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

struct Clip {
    part: String,
    corpus: String,
    licence: String,
    file: String,
    seconds: f64,
    reference: String,
}

fn manifest(dir: &Path) -> Vec<Clip> {
    let text = std::fs::read_to_string(dir.join("manifest.tsv"))
        .expect("no manifest: run `eval \"$(bash scripts/speech-data.sh)\"` first");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 7, "a manifest line has 7 fields: {l}");
            Clip {
                part: f[0].into(),
                corpus: f[1].into(),
                licence: f[2].into(),
                file: f[4].into(),
                seconds: f[5].parse().unwrap_or(0.0),
                reference: f[6].into(),
            }
        })
        .collect()
}

fn script() -> PathBuf {
    meetbot_testsupport::workspace_root().join("scripts/faster_whisper_clips.py")
}

/// faster-whisper's text and seconds per clip, and its model load time.
fn faster_whisper(python: &str, clips_dir: &Path, clips: &[Clip]) -> (Vec<(String, f64)>, f64) {
    let model = std::env::var("MEETBOT_TEST_FWS_MODEL")
        .expect("MEETBOT_TEST_FWS_MODEL: the faster-whisper weights (scripts/bench.sh sets it)");
    let mut child = Command::new(python)
        .arg(script())
        .args(["transcribe", &model])
        .arg(clips_dir)
        .args(["2", "5"])
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("faster-whisper runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        for c in clips {
            writeln!(stdin, "{}", c.file).unwrap();
        }
    }
    let mut load = 0.0;
    let mut out = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if let Some(l) = v["load_seconds"].as_f64() {
            load = l;
        } else {
            out.push((
                v["text"].as_str().unwrap_or_default().to_string(),
                v["seconds"].as_f64().unwrap_or(0.0),
            ));
        }
    }
    assert!(child.wait().unwrap().success(), "faster-whisper failed");
    assert_eq!(out.len(), clips.len(), "faster-whisper answered every clip");
    (out, load)
}

/// Every text through Whisper's English normaliser, in order.
fn normalise(python: &str, texts: &[String]) -> Vec<String> {
    let mut child = Command::new(python)
        .arg(script())
        .arg("normalise")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the normaliser runs");
    let mut stdin = child.stdin.take().unwrap();
    let feed = {
        let lines: Vec<String> = texts
            .iter()
            .map(|t| serde_json::to_string(if t.trim().is_empty() { "-" } else { t }).unwrap())
            .collect();
        std::thread::spawn(move || {
            for l in lines {
                writeln!(stdin, "{l}").unwrap();
            }
        })
    };
    let out: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str::<String>(&l.unwrap()).unwrap())
        .collect();
    feed.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out.len(), texts.len());
    out
}

#[derive(Default, Clone, Copy)]
struct Tally {
    clips: usize,
    audio_s: f64,
    words: usize,
    ours_errors: usize,
    peer_errors: usize,
    ours_s: f64,
    peer_s: f64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.clips += o.clips;
        self.audio_s += o.audio_s;
        self.words += o.words;
        self.ours_errors += o.ours_errors;
        self.peer_errors += o.peer_errors;
        self.ours_s += o.ours_s;
        self.peer_s += o.peer_s;
    }
    fn row(&self, name: &str) -> String {
        let pct = |e: usize| 100.0 * e as f64 / self.words.max(1) as f64;
        format!(
            "| {name} | {} clips, {:.0} s, {} words | {:.1}% | {:.1}% | {:.2} s | {:.2} s | {:.2}x |",
            self.clips,
            self.audio_s,
            self.words,
            pct(self.ours_errors),
            pct(self.peer_errors),
            self.ours_s,
            self.peer_s,
            self.peer_s / self.ours_s.max(1e-9),
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = PathBuf::from(
        std::env::var("MEETBOT_BENCH_SPEECH_DATA")
            .expect("MEETBOT_BENCH_SPEECH_DATA: run `eval \"$(bash scripts/speech-data.sh)\"`"),
    );
    let python = std::env::var("MEETBOT_BENCH_FW_PYTHON").expect("MEETBOT_BENCH_FW_PYTHON");
    let clips = manifest(&dir);
    let clips_dir = dir.join("clips");
    eprintln!("[real_speech] {} clips", clips.len());

    // meetbot: whisper.cpp tiny.en, beam 5, 2 threads, one decode at a time (the default).
    let t = Instant::now();
    let engine =
        meetbot_transcriber::whisper::WhisperEngine::load(&speech::whisper_model(), 2, 1, 5, "en")
            .expect("the tiny.en model (scripts/test.sh fetches it)");
    let ours_load = t.elapsed().as_secs_f64();
    let mut ours = Vec::new();
    for (i, c) in clips.iter().enumerate() {
        let pcm = decode_file(&std::fs::read(clips_dir.join(&c.file)).unwrap()).unwrap();
        let t = Instant::now();
        let text: Vec<String> = engine
            .transcribe(&pcm)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        ours.push((text.join(" "), t.elapsed().as_secs_f64()));
        eprint!("\r[real_speech] meetbot {}/{}", i + 1, clips.len());
    }
    eprintln!();
    drop(engine);
    eprintln!("[real_speech] faster-whisper");
    let (peer, peer_load) = faster_whisper(&python, &clips_dir, &clips);

    let mut all: Vec<String> = clips.iter().map(|c| c.reference.clone()).collect();
    all.extend(ours.iter().map(|o| o.0.clone()));
    all.extend(peer.iter().map(|p| p.0.clone()));
    let norm = normalise(&python, &all);
    let n = clips.len();
    let (refs, ours_n, peer_n) = (&norm[..n], &norm[n..2 * n], &norm[2 * n..]);

    let mut by: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut licences: BTreeMap<String, String> = BTreeMap::new();
    let mut worst = Vec::new();
    for (i, c) in clips.iter().enumerate() {
        let (oe, words) = word_error_rate(&refs[i], &ours_n[i]);
        let (pe, _) = word_error_rate(&refs[i], &peer_n[i]);
        let t = by.entry((c.part.clone(), c.corpus.clone())).or_default();
        t.add(&Tally {
            clips: 1,
            audio_s: c.seconds,
            words,
            ours_errors: oe,
            peer_errors: pe,
            ours_s: ours[i].1,
            peer_s: peer[i].1,
        });
        licences.insert(c.corpus.clone(), c.licence.clone());
        if c.part == "tune" && oe > pe {
            worst.push(format!(
                "{} ({}): ref {:?} | meetbot {:?} | faster-whisper {:?}",
                c.file, c.corpus, refs[i], ours_n[i], peer_n[i]
            ));
        }
    }

    println!(
        "\n## Real speech: meetbot (whisper.cpp tiny.en, beam 5) beside faster-whisper (tiny.en int8, beam 5), 2 threads each, one run\n"
    );
    println!(
        "WER after Whisper's English normaliser on both sides; seconds are decode time summed over clips, model loaded (load: meetbot {ours_load:.2} s, faster-whisper {peer_load:.2} s).\n"
    );
    println!(
        "| part / corpus | clips | WER meetbot | WER faster-whisper | meetbot decode | faster-whisper decode | meetbot speed vs faster-whisper |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for part in ["tune", "blind"] {
        let mut total = Tally::default();
        for ((p, corpus), t) in &by {
            if p == part {
                println!("{}", t.row(&format!("{part} / {corpus}")));
                total.add(t);
            }
        }
        println!("{}", total.row(&format!("**{part}, all**")));
    }
    println!("\nSources and licences:");
    for (corpus, l) in &licences {
        println!("- {corpus}: {l}");
    }
    if !worst.is_empty() {
        let out =
            meetbot_testsupport::workspace_root().join("target/bench/real-speech-tune-misses.txt");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, worst.join("\n")).unwrap();
        println!(
            "\nTuning-part clips where meetbot made more errors than faster-whisper: {} (listed in {})",
            worst.len(),
            out.display()
        );
    }
}

//! Redaction benchmark: meetbot's redactor beside Microsoft Presidio, in one run, on public
//! gold-labelled text nobody on this project wrote (see `meetbot_testsupport::redaction_corpora`
//! for the corpora, their licences and the scoring rule), each with its blind part reported
//! apart; then throughput of both; then meetbot's own labelled sentences (tests/data).
//!
//! `bash scripts/bench.sh redaction` (fetches the corpora and sets up Presidio with
//! `scripts/redaction-data.sh --with-presidio`; then `cargo bench -p meetbot-tests --bench
//! redaction`). Misses on the tuning parts (never the blind
//! parts) go to target/bench/redaction-misses.txt.

use meetbot_redact::eval::{parse_set, score as score_own};
use meetbot_redact::{Names, Redactor};
use meetbot_testsupport::redaction_corpora::{self as corpora, Doc, Score, Tally};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

const LABELS: [&str; 17] = [
    "NAME",
    "DATE",
    "PHONE",
    "FAX",
    "EMAIL",
    "ADDRESS",
    "ZIP",
    "SSN",
    "RECORD",
    "ID",
    "HEALTH_PLAN",
    "ACCOUNT",
    "LICENSE",
    "DEVICE",
    "URL",
    "IP",
    "AGE",
];

fn pct(t: Tally) -> String {
    format!("{:.1}% ({}/{})", t.rate() * 100.0, t.good, t.total)
}

/// Presidio's spans for every document, and its (load, analysis) seconds.
fn presidio(python: &str, docs: &[Doc]) -> (Vec<Vec<(usize, usize)>>, String) {
    let script = meetbot_testsupport::workspace_root().join("scripts/presidio_spans.py");
    let mut child = Command::new(python)
        .arg(&script)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start Presidio (`bash scripts/redaction-data.sh --with-presidio` installs it)");
    let mut input = String::new();
    for d in docs {
        input.push_str(&serde_json::json!({"id": d.id, "text": d.text}).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "Presidio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut by_id: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let spans = v["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s[0].as_u64().unwrap() as usize,
                    s[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        by_id.insert(v["id"].as_str().unwrap().to_string(), spans);
    }
    let timing = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    (
        docs.iter()
            .map(|d| by_id.remove(&d.id).unwrap_or_default())
            .collect(),
        timing,
    )
}

fn table(
    corpus: &str,
    what: &str,
    docs: &[Doc],
    ours: &[Vec<(usize, usize)>],
    peer: &[Vec<(usize, usize)>],
) -> Vec<Score> {
    println!("### {corpus}: {what}\n");
    println!("| part | class | identifiers | meetbot | Presidio |");
    println!("| --- | --- | --- | --- | --- |");
    let mut scores = Vec::new();
    for blind in [false, true] {
        let part = if blind { "blind" } else { "tuning" };
        let idx: Vec<usize> = (0..docs.len())
            .filter(|&i| docs[i].blind == blind)
            .collect();
        let pick =
            |p: &[Vec<(usize, usize)>]| idx.iter().map(|&i| p[i].clone()).collect::<Vec<_>>();
        let set: Vec<Doc> = idx.iter().map(|&i| docs[i].clone()).collect();
        let (m, p) = (
            corpora::score(&set, &pick(ours)),
            corpora::score(&set, &pick(peer)),
        );
        println!(
            "| {part} ({} docs) | **all identifiers** | {} | **{}** | **{}** |",
            set.len(),
            m.all().total,
            pct(m.all()),
            pct(p.all())
        );
        for l in LABELS.iter().chain(["PLACE"].iter()) {
            if let Some(t) = m.per_label.get(l) {
                let q = p.per_label.get(l).copied().unwrap_or_default();
                let name = if *l == "PLACE" {
                    "PLACE (city/region/country; not in all)"
                } else {
                    l
                };
                println!("| | {name} | {} | {} | {} |", t.total, pct(*t), pct(q));
            }
        }
        println!(
            "| | ordinary words kept | {} | {} | {} |",
            m.ordinary.total,
            pct(m.ordinary),
            pct(p.ordinary)
        );
        if !blind {
            scores.push(m);
        }
    }
    println!();
    scores
}

fn main() {
    let root = meetbot_testsupport::workspace_root();
    let names = Arc::new(Names::load(&meetbot_testsupport::speech::names_dataset()).unwrap());
    let ours = Redactor::new().with_names(names);
    let python = std::env::var("MEETBOT_BENCH_PRESIDIO_PYTHON").unwrap_or_else(|_| {
        root.join("target/test-env/presidio/bin/python")
            .display()
            .to_string()
    });
    let data = corpora::data_dir();
    let synth = corpora::presidio_synth(&data.join("synth_dataset_v2.json")).unwrap();
    let i2b2 = corpora::i2b2_notes(&data.join("i2b2_xml")).unwrap();
    let spoken = corpora::spoken(&synth);
    let sets: [(&str, &str, &Vec<Doc>); 3] = [
        (
            "i2b2-style clinical notes",
            "PyPI philter-lite 0.6.0 (BSD-3-Clause), 5 notes with surrogate PHI, gold XML; 2 blind",
            &i2b2,
        ),
        (
            "synthetic PII sentences",
            "PyPI presidio-evaluator 0.3.2 sdist, data/synth_dataset_v2.json (MIT; identities CC BY-SA 3.0 US), 1,500 sentences; a quarter blind",
            &synth,
        ),
        (
            "the same sentences as speech",
            "synth_dataset_v2 rendered as a transcript writes speech (numbers, emails, dates said aloud); same blind quarter",
            &spoken,
        ),
    ];
    let all: Vec<Doc> = sets
        .iter()
        .flat_map(|(_, _, d)| d.iter().cloned())
        .collect();

    let t = Instant::now();
    let mine: Vec<Vec<(usize, usize)>> = all
        .iter()
        .map(|d| {
            ours.find(&d.text)
                .into_iter()
                .map(|s| (s.start, s.end))
                .collect()
        })
        .collect();
    let ours_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (peer, peer_timing) = presidio(&python, &all);
    let peer_secs = t.elapsed().as_secs_f64();

    println!("## Redaction on public gold-labelled text, meetbot beside Presidio (one run)\n");
    let mut misses = String::new();
    let mut at = 0;
    for (name, what, docs) in sets {
        let n = docs.len();
        let scores = table(name, what, docs, &mine[at..at + n], &peer[at..at + n]);
        for s in scores {
            for (id, label, text) in s.misses {
                misses.push_str(&format!("{name}\t{id}\t{label}\t{text:?}\n"));
            }
        }
        at += n;
    }
    let _ = std::fs::create_dir_all(root.join("target/bench"));
    let _ = std::fs::write(root.join("target/bench/redaction-misses.txt"), misses);

    let bytes: usize = all.iter().map(|d| d.text.len()).sum();
    println!(
        "### speed, same documents ({} documents, {:.1} kB)\n",
        all.len(),
        bytes as f64 / 1e3
    );
    println!("| redactor | documents/s | whole run |");
    println!("| --- | --- | --- |");
    println!(
        "| meetbot (in process, one core) | {:.0} | {:.2} s |",
        all.len() as f64 / ours_secs,
        ours_secs
    );
    let analyse = serde_json::from_str::<serde_json::Value>(&peer_timing)
        .ok()
        .and_then(|v| v["analyse_seconds"].as_f64())
        .unwrap_or(peer_secs);
    println!(
        "| Presidio (spaCy small, one process) | {:.0} | {:.2} s with start and model load |",
        all.len() as f64 / analyse,
        peer_secs
    );
    println!("\nPresidio timing: {peer_timing}\n");

    println!("## meetbot's own labelled sentences (tests/data, written for meetbot)\n");
    for (file, what) in [
        ("redaction.txt", "the set the rules were first written on"),
        ("redaction-heldout.txt", "held out"),
        ("redaction-blind.txt", "blind"),
    ] {
        let set = parse_set(&std::fs::read_to_string(root.join("tests/data").join(file)).unwrap())
            .unwrap();
        println!(
            "{file} ({what}, {} sentences):\n{}",
            set.len(),
            score_own(&ours, &set).table()
        );
    }
}

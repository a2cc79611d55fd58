//! Redaction benchmark: precision and recall per identifier class on the labelled sets in
//! tests/data (241 sentences used to write the rules, 60 held out, 38 blind), and throughput.
//!
//! `cargo bench -p meetbot-tests --bench redaction` (needs the names dataset: `bash
//! scripts/test.sh` once, or `meetbot model fetch`).

use meetbot_redact::eval::{parse_set, score};
use meetbot_redact::{Names, Redactor};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let root = meetbot_testsupport::workspace_root();
    let names = Arc::new(Names::load(&meetbot_testsupport::speech::names_dataset()).unwrap());
    let with = Redactor::new().with_names(names);
    let without = Redactor::new();
    let mut all_text = Vec::new();
    for (file, what) in [
        ("redaction.txt", "the set the rules were written on"),
        (
            "redaction-heldout.txt",
            "held out (rules adjusted once after its first run)",
        ),
        ("redaction-blind.txt", "blind (never tuned on)"),
    ] {
        let set = parse_set(&std::fs::read_to_string(root.join("tests/data").join(file)).unwrap())
            .unwrap();
        all_text.extend(set.iter().map(|l| l.text.clone()));
        println!("## {file}: {what}, {} sentences\n", set.len());
        println!("with the names dataset:\n{}", score(&with, &set).table());
        println!(
            "context only (no dataset):\n{}",
            score(&without, &set).table()
        );
    }
    // Throughput: every sentence of the three sets, redacted 200 times over.
    let bytes: usize = all_text.iter().map(String::len).sum();
    let rounds = 200;
    let t = Instant::now();
    let mut out = 0usize;
    for _ in 0..rounds {
        for s in &all_text {
            out += with.redact(s).len();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "throughput: {:.0} sentences/s, {:.2} MB/s ({} sentences x {rounds}, {out} bytes out)",
        (all_text.len() * rounds) as f64 / secs,
        (bytes * rounds) as f64 / secs / 1e6,
        all_text.len()
    );
}

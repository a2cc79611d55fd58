//! Real ICS files (exported by Google, Outlook/Exchange, Apple, Thunderbird, Lotus Notes, Zimbra,
//! Evolution, Nextcloud and others, taken from public projects' test suites: see
//! `tests/fixtures/ics/README.md`) read by our reader, compared with the instances a correct
//! reader must find in each file's window (`expected/<file>.json`).
//!
//! The fixtures marked `blind` in `manifest.json` were never used to tune the reader; the pass
//! rates of both parts are printed and written to `target/ics-reference/ours.json`. With
//! `MEETBOT_ICS_REFERENCE_DIR` (written by `scripts/ics-reference.sh`: python `icalendar` and
//! `recurring-ical-events` over the same files), the reference library is scored in the same
//! run, against the same expected instances.

use chrono::{DateTime, Utc};
use meetbot_calendar_sync::ics::read_feed;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ics")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// What is compared of one instance: its event (UID; none for events without one), start,
/// end, all-day and status.
type Key = (Option<String>, String, String, bool, String);

fn key(i: &Value) -> Key {
    let uid = i["uid"]
        .as_str()
        .filter(|u| !u.starts_with("no-uid-"))
        .map(String::from);
    (
        uid,
        i["starts_at"].as_str().unwrap_or_default().to_string(),
        i["ends_at"].as_str().unwrap_or_default().to_string(),
        i["all_day"].as_bool().unwrap_or(false),
        i["status"].as_str().unwrap_or_default().to_string(),
    )
}

fn keys(list: &[Value]) -> Vec<Key> {
    let mut k: Vec<Key> = list.iter().map(key).collect();
    k.sort();
    k
}

/// Our instances of one fixture, in the shape of the expected files.
fn ours(f: &Value) -> (Vec<Value>, Vec<String>) {
    let bytes = std::fs::read(dir().join(f["name"].as_str().unwrap())).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let window = (time(&f["window"][0]), time(&f["window"][1]));
    let feed = read_feed(&text, "", window).unwrap();
    let instances = feed
        .events
        .iter()
        .map(|e| {
            let s = serde_json::to_value(e).unwrap();
            json!({
                "uid": e.series_id.clone().unwrap_or_else(|| e.instance_id.clone()),
                "starts_at": s["starts_at"],
                "ends_at": s["ends_at"],
                "all_day": e.all_day,
                "status": s["status"],
                "title": e.title,
            })
        })
        .collect();
    (instances, feed.unreadable)
}

fn expected(f: &Value) -> Value {
    let name = f["name"].as_str().unwrap();
    let text = std::fs::read_to_string(dir().join("expected").join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("expected/{name}.json: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[derive(Default)]
struct Score {
    passed: usize,
    total: usize,
    failed: Vec<String>,
}

impl Score {
    fn add(&mut self, name: &str, ok: bool) {
        self.total += 1;
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(name.to_string());
        }
    }

    fn json(&self) -> Value {
        json!({"passed": self.passed, "total": self.total, "failed": self.failed})
    }
}

#[test]
fn every_real_ics_fixture_gives_the_instances_a_correct_reader_finds() {
    let reference = std::env::var_os("MEETBOT_ICS_REFERENCE_DIR").map(PathBuf::from);
    let mut scores: BTreeMap<(&str, &str), Score> = BTreeMap::new();
    let mut report = Vec::new();
    for f in manifest() {
        let name = f["name"].as_str().unwrap();
        let part = if f["blind"].as_bool().unwrap() {
            "blind"
        } else {
            "seen"
        };
        let want = expected(&f);
        let want_keys = keys(want["instances"].as_array().unwrap());
        let (got, unreadable) = ours(&f);
        let got_keys = keys(&got);
        let want_unreadable: Vec<String> = want["unreadable"]
            .as_array()
            .map(|u| {
                u.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let ok = got_keys == want_keys && unreadable == want_unreadable;
        if !ok {
            let missing: Vec<_> = want_keys.iter().filter(|k| !got_keys.contains(k)).collect();
            let extra: Vec<_> = got_keys.iter().filter(|k| !want_keys.contains(k)).collect();
            report.push(format!(
                "{name}: missing {missing:?}, extra {extra:?}, unreadable {unreadable:?}"
            ));
        }
        scores.entry(("ours", part)).or_default().add(name, ok);
        if let Some(r) = &reference {
            let path = r.join(format!("{name}.json"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let v: Value = serde_json::from_str(&text).unwrap();
            let ok = v["instances"]
                .as_array()
                .is_some_and(|i| keys(i) == want_keys);
            scores.entry(("reference", part)).or_default().add(name, ok);
        }
    }
    let mut summary = serde_json::Map::new();
    for ((who, part), s) in &scores {
        println!(
            "{who:9} {part:5}: {}/{} fixtures give exactly the expected instances; failed: {:?}",
            s.passed, s.total, s.failed
        );
        summary.insert(format!("{who}_{part}"), s.json());
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ics-reference");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(
            out.join("ours.json"),
            serde_json::to_string_pretty(&Value::Object(summary)).unwrap(),
        );
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn every_fixture_is_named_in_the_readme_with_its_source_and_licence() {
    let readme = std::fs::read_to_string(dir().join("README.md")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".ics"))
        .collect();
    files.sort();
    let listed: Vec<String> = manifest()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    for f in &files {
        assert!(listed.contains(f), "{f} is not in manifest.json");
        assert!(readme.contains(f.as_str()), "{f} is not in README.md");
    }
    for f in manifest() {
        let lic = f["licence"].as_str().unwrap();
        assert!(
            [
                "MIT",
                "BSD-2-Clause",
                "BSD-3-Clause",
                "MPL-2.0",
                "Apache-2.0"
            ]
            .contains(&lic),
            "{}: {lic}",
            f["name"]
        );
        assert_eq!(f["commit"].as_str().unwrap().len(), 40);
    }
    assert_eq!(files.len(), listed.len());
}

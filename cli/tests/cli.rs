//! The binary as an operator meets it: help, version, config errors, unreachable servers, and the
//! tenant commands against both stores.

use std::process::{Command, Output};

fn meetbot(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    c.current_dir(dir).args(args).env_remove("MEETBOT_CONFIG");
    for (k, _) in std::env::vars() {
        if k.starts_with("MEETBOT_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn help_lists_the_commands_and_version_prints() {
    let dir = tempfile::tempdir().unwrap();
    let o = meetbot(dir.path(), &["--help"], &[]);
    assert!(o.status.success());
    for c in ["dev", "check", "tenant", "keys"] {
        assert!(stdout(&o).contains(c), "{c} missing from help");
    }
    let o = meetbot(dir.path(), &["--version"], &[]);
    assert_eq!(
        stdout(&o).trim(),
        format!("meetbot {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unreachable_mongodb_is_a_one_line_error_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let uri = format!("mongodb://127.0.0.1:{port}");
    let o = meetbot(
        dir.path(),
        &["tenant", "list"],
        &[
            ("MEETBOT_STORE__KIND", "mongodb"),
            ("MEETBOT_STORE__MONGODB_URI", &uri),
            ("MEETBOT_STORE__CONNECT_TIMEOUT_MS", "1000"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains(&format!("MongoDB at 127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn unreachable_rabbitmq_is_a_one_line_error_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let o = meetbot(
        dir.path(),
        &["check"],
        &[
            ("MEETBOT_QUEUE__KIND", "rabbitmq"),
            ("MEETBOT_QUEUE__AMQP_URL", &url),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains(&format!("RabbitMQ at 127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("guest"), "credentials leaked: {e}");
}

#[test]
fn reachable_rabbitmq_passes_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let url = meetbot_testsupport::amqp_url();
    let o = meetbot(
        dir.path(),
        &["check"],
        &[
            ("MEETBOT_QUEUE__KIND", "rabbitmq"),
            ("MEETBOT_QUEUE__AMQP_URL", &url),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("queue: ok (RabbitMQ at 127.0.0.1:5672)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_config_names_the_field_and_exits_2_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        "[store]\nkind = \"postgres\"\n[queue]\nconnect_timeout_ms = 5\n",
    )
    .unwrap();
    let o = meetbot(dir.path(), &["--config", "m.toml", "check"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("store.kind") && e.contains("embedded"), "{e}");
    let o = meetbot(
        dir.path(),
        &["check"],
        &[("MEETBOT_QUEUE__CONNECT_TIMEOUT_MS", "5")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("queue.connect_timeout_ms"),
        "{}",
        stderr(&o)
    );
    let o = meetbot(
        dir.path(),
        &["check"],
        &[("MEETBOT_CONFIG", "missing.toml")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml"));
    assert!(!stderr(&o).contains("panicked"));
}

fn tenant_lifecycle(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let o = meetbot(dir.path(), &["tenant", "create", "Acme Clinic"], env);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = meetbot(dir.path(), &["tenant", "list"], env);
    assert!(
        stdout(&o).contains(&id) && stdout(&o).contains("active"),
        "{}",
        stdout(&o)
    );
    let o = meetbot(dir.path(), &["keys", "rotate", &id], env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = meetbot(
        dir.path(),
        &["tenant", "delete", &id, "--requested-by", "ops-1"],
        env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let receipt: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(receipt["tenant_id"], id.as_str());
    assert_eq!(receipt["requested_by"], "ops-1");
    assert_eq!(
        receipt["keys_destroyed"].as_array().unwrap().len(),
        2,
        "both key versions destroyed"
    );
    assert_eq!(receipt["digest"].as_str().unwrap().len(), 64);
    let o = meetbot(dir.path(), &["tenant", "list", "--json"], env);
    let list: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let t = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert_eq!(t["status"], "erased");
    let o = meetbot(dir.path(), &["tenant", "delete", &id], env);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not exist or has been erased"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tenant_create_list_delete_with_the_embedded_store() {
    tenant_lifecycle(&[]);
}

#[test]
fn tenant_create_list_delete_with_mongodb() {
    let uri = meetbot_testsupport::mongodb_uri();
    let prefix = meetbot_testsupport::unique("c");
    tenant_lifecycle(&[
        ("MEETBOT_STORE__KIND", "mongodb"),
        ("MEETBOT_STORE__MONGODB_URI", &uri),
        ("MEETBOT_STORE__DB_PREFIX", &prefix),
    ]);
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some((buf.get(9..12)?.parse().ok()?, buf))
}

/// Starts a long-running command, waits for its ops server, checks it, then stops it with
/// SIGTERM: it must exit cleanly within its grace (20 s) and a margin, else it is killed and
/// the test fails. HOME is the test's directory: nothing (a speech model) is found in the
/// default places.
fn service_serves_ops_and_stops_on_sigterm(
    args: &[&str],
    env: &[(&str, &str)],
    ready_checks: &[&str],
    metric: Option<&str>,
) {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", closed_port());
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    c.current_dir(dir.path())
        .args(args)
        .env("HOME", dir.path())
        .env("MEETBOT_OPS__LISTEN", &addr)
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MEETBOT_") {
            c.env_remove(k);
        }
    }
    c.env("MEETBOT_OPS__LISTEN", &addr);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let start = std::time::Instant::now();
    let ready = loop {
        if let Some((200, body)) = http_get(&addr, "/readyz") {
            break body;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no ops server on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for check in ready_checks {
        assert!(
            ready.contains(&format!("ok {check}")),
            "{check} not ready: {ready}"
        );
    }
    assert_eq!(http_get(&addr, "/healthz").unwrap().0, 200);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, metrics) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    if let Some(metric) = metric {
        assert!(metrics.contains(metric), "{metric} missing from {metrics}");
    }
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let sent = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if sent.elapsed() > std::time::Duration::from_secs(25) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running 25 s after SIGTERM (grace 20 s): killed; it said:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scheduler_service_serves_readiness_and_metrics_and_stops_cleanly_on_sigterm() {
    let url = meetbot_testsupport::amqp_url();
    let prefix = meetbot_testsupport::unique("cli");
    service_serves_ops_and_stops_on_sigterm(
        &["scheduler"],
        &[
            ("MEETBOT_QUEUE__KIND", "rabbitmq"),
            ("MEETBOT_QUEUE__AMQP_URL", &url),
            ("MEETBOT_QUEUE__PREFIX", &prefix),
        ],
        &["store", "keys", "queue"],
        Some("meetbot_scheduler_passes_total"),
    );
}

#[test]
fn delivery_service_serves_readiness_and_stops_cleanly_on_sigterm() {
    service_serves_ops_and_stops_on_sigterm(&["delivery"], &[], &["store", "keys"], None);
}

#[test]
fn dev_runs_on_embedded_defaults_and_stops_cleanly_on_sigterm() {
    let api = format!("127.0.0.1:{}", closed_port());
    service_serves_ops_and_stops_on_sigterm(
        &["dev"],
        &[("MEETBOT_API__LISTEN", api.as_str())],
        &["store", "keys", "queue"],
        Some("meetbot_scheduler_passes_total"),
    );
}

#[test]
fn calendar_sync_service_serves_readiness_and_stops_cleanly_on_sigterm() {
    let hooks = format!("127.0.0.1:{}", closed_port());
    service_serves_ops_and_stops_on_sigterm(
        &["calendar-sync"],
        &[("MEETBOT_CALENDAR__WEBHOOK_LISTEN", &hooks)],
        &["store", "keys"],
        None,
    );
}

#[test]
fn scheduler_service_refuses_the_in_process_queue() {
    let dir = tempfile::tempdir().unwrap();
    let o = meetbot(dir.path(), &["scheduler"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("queue.kind = \"rabbitmq\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn calendar_parse_prints_normalised_meetings_and_rejects_bad_json_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../calendar-sync/tests/fixtures/graph_calendarview_delta.json"
    );
    let o = meetbot(
        dir.path(),
        &["calendar", "parse", "--provider", "microsoft", fixture],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let evs = v.as_array().unwrap();
    assert_eq!(evs.len(), 10);
    assert_eq!(evs[0]["link"]["platform"], "teams");
    assert_eq!(evs[0]["series_id"], "AAMkAGI2TGuLAAA=");
    std::fs::write(dir.path().join("bad.json"), "{\"items\": [ {\"id\": ").unwrap();
    let o = meetbot(
        dir.path(),
        &["calendar", "parse", "--provider", "google", "bad.json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("parsing bad.json") && e.contains("not JSON"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1);
}

/// #23: an Outlook-style feed (a Windows zone name with its own VTIMEZONE) parsed from the
/// command line: every instance in the window in UTC; one unreadable event named on stderr
/// while the rest prints; a window missing or a file that is no calendar refused clearly.
#[test]
fn calendar_parse_reads_an_ics_file_as_real_software_writes_it_and_names_what_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../calendar-sync/tests/fixtures/ics/khal-tz_windows_format.ics"
    );
    let window = [
        "--from",
        "2019-11-19T00:00:00Z",
        "--to",
        "2020-02-20T00:00:00Z",
    ];
    fn args<'a>(file: &'a str, window: [&'a str; 4]) -> Vec<&'a str> {
        let mut a = vec!["calendar", "parse", "--provider", "ics", file];
        a.extend(window);
        a
    }
    let o = meetbot(dir.path(), &args(fixture, window), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let evs = v.as_array().unwrap();
    assert_eq!(evs.len(), 1, "{v}");
    // 13:00 in "New Zealand Standard Time" as the file's own VTIMEZONE defines it (+01:00
    // then), not as the Windows name would map it.
    assert_eq!(evs[0]["starts_at"], "2019-11-20T12:00:00Z", "{v}");
    assert_eq!(evs[0]["all_day"], false);

    // The same file with a second event whose start cannot be read.
    let text = std::fs::read_to_string(fixture).unwrap().replace(
        "END:VCALENDAR",
        "BEGIN:VEVENT\r\nUID:broken-1\r\nDTSTART:2019-13-45\r\nSUMMARY:Broken\r\nEND:VEVENT\r\nEND:VCALENDAR",
    );
    std::fs::write(dir.path().join("mixed.ics"), text).unwrap();
    let o = meetbot(dir.path(), &args("mixed.ics", window), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "the readable event still prints"
    );
    assert!(stderr(&o).contains("broken-1"), "{}", stderr(&o));

    let o = meetbot(
        dir.path(),
        &["calendar", "parse", "--provider", "ics", fixture],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--from and --to"), "{}", stderr(&o));
    std::fs::write(dir.path().join("page.ics"), "<html>not a calendar</html>").unwrap();
    let o = meetbot(dir.path(), &args("page.ics", window), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not an iCalendar feed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn api_service_serves_its_openapi_document_and_a_first_owner_added_by_the_cli_exists() {
    let dir = tempfile::tempdir().unwrap();
    let o = meetbot(dir.path(), &["tenant", "create", "Clinic"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = meetbot(
        dir.path(),
        &[
            "tenant",
            "add-user",
            &id,
            "--email",
            "Olga@Clinic.test",
            "--role",
            "owner",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("as owner"), "{}", stderr(&o));
    let o = meetbot(
        dir.path(),
        &["tenant", "add-user", &id, "--email", "olga@clinic.test"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "the same address twice");
    let o = meetbot(
        dir.path(),
        &["tenant", "add-user", &id, "--email", "nope"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not an email address"),
        "{}",
        stderr(&o)
    );

    let api = format!("127.0.0.1:{}", closed_port());
    let ops = format!("127.0.0.1:{}", closed_port());
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    c.current_dir(dir.path()).arg("api");
    for (k, _) in std::env::vars() {
        if k.starts_with("MEETBOT_") {
            c.env_remove(k);
        }
    }
    c.env("MEETBOT_API__LISTEN", &api)
        .env("MEETBOT_OPS__LISTEN", &ops)
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let start = std::time::Instant::now();
    let doc = loop {
        if let Some((200, body)) = http_get(&api, "/v1/openapi.json") {
            break body;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no API on {api}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let body = doc.split_once("\r\n\r\n").unwrap().1;
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/meetings"]["get"].is_object());
    // Without a session: 401 with the error body.
    let (code, body) = http_get(&api, "/v1/meetings").unwrap();
    assert_eq!(code, 401);
    assert!(body.contains("\"unauthorized\""), "{body}");
    assert_eq!(http_get(&ops, "/readyz").unwrap().0, 200);
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn audit_verify_passes_a_sound_chain_and_names_an_entry_edited_in_the_database_file() {
    use meetbot_core::model::AuditEvent;
    let dir = tempfile::tempdir().unwrap();
    let o = meetbot(dir.path(), &["tenant", "create", "Clinic"], &[]);
    let id = stdout(&o).trim().to_string();
    let t: meetbot_core::TenantId = id.parse().unwrap();
    {
        let mut cfg = meetbot_core::config::Config::default();
        cfg.store.embedded_dir = dir.path().join("data");
        let store = meetbot_store::open(&cfg.store).await.unwrap();
        for i in 0..4 {
            store
                .append_audit(
                    &t,
                    &AuditEvent::new("user:u1", "transcript.read", format!("meeting:m{i}")),
                )
                .await
                .unwrap();
        }
    }
    let o = meetbot(dir.path(), &["audit", "verify", &id], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ok, 4 entries"), "{}", stdout(&o));

    // An edit straight in the tenant's SQLite file.
    let file = dir
        .path()
        .join("data")
        .join("tenants")
        .join(format!("{id}.sqlite3"));
    assert!(file.exists(), "{}", file.display());
    let c = rusqlite::Connection::open(&file).unwrap();
    let n = c
        .execute(
            "UPDATE audit_log SET body = replace(body, 'meeting:m2', 'meeting:mX') WHERE id = ?1",
            [format!("a{:020}", 3)],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(c);
    let o = meetbot(dir.path(), &["audit", "verify", &id], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("entry 3 (id "), "{}", stderr(&o));
    assert!(stderr(&o).contains("was altered"), "{}", stderr(&o));
}

#[test]
fn customer_key_makes_a_private_identity_and_decrypt_opens_what_was_sealed_to_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("clinic.age-key");
    let o = meetbot(
        dir.path(),
        &["customer-key", "--out", key.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let recipient = stdout(&o).trim().to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // It never overwrites a key.
    let o = meetbot(
        dir.path(),
        &["customer-key", "--out", key.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    // What the API returns as `customer_sealed` (a JSON string), opened from standard input.
    let to = meetbot_delivery::hold::recipient(&recipient).unwrap();
    let sealed = meetbot_delivery::hold::seal_to(&to, b"{\"segments\": [\"held text\"]}").unwrap();
    let out = meetbot_with_input(
        dir.path(),
        &["decrypt", "--identity", key.to_str().unwrap()],
        &serde_json::to_string(&sealed).unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"segments\": [\"held text\"]}"
    );
    // Another identity cannot.
    let other = dir.path().join("other.age-key");
    meetbot(
        dir.path(),
        &["customer-key", "--out", other.to_str().unwrap()],
        &[],
    );
    let f = dir.path().join("sealed.age");
    std::fs::write(&f, &sealed).unwrap();
    let o = meetbot(
        dir.path(),
        &[
            "decrypt",
            "--identity",
            other.to_str().unwrap(),
            f.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open"), "{}", stderr(&o));
}

fn meetbot_with_input(dir: &std::path::Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_meetbot"));
    c.current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MEETBOT_") {
            c.env_remove(k);
        }
    }
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn redact_reads_stdin_and_prints_labels_for_identifiers_and_topics() {
    let dir = tempfile::tempdir().unwrap();
    let names = meetbot_testsupport::speech::names_dataset();
    let names = names.to_str().unwrap();
    let input = "Linda Garcia was born on 02/17/1958.\nCall her at (617) 555-0142 or linda@example.com.\nShe said she is undocumented. Thanks.\n";
    let o = meetbot_with_input(dir.path(), &["redact", "--names", names], input);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "[NAME] was born on [DATE].\nCall her at [PHONE] or [EMAIL].\n[TOPIC:immigration] Thanks.\n"
    );
    // Only the classes asked for; no topics.
    let o = meetbot_with_input(
        dir.path(),
        &[
            "redact",
            "--names",
            names,
            "--classes",
            "EMAIL,phone",
            "--no-topics",
        ],
        input,
    );
    assert_eq!(
        stdout(&o),
        "Linda Garcia was born on 02/17/1958.\nCall her at [PHONE] or [EMAIL].\nShe said she is undocumented. Thanks.\n"
    );
    // A topics file of one's own.
    let topics = dir.path().join("topics.toml");
    std::fs::write(&topics, "[topics]\nbilling = [\"invoice\"]\n").unwrap();
    let o = meetbot_with_input(
        dir.path(),
        &[
            "redact",
            "--names",
            names,
            "--topics",
            topics.to_str().unwrap(),
        ],
        "The invoice is late. She is undocumented.\n",
    );
    assert_eq!(stdout(&o), "[TOPIC:billing] She is undocumented.\n");
    // Bad input: a clear error, exit status not 0.
    let o = meetbot_with_input(dir.path(), &["redact", "--classes", "NICKNAME"], "x\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("redaction.classes[0]"),
        "{}",
        stderr(&o)
    );
    let o = meetbot_with_input(
        dir.path(),
        &["redact", "--names", "/nonexistent/names.tar.gz"],
        "x\n",
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/names.tar.gz"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&topics, "[topics]\nBad = [\"x\"]\n").unwrap();
    let o = meetbot_with_input(
        dir.path(),
        &["redact", "--topics", topics.to_str().unwrap()],
        "x\n",
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("topic name"), "{}", stderr(&o));
}

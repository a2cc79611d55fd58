//! Calendar sync throughput: events per second through one sync round (the provider's pages ->
//! normalise -> seal -> auto-join decision -> the embedded store), for a full sync and for an
//! incremental round, against the Google Calendar stand-in (the documented events.list API,
//! 250 events a page) on loopback.
//!
//! `cargo bench -p meetbot-tests --bench calendar_sync [-- --events 1000,5000]`

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::{Duration as CDuration, Utc};
use meetbot_calendar_sync::google::GoogleClient;
use meetbot_calendar_sync::rules::AutoJoinRules;
use meetbot_calendar_sync::sync::{Provider, sync_connection};
use meetbot_core::model::CalendarProvider;
use meetbot_testsupport::google::{GoogleStandIn, TOKEN};
use std::time::Instant;

const USER: &str = "dr.okafor@clinic.example";

fn event(i: usize, start: chrono::DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "kind": "calendar#event", "id": format!("bev{i:06}"), "status": "confirmed",
        "summary": format!("Consult {i}"),
        "start": {"dateTime": start.to_rfc3339(), "timeZone": "UTC"},
        "end": {"dateTime": (start + CDuration::minutes(30)).to_rfc3339(), "timeZone": "UTC"},
        "organizer": {"email": USER, "self": true},
        "hangoutLink": format!("https://meet.google.com/b{i:05}-abcd-efg"),
        "attendees": [{"email": USER, "self": true, "organizer": true, "responseStatus": "accepted"},
                      {"email": format!("client{i}@partner.example"), "responseStatus": "needsAction"}]
    })
}

fn counts() -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 5000])
}

#[tokio::main]
async fn main() {
    println!("| events | round | pages | seconds | events/s |");
    println!("| --- | --- | --- | --- | --- |");
    for n in counts() {
        let g = GoogleStandIn::start().await;
        let now = Utc::now();
        for i in 0..n {
            // Spread over the next four weeks (the sync window).
            g.upsert(event(
                i,
                now + CDuration::minutes(60 + (i as i64 * 37) % 38_000),
            ));
        }
        let client = GoogleClient::new(&g.root_url())
            .unwrap()
            .with_page_size(250);
        let rules = AutoJoinRules::default();
        let c = common::connected(CalendarProvider::Google, TOKEN, USER).await;
        let window = (now - CDuration::days(1), now + CDuration::days(28));
        let round = || async {
            let t = Instant::now();
            let r = sync_connection(
                Provider::Google(&client),
                &c.tenants,
                &c.tenant,
                &c.conn,
                None,
                &rules,
                window,
            )
            .await
            .unwrap();
            (r, t.elapsed().as_secs_f64())
        };
        let (full, secs) = round().await;
        assert_eq!(full.events as usize, n);
        println!(
            "| {n} | full | {} | {secs:.2} | {:.0} |",
            full.pages,
            n as f64 / secs
        );
        // A tenth of them changed: an incremental round from the stored sync token.
        let changed = n / 10;
        for i in 0..changed {
            let mut e = event(i * 10, now + CDuration::minutes(90 + i as i64));
            e["summary"] = format!("Consult {i} (moved)").into();
            g.upsert(e);
        }
        let (inc, secs) = round().await;
        assert!(!inc.full);
        println!(
            "| {n} | incremental ({} changed) | {} | {secs:.2} | {:.0} |",
            inc.events,
            inc.pages,
            inc.events as f64 / secs
        );
    }
}

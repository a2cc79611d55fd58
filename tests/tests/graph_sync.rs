//! Microsoft Graph sync rounds against the stand-in of the documented delta API: paging, resume,
//! 410 -> full resync, 429 with Retry-After, and convergence: a full sync followed by 50
//! incremental changes ends in the same state as a fresh full sync.

use chrono::{DateTime, Duration as CDuration, Utc};
use meetbot_calendar_sync::apply::open_meeting;
use meetbot_calendar_sync::graph::{GraphClient, GraphError};
use meetbot_calendar_sync::rules::AutoJoinRules;
use meetbot_calendar_sync::sync::{SyncError, sync_microsoft};
use meetbot_core::model::*;
use meetbot_testsupport::graph::{GraphStandIn, TOKEN};
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

const USER: &str = "anna@lawfirm.example";

fn fmt(t: DateTime<Utc>) -> String {
    format!("{}0", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

fn event(
    id: &str,
    subject: &str,
    start: DateTime<Utc>,
    teams: bool,
    cancelled: bool,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": id,
        "type": "singleInstance",
        "subject": subject,
        "isCancelled": cancelled,
        "isAllDay": false,
        "responseStatus": {"response": "organizer"},
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(start + CDuration::minutes(30)), "timeZone": "UTC"},
        "organizer": {"emailAddress": {"address": USER}},
        "attendees": [{"type": "required", "status": {"response": "accepted"}, "emailAddress": {"address": "client@acme.example"}}]
    });
    if teams {
        v["onlineMeeting"] = serde_json::json!({"joinUrl": format!("https://teams.microsoft.com/l/meetup-join/19%3ameeting_{id}%40thread.v2/0")});
    }
    v
}

mod common;
use common::{Connected as Side, connected};

async fn side() -> Side {
    connected(CalendarProvider::Microsoft, TOKEN, USER).await
}

/// What a side holds, comparable across tenants: live meetings by provider instance id.
async fn state(
    s: &Side,
) -> BTreeMap<String, (String, DateTime<Utc>, MeetingStatus, Option<String>, bool)> {
    let v = s.tenants.vault(&s.tenant).await.unwrap();
    let mut out = BTreeMap::new();
    for m in s
        .tenants
        .store()
        .list_meetings(&s.tenant, None, None)
        .await
        .unwrap()
    {
        if m.status == MeetingStatus::Cancelled {
            continue;
        }
        let o = open_meeting(&v, &m).unwrap();
        out.insert(
            m.event_instance_id.clone(),
            (o.title, m.starts_at, m.status, o.join_url, m.wants_bot),
        );
    }
    out
}

fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        Utc::now() - CDuration::days(1),
        Utc::now() + CDuration::days(28),
    )
}

fn client(g: &GraphStandIn, page: u32) -> GraphClient {
    GraphClient::new(reqwest::Client::new(), &g.base_url())
        .unwrap()
        .with_page_size(page)
}

#[tokio::test]
async fn a_full_sync_then_fifty_incremental_changes_converge_to_a_fresh_full_sync() {
    let g = GraphStandIn::start().await;
    let mut rng = rand::rng();
    let now = Utc::now();
    for i in 0..30 {
        let start = now + CDuration::minutes(rng.random_range(60..20 * 24 * 60));
        g.upsert(event(
            &format!("ev{i:03}"),
            &format!("Matter {i}"),
            start,
            rng.random_bool(0.7),
            false,
        ));
    }
    let graph = client(&g, 7);
    let rules = AutoJoinRules::default();
    let a = side().await;
    let first = sync_microsoft(&graph, &a.tenants, &a.tenant, &a.conn, &rules, window())
        .await
        .unwrap();
    assert!(
        first.full && first.pages >= 5,
        "paged with nextLink: {first:?}"
    );
    assert_eq!(first.events, 30);

    let mut next_id = 30;
    for change in 0..50 {
        let ids = g.live_ids();
        let pick = ids[rng.random_range(0..ids.len())].clone();
        match rng.random_range(0..6) {
            0 => {
                let start = now + CDuration::minutes(rng.random_range(60..20 * 24 * 60));
                g.upsert(event(
                    &format!("ev{next_id:03}"),
                    &format!("New matter {next_id}"),
                    start,
                    true,
                    false,
                ));
                next_id += 1;
            }
            1 => {
                let mut e = g.event(&pick).unwrap();
                e["subject"] = format!("Renamed {change}").into();
                g.upsert(e);
            }
            2 => {
                let start = now + CDuration::minutes(rng.random_range(60..20 * 24 * 60));
                let mut e = g.event(&pick).unwrap();
                e["start"]["dateTime"] = fmt(start).into();
                e["end"]["dateTime"] = fmt(start + CDuration::minutes(45)).into();
                g.upsert(e);
            }
            3 => g.delete(&pick),
            4 => {
                let mut e = g.event(&pick).unwrap();
                e["isCancelled"] = true.into();
                g.upsert(e);
            }
            _ => {
                let mut e = g.event(&pick).unwrap();
                if e.get("onlineMeeting").is_some() {
                    e.as_object_mut().unwrap().remove("onlineMeeting");
                } else {
                    e["onlineMeeting"] = serde_json::json!({"joinUrl": "https://teams.microsoft.com/meet/123456789?p=x"});
                }
                g.upsert(e);
            }
        }
        // Sync after every few changes, as push notifications would trigger.
        if change % 4 == 3 || change == 49 {
            let r = sync_microsoft(&graph, &a.tenants, &a.tenant, &a.conn, &rules, window())
                .await
                .unwrap();
            assert!(!r.full, "incremental from the stored deltaLink");
        }
    }
    let b = side().await;
    sync_microsoft(&graph, &b.tenants, &b.tenant, &b.conn, &rules, window())
        .await
        .unwrap();
    let (sa, sb) = (state(&a).await, state(&b).await);
    assert!(sb.len() >= 10, "the fresh sync has meetings ({})", sb.len());
    assert_eq!(sa, sb, "incremental state equals a fresh full sync");
}

#[tokio::test]
async fn a_forgotten_sync_state_410_triggers_a_full_resync_and_nothing_is_lost() {
    let g = GraphStandIn::start().await;
    let now = Utc::now();
    g.upsert(event(
        "keep",
        "Kept",
        now + CDuration::hours(3),
        true,
        false,
    ));
    g.upsert(event(
        "gone",
        "Deleted while forgotten",
        now + CDuration::hours(4),
        true,
        false,
    ));
    let graph = client(&g, 10);
    let rules = AutoJoinRules::default();
    let a = side().await;
    sync_microsoft(&graph, &a.tenants, &a.tenant, &a.conn, &rules, window())
        .await
        .unwrap();
    g.forget_sync_states();
    g.upsert(event(
        "new",
        "Added while forgotten",
        now + CDuration::hours(5),
        true,
        false,
    ));
    let r = sync_microsoft(&graph, &a.tenants, &a.tenant, &a.conn, &rules, window())
        .await
        .unwrap();
    assert!(r.resynced && r.full, "{r:?}");
    let s = state(&a).await;
    assert!(s.contains_key("keep") && s.contains_key("new"));
    // The next round is incremental again.
    g.delete("keep");
    let r = sync_microsoft(&graph, &a.tenants, &a.tenant, &a.conn, &rules, window())
        .await
        .unwrap();
    assert!(!r.full && !r.resynced);
    assert_eq!(r.applied.cancelled, 1);
    assert!(!state(&a).await.contains_key("keep"));
}

#[tokio::test]
async fn throttling_and_a_bad_token_are_reported_with_what_to_do() {
    let g = GraphStandIn::start().await;
    g.upsert(event(
        "e1",
        "x",
        Utc::now() + CDuration::hours(1),
        true,
        false,
    ));
    let graph = client(&g, 10);
    g.throttle_next(1);
    let (from, to) = window();
    match graph
        .calendar_view_delta(TOKEN, None, from, to, 10_000)
        .await
    {
        Err(GraphError::Throttled {
            status: 429,
            retry_after,
        }) => assert_eq!(retry_after, Some(Duration::from_secs(1))),
        other => panic!("{other:?}"),
    }
    assert!(
        graph
            .calendar_view_delta(TOKEN, None, from, to, 10_000)
            .await
            .is_ok(),
        "after the pause it works"
    );
    let err = graph
        .calendar_view_delta("wrong-token", None, from, to, 10_000)
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Unauthorized));
    assert!(err.to_string().contains("reconnect"));
}

#[tokio::test]
async fn a_stored_delta_link_pointing_elsewhere_is_refused_before_the_token_is_sent() {
    let g = GraphStandIn::start().await;
    let a = side().await;
    let store = a.tenants.store();
    let mut c = store
        .get_connection(&a.tenant, &a.conn)
        .await
        .unwrap()
        .unwrap();
    c.sync_cursor =
        Some("https://attacker.example/v1.0/me/calendarView/delta?$deltatoken=x".into());
    store.put_connection(&a.tenant, &c).await.unwrap();
    let before = g.requests();
    let err = sync_microsoft(
        &client(&g, 10),
        &a.tenants,
        &a.tenant,
        &a.conn,
        &AutoJoinRules::default(),
        window(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SyncError::Graph(GraphError::Protocol(ref m)) if m.contains("refusing to send the token")),
        "{err}"
    );
    assert_eq!(g.requests(), before);
}

#[tokio::test]
async fn a_users_saved_auto_join_rules_decide_their_meetings_and_a_change_redecides_all() {
    use meetbot_calendar_sync::rules::{JoinMode, rules_for, save_rules};
    let g = GraphStandIn::start().await;
    let now = Utc::now();
    g.upsert(event(
        "m1",
        "Acme merger",
        now + CDuration::hours(2),
        true,
        false,
    ));
    g.upsert(event(
        "m2",
        "Weekly sync",
        now + CDuration::hours(3),
        true,
        false,
    ));
    let graph = client(&g, 10);
    let s = side().await;
    let defaults = AutoJoinRules::default();
    let wants = |st: BTreeMap<String, _>| -> Vec<(String, bool)> {
        st.into_iter()
            .map(|(k, v): (String, (String, _, _, _, bool))| (k, v.4))
            .collect()
    };
    // The user excludes a keyword: their rules win over the service default.
    let mine = AutoJoinRules {
        exclude_keywords: vec!["merger".into()],
        ..Default::default()
    };
    save_rules(&s.tenants, &s.tenant, "user-1", &mine)
        .await
        .unwrap();
    assert_eq!(
        rules_for(&s.tenants, &s.tenant, "user-1").await.unwrap(),
        Some(mine)
    );
    sync_microsoft(&graph, &s.tenants, &s.tenant, &s.conn, &defaults, window())
        .await
        .unwrap();
    assert_eq!(
        wants(state(&s).await),
        vec![("m1".into(), false), ("m2".into(), true)]
    );
    // Changing the rules makes the next round a full one: unchanged events are decided again.
    let only_merger = AutoJoinRules {
        include_keywords: vec!["merger".into()],
        mode: JoinMode::AllWithLink,
        ..Default::default()
    };
    save_rules(&s.tenants, &s.tenant, "user-1", &only_merger)
        .await
        .unwrap();
    let r = sync_microsoft(&graph, &s.tenants, &s.tenant, &s.conn, &defaults, window())
        .await
        .unwrap();
    assert!(r.full);
    assert_eq!(
        wants(state(&s).await),
        vec![("m1".into(), true), ("m2".into(), false)]
    );
}

/// A round that may apply at most `max_events` events.
fn capped(max_events: usize) -> meetbot_calendar_sync::sync::RoundLimits {
    meetbot_calendar_sync::sync::RoundLimits {
        max_events,
        ..Default::default()
    }
}

async fn capped_round(
    graph: &GraphClient,
    s: &Side,
    limits: &meetbot_calendar_sync::sync::RoundLimits,
) -> Result<meetbot_calendar_sync::sync::SyncReport, SyncError> {
    tokio::time::timeout(
        Duration::from_secs(30),
        meetbot_calendar_sync::sync::sync_connection_within(
            meetbot_calendar_sync::sync::Provider::Microsoft(graph),
            &s.tenants,
            &s.tenant,
            &s.conn,
            None,
            &AutoJoinRules::default(),
            window(),
            limits,
        ),
    )
    .await
    .expect("the round ends")
}

async fn cursor_of(s: &Side) -> Option<String> {
    s.store
        .get_connection(&s.tenant, &s.conn)
        .await
        .unwrap()
        .unwrap()
        .sync_cursor
}

#[tokio::test]
async fn a_graph_answer_of_endless_next_links_is_cut_at_the_per_round_cap_and_the_round_ends() {
    use meetbot_calendar_sync::sync::continues_a_cut_round;
    let g = GraphStandIn::start().await;
    let now = Utc::now();
    for i in 0..4 {
        g.upsert(event(
            &format!("ev{i}"),
            "Matter",
            now + CDuration::hours(i + 1),
            true,
            false,
        ));
    }
    g.endless_pages();
    let graph = client(&g, 6);
    let a = side().await;
    // Pages of 6, so at most 3 pages (18 events) within a cap of 20.
    let limits = capped(20);
    for n in 0..3 {
        let before = g.requests();
        let r = capped_round(&graph, &a, &limits).await.unwrap();
        assert!(r.cut && r.pages == 3, "{r:?}");
        assert_eq!(g.requests() - before, 3, "three pages asked for, no more");
        assert_eq!(r.events, if n == 0 { 4 } else { 0 }, "{r:?}");
        assert_eq!(state(&a).await.len(), 4, "each event stored once");
        assert!(continues_a_cut_round(cursor_of(&a).await.as_deref()));
    }
    // The stored nextLink is checked like a deltaLink before the token goes to it.
    let store = a.tenants.store();
    let mut c = store
        .get_connection(&a.tenant, &a.conn)
        .await
        .unwrap()
        .unwrap();
    c.sync_cursor =
        Some("cut:https://attacker.example/v1.0/me/calendarView/delta?$skiptoken=x".into());
    store.put_connection(&a.tenant, &c).await.unwrap();
    let before = g.requests();
    let err = capped_round(&graph, &a, &limits).await.unwrap_err();
    assert!(
        matches!(err, SyncError::Graph(GraphError::Protocol(ref m)) if m.contains("refusing to send the token")),
        "{err}"
    );
    assert_eq!(g.requests(), before);
}

#[tokio::test]
async fn a_graph_calendar_over_the_per_round_cap_is_read_on_by_the_next_rounds_without_losing_or_duplicating_events()
 {
    use meetbot_calendar_sync::sync::continues_a_cut_round;
    let g = GraphStandIn::start().await;
    let now = Utc::now();
    for i in 0..50 {
        g.upsert(event(
            &format!("ev{i:03}"),
            &format!("Matter {i}"),
            now + CDuration::minutes(60 + 37 * i),
            i % 3 != 0,
            false,
        ));
    }
    let graph = client(&g, 6);
    let a = side().await;
    let limits = capped(20);
    let first = capped_round(&graph, &a, &limits).await.unwrap();
    assert!(
        first.full && first.cut && first.pages == 3 && first.events == 18,
        "{first:?}"
    );
    assert_eq!(state(&a).await.len(), 18);
    let cursor = cursor_of(&a).await;
    assert!(continues_a_cut_round(cursor.as_deref()), "{cursor:?}");
    // Added while the round is half read: it comes with the round after it.
    g.upsert(event(
        "late",
        "Late matter",
        now + CDuration::hours(5),
        true,
        false,
    ));
    let second = capped_round(&graph, &a, &limits).await.unwrap();
    assert!(second.cut && second.events == 18, "{second:?}");
    assert_eq!(state(&a).await.len(), 36);
    let third = capped_round(&graph, &a, &limits).await.unwrap();
    assert!(
        !third.cut && third.events == 14,
        "the round ends: {third:?}"
    );
    assert_eq!(state(&a).await.len(), 50, "each event once, none lost");
    assert!(!continues_a_cut_round(cursor_of(&a).await.as_deref()));
    let fourth = capped_round(&graph, &a, &limits).await.unwrap();
    assert!(
        !fourth.full && !fourth.cut && fourth.events == 1,
        "{fourth:?}"
    );
    // Later changes arrive incrementally as before.
    let mut renamed = g.event("ev007").unwrap();
    renamed["subject"] = "Renamed matter".into();
    g.upsert(renamed);
    g.delete("ev011");
    let fifth = capped_round(&graph, &a, &limits).await.unwrap();
    assert!(!fifth.cut && fifth.events == 2, "{fifth:?}");
    // The same as one uncapped full sync of the calendar as it is now.
    let b = side().await;
    let fresh = capped_round(&graph, &b, &capped(10_000)).await.unwrap();
    assert!(!fresh.cut, "{fresh:?}");
    let (sa, sb) = (state(&a).await, state(&b).await);
    assert_eq!(sa.len(), 50);
    assert_eq!(sa, sb);
}

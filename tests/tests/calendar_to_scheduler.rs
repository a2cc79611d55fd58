//! Calendar payloads flow into the scheduler: normalise -> apply (sealed, with the auto-join
//! decision) -> the scheduler arms, re-arms or withdraws bot jobs on its next pass.

use chrono::{Duration as CDuration, Utc};
use meetbot_calendar_sync::apply::{Target, apply, meeting_id, open_meeting};
use meetbot_calendar_sync::parse_payload;
use meetbot_calendar_sync::rules::AutoJoinRules;
use meetbot_core::model::{BotJobState, CalendarProvider, MeetingStatus};
use meetbot_crypto::LocalKeyFile;
use meetbot_queue::InProcessQueue;
use meetbot_scheduler::{Scheduler, SchedulerSettings};
use meetbot_store::vault::Tenants;
use meetbot_store::{JobFilter, SqliteEngine, Store, init_engine};
use std::sync::Arc;
use std::time::Duration;

fn graph_event(
    id: &str,
    subject: &str,
    start_in_min: i64,
    join: Option<&str>,
) -> serde_json::Value {
    let start = Utc::now() + CDuration::minutes(start_in_min);
    let fmt = |t: chrono::DateTime<Utc>| format!("{}0", t.format("%Y-%m-%dT%H:%M:%S%.6f"));
    let mut v = serde_json::json!({
        "id": id,
        "type": "singleInstance",
        "subject": subject,
        "isCancelled": false,
        "responseStatus": {"response": "organizer"},
        "start": {"dateTime": fmt(start), "timeZone": "UTC"},
        "end": {"dateTime": fmt(start + CDuration::minutes(30)), "timeZone": "UTC"},
        "organizer": {"emailAddress": {"address": "anna@lawfirm.example"}},
        "attendees": [{"type": "required", "status": {"response": "accepted"}, "emailAddress": {"address": "client@acme.example", "name": "Client"}}]
    });
    if let Some(j) = join {
        v["onlineMeeting"] = serde_json::json!({"joinUrl": j});
    }
    v
}

fn page(events: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"value": events})).unwrap()
}

#[tokio::test]
async fn synced_events_are_sealed_decided_and_armed_and_removals_withdraw_their_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = init_engine(SqliteEngine::open(&dir.path().join("s")).unwrap())
        .await
        .unwrap();
    let tenants = Tenants::new(
        store.clone(),
        Arc::new(LocalKeyFile::open_or_create(&dir.path().join("k")).unwrap()),
    );
    let t = tenants.create("Law firm").await.unwrap().id;
    let rules = AutoJoinRules::default();
    let target = Target {
        tenants: &tenants,
        tenant: &t,
        connection_id: "conn-1",
        user_email: "anna@lawfirm.example",
        rules: &rules,
    };
    let teams = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_A%40thread.v2/0";

    let first = page(vec![
        graph_event("e1", "Client call", 30, Some(teams)),
        graph_event("e2", "Focus time", 60, None),
    ]);
    let evs = parse_payload(CalendarProvider::Microsoft, &first).unwrap();
    let rep = apply(&target, &evs).await.unwrap();
    assert_eq!((rep.written, rep.unchanged), (2, 0));
    let again = apply(&target, &evs).await.unwrap();
    assert_eq!(
        (again.written, again.unchanged),
        (0, 2),
        "an unchanged event is not rewritten"
    );

    let m1 = store
        .get_meeting(&t, &meeting_id("conn-1", "e1"))
        .await
        .unwrap()
        .unwrap();
    assert!(m1.wants_bot);
    let m2 = store
        .get_meeting(&t, &meeting_id("conn-1", "e2"))
        .await
        .unwrap()
        .unwrap();
    assert!(!m2.wants_bot);
    assert_eq!(m2.join_reason.as_deref(), Some("no meeting link"));
    let v = tenants.vault(&t).await.unwrap();
    let opened = open_meeting(&v, &m1).unwrap();
    assert_eq!(opened.title, "Client call");
    assert_eq!(opened.join_url.as_deref(), Some(teams));
    assert_eq!(opened.people.attendees[0].email, "client@acme.example");

    let sched = Scheduler::new(
        store.clone(),
        Arc::new(InProcessQueue::new(5)),
        SchedulerSettings {
            lead: Duration::from_secs(60),
            grace: Duration::from_secs(600),
            tick: Duration::from_millis(100),
            lease: Duration::from_secs(5),
            replica: "r1".into(),
        },
    );
    assert_eq!(sched.pass(Utc::now()).await.unwrap().armed, 1);

    // The next delta page: e1 deleted in the calendar.
    let removal = page(vec![
        serde_json::json!({"id": "e1", "@removed": {"reason": "deleted"}}),
    ]);
    let rep = apply(
        &target,
        &parse_payload(CalendarProvider::Microsoft, &removal).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(rep.cancelled, 1);
    assert_eq!(
        store.get_meeting(&t, &m1.id).await.unwrap().unwrap().status,
        MeetingStatus::Cancelled
    );
    let r = sched.pass(Utc::now()).await.unwrap();
    assert_eq!(r.withdrawn, 1);
    let jobs = store
        .find_bot_jobs(
            &t,
            &JobFilter {
                meeting_id: Some(m1.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs[0].value.state, BotJobState::Cancelled);

    // A session its tenant deleted stays deleted when its event changes, and gets no bot.
    let mut m2 = store.get_meeting(&t, &m2.id).await.unwrap().unwrap();
    m2.deleted_at = Some(Utc::now());
    store.put_meeting(&t, &m2).await.unwrap();
    let moved = page(vec![graph_event(
        "e2",
        "Focus time, moved",
        90,
        Some(teams),
    )]);
    let rep = apply(
        &target,
        &parse_payload(CalendarProvider::Microsoft, &moved).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!((rep.written, rep.unchanged), (0, 1));
    let after = store.get_meeting(&t, &m2.id).await.unwrap().unwrap();
    assert!(after.deleted_at.is_some() && !after.wants_bot);
    assert_eq!(open_meeting(&v, &after).unwrap().title, "Focus time");

    // A removal of an instance never seen is ignored, not an error.
    let unknown = page(vec![
        serde_json::json!({"id": "zzz", "@removed": {"reason": "deleted"}}),
    ]);
    assert_eq!(
        apply(
            &target,
            &parse_payload(CalendarProvider::Microsoft, &unknown).unwrap()
        )
        .await
        .unwrap()
        .ignored,
        1
    );
}

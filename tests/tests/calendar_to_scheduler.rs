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
    let f = Firm::new().await;
    let (store, tenants, t, sched) = (&f.store, &f.tenants, f.t.clone(), &f.sched);
    let rules = AutoJoinRules::default();
    let target = Target {
        tenants,
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

// ---------------------------------------------------------------- one bot per meeting

/// One invitation as four calendars hold it: an Outlook organiser's Teams meeting, in two
/// Microsoft 365 mailboxes of the firm (each its own Graph event id) and, through the emailed
/// invitation, in two Google calendars (Google keeps the invitation's UID as `iCalUID` and the
/// link in the description, wrapped by Outlook's safelinks).
struct Invitation {
    goid: String,
    teams: String,
    /// Whole seconds, as calendars keep times.
    base: chrono::DateTime<Utc>,
}

impl Invitation {
    fn new() -> Self {
        // GlobalObjectId: class id, instance date (zero: not an occurrence), creation time,
        // reserved, data size, data.
        let mut goid = hex::decode("040000008200E00074C5B7101A82E008").unwrap();
        goid.extend([0, 0, 0, 0]);
        goid.extend([0x10, 0x2f, 0x66, 0x3c, 0x1a, 0x3b, 0xdb, 0x01]);
        goid.extend([0; 8]);
        goid.extend([16, 0, 0, 0]);
        goid.extend(uuid::Uuid::new_v4().as_bytes());
        Invitation {
            goid: hex::encode_upper(goid),
            teams: "https://teams.microsoft.com/l/meetup-join/19%3ameeting_OTk4%40thread.v2/0"
                .into(),
            base: chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap(),
        }
    }

    fn graph(
        &self,
        id: &str,
        start_in_min: i64,
        modified_min_ago: i64,
        response: &str,
    ) -> serde_json::Value {
        let start = self.base + CDuration::minutes(start_in_min);
        let fmt = |t: chrono::DateTime<Utc>| format!("{}0", t.format("%Y-%m-%dT%H:%M:%S%.6f"));
        serde_json::json!({
            "id": id,
            "iCalUId": self.goid,
            "type": "singleInstance",
            "subject": "Case review",
            "isCancelled": false,
            "lastModifiedDateTime": (Utc::now() - CDuration::minutes(modified_min_ago)).to_rfc3339(),
            "responseStatus": {"response": response},
            "start": {"dateTime": fmt(start), "timeZone": "UTC"},
            "end": {"dateTime": fmt(start + CDuration::minutes(30)), "timeZone": "UTC"},
            "organizer": {"emailAddress": {"address": "anna@lawfirm.example"}},
            "onlineMeeting": {"joinUrl": format!("{}?context=%7b%22Tid%22%3a%22{id}%22%7d", self.teams)}
        })
    }

    fn google(
        &self,
        id: &str,
        start_in_min: i64,
        modified_min_ago: i64,
        response: &str,
    ) -> serde_json::Value {
        let start = self.base + CDuration::minutes(start_in_min);
        let safelink = format!(
            "https://eur01.safelinks.protection.outlook.com/?url={}&data=05%7C02",
            url::form_urlencoded::byte_serialize(self.teams.as_bytes()).collect::<String>()
        );
        serde_json::json!({
            "id": id,
            "iCalUID": self.goid,
            "status": "confirmed",
            "summary": "Case review",
            "updated": (Utc::now() - CDuration::minutes(modified_min_ago)).to_rfc3339(),
            "description": format!("Microsoft Teams meeting<br>Join: <a href=\"{safelink}\">Click here to join</a>"),
            "start": {"dateTime": start.to_rfc3339()},
            "end": {"dateTime": (start + CDuration::minutes(30)).to_rfc3339()},
            "organizer": {"email": "anna@lawfirm.example"},
            "attendees": [
                {"email": "anna@lawfirm.example", "organizer": true, "responseStatus": "accepted"},
                {"email": format!("{id}@partner.example"), "self": true, "responseStatus": response}
            ]
        })
    }
}

impl Invitation {
    /// Calendar `i`'s copy (of [`COPIES`]): Graph for the mailboxes, Google for the others.
    fn copy(
        &self,
        i: usize,
        start_in_min: i64,
        modified_min_ago: i64,
        response: &str,
    ) -> serde_json::Value {
        let id = COPIES[i].1;
        match CALENDARS[i].1 {
            CalendarProvider::Microsoft => self.graph(id, start_in_min, modified_min_ago, response),
            _ => self.google(id, start_in_min, modified_min_ago, response),
        }
    }
}

struct Firm {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    tenants: Tenants,
    t: meetbot_core::TenantId,
    sched: Scheduler,
    rules: AutoJoinRules,
}

/// The four calendars: two Microsoft mailboxes, two Google accounts.
const CALENDARS: [(&str, CalendarProvider); 4] = [
    ("mailbox-anna", CalendarProvider::Microsoft),
    ("mailbox-ben", CalendarProvider::Microsoft),
    ("google-carla", CalendarProvider::Google),
    ("google-dev", CalendarProvider::Google),
];

impl Firm {
    async fn new() -> Firm {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = init_engine(SqliteEngine::open(&dir.path().join("s")).unwrap())
            .await
            .unwrap();
        let tenants = Tenants::new(
            store.clone(),
            Arc::new(LocalKeyFile::open_or_create(&dir.path().join("k")).unwrap()),
        );
        let t = tenants.create("Law firm").await.unwrap().id;
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
        Firm {
            _dir: dir,
            store,
            tenants,
            t,
            sched,
            rules: AutoJoinRules::default(),
        }
    }

    /// One calendar's copy of the invitation, synced.
    async fn sync(&self, calendar: usize, event: serde_json::Value) {
        let (conn, provider) = CALENDARS[calendar];
        let payload = match provider {
            CalendarProvider::Google => {
                serde_json::to_vec(&serde_json::json!({"items": [event]})).unwrap()
            }
            _ => page(vec![event]),
        };
        let evs = parse_payload(provider, &payload).unwrap();
        let email = format!("{conn}@lawfirm.example");
        let target = Target {
            tenants: &self.tenants,
            tenant: &self.t,
            connection_id: conn,
            user_email: &email,
            rules: &self.rules,
        };
        apply(&target, &evs).await.unwrap();
    }

    /// Every calendar's copy, synced.
    async fn sync_all(
        &self,
        inv: &Invitation,
        start_in_min: i64,
        modified_min_ago: i64,
        response: &str,
    ) {
        for i in 0..COPIES.len() {
            self.sync(i, inv.copy(i, start_in_min, modified_min_ago, response))
                .await;
        }
    }

    /// Every job of every copy, as (state, join time).
    async fn jobs(
        &self,
        ids: &[(usize, &str)],
    ) -> Vec<(BotJobState, chrono::DateTime<Utc>, String)> {
        let mut out = Vec::new();
        for (cal, id) in ids {
            let m = meeting_id(CALENDARS[*cal].0, id);
            for j in self
                .store
                .find_bot_jobs(&self.t, &JobFilter::of_meeting(&m))
                .await
                .unwrap()
            {
                out.push((j.value.state, j.value.join_at, j.value.idempotency_key));
            }
        }
        out
    }
}

const COPIES: [(usize, &str); 4] = [
    (0, "AAMk-anna-1"),
    (1, "AAMk-ben-7"),
    (2, "g-carla-3"),
    (3, "g-dev-9"),
];

fn live(jobs: &[(BotJobState, chrono::DateTime<Utc>, String)]) -> Vec<chrono::DateTime<Utc>> {
    jobs.iter()
        .filter(|j| matches!(j.0, BotJobState::Scheduled | BotJobState::Dispatched))
        .map(|j| j.1)
        .collect()
}

#[tokio::test]
async fn two_graph_mailboxes_and_two_google_users_invited_to_one_meeting_get_one_bot() {
    let f = Firm::new().await;
    let inv = Invitation::new();
    f.sync(0, inv.copy(0, 60, 10, "organizer")).await;
    f.sync(1, inv.copy(1, 60, 10, "accepted")).await;
    f.sync(2, inv.copy(2, 60, 10, "accepted")).await;
    f.sync(3, inv.copy(3, 60, 10, "needsAction")).await;
    let mut refs = Vec::new();
    for (cal, id) in COPIES {
        let m = f
            .store
            .get_meeting(&f.t, &meeting_id(CALENDARS[cal].0, id))
            .await
            .unwrap()
            .unwrap();
        assert!(m.wants_bot, "{id}");
        refs.push(
            m.meeting_ref
                .expect("a meeting with a link has a reference"),
        );
    }
    assert!(
        refs.iter().all(|r| *r == refs[0]),
        "four copies, one meeting: {refs:?}"
    );
    assert!(
        !refs[0].contains("teams") && !refs[0].contains(&inv.goid) && refs[0].len() == 64,
        "the reference is a keyed hash, not the link or the UID"
    );

    let r = f.sched.pass(Utc::now()).await.unwrap();
    assert_eq!(r.armed, 1, "{r:?}");
    let jobs = f.jobs(&COPIES).await;
    assert_eq!(
        live(&jobs).len(),
        1,
        "one bot for the four calendars: {jobs:?}"
    );
    assert_eq!(f.sched.pass(Utc::now()).await.unwrap().armed, 0);

    // A fifth copy of another meeting on the same Teams link (a recurring personal link) at
    // another time, without the UID, is another meeting.
    let mut other = inv.graph("AAMk-anna-2", 240, 5, "organizer");
    other.as_object_mut().unwrap().remove("iCalUId");
    f.sync(0, other).await;
    assert_eq!(f.sched.pass(Utc::now()).await.unwrap().armed, 1);
}

#[tokio::test]
async fn a_reschedule_seen_by_one_calendar_first_moves_the_one_bot_once() {
    let (f, inv, before) = invited().await;

    // The organiser moves it an hour later; Ben's mailbox sees it first.
    f.sync(1, inv.copy(1, 120, 1, "accepted")).await;
    let r = f.sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.withdrawn, r.armed), (1, 1), "{r:?}");
    let after = live(&f.jobs(&COPIES).await);
    assert_eq!(after.len(), 1);
    assert!(
        (after[0] - before[0] - CDuration::minutes(60))
            .num_seconds()
            .abs()
            < 5,
        "the bot follows the newest change: {before:?} -> {after:?}"
    );

    // A stale page of another calendar (still the old time) changes nothing.
    f.sync(2, inv.copy(2, 60, 30, "accepted")).await;
    let r = f.sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.withdrawn, r.armed, r.rearmed), (0, 0, 0), "{r:?}");

    // The other calendars catch up: still the one bot, at the new time.
    f.sync(0, inv.copy(0, 120, 1, "accepted")).await;
    f.sync(2, inv.copy(2, 120, 1, "accepted")).await;
    f.sync(3, inv.copy(3, 120, 1, "accepted")).await;
    let r = f.sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.withdrawn, r.armed, r.rearmed), (0, 0, 0), "{r:?}");
    assert_eq!(live(&f.jobs(&COPIES).await), after);
}

#[tokio::test]
async fn one_invitee_declining_keeps_the_bot_for_the_others_and_the_last_decline_withdraws_it() {
    let (f, inv, armed) = invited().await;

    // Whichever copy holds the job, one decline leaves the bot for the other three.
    for (i, (_, id)) in COPIES.iter().enumerate().take(3) {
        f.sync(i, inv.copy(i, 60, 20, "declined")).await;
        let r = f.sched.pass(Utc::now()).await.unwrap();
        assert_eq!((r.withdrawn, r.armed), (0, 0), "after {id} declined: {r:?}");
        assert_eq!(live(&f.jobs(&COPIES).await), armed);
    }
    let decliner = f
        .store
        .get_meeting(&f.t, &meeting_id(CALENDARS[0].0, COPIES[0].1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decliner.join_reason.as_deref(), Some("you declined"));

    // The last one declines: nobody wants it, the bot is withdrawn.
    f.sync(3, inv.copy(3, 60, 20, "declined")).await;
    let r = f.sched.pass(Utc::now()).await.unwrap();
    assert_eq!(r.withdrawn, 1, "{r:?}");
    assert!(live(&f.jobs(&COPIES).await).is_empty());

    // One accepts again: the one job is armed again, not a second one.
    f.sync(2, inv.copy(2, 60, 5, "accepted")).await;
    let r = f.sched.pass(Utc::now()).await.unwrap();
    assert_eq!((r.armed, r.rearmed), (0, 1), "{r:?}");
    assert_eq!(live(&f.jobs(&COPIES).await), armed);
}

/// The four calendars invited to a meeting an hour from now, all accepting, and the one bot
/// armed for it (its join time).
async fn invited() -> (Firm, Invitation, Vec<chrono::DateTime<Utc>>) {
    let f = Firm::new().await;
    let inv = Invitation::new();
    f.sync_all(&inv, 60, 30, "accepted").await;
    f.sched.pass(Utc::now()).await.unwrap();
    let armed = live(&f.jobs(&COPIES).await);
    assert_eq!(armed.len(), 1, "one bot for the four calendars");
    (f, inv, armed)
}

/// Which copy holds the one live job.
async fn holder(f: &Firm) -> Option<String> {
    for (cal, id) in COPIES {
        let m = meeting_id(CALENDARS[cal].0, id);
        let jobs = f
            .store
            .find_bot_jobs(&f.t, &JobFilter::of_meeting(&m))
            .await
            .unwrap();
        if jobs.iter().any(|j| j.value.state == BotJobState::Scheduled) {
            return Some(m);
        }
    }
    None
}

#[tokio::test]
async fn the_copy_holding_the_bot_losing_its_link_leaves_the_bot_to_the_other_copies() {
    let (f, inv, _) = invited().await;
    let first = holder(&f).await.expect("armed");
    let cal = COPIES
        .iter()
        .position(|(c, id)| meeting_id(CALENDARS[*c].0, id) == first)
        .unwrap();
    // That calendar's event loses its link (the organiser's copy edited by hand, say).
    let mut ev = inv.copy(cal, 60, 5, "accepted");
    let o = ev.as_object_mut().unwrap();
    o.remove("onlineMeeting");
    o.remove("description");
    f.sync(cal, ev).await;
    f.sched.pass(Utc::now()).await.unwrap();
    let now = holder(&f)
        .await
        .expect("the other three still want the bot");
    assert_ne!(now, first);
    assert_eq!(live(&f.jobs(&COPIES).await).len(), 1);
}

#[tokio::test]
async fn a_provider_stamp_from_the_future_does_not_let_one_copy_hold_the_time() {
    let f = Firm::new().await;
    let inv = Invitation::new();
    f.sync_all(&inv, 60, 30, "accepted").await;
    // One calendar says the meeting moved to +180, stamped a day ahead.
    f.sync(3, inv.copy(3, 180, -24 * 60, "accepted")).await;
    f.sched.pass(Utc::now()).await.unwrap();
    // Then the organiser really moves it to +120, seen by a mailbox a moment later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.sync(0, inv.copy(0, 120, 0, "accepted")).await;
    f.sched.pass(Utc::now()).await.unwrap();
    let at = live(&f.jobs(&COPIES).await);
    assert_eq!(
        at,
        vec![inv.base + CDuration::minutes(120) - CDuration::seconds(60)]
    );
}

#[tokio::test]
async fn occurrences_of_an_outlook_series_are_separate_meetings_even_without_their_original_start()
{
    let f = Firm::new().await;
    let inv = Invitation::new();
    // Two occurrences in one mailbox: Outlook's per-occurrence UIDs differ only in the date
    // bytes (zeroed when normalised), and this page carries no originalStart.
    for (n, start) in [(1, 60), (2, 60 + 7 * 24 * 60)] {
        let mut ev = inv.graph(&format!("AAMk-occ-{n}"), start, 30, "accepted");
        let o = ev.as_object_mut().unwrap();
        o.insert("type".into(), serde_json::json!("occurrence"));
        o.insert("seriesMasterId".into(), serde_json::json!("AAMk-series"));
        let mut goid = inv.goid.clone();
        goid.replace_range(32..40, &format!("07EA0C{:02X}", n));
        o.insert("iCalUId".into(), serde_json::json!(goid));
        f.sync(0, ev).await;
    }
    let r = f.sched.pass(Utc::now()).await.unwrap();
    assert_eq!(r.armed, 2, "{r:?}");
}

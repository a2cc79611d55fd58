//! Stop means stop (issue #19 item 6): a bot stopped by a person, or a meeting deleted while its
//! bot is in the call, leaves nothing behind. The job is stopped from the joined state by
//! compare-and-set with who stopped it and launchers are told; the real transcriber (whisper
//! tiny.en) drops the session's audio and text and stores nothing (checked while streaming and
//! at the end of the stream); the outbox enqueues nothing for such a meeting and sends nothing
//! that was queued before (checked before each send, against the Slack stand-in).

mod common;

use chrono::Utc;
use meetbot_bot::audio_stream::{Outgoing, StreamSettings, job_token, stream_audio};
use meetbot_bot::connector::AudioPacket;
use meetbot_core::TenantId;
use meetbot_core::model::*;
use meetbot_delivery::notice::Notice;
use meetbot_delivery::outbox::{Outbox, RetryPolicy};
use meetbot_delivery::slack::SlackNotifier;
use meetbot_queue::{EventKind, InProcessQueue, JobQueue};
use meetbot_scheduler::stop::{Stopped, stop_job, stop_meeting};
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use meetbot_testsupport::delivery::SlackStandIn;
use meetbot_testsupport::speech::{self, MEETING};
use meetbot_transcriber::service::{Engines, Metrics, Service, Settings};
use meetbot_transcriber::summarize::{Extractive, SummarizeError, Summarizer, SummaryDoc};
use meetbot_transcriber::transcript::TranscriptDoc;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A live meeting record `id` (sealed fields as the calendar sync writes them).
async fn meeting(tenants: &Tenants, t: &TenantId, id: &str) {
    let v = tenants.vault(t).await.unwrap();
    let now = Utc::now();
    let m = Meeting {
        id: id.into(),
        connection_id: None,
        event_instance_id: format!("ev-{id}"),
        series_id: None,
        title: v.seal::<Meeting>(id, "title", b"Case review").unwrap(),
        starts_at: now - chrono::Duration::minutes(5),
        ends_at: now + chrono::Duration::minutes(55),
        all_day: false,
        status: MeetingStatus::Confirmed,
        platform: Some(Platform::Janus),
        join_url: Some(
            v.seal::<Meeting>(id, "join_url", b"https://rooms.clinic.test/room/1")
                .unwrap(),
        ),
        attendees: v
            .seal::<Meeting>(id, "attendees", b"{\"organizer\":null,\"attendees\":[]}")
            .unwrap(),
        wants_bot: true,
        join_reason: None,
        requested_by: Some("user-lee".into()),
        deleted_at: None,
        meeting_ref: None,
        source_updated_at: None,
        updated_at: now,
    };
    tenants.store().put_meeting(t, &m).await.unwrap();
}

/// Marks meeting `id` deleted the way `DELETE /v1/meetings/{id}` does, and nothing else.
async fn mark_deleted(store: &dyn Store, t: &TenantId, id: &str) {
    let mut m = store.get_meeting(t, id).await.unwrap().unwrap();
    m.deleted_at = Some(Utc::now());
    m.wants_bot = false;
    store.put_meeting(t, &m).await.unwrap();
}

fn notice(meeting_id: &str) -> Notice {
    Notice {
        meeting_id: meeting_id.into(),
        title: "Case review".into(),
        overview: "We discussed the patient's treatment plan.".into(),
        decisions: vec![],
        action_items: vec![],
        link: None,
    }
}

fn slack_outbox(store: &Arc<dyn Store>, tenants: &Arc<Tenants>, slack: &SlackStandIn) -> Outbox {
    Outbox::new(store.clone(), tenants.clone(), RetryPolicy::default()).with(Arc::new(
        SlackNotifier::new(&slack.base_url(), slack.token().to_string().into()).unwrap(),
    ))
}

async fn slack_settings(store: &dyn Store, t: &TenantId) {
    let mut settings = TenantSettings::new(Default::default(), Utc::now());
    settings.delivery.slack_channel = Some("C0CLINIC".into());
    store.put_tenant_settings(t, &settings).await.unwrap();
}

#[tokio::test]
async fn a_joined_bot_is_stopped_by_compare_and_set_with_its_actor_and_the_launcher_is_told() {
    let (tenants, store, t, _dir) = common::embedded_tenant("Clinic").await;
    meeting(&tenants, &t, "m-1").await;
    store
        .insert_bot_job(&t, &speech::joined_job("job-1", "m-1", "k-1"))
        .await
        .unwrap();
    let queue = InProcessQueue::new(5);
    let mut events = queue.subscribe_events().await.unwrap();
    let before = Utc::now();
    // Two people stop it at once: exactly one stop is recorded, the other finds it stopped.
    let (a, b) = tokio::join!(
        stop_job(&*store, Some(&queue), &t, "job-1", "user:u-a", "left"),
        stop_job(&*store, Some(&queue), &t, "job-1", "user:u-b", "left"),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let winner = match (&a, &b) {
        (Stopped::Now { was, .. }, Stopped::Already(_))
        | (Stopped::Already(_), Stopped::Now { was, .. }) => {
            assert_eq!(*was, "joined");
            if matches!(a, Stopped::Now { .. }) {
                "user:u-a"
            } else {
                "user:u-b"
            }
        }
        other => panic!("{other:?}"),
    };
    let job = store.get_bot_job(&t, "job-1").await.unwrap().unwrap().value;
    assert_eq!(job.state, BotJobState::Stopped(winner.into()));
    let last = job.history.last().unwrap();
    assert_eq!(last.state, BotJobState::Stopped(winner.into()));
    assert!(last.at >= before, "when it was stopped");
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a stop event")
        .unwrap();
    assert_eq!(ev.job_id, "job-1");
    assert!(matches!(ev.kind, EventKind::Withdrawn(_)), "{:?}", ev.kind);
    // A stopped job is never claimed for launching again.
    let msg = meetbot_queue::JobMessage {
        v: meetbot_queue::JOB_MESSAGE_VERSION,
        job_id: "job-1".into(),
        tenant_id: t.clone(),
        meeting_id: "m-1".into(),
        idempotency_key: "k-1".into(),
        join_at: Utc::now(),
        dispatched_at: Utc::now(),
    };
    let claim = meetbot_scheduler::gate::claim(&*store, &msg).await.unwrap();
    assert_eq!(claim, meetbot_scheduler::gate::Claim::Withdrawn);
    // A finished job is not stopped (nothing runs), and deleting the meeting stops nothing more.
    let mut done = speech::joined_job("job-2", "m-1", "k-2");
    done.state = BotJobState::Done;
    store.insert_bot_job(&t, &done).await.unwrap();
    assert!(matches!(
        stop_job(&*store, None, &t, "job-2", "user:u-a", "left")
            .await
            .unwrap(),
        Stopped::Ended(_)
    ));
    assert_eq!(
        stop_meeting(&*store, None, &t, "m-1", "user:u-a", "deleted")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_summary_of_a_deleted_or_stopped_meeting_is_never_enqueued() {
    let (tenants, store, t, _dir) = common::embedded_tenant("Clinic").await;
    slack_settings(&*store, &t).await;
    let slack = SlackStandIn::start("xoxb-clinic").await;
    let outbox = slack_outbox(&store, &tenants, &slack);
    // Deleted while the transcriber was summarising: its summary arrives after the deletion.
    meeting(&tenants, &t, "m-deleted").await;
    mark_deleted(&*store, &t, "m-deleted").await;
    // Its bot stopped by a person (the meeting itself kept).
    meeting(&tenants, &t, "m-stopped").await;
    store
        .insert_bot_job(&t, &speech::joined_job("job-s", "m-stopped", "k-s"))
        .await
        .unwrap();
    stop_job(&*store, None, &t, "job-s", "user:u-lee", "left")
        .await
        .unwrap();
    // A meeting going on as usual: its summary is enqueued (the check can fail).
    meeting(&tenants, &t, "m-live").await;
    for (m, want) in [("m-deleted", 0), ("m-stopped", 0), ("m-live", 1)] {
        let n = outbox
            .enqueue_summary(&*store, &tenants, &t, &notice(m))
            .await
            .unwrap();
        assert_eq!(n, want, "{m}");
        assert_eq!(
            store.list_deliveries(&t, Some(m)).await.unwrap().len(),
            want as usize,
            "{m}"
        );
    }
}

#[tokio::test]
async fn a_delivery_queued_before_its_meeting_was_deleted_or_its_bot_stopped_is_never_sent() {
    let (tenants, store, t, _dir) = common::embedded_tenant("Clinic").await;
    slack_settings(&*store, &t).await;
    let slack = SlackStandIn::start("xoxb-clinic").await;
    let outbox = slack_outbox(&store, &tenants, &slack);
    for m in ["m-deleted", "m-stopped", "m-live"] {
        meeting(&tenants, &t, m).await;
        assert_eq!(
            outbox
                .enqueue_summary(&*store, &tenants, &t, &notice(m))
                .await
                .unwrap(),
            1
        );
    }
    // After the enqueue: one meeting deleted (its queued delivery left pending, as when the
    // enqueue raced past the deletion), one meeting's bot stopped by a person.
    mark_deleted(&*store, &t, "m-deleted").await;
    store
        .insert_bot_job(&t, &speech::joined_job("job-s", "m-stopped", "k-s"))
        .await
        .unwrap();
    stop_job(&*store, None, &t, "job-s", "user:u-lee", "left")
        .await
        .unwrap();
    let round = outbox.run_once(&t, 10).await.unwrap();
    assert_eq!((round.sent, round.gave_up), (1, 2), "{round:?}");
    let posts = slack.accepted();
    assert_eq!(posts.len(), 1, "only the live meeting's summary is posted");
    for m in ["m-deleted", "m-stopped"] {
        let d = &store.list_deliveries(&t, Some(m)).await.unwrap()[0].value;
        assert_eq!(d.attempts, 1);
        match &d.state {
            DeliveryState::GaveUp { reason } => assert!(reason.starts_with("not sent"), "{m}"),
            other => panic!("{m}: {other:?}"),
        }
    }
    // Nothing goes out on later rounds either.
    outbox.run_once(&t, 10).await.unwrap();
    assert_eq!(slack.accepted().len(), 1);
}

struct Transcriber {
    tenants: Arc<Tenants>,
    store: Arc<dyn Store>,
    t: TenantId,
    url: String,
    secret: SecretString,
    metrics: Metrics,
    slack: SlackStandIn,
    outbox: Arc<Outbox>,
    _dir: tempfile::TempDir,
}

/// The real transcriber service (whisper tiny.en) on loopback, delivering to a Slack stand-in,
/// with meeting `m-1` and its joined bot job `job-1`.
async fn transcriber() -> Transcriber {
    transcriber_with(Arc::new(Extractive)).await
}

/// [`transcriber`] with `summarizer` making its summaries.
async fn transcriber_with(summarizer: Arc<dyn Summarizer>) -> Transcriber {
    let (tenants, store, t, dir) = common::embedded_tenant("Clinic").await;
    meeting(&tenants, &t, "m-1").await;
    store
        .insert_bot_job(&t, &speech::joined_job("job-1", "m-1", "k-1"))
        .await
        .unwrap();
    slack_settings(&*store, &t).await;
    let engine = Arc::new(
        meetbot_transcriber::whisper::WhisperEngine::load(&speech::whisper_model(), 2, 1, 5, "en")
            .unwrap(),
    );
    let secret = SecretString::from("a shared secret of the bots".to_string());
    let metrics = Metrics::new();
    let svc = Service::new(
        tenants.clone(),
        Engines::single(engine),
        summarizer,
        Settings {
            secret: secret.clone(),
            vad: Default::default(),
            retention: None,
            partial_every: None,
            meeting_pages: None,
            names: None,
        },
        metrics.clone(),
    );
    let slack = SlackStandIn::start("xoxb-clinic").await;
    let outbox = Arc::new(slack_outbox(&store, &tenants, &slack));
    svc.deliver_through(outbox.clone());
    let (addr, _) = meetbot_testsupport::serve_on_loopback(svc.router()).await;
    Transcriber {
        tenants,
        store,
        t,
        url: format!("ws://{addr}/v1/audio"),
        secret,
        metrics,
        slack,
        outbox,
        _dir: dir,
    }
}

impl Transcriber {
    fn stream(
        &self,
    ) -> (
        mpsc::Sender<Outgoing>,
        tokio::task::JoinHandle<
            Result<meetbot_bot::audio_stream::StreamReport, meetbot_bot::audio_stream::StreamError>,
        >,
    ) {
        let (tx, rx) = mpsc::channel(8192);
        let s = StreamSettings {
            url: format!("{}/{}/job-1", self.url, self.t),
            token: SecretString::from(job_token(
                &self.secret,
                self.t.as_str(),
                "job-1",
                Duration::from_secs(3600),
            )),
            buffer_frames: 20_000,
            max_outage: Duration::from_secs(10),
            trusted_ca: Vec::new(),
        };
        (tx, tokio::spawn(stream_audio(s, rx)))
    }

    /// Sentence `i` of the test meeting (and a second of silence) as `who`'s Opus packets,
    /// from RTP time `*ts`.
    async fn say(&self, tx: &mpsc::Sender<Outgoing>, who: &str, i: usize, ts: &mut u32) {
        let (voice, text) = MEETING[i];
        let (rate, pcm) = speech::espeak(text, voice);
        let mut pcm48 = speech::resample(&pcm, rate, 48_000);
        pcm48.extend(std::iter::repeat_n(0i16, 48_000));
        for (k, p) in speech::opus_packets(&pcm48).into_iter().enumerate() {
            tx.send(Outgoing::Audio(AudioPacket {
                participant: who.into(),
                ssrc: 1,
                sequence: k as u16,
                timestamp: *ts,
                payload: p,
                received_at: Instant::now(),
            }))
            .await
            .unwrap();
            *ts = ts.wrapping_add(960);
        }
    }

    /// Nothing of the meeting anywhere: no transcript, no summary, no delivery, no post.
    async fn nothing_kept_or_sent(&self) {
        assert!(
            self.store
                .transcript_for_meeting(&self.t, "m-1")
                .await
                .unwrap()
                .is_none(),
            "a transcript was stored"
        );
        assert!(
            self.store
                .summary_for_meeting(&self.t, "m-1")
                .await
                .unwrap()
                .is_none(),
            "a summary was stored"
        );
        assert!(
            self.store
                .list_deliveries(&self.t, Some("m-1"))
                .await
                .unwrap()
                .is_empty(),
            "a delivery was enqueued"
        );
        self.outbox.run_once(&self.t, 10).await.unwrap();
        assert!(self.slack.accepted().is_empty(), "a summary was posted");
        assert_eq!(self.metrics.transcripts.get(), 0);
    }
}

#[tokio::test]
async fn a_meeting_deleted_mid_stream_drops_its_audio_and_text_and_stores_and_sends_nothing() {
    let f = transcriber().await;
    let (tx, stream) = f.stream();
    let mut ts = 0u32;
    f.say(&tx, "alice", 5, &mut ts).await;
    // Text exists in the session: the engine recognised the first sentence.
    let start = Instant::now();
    while f.metrics.utterances.get() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing recognised"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The meeting is deleted while the bot still streams (as `DELETE /v1/meetings/{id}` does).
    stop_meeting(&*f.store, None, &f.t, "m-1", "user:u-admin", "deleted")
        .await
        .unwrap();
    mark_deleted(&*f.store, &f.t, "m-1").await;
    // Dropped while the stream is still open, without waiting for its end.
    let start = Instant::now();
    while f.metrics.discarded.get() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the session's audio and text were not dropped within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Whatever the bot still sends is taken and acknowledged, never kept; its end is acked.
    f.say(&tx, "alice", 7, &mut ts).await;
    drop(tx);
    let rep = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(
        rep.acked,
        rep.frames + 1,
        "every frame and the end acknowledged"
    );
    assert_eq!(f.metrics.discarded.get(), 1);
    f.nothing_kept_or_sent().await;
    let _ = &f.tenants;
}

#[tokio::test]
async fn a_bot_stopped_just_before_its_stream_ends_leaves_no_transcript_at_finish() {
    let f = transcriber().await;
    let (tx, stream) = f.stream();
    let mut ts = 0u32;
    f.say(&tx, "alice", 5, &mut ts).await;
    f.say(&tx, "bob", 11, &mut ts).await;
    // A person makes the bot leave; its last frames and its end follow at once (before the
    // transcriber's periodic look): the check at the end of the stream catches it.
    stop_job(&*f.store, None, &f.t, "job-1", "user:u-lee", "left")
        .await
        .unwrap();
    drop(tx);
    let rep = tokio::time::timeout(Duration::from_secs(60), stream)
        .await
        .expect("the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(rep.acked, rep.frames + 1, "the end is acknowledged");
    assert_eq!(f.metrics.discarded.get(), 1);
    f.nothing_kept_or_sent().await;
}

/// The summarizer seam held open: it says when a summary is asked for, then waits until the
/// test lets it go on, then summarizes as the local one does. The window a chat model's
/// seconds open in the real service.
struct HeldSummarizer {
    asked: mpsc::Sender<()>,
    go: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl Summarizer for HeldSummarizer {
    fn name(&self) -> &str {
        "held"
    }
    async fn summarize(&self, t: &TranscriptDoc) -> Result<SummaryDoc, SummarizeError> {
        let _ = self.asked.send(()).await;
        let _go = self.go.acquire().await;
        Extractive.summarize(t).await
    }
}

#[tokio::test]
async fn a_meeting_deleted_while_its_summary_is_being_made_leaves_no_transcript_and_no_summary() {
    let (asked, mut summary_asked) = mpsc::channel(4);
    let held = Arc::new(HeldSummarizer {
        asked,
        go: tokio::sync::Semaphore::new(0),
    });
    let f = transcriber_with(held.clone()).await;
    let (tx, stream) = f.stream();
    let mut ts = 0u32;
    f.say(&tx, "alice", 5, &mut ts).await;
    drop(tx);
    // The stream ended, every check at its end passed, the transcript is written and the
    // summary is being made.
    tokio::time::timeout(Duration::from_secs(60), summary_asked.recv())
        .await
        .expect("a summary is asked for")
        .unwrap();
    assert!(
        f.store
            .transcript_for_meeting(&f.t, "m-1")
            .await
            .unwrap()
            .is_some(),
        "the transcript is written before the summary is made"
    );
    // Now the meeting is deleted (as `DELETE /v1/meetings/{id}` does), then the summary is done.
    stop_meeting(&*f.store, None, &f.t, "m-1", "user:u-admin", "deleted")
        .await
        .unwrap();
    mark_deleted(&*f.store, &f.t, "m-1").await;
    held.go.add_permits(1);
    let rep = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(rep.acked, rep.frames + 1, "the end is acknowledged");
    assert_eq!(
        f.metrics.discarded.get(),
        1,
        "the session ends as discarded"
    );
    assert_eq!(f.metrics.summaries.get(), 0);
    assert!(
        f.store
            .transcript_for_meeting(&f.t, "m-1")
            .await
            .unwrap()
            .is_none(),
        "the transcript stayed"
    );
    assert!(
        f.store
            .summary_for_meeting(&f.t, "m-1")
            .await
            .unwrap()
            .is_none(),
        "a summary was stored"
    );
    assert!(
        f.store
            .list_deliveries(&f.t, Some("m-1"))
            .await
            .unwrap()
            .is_empty(),
        "a delivery was enqueued"
    );
    f.outbox.run_once(&f.t, 10).await.unwrap();
    assert!(f.slack.accepted().is_empty(), "a summary was posted");
}

//! Delivery through the outbox to real and stand-in peers: Slack (stand-in of the Web API
//! answering 429 with Retry-After, 500s and `ok: false`), email (real maildev, stopped and
//! started again mid-run) and signed webhooks. Every summary arrives exactly once in the end,
//! whatever failed, restarted or ran twice in between; a target that refuses is given up with
//! its reason.

use meetbot_core::TenantId;
use meetbot_core::model::{DeliveryChannel, DeliveryState};
use meetbot_delivery::email::{SmtpNotifier, SmtpSecurity, SmtpSettings, message_id};
use meetbot_delivery::notice::{ActionItem, Notice};
use meetbot_delivery::outbox::{Outbox, RetryPolicy, idempotency_key};
use meetbot_delivery::slack::SlackNotifier;
use meetbot_delivery::webhook::WebhookNotifier;
use meetbot_store::Store;
use meetbot_store::vault::Tenants;
use meetbot_testsupport::delivery::{MailDev, SlackAnswer, SlackStandIn, WebhookReceiver};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

struct World {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    tenants: Arc<Tenants>,
    tenant: TenantId,
}

async fn world() -> World {
    let (tenants, store, tenant, dir) = common::embedded_tenant("Clinic").await;
    World {
        dir,
        store,
        tenants,
        tenant,
    }
}

impl World {
    fn outbox(&self, policy: RetryPolicy) -> Outbox {
        Outbox::new(self.store.clone(), self.tenants.clone(), policy)
    }

    /// Delivery states by meeting id.
    async fn states(&self) -> Vec<(String, DeliveryState)> {
        self.store
            .list_deliveries(&self.tenant, None)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.value.meeting_id, d.value.state))
            .collect()
    }

    /// The delivery of meeting `m`.
    async fn one(&self, m: &str) -> meetbot_core::model::Delivery {
        self.store
            .list_deliveries(&self.tenant, Some(m))
            .await
            .unwrap()[0]
            .value
            .clone()
    }

    async fn all_done(&self) -> bool {
        self.states()
            .await
            .iter()
            .all(|(_, s)| matches!(s, DeliveryState::Sent { .. } | DeliveryState::GaveUp { .. }))
    }
}

/// The egress client of these tests' webhooks: the receivers are on 127.0.0.1, which the
/// default (empty) allow-list refuses; these tests name it.
fn loopback_webhooks() -> meetbot_egress::Egress {
    WebhookNotifier::egress(&["127.0.0.1/32"]).unwrap()
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        max_attempts: 8,
        claim: Duration::from_secs(10),
    }
}

fn notice(i: usize) -> Notice {
    Notice {
        meeting_id: format!("meeting-{i}"),
        title: format!("Weekly review {i}"),
        overview: "We reviewed the budget and the contract.".into(),
        decisions: vec!["Approve the Q3 budget".into()],
        action_items: vec![ActionItem {
            owner: Some("Sarah".into()),
            text: format!("send the signed contract {i} by Friday"),
        }],
        link: None,
    }
}

/// Runs rounds until every delivery is sent or given up (30 s at most).
async fn drain(w: &World, outbox: &Outbox) {
    let start = Instant::now();
    while !w.all_done().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not done: {:?}",
            w.states().await
        );
        outbox.run_once(&w.tenant, 50).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slack_rate_limits_and_server_errors_end_with_every_summary_posted_exactly_once() {
    let w = world().await;
    let slack = SlackStandIn::start("xoxb-test-token").await;
    slack.script([
        SlackAnswer::RateLimited(1),
        SlackAnswer::ServerError,
        SlackAnswer::ServerError,
        SlackAnswer::Error("ratelimited"),
        SlackAnswer::ServerError,
    ]);
    let sender = || {
        Arc::new(SlackNotifier::new(&slack.base_url(), slack.token().to_string().into()).unwrap())
    };
    let first = w.outbox(quick()).with(sender());
    for i in 0..6 {
        assert!(
            first
                .enqueue(&w.tenant, DeliveryChannel::Slack, "C0123MEET", &notice(i))
                .await
                .unwrap()
        );
    }
    // Enqueued again (a retried summary job): still one delivery.
    assert!(
        !first
            .enqueue(&w.tenant, DeliveryChannel::Slack, "C0123MEET", &notice(0))
            .await
            .unwrap()
    );
    let r = first.run_once(&w.tenant, 50).await.unwrap();
    assert!(r.sent >= 1 && r.retrying >= 1, "{r:?}");
    // A restart: a new outbox over the same store, and a second replica running at once.
    drop(first);
    let (a, b) = (
        w.outbox(quick()).with(sender()),
        w.outbox(quick()).with(sender()),
    );
    tokio::join!(drain(&w, &a), drain(&w, &b));
    for _ in 0..3 {
        a.run_once(&w.tenant, 50).await.unwrap();
    }
    let posted = slack.accepted();
    let keys: BTreeSet<String> = posted
        .iter()
        .map(|p| {
            p["metadata"]["event_payload"]["idempotency_key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(posted.len(), 6, "each summary posted once");
    assert_eq!(keys.len(), 6);
    for (i, key) in keys.iter().enumerate() {
        assert!(key.starts_with("summary:meeting-"), "{key} ({i})");
    }
    let blocks = posted[0]["blocks"].to_string();
    assert!(
        blocks.contains("*Action items*") && blocks.contains("Sarah: send the signed contract")
    );
    assert!(
        w.states()
            .await
            .iter()
            .all(|(_, s)| matches!(s, DeliveryState::Sent { .. }))
    );
}

#[tokio::test]
async fn an_smtp_server_restarted_mid_run_still_gets_every_summary_exactly_once() {
    let w = world().await;
    let mut mail = MailDev::start().await.unwrap();
    let smtp = Arc::new(
        SmtpNotifier::new(&SmtpSettings {
            host: "127.0.0.1".into(),
            port: mail.smtp_port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "meetbot <summaries@meetbot.test>".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap(),
    );
    let outbox = w.outbox(quick()).with(smtp.clone());
    let to = "sarah@clinic.test";
    for i in 0..3 {
        outbox
            .enqueue(&w.tenant, DeliveryChannel::Email, to, &notice(i))
            .await
            .unwrap();
    }
    assert_eq!(outbox.run_once(&w.tenant, 50).await.unwrap().sent, 3);

    // The SMTP server goes away; three more summaries come meanwhile.
    mail.stop();
    for i in 3..6 {
        outbox
            .enqueue(&w.tenant, DeliveryChannel::Email, to, &notice(i))
            .await
            .unwrap();
    }
    let r = outbox.run_once(&w.tenant, 50).await.unwrap();
    assert_eq!((r.sent, r.retrying), (0, 3), "{r:?} {:?}", w.states().await);
    let waiting = w
        .store
        .list_deliveries(&w.tenant, Some("meeting-4"))
        .await
        .unwrap();
    assert_eq!(waiting[0].value.state, DeliveryState::Pending);
    assert_eq!(
        waiting[0].value.last_error.as_deref(),
        Some("cannot reach the SMTP server")
    );
    mail.restart().await.unwrap();
    let outbox = w.outbox(quick()).with(smtp);
    drain(&w, &outbox).await;
    outbox.run_once(&w.tenant, 50).await.unwrap();

    let emails = mail.emails().await.unwrap();
    let ids: Vec<String> = emails
        .iter()
        .map(|e| {
            e["headers"]["message-id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(emails.len(), 6, "each summary mailed once: {ids:?}");
    let want: BTreeSet<String> = (0..6)
        .map(|i| {
            message_id(&idempotency_key(
                &format!("meeting-{i}"),
                DeliveryChannel::Email,
                to,
            ))
        })
        .collect();
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), want);
    for e in &emails {
        assert_eq!(e["envelope"]["to"][0]["address"], to);
        assert!(
            e["subject"]
                .as_str()
                .unwrap()
                .starts_with("Meeting summary: Weekly review")
        );
        assert!(
            e["text"]
                .as_str()
                .unwrap()
                .contains("Sarah: send the signed contract")
        );
        assert!(
            e["html"]
                .as_str()
                .unwrap()
                .contains("<li>Sarah: send the signed contract")
        );
    }
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_after_server_errors_and_arrive_once() {
    let w = world().await;
    let hook = WebhookReceiver::start("whsec-test", 2).await;
    let outbox = w.outbox(quick()).with(Arc::new(WebhookNotifier::new(
        "whsec-test".to_string().into(),
        loopback_webhooks(),
    )));
    for i in 0..3 {
        outbox
            .enqueue(&w.tenant, DeliveryChannel::Webhook, &hook.url(), &notice(i))
            .await
            .unwrap();
    }
    drain(&w, &outbox).await;
    let got = hook.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().all(|(valid, _, _)| *valid),
        "every signature verifies"
    );
    let keys: BTreeSet<&str> = got.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 3);
    assert!(
        got.iter()
            .all(|(_, k, v)| v["idempotency_key"] == *k && v["type"] == "meeting.summary")
    );
    // A receiver with another secret refuses them: the signature is what proves the sender.
    let other = WebhookReceiver::start("another-secret", 0).await;
    let w2 = world().await;
    let o2 = w2.outbox(quick()).with(Arc::new(WebhookNotifier::new(
        "whsec-test".to_string().into(),
        loopback_webhooks(),
    )));
    o2.enqueue(
        &w2.tenant,
        DeliveryChannel::Webhook,
        &other.url(),
        &notice(9),
    )
    .await
    .unwrap();
    drain(&w2, &o2).await;
    assert!(!other.received()[0].0);
    assert!(matches!(
        &w2.states().await[0].1,
        DeliveryState::GaveUp { reason } if reason == "the webhook answered 401"
    ));
}

#[tokio::test]
async fn a_refusing_target_is_given_up_with_its_reason_and_a_dead_one_after_the_attempt_limit() {
    let w = world().await;
    let slack = SlackStandIn::start("xoxb-test-token").await;
    slack.script([SlackAnswer::Error("channel_not_found")]);
    // Nothing listens on this port any more.
    let dead = format!(
        "http://127.0.0.1:{}/hook",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let policy = RetryPolicy {
        max_attempts: 3,
        ..quick()
    };
    let outbox = w
        .outbox(policy)
        .with(Arc::new(
            SlackNotifier::new(&slack.base_url(), "xoxb-test-token".to_string().into()).unwrap(),
        ))
        .with(Arc::new(WebhookNotifier::new(
            "s".to_string().into(),
            loopback_webhooks(),
        )));
    outbox
        .enqueue(&w.tenant, DeliveryChannel::Slack, "C-GONE", &notice(1))
        .await
        .unwrap();
    outbox
        .enqueue(&w.tenant, DeliveryChannel::Webhook, &dead, &notice(2))
        .await
        .unwrap();
    outbox
        .enqueue(&w.tenant, DeliveryChannel::Email, "a@b.test", &notice(3))
        .await
        .unwrap();
    drain(&w, &outbox).await;
    let slack_d = w.one("meeting-1").await;
    assert_eq!(
        slack_d.state,
        DeliveryState::GaveUp {
            reason: "Slack error channel_not_found".into()
        }
    );
    assert_eq!(slack_d.attempts, 1);
    let hook_d = w.one("meeting-2").await;
    assert_eq!(hook_d.attempts, 3);
    assert!(matches!(&hook_d.state,
        DeliveryState::GaveUp { reason }
            if reason == &format!("3 attempts failed; the last: {}", meetbot_egress::UNAVAILABLE)));
    let mail_d = w.one("meeting-3").await;
    assert!(matches!(&mail_d.state,
        DeliveryState::GaveUp { reason } if reason == "no email sender is configured"));
    assert!(slack.accepted().is_empty());
}

#[tokio::test]
async fn a_tenant_with_its_own_slack_token_posts_with_it_and_others_with_the_deployments() {
    use meetbot_core::model::TenantSettings;
    let w = world().await;
    let other = w.tenants.create("Firm").await.unwrap().id;
    // The stand-in accepts only the clinic's own token; the deployment's token is refused.
    let slack = SlackStandIn::start("xoxb-clinic-own").await;
    let vault = w.tenants.vault(&w.tenant).await.unwrap();
    let mut s = TenantSettings::new(Default::default(), chrono::Utc::now());
    s.delivery.slack_channel = Some("C0CLINIC".into());
    s.delivery.slack_token = Some(
        vault
            .seal::<TenantSettings>("settings", "delivery_slack_token", b"xoxb-clinic-own")
            .unwrap(),
    );
    w.store.put_tenant_settings(&w.tenant, &s).await.unwrap();
    let outbox = w
        .outbox(quick())
        .with(Arc::new(
            SlackNotifier::new(&slack.base_url(), "xoxb-deployment".to_string().into()).unwrap(),
        ))
        .with_tenant_slack(&slack.base_url());
    assert_eq!(
        outbox
            .enqueue_summary(&*w.store, &w.tenants, &w.tenant, &notice(1))
            .await
            .unwrap(),
        1
    );
    outbox
        .enqueue(&other, DeliveryChannel::Slack, "C0FIRM", &notice(2))
        .await
        .unwrap();
    drain(&w, &outbox).await;
    outbox.run_once(&other, 10).await.unwrap();
    let posted = slack.accepted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["channel"], "C0CLINIC");
    let firm = w.store.list_deliveries(&other, None).await.unwrap();
    assert!(matches!(&firm[0].value.state,
        DeliveryState::GaveUp { reason } if reason == "Slack error invalid_auth"));
    // The token is sealed in the raw store (beside the channel id, which is not).
    let raw = meetbot_testsupport::raw_bytes(w.dir.path());
    assert!(meetbot_testsupport::contains(&raw, b"C0CLINIC"));
    assert!(!meetbot_testsupport::contains(&raw, b"xoxb-clinic-own"));
}

#[tokio::test]
async fn a_tenant_with_its_own_webhook_secret_is_signed_with_it_and_others_with_the_deployments() {
    use meetbot_core::model::TenantSettings;
    let w = world().await;
    let other = w.tenants.create("Firm").await.unwrap().id;
    let own = meetbot_delivery::webhook::new_secret().unwrap();
    let clinic = WebhookReceiver::start(&own, 0).await;
    let firm = WebhookReceiver::start("whsec-deployment", 0).await;
    let vault = w.tenants.vault(&w.tenant).await.unwrap();
    let mut s = TenantSettings::new(Default::default(), chrono::Utc::now());
    s.delivery.webhook_url = Some(
        vault
            .seal::<TenantSettings>("settings", "delivery_webhook_url", clinic.url().as_bytes())
            .unwrap(),
    );
    s.delivery.webhook_secret = Some(
        vault
            .seal::<TenantSettings>("settings", "delivery_webhook_secret", own.as_bytes())
            .unwrap(),
    );
    w.store.put_tenant_settings(&w.tenant, &s).await.unwrap();
    let outbox = w
        .outbox(quick())
        .with(Arc::new(WebhookNotifier::new(
            "whsec-deployment".to_string().into(),
            loopback_webhooks(),
        )))
        .with_webhook_egress(loopback_webhooks());
    outbox
        .enqueue_summary(&*w.store, &w.tenants, &w.tenant, &notice(1))
        .await
        .unwrap();
    outbox
        .enqueue(&other, DeliveryChannel::Webhook, &firm.url(), &notice(2))
        .await
        .unwrap();
    drain(&w, &outbox).await;
    outbox.run_once(&other, 10).await.unwrap();
    let (c, f) = (clinic.received(), firm.received());
    assert_eq!((c.len(), f.len()), (1, 1));
    assert!(
        c[0].0,
        "the clinic's webhook verifies with the clinic's own secret"
    );
    assert!(f[0].0, "the firm, without one, gets the deployment's");
    let raw = meetbot_testsupport::raw_bytes(w.dir.path());
    assert!(!meetbot_testsupport::contains(&raw, own.as_bytes()));
}

#[tokio::test]
async fn email_to_a_folder_writes_each_summary_once_as_an_eml_file_and_refuses_bad_addresses() {
    use meetbot_delivery::Notifier;
    use meetbot_delivery::NotifyError;
    use meetbot_delivery::email::FileNotifier;
    let w = world().await;
    let dir = w.dir.path().join("outbox");
    let files = FileNotifier::new(&dir, "meetbot <summaries@example.com>").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the folder is its owner's only");
    }
    // Through the outbox, as `meetbot dev` sends: exactly one file per summary.
    let outbox = Outbox::new(w.store.clone(), w.tenants.clone(), quick()).with(Arc::new(files));
    for i in 0..3 {
        outbox
            .enqueue(
                &w.tenant,
                DeliveryChannel::Email,
                "ops@example.com",
                &notice(i),
            )
            .await
            .unwrap();
    }
    drain(&w, &outbox).await;
    drain(&w, &outbox).await;
    let emails: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(emails.len(), 3);
    for i in 0..3 {
        let key = idempotency_key(
            &format!("meeting-{i}"),
            DeliveryChannel::Email,
            "ops@example.com",
        );
        let e = emails
            .iter()
            .find(|e| e.contains(&message_id(&key)))
            .unwrap_or_else(|| panic!("no email with the Message-ID of summary {i}"));
        assert!(e.contains("To: ops@example.com"));
        assert!(e.contains(&format!("Subject: Meeting summary: Weekly review {i}")));
        assert!(
            e.replace("=\r\n", "")
                .contains(&format!("send the signed contract {i} by Friday"))
        );
    }
    // A malformed address is refused for good, and nothing is written.
    let files = FileNotifier::new(&dir, "meetbot <summaries@example.com>").unwrap();
    assert!(matches!(
        files.send("not an address", &notice(9), "k").await,
        Err(NotifyError::Permanent(_))
    ));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
}

/// A listener on 127.0.0.1 that counts the connections it accepts.
async fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    (port, n)
}

#[tokio::test]
async fn a_webhook_url_pointing_at_loopback_is_given_up_without_connecting() {
    use meetbot_core::model::TenantSettings;
    let w = world().await;
    let (port, accepted) = counting_listener().await;
    // An admin sets the tenant's webhook to an internal address (the API takes any https
    // URL); the deployment runs with the default, empty allow-list.
    let vault = w.tenants.vault(&w.tenant).await.unwrap();
    let mut s = TenantSettings::new(Default::default(), chrono::Utc::now());
    s.delivery.webhook_url = Some(
        vault
            .seal::<TenantSettings>(
                "settings",
                "delivery_webhook_url",
                format!("https://127.0.0.1:{port}/hook").as_bytes(),
            )
            .unwrap(),
    );
    s.delivery.webhook_secret = Some(
        vault
            .seal::<TenantSettings>("settings", "delivery_webhook_secret", b"whsec_own")
            .unwrap(),
    );
    w.store.put_tenant_settings(&w.tenant, &s).await.unwrap();
    let cfg = meetbot_core::config::DeliveryConfig {
        webhook_secret: Some("whsec-deployment".into()),
        ..Default::default()
    };
    let outbox =
        meetbot_delivery::service::outbox(w.store.clone(), w.tenants.clone(), &cfg, &[]).unwrap();
    // The tenant's own (sealed) webhook, and the same listener spelled as the deployment's
    // sender would get it in other forms: IPv4-mapped IPv6, a name, plain http.
    outbox
        .enqueue_summary(&*w.store, &w.tenants, &w.tenant, &notice(1))
        .await
        .unwrap();
    for (i, url) in [
        format!("https://[::ffff:127.0.0.1]:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
    ]
    .iter()
    .enumerate()
    {
        outbox
            .enqueue(&w.tenant, DeliveryChannel::Webhook, url, &notice(2 + i))
            .await
            .unwrap();
    }
    drain(&w, &outbox).await;
    let all = w.store.list_deliveries(&w.tenant, None).await.unwrap();
    assert_eq!(all.len(), 4);
    for d in all {
        assert_eq!(d.value.attempts, 1, "a refusal is not retried");
        assert!(
            matches!(&d.value.state,
                DeliveryState::GaveUp { reason } if reason == meetbot_egress::UNAVAILABLE),
            "{:?}",
            d.value.state
        );
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection was made"
    );
}

/// The poll interval of the workers below: far longer than any wait in these tests, so a
/// delivery that arrives within them was not sent by a poll.
const SLOW_POLL: Duration = Duration::from_secs(30);

/// Starts `outbox`'s worker (`service::run`, polling every [`SLOW_POLL`]) and lets its first
/// round (the one at start) pass; the returned sender stops it.
async fn worker(
    w: &World,
    outbox: &Arc<Outbox>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(meetbot_delivery::service::run(
        outbox.clone(),
        w.store.clone(),
        SLOW_POLL,
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    (stop, task)
}

/// Waits (2 s at most, far below [`SLOW_POLL`]) until `n` posts reached the Slack stand-in.
async fn posted_within_two_seconds(slack: &SlackStandIn, n: usize, what: &str) {
    let start = Instant::now();
    while slack.accepted().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: {} of {n} posted after 2 s: the delivery waited for the poll",
            slack.accepted().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn slack_outbox(w: &World, slack: &SlackStandIn) -> Arc<Outbox> {
    Arc::new(w.outbox(quick()).with(Arc::new(
        SlackNotifier::new(&slack.base_url(), slack.token().to_string().into()).unwrap(),
    )))
}

#[tokio::test]
async fn a_queued_summary_is_posted_at_once_without_waiting_for_the_poll() {
    let w = world().await;
    let slack = SlackStandIn::start("xoxb-test-token").await;
    let mut settings =
        meetbot_core::model::TenantSettings::new(Default::default(), chrono::Utc::now());
    settings.delivery.slack_channel = Some("C0123MEET".into());
    w.store
        .put_tenant_settings(&w.tenant, &settings)
        .await
        .unwrap();
    // The transcriber's set-up: the outbox it enqueues through is the one its worker runs.
    let outbox = slack_outbox(&w, &slack);
    let (stop, task) = worker(&w, &outbox).await;
    // Each summary is queued after the worker's last poll round, one after the other.
    for i in 0..3 {
        assert_eq!(
            outbox
                .enqueue_summary(&*w.store, &w.tenants, &w.tenant, &notice(i))
                .await
                .unwrap(),
            1
        );
        posted_within_two_seconds(&slack, i + 1, &format!("summary {i}")).await;
        let d = w.one(&format!("meeting-{i}")).await;
        assert!(
            matches!(d.state, DeliveryState::Sent { .. }),
            "{:?}",
            d.state
        );
        assert_eq!(d.attempts, 1);
    }
    let keys: BTreeSet<String> = slack
        .accepted()
        .iter()
        .map(|p| p["metadata"]["event_payload"]["idempotency_key"].to_string())
        .collect();
    assert_eq!(keys.len(), 3, "each summary posted once");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the worker ends when told to stop")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_woken_at_once_send_each_delivery_once() {
    let w = world().await;
    let slack = SlackStandIn::start("xoxb-test-token").await;
    // Two replicas, each with its own outbox and worker over the same store.
    let (a, b) = (slack_outbox(&w, &slack), slack_outbox(&w, &slack));
    let (stop_a, task_a) = worker(&w, &a).await;
    let (stop_b, task_b) = worker(&w, &b).await;
    // Queued by a third outbox, which wakes nobody; then both workers woken at the same time
    // for the same twenty due deliveries.
    let queuer = w.outbox(quick());
    for i in 0..20 {
        assert!(
            queuer
                .enqueue(&w.tenant, DeliveryChannel::Slack, "C0123MEET", &notice(i))
                .await
                .unwrap()
        );
    }
    a.wake(&w.tenant);
    b.wake(&w.tenant);
    posted_within_two_seconds(&slack, 20, "twenty deliveries").await;
    // Both rounds over (each has a claim or a skip for every delivery).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posted = slack.accepted();
    let keys: BTreeSet<String> = posted
        .iter()
        .map(|p| p["metadata"]["event_payload"]["idempotency_key"].to_string())
        .collect();
    assert_eq!(posted.len(), 20, "each delivery posted once");
    assert_eq!(keys.len(), 20);
    for (m, s) in w.states().await {
        assert!(matches!(s, DeliveryState::Sent { .. }), "{m}: {s:?}");
        assert_eq!(w.one(&m).await.attempts, 1, "{m}: claimed once");
    }
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    task_a.await.unwrap();
    task_b.await.unwrap();
}

#[tokio::test]
async fn a_woken_worker_still_sends_nothing_for_a_meeting_stopped_after_its_summary_was_queued() {
    use meetbot_testsupport::speech::joined_job;
    let w = world().await;
    let slack = SlackStandIn::start("xoxb-test-token").await;
    let outbox = slack_outbox(&w, &slack);
    let (stop, task) = worker(&w, &outbox).await;
    // Queued (by an outbox that wakes nobody), then the bot of one meeting stopped by a person.
    let queuer = w.outbox(quick());
    for i in [1, 2] {
        assert!(
            queuer
                .enqueue(&w.tenant, DeliveryChannel::Slack, "C0123MEET", &notice(i))
                .await
                .unwrap()
        );
    }
    w.store
        .insert_bot_job(&w.tenant, &joined_job("job-1", "meeting-1", "k-1"))
        .await
        .unwrap();
    meetbot_scheduler::stop::stop_job(&*w.store, None, &w.tenant, "job-1", "user:u-lee", "left")
        .await
        .unwrap();
    outbox.wake(&w.tenant);
    posted_within_two_seconds(&slack, 1, "the live meeting's summary").await;
    let start = Instant::now();
    while !w.all_done().await {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            w.states().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slack.accepted().len(), 1, "only the live meeting's summary");
    match w.one("meeting-1").await.state {
        DeliveryState::GaveUp { reason } => assert!(reason.starts_with("not sent"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        w.one("meeting-2").await.state,
        DeliveryState::Sent { .. }
    ));
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_delivery_queued_by_another_process_is_sent_by_the_poll() {
    let w = world().await;
    let slack = SlackStandIn::start("xoxb-test-token").await;
    // A delivery worker on its own (`meetbot delivery`), polling every second; the summary is
    // queued by another process's outbox, whose wake-up does not reach this worker.
    let outbox = slack_outbox(&w, &slack);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(meetbot_delivery::service::run(
        outbox,
        w.store.clone(),
        Duration::from_secs(1),
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        w.outbox(quick())
            .enqueue(&w.tenant, DeliveryChannel::Slack, "C0123MEET", &notice(1))
            .await
            .unwrap()
    );
    let start = Instant::now();
    while slack.accepted().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the poll did not send it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.one("meeting-1").await.attempts, 1);
    stop.send(()).unwrap();
    task.await.unwrap();
}

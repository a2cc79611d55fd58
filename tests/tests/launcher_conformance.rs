//! One suite, every `BotLauncher`: local processes (real child processes of a shell script that
//! behaves like a bot: runs until told to exit 0 or crash with code 3) and Kubernetes Jobs (the
//! kube client against the batch/v1 stand-in, which plays the Job controller as the test says).
//! Then what only one of them does: the Job manifest, a pod that cannot start, the deadline;
//! the local concurrency limit, deadline and process-group kill.

use meetbot_bot::kubernetes::{JobTemplate, KubernetesLauncher, job_name};
use meetbot_bot::local::LocalProcessLauncher;
use meetbot_bot::{BotLauncher, BotRun, LaunchError, LaunchSpec};
use meetbot_testsupport::kube::KubeStandIn;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bot stand-in for process management only: `$0` is a flag-file prefix, `$4` the job id.
const BOT_SCRIPT: &str = r#"while :; do
  [ -e "$0.$4.ok" ] && exit 0
  [ -e "$0.$4.fail" ] && exit 3
  sleep 0.05
done"#;

enum Driver {
    Local(PathBuf),
    Kube(KubeStandIn),
}

struct Env {
    launcher: Arc<dyn BotLauncher>,
    driver: Driver,
    _dir: tempfile::TempDir,
}

impl Env {
    fn flag(&self, job: &str, what: &str) {
        if let Driver::Local(prefix) = &self.driver {
            std::fs::write(format!("{}.{job}.{what}", prefix.display()), b"").unwrap();
        }
    }
    /// The platform starts the bot.
    fn runs(&self, job: &str) {
        if let Driver::Kube(k) = &self.driver {
            k.run(&job_name(job));
        }
    }
    fn exits_ok(&self, job: &str) {
        match &self.driver {
            Driver::Local(_) => self.flag(job, "ok"),
            Driver::Kube(k) => k.complete(&job_name(job)),
        }
    }
    fn crashes(&self, job: &str) {
        match &self.driver {
            Driver::Local(_) => self.flag(job, "fail"),
            Driver::Kube(k) => k.fail(
                &job_name(job),
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ),
        }
    }
    fn clear(&self, job: &str) {
        if let Driver::Local(prefix) = &self.driver {
            let _ = std::fs::remove_file(format!("{}.{job}.fail", prefix.display()));
        }
    }
}

fn script_launcher(dir: &std::path::Path, limit: usize) -> LocalProcessLauncher {
    LocalProcessLauncher::new(
        "/bin/sh",
        vec![
            "-c".into(),
            BOT_SCRIPT.into(),
            dir.join("flag").display().to_string(),
        ],
        limit,
    )
    .with_grace(Duration::from_millis(500))
}

async fn local() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        launcher: Arc::new(script_launcher(dir.path(), 8)),
        driver: Driver::Local(dir.path().join("flag")),
        _dir: dir,
    }
}

async fn kubernetes() -> Env {
    let k = KubeStandIn::start().await;
    let t = JobTemplate::new("meetbot", "registry.example/meetbot:test");
    Env {
        launcher: Arc::new(KubernetesLauncher::new(k.client(), t)),
        driver: Driver::Kube(k),
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn spec(job: &str) -> LaunchSpec {
    LaunchSpec {
        tenant: "clinic01".parse().unwrap(),
        job_id: job.into(),
        meeting_id: format!("meeting-{job}"),
        max_duration: Duration::from_secs(3600),
        ticket: meetbot_bot::ticket::EncodedTicket::new("ticket-text".into()),
    }
}

async fn eventually(l: &dyn BotLauncher, job: &str, want: impl Fn(&BotRun) -> bool) -> BotRun {
    let start = Instant::now();
    loop {
        let s = l.state(job).await.unwrap();
        if want(&s) || start.elapsed() > Duration::from_secs(10) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn launching_twice_starts_one_bot_which_runs(env: Env) {
    let l = &*env.launcher;
    assert_eq!(l.state("j1").await.unwrap(), BotRun::NotFound);
    l.launch(&spec("j1")).await.unwrap();
    l.launch(&spec("j1")).await.unwrap();
    env.runs("j1");
    assert_eq!(
        eventually(l, "j1", |s| *s == BotRun::Running).await,
        BotRun::Running
    );
    assert_eq!(l.active().await.unwrap(), 1);
    l.stop("j1").await.unwrap();
}

async fn a_bot_that_leaves_cleanly_is_succeeded_and_no_longer_active(env: Env) {
    let l = &*env.launcher;
    l.launch(&spec("j2")).await.unwrap();
    env.runs("j2");
    env.exits_ok("j2");
    assert_eq!(
        eventually(l, "j2", |s| s.is_finished()).await,
        BotRun::Succeeded
    );
    assert_eq!(l.active().await.unwrap(), 0);
}

async fn a_crashed_bot_is_failed_with_the_reason_and_can_be_launched_again(env: Env) {
    let l = &*env.launcher;
    l.launch(&spec("j3")).await.unwrap();
    env.runs("j3");
    env.crashes("j3");
    let s = eventually(l, "j3", |s| s.is_finished()).await;
    let BotRun::Failed(reason) = s else {
        panic!("{s:?}")
    };
    assert!(
        reason.contains("code 3") || reason.contains("BackoffLimitExceeded"),
        "{reason}"
    );
    assert_eq!(l.active().await.unwrap(), 0);
    env.clear("j3");
    l.launch(&spec("j3")).await.unwrap();
    env.runs("j3");
    assert_eq!(
        eventually(l, "j3", |s| *s == BotRun::Running).await,
        BotRun::Running
    );
    assert_eq!(l.active().await.unwrap(), 1);
    l.stop("j3").await.unwrap();
}

async fn stop_ends_the_bot_and_forgets_it(env: Env) {
    let l = &*env.launcher;
    l.launch(&spec("j4")).await.unwrap();
    env.runs("j4");
    eventually(l, "j4", |s| *s == BotRun::Running).await;
    assert!(l.stop("j4").await.unwrap());
    assert_eq!(l.state("j4").await.unwrap(), BotRun::NotFound);
    assert!(!l.stop("j4").await.unwrap());
    assert!(!l.stop("never-launched").await.unwrap());
    let start = Instant::now();
    while l.active().await.unwrap() > 0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(l.active().await.unwrap(), 0);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod local_process { $( #[tokio::test(flavor = "multi_thread")] async fn $case() { super::$case(super::local().await).await } )* }
        mod kubernetes_job { $( #[tokio::test(flavor = "multi_thread")] async fn $case() { super::$case(super::kubernetes().await).await } )* }
    };
}

suite!(
    launching_twice_starts_one_bot_which_runs,
    a_bot_that_leaves_cleanly_is_succeeded_and_no_longer_active,
    a_crashed_bot_is_failed_with_the_reason_and_can_be_launched_again,
    stop_ends_the_bot_and_forgets_it,
);

#[tokio::test]
async fn kubernetes_job_is_made_from_the_template_and_a_pod_that_cannot_start_fails_it() {
    let k = KubeStandIn::start().await;
    let mut t = JobTemplate::new("meetbot", "registry.example/meetbot:test");
    t.service_account = Some("meetbot-bot".into());
    t.env_from_secrets = vec!["meetbot-bot-env".into()];
    let l = KubernetesLauncher::new(k.client(), t);
    let mut s = spec("7c2d");
    s.max_duration = Duration::from_secs(2 * 3600);
    l.launch(&s).await.unwrap();
    let created = k.created();
    assert_eq!(created.len(), 1);
    let job = &created[0];
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 7200);
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["meetbot.io/meeting"],
        "meeting-7c2d"
    );
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "meetbot-bot-env");
    // Chromium's sandbox on: a non-root bot under the seccomp profile that permits user
    // namespaces (and nothing more than the runtime's default), no added capability.
    let sc = &c["securityContext"];
    assert_eq!(sc["seccompProfile"]["type"], "Localhost");
    assert_eq!(
        sc["seccompProfile"]["localhostProfile"],
        meetbot_bot::kubernetes::CHROMIUM_SECCOMP_PROFILE
    );
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(l.state("7c2d").await.unwrap(), BotRun::Starting);
    k.stuck(
        &job_name("7c2d"),
        "ImagePullBackOff",
        "Back-off pulling image \"registry.example/meetbot:test\"",
    );
    let BotRun::Failed(reason) = l.state("7c2d").await.unwrap() else {
        panic!("not failed")
    };
    assert!(
        reason.contains("could not start: ImagePullBackOff"),
        "{reason}"
    );
    // The deadline is Kubernetes' to enforce; its reason comes through.
    l.launch(&spec("8d3e")).await.unwrap();
    k.run(&job_name("8d3e"));
    k.fail(
        &job_name("8d3e"),
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    );
    let BotRun::Failed(reason) = l.state("8d3e").await.unwrap() else {
        panic!("not failed")
    };
    assert!(reason.starts_with("DeadlineExceeded"), "{reason}");
    // A cancelled job's Job is deleted.
    assert!(l.stop("8d3e").await.unwrap());
    assert!(k.deleted().contains(&job_name("8d3e")));
}

/// Variable names and Secret keys that would give a bot the store, the key vault, the broker
/// or the audio secret.
fn credential(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "STORE",
        "MONGO",
        "KEYS",
        "KEY_VAULT",
        "VAULT",
        "AMQP",
        "QUEUE",
        "AUDIO_TOKEN_SECRET",
        "AZURE",
    ]
    .iter()
    .any(|c| n.contains(c))
}

#[tokio::test]
async fn a_kubernetes_bot_gets_only_its_ticket_from_a_secret_of_its_own_that_goes_with_its_job() {
    use base64::Engine as _;
    use meetbot_bot::kubernetes::ticket_secret_name;
    let k = KubeStandIn::start().await;
    // The template as shipped: no Secret named for bots.
    let t = JobTemplate::new("meetbot", "registry.example/meetbot:test");
    let l = KubernetesLauncher::new(k.client(), t);
    let s = spec("9a1b");
    l.launch(&s).await.unwrap();
    // Created suspended (no pod before its ticket exists), then resumed.
    let job = &k.created()[0];
    assert_eq!(job["spec"]["suspend"], true);
    assert_eq!(l.state("9a1b").await.unwrap(), BotRun::Starting);
    k.run(&job_name("9a1b"));
    assert_eq!(l.state("9a1b").await.unwrap(), BotRun::Running);
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert!(c.get("envFrom").is_none(), "{c}");
    let env = c["env"].as_array().unwrap();
    assert_eq!(env.len(), 1, "{env:?}");
    assert_eq!(env[0]["name"], meetbot_bot::ticket::TICKET_ENV);
    assert!(
        env[0].get("value").is_none(),
        "the ticket is not in the Job spec"
    );
    let from = &env[0]["valueFrom"]["secretKeyRef"];
    assert_eq!(from["name"], ticket_secret_name(&s));
    // The only volume is the in-memory /tmp: no Secret, no projected token.
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(
        volumes.iter().all(|v| v.get("emptyDir").is_some()),
        "{volumes:?}"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    for e in env {
        assert!(!credential(e["name"].as_str().unwrap()));
    }
    // The Secret holds the ticket and nothing else, and belongs to the Job from its creation.
    let secret = k
        .secret(&ticket_secret_name(&s))
        .expect("the ticket's Secret");
    let data = secret["data"].as_object().unwrap();
    let key = from["key"].as_str().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), vec![key]);
    let ticket = base64::engine::general_purpose::STANDARD
        .decode(data[key].as_str().unwrap())
        .unwrap();
    assert_eq!(ticket, b"ticket-text");
    assert_eq!(secret["immutable"], true);
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Job"), Some(job_name("9a1b").as_str()))
    );
    assert_eq!(
        owner["uid"],
        k.job(&job_name("9a1b")).unwrap()["metadata"]["uid"]
    );
    // Stopping the bot takes its ticket away with it.
    assert!(l.stop("9a1b").await.unwrap());
    assert!(k.secret_names().is_empty(), "{:?}", k.secret_names());
    // A relaunch after a finished Job gets a Secret of its own with the new ticket.
    let first = spec("9a1c");
    l.launch(&first).await.unwrap();
    k.run(&job_name("9a1c"));
    k.fail(&job_name("9a1c"), "BackoffLimitExceeded", "lost");
    let mut again = spec("9a1c");
    again.ticket = meetbot_bot::ticket::EncodedTicket::new("second-ticket".into());
    l.launch(&again).await.unwrap();
    assert_ne!(ticket_secret_name(&first), ticket_secret_name(&again));
    let secret = k.secret(&ticket_secret_name(&again)).unwrap();
    let ticket = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["ticket"].as_str().unwrap())
        .unwrap();
    assert_eq!(ticket, b"second-ticket");
    assert!(
        k.secret(&ticket_secret_name(&first)).is_none(),
        "collected with the old Job"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_launcher_keeps_its_limit_enforces_the_deadline_and_kills_the_whole_bot() {
    let dir = tempfile::tempdir().unwrap();
    let l = script_launcher(dir.path(), 2);
    l.launch(&spec("a")).await.unwrap();
    l.launch(&spec("b")).await.unwrap();
    assert!(matches!(
        l.launch(&spec("c")).await,
        Err(LaunchError::AtCapacity(2))
    ));
    std::fs::write(dir.path().join("flag.a.ok"), b"").unwrap();
    eventually(&l, "a", |s| s.is_finished()).await;
    // The slot is free once the process is reaped.
    tokio::time::timeout(Duration::from_secs(5), l.ready_for_one())
        .await
        .unwrap();
    l.launch(&spec("c")).await.unwrap();
    l.stop("b").await.unwrap();
    l.stop("c").await.unwrap();

    // A bot past its deadline is stopped with that reason.
    let mut short = spec("d");
    short.max_duration = Duration::from_millis(300);
    tokio::time::timeout(Duration::from_secs(5), l.ready_for_one())
        .await
        .unwrap();
    l.launch(&short).await.unwrap();
    let s = eventually(&l, "d", |s| s.is_finished()).await;
    assert!(
        matches!(&s, BotRun::Failed(r) if r.starts_with("DeadlineExceeded")),
        "{s:?}"
    );

    // Stopping kills the bot's whole process group (a browser it started goes too).
    let group = LocalProcessLauncher::new(
        "/bin/sh",
        vec![
            "-c".into(),
            "sleep 300 & echo $! > \"$0\"; wait".into(),
            dir.path().join("grandchild.pid").display().to_string(),
        ],
        1,
    )
    .with_grace(Duration::from_millis(300));
    group.launch(&spec("e")).await.unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let start = Instant::now();
    while !pidfile.exists() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(group.stop("e").await.unwrap());
    let start = Instant::now();
    while alive(grandchild) && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
}

/// Whether `pid` is a live process (a zombie awaiting its reaper counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

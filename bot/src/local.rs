//! Bots as child processes on this machine (`meetbot dev`, single-machine installs): each bot is
//! `<program> <args..> --tenant T --job ID` in its own process group, at most `limit` at a time,
//! reaped when it exits, stopped (SIGTERM, then SIGKILL after a grace period) on cancel, when it
//! outlives its deadline, or when the launcher stops ([`LocalProcessLauncher::stop_all`]).
//! Children are killed if the launcher is dropped.
//!
//! A bot's environment is built, not inherited (decision 0032): its ticket
//! (`MEETBOT_BOT_TICKET`), the variables of [`PASSED_ON`] and `MEETBOT_TELEMETRY__*` from this
//! process, and what [`LocalProcessLauncher::with_env`] adds; no store, key or broker setting
//! of the launcher's reaches it.

use crate::launcher::{BotLauncher, BotRun, LaunchError, LaunchSpec};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};

/// The launcher's own variables a bot gets (where they are set): what a process needs to run,
/// nothing that configures meetbot.
pub const PASSED_ON: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "XDG_RUNTIME_DIR",
];

/// Whether the launcher's variable `key` is passed on to its bots.
pub fn passed_on(key: &str) -> bool {
    PASSED_ON.contains(&key) || key.starts_with("MEETBOT_TELEMETRY__")
}

struct Entry {
    run: BotRun,
    stop: Option<oneshot::Sender<()>>,
    pid: Option<u32>,
}

pub struct LocalProcessLauncher {
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    limit: usize,
    grace: Duration,
    slots: Arc<Semaphore>,
    bots: Arc<Mutex<HashMap<String, Entry>>>,
    /// Counts bots that ended (so [`LocalProcessLauncher::stop_all`] can wait for them).
    ended: Arc<tokio::sync::watch::Sender<u64>>,
}

fn lock(m: &Mutex<HashMap<String, Entry>>) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `sig` to the process group led by `pid`.
fn signal_group(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

impl LocalProcessLauncher {
    /// `program args.. --tenant T --job ID` per bot, at most `limit` at once.
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>, limit: usize) -> Self {
        let limit = limit.max(1);
        LocalProcessLauncher {
            program: program.into(),
            args,
            envs: Vec::new(),
            limit,
            grace: Duration::from_secs(10),
            slots: Arc::new(Semaphore::new(limit)),
            bots: Arc::new(Mutex::new(HashMap::new())),
            ended: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Extra environment for every bot (e.g. `MEETBOT_TELEMETRY__LOG_LEVEL`).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// How long a stopped bot has to leave cleanly before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The process id of the job's running bot.
    pub fn pid(&self, job_id: &str) -> Option<u32> {
        lock(&self.bots).get(job_id).and_then(|e| e.pid)
    }

    /// The launcher's own stop: every running bot gets SIGTERM (it leaves its meeting and
    /// reports its end), and SIGKILL for its whole process group once the grace is over.
    /// Returns when every bot has ended (at most the grace and a moment to reap), with how
    /// many were running.
    pub async fn stop_all(&self) -> usize {
        let mut ended = self.ended.subscribe();
        let stops: Vec<_> = lock(&self.bots)
            .values_mut()
            .filter(|e| !e.run.is_finished())
            .filter_map(|e| e.stop.take())
            .collect();
        let n = stops.len();
        for tx in stops {
            let _ = tx.send(());
        }
        let running = || lock(&self.bots).values().any(|e| !e.run.is_finished());
        let bound = self.grace + Duration::from_secs(2);
        let _ = tokio::time::timeout(bound, async {
            while running() {
                if ended.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        n
    }
}

impl Drop for LocalProcessLauncher {
    fn drop(&mut self) {
        for e in lock(&self.bots).values() {
            if let (Some(pid), false) = (e.pid, e.run.is_finished()) {
                signal_group(pid, libc::SIGKILL);
            }
        }
    }
}

#[async_trait]
impl BotLauncher for LocalProcessLauncher {
    fn describe(&self) -> String {
        format!(
            "local processes ({} {}, at most {})",
            self.program.display(),
            self.args.join(" "),
            self.limit
        )
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<(), LaunchError> {
        if lock(&self.bots)
            .get(&spec.job_id)
            .is_some_and(|e| !e.run.is_finished())
        {
            return Ok(());
        }
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| LaunchError::AtCapacity(self.limit))?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k.to_str().is_some_and(passed_on)))
            .args(&self.args)
            .args(["--tenant", spec.tenant.as_str(), "--job", &spec.job_id])
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env(crate::ticket::TICKET_ENV, spec.ticket.expose())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            LaunchError::Refused(format!("cannot start {}: {e}", self.program.display()))
        })?;
        let pid = child.id();
        let (stop_tx, mut stop_rx) = oneshot::channel();
        lock(&self.bots).insert(
            spec.job_id.clone(),
            Entry {
                run: BotRun::Running,
                stop: Some(stop_tx),
                pid,
            },
        );
        let bots = self.bots.clone();
        let ended = self.ended.clone();
        let job = spec.job_id.clone();
        let deadline = spec.max_duration;
        let grace = self.grace;
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = tokio::select! {
                status = child.wait() => match status {
                    Ok(s) if s.success() => BotRun::Succeeded,
                    Ok(s) => BotRun::Failed(match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                        (Some(c), _) => format!("bot exited with code {c}"),
                        (None, Some(sig)) => format!("bot killed by signal {sig}"),
                        _ => "bot ended abnormally".into(),
                    }),
                    Err(e) => BotRun::Failed(format!("cannot wait for the bot: {e}")),
                },
                stopped = &mut stop_rx => {
                    // Dropped sender: the launcher forgot the job; stop it all the same.
                    let _ = stopped;
                    if let Some(pid) = pid { signal_group(pid, libc::SIGTERM); }
                    if tokio::time::timeout(grace, child.wait()).await.is_err() {
                        if let Some(pid) = pid { signal_group(pid, libc::SIGKILL); }
                        let _ = child.wait().await;
                    }
                    BotRun::Failed("stopped".into())
                }
                _ = tokio::time::sleep(deadline) => {
                    if let Some(pid) = pid { signal_group(pid, libc::SIGTERM); }
                    if tokio::time::timeout(grace, child.wait()).await.is_err() {
                        if let Some(pid) = pid { signal_group(pid, libc::SIGKILL); }
                        let _ = child.wait().await;
                    }
                    BotRun::Failed("DeadlineExceeded: the bot ran past its maximum duration".into())
                }
            };
            // Whatever the bot left behind in its process group (a browser it started, when
            // the bot itself died) goes with it: no orphan stays in the meeting.
            if let Some(pid) = pid {
                signal_group(pid, libc::SIGKILL);
            }
            tracing::info!(job = %job, outcome = ?outcome, "bot process ended");
            if let Some(e) = lock(&bots).get_mut(&job) {
                e.run = outcome;
                e.stop = None;
                e.pid = None;
            }
            ended.send_modify(|n| *n += 1);
        });
        Ok(())
    }

    async fn state(&self, job_id: &str) -> Result<BotRun, LaunchError> {
        Ok(lock(&self.bots)
            .get(job_id)
            .map(|e| e.run.clone())
            .unwrap_or(BotRun::NotFound))
    }

    async fn stop(&self, job_id: &str) -> Result<bool, LaunchError> {
        let entry = lock(&self.bots).remove(job_id);
        let Some(mut e) = entry else {
            return Ok(false);
        };
        let running = !e.run.is_finished();
        if let Some(tx) = e.stop.take() {
            let _ = tx.send(());
        }
        Ok(running)
    }

    async fn active(&self) -> Result<usize, LaunchError> {
        Ok(lock(&self.bots)
            .values()
            .filter(|e| !e.run.is_finished())
            .count())
    }

    async fn ready_for_one(&self) {
        // Wait for a slot without taking it: `launch` takes it.
        if let Ok(p) = self.slots.acquire().await {
            drop(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(job: &str) -> LaunchSpec {
        LaunchSpec {
            tenant: "clinic01".parse().unwrap(),
            job_id: job.into(),
            meeting_id: format!("meeting-{job}"),
            max_duration: Duration::from_secs(3600),
            ticket: crate::ticket::EncodedTicket::new("ticket".into()),
        }
    }

    fn alive(pid: u32) -> bool {
        // Reaped by the launcher once ended: no /proc entry left.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[tokio::test]
    async fn stopping_the_launcher_terms_its_bots_and_kills_one_that_ignores_sigterm_within_the_grace()
     {
        // `sh -c SCRIPT sh --tenant T --job J`: the first ends on SIGTERM, the second ignores it
        // (and so does its `sleep`, which inherits the ignored signal).
        let polite = LocalProcessLauncher::new(
            "/bin/sh",
            vec!["-c".into(), "sleep 30 & wait".into(), "sh".into()],
            4,
        )
        .with_grace(Duration::from_millis(500));
        let stubborn = LocalProcessLauncher::new(
            "/bin/sh",
            vec![
                "-c".into(),
                "trap '' TERM; sleep 30; sleep 30".into(),
                "sh".into(),
            ],
            4,
        )
        .with_grace(Duration::from_millis(500));
        polite.launch(&spec("a")).await.unwrap();
        stubborn.launch(&spec("b")).await.unwrap();
        let (pa, pb) = (polite.pid("a").unwrap(), stubborn.pid("b").unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let (na, nb) = tokio::join!(polite.stop_all(), stubborn.stop_all());
        let took = started.elapsed();
        assert_eq!((na, nb), (1, 1));
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(
            took >= Duration::from_millis(500),
            "the stubborn bot had its grace: {took:?}"
        );
        assert!(!alive(pa) && !alive(pb), "bots left running");
        assert_eq!(polite.active().await.unwrap(), 0);
        assert_eq!(stubborn.active().await.unwrap(), 0);
        assert_eq!(stubborn.stop_all().await, 0, "nothing left to stop");
    }
}

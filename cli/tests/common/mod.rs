//! The process harness the end-to-end tests share: the `meetbot` services a test started
//! (stopped by PID however it ends), free loopback ports, and waiting for a condition while
//! watching that no service died.

use std::process::Child;
use std::time::{Duration, Instant};

/// The services this test started, stopped by PID (SIGINT, then SIGKILL) however it ends.
pub struct Services(pub Vec<(String, Child)>);

impl Drop for Services {
    fn drop(&mut self) {
        for (_, c) in &self.0 {
            // SAFETY: kill(2) on a child this test started.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        }
        let start = Instant::now();
        for (_, c) in &mut self.0 {
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `host:port` of a URL like `scheme://[user@]host:port/...`.
pub fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    rest.split(['/', '?']).next().unwrap().to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it gives a value; panics when a service exits or `secs` pass.
pub async fn wait_for<F, Fut, T>(what: &str, secs: u64, services: &mut Services, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        for (name, c) in &mut services.0 {
            if let Ok(Some(st)) = c.try_wait() {
                panic!("`meetbot {name}` exited ({st}) while waiting for {what}");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! Stand-ins for server-side request forgery tests: a listener that counts the connections it
//! accepts (the proof that nothing was connected), and an attacker's DNS that answers from a
//! script (`meetbot_egress::Resolve`). Loopback only.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A TCP listener that counts accepted connections and closes each at once.
pub struct CountingListener {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingListener {
    /// On 127.0.0.1, any free port.
    pub async fn start() -> CountingListener {
        Self::on([127, 0, 0, 1], 0).await.expect("bind 127.0.0.1")
    }

    /// On `ip` (a loopback address) and `port` (0: any); fails when the port is taken.
    pub async fn on(ip: [u8; 4], port: u16) -> std::io::Result<CountingListener> {
        assert_eq!(ip[0], 127, "test listeners stay on loopback");
        let l = tokio::net::TcpListener::bind((IpAddr::from(ip), port)).await?;
        let port = l.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Ok(CountingListener {
            port,
            accepted,
            task,
        })
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An attacker's DNS: each lookup takes the next answer of the script, the last one repeated.
pub struct ScriptedDns {
    answers: Vec<Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl ScriptedDns {
    pub fn new(answers: &[&[[u8; 4]]]) -> Arc<ScriptedDns> {
        assert!(!answers.is_empty());
        Arc::new(ScriptedDns {
            answers: answers
                .iter()
                .map(|a| {
                    a.iter()
                        .map(|ip| {
                            assert_eq!(ip[0], 127, "scripted answers stay on loopback");
                            IpAddr::from(*ip)
                        })
                        .collect()
                })
                .collect(),
            lookups: AtomicUsize::new(0),
        })
    }

    /// Lookups answered so far.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl meetbot_egress::Resolve for ScriptedDns {
    fn lookup(
        &self,
        _host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>> {
        let i = self.lookups.fetch_add(1, Ordering::SeqCst);
        let a = self.answers[i.min(self.answers.len() - 1)].clone();
        Box::pin(async move { Ok(a) })
    }
}

/// Serves `app` on `ip` (a loopback address such as 127.0.0.2, to be allow-listed alone) and
/// `port` (0: any); fails when the port is taken.
pub async fn serve_on(
    ip: [u8; 4],
    port: u16,
    app: axum::Router,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    assert_eq!(ip[0], 127, "test servers stay on loopback");
    let listener = tokio::net::TcpListener::bind((IpAddr::from(ip), port)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

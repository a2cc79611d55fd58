//! Server-side request forgery attempts against the egress client, each refused with no
//! connection made: a listener on 127.0.0.1 counts every connection it accepts and must count
//! 0. All traffic stays on 127.0.0.0/8; no test touches any other address.

use meetbot_egress::{AllowList, Egress, EgressError, HeaderMap, Limits, Resolve, UNAVAILABLE};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A listener that counts accepted connections (and answers each with a feed, so a
/// connection that should not have happened would also look like a success).
struct Counting {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Counting {
    async fn on(ip: [u8; 4], port: u16) -> std::io::Result<Counting> {
        let l = tokio::net::TcpListener::bind((IpAddr::from(ip), port)).await?;
        let port = l.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\nconnection: close\r\n\r\nBEGIN:VCALENDAR")
                    .await;
            }
        });
        Ok(Counting { port, accepted })
    }

    async fn start() -> Counting {
        Counting::on([127, 0, 0, 1], 0).await.unwrap()
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An HTTP server on `ip` (loopback) answering `/feed` and redirecting `/go` to `to`.
async fn server(ip: [u8; 4], to: String) -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind((IpAddr::from(ip), 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new()
        .route(
            "/go",
            axum::routing::get(move || async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, to)],
                )
            }),
        )
        .route(
            "/feed",
            axum::routing::get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                async { "the checked server" }
            }),
        );
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, hits)
}

/// An attacker's DNS: answers from a script, one entry per lookup, the last one repeated.
struct Scripted {
    answers: Vec<Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl Scripted {
    fn new(answers: &[&[[u8; 4]]]) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: answers
                .iter()
                .map(|a| a.iter().map(|ip| IpAddr::from(*ip)).collect())
                .collect(),
            lookups: AtomicUsize::new(0),
        })
    }
}

impl Resolve for Scripted {
    fn lookup(
        &self,
        _host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>> {
        let i = self.lookups.fetch_add(1, Ordering::SeqCst);
        let a = self.answers[i.min(self.answers.len() - 1)].clone();
        Box::pin(async move { Ok(a) })
    }
}

fn limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

fn closed() -> Egress {
    Egress::new(AllowList::none(), limits()).unwrap()
}

fn allow(ranges: &[&str]) -> AllowList {
    AllowList::parse(ranges).unwrap()
}

fn assert_generic(e: &EgressError) {
    assert_eq!(e.to_string(), UNAVAILABLE);
    assert!(!e.is_retryable(), "a refusal is not worth retrying");
}

#[tokio::test]
async fn a_loopback_literal_url_is_refused_without_connecting() {
    let l = Counting::start().await;
    let egress = closed();
    for url in [
        format!("http://127.0.0.1:{}/", l.port),
        format!("https://127.0.0.1:{}/", l.port),
        // The same address spelled as one number and in hex: the URL parser reads them as IPv4.
        format!("https://2130706433:{}/", l.port),
        format!("https://0x7f.1:{}/", l.port),
    ] {
        let e = egress.get(&url, HeaderMap::new()).await.unwrap_err();
        assert_generic(&e);
        let e = egress
            .post(&url, HeaderMap::new(), vec![])
            .await
            .unwrap_err();
        assert_generic(&e);
    }
    assert_eq!(l.count(), 0);
}

#[tokio::test]
async fn an_ipv4_mapped_ipv6_loopback_url_is_refused_without_connecting() {
    let l = Counting::start().await;
    let egress = closed();
    for url in [
        format!("https://[::ffff:127.0.0.1]:{}/", l.port),
        format!("http://[::ffff:7f00:1]:{}/", l.port),
        format!("https://[::1]:{}/", l.port),
    ] {
        let e = egress.get(&url, HeaderMap::new()).await.unwrap_err();
        assert_generic(&e);
    }
    // Even with 127.0.0.2 allowed, the mapped 127.0.0.1 is not.
    let e = Egress::new(allow(&["127.0.0.2/32"]), limits())
        .unwrap()
        .get(
            &format!("http://[::ffff:127.0.0.1]:{}/", l.port),
            HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert_generic(&e);
    assert_eq!(l.count(), 0);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_without_connecting() {
    let l = Counting::start().await;
    // The attacker's DNS answers 127.0.0.1 for their name.
    let dns = Scripted::new(&[&[[127, 0, 0, 1]]]);
    let egress = Egress::with_resolver(AllowList::none(), limits(), dns.clone()).unwrap();
    for url in [
        format!("https://feed.attacker.test:{}/cal.ics", l.port),
        format!("http://feed.attacker.test:{}/cal.ics", l.port),
    ] {
        let e = egress.get(&url, HeaderMap::new()).await.unwrap_err();
        assert_generic(&e);
    }
    assert!(
        dns.lookups.load(Ordering::SeqCst) >= 1,
        "the name was looked up here"
    );
    // A mix of an allowed and a refused answer is refused whole (reqwest might try either).
    let dns = Scripted::new(&[&[[127, 0, 0, 2], [127, 0, 0, 1]]]);
    let egress = Egress::with_resolver(allow(&["127.0.0.2/32"]), limits(), dns).unwrap();
    let e = egress
        .get(
            &format!("https://mixed.attacker.test:{}/", l.port),
            HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert_generic(&e);
    assert_eq!(l.count(), 0);
}

#[tokio::test]
async fn localhost_through_the_system_resolver_is_refused_without_connecting() {
    let l = Counting::start().await;
    let egress = closed();
    for url in [
        format!("https://localhost:{}/", l.port),
        format!("http://localhost:{}/", l.port),
    ] {
        let e = egress.get(&url, HeaderMap::new()).await.unwrap_err();
        assert_generic(&e);
    }
    assert_eq!(l.count(), 0);
}

#[tokio::test]
async fn a_redirect_to_loopback_is_refused_without_connecting() {
    let l = Counting::start().await;
    // The first hop is an allowed server (127.0.0.2, and only it, is in the allow-list); it
    // redirects to the counting listener on 127.0.0.1, by address and by name.
    let egress = Egress::new(allow(&["127.0.0.2/32"]), limits()).unwrap();
    for to in [
        format!("http://127.0.0.1:{}/", l.port),
        format!("https://127.0.0.1:{}/", l.port),
        format!("http://localhost:{}/", l.port),
        format!("https://[::ffff:127.0.0.1]:{}/", l.port),
    ] {
        let (port, _) = server([127, 0, 0, 2], to).await;
        let e = egress
            .get(&format!("http://127.0.0.2:{port}/go"), HeaderMap::new())
            .await
            .unwrap_err();
        assert_generic(&e);
    }
    assert_eq!(l.count(), 0);
    // A redirect to another allowed address is followed.
    let (feed_port, hits) = server([127, 0, 0, 2], String::new()).await;
    let (port, _) = server([127, 0, 0, 2], format!("http://127.0.0.2:{feed_port}/feed")).await;
    let r = egress
        .get(&format!("http://127.0.0.2:{port}/go"), HeaderMap::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rebinding_resolver_reaches_only_the_address_that_was_checked() {
    // The allowed server and the counting listener share a port on two loopback addresses, so
    // the only difference between them is the address a lookup gives.
    let (port, hits, l) = loop {
        let (port, hits) = server([127, 0, 0, 2], String::new()).await;
        if let Ok(l) = Counting::on([127, 0, 0, 1], port).await {
            break (port, hits, l);
        }
    };
    // First answer: the allowed 127.0.0.2. Every later answer: 127.0.0.1.
    let dns = Scripted::new(&[&[[127, 0, 0, 2]], &[[127, 0, 0, 1]]]);
    let egress = Egress::with_resolver(allow(&["127.0.0.2/32"]), limits(), dns.clone()).unwrap();
    let url = format!("http://feed.attacker.test:{port}/feed");
    let r = egress.get(&url, HeaderMap::new()).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "the checked server");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the request went to the checked address"
    );
    assert_eq!(
        dns.lookups.load(Ordering::SeqCst),
        1,
        "one lookup: no second resolution"
    );
    assert_eq!(l.count(), 0);
    // A new connection (the pooled one is gone) looks the name up again: now 127.0.0.1, refused.
    let fresh = Egress::with_resolver(allow(&["127.0.0.2/32"]), limits(), dns.clone()).unwrap();
    let e = fresh.get(&url, HeaderMap::new()).await.unwrap_err();
    assert_generic(&e);
    assert_eq!(l.count(), 0);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn plain_http_is_refused_outside_the_allow_list_and_allowed_inside_it() {
    let (port, hits) = server([127, 0, 0, 2], String::new()).await;
    let url = format!("http://127.0.0.2:{port}/feed");
    let e = closed().get(&url, HeaderMap::new()).await.unwrap_err();
    assert_generic(&e);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let ok = Egress::new(allow(&["127.0.0.0/30"]), limits()).unwrap();
    assert_eq!(ok.get(&url, HeaderMap::new()).await.unwrap().status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_long_answer_is_cut_at_the_limit() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/big",
        axum::routing::get(|| async { "x".repeat(64 * 1024) }),
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    let egress = Egress::new(allow(&["127.0.0.1/32"]), limits()).unwrap();
    let r = egress
        .get(&format!("http://127.0.0.1:{port}/big"), HeaderMap::new())
        .await
        .unwrap();
    let e = Egress::read_body(r, 1024).await.unwrap_err();
    assert!(matches!(e, EgressError::TooLarge(1024)), "{e}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_gives_the_same_words_as_a_refusal() {
    // Accepts and never answers: the total timeout ends it.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let egress = Egress::new(
        allow(&["127.0.0.1/32"]),
        Limits {
            timeout: Duration::from_millis(500),
            ..limits()
        },
    )
    .unwrap();
    let e = egress
        .get(&format!("http://127.0.0.1:{port}/"), HeaderMap::new())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), UNAVAILABLE);
    assert!(e.is_retryable());
    // A closed port: the same words again.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = egress
        .get(
            &format!("http://127.0.0.1:{closed_port}/"),
            HeaderMap::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), UNAVAILABLE);
}

#[tokio::test]
async fn a_server_answering_slowly_at_every_redirect_is_cut_at_one_overall_deadline() {
    // Each of 5 redirects and the final answer comes 400 ms late: every hop is well within
    // the 1 s timeout, the chain as a whole is not. One deadline covers all of it.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let app = axum::Router::new().route(
        "/hop/{n}",
        axum::routing::get(move |axum::extract::Path(n): axum::extract::Path<u8>| {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                s.fetch_add(1, Ordering::SeqCst);
                if n < 5 {
                    axum::response::Response::builder()
                        .status(302)
                        .header("location", format!("/hop/{}", n + 1))
                        .body(axum::body::Body::empty())
                        .unwrap()
                } else {
                    axum::response::Response::new(axum::body::Body::from("BEGIN:VCALENDAR"))
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    let egress = Egress::new(
        allow(&["127.0.0.1/32"]),
        Limits {
            timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/hop/0");
    let e = egress
        .get_body(&url, HeaderMap::new(), 1024)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), UNAVAILABLE);
    assert!(e.is_retryable(), "a timeout may pass");
    let e = egress.get(&url, HeaderMap::new()).await.unwrap_err();
    assert_eq!(e.to_string(), UNAVAILABLE);
    // Neither fetch reached the final answer (hop 5 would be the 6th request of a chain).
    assert!(
        served.load(Ordering::SeqCst) < 12,
        "the chain was followed to its end"
    );
}

#[test]
fn the_allow_list_refuses_everything_ranges_and_the_metadata_address() {
    let e =
        AllowList::parse(&["0.0.0.0/0", "169.254.0.0/16", "not a range", "127.0.0.1"]).unwrap_err();
    let entries: Vec<&str> = e.iter().map(|x| x.entry.as_str()).collect();
    assert_eq!(entries, ["0.0.0.0/0", "169.254.0.0/16", "not a range"]);
    let a = allow(&["127.0.0.1", "10.20.0.0/16", "fd00:1::/64"]);
    assert!(a.contains("127.0.0.1".parse().unwrap()));
    assert!(a.contains("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!a.contains("127.0.0.2".parse().unwrap()));
    assert!(a.contains("10.20.3.4".parse().unwrap()));
    assert!(a.contains("fd00:1::5".parse().unwrap()));
}

#[test]
fn the_rules_as_a_table_without_any_request() {
    use meetbot_egress::{Scheme, permits};
    let none = AllowList::none();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Pure checks: no request is made to any of these.
    for a in [
        "10.0.0.5",
        "169.254.169.254",
        "192.168.0.1",
        "100.64.0.1",
        "fd00::1",
        "fe80::1",
    ] {
        assert!(permits(&none, Scheme::Https, ip(a)).is_err(), "{a}");
    }
    assert!(permits(&none, Scheme::Https, ip("93.184.216.34")).is_ok());
    assert!(
        permits(&none, Scheme::Http, ip("93.184.216.34")).is_err(),
        "https only"
    );
    let onprem = allow(&["10.0.0.0/8"]);
    assert!(permits(&onprem, Scheme::Http, ip("10.0.0.5")).is_ok());
    assert!(permits(&onprem, Scheme::Https, ip("10.0.0.5")).is_ok());
    assert!(permits(&onprem, Scheme::Https, ip("192.168.0.1")).is_err());
    // Never, whatever the list says.
    let wide = allow(&["224.0.0.0/4", "0.0.0.0/8"]);
    assert!(permits(&wide, Scheme::Https, ip("224.0.0.1")).is_err());
    assert!(permits(&wide, Scheme::Https, ip("0.0.0.0")).is_err());
}

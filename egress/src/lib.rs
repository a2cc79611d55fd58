//! The one outbound HTTP client for every URL a tenant supplies (ICS feeds, webhook URLs).
//!
//! * Names are resolved here, through the [`Resolve`] seam ([`SystemResolver`] in production),
//!   inside reqwest's own connector (`ClientBuilder::dns_resolver`): every address a name
//!   gives is checked, and reqwest connects to exactly those addresses. There is no second
//!   lookup for an attacker's DNS to answer differently (rebinding).
//! * Address literals in a URL (which reqwest connects to without any lookup) are checked
//!   before the request is made.
//! * Refused: every address that is not public ([`addr::classify`]: loopback, private, shared
//!   NAT, link-local, unique-local, multicast, unspecified, broadcast, documentation,
//!   benchmarking, reserved, and the IPv6 forms that carry one of those as IPv4), except
//!   addresses inside the deployment's allow-list ([`AllowList`], `egress.allow_private`).
//!   The cloud metadata address, multicast, broadcast and unspecified are refused even there.
//! * https only; plain http only to allow-listed addresses.
//! * Redirects of a GET are followed by this client, at most [`Limits::max_redirects`], each
//!   hop checked exactly like the first (reqwest itself follows none); a POST follows none.
//! * No proxy from the environment (it would connect on our behalf, unchecked), connect and
//!   total timeouts, bodies read up to a limit ([`Egress::read_body`]).
//! * One error for every refusal and every transport failure ([`EgressError::Unavailable`]):
//!   a caller learns nothing about ports or hosts it may not reach. The precise reason is
//!   logged at debug level, without the URL.

pub mod addr;

use addr::{Class, Kind};
use ipnet::IpNet;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use reqwest::header::HeaderMap;
pub use reqwest::{Response, StatusCode};

/// What every refused or failed fetch says.
pub const UNAVAILABLE: &str =
    "the address could not be fetched: it is not a public https address, or it did not answer";

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// Not an absolute http(s) URL with a host.
    #[error("the address is not an http(s) URL")]
    NotAUrl,
    /// Refused by policy, or the server could not be reached or did not answer in time. The
    /// same words for both; `retry` tells the caller (not the user) whether trying again may
    /// help.
    #[error(
        "the address could not be fetched: it is not a public https address, or it did not answer"
    )]
    Unavailable { retry: bool },
    /// The answer is longer than the limit.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The HTTP client could not be built.
    #[error("the outbound HTTP client cannot be built: {0}")]
    Setup(String),
}

impl EgressError {
    /// Whether trying again later may help (a timeout, a connection refused by a permitted
    /// server); a refusal by policy will not change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EgressError::Unavailable { retry: true })
    }
}

/// Why a destination was refused (for the debug log only; callers see [`EgressError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not public and not in the allow-list.
    Internal(Kind),
    /// Never a destination.
    Never(Kind),
    /// Plain http to an address outside the allow-list.
    PlainHttp,
    /// The name has no address, or could not be looked up.
    NoAddress,
    /// The URL is not one this client fetches (scheme, no host).
    Scheme,
    /// More redirects than allowed.
    TooManyRedirects,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Internal(k) => write!(f, "{k} address outside egress.allow_private"),
            Refusal::Never(k) => write!(f, "{k} address (never allowed)"),
            Refusal::PlainHttp => {
                f.write_str("plain http to an address outside egress.allow_private")
            }
            Refusal::NoAddress => f.write_str("the name has no address"),
            Refusal::Scheme => f.write_str("not an http(s) URL with a host"),
            Refusal::TooManyRedirects => f.write_str("too many redirects"),
        }
    }
}

impl std::error::Error for Refusal {}

/// A bad allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?}: {problem}")]
pub struct AllowListError {
    pub entry: String,
    pub problem: String,
}

/// The ranges (CIDR) where internal addresses may be reached: on-premises services, the
/// `meetbot dev` demo's loopback feed. Empty by default: nothing internal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// Nothing internal is allowed.
    pub fn none() -> AllowList {
        AllowList(Vec::new())
    }

    /// [`AllowList::parse`] with every bad entry in one message (`egress.allow_private: ...`),
    /// for clients built from a configuration that was already validated at start.
    pub fn from_config<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        AllowList::parse(entries).map_err(|errs| {
            let each: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            format!("egress.allow_private: {}", each.join("; "))
        })
    }

    /// Parses CIDR ranges (`127.0.0.1/32`, `10.20.0.0/16`, `fd00:1::/64`); a bare address
    /// means that address alone. Refused: a range of everything (`/0`) and a range holding the
    /// cloud metadata address. Every bad entry is reported.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, Vec<AllowListError>> {
        let mut nets = Vec::new();
        let mut errs = Vec::new();
        for e in entries {
            let e = e.as_ref().trim();
            let bad = |problem: &str| AllowListError {
                entry: e.to_string(),
                problem: problem.to_string(),
            };
            let net = match e.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match e.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => {
                        errs.push(bad(
                            "not a CIDR range (give e.g. \"127.0.0.1/32\" or \"10.20.0.0/16\")",
                        ));
                        continue;
                    }
                },
            };
            if net.prefix_len() == 0 {
                errs.push(bad(
                    "allows every address; list only the ranges the service must reach",
                ));
            } else if [
                IpAddr::from([169, 254, 169, 254]),
                IpAddr::from([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]),
            ]
            .iter()
            .any(|m| net.contains(m))
            {
                errs.push(bad(
                    "holds the cloud metadata address, which is never reachable",
                ));
            } else {
                nets.push(net.trunc());
            }
        }
        if errs.is_empty() {
            Ok(AllowList(nets))
        } else {
            Err(errs)
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Plain http or https.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Whether `ip` may be reached over `scheme` under `allow`: public addresses over https, any
/// allow-listed address (http or https); never the metadata address, multicast, broadcast or
/// unspecified. IPv4-mapped IPv6 addresses are judged as the IPv4 address they are.
pub fn permits(allow: &AllowList, scheme: Scheme, ip: IpAddr) -> Result<(), Refusal> {
    let ip = ip.to_canonical();
    match addr::classify(ip) {
        Class::Never(k) => Err(Refusal::Never(k)),
        Class::Public if scheme == Scheme::Https || allow.contains(ip) => Ok(()),
        Class::Public => Err(Refusal::PlainHttp),
        Class::Internal(_) if allow.contains(ip) => Ok(()),
        Class::Internal(k) => Err(Refusal::Internal(k)),
    }
}

/// Looks names up. [`SystemResolver`] in production; tests script their own to play an
/// attacker's DNS.
pub trait Resolve: Send + Sync + 'static {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>>;
}

/// The system's resolver (getaddrinfo, through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(
        &self,
        host: &str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>> {
        let host = host.to_string();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// reqwest's resolver: looks the name up and hands reqwest only addresses that pass
/// [`permits`], or an error (then nothing is connected).
struct Guard {
    resolver: Arc<dyn Resolve>,
    allow: Arc<AllowList>,
    scheme: Scheme,
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (resolver, allow, scheme) = (self.resolver.clone(), self.allow.clone(), self.scheme);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = resolver.lookup(&host).await.unwrap_or_default();
            if ips.is_empty() {
                return Err(refused(Refusal::NoAddress));
            }
            // Every address must pass: reqwest may try any of them.
            for ip in &ips {
                permits(&allow, scheme, *ip).map_err(refused)?;
            }
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn refused(r: Refusal) -> Box<dyn std::error::Error + Send + Sync> {
    tracing::debug!(reason = %r, "egress refused a destination");
    Box::new(r)
}

/// Time bounds of one fetch, and how many redirects a GET follows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// The whole exchange, body included.
    pub timeout: Duration,
    /// Redirects a GET follows (each checked like the first request); 0: none.
    pub max_redirects: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_redirects: 5,
        }
    }
}

/// The outbound client. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    https: reqwest::Client,
    http: reqwest::Client,
    allow: Arc<AllowList>,
    limits: Limits,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("allow", &self.allow)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// A client over the system resolver.
    pub fn new(allow: AllowList, limits: Limits) -> Result<Egress, EgressError> {
        Self::with_resolver(allow, limits, Arc::new(SystemResolver))
    }

    /// A client looking names up with `resolver`.
    pub fn with_resolver(
        allow: AllowList,
        limits: Limits,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Egress, EgressError> {
        let allow = Arc::new(allow);
        let build = |scheme: Scheme| {
            reqwest::Client::builder()
                .no_proxy()
                // No idle connections kept: every request looks its name up and checks it.
                .pool_max_idle_per_host(0)
                .redirect(reqwest::redirect::Policy::none())
                .https_only(scheme == Scheme::Https)
                .connect_timeout(limits.connect_timeout)
                .timeout(limits.timeout)
                .dns_resolver(Arc::new(Guard {
                    resolver: resolver.clone(),
                    allow: allow.clone(),
                    scheme,
                }))
                .build()
                .map_err(|e| EgressError::Setup(e.to_string()))
        };
        Ok(Egress {
            https: build(Scheme::Https)?,
            http: build(Scheme::Http)?,
            allow,
            limits,
        })
    }

    /// This client's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses `url` and checks what can be checked without a lookup: an http(s) URL with a
    /// host; an address literal must pass [`permits`]. Names are checked when they are looked
    /// up, at connect time.
    pub fn check(&self, url: &str) -> Result<url::Url, EgressError> {
        let u = url::Url::parse(url).map_err(|_| EgressError::NotAUrl)?;
        self.check_parsed(&u)?;
        Ok(u)
    }

    fn check_parsed(&self, u: &url::Url) -> Result<Scheme, EgressError> {
        let scheme = match u.scheme() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            _ => return Err(EgressError::NotAUrl),
        };
        let ip = match u.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(url::Host::Domain(d)) if !d.is_empty() => d
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok(),
            _ => return Err(EgressError::NotAUrl),
        };
        if let Some(ip) = ip {
            permits(&self.allow, scheme, ip).map_err(|r| {
                tracing::debug!(reason = %r, "egress refused a destination");
                EgressError::Unavailable { retry: false }
            })?;
        }
        Ok(scheme)
    }

    fn client(&self, s: Scheme) -> &reqwest::Client {
        match s {
            Scheme::Https => &self.https,
            Scheme::Http => &self.http,
        }
    }

    /// GETs `url` with `headers`, following redirects (each hop checked like the first, at
    /// most [`Limits::max_redirects`]). Returns the first answer that is not a redirect.
    /// `headers` go to every hop: give no credentials here. All hops together get one
    /// [`Limits::timeout`]; [`Self::get_body`] also counts the body in it.
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<Response, EgressError> {
        within(self.limits.timeout, self.follow(url, headers)).await
    }

    /// [`Self::get`], and the body of a 2xx answer read up to `max` bytes (else
    /// [`EgressError::TooLarge`]), all within one [`Limits::timeout`]: a server that drips
    /// bytes across every redirect it may send still costs one timeout, not one per hop.
    /// Other answers come with an empty body.
    pub async fn get_body(
        &self,
        url: &str,
        headers: HeaderMap,
        max: usize,
    ) -> Result<Answer, EgressError> {
        within(self.limits.timeout, async {
            let resp = self.follow(url, headers).await?;
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = if status.is_success() {
                Self::read_body(resp, max).await?
            } else {
                Vec::new()
            };
            Ok(Answer {
                status,
                headers,
                body,
            })
        })
        .await
    }

    async fn follow(&self, url: &str, headers: HeaderMap) -> Result<Response, EgressError> {
        let mut u = self.check(url)?;
        let mut hops = 0u8;
        loop {
            let scheme = self.check_parsed(&u)?;
            let resp = self
                .client(scheme)
                .get(u.clone())
                .headers(headers.clone())
                .send()
                .await
                .map_err(transport)?;
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            match (resp.status().as_u16(), location) {
                (301 | 302 | 303 | 307 | 308, Some(loc)) => {
                    if hops >= self.limits.max_redirects {
                        tracing::debug!(reason = %Refusal::TooManyRedirects, "egress refused a destination");
                        return Err(EgressError::Unavailable { retry: false });
                    }
                    hops += 1;
                    u = u.join(loc).map_err(|_| {
                        tracing::debug!(reason = %Refusal::Scheme, "egress refused a redirect");
                        EgressError::Unavailable { retry: false }
                    })?;
                }
                _ => return Ok(resp),
            }
        }
    }

    /// POSTs `body` to `url` with `headers`; redirects are not followed (a 3xx is returned).
    pub async fn post(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<Response, EgressError> {
        let u = self.check(url)?;
        let scheme = self.check_parsed(&u)?;
        self.client(scheme)
            .post(u)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(transport)
    }

    /// Reads `resp`'s body, at most `max` bytes (else [`EgressError::TooLarge`]).
    pub async fn read_body(mut resp: Response, max: usize) -> Result<Vec<u8>, EgressError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > max {
                return Err(EgressError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An answer read whole by [`Egress::get_body`].
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// `fut` within one overall deadline; past it, the generic (retryable) error.
async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, EgressError>>,
) -> Result<T, EgressError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        tracing::debug!(kind = "timed out", "egress fetch failed: overall deadline");
        Err(EgressError::Unavailable { retry: true })
    })
}

/// A reqwest error as the one generic error: a refusal by the guard is not retryable, a
/// transport failure is. Logged at debug level without the URL.
fn transport(e: reqwest::Error) -> EgressError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = src {
        if s.downcast_ref::<Refusal>().is_some() {
            return EgressError::Unavailable { retry: false };
        }
        src = s.source();
    }
    let e = e.without_url();
    tracing::debug!(kind = failure_kind(&e), error = %e, "egress fetch failed");
    EgressError::Unavailable { retry: true }
}

/// What kind of transport failure `e` is, in words that hold no address: "timed out",
/// "cannot connect" or "request failed".
pub fn failure_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    }
}

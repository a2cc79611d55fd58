//! Rate limits per client address and per tenant (GCRA, the governor crate), answered with 429
//! and `Retry-After`.
//!
//! * The client address is the TCP peer, unless the peer is a configured trusted proxy
//!   (`api.trusted_proxies`): then it is the right-most `X-Forwarded-For` address that is not
//!   itself a trusted proxy ([`Limits::client_ip`]). A header from anyone else is ignored.
//! * Every request is charged to its address; the tenant's bucket only once the caller has
//!   authenticated (so made-up tokens naming a tenant cannot lock its people out), and a failed
//!   authentication is charged to the address once more (`crate::auth`).

use crate::error::{ApiError, ApiResult};
use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use meetbot_core::TenantId;
use meetbot_core::config::Cidr;
use std::net::IpAddr;
use std::num::NonZeroU32;

pub struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_tenant: DefaultKeyedRateLimiter<TenantId>,
    clock: DefaultClock,
    trusted_proxies: Vec<Cidr>,
}

/// The client address the limits charged for this request (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

fn quota(per_minute: u32) -> Quota {
    let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(n)
}

impl Limits {
    pub fn new(per_ip_per_minute: u32, per_tenant_per_minute: u32) -> Self {
        Limits {
            per_ip: RateLimiter::keyed(quota(per_ip_per_minute)),
            per_tenant: RateLimiter::keyed(quota(per_tenant_per_minute)),
            clock: DefaultClock::default(),
            trusted_proxies: Vec::new(),
        }
    }

    /// Believes `X-Forwarded-For` from these peers (`api.trusted_proxies`).
    pub fn trusting(mut self, proxies: Vec<Cidr>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }

    /// Who the client is: `peer`, or, when `peer` is a trusted proxy, the right-most
    /// `X-Forwarded-For` address that is not a trusted proxy (all of them trusted: the left-most;
    /// an entry that is not an address ends the walk at the hop that added it).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop_address(hop) else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusted(client) {
                break;
            }
        }
        client
    }

    fn answer<P: governor::clock::Reference>(
        &self,
        r: Result<(), governor::NotUntil<P>>,
    ) -> ApiResult<()>
    where
        DefaultClock: Clock<Instant = P>,
    {
        r.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited(wait.as_secs().max(1))
        })
    }

    /// Charges the address's bucket; IPv6 clients share one bucket per /64 (one subscriber's
    /// usual allocation, so rotating through it gives no fresh buckets).
    pub fn ip(&self, ip: IpAddr) -> ApiResult<()> {
        self.answer(self.per_ip.check_key(&bucket_key(ip)))
    }

    pub fn tenant(&self, t: &TenantId) -> ApiResult<()> {
        self.answer(self.per_tenant.check_key(t))
    }

    /// Forgets keys whose buckets are full again (bounded memory under many addresses).
    pub fn sweep(&self) {
        self.per_ip.retain_recent();
        self.per_tenant.retain_recent();
    }
}

/// The address in one `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443` (proxies differ in how they write it).
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        return if port_ok {
            inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        };
    }
    let (addr, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The bucket an address is charged to: itself (IPv4, canonical), or its /64 (IPv6).
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_hops_with_a_port_or_brackets_do_not_collapse_clients_into_the_proxys_bucket() {
        let l = Limits::new(1000, 1000).trusting(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy: IpAddr = "10.1.0.1".parse().unwrap();
        for (hop, want) in [
            ("198.51.100.7:5678", "198.51.100.7"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::2", "2001:db8::2"),
        ] {
            assert_eq!(
                l.client_ip(proxy, &xff(&format!("6.6.6.6, {hop}, 10.2.0.3:80"))),
                want.parse::<IpAddr>().unwrap(),
                "{hop}"
            );
        }
        // Still not an address: the walk ends at the last trusted hop.
        for junk in [
            "[2001:db8::1",
            "[2001:db8::1]:x",
            "198.51.100.7:99999",
            "[1.2.3.4]",
        ] {
            assert_eq!(
                l.client_ip(proxy, &xff(&format!("{junk}, 10.2.0.3"))),
                "10.2.0.3".parse::<IpAddr>().unwrap(),
                "{junk}"
            );
        }
    }

    #[test]
    fn rotating_ipv6_addresses_within_one_64_gives_no_fresh_bucket() {
        let l = Limits::new(3, 1000);
        for i in 1..=3u16 {
            l.ip(format!("2001:db8:1:2::{i:x}").parse().unwrap())
                .unwrap();
        }
        assert!(matches!(
            l.ip("2001:db8:1:2:ffff::9".parse().unwrap()),
            Err(ApiError::RateLimited(_))
        ));
        // Another /64 has its own bucket, and IPv4 addresses are still one bucket each.
        l.ip("2001:db8:1:3::1".parse().unwrap()).unwrap();
        l.ip("192.0.2.1".parse().unwrap()).unwrap();
        l.ip("192.0.2.2".parse().unwrap()).unwrap();
    }

    #[test]
    fn the_burst_passes_then_the_next_request_is_told_when_to_retry() {
        let l = Limits::new(5, 1000);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..5 {
            l.ip(ip).unwrap();
        }
        match l.ip(ip) {
            Err(ApiError::RateLimited(s)) => assert!((1..=12).contains(&s), "{s}"),
            other => panic!("{other:?}"),
        }
        // Another address has its own bucket.
        l.ip("127.0.0.10".parse().unwrap()).unwrap();
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
        let l = Limits::new(1000, 1000).trusting(vec!["10.0.0.0/8".parse().unwrap()]);
        let peer: IpAddr = "127.0.0.5".parse().unwrap();
        assert_eq!(l.client_ip(peer, &xff("203.0.113.9")), peer);
        // Without any trusted proxy configured, the header is never believed.
        let plain = Limits::new(1000, 1000);
        assert_eq!(plain.client_ip(peer, &xff("203.0.113.9")), peer);
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_right_most_untrusted_hop() {
        let l = Limits::new(1000, 1000).trusting(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy: IpAddr = "10.1.0.1".parse().unwrap();
        // What the client wrote itself (left) is not believed; what the proxies appended is.
        assert_eq!(
            l.client_ip(proxy, &xff("6.6.6.6, 198.51.100.7, 10.2.0.3")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Two headers count as one list, in order.
        let mut h = xff("6.6.6.6");
        h.append("x-forwarded-for", "198.51.100.8".parse().unwrap());
        assert_eq!(
            l.client_ip(proxy, &h),
            "198.51.100.8".parse::<IpAddr>().unwrap()
        );
        // Garbage appended by nobody trusted ends the walk at the last trusted hop.
        assert_eq!(
            l.client_ip(proxy, &xff("198.51.100.7, junk, 10.2.0.3")),
            "10.2.0.3".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(l.client_ip(proxy, &HeaderMap::new()), proxy);
        // The mapped form of a trusted peer is trusted too.
        assert_eq!(
            l.client_ip("::ffff:10.1.0.1".parse().unwrap(), &xff("198.51.100.9")),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn tenants_have_separate_buckets() {
        let l = Limits::new(1000, 2);
        let a: TenantId = "tenanta1".parse().unwrap();
        let b: TenantId = "tenantb1".parse().unwrap();
        l.tenant(&a).unwrap();
        l.tenant(&a).unwrap();
        assert!(matches!(l.tenant(&a), Err(ApiError::RateLimited(_))));
        l.tenant(&b).unwrap();
    }
}

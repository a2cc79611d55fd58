//! Rate limits per client address and per tenant (GCRA, the governor crate), answered with 429
//! and `Retry-After`.

use crate::error::{ApiError, ApiResult};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use meetbot_core::TenantId;
use std::net::IpAddr;
use std::num::NonZeroU32;

pub struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_tenant: DefaultKeyedRateLimiter<TenantId>,
    clock: DefaultClock,
}

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
        }
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

    pub fn ip(&self, ip: IpAddr) -> ApiResult<()> {
        self.answer(self.per_ip.check_key(&ip))
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

#[cfg(test)]
mod tests {
    use super::*;

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

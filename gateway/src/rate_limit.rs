//! Rate limits, with the old deployment's defaults: anonymous writes per
//! IP, requests per user, bookings per user, sensor messages per facility;
//! and failed authentications per client address ([`AuthFailures`]).
//! Each limit is a keyed GCRA limiter (`governor`); 0 disables a limit.
//!
//! With Redis configured the hourly limits are shared between nodes (see
//! `crate::redis`); without it they are per process. Failed
//! authentications are counted per node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::redis::{Redis, Shared};

const HOUR: Duration = Duration::from_secs(3600);

/// Which limit a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    AnonymousIp(IpAddr),
    User(String),
    UserBookings(String),
    Facility(String),
}

impl LimitKey {
    /// The key's name in the shared (Redis) store.
    fn shared_name(&self) -> String {
        match self {
            LimitKey::AnonymousIp(ip) => format!("anon:{ip}"),
            LimitKey::User(user) => format!("user:{user}"),
            LimitKey::UserBookings(user) => format!("bookings:{user}"),
            LimitKey::Facility(facility) => format!("sensor:{facility}"),
        }
    }
}

#[derive(Debug)]
struct Limiter {
    inner: DefaultKeyedRateLimiter<LimitKey>,
    per_hour: u32,
}

/// All limits of a node.
#[derive(Debug, Clone)]
pub struct RateLimits {
    anonymous: Option<Arc<Limiter>>,
    user: Option<Arc<Limiter>>,
    bookings: Option<Arc<Limiter>>,
    sensor: Option<Arc<Limiter>>,
    redis: Option<Arc<Redis>>,
}

fn per_hour(n: u32) -> Option<Arc<Limiter>> {
    let n = NonZeroU32::new(n)?;
    let quota = Quota::with_period(Duration::from_secs(3600) / n.get())?.allow_burst(n);
    Some(Arc::new(Limiter {
        inner: RateLimiter::keyed(quota),
        per_hour: n.get(),
    }))
}

fn per_second(n: u32) -> Option<Arc<Limiter>> {
    let n = NonZeroU32::new(n)?;
    Some(Arc::new(Limiter {
        inner: RateLimiter::keyed(Quota::per_second(n)),
        per_hour: 0,
    }))
}

impl RateLimits {
    pub fn new(
        anon_per_hour: u32,
        user_per_hour: u32,
        bookings_per_hour: u32,
        sensor_per_sec: u32,
    ) -> Self {
        Self {
            anonymous: per_hour(anon_per_hour),
            user: per_hour(user_per_hour),
            bookings: per_hour(bookings_per_hour),
            sensor: per_second(sensor_per_sec),
            redis: None,
        }
    }

    /// Shares the hourly limits between nodes through Redis.
    #[must_use]
    pub fn shared_through(mut self, redis: Option<Arc<Redis>>) -> Self {
        self.redis = redis;
        self
    }

    /// Like [`RateLimits::check`], but hourly limits are counted in Redis
    /// when it is configured (falling back to this node's limiter when
    /// Redis does not answer).
    pub async fn check_shared(&self, key: LimitKey) -> Result<(), u64> {
        let hourly = match &key {
            LimitKey::AnonymousIp(_) => &self.anonymous,
            LimitKey::User(_) => &self.user,
            LimitKey::UserBookings(_) => &self.bookings,
            LimitKey::Facility(_) => &None,
        };
        if let (Some(redis), Some(limiter)) = (&self.redis, hourly) {
            match redis
                .count(&key.shared_name(), 1, limiter.per_hour, HOUR)
                .await
            {
                Shared::Allowed => return Ok(()),
                Shared::Limited(wait) => return Err(wait),
                Shared::Unknown => {}
            }
        }
        self.check(key)
    }

    /// `Ok` if allowed; `Err(seconds to wait)` if limited.
    pub fn check(&self, key: LimitKey) -> Result<(), u64> {
        self.check_n(key, 1)
    }

    /// Counts `n` units at once (a batch of sensor messages).
    pub fn check_n(&self, key: LimitKey, n: u32) -> Result<(), u64> {
        let limiter = match &key {
            LimitKey::AnonymousIp(_) => &self.anonymous,
            LimitKey::User(_) => &self.user,
            LimitKey::UserBookings(_) => &self.bookings,
            LimitKey::Facility(_) => &self.sensor,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match limiter.inner.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(wait.as_secs().max(1))
            }
            // More than the burst at once: never allowed.
            Err(_) => Err(1),
        }
    }

    /// Drops state of keys that are back to full capacity.
    pub fn shrink(&self) {
        for limiter in [&self.anonymous, &self.user, &self.bookings, &self.sensor]
            .into_iter()
            .flatten()
        {
            limiter.inner.retain_recent();
            limiter.inner.shrink_to_fit();
        }
    }
}

/// Failed authentications per client address. Once an address has spent
/// its budget, every request from it that carries credentials is refused
/// (429) until the budget refills, whether they are right or wrong: a
/// guesser learns nothing from a refusal, and gets one guess per refill.
#[derive(Debug)]
pub struct AuthFailures {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses that spent their budget, and until when.
    blocked: RwLock<HashMap<IpAddr, Instant>>,
}

impl AuthFailures {
    pub fn new(per_hour: u32) -> Self {
        let limiter = NonZeroU32::new(per_hour).and_then(|n| {
            let quota = Quota::with_period(HOUR / n.get())?.allow_burst(n);
            Some(RateLimiter::keyed(quota))
        });
        Self {
            limiter,
            blocked: RwLock::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` while `ip` may not present credentials.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let blocked = self.blocked.read().unwrap_or_else(|e| e.into_inner());
        if blocked.is_empty() {
            return Ok(());
        }
        match blocked.get(&ip) {
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left.as_secs_f64().ceil().max(1.0) as u64)
                }
            }
            None => Ok(()),
        }
    }

    /// Counts one failure of `ip`; `Err(seconds to wait)` once its budget
    /// is spent.
    pub fn failed(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        crate::metrics::auth_failed();
        let Err(not_until) = limiter.check_key(&ip) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        self.blocked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip, Instant::now() + wait);
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Forgets addresses whose wait is over and budgets that refilled.
    pub fn shrink(&self) {
        let now = Instant::now();
        self.blocked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, until| *until > now);
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_its_failure_budget_is_blocked_and_others_are_not() {
        let failures = AuthFailures::new(3);
        let guesser: IpAddr = "203.0.113.9".parse().expect("ip");
        let other: IpAddr = "203.0.113.10".parse().expect("ip");
        for _ in 0..3 {
            assert!(failures.failed(guesser).is_ok());
            assert!(failures.check(guesser).is_ok());
        }
        let wait = failures
            .failed(guesser)
            .expect_err("fourth failure spends the budget");
        assert!(wait >= 1);
        assert!(failures.check(guesser).is_err());
        assert!(failures.check(other).is_ok());
        failures.shrink();
        assert!(
            failures.check(guesser).is_err(),
            "still blocked after upkeep"
        );
        let off = AuthFailures::new(0);
        for _ in 0..100 {
            assert!(off.failed(guesser).is_ok());
        }
    }

    #[test]
    fn a_user_gets_exactly_the_hourly_quota_then_is_limited() {
        let limits = RateLimits::new(100, 3, 100, 0);
        let key = || LimitKey::User("alice".into());
        assert!(limits.check(key()).is_ok());
        assert!(limits.check(key()).is_ok());
        assert!(limits.check(key()).is_ok());
        let wait = limits.check(key()).expect_err("fourth request is limited");
        assert!(wait >= 1);
        assert!(limits.check(LimitKey::User("bob".into())).is_ok());
    }

    #[test]
    fn zero_disables_a_limit() {
        let limits = RateLimits::new(0, 0, 0, 0);
        for _ in 0..10_000 {
            assert!(limits.check(LimitKey::User("alice".into())).is_ok());
        }
    }
}

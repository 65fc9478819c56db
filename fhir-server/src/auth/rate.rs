//! Rate limits (`--rate-limit`, `--auth-rate-limit`): token buckets per source address and
//! per client, so that one caller
//! cannot take the server from the others. A bucket holds up to a period's worth of
//! requests and refills at the configured rate; an empty bucket answers 429 with
//! `Retry-After` (the seconds until it holds one again). The authorization server's
//! endpoints (sign-in, token, introspection, revocation) have their own, stricter,
//! limit per address (`--auth-rate-limit`), beside the lockout of an account after five
//! failed sign-ins.
//!
//! Buckets are kept in memory, per process; an idle bucket is full again, so the map only
//! keeps buckets that are not full, and is swept when it grows. The HTTP layer applies
//! them (`http::rate`). Time is the server's clock (`clock`), so that a test refills a
//! bucket by moving the clock, not by sleeping, and a slow machine cannot refill one
//! mid-test.

use std::collections::HashMap;
use std::sync::Mutex;

/// Buckets kept before the full ones are swept out.
const SWEEP_AT: usize = 100_000;

/// A rate: `count` requests per `seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: f64,
    pub seconds: f64,
}

impl Rate {
    /// `100/s`, `600/min`, `5000/h`; `0` or `off` for none.
    pub fn parse(text: &str) -> Result<Option<Rate>, String> {
        let text = text.trim();
        if text == "0" || text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not a rate like 100/s, 600/min or 5000/h"))?;
        let count: f64 = count
            .trim()
            .parse()
            .ok()
            .filter(|c: &f64| c.is_finite() && *c >= 1.0)
            .ok_or_else(|| format!("'{text}': the count must be a number of at least 1"))?;
        let seconds = match per.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            other => return Err(format!("'{text}': '{other}' is not s, min or h")),
        };
        Ok(Some(Rate { count, seconds }))
    }
}

struct Bucket {
    tokens: f64,
    /// When the bucket was last counted, in microseconds on the server's clock.
    at: i64,
}

/// Seconds from `then` to `now` (microseconds); never negative, should the system clock
/// step back.
fn seconds_between(then: i64, now: i64) -> f64 {
    now.saturating_sub(then).max(0) as f64 / 1_000_000.0
}

/// Buckets of one rate, by key (`a:198.51.100.7`, `c:my-app`).
pub struct Limiter {
    rate: Option<Rate>,
    buckets: Mutex<HashMap<String, Bucket, foldhash::fast::RandomState>>,
}

impl Limiter {
    pub fn new(rate: Option<Rate>) -> Limiter {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::default()),
        }
    }

    /// Whether the limiter limits anything (a rate is set).
    pub fn is_on(&self) -> bool {
        self.rate.is_some()
    }

    /// Takes one request from `key`'s bucket: `Ok` if it had one, else how many seconds
    /// until it will.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let now = crate::clock::now_micros();
        let per_second = rate.count / rate.seconds;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, bucket| {
                bucket.tokens + seconds_between(bucket.at, now) * per_second < rate.count
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: rate.count,
            at: now,
        });
        let refilled = seconds_between(bucket.at, now) * per_second;
        bucket.tokens = (bucket.tokens + refilled).min(rate.count);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / per_second;
        Err(wait.ceil().max(1.0) as u64)
    }
}

/// The limiters of a server.
pub struct Limits {
    /// Every FHIR request, per source address and per client.
    pub api: Limiter,
    /// The authorization server's endpoints, per source address.
    pub auth: Limiter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_and_bad_ones_named() {
        assert_eq!(
            Rate::parse("600/min").unwrap(),
            Some(Rate {
                count: 600.0,
                seconds: 60.0
            })
        );
        assert_eq!(Rate::parse("off").unwrap(), None);
        for bad in ["100", "x/s", "0/s", "10/day", "-5/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_empties_and_says_when_it_refills() {
        let limiter = Limiter::new(Rate::parse("3/min").unwrap());
        for _ in 0..3 {
            assert_eq!(limiter.take("a"), Ok(()));
        }
        let wait = limiter.take("a").unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limiter.take("b"), Ok(()), "another key has its own bucket");
        assert_eq!(Limiter::new(None).take("a"), Ok(()));
    }
}

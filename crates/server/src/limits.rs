//! Rate limits: a token bucket per token for requests and one for bytes, refilled at the tenant's rates.
//! Quotas (stored bytes, snapshots) are checked by the upload and snapshot handlers before anything is
//! written; both answer with a body naming the limit and the usage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    /// Take `amount` units at `rate` per second (burst: one second's worth, at least `amount`); on refusal, the
    /// seconds until they would be there.
    fn take(&mut self, amount: f64, rate: f64, now: Instant) -> Result<(), f64> {
        let burst = rate.max(amount);
        self.level = (self.level + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.level >= amount {
            self.level -= amount;
            Ok(())
        } else {
            Err((amount - self.level) / rate)
        }
    }
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
}

/// A refusal: which limit, its rate, and when to retry.
#[derive(Debug)]
pub struct Limited {
    pub limit: &'static str,
    pub rate: f64,
    pub retry_after: f64,
}

impl RateLimiter {
    /// Admit `amount` units of `kind` ("requests" or "bytes") for a token at `rate` per second.
    pub fn admit(&self, token: &str, kind: &'static str, amount: f64, rate: Option<f64>) -> Result<(), Limited> {
        let Some(rate) = rate.filter(|r| *r > 0.0) else { return Ok(()) };
        let now = Instant::now();
        let mut b = self.buckets.lock().expect("rate buckets");
        let bucket = b.entry((token.to_string(), kind)).or_insert(Bucket { level: rate.max(amount), at: now });
        bucket.take(amount, rate, now).map_err(|retry_after| Limited {
            limit: if kind == "requests" { "requests_per_second" } else { "bytes_per_second" },
            rate,
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket { level: 2.0, at: t0 };
        assert!(b.take(1.0, 2.0, t0).is_ok());
        assert!(b.take(1.0, 2.0, t0).is_ok());
        let wait = b.take(1.0, 2.0, t0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        assert!(b.take(1.0, 2.0, t0 + Duration::from_millis(500)).is_ok());
        // a request larger than the burst is still admitted once the bucket has filled to it
        let mut big = Bucket { level: 0.0, at: t0 };
        assert!(big.take(10.0, 2.0, t0 + Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn no_rate_means_no_limit() {
        let r = RateLimiter::default();
        for _ in 0..1000 {
            assert!(r.admit("t", "requests", 1.0, None).is_ok());
        }
        assert!(r.admit("t", "requests", 1.0, Some(1.0)).is_ok());
        assert_eq!(r.admit("t", "requests", 1.0, Some(1.0)).unwrap_err().limit, "requests_per_second");
    }
}

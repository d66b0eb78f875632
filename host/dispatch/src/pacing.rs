//! Token buckets on `governor`: the tenant ingest limit (the server's tenancy)
//! and the sink pacing ([`crate::worker`]) both build their quota here.

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The quota of a bucket refilling `per_second` cells a second and holding
/// `burst` of them; `None` when `per_second` is not a positive number (no
/// limit). The config's burst is a number; governor counts whole cells, so a
/// fractional burst is rounded down (and is at least one).
// `!(x > 0.0)` on purpose: it refuses NaN too, which `x <= 0.0` would let through.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub fn quota(per_second: f64, burst: f64) -> Option<Quota> {
    if !(per_second > 0.0) {
        return None;
    }
    // One cell every 1/per_second; beyond a year (or a rate too fast to
    // express in nanoseconds) governor's arithmetic would over- or underflow.
    let period = Duration::try_from_secs_f64(1.0 / per_second)
        .unwrap_or(Duration::MAX)
        .clamp(Duration::from_nanos(1), Duration::from_secs(365 * 86_400));
    let cells =
        NonZeroU32::new(burst.clamp(1.0, u32::MAX as f64) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| q.allow_burst(cells))
}

/// Where a [`DebtClock`] starts, so that pushing it back by any realistic
/// debt never goes below the limiter's start (governor saturates there).
const LEAD: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A monotonic clock that can be set back to put its bucket in debt.
///
/// governor admits at most `burst` cells at once; a tenant's batch larger
/// than the burst must still pass when the bucket is full and then slow the
/// tenant down by the excess (a token bucket going negative). Setting the
/// limiter's clock back by the excess's refill time is exactly that debt:
/// the bucket is full again `excess / rate` seconds later than it would be.
#[derive(Clone, Debug)]
pub struct DebtClock {
    base: Instant,
    back: Arc<AtomicU64>,
}

impl Clock for DebtClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        let back = Duration::from_nanos(self.back.load(Ordering::Relaxed));
        (LEAD + self.base.elapsed()).saturating_sub(back)
    }
}

/// A token bucket that a request larger than its burst may overdraw.
pub struct DebtBucket {
    limiter: RateLimiter<NotKeyed, InMemoryState, DebtClock, NoOpMiddleware<Duration>>,
    clock: DebtClock,
    quota: Quota,
}

impl DebtBucket {
    /// A full bucket.
    pub fn new(quota: Quota) -> Self {
        // governor measures from the clock's reading at construction: read
        // it LEAD back, then start the clock LEAD ahead, so debt has room.
        let clock = DebtClock {
            base: Instant::now(),
            back: Arc::new(AtomicU64::new(LEAD.as_nanos() as u64)),
        };
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        clock.back.store(0, Ordering::Relaxed);
        DebtBucket {
            limiter,
            clock,
            quota,
        }
    }

    /// The quota this bucket was made with.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Takes `n` cells; on refusal, how long until they fit. More than the
    /// burst passes only when the bucket is full, and leaves it in debt.
    pub fn take(&self, n: u32) -> Result<(), Duration> {
        let Some(need) = NonZeroU32::new(n.min(self.quota.burst_size().get())) else {
            return Ok(());
        };
        match self.limiter.check_n(need) {
            Ok(Ok(())) => {
                let excess = u64::from(n - need.get());
                if excess > 0 {
                    let debt = self.quota.replenish_interval().as_nanos() as u64 * excess;
                    self.clock.back.fetch_add(debt, Ordering::Relaxed);
                }
                Ok(())
            }
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            // `need` never exceeds the burst.
            Err(_) => Err(self.quota.replenish_interval() * need.get()),
        }
    }
}

/// A bucket pacing one sink's calls (never more than one cell at a time).
pub type Pacer = governor::DefaultDirectRateLimiter;

/// Waits until `pacer` lets one call go.
pub async fn paced(pacer: &Pacer) {
    loop {
        match pacer.check() {
            Ok(()) => return,
            Err(not_until) => {
                let wait = not_until.wait_time_from(pacer.clock().now());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_from_config_numbers() {
        assert!(quota(0.0, 5.0).is_none());
        assert!(quota(f64::NAN, 5.0).is_none());
        let q = quota(4.0, 2.5).unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_millis(250));
        assert_eq!(q.burst_size().get(), 2);
        let slow = quota(0.01, 0.0).unwrap();
        assert_eq!(slow.replenish_interval(), Duration::from_secs(100));
        assert_eq!(slow.burst_size().get(), 1);
        assert_eq!(
            quota(1e12, 1.0).unwrap().replenish_interval(),
            Duration::from_nanos(1)
        );
    }

    #[test]
    fn bucket_takes_burst_then_refuses_with_the_wait() {
        let b = DebtBucket::new(quota(10.0, 5.0).unwrap());
        assert!(b.take(5).is_ok());
        let wait = b.take(2).unwrap_err();
        assert!(
            wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        std::thread::sleep(Duration::from_millis(220));
        assert!(b.take(2).is_ok());
    }

    #[test]
    fn oversize_request_passes_when_full_and_leaves_debt() {
        let b = DebtBucket::new(quota(10.0, 5.0).unwrap());
        // 25 events with a burst of 5: passes, 20 events (2 s) in debt.
        assert!(b.take(25).is_ok());
        let wait = b.take(1).unwrap_err();
        assert!(
            wait > Duration::from_millis(1_900) && wait <= Duration::from_millis(2_100),
            "{wait:?}"
        );
        // Another oversize batch waits for the debt and a full bucket.
        let wait = b.take(25).unwrap_err();
        assert!(
            wait > Duration::from_millis(2_300) && wait <= Duration::from_millis(2_500),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn pacer_spaces_calls_after_the_burst() {
        let pacer = Pacer::direct(quota(20.0, 2.0).unwrap());
        let started = Instant::now();
        for _ in 0..4 {
            paced(&pacer).await;
        }
        // Two at once, then two more at 50 ms intervals.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(95) && took < Duration::from_millis(400),
            "{took:?}"
        );
    }
}

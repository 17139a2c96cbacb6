//! A client-side limit on API requests: the generic cell rate algorithm (GCRA),
//! shared by every environment, so the exporter never causes a 429 by itself.
//!
//! Each [`RateLimiter::acquire`] reserves the next slot and sleeps until it. Slots
//! are `60 s / rate` apart; up to `burst` requests may go at once after a quiet
//! spell, so over any minute at most `rate + burst - 1` requests leave.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Requests that may leave back to back after a quiet spell.
pub const DEFAULT_BURST: u32 = 3;

/// A shared request-rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter for `per_minute` requests a minute with a burst of `burst`.
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            next: Mutex::new(None),
        }
    }

    /// The time between two slots.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for the next slot; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let tat = next.map_or(now, |t| t.max(now));
            *next = Some(tat + self.interval);
            (tat.checked_sub(self.tolerance).unwrap_or(now)).saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_one_slot_per_interval() {
        let limiter = RateLimiter::per_minute(60, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.acquire().await, Duration::ZERO);
        }
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_rate_plus_burst_in_a_minute() {
        let limiter = RateLimiter::per_minute(50, 3);
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < Duration::from_secs(60) {
            limiter.acquire().await;
            if start.elapsed() < Duration::from_secs(60) {
                n += 1;
            }
        }
        assert!(n <= 52, "{n} requests in one minute");
        assert!(n >= 50, "{n} requests in one minute");
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_spell_restores_the_burst() {
        let limiter = RateLimiter::per_minute(60, 2);
        limiter.acquire().await;
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(limiter.acquire().await, Duration::ZERO);
        assert_eq!(limiter.acquire().await, Duration::ZERO);
        assert_eq!(limiter.acquire().await, Duration::from_secs(1));
    }
}

//! Retry delays, in one place: a capped exponential [`Backoff`] (optionally jittered, as the
//! session's reconnects are, so that many agents do not come back in step), the schedule of
//! calls to containerd and the host ([`host_retries`]), and [`retry`], which runs a fallible
//! call until it succeeds, waiting out the delays on tokio's clock unless cancelled.
//!
//! The container restart backoff (`engine/restart.rs`) is the same curve over a crash streak,
//! through [`exponential`].

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// `base` doubled `n` times, at most `max`.
pub(crate) fn exponential(base: Duration, max: Duration, n: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(n)).min(max)
}

/// Capped exponential backoff: `base`, then twice that, and so on up to `max`; each delay
/// varied by up to `± jitter` of itself (never above `max`) when jittered.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    /// The fraction a delay may vary by, from 0 (none) to 1.
    jitter: f64,
    /// Delays handed out since the last reset.
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: 0.0,
            attempt: 0,
        }
    }

    /// The same backoff with each delay varied by up to `± fraction` of itself.
    pub(crate) fn jittered(self, fraction: f64) -> Self {
        Self {
            jitter: fraction.clamp(0.0, 1.0),
            ..self
        }
    }

    /// Starts over from `base` (after a success).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = exponential(self.base, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        if self.jitter == 0.0 {
            return delay;
        }
        let factor = 1.0 + self.jitter * (2.0 * rand::random::<f64>() - 1.0);
        delay.mul_f64(factor).min(self.max)
    }
}

/// How the agent retries a call to containerd or the host that failed for a reason that may
/// pass (containerd restarting, a busy mount): 250 ms, doubling up to 30 s.
pub(crate) fn host_retries() -> Backoff {
    Backoff::new(Duration::from_millis(250), Duration::from_secs(30))
}

/// Runs `op` until it succeeds, waiting the backoff's next delay after each failure (after
/// `on_retry` was told the error and the delay, to log them). None when `cancel` fires during a
/// delay; a call in flight is let finish, as the calls retried this way (a container's stop, a
/// cleanup step) are better not cut in half.
pub(crate) async fn retry<T, E, F, Fut>(
    mut backoff: Backoff,
    cancel: &CancellationToken,
    mut op: F,
    mut on_retry: impl FnMut(&E, Duration),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let error = match op().await {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        let delay = backoff.next_delay();
        on_retry(&error, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::time::Instant;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_up_to_the_cap_and_start_over_after_a_reset() {
        let mut b = Backoff::new(ms(250), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [
                250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000
            ]
            .map(ms)
        );
        b.reset();
        assert_eq!(b.next_delay(), ms(250));
        // Far past any shift: still the cap, never an overflow.
        let mut b = Backoff::new(ms(1), ms(10));
        assert_eq!((0..100).map(|_| b.next_delay()).last(), Some(ms(10)));
        assert_eq!(exponential(ms(10), ms(300), 0), ms(10));
        assert_eq!(exponential(ms(10), ms(300), 4), ms(160));
        assert_eq!(exponential(ms(10), ms(300), u32::MAX), ms(300));
    }

    #[test]
    fn jittered_delays_stay_within_their_band_and_the_cap() {
        let mut b = Backoff::new(ms(100), Duration::from_secs(2)).jittered(0.2);
        for n in 0..20u32 {
            let delay = b.next_delay();
            let nominal = exponential(ms(100), Duration::from_secs(2), n);
            assert!(
                delay >= nominal.mul_f64(0.8) && delay <= nominal.mul_f64(1.2),
                "{n}: {delay:?} for {nominal:?}"
            );
            assert!(delay <= Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_delay() <= ms(120));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_each_delay_on_tokios_clock_until_the_call_succeeds() {
        let calls = Cell::new(0u32);
        let mut told = Vec::new();
        let start = Instant::now();
        let got = retry(
            host_retries(),
            &CancellationToken::new(),
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 4 { Err(n) } else { Ok("done") } }
            },
            |error, delay| told.push((*error, delay)),
        )
        .await;
        assert_eq!(got, Some("done"));
        assert_eq!(calls.get(), 4);
        assert_eq!(told, [(1, ms(250)), (2, ms(500)), (3, ms(1000))]);
        assert_eq!(
            start.elapsed(),
            ms(1750),
            "exactly the delays, nothing more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_when_cancelled_during_a_delay() {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(600)).await;
            stop.cancel();
        });
        let start = Instant::now();
        let calls = Cell::new(0u32);
        let got: Option<()> = retry(
            host_retries(),
            &cancel,
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("busy") }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(got, None);
        assert_eq!(
            start.elapsed(),
            ms(600),
            "given up at the cancel, mid-delay"
        );
        assert_eq!(
            calls.get(),
            2,
            "at 0 and after 250 ms; the 500 ms wait was cut"
        );
    }
}

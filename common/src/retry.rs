//! Retry with exponential backoff (jittered), stopping on cancellation and on errors marked
//! permanent. Every reconnect loop in the daemons goes through [`retry`].

use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The outcome of one failed attempt.
#[derive(Debug)]
pub enum Failure<E> {
    /// Worth another try (connection refused, timeout).
    Transient(E),
    /// Another try cannot help (wrong password, bad config): give up now.
    Permanent(E),
}

/// Why [`retry`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Permanent(E),
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: usize, last: E },
}

/// Backoff settings, usable as a config section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// First delay. Default `200ms`.
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    /// Longest delay. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Attempts in all, 0 = until cancelled. Default `0`.
    pub max_attempts: usize,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(200),
            max: Duration::from_secs(30),
            max_attempts: 0,
        }
    }
}

impl Backoff {
    fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let b = backon::ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter();
        let b = if self.max_attempts == 0 {
            b.without_max_times()
        } else {
            b.with_max_times(self.max_attempts.saturating_sub(1))
        };
        b.build()
    }
}

/// Runs `op` until it succeeds, fails permanently, runs out of attempts, or `cancel` fires (also
/// during a wait). `what` names the operation in the retry log lines.
pub async fn retry<T, E, F, Fut>(
    backoff: &Backoff,
    cancel: &CancellationToken,
    what: &str,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
{
    let mut delays = backoff.delays();
    let mut attempts = 0usize;
    loop {
        attempts += 1;
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return Err(RetryError::Cancelled),
            r = op() => r,
        };
        let err = match outcome {
            Ok(v) => return Ok(v),
            Err(Failure::Permanent(e)) => return Err(RetryError::Permanent(e)),
            Err(Failure::Transient(e)) => e,
        };
        let Some(delay) = delays.next() else {
            return Err(RetryError::Exhausted {
                attempts,
                last: err,
            });
        };
        tracing::warn!(attempt = attempts, retry_in = ?delay, "{what}: {err}");
        tokio::select! {
            _ = cancel.cancelled() => return Err(RetryError::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fast(max_attempts: usize) -> Backoff {
        Backoff {
            min: Duration::from_millis(1),
            max: Duration::from_millis(5),
            max_attempts,
        }
    }

    #[tokio::test]
    async fn retries_transient_until_success() {
        let n = Arc::new(AtomicUsize::new(0));
        let c = CancellationToken::new();
        let r: Result<usize, RetryError<String>> = retry(&fast(0), &c, "op", || {
            let n = n.clone();
            async move {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i < 3 {
                    Err(Failure::Transient(format!("try {i}")))
                } else {
                    Ok(i)
                }
            }
        })
        .await;
        assert_eq!(r.expect("succeeds"), 3);
    }

    #[tokio::test]
    async fn permanent_stops_at_once_and_attempts_are_bounded() {
        let n = Arc::new(AtomicUsize::new(0));
        let c = CancellationToken::new();
        let r: Result<(), _> = retry(&fast(0), &c, "op", || {
            n.fetch_add(1, Ordering::SeqCst);
            async { Err(Failure::Permanent("wrong password".to_string())) }
        })
        .await;
        assert!(matches!(r, Err(RetryError::Permanent(_))));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let r: Result<(), _> = retry(&fast(3), &c, "op", || async {
            Err(Failure::Transient("refused".to_string()))
        })
        .await;
        assert!(
            matches!(r, Err(RetryError::Exhausted { attempts: 3, .. })),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn cancellation_interrupts_the_wait() {
        let c = CancellationToken::new();
        let slow = Backoff {
            min: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
            max_attempts: 0,
        };
        let c2 = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c2.cancel();
        });
        let r: Result<(), _> = retry(&slow, &c, "op", || async {
            Err(Failure::Transient("refused".to_string()))
        })
        .await;
        assert!(matches!(r, Err(RetryError::Cancelled)));
    }
}

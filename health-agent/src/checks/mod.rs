//! The checks. Each one looks at one thing and returns an [`Outcome`]: a state and a reason that
//! carries the concrete value and the threshold (or the error). A check never panics and never
//! runs past its timeout: [`run`] bounds it and turns a timeout into UNKNOWN.

pub mod backups;
pub mod disk;
pub mod net;
pub mod pgbouncer;
pub mod postgres;
pub mod redis;
pub mod sentinel;

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{CheckConfig, CheckSpec};

/// A check's state, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warn,
    Crit,
    /// The check itself could not run (timeout, bad config at run time).
    Unknown,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Crit => "CRIT",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (the metric value).
    pub fn code(&self) -> i64 {
        *self as i64
    }

    /// The monitoring-plugin exit code (Nagios, Icinga, Sensu): 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warn => 1,
            Self::Crit => 2,
            Self::Unknown => 3,
        }
    }

    /// The state several checks add up to, as plugin aggregators rank them: any CRIT is CRIT, then
    /// any UNKNOWN, then any WARN, else OK.
    pub fn overall(states: impl IntoIterator<Item = State>) -> State {
        let rank = |s: &State| match s {
            Self::Ok => 0,
            Self::Warn => 1,
            Self::Unknown => 2,
            Self::Crit => 3,
        };
        states.into_iter().max_by_key(rank).unwrap_or(Self::Ok)
    }

    pub fn is_ok(&self) -> bool {
        *self == Self::Ok
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one run of a check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub state: State,
    pub reason: String,
}

impl Outcome {
    pub fn ok(reason: impl Into<String>) -> Self {
        Self {
            state: State::Ok,
            reason: reason.into(),
        }
    }
    pub fn warn(reason: impl Into<String>) -> Self {
        Self {
            state: State::Warn,
            reason: reason.into(),
        }
    }
    pub fn crit(reason: impl Into<String>) -> Self {
        Self {
            state: State::Crit,
            reason: reason.into(),
        }
    }
    pub fn unknown(reason: impl Into<String>) -> Self {
        Self {
            state: State::Unknown,
            reason: reason.into(),
        }
    }
}

/// Collects findings of one check: the worst state wins, every bad finding goes into the reason.
#[derive(Default)]
pub struct Findings {
    worst: Option<State>,
    bad: Vec<String>,
    good: Vec<String>,
}

impl Findings {
    pub fn add(&mut self, state: State, text: impl Into<String>) {
        let text = text.into();
        self.worst = Some(self.worst.map_or(state, |w| w.max(state)));
        if state.is_ok() {
            self.good.push(text);
        } else {
            self.bad.push(format!("{state}: {text}"));
        }
    }

    pub fn finish(self) -> Outcome {
        let state = self.worst.unwrap_or(State::Ok);
        let reason = if self.bad.is_empty() {
            self.good.join("; ")
        } else {
            self.bad.join("; ")
        };
        Outcome { state, reason }
    }
}

/// Threshold helper: the state of a value against warn/crit (higher is worse).
pub fn level(value: f64, warn: f64, crit: f64) -> State {
    if value >= crit {
        State::Crit
    } else if value >= warn {
        State::Warn
    } else {
        State::Ok
    }
}

/// A finished run: the outcome and how long it took.
#[derive(Clone, Debug)]
pub struct Run {
    pub outcome: Outcome,
    pub duration: Duration,
}

/// Runs one check, bounded by `timeout`.
pub async fn run(check: &CheckConfig, timeout: Duration) -> Run {
    let started = Instant::now();
    let fut = async {
        match &check.spec {
            CheckSpec::Postgres(c) => postgres::check(c).await,
            CheckSpec::Pgbouncer(c) => pgbouncer::check(c).await,
            CheckSpec::Redis(c) => redis::check(c).await,
            CheckSpec::Sentinel(c) => sentinel::check(c).await,
            CheckSpec::Backups(c) => backups::check(c).await,
            CheckSpec::Disk(c) => disk::check(c).await,
            CheckSpec::Http(c) => net::http(c).await,
            CheckSpec::Tcp(c) => net::tcp(c).await,
        }
    };
    let outcome = match tokio::time::timeout(timeout, fut).await {
        Ok(o) => o,
        Err(_) => Outcome::unknown(format!(
            "timed out after {}",
            humantime::format_duration(timeout)
        )),
    };
    Run {
        outcome,
        duration: started.elapsed(),
    }
}

/// Formats bytes for reasons.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_worst_state() {
        assert_eq!(State::Ok.exit_code(), 0);
        assert_eq!(State::Warn.exit_code(), 1);
        assert_eq!(State::Crit.exit_code(), 2);
        assert_eq!(State::Unknown.exit_code(), 3);
        use State::*;
        assert_eq!(State::overall([]), Ok);
        assert_eq!(State::overall([Ok, Warn]), Warn);
        assert_eq!(State::overall([Warn, Unknown]), Unknown);
        assert_eq!(State::overall([Unknown, Crit, Warn]), Crit);
        let mut f = Findings::default();
        f.add(State::Ok, "fine");
        f.add(State::Warn, "slow");
        f.add(State::Crit, "down");
        let o = f.finish();
        assert_eq!(o.state, State::Crit);
        assert_eq!(o.reason, "WARN: slow; CRIT: down");
    }
}

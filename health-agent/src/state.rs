//! Debouncing: a check is reported bad after `failure_threshold` consecutive bad results and
//! recovered after `success_threshold` good ones; a reminder is due every `remind_every` while it
//! stays bad. Flapping: a check whose results keep alternating between good and bad faster than
//! the thresholds can follow (so its reported state never changes) is reported as flapping
//! instead of being hidden. Pure logic: time comes in as an argument.

use std::time::{Duration, SystemTime};

use crate::checks::{Outcome, State};

/// The thresholds of [`Tracker::observe`].
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub remind_every: Duration,
}

/// What an observation changed.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The reported state changed; `lasted` is how long the previous state held.
    Changed {
        from: State,
        to: State,
        reason: String,
        lasted: Duration,
    },
    /// Still bad, a reminder is due.
    StillBad {
        state: State,
        reason: String,
        lasted: Duration,
    },
    /// The results alternate: `flips` changes between good and bad among the last
    /// [`FLAP_WINDOW`] results.
    Flapping { flips: u32, reason: String },
    /// The results settled again (at most [`FLAP_STOP`] changes in the window).
    StoppedFlapping { flips: u32 },
}

/// How many recent results flapping is judged on.
pub const FLAP_WINDOW: u32 = 10;
/// Flapping starts at this many changes between good and bad within the window (of 9 possible).
pub const FLAP_START: u32 = 5;
/// And ends at this many or fewer.
pub const FLAP_STOP: u32 = 1;

/// The reported state of one check.
#[derive(Clone, Debug)]
pub struct Tracker {
    pub reported: State,
    pub since: SystemTime,
    /// Consecutive results that disagree with `reported`: (they are OK, how many).
    pending: Option<(bool, u32)>,
    last_line: SystemTime,
    /// The last results, newest in bit 0 (1 = good), and how many are known.
    recent: u32,
    known: u32,
    pub flapping: bool,
}

impl Tracker {
    /// A check is assumed OK until it has failed `failure_threshold` times.
    pub fn new(now: SystemTime) -> Self {
        Self {
            reported: State::Ok,
            since: now,
            pending: None,
            last_line: now,
            recent: 0,
            known: 0,
            flapping: false,
        }
    }

    /// Records one result for flap detection; returns an event when flapping starts or ends.
    pub fn flap(&mut self, outcome: &Outcome) -> Option<Event> {
        self.recent = (self.recent << 1) | u32::from(outcome.state.is_ok());
        self.known = (self.known + 1).min(FLAP_WINDOW);
        let mask = (1u32 << self.known) - 1;
        let bits = self.recent & mask;
        // Adjacent results that differ, within the known window.
        let flips = ((bits ^ (bits >> 1)) & (mask >> 1)).count_ones();
        if !self.flapping && flips >= FLAP_START {
            self.flapping = true;
            return Some(Event::Flapping {
                flips,
                reason: outcome.reason.clone(),
            });
        }
        if self.flapping && flips <= FLAP_STOP {
            self.flapping = false;
            return Some(Event::StoppedFlapping { flips });
        }
        None
    }

    /// Whether a change is being considered (the runner then rechecks sooner).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub fn observe(&mut self, outcome: &Outcome, now: SystemTime, p: &Policy) -> Option<Event> {
        let lasted = now.duration_since(self.since).unwrap_or_default();
        if outcome.state == self.reported {
            self.pending = None;
            if !self.reported.is_ok()
                && now.duration_since(self.last_line).unwrap_or_default() >= p.remind_every
            {
                self.last_line = now;
                return Some(Event::StillBad {
                    state: self.reported,
                    reason: outcome.reason.clone(),
                    lasted,
                });
            }
            return None;
        }
        let ok = outcome.state.is_ok();
        let count = match self.pending {
            Some((was_ok, n)) if was_ok == ok => n + 1,
            _ => 1,
        };
        let needed = if ok {
            p.success_threshold
        } else {
            p.failure_threshold
        }
        .max(1);
        if count < needed {
            self.pending = Some((ok, count));
            return None;
        }
        let from = self.reported;
        self.reported = outcome.state;
        self.since = now;
        self.last_line = now;
        self.pending = None;
        Some(Event::Changed {
            from,
            to: outcome.state,
            reason: outcome.reason.clone(),
            lasted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check alternating OK/CRIT never reaches failure_threshold 2, so its reported state stays
    /// OK; it is reported flapping once (not at every flip), and settled once it stays up.
    #[test]
    fn alternating_results_are_reported_as_flapping_once() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut t = Tracker::new(t0);
        let p = policy();
        let mut events = vec![];
        for i in 0..12u64 {
            let o = if i % 2 == 0 {
                Outcome::ok("up")
            } else {
                Outcome::crit("refused")
            };
            let at = t0 + Duration::from_secs(30 * i);
            assert_eq!(t.observe(&o, at, &p), None, "debouncing hides each flip");
            events.extend(t.flap(&o));
        }
        assert_eq!(t.reported, State::Ok);
        assert!(
            matches!(events.as_slice(), [Event::Flapping { flips: 5, .. }]),
            "{events:?}"
        );
        assert!(t.flapping);
        let mut settled = vec![];
        for _ in 0..10 {
            settled.extend(t.flap(&Outcome::ok("up")));
        }
        assert!(
            matches!(settled.as_slice(), [Event::StoppedFlapping { .. }]),
            "{settled:?}"
        );
        // A check that goes down and stays down is not flapping.
        let mut t = Tracker::new(t0);
        let mut events = vec![];
        for i in 0..12 {
            let o = if i < 3 {
                Outcome::ok("up")
            } else {
                Outcome::crit("down")
            };
            events.extend(t.flap(&o));
        }
        assert!(events.is_empty(), "{events:?}");
    }

    fn policy() -> Policy {
        Policy {
            failure_threshold: 2,
            success_threshold: 1,
            remind_every: Duration::from_secs(3600),
        }
    }

    #[test]
    fn bad_after_threshold_recovered_after_one_and_reminded() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s| t0 + Duration::from_secs(s);
        let mut t = Tracker::new(t0);
        let p = policy();
        assert_eq!(t.observe(&Outcome::crit("down"), at(300), &p), None);
        assert!(t.is_pending());
        // An OK in between resets the count.
        assert_eq!(t.observe(&Outcome::ok("up"), at(600), &p), None);
        assert_eq!(t.observe(&Outcome::crit("down"), at(900), &p), None);
        // WARN and CRIT are both bad: the second bad result reports the latest.
        let e = t.observe(&Outcome::warn("slow"), at(1200), &p);
        assert!(
            matches!(
                e,
                Some(Event::Changed {
                    from: State::Ok,
                    to: State::Warn,
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(t.observe(&Outcome::warn("slow"), at(1500), &p), None);
        let e = t.observe(&Outcome::warn("slow"), at(1200 + 3600), &p);
        assert!(
            matches!(
                e,
                Some(Event::StillBad {
                    state: State::Warn,
                    ..
                })
            ),
            "{e:?}"
        );
        let e = t.observe(&Outcome::ok("up"), at(6000), &p);
        match e {
            Some(Event::Changed {
                from: State::Warn,
                to: State::Ok,
                lasted,
                ..
            }) => {
                assert_eq!(lasted, Duration::from_secs(6000 - 1200));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.observe(&Outcome::ok("up"), at(9000 + 7200), &p),
            None,
            "no reminders while OK"
        );
    }
}

//! From the events of all Sentinels to one timeline per failover: duplicates merged (with how many
//! Sentinels saw each), `+switch-master` believed only once the Sentinels' current answer and the
//! config epoch agree, the prober's figures attached, one summary line per finished failover.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::logfmt::{Line, LogFile};

use crate::events::{Addr, Event, Payload, Role};
use crate::metrics::{Metrics, master as mlabels};
use crate::probe::Switch;

/// How a failover was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The master was seen down (+sdown/+odown).
    Automatic,
    /// No down event: `SENTINEL FAILOVER` or a failover seen only from its end.
    Manual,
    /// No event at all: the Sentinels name a new master that no event announced (sentinel-watch
    /// was cut off from every Sentinel while it happened); found by [`Tracker::reconcile`].
    Missed,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Manual => "manual",
            Self::Missed => "missed",
        }
    }
}

/// One step of a failover.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub offset: Duration,
    pub seen_by: HashSet<String>,
    pub detail: String,
}

/// A failover of one master, from its first event to its summary.
#[derive(Clone, Debug)]
pub struct Failover {
    pub master: String,
    pub started: SystemTime,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    pub old: Option<Addr>,
    pub new: Option<Addr>,
    pub epoch: Option<u64>,
    /// When +switch-master was confirmed.
    pub switched: Option<SystemTime>,
    pub ended: bool,
    pub probe: Option<Switch>,
    pub last_event: SystemTime,
    /// The Sentinels that see the master down now (+sdown without a -sdown since).
    pub down_by: HashSet<String>,
    /// The Sentinels trying to carry it out (+try-failover, elected, or in a failover state)
    /// that have not aborted since: a leader goes on even if the master comes back, and a
    /// Sentinel still waiting for votes may yet be elected.
    pub acting: HashSet<String>,
    /// `failover_stalled` was logged: the master down, idle, and no switch.
    pub stalled: bool,
}

impl Failover {
    fn new(master: &str, at: SystemTime, trigger: Trigger) -> Self {
        Self {
            master: master.to_string(),
            started: at,
            trigger,
            steps: vec![],
            old: None,
            new: None,
            epoch: None,
            switched: None,
            ended: false,
            probe: None,
            last_event: at,
            down_by: HashSet::new(),
            acting: HashSet::new(),
            stalled: false,
        }
    }

    /// `+sdown@0ms(3) +odown@812ms(1) ...`: each step, its offset and how many Sentinels saw it.
    pub fn timeline(&self) -> String {
        self.steps
            .iter()
            .map(|s| format!("{}@{}ms({})", s.name, s.offset.as_millis(), s.seen_by.len()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn duration(&self) -> Option<Duration> {
        self.switched?.duration_since(self.started).ok()
    }
}

/// How long a switched and ended failover waits for the prober's measurement.
pub const PROBE_GRACE: Duration = Duration::from_secs(20);

/// Events that belong in a failover's timeline.
const FAILOVER_STEPS: &[&str] = &[
    "+sdown",
    "+odown",
    "+new-epoch",
    "+try-failover",
    "+vote-for-leader",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+slave-reconf-sent",
    "+slave-reconf-inprog",
    "+slave-reconf-done",
    "+failover-end",
    "+failover-end-for-timeout",
    "+switch-master",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "-failover-abort-not-elected",
    // The master seen again: ends a failover that never switched.
    "-sdown",
    "-odown",
];

/// How a Sentinel gives up a failover it was trying: not elected, no replica to promote, or the
/// promotion timed out. A Sentinel that tried ends with one of these unless the failover ends.
const ABORTS: &[&str] = &[
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
];

/// What the tracker asks of the outside world (so it can be tested without servers).
pub trait Confirm {
    /// The master the Sentinels name now, its config epoch and how many agree.
    fn current(
        &self,
        master: &str,
    ) -> impl std::future::Future<Output = Option<(Addr, u64, usize)>> + Send;
}

/// A finished failover, for hooks and tests.
#[derive(Clone, Debug)]
pub enum Outcome {
    Switched(Failover),
    Ended(Failover),
}

pub struct Tracker {
    log: Arc<LogFile>,
    /// Whether a probe measurement is waited for before a failover is summarised.
    probe_enabled: bool,
    metrics: Metrics,
    window: Duration,
    idle: Duration,
    /// (event name, payload) -> (first seen, Sentinels that sent it).
    seen: HashMap<(String, String), (SystemTime, HashSet<String>)>,
    open: HashMap<String, Failover>,
    pub finished: Vec<Failover>,
    pub current: Arc<Mutex<HashMap<String, Addr>>>,
    unknown_logged: HashSet<String>,
    /// Probe switches that arrived before their failover was confirmed.
    early_probes: Vec<Switch>,
    /// A master named by the Sentinels that differs from the known one, with no failover heard:
    /// (address, times seen in a row).
    suspects: HashMap<String, (Addr, u32)>,
}

impl Tracker {
    pub fn new(
        log: Arc<LogFile>,
        metrics: Metrics,
        window: Duration,
        idle: Duration,
        probe_enabled: bool,
    ) -> Self {
        Self {
            log,
            probe_enabled,
            metrics,
            window,
            idle,
            seen: HashMap::new(),
            open: HashMap::new(),
            finished: vec![],
            current: Arc::new(Mutex::new(HashMap::new())),
            unknown_logged: HashSet::new(),
            early_probes: vec![],
            suspects: HashMap::new(),
        }
    }

    /// Sets the known master (at startup, from the Sentinels).
    pub fn set_current(&self, master: &str, addr: Addr) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = cur.insert(master.to_string(), addr.clone())
            && old != addr
        {
            self.metrics
                .master_info
                .get_or_create(&vec![
                    ("master".into(), master.into()),
                    ("addr".into(), old.to_string()),
                ])
                .set(0);
        }
        self.metrics
            .master_info
            .get_or_create(&vec![
                ("master".into(), master.into()),
                ("addr".into(), addr.to_string()),
            ])
            .set(1);
    }

    fn current_of(&self, master: &str) -> Option<Addr> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(master)
            .cloned()
    }

    /// One event from one Sentinel. Returns what finished, if anything, for the hooks.
    pub async fn on_event(
        &mut self,
        sentinel: &str,
        e: &Event,
        at: SystemTime,
        confirm: &impl Confirm,
    ) -> Vec<Outcome> {
        // Dedup: the same event and payload from several Sentinels within the window. It is a
        // new occurrence, not a duplicate, when that Sentinel already sent it, or when it was
        // first seen before the master's open failover began (the master down again a few
        // seconds after a blip: dropped, that failover's +sdown and +odown went unseen and
        // its timeline missed the steps the Sentinels repeated).
        let key = (e.name.clone(), e.raw.clone());
        self.seen
            .retain(|_, (t, _)| at.duration_since(*t).unwrap_or_default() < self.window);
        let began = e
            .master_name()
            .and_then(|m| self.open.get(m))
            .map(|f| f.started);
        if let Some((first, who)) = self.seen.get_mut(&key)
            && !who.contains(sentinel)
            && began.is_none_or(|b| *first >= b)
        {
            who.insert(sentinel.to_string());
            if let Some(f) = e.master_name().and_then(|m| self.open.get_mut(m)) {
                for s in f.steps.iter_mut().rev() {
                    if s.name == e.name && s.detail == e.raw {
                        s.seen_by.insert(sentinel.to_string());
                        break;
                    }
                }
            }
            if let Some(m) = e.master_name().map(str::to_string)
                && e.is_about_master()
            {
                self.track_down(&m, sentinel, e, at);
            }
            return vec![];
        }
        self.seen
            .insert(key, (at, HashSet::from([sentinel.to_string()])));
        self.metrics
            .events
            .get_or_create(&vec![("event".into(), e.name.clone())])
            .inc();

        if e.unparsed {
            if self.unknown_logged.insert(e.name.clone()) {
                tracing::warn!(event = %e.name, payload = %e.raw, "unknown or malformed Sentinel event (logged once per name)");
            }
            self.log.emit(
                Line::at(at, "sentinel_event")
                    .field("name", &e.name)
                    .field("raw", &e.raw)
                    .field("from", sentinel)
                    .field("unparsed", true),
            );
            return vec![];
        }

        // Which failover does it belong to? Events without a master name (+new-epoch,
        // +vote-for-leader) go to the only open failover, if there is exactly one.
        let master = match e.master_name() {
            Some(m) => Some(m.to_string()),
            None if self.open.len() == 1 => self.open.keys().next().cloned(),
            None => None,
        };
        let is_step = FAILOVER_STEPS.contains(&e.name.as_str());
        let starts = match e.name.as_str() {
            "+sdown" | "+odown" => e.is_about_master(),
            "+try-failover" | "+switch-master" | "+elected-leader" => true,
            _ => false,
        };
        // A +switch-master to the master already known (found by reconcile, or republished) is
        // not a new failover.
        let known = match &e.payload {
            Payload::SwitchMaster { new, .. } => {
                master.as_deref().and_then(|m| self.current_of(m)).as_ref() == Some(new)
            }
            _ => false,
        };
        if let Some(m) = &master
            && is_step
            && !self.open.contains_key(m)
            && starts
            && !known
        {
            let trigger = if matches!(e.name.as_str(), "+sdown" | "+odown") {
                Trigger::Automatic
            } else {
                Trigger::Manual
            };
            let mut f = Failover::new(m, at, trigger);
            f.old = self.current_of(m);
            self.open.insert(m.clone(), f);
        }
        // +sdown of a replica or sentinel is not part of a master's failover timeline.
        let belongs = is_step
            && (!matches!(e.name.as_str(), "+sdown" | "-sdown" | "-odown") || e.is_about_master())
            && master.as_ref().is_some_and(|m| self.open.contains_key(m));
        let offset = master
            .as_ref()
            .and_then(|m| self.open.get(m))
            .and_then(|f| at.duration_since(f.started).ok());
        self.log.emit(
            Line::at(at, "sentinel_event")
                .field("name", &e.name)
                .field_opt("master", master.as_deref())
                .field("payload", &e.raw)
                .field("from", sentinel)
                .field_opt(
                    "failover_offset_ms",
                    offset.filter(|_| belongs).map(|o| o.as_millis()),
                ),
        );
        self.note_rejoin(e, at);

        let mut out = vec![];
        let Some(m) = master.filter(|_| belongs) else {
            return out;
        };
        let Some(f) = self.open.get_mut(&m) else {
            return out;
        };
        f.last_event = at;
        f.steps.push(Step {
            name: e.name.clone(),
            offset: offset.unwrap_or_default(),
            seen_by: HashSet::from([sentinel.to_string()]),
            detail: e.raw.clone(),
        });
        if self.track_down(&m, sentinel, e, at) {
            return out;
        }
        let Some(f) = self.open.get_mut(&m) else {
            return out;
        };
        match &e.payload {
            Payload::NewEpoch { epoch } | Payload::VoteForLeader { epoch, .. } => {
                f.epoch = Some(f.epoch.map_or(*epoch, |x| x.max(*epoch)));
            }
            Payload::SwitchMaster { old, new, .. } => {
                // Believe it only when the Sentinels say so now (a rejoining Sentinel can
                // republish a stale +switch-master).
                let now = confirm.current(&m).await;
                let ok = now.as_ref().is_some_and(|(addr, epoch, _)| {
                    addr == new && f.epoch.is_none_or(|want| *epoch >= want)
                });
                if ok {
                    f.old = Some(old.clone());
                    f.new = Some(new.clone());
                    f.switched = Some(at);
                    if let Some((_, epoch, _)) = now {
                        f.epoch = Some(epoch);
                    }
                    let snapshot = f.clone();
                    self.set_current(&m, new.clone());
                    self.log.emit(
                        Line::at(SystemTime::now(), "new_master")
                            .field("master", &m)
                            .field("old", old)
                            .field("new", new)
                            .field("config_epoch", snapshot.epoch.unwrap_or(0)),
                    );
                    out.push(Outcome::Switched(snapshot));
                    self.attach_early_probe(&m);
                } else {
                    self.log.emit(
                        Line::at(SystemTime::now(), "stale_switch_master")
                            .field("master", &m)
                            .field("claimed_new", new)
                            .field(
                                "sentinels_say",
                                now.map(|(a, e, n)| format!("{a} epoch {e} ({n} agree)"))
                                    .unwrap_or_else(|| "no answer".into()),
                            )
                            .field("from", sentinel),
                    );
                    if let Some(f) = self.open.get_mut(&m)
                        && f.switched.is_none()
                        && f.steps.len() == 1
                    {
                        self.open.remove(&m);
                    }
                }
            }
            _ => {}
        }
        if matches!(
            e.name.as_str(),
            "+failover-end" | "+failover-end-for-timeout"
        ) && let Some(f) = self.open.get_mut(&m)
        {
            f.ended = true;
        }
        out.extend(self.maybe_finish(&m, at));
        out
    }

    /// The old master coming back is reported: +convert-to-slave (or -sdown) of the address that
    /// was the master before the last failover.
    fn note_rejoin(&self, e: &Event, at: SystemTime) {
        if !matches!(e.name.as_str(), "+convert-to-slave" | "-sdown") {
            return;
        }
        let Some(i) = e.instance().filter(|i| i.role == Role::Replica) else {
            return;
        };
        let m = i.master_name();
        let was_master = self
            .finished
            .iter()
            .chain(self.open.values())
            .any(|f| f.master == m && f.old.as_ref() == Some(&i.addr) && f.switched.is_some());
        if was_master {
            self.log.emit(
                Line::at(at, "old_master_rejoined")
                    .field("master", m)
                    .field("addr", &i.addr)
                    .field("as", "replica")
                    .field("via", &e.name),
            );
        }
    }

    /// Compares the master the Sentinels name now (`named`: address, config epoch, how many
    /// agree) with the known one. When they differ, no failover is open and the difference is
    /// seen twice in a row, the change happened unheard (every Sentinel was out of reach): it is
    /// recorded as a failover with trigger `missed`, so that it is counted, summarised and gets
    /// the prober's figures like any other.
    pub fn reconcile(
        &mut self,
        m: &str,
        named: Option<(Addr, u64, usize)>,
        at: SystemTime,
    ) -> Vec<Outcome> {
        let (Some(cur), Some((addr, epoch, _))) = (self.current_of(m), named) else {
            self.suspects.remove(m);
            return vec![];
        };
        if addr == cur || self.open.contains_key(m) {
            self.suspects.remove(m);
            return vec![];
        }
        let seen = match self.suspects.get_mut(m) {
            Some((a, n)) if *a == addr => {
                *n += 1;
                *n
            }
            _ => {
                self.suspects.insert(m.to_string(), (addr, 1));
                return vec![];
            }
        };
        if seen < 2 {
            return vec![];
        }
        self.suspects.remove(m);
        let mut f = Failover::new(m, at, Trigger::Missed);
        f.old = Some(cur.clone());
        f.new = Some(addr.clone());
        f.epoch = Some(epoch);
        f.switched = Some(at);
        f.ended = true;
        f.steps.push(Step {
            name: "reconciled".into(),
            offset: Duration::ZERO,
            seen_by: HashSet::new(),
            detail: format!("Sentinels name {addr} at epoch {epoch}; no event was heard"),
        });
        self.set_current(m, addr.clone());
        self.log.emit(
            Line::at(at, "new_master")
                .field("master", m)
                .field("old", &cur)
                .field("new", &addr)
                .field("config_epoch", epoch)
                .field("via", "reconcile"),
        );
        let snapshot = f.clone();
        self.open.insert(m.to_string(), f);
        self.attach_early_probe(m);
        let mut out = vec![Outcome::Switched(snapshot)];
        out.extend(self.maybe_finish(m, at));
        out
    }

    /// A probe measurement: attached to the failover it belongs to.
    pub fn on_probe(&mut self, s: Switch) -> Vec<Outcome> {
        let m = s.master.clone();
        let target = self.open.get_mut(&m).filter(|f| f.switched.is_some());
        match target {
            Some(f) => {
                f.probe = Some(s);
                self.maybe_finish(&m, SystemTime::now())
            }
            None => {
                // The prober saw the new master before the event was confirmed; keep it.
                self.early_probes.push(s);
                vec![]
            }
        }
    }

    /// The prober found the master restarted in place (same address, new `run_id`): not a
    /// failover. What the restart took is logged and counted apart from failovers' losses.
    pub fn on_restart(&mut self, s: &Switch) {
        self.metrics
            .restart_lost_writes
            .get_or_create(&mlabels(&s.master))
            .inc_by(s.lost.len() as u64);
        let line = probe_fields(
            Line::new("master_restarted")
                .field("master", &s.master)
                .field("addr", &s.first_new.addr)
                .field("old_run_id", &s.last_old.run)
                .field("new_run_id", &s.first_new.run),
            Some(s),
        );
        if s.lost.is_empty() {
            tracing::info!("master of {} restarted in place: {line}", s.master);
        } else {
            tracing::warn!(
                "master of {} restarted in place and lost acknowledged writes: {line}",
                s.master
            );
        }
        self.log.emit(line);
    }

    fn attach_early_probe(&mut self, m: &str) {
        if let Some(i) = self.early_probes.iter().position(|s| s.master == m)
            && let Some(f) = self.open.get_mut(m)
        {
            f.probe = Some(self.early_probes.remove(i));
        }
    }

    /// Closes failovers that have been idle too long, or that switched and ended but whose probe
    /// has not reported within [`PROBE_GRACE`]. One whose master a Sentinel still sees down
    /// stays open (it ends with the switch, when the master is seen again, or after ten times
    /// `failover_idle` without an event, should a -sdown have been missed): the Sentinels
    /// are not failing over, because one tried less than twice `failover-timeout` ago, or they
    /// lack a quorum or a replica to promote. That is logged once as `failover_stalled`.
    /// (Closed, the failover the Sentinels start minutes later used to be taken for a manual
    /// one, its downtime counted from then.)
    pub fn tick(&mut self, now: SystemTime) -> Vec<Outcome> {
        let since = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        for (m, f) in self.open.iter_mut() {
            if !f.stalled
                && f.switched.is_none()
                && !f.down_by.is_empty()
                && since(f.last_event) >= self.idle
            {
                f.stalled = true;
                let line = Line::at(now, "failover_stalled")
                    .field("master", m)
                    .field("down_ms", since(f.started).as_millis())
                    .field("seen_down_by", f.down_by.len())
                    .field("timeline", f.timeline())
                    .field(
                        "reason",
                        "the master is down and no Sentinel is failing over: one tried less \
                         than 2 x failover-timeout ago, or there is no quorum or no replica \
                         to promote",
                    );
                tracing::warn!("failover of {m} stalled: {line}");
                self.log.emit(line);
            }
        }
        let idle: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| {
                let quiet = since(f.last_event);
                (quiet >= self.idle
                    && (f.switched.is_some() || f.down_by.is_empty() || quiet >= self.idle * 10))
                    || (f.ended && f.switched.is_some_and(|s| since(s) >= PROBE_GRACE))
            })
            .map(|(m, _)| m.clone())
            .collect();
        let mut out = vec![];
        for m in idle {
            if let Some(f) = self.open.remove(&m) {
                if f.switched.is_some() {
                    out.extend(self.finish(f));
                } else {
                    self.log.emit(
                        Line::at(now, "failover_abandoned")
                            .field("master", &m)
                            .field("timeline", f.timeline())
                            .field("reason", "no confirmed +switch-master"),
                    );
                }
            }
        }
        out
    }

    /// A failover is done when it switched, ended, and the probe reported (or is not running).
    fn maybe_finish(&mut self, m: &str, _now: SystemTime) -> Vec<Outcome> {
        let done = self.open.get(m).is_some_and(|f| {
            f.switched.is_some() && f.ended && (f.probe.is_some() || !self.probe_enabled)
        });
        if !done {
            return vec![];
        }
        match self.open.remove(m) {
            Some(f) => self.finish(f),
            None => vec![],
        }
    }

    /// Follows which Sentinels see master `m` down and which are trying to carry out its open
    /// failover; ends that failover, reported as aborted, when it is over without a switch: no
    /// Sentinel sees the master down any more (all its nodes stopped for a while, a blip shorter
    /// than the failover) and none is still trying, or the last one trying gave up (a manual
    /// failover with nothing to promote). Left open, it would be taken for the start of the next
    /// real failover, with a downtime spanning both; ended while a Sentinel was still waiting for
    /// votes, that Sentinel's election would open a second one, taken for a manual failover.
    /// True when it ended.
    fn track_down(&mut self, m: &str, sentinel: &str, e: &Event, at: SystemTime) -> bool {
        let Some(f) = self.open.get_mut(m) else {
            return false;
        };
        match e.name.as_str() {
            "+sdown" => {
                f.down_by.insert(sentinel.to_string());
            }
            "-sdown" => {
                f.down_by.remove(sentinel);
            }
            n if n == "+try-failover"
                || n == "+elected-leader"
                || n.starts_with("+failover-state-") =>
            {
                f.acting.insert(sentinel.to_string());
            }
            n if ABORTS.contains(&n) => {
                f.acting.remove(sentinel);
            }
            _ => {}
        }
        let n = e.name.as_str();
        let over = f.switched.is_none()
            && f.down_by.is_empty()
            && f.acting.is_empty()
            && (n == "-sdown" || n == "-odown" || ABORTS.contains(&n));
        if !over {
            return false;
        }
        if let Some(f) = self.open.remove(m) {
            self.ended_without_switch(&f, &e.name, at);
        }
        true
    }

    /// Reports a failover that ended without a switch (`why`: the event that ended it).
    /// A master that only some Sentinels saw down for a moment (`+sdown`, then `-sdown`, no
    /// `+odown` or attempt) is `master_down_cleared`: no failover was ever begun.
    fn ended_without_switch(&self, f: &Failover, why: &str, at: SystemTime) {
        let begun = f
            .steps
            .iter()
            .any(|s| s.name != "+sdown" && s.name != "-sdown");
        let event = if begun {
            "failover_aborted"
        } else {
            "master_down_cleared"
        };
        let line = Line::at(at, event)
            .field("master", &f.master)
            .field_opt("master_addr", f.old.as_ref())
            .field("trigger", f.trigger.as_str())
            .field("started", humantime::format_rfc3339_millis(f.started))
            .field_opt(
                "duration_ms",
                at.duration_since(f.started).ok().map(|d| d.as_millis()),
            )
            .field("ended_by", why)
            .field("timeline", f.timeline());
        if begun {
            tracing::info!("failover of {} ended without a switch: {line}", f.master);
        }
        self.log.emit(line);
    }

    fn finish(&mut self, f: Failover) -> Vec<Outcome> {
        let l = mlabels(&f.master);
        self.metrics.failovers.get_or_create(&l).inc();
        if let Some(d) = f.duration() {
            self.metrics
                .failover_duration
                .get_or_create(&l)
                .observe(d.as_secs_f64());
        }
        if let Some(p) = &f.probe {
            self.metrics
                .write_downtime
                .get_or_create(&l)
                .observe(p.downtime.as_secs_f64());
            self.metrics
                .lost_writes
                .get_or_create(&l)
                .inc_by(p.lost.len() as u64);
        }
        let line = Line::new("failover_summary")
            .field("master", &f.master)
            .field_opt("old", f.old.as_ref())
            .field_opt("new", f.new.as_ref())
            .field("trigger", f.trigger.as_str())
            .field("started", humantime::format_rfc3339_millis(f.started))
            .field_opt("duration_ms", f.duration().map(|d| d.as_millis()))
            .field_opt("config_epoch", f.epoch);
        let line = probe_fields(line, f.probe.as_ref()).field("timeline", f.timeline());
        // The process log (docker logs, journald) has it too, not only the event log file.
        tracing::info!("failover of {}: {line}", f.master);
        self.log.emit(line);
        self.finished.push(f.clone());
        vec![Outcome::Ended(f)]
    }
}

/// The prober's figures for a change of master (a failover, or a restart in place), when it has
/// them.
fn probe_fields(line: Line, p: Option<&Switch>) -> Line {
    line.field_opt("write_downtime_ms", p.map(|p| p.downtime.as_millis()))
        .field_opt("lost_writes", p.map(|p| p.lost.len()))
        .field_opt("lost_replicated", p.map(|p| p.lost_replicated))
        .field_opt("writes_checked", p.map(|p| p.checked))
        .field_opt(
            "lost_seqs",
            p.filter(|p| !p.lost.is_empty()).map(|p| compress(&p.lost)),
        )
}

/// `1-4,9` for `[1,2,3,4,9]`.
fn compress(seqs: &[u64]) -> String {
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i < seqs.len() {
        let start = seqs[i];
        let mut end = start;
        while i + 1 < seqs.len() && seqs[i + 1] == end + 1 {
            i += 1;
            end = seqs[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::parse;

    struct Says(Option<(Addr, u64, usize)>);
    impl Confirm for Says {
        async fn current(&self, _m: &str) -> Option<(Addr, u64, usize)> {
            self.0.clone()
        }
    }

    fn addr(port: u16) -> Addr {
        Addr {
            ip: "127.0.0.1".into(),
            port,
        }
    }

    /// A tracker logging to a new `<name>-<pid>/events.log`, knowing `mymaster` at :6379, and
    /// the moment the test's events count from.
    fn fresh(name: &str) -> (std::path::PathBuf, Tracker, SystemTime) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t = tracker(&dir);
        t.set_current("mymaster", addr(6379));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        (dir, t, t0)
    }

    /// Feeds `(sentinel, event, payload, ms after t0)` to the tracker; what finished.
    async fn feed(
        t: &mut Tracker,
        seq: &[(&str, &str, String, u64)],
        t0: SystemTime,
        says: &Says,
    ) -> Vec<Outcome> {
        let mut out = vec![];
        for (s, name, payload, ms) in seq {
            let at = t0 + Duration::from_millis(*ms);
            out.extend(t.on_event(s, &parse(name, payload), at, says).await);
        }
        out
    }

    fn tracker(dir: &std::path::Path) -> Tracker {
        let log = Arc::new(LogFile::open(dir.join("events.log")).expect("log"));
        Tracker::new(
            log,
            Metrics::new(),
            Duration::from_secs(10),
            Duration::from_secs(60),
            true,
        )
    }

    /// What leader `s` sends from its election `at` ms after t0 to the switch of mymaster from
    /// :6379 to :6380 1.45 s later.
    fn promotion(s: &'static str, at: u64) -> Vec<(&'static str, &'static str, String, u64)> {
        let m = "master mymaster 127.0.0.1 6379";
        let slave = "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379";
        let switch = "mymaster 127.0.0.1 6379 127.0.0.1 6380";
        vec![
            (s, "+elected-leader", m.into(), at),
            (s, "+failover-state-select-slave", m.into(), at + 1),
            (s, "+selected-slave", slave.into(), at + 10),
            (s, "+promoted-slave", slave.into(), at + 750),
            (s, "+failover-end", m.into(), at + 1_350),
            (s, "+switch-master", switch.into(), at + 1_450),
        ]
    }

    /// A change of master no event announced (sentinel-watch was cut off with the old master) is
    /// found by reconcile: counted once, with the prober's figures, and the late +switch-master
    /// does not count it again.
    #[tokio::test]
    async fn a_change_of_master_heard_by_no_event_is_reconciled_once() {
        let (dir, mut t, t0) = fresh("sw-reconcile");
        let named = Some((addr(6380), 3, 3));
        // Agreeing with what is known, or once: nothing.
        assert!(
            t.reconcile("mymaster", Some((addr(6379), 2, 3)), t0)
                .is_empty()
        );
        assert!(t.reconcile("mymaster", named.clone(), t0).is_empty());
        assert!(
            t.reconcile("mymaster", None, t0).is_empty(),
            "no answer resets"
        );
        assert!(t.reconcile("mymaster", named.clone(), t0).is_empty());
        // Twice in a row: a missed failover, waiting for the prober.
        let out = t.reconcile("mymaster", named.clone(), t0 + Duration::from_secs(5));
        assert!(
            matches!(out.as_slice(), [Outcome::Switched(f)] if f.trigger == Trigger::Missed && f.old == Some(addr(6379)) && f.new == Some(addr(6380))),
            "{out:?}"
        );
        let probe = Switch {
            master: "mymaster".into(),
            last_old: crate::probe::Write {
                seq: 1,
                addr: addr(6379),
                run: "".into(),
                at: t0,
                replicas: 0,
            },
            first_new: crate::probe::Write {
                seq: 9,
                addr: addr(6380),
                run: "".into(),
                at: t0 + Duration::from_secs(6),
                replicas: 1,
            },
            downtime: Duration::from_secs(6),
            checked: 7,
            lost: vec![2, 3],
            lost_replicated: 1,
            restarted: false,
        };
        let out = t.on_probe(probe);
        assert!(
            matches!(out.as_slice(), [Outcome::Ended(f)] if f.probe.as_ref().is_some_and(|p| p.lost == vec![2, 3])),
            "{out:?}"
        );
        assert_eq!(t.finished.len(), 1);
        // Now known: no more reconciling, and the +switch-master heard late is not a new failover.
        assert!(t.reconcile("mymaster", named.clone(), t0).is_empty());
        assert!(t.reconcile("mymaster", named.clone(), t0).is_empty());
        let says = Says(named);
        let late = parse("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380");
        assert!(
            t.on_event("s1", &late, t0 + Duration::from_secs(9), &says)
                .await
                .is_empty()
        );
        assert!(t.open.is_empty());
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        assert!(log.contains("trigger=missed"), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_failover_from_three_sentinels_is_one_timeline_with_counts() {
        let (dir, mut t, t0) = fresh("sw-failover");
        let says = Says(Some((addr(6380), 2, 3)));
        let at = |ms| t0 + Duration::from_millis(ms);
        let m = "master mymaster 127.0.0.1 6379";
        let seq: Vec<(&str, &str, String, u64)> = vec![
            ("s1", "+sdown", m.into(), 0),
            ("s2", "+sdown", m.into(), 20),
            ("s3", "+sdown", m.into(), 40),
            ("s1", "+odown", format!("{m} #quorum 2/2"), 50),
            ("s1", "+new-epoch", "2".into(), 60),
            ("s1", "+try-failover", m.into(), 61),
            ("s2", "+vote-for-leader", "abc 2".into(), 70),
            ("s3", "+vote-for-leader", "abc 2".into(), 71),
            ("s1", "+elected-leader", m.into(), 80),
            ("s1", "+failover-state-select-slave", m.into(), 81),
            (
                "s1",
                "+selected-slave",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379".into(),
                90,
            ),
            (
                "s1",
                "+failover-state-send-slaveof-noone",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379".into(),
                91,
            ),
            (
                "s1",
                "+failover-state-wait-promotion",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379".into(),
                92,
            ),
            (
                "s1",
                "+promoted-slave",
                "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379".into(),
                900,
            ),
            ("s1", "+failover-state-reconf-slaves", m.into(), 901),
            ("s1", "+failover-end", m.into(), 1500),
            (
                "s1",
                "+switch-master",
                "mymaster 127.0.0.1 6379 127.0.0.1 6380".into(),
                1501,
            ),
            (
                "s2",
                "+switch-master",
                "mymaster 127.0.0.1 6379 127.0.0.1 6380".into(),
                1600,
            ),
            (
                "s3",
                "+switch-master",
                "mymaster 127.0.0.1 6379 127.0.0.1 6380".into(),
                1700,
            ),
        ];
        let outcomes = feed(&mut t, &seq, t0, &says).await;
        assert!(
            matches!(outcomes.as_slice(), [Outcome::Switched(_)]),
            "{outcomes:?}"
        );
        let switch = Switch {
            master: "mymaster".into(),
            last_old: crate::probe::Write {
                seq: 10,
                addr: addr(6379),
                run: "".into(),
                at: at(0),
                replicas: 1,
            },
            first_new: crate::probe::Write {
                seq: 30,
                addr: addr(6380),
                run: "".into(),
                at: at(2300),
                replicas: 1,
            },
            downtime: Duration::from_millis(2300),
            checked: 10,
            lost: vec![9, 10],
            lost_replicated: 2,
            restarted: false,
        };
        let done = t.on_probe(switch);
        let [Outcome::Ended(f)] = done.as_slice() else {
            panic!("{done:?}")
        };
        assert_eq!(f.trigger, Trigger::Automatic);
        assert_eq!(f.new, Some(addr(6380)));
        assert_eq!(f.duration(), Some(Duration::from_millis(1501)));
        let sdown = &f.steps[0];
        assert_eq!((sdown.name.as_str(), sdown.seen_by.len()), ("+sdown", 3));
        let sw = f
            .steps
            .iter()
            .find(|s| s.name == "+switch-master")
            .expect("switch");
        assert_eq!(sw.seen_by.len(), 3);
        assert!(
            f.timeline()
                .starts_with("+sdown@0ms(3) +odown@50ms(1) +new-epoch@60ms(1)"),
            "{}",
            f.timeline()
        );
        assert_eq!(t.current_of("mymaster"), Some(addr(6380)));
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        let summary = log
            .lines()
            .find(|l| l.contains("event=failover_summary"))
            .expect("summary");
        assert!(
            summary.contains("write_downtime_ms=2300")
                && summary.contains("lost_writes=2 lost_replicated=2")
                && summary.contains("lost_seqs=9-10"),
            "{summary}"
        );
        assert_eq!(
            log.lines().filter(|l| l.contains("name=+sdown")).count(),
            1,
            "deduplicated"
        );

        // The old master comes back as a replica: reported, nothing counted twice.
        let back = "slave 127.0.0.1:6379 127.0.0.1 6379 @ mymaster 127.0.0.1 6380";
        let more = t
            .on_event("s1", &parse("+convert-to-slave", back), at(9000), &says)
            .await;
        assert!(more.is_empty());
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        assert!(log.contains("event=old_master_rejoined"), "{log}");
        assert_eq!(
            log.lines()
                .filter(|l| l.contains("event=failover_summary"))
                .count(),
            1
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_stale_switch_master_is_not_believed() {
        let dir = std::env::temp_dir().join(format!("sw-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut t = tracker(&dir);
        t.set_current("mymaster", addr(6380));
        // A rejoining Sentinel republishes an old switch; the others say 6380 is master.
        let says = Says(Some((addr(6380), 5, 3)));
        let out = t
            .on_event(
                "s3",
                &parse("+switch-master", "mymaster 127.0.0.1 6380 127.0.0.1 6379"),
                SystemTime::now(),
                &says,
            )
            .await;
        assert!(out.is_empty());
        assert_eq!(t.current_of("mymaster"), Some(addr(6380)));
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        assert!(log.contains("event=stale_switch_master"), "{log}");
        assert!(t.open.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every node of the master stopped for a while (what `restore redis` does): the Sentinels
    /// start a failover, find no good replica and abort; the nodes come back. That attempt ends
    /// there, reported as aborted; the real failover two minutes later is summarised from its
    /// own first event (it used to inherit the aborted one's start: a downtime of minutes and
    /// the wrong trigger).
    #[tokio::test]
    async fn a_failover_aborted_while_the_master_was_away_is_not_the_start_of_the_next() {
        let (dir, mut t, t0) = fresh("sw-aborted");
        let says = Says(Some((addr(6380), 3, 3)));
        let at = |ms| t0 + Duration::from_millis(ms);
        let m = "master mymaster 127.0.0.1 6379";
        let mut seq: Vec<(&str, &str, String, u64)> = vec![
            ("s1", "+sdown", m.into(), 0),
            ("s2", "+sdown", m.into(), 10),
            ("s3", "+sdown", m.into(), 20),
            ("s1", "+odown", format!("{m} #quorum 3/2"), 30),
            ("s1", "+new-epoch", "2".into(), 40),
            ("s1", "+try-failover", m.into(), 41),
            ("s1", "+elected-leader", m.into(), 60),
            ("s1", "+failover-state-select-slave", m.into(), 61),
            ("s1", "-failover-abort-no-good-slave", m.into(), 70),
            ("s2", "-sdown", m.into(), 9_000),
            ("s3", "-sdown", m.into(), 9_010),
            ("s1", "-sdown", m.into(), 9_020),
            ("s1", "-odown", m.into(), 9_021),
        ];
        // Two minutes later, the master is killed for good.
        let late = 120_000;
        seq.extend([
            ("s1", "+sdown", m.into(), late),
            ("s2", "+sdown", m.into(), late + 10),
            ("s1", "+odown", format!("{m} #quorum 2/2"), late + 20),
            ("s1", "+new-epoch", "3".into(), late + 30),
            ("s1", "+try-failover", m.into(), late + 31),
            ("s2", "-failover-abort-not-elected", m.into(), late + 40),
        ]);
        seq.extend(promotion("s1", late + 50));
        let outcomes = feed(&mut t, &seq, t0, &says).await;
        assert!(
            matches!(outcomes.as_slice(), [Outcome::Switched(_)]),
            "{outcomes:?}"
        );
        let write = |seq, port, ms| crate::probe::Write {
            seq,
            addr: addr(port),
            run: "".into(),
            at: at(ms),
            replicas: 1,
        };
        let done = t.on_probe(Switch {
            master: "mymaster".into(),
            last_old: write(10, 6379, late),
            first_new: write(11, 6380, late + 1_600),
            downtime: Duration::from_millis(1_600),
            checked: 10,
            lost: vec![],
            lost_replicated: 0,
            restarted: false,
        });
        let [Outcome::Ended(f)] = done.as_slice() else {
            panic!("{done:?}")
        };
        assert_eq!(f.trigger, Trigger::Automatic);
        assert_eq!(f.started, at(late));
        assert_eq!(f.duration(), Some(Duration::from_millis(1_500)));
        assert!(f.timeline().starts_with("+sdown@0ms"), "{}", f.timeline());
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        let aborted: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("event=failover_aborted"))
            .collect();
        assert_eq!(aborted.len(), 1, "{log}");
        assert!(
            aborted[0].contains("trigger=automatic")
                && aborted[0].contains("ended_by=-sdown")
                && aborted[0].contains("duration_ms=9020"),
            "{}",
            aborted[0]
        );
        assert_eq!(
            log.matches("event=failover_summary").count(),
            1,
            "one failover counted: {log}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The lines of `dir/events.log` of one event kind.
    fn logged(dir: &std::path::Path, event: &str) -> Vec<String> {
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        let want = format!("event={event} ");
        log.lines()
            .filter(|l| l.contains(&want))
            .map(str::to_string)
            .collect()
    }

    /// Every node stopped for a few seconds (a Redis restore), then the master killed within the
    /// dedup window: the second +sdown and +odown come from the Sentinels that sent the first.
    /// They are a new failover's start, not duplicates: before, they were dropped, and the
    /// failover was opened by its +switch-master, taken for a manual one (the compose
    /// end-to-end test's drill once failed on exactly that).
    #[tokio::test]
    async fn the_master_down_again_seconds_after_a_blip_is_a_new_automatic_failover() {
        let (dir, mut t, t0) = fresh("sw-again");
        let says = Says(Some((addr(6380), 3, 3)));
        let m = "master mymaster 127.0.0.1 6379";
        let mut seq: Vec<(&str, &str, String, u64)> = vec![
            ("s1", "+sdown", m.into(), 0),
            ("s2", "+sdown", m.into(), 10),
            ("s1", "+odown", format!("{m} #quorum 2/2"), 20),
            ("s1", "+new-epoch", "2".into(), 30),
            ("s1", "+try-failover", m.into(), 31),
            ("s1", "+elected-leader", m.into(), 50),
            ("s1", "+failover-state-select-slave", m.into(), 51),
            ("s1", "-failover-abort-no-good-slave", m.into(), 60),
            ("s1", "-sdown", m.into(), 2_000),
            ("s2", "-sdown", m.into(), 2_010),
            ("s1", "-odown", m.into(), 2_011),
            // Killed: down again 6 s after the first +sdown. s1 tried last time, so s2 leads.
            ("s1", "+sdown", m.into(), 6_000),
            ("s2", "+sdown", m.into(), 6_010),
            ("s1", "+odown", format!("{m} #quorum 2/2"), 6_020),
            ("s2", "+new-epoch", "3".into(), 6_030),
            ("s2", "+try-failover", m.into(), 6_031),
        ];
        seq.extend(promotion("s2", 6_050));
        let outcomes = feed(&mut t, &seq, t0, &says).await;
        let [Outcome::Switched(f)] = outcomes.as_slice() else {
            panic!("{outcomes:?}")
        };
        assert_eq!(f.trigger, Trigger::Automatic, "{}", f.timeline());
        assert_eq!(f.started, t0 + Duration::from_millis(6_000));
        // Every step, including those s1 also sent during the blip.
        assert!(
            f.timeline().starts_with(
                "+sdown@0ms(2) +odown@20ms(1) +new-epoch@30ms(1) +try-failover@31ms(1) \
                 +elected-leader@50ms(1) +failover-state-select-slave@51ms(1)"
            ),
            "{}",
            f.timeline()
        );
        let aborted = logged(&dir, "failover_aborted");
        assert_eq!(aborted.len(), 1, "{aborted:?}");
        assert!(aborted[0].contains("ended_by=-sdown"), "{}", aborted[0]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The master killed while the Sentinels hold off (one tried a failover less than twice
    /// failover-timeout ago): nothing happens for longer than `failover_idle`. The failover
    /// stays open, is logged once as stalled, and when the Sentinels go ahead minutes later it
    /// is one automatic failover from the master's +sdown. Before, it was abandoned at
    /// `failover_idle` and the late one taken for a manual failover (the compose end-to-end
    /// test saw that, with a write downtime of 83 s).
    #[tokio::test]
    async fn a_failover_the_sentinels_hold_off_stays_open_and_is_logged_as_stalled() {
        let (dir, mut t, t0) = fresh("sw-stalled");
        let says = Says(Some((addr(6380), 3, 3)));
        let m = "master mymaster 127.0.0.1 6379";
        let down = [
            ("s1", "+sdown", m.to_string(), 0),
            ("s2", "+sdown", m.into(), 10),
            ("s1", "+odown", format!("{m} #quorum 2/2"), 20),
        ];
        assert!(feed(&mut t, &down, t0, &says).await.is_empty());
        for secs in [70, 90] {
            assert!(t.tick(t0 + Duration::from_secs(secs)).is_empty());
            assert_eq!(t.open.len(), 1, "still open at {secs} s");
        }
        let stalled = logged(&dir, "failover_stalled");
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert!(
            stalled[0].contains("seen_down_by=2") && stalled[0].contains("down_ms=70000"),
            "{}",
            stalled[0]
        );
        let late = 100_000;
        let mut failover = vec![
            ("s2", "+new-epoch", "3".to_string(), late),
            ("s2", "+try-failover", m.into(), late + 1),
        ];
        failover.extend(promotion("s2", late + 50));
        let outcomes = feed(&mut t, &failover, t0, &says).await;
        let [Outcome::Switched(f)] = outcomes.as_slice() else {
            panic!("{outcomes:?}")
        };
        assert_eq!(f.trigger, Trigger::Automatic, "{}", f.timeline());
        assert_eq!(f.started, t0);
        assert_eq!(f.duration(), Some(Duration::from_millis(late + 1_500)));
        assert!(logged(&dir, "failover_abandoned").is_empty());
        let _ = std::fs::remove_dir_all(&dir);

        // Down for ten times failover_idle with no event at all (a -sdown missed while a
        // Sentinel was out of reach, say): given up, so that it cannot swallow the next one.
        let (dir, mut t, t0) = fresh("sw-stalled-cap");
        assert!(feed(&mut t, &down, t0, &says).await.is_empty());
        assert!(t.tick(t0 + Duration::from_secs(599)).is_empty());
        assert_eq!(t.open.len(), 1);
        assert!(t.tick(t0 + Duration::from_secs(601)).is_empty());
        assert!(t.open.is_empty());
        assert_eq!(logged(&dir, "failover_abandoned").len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The master back while a Sentinel is still waiting for votes: the attempt stays open until
    /// every Sentinel that tried has given up. Before, it ended at the last -sdown, and the late
    /// +elected-leader opened a second failover, taken for a manual one.
    #[tokio::test]
    async fn an_attempt_ends_when_every_sentinel_that_tried_has_given_up() {
        let (dir, mut t, t0) = fresh("sw-trying");
        let says = Says(Some((addr(6379), 2, 3)));
        let m = "master mymaster 127.0.0.1 6379";
        let seq: Vec<(&str, &str, String, u64)> = vec![
            ("s1", "+sdown", m.into(), 0),
            ("s2", "+sdown", m.into(), 10),
            ("s3", "+sdown", m.into(), 20),
            ("s1", "+odown", format!("{m} #quorum 3/2"), 30),
            ("s1", "+new-epoch", "2".into(), 40),
            ("s1", "+try-failover", m.into(), 41),
            ("s2", "+try-failover", m.into(), 45),
            ("s1", "-sdown", m.into(), 900),
            ("s2", "-sdown", m.into(), 910),
            ("s3", "-sdown", m.into(), 920),
            ("s1", "-odown", m.into(), 921),
            ("s2", "-failover-abort-not-elected", m.into(), 1_500),
            ("s1", "+elected-leader", m.into(), 1_600),
            ("s1", "+failover-state-select-slave", m.into(), 1_601),
        ];
        assert!(feed(&mut t, &seq, t0, &says).await.is_empty());
        assert_eq!(t.open.len(), 1, "s1 is still at work");
        let last = [("s1", "-failover-abort-no-good-slave", m.to_string(), 1_700)];
        assert!(feed(&mut t, &last, t0, &says).await.is_empty());
        assert!(t.open.is_empty(), "{:?}", t.open.keys());
        let aborted = logged(&dir, "failover_aborted");
        assert_eq!(aborted.len(), 1, "{aborted:?}");
        assert!(
            aborted[0].contains("trigger=automatic")
                && aborted[0].contains("ended_by=-failover-abort-no-good-slave")
                && aborted[0].contains("duration_ms=1700"),
            "{}",
            aborted[0]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One Sentinel sees the master down for a moment: nothing was begun, nothing stays open.
    #[tokio::test]
    async fn a_subjective_down_that_clears_leaves_nothing_open() {
        let (dir, mut t, t0) = fresh("sw-blip");
        let says = Says(Some((addr(6379), 1, 3)));
        let m = "master mymaster 127.0.0.1 6379";
        let seq = [
            ("s2", "+sdown", m.to_string(), 0),
            ("s2", "-sdown", m.into(), 900),
        ];
        assert!(feed(&mut t, &seq, t0, &says).await.is_empty());
        assert!(t.open.is_empty(), "{:?}", t.open.keys());
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        assert!(
            log.contains("event=master_down_cleared") && !log.contains("failover_aborted"),
            "{log}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A `SENTINEL FAILOVER` that finds no replica to promote ends with its one Sentinel's abort.
    #[tokio::test]
    async fn a_manual_failover_that_aborts_ends_there() {
        let (dir, mut t, t0) = fresh("sw-manual-abort");
        let says = Says(Some((addr(6379), 2, 3)));
        let m = "master mymaster 127.0.0.1 6379";
        for (name, payload, ms) in [
            ("+new-epoch", "2".to_string(), 0),
            ("+try-failover", m.into(), 1),
            ("+failover-state-select-slave", m.into(), 2),
            ("-failover-abort-no-good-slave", m.into(), 3),
        ] {
            let at = t0 + Duration::from_millis(ms);
            assert!(
                t.on_event("s1", &parse(name, &payload), at, &says)
                    .await
                    .is_empty()
            );
        }
        assert!(t.open.is_empty(), "{:?}", t.open.keys());
        let log = std::fs::read_to_string(dir.join("events.log")).expect("log");
        assert!(
            log.contains("event=failover_aborted")
                && log.contains("trigger=manual")
                && log.contains("ended_by=-failover-abort-no-good-slave"),
            "{log}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compresses_ranges() {
        assert_eq!(compress(&[1, 2, 3, 4, 9, 11, 12]), "1-4,9,11-12");
        assert_eq!(compress(&[]), "");
    }
}

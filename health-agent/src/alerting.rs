//! Where state changes go: a line in health.log (logfmt) and, when configured, a webhook.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::logfmt::{Line, LogFile};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::checks::State;
use crate::config::Webhook;
use crate::state::Event;

/// The JSON a webhook receives.
#[derive(Debug, Serialize)]
pub struct Notice<'a> {
    pub check: &'a str,
    pub kind: &'a str,
    pub state: State,
    pub previous: Option<State>,
    pub reason: &'a str,
    pub duration_seconds: u64,
    pub reminder: bool,
    #[serde(with = "common::catalog::rfc3339")]
    pub time: SystemTime,
}

pub struct Alerting {
    pub log: Arc<LogFile>,
    webhook: Option<Webhook>,
    cancel: CancellationToken,
}

impl Alerting {
    pub fn new(log: Arc<LogFile>, webhook: Option<Webhook>, cancel: CancellationToken) -> Self {
        Self {
            log,
            webhook,
            cancel,
        }
    }

    /// Writes the line for an event and fires the webhook (in the background: a slow webhook
    /// never delays the next check cycle).
    pub fn event(self: &Arc<Self>, check: &str, kind: &str, e: &Event, now: SystemTime) {
        let (line, notice) = match e {
            // Flapping is a line (and the health_check_flapping gauge), not a webhook: the state
            // the webhook reports has not changed.
            Event::Flapping { flips, reason } => {
                self.log.emit(
                    Line::at(now, "flapping")
                        .field("check", check)
                        .field("kind", kind)
                        .field("changes", flips)
                        .field("of_results", crate::state::FLAP_WINDOW)
                        .field("last_reason", reason),
                );
                return;
            }
            Event::StoppedFlapping { flips } => {
                self.log.emit(
                    Line::at(now, "stopped_flapping")
                        .field("check", check)
                        .field("kind", kind)
                        .field("changes", flips)
                        .field("of_results", crate::state::FLAP_WINDOW),
                );
                return;
            }
            Event::Changed {
                from,
                to,
                reason,
                lasted,
            } => (
                Line::at(now, "state_change")
                    .field("check", check)
                    .field("kind", kind)
                    .field("state", to)
                    .field("previous", from)
                    .field("reason", reason)
                    .field("previous_lasted", fmt(*lasted)),
                Notice {
                    check,
                    kind,
                    state: *to,
                    previous: Some(*from),
                    reason,
                    duration_seconds: lasted.as_secs(),
                    reminder: false,
                    time: now,
                },
            ),
            Event::StillBad {
                state,
                reason,
                lasted,
            } => (
                Line::at(now, "still_bad")
                    .field("check", check)
                    .field("kind", kind)
                    .field("state", state)
                    .field("reason", reason)
                    .field("for", fmt(*lasted)),
                Notice {
                    check,
                    kind,
                    state: *state,
                    previous: None,
                    reason,
                    duration_seconds: lasted.as_secs(),
                    reminder: true,
                    time: now,
                },
            ),
        };
        self.log.emit(line);
        if let Some(w) = &self.webhook {
            match serde_json::to_string(&notice) {
                Ok(body) => {
                    let (w, cancel) = (w.clone(), self.cancel.clone());
                    tokio::spawn(async move { post(&w, body, &cancel).await });
                }
                Err(e) => tracing::error!("webhook body: {e}"),
            }
        }
    }
}

async fn post(w: &Webhook, body: String, cancel: &CancellationToken) {
    let backoff = common::retry::Backoff {
        min: Duration::from_millis(500),
        max: Duration::from_secs(10),
        max_attempts: w.attempts.max(1),
    };
    let r = common::retry::retry(&backoff, cancel, "webhook", || {
        let body = body.clone();
        async move {
            match common::httpc::post_json(&w.url, body, w.timeout, w.ca_file.as_deref()).await {
                Ok(r) if (200..300).contains(&r.status) => Ok(()),
                Ok(r) => Err(common::retry::Failure::Transient(format!(
                    "{} answered {}",
                    w.url, r.status
                ))),
                Err(e) => Err(common::retry::Failure::Transient(format!("{e:#}"))),
            }
        }
    })
    .await;
    if let Err(e) = r {
        tracing::error!("webhook {} failed: {e}", w.url);
    }
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

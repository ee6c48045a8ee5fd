//! Hooks on +switch-master and +failover-end: a command (the event as `OUTRIGGER_*` env vars and
//! JSON on stdin) and/or a webhook (JSON POST), each with a timeout and retries. A failing hook is
//! logged, never fatal, and never delays the event stream (hooks run on their own tasks).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::logfmt::{Line, LogFile};
use common::retry::{Backoff, Failure, retry};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::config::Hooks;
use crate::failover::{Failover, Outcome};

/// What a hook receives.
#[derive(Debug, Clone, Serialize)]
pub struct HookEvent {
    /// `switch-master` or `failover-end`.
    pub event: &'static str,
    pub master: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub config_epoch: Option<u64>,
    pub duration_ms: Option<u128>,
    pub write_downtime_ms: Option<u128>,
    pub lost_writes: Option<usize>,
    pub timeline: String,
}

impl HookEvent {
    pub fn from_outcome(o: &Outcome) -> Self {
        let (event, f): (&'static str, &Failover) = match o {
            Outcome::Switched(f) => ("switch-master", f),
            Outcome::Ended(f) => ("failover-end", f),
        };
        Self {
            event,
            master: f.master.clone(),
            old: f.old.as_ref().map(ToString::to_string),
            new: f.new.as_ref().map(ToString::to_string),
            config_epoch: f.epoch,
            duration_ms: f.duration().map(|d| d.as_millis()),
            write_downtime_ms: f.probe.as_ref().map(|p| p.downtime.as_millis()),
            lost_writes: f.probe.as_ref().map(|p| p.lost.len()),
            timeline: f.timeline(),
        }
    }
}

/// Starts the configured hooks for an outcome, in the background.
pub fn fire(hooks: &Hooks, log: &Arc<LogFile>, o: &Outcome, cancel: &CancellationToken) {
    if hooks.command.is_empty() && hooks.webhook.is_none() {
        return;
    }
    let ev = HookEvent::from_outcome(o);
    let (hooks, log, cancel) = (hooks.clone(), log.clone(), cancel.clone());
    tokio::spawn(async move {
        let json = match serde_json::to_string(&ev) {
            Ok(j) => j,
            Err(e) => return tracing::error!("hook payload: {e}"),
        };
        let backoff = Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(10),
            max_attempts: hooks.attempts.max(1),
        };
        if !hooks.command.is_empty() {
            let r = retry(&backoff, &cancel, "hook command", || {
                run_command(&hooks, &ev, &json)
            })
            .await;
            report(&log, &ev, "command", r.err().map(|e| e.to_string()));
        }
        if let Some(url) = &hooks.webhook {
            let r = retry(&backoff, &cancel, "hook webhook", || async {
                match common::httpc::post_json(
                    url,
                    json.clone(),
                    hooks.timeout,
                    hooks.webhook_ca_file.as_deref(),
                )
                .await
                {
                    Ok(r) if (200..300).contains(&r.status) => Ok(()),
                    Ok(r) => Err(Failure::Transient(format!("{url} answered {}", r.status))),
                    Err(e) => Err(Failure::Transient(format!("{e:#}"))),
                }
            })
            .await;
            report(&log, &ev, "webhook", r.err().map(|e| e.to_string()));
        }
    });
}

fn report(log: &LogFile, ev: &HookEvent, kind: &str, error: Option<String>) {
    match error {
        None => log.emit(
            Line::new("hook_done")
                .field("hook", kind)
                .field("for", ev.event)
                .field("master", &ev.master),
        ),
        Some(e) => {
            tracing::error!("{kind} hook for {} failed: {e}", ev.event);
            log.emit(
                Line::new("hook_failed")
                    .field("hook", kind)
                    .field("for", ev.event)
                    .field("master", &ev.master)
                    .field("error", e),
            );
        }
    }
}

async fn run_command(hooks: &Hooks, ev: &HookEvent, json: &str) -> Result<(), Failure<String>> {
    let (program, args) = hooks
        .command
        .split_first()
        .ok_or_else(|| Failure::Permanent("empty command".to_string()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("OUTRIGGER_EVENT", ev.event)
        .env("OUTRIGGER_MASTER", &ev.master)
        .env("OUTRIGGER_OLD_MASTER", ev.old.as_deref().unwrap_or(""))
        .env("OUTRIGGER_NEW_MASTER", ev.new.as_deref().unwrap_or(""))
        .env(
            "OUTRIGGER_LOST_WRITES",
            ev.lost_writes.map(|n| n.to_string()).unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Permanent(format!("{program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(json.as_bytes()).await;
    }
    match tokio::time::timeout(hooks.timeout, child.wait_with_output()).await {
        Err(_) => Err(Failure::Transient(format!(
            "{program} did not finish within {:?}",
            hooks.timeout
        ))),
        Ok(Err(e)) => Err(Failure::Transient(format!("{program}: {e}"))),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(Failure::Transient(format!(
            "{program} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

//! `POST /alerts`: an Alertmanager webhook receiver. Each alert of a notification becomes one line
//! in health.log (`event=alert`), beside the checks' own state changes, so that the file operators
//! tail has every alert of the stack. The compose stack's Alertmanager posts here by default.
//!
//! The body is Alertmanager's webhook payload (version 4): `{"status", "alerts": [{"status",
//! "labels", "annotations", "startsAt", "endsAt", "fingerprint"}], ...}`. Answers 200 once every
//! line is written; 400 for a body that is not such a payload (naming what is wrong); 500 when
//! health.log cannot be written (Alertmanager then retries).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use common::http::{Reply, StatusCode};
use common::logfmt::{Line, LogFile};
use serde::Deserialize;

use crate::metrics::Metrics;

/// Alertmanager's webhook payload (the fields used).
#[derive(Debug, Deserialize)]
pub struct Notification {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Parses a webhook body.
pub fn parse(body: &[u8]) -> Result<Notification, String> {
    serde_json::from_slice(body).map_err(|e| format!("not an Alertmanager webhook payload: {e}"))
}

/// The health.log line of one alert: alertname, status, severity, summary first; the other
/// labels as `label_<name>`.
pub fn line(a: &Alert, now: SystemTime) -> Line {
    let mut l = Line::at(now, "alert")
        .field(
            "alertname",
            a.labels.get("alertname").map_or("-", String::as_str),
        )
        .field("status", &a.status)
        .field_opt("severity", a.labels.get("severity"))
        .field_opt("summary", a.annotations.get("summary"))
        .field_opt("description", a.annotations.get("description"));
    for (k, v) in &a.labels {
        if k != "alertname" && k != "severity" {
            l = l.field(&format!("label_{k}"), v);
        }
    }
    l.field_opt("starts_at", a.starts_at.as_ref())
        .field_opt(
            "ends_at",
            a.ends_at.as_ref().filter(|e| !e.starts_with("0001-")),
        )
        .field_opt("fingerprint", a.fingerprint.as_ref())
}

/// Handles one POST.
pub fn receive(body: &[u8], log: &LogFile, metrics: &Metrics) -> Reply {
    let n = match parse(body) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("POST /alerts: {e}");
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    let now = SystemTime::now();
    for a in &n.alerts {
        if let Err(e) = log.write(&line(a, now)) {
            tracing::error!("POST /alerts: cannot write {}: {e}", log.path().display());
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write {}: {e}\n", log.path().display()),
            );
        }
        metrics
            .alerts_received
            .get_or_create(&vec![("status".to_string(), a.status.clone())])
            .inc();
    }
    text(
        StatusCode::OK,
        format!("{} alert(s) written\n", n.alerts.len()),
    )
}

fn text(status: StatusCode, body: String) -> Reply {
    Reply {
        status,
        content_type: "text/plain",
        body,
    }
}

/// The route for [`common::http::Routes::post`].
pub fn route(log: Arc<LogFile>, metrics: Metrics) -> common::http::PostHandler {
    Arc::new(move |body| {
        let (log, metrics) = (log.clone(), metrics.clone());
        Box::pin(async move { receive(&body, &log, &metrics) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Alertmanager 0.25 posted for a firing alert (recorded), and a resolved one.
    const FIRING: &str = r#"{"receiver":"webhook","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"RedisFailoverHappened","instance":"sentinel-watch:9403","job":"sentinel-watch","master":"mymaster","severity":"warning"},"annotations":{"summary":"Redis master mymaster failed over"},"startsAt":"2026-12-03T01:40:12.345Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"4f1c0e2b6a3d9e11"}],"groupLabels":{"alertname":"RedisFailoverHappened"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093","version":"4","groupKey":"{}:{alertname=\"RedisFailoverHappened\"}","truncatedAlerts":0}"#;

    #[test]
    fn a_firing_alert_becomes_one_line_with_its_labels() {
        let n = parse(FIRING.as_bytes()).expect("payload");
        assert_eq!(n.alerts.len(), 1);
        let l = line(&n.alerts[0], SystemTime::UNIX_EPOCH).to_string();
        for want in [
            "event=alert",
            "alertname=RedisFailoverHappened",
            "status=firing",
            "severity=warning",
            "summary=\"Redis master mymaster failed over\"",
            "label_master=mymaster",
            "label_job=sentinel-watch",
            "starts_at=2026-12-03T01:40:12.345Z",
            "fingerprint=4f1c0e2b6a3d9e11",
        ] {
            assert!(l.contains(want), "{want} missing in {l}");
        }
        // Alertmanager's "no end yet" is not an end.
        assert!(!l.contains("ends_at"), "{l}");
        // The line parses back.
        common::logfmt::parse(&l).expect("parses");
    }

    #[test]
    fn a_body_that_is_not_a_payload_is_refused_with_the_reason() {
        for bad in ["", "{}", "[1]", "{\"alerts\": [{}]}", "not json"] {
            let e = parse(bad.as_bytes()).expect_err("refused");
            assert!(
                e.starts_with("not an Alertmanager webhook payload"),
                "{bad}: {e}"
            );
        }
    }
}

//! HTTP endpoints (status, body substring, latency) and TCP endpoints (connect).

use std::time::Instant;

use super::{Outcome, State};
use crate::config::{HttpCheck, TcpCheck};

pub async fn http(c: &HttpCheck) -> Outcome {
    let started = Instant::now();
    // The check's own timeout bounds this; the client's is a backstop.
    let resp = match common::httpc::get(
        &c.url,
        std::time::Duration::from_secs(3600),
        c.ca_file.as_deref(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::crit(format!("{e:#}")),
    };
    let took = started.elapsed();
    if resp.status != c.status {
        return Outcome::crit(format!(
            "{} answered {} (expected {})",
            c.url, resp.status, c.status
        ));
    }
    if let Some(want) = &c.body_contains
        && !resp.text().contains(want.as_str())
    {
        return Outcome::crit(format!("{} body does not contain {want:?}", c.url));
    }
    let state = if took > c.latency_warn {
        State::Warn
    } else {
        State::Ok
    };
    Outcome {
        state,
        reason: format!(
            "{} answered {} in {}ms (warn {}ms)",
            c.url,
            resp.status,
            took.as_millis(),
            c.latency_warn.as_millis()
        ),
    }
}

pub async fn tcp(c: &TcpCheck) -> Outcome {
    let started = Instant::now();
    match tokio::net::TcpStream::connect(&c.address).await {
        Ok(_) => Outcome::ok(format!(
            "{} accepted in {}ms",
            c.address,
            started.elapsed().as_millis()
        )),
        Err(e) => Outcome::crit(format!("{}: {e}", c.address)),
    }
}

//! One task per Sentinel: `PSUBSCRIBE *`, every message parsed and sent on, reconnect and
//! resubscribe with backoff. A Sentinel that is down is reported; the others keep being followed.
//!
//! A subscription alone cannot tell a quiet Sentinel from a hung one (SIGSTOPped, or cut off by a
//! partition that leaves the TCP connection open): a second connection PINGs it every third of
//! `down_after`, and a PING unanswered within `down_after` reports it down and drops the
//! subscription, which is then re-made with backoff.

use std::time::{Duration, SystemTime};

use common::RedisSettings;
use common::retry::{Backoff, Failure, RetryError, retry};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, parse};

/// What a watcher sends.
#[derive(Debug, Clone)]
pub enum Message {
    Event {
        sentinel: String,
        event: Event,
        at: SystemTime,
    },
    /// The subscription to this Sentinel is live (true) or lost (false).
    Link {
        sentinel: String,
        up: bool,
        error: Option<String>,
    },
}

/// Follows one Sentinel until cancelled.
pub async fn watch(
    addr: String,
    auth: RedisSettings,
    backoff: Backoff,
    down_after: Duration,
    tx: mpsc::UnboundedSender<Message>,
    cancel: CancellationToken,
) {
    let Some((host, port)) = crate::config::split_addr(&addr) else {
        return;
    };
    let settings = auth.at(host, port);
    loop {
        let subscribed = retry(&backoff, &cancel, &format!("sentinel {addr}"), || async {
            let client = settings
                .client()
                .map_err(|e| Failure::Permanent(format!("{e:#}")))?;
            let connect = client.get_async_pubsub();
            let mut pubsub = match tokio::time::timeout(settings.timeout, connect).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    let _ = tx.send(Message::Link {
                        sentinel: addr.clone(),
                        up: false,
                        error: Some(e.to_string()),
                    });
                    return Err(Failure::Transient(e.to_string()));
                }
                Err(_) => {
                    let _ = tx.send(Message::Link {
                        sentinel: addr.clone(),
                        up: false,
                        error: Some("connect timed out".into()),
                    });
                    return Err(Failure::Transient("connect timed out".into()));
                }
            };
            let subscribe = async {
                pubsub.psubscribe("*").await?;
                client.get_multiplexed_async_connection().await
            };
            let pinger = match tokio::time::timeout(down_after, subscribe).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(Failure::Transient(e.to_string())),
                Err(_) => {
                    let _ = tx.send(Message::Link {
                        sentinel: addr.clone(),
                        up: false,
                        error: Some(format!("no answer within {down_after:?}")),
                    });
                    return Err(Failure::Transient("subscribe timed out".into()));
                }
            };
            Ok((pubsub, pinger))
        })
        .await;
        let (pubsub, mut pinger) = match subscribed {
            Ok(p) => p,
            Err(RetryError::Cancelled) => return,
            Err(e) => {
                tracing::error!("sentinel {addr}: giving up: {e}");
                return;
            }
        };
        let _ = tx.send(Message::Link {
            sentinel: addr.clone(),
            up: true,
            error: None,
        });
        let mut stream = pubsub.into_on_message();
        let mut ping = tokio::time::interval((down_after / 3).max(Duration::from_millis(100)));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost = loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = stream.next() => m,
                _ = ping.tick() => {
                    let cmd = redis::cmd("PING");
                    let pong = cmd.query_async::<String>(&mut pinger);
                    match tokio::time::timeout(down_after, pong).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => break format!("PING: {e}"),
                        Err(_) => break format!("no answer to PING within {down_after:?}"),
                    }
                }
            };
            let Some(msg) = msg else {
                break "connection closed".to_string();
            };
            let payload: String = msg.get_payload().unwrap_or_default();
            let event = parse(msg.get_channel_name(), &payload);
            let _ = tx.send(Message::Event {
                sentinel: addr.clone(),
                event,
                at: SystemTime::now(),
            });
        };
        let _ = tx.send(Message::Link {
            sentinel: addr.clone(),
            up: false,
            error: Some(lost),
        });
    }
}

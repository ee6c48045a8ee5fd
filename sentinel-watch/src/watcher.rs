//! One task per Sentinel: `PSUBSCRIBE *`, every message parsed and sent on, reconnect and
//! resubscribe with backoff. A Sentinel that is down is reported; the others keep being followed.

use std::time::SystemTime;

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
            pubsub
                .psubscribe("*")
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
            Ok(pubsub)
        })
        .await;
        let pubsub = match subscribed {
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
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = stream.next() => m,
            };
            let Some(msg) = msg else { break };
            let payload: String = msg.get_payload().unwrap_or_default();
            let event = parse(msg.get_channel_name(), &payload);
            let _ = tx.send(Message::Event {
                sentinel: addr.clone(),
                event,
                at: SystemTime::now(),
            });
        }
        let _ = tx.send(Message::Link {
            sentinel: addr.clone(),
            up: false,
            error: Some("connection closed".into()),
        });
    }
}

//! The event bus across instances: Redis pub/sub.
//!
//! An event is delivered to this instance's subscribers at once and
//! published on one Redis channel; every other instance (gateways and
//! workers) relays what it receives to its own subscribers. Each instance
//! tags what it publishes, so it never delivers its own events twice. If
//! Redis is down, events still reach local subscribers, and the others catch
//! up by re-reading the database.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::{CHANNEL_CAPACITY, Event, EventBus};
use crate::versions::Versions;

#[derive(Serialize, Deserialize)]
struct Wire {
    origin: Uuid,
    event: Event,
}

pub struct RedisBus {
    origin: Uuid,
    local: broadcast::Sender<Event>,
    outgoing: mpsc::UnboundedSender<Event>,
    versions: Arc<Versions>,
}

impl RedisBus {
    /// Start relaying events through `channel` on the Redis at `client`.
    pub fn start(
        client: redis::Client,
        connection: ConnectionManager,
        channel: String,
        versions: Arc<Versions>,
    ) -> Self {
        let origin = Uuid::new_v4();
        let (local, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (outgoing, mut pending) = mpsc::unbounded_channel::<Event>();

        let publish_channel = channel.clone();
        tokio::spawn(async move {
            let mut connection = connection;
            while let Some(event) = pending.recv().await {
                let Ok(payload) = serde_json::to_string(&Wire { origin, event }) else {
                    continue;
                };
                if let Err(e) = connection
                    .publish::<_, _, ()>(&publish_channel, payload)
                    .await
                {
                    tracing::warn!(error = %e, "could not publish an event to Redis");
                }
            }
        });

        let relay = local.clone();
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            if failures > 0 {
                                tracing::info!("event relay reconnected to Redis");
                            }
                            failures = 0;
                            let mut messages = pubsub.into_on_message();
                            while let Some(message) = messages.next().await {
                                let Ok(wire) =
                                    serde_json::from_slice::<Wire>(message.get_payload_bytes())
                                else {
                                    continue;
                                };
                                if wire.origin != origin {
                                    let _ = relay.send(wire.event);
                                }
                            }
                            tracing::warn!("event relay lost its Redis subscription");
                        }
                        Err(e) => tracing::warn!(error = %e, "event relay cannot subscribe"),
                    },
                    Err(e) => {
                        if failures == 0 {
                            tracing::warn!(error = %e, "event relay cannot reach Redis");
                        }
                    }
                }
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(100 * u64::from(failures.min(20)));
                tokio::time::sleep(wait).await;
            }
        });

        RedisBus {
            origin,
            local,
            outgoing,
            versions,
        }
    }

    pub fn origin(&self) -> Uuid {
        self.origin
    }
}

impl EventBus for RedisBus {
    fn versions(&self) -> &Arc<Versions> {
        &self.versions
    }

    fn publish(&self, event: Event) {
        let _ = self.local.send(event.clone());
        let _ = self.outgoing.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.local.subscribe()
    }
}

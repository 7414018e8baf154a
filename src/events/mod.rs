//! Domain events and the bus that carries them.
//!
//! Domain code publishes an [`Event`] after the database commit; the
//! subscriptions and anything else interested read them from the bus. The
//! in-process bus is a broadcast channel; with Redis configured the same
//! events also cross process boundaries (gateways, workers).
//!
//! Events are hints, never the source of truth: a receiver that lags or
//! misses one re-reads the database.

pub mod redis;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::versions::Versions;

/// A stored message, as events carry it: subscribers build their answers
/// from it without reading the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: i64,
    pub room_id: i64,
    pub sender_id: Option<i64>,
    pub text: String,
    pub sent_at: DateTime<Utc>,
    pub task_id: Option<Uuid>,
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reply_to_id: Option<i64>,
}

impl From<&entity::message::Model> for StoredMessage {
    fn from(m: &entity::message::Model) -> Self {
        StoredMessage {
            id: m.id,
            room_id: m.room_id,
            sender_id: m.sender_id,
            text: m.text.clone(),
            sent_at: m.sent_at,
            task_id: m.task_id,
            seq: m.seq,
            edited_at: m.edited_at,
            deleted_at: m.deleted_at,
            reply_to_id: m.reply_to_id,
        }
    }
}

impl From<StoredMessage> for entity::message::Model {
    fn from(m: StoredMessage) -> Self {
        entity::message::Model {
            id: m.id,
            room_id: m.room_id,
            sender_id: m.sender_id,
            text: m.text,
            sent_at: m.sent_at,
            task_id: m.task_id,
            seq: m.seq,
            edited_at: m.edited_at,
            deleted_at: m.deleted_at,
            reply_to_id: m.reply_to_id,
        }
    }
}

/// Something that happened, as seen by other parts of the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A task changed state.
    TaskUpdated { task_id: Uuid, state: String },
    /// A message was stored.
    MessageStored {
        message: StoredMessage,
        /// The room's version once this message is in it (0: unknown).
        #[serde(default)]
        room_version: u64,
    },
    /// A message was edited or deleted (then it is a tombstone): the message
    /// as it is now, and the number of the change among its room's events.
    MessageChanged {
        message: StoredMessage,
        seq: i64,
        /// The room's version once the change is in it (0: unknown).
        #[serde(default)]
        room_version: u64,
    },
    /// A user put an emoji on a message, or took it off.
    ReactionChanged {
        room_id: i64,
        message_id: i64,
        user_id: i64,
        emoji: String,
        added: bool,
        seq: i64,
    },
    /// A user joined or left a room (or a direct room was created for them).
    MembershipChanged {
        room_id: i64,
        user_id: i64,
        /// True for a join, false for a leave.
        #[serde(default)]
        joined: bool,
        /// The change's number among the room's events (0: unknown).
        #[serde(default)]
        seq: i64,
    },
    /// A member started or stopped typing in a room. Never stored.
    Typing {
        room_id: i64,
        user_id: i64,
        typing: bool,
        /// When the indicator lapses unless renewed.
        expires_at: DateTime<Utc>,
    },
    /// Some of a user's sessions ended (a token revoked, the account
    /// deleted): every instance checks the live connections of that user
    /// again. Carries nothing secret.
    SessionsEnded { user_id: i64 },
    /// A user came online (a first live connection on any instance) or
    /// went offline (the last one closed, or its instance stopped beating).
    PresenceChanged {
        user_id: i64,
        online: bool,
        last_seen_at: Option<DateTime<Utc>>,
    },
}

impl Event {
    /// The room an event happened in, if it happened in one.
    pub fn room_id(&self) -> Option<i64> {
        match self {
            Event::MessageStored { message, .. } | Event::MessageChanged { message, .. } => {
                Some(message.room_id)
            }
            Event::ReactionChanged { room_id, .. }
            | Event::MembershipChanged { room_id, .. }
            | Event::Typing { room_id, .. } => Some(*room_id),
            Event::TaskUpdated { .. }
            | Event::PresenceChanged { .. }
            | Event::SessionsEnded { .. } => None,
        }
    }
}

/// Publish and subscribe to events.
pub trait EventBus: Send + Sync {
    /// The versions of the data these events change: writers bump them
    /// before they answer, caches check them before they serve.
    fn versions(&self) -> &Arc<Versions>;
    /// Publish an event to every subscriber (on every instance). Never fails:
    /// a lost event is caught up by receivers re-reading the database.
    fn publish(&self, event: Event);
    /// A new receiver of every event published from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

/// How many events a slow receiver may fall behind before it is told it lagged.
pub const CHANNEL_CAPACITY: usize = 4096;

/// Events within this process only.
pub struct LocalBus {
    sender: broadcast::Sender<Event>,
    versions: Arc<Versions>,
}

impl Default for LocalBus {
    /// Events and versions in this process only.
    fn default() -> Self {
        LocalBus::new(Versions::in_process())
    }
}

impl LocalBus {
    pub fn new(versions: Arc<Versions>) -> Self {
        LocalBus {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            versions,
        }
    }

    pub fn sender(&self) -> broadcast::Sender<Event> {
        self.sender.clone()
    }
}

impl EventBus for LocalBus {
    fn versions(&self) -> &Arc<Versions> {
        &self.versions
    }

    fn publish(&self, event: Event) {
        // No receiver is not an error: nobody is listening right now.
        let _ = self.sender.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_bus_delivers_to_every_subscriber() {
        let bus = LocalBus::default();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let event = Event::MembershipChanged {
            room_id: 1,
            user_id: 2,
            joined: true,
            seq: 3,
        };
        bus.publish(event.clone());
        assert_eq!(a.recv().await.unwrap(), event);
        assert_eq!(b.recv().await.unwrap(), event);
    }

    #[test]
    fn events_serialize_with_a_type_tag() {
        let json = serde_json::to_value(Event::MembershipChanged {
            room_id: 1,
            user_id: 2,
            joined: false,
            seq: 0,
        })
        .unwrap();
        assert_eq!(json["type"], "membership_changed");
    }
}

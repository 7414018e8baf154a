//! Typing indicators: a member says they are typing in a room; the others
//! see it until it lapses (`TYPING_TTL_SECS` without a renewal) or the
//! member stops or sends. Nothing is stored: the indicator travels as an
//! [`Event::Typing`] on the event bus (across instances in Redis mode), and
//! every instance keeps the live ones in memory for `Room.typing`.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use crate::{
    domain::{now, rooms},
    error::{AppError, AppResult},
    events::{Event, EventBus},
    ratelimit::Throttle,
};

/// Most indicators kept at once on one instance; past it, new ones are
/// not shown until old ones lapse.
const BOARD_MAX: usize = 100_000;

/// room -> typing member -> when their indicator lapses, and how many
/// indicators that is in all.
#[derive(Default)]
struct Board {
    rooms: HashMap<i64, HashMap<i64, DateTime<Utc>>>,
    size: usize,
}

impl Board {
    fn set(&mut self, room: i64, user: i64, until: DateTime<Utc>) {
        if self
            .rooms
            .entry(room)
            .or_default()
            .insert(user, until)
            .is_none()
        {
            self.size += 1;
        }
    }

    fn forget(&mut self, room: i64, user: i64) {
        if let Some(members) = self.rooms.get_mut(&room) {
            if members.remove(&user).is_some() {
                self.size -= 1;
            }
            if members.is_empty() {
                self.rooms.remove(&room);
            }
        }
    }

    /// Drop the indicators that lapsed.
    fn prune(&mut self) {
        let at = now();
        let mut size = 0;
        self.rooms.retain(|_, members| {
            members.retain(|_, until| *until > at);
            size += members.len();
            !members.is_empty()
        });
        self.size = size;
    }
}

pub struct Typing {
    db: DatabaseConnection,
    events: Arc<dyn EventBus>,
    throttle: Arc<Throttle>,
    ttl: Duration,
    board: Mutex<Board>,
}

impl Typing {
    /// Keep the board from the bus's events, for as long as it lives.
    pub fn start(
        db: DatabaseConnection,
        events: Arc<dyn EventBus>,
        throttle: Arc<Throttle>,
        ttl: Duration,
    ) -> Arc<Typing> {
        let receiver = events.subscribe();
        let typing = Arc::new(Typing {
            db,
            events,
            throttle,
            ttl: ttl.max(Duration::from_secs(1)),
            board: Mutex::new(Board::default()),
        });
        tokio::spawn(follow(Arc::downgrade(&typing), receiver));
        typing
    }

    /// How long an indicator lasts without a renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `user` starts (or renews) or stops typing in `room`, of which they
    /// must be a current member. Returns when the indicator lapses.
    pub async fn set(
        &self,
        user: i64,
        room: i64,
        typing: bool,
        client: Option<IpAddr>,
    ) -> AppResult<DateTime<Utc>> {
        self.throttle.typing(user, client).await?;
        if !rooms::is_member(&self.db, room, user).await? {
            return Err(AppError::NotFound("room"));
        }
        let expires_at = if typing {
            now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::seconds(5))
        } else {
            now()
        };
        self.events.publish(Event::Typing {
            room_id: room,
            user_id: user,
            typing,
            expires_at,
        });
        Ok(expires_at)
    }

    /// Who is typing in `room` now, by user id, with when each lapses.
    pub fn typing_in(&self, room: i64) -> Vec<(i64, DateTime<Utc>)> {
        let at = now();
        let Ok(board) = self.board.lock() else {
            return Vec::new();
        };
        let mut typing: Vec<(i64, DateTime<Utc>)> = board
            .rooms
            .get(&room)
            .map(|members| {
                members
                    .iter()
                    .filter(|(_, until)| **until > at)
                    .map(|(user, until)| (*user, *until))
                    .collect()
            })
            .unwrap_or_default();
        typing.sort_unstable();
        typing
    }

    fn note(&self, event: &Event) {
        let Ok(mut board) = self.board.lock() else {
            return;
        };
        match event {
            Event::Typing {
                room_id,
                user_id,
                typing: true,
                expires_at,
            } => {
                if board.size >= BOARD_MAX {
                    board.prune();
                    if board.size >= BOARD_MAX {
                        return;
                    }
                }
                board.set(*room_id, *user_id, *expires_at);
            }
            // Stopped, sent a message, or left: no longer typing.
            Event::Typing {
                room_id, user_id, ..
            }
            | Event::MembershipChanged {
                room_id, user_id, ..
            } => board.forget(*room_id, *user_id),
            Event::MessageStored { message, .. } => {
                if let Some(sender) = message.sender_id {
                    board.forget(message.room_id, sender);
                }
            }
            _ => {}
        }
    }
}

async fn follow(typing: Weak<Typing>, mut events: Receiver<Event>) {
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = sweep.tick() => {
                let Some(typing) = typing.upgrade() else { return };
                if let Ok(mut board) = typing.board.lock() {
                    board.prune();
                }
                continue;
            }
        };
        let Some(typing) = typing.upgrade() else {
            return;
        };
        match event {
            Ok(event) => typing.note(&event),
            // Missed some: indicators lapse by themselves.
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

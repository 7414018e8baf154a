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

type Board = HashMap<i64, HashMap<i64, DateTime<Utc>>>;

pub struct Typing {
    db: DatabaseConnection,
    events: Arc<dyn EventBus>,
    throttle: Arc<Throttle>,
    ttl: Duration,
    /// room -> typing member -> when their indicator lapses.
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
            board: Mutex::new(HashMap::new()),
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
                let size: usize = board.values().map(HashMap::len).sum();
                if size >= BOARD_MAX {
                    prune(&mut board);
                    if board.values().map(HashMap::len).sum::<usize>() >= BOARD_MAX {
                        return;
                    }
                }
                board
                    .entry(*room_id)
                    .or_default()
                    .insert(*user_id, *expires_at);
            }
            // Stopped, sent a message, or left: no longer typing.
            Event::Typing {
                room_id, user_id, ..
            }
            | Event::MembershipChanged {
                room_id, user_id, ..
            } => forget(&mut board, *room_id, *user_id),
            Event::MessageStored { message, .. } => {
                if let Some(sender) = message.sender_id {
                    forget(&mut board, message.room_id, sender);
                }
            }
            _ => {}
        }
    }
}

fn forget(board: &mut Board, room: i64, user: i64) {
    if let Some(members) = board.get_mut(&room) {
        members.remove(&user);
        if members.is_empty() {
            board.remove(&room);
        }
    }
}

fn prune(board: &mut Board) {
    let at = now();
    board.retain(|_, members| {
        members.retain(|_, until| *until > at);
        !members.is_empty()
    });
}

async fn follow(typing: Weak<Typing>, mut events: Receiver<Event>) {
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = sweep.tick() => {
                let Some(typing) = typing.upgrade() else { return };
                if let Ok(mut board) = typing.board.lock() {
                    prune(&mut board);
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

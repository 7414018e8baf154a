//! The room event log: every stored thing that happens in a room gets the
//! room's next number (`seq`). A message carries its number in its row; any
//! other event (an edit, a delete, a reaction, a join, a leave) is a row of
//! `room_events`.
//!
//! Numbers are taken with `UPDATE rooms SET event_seq = event_seq + n`
//! inside the transaction that stores the event, so the room's row stays
//! locked until the commit: a number is visible only once every lower number
//! of the room is committed (or will never be: a number taken by a
//! transaction that rolled back is a gap, never a late arrival). A reader
//! that has seen number N and reads again after it misses nothing.

use chrono::{DateTime, Utc};
use entity::{message, room, room_event};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::now;
use crate::error::{AppError, AppResult};

/// Kinds of logged room events other than a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    MessageEdited,
    MessageDeleted,
    ReactionAdded,
    ReactionRemoved,
    MemberJoined,
    MemberLeft,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MessageEdited => "message_edited",
            Kind::MessageDeleted => "message_deleted",
            Kind::ReactionAdded => "reaction_added",
            Kind::ReactionRemoved => "reaction_removed",
            Kind::MemberJoined => "member_joined",
            Kind::MemberLeft => "member_left",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        [
            Kind::MessageEdited,
            Kind::MessageDeleted,
            Kind::ReactionAdded,
            Kind::ReactionRemoved,
            Kind::MemberJoined,
            Kind::MemberLeft,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// Take the room's next `count` numbers; returns the first. Must run in the
/// transaction that stores the events (it locks the room's row until the
/// commit). `NotFound` when the room is gone.
pub async fn take(db: &impl ConnectionTrait, room_id: i64, count: i64) -> AppResult<i64> {
    let updated = room::Entity::update_many()
        .col_expr(
            room::Column::EventSeq,
            Expr::col(room::Column::EventSeq).add(count),
        )
        .filter(room::Column::Id.eq(room_id))
        .exec_with_returning(db)
        .await?;
    match updated.first() {
        Some(room) => Ok(room.event_seq - count + 1),
        None => Err(AppError::NotFound("room")),
    }
}

/// What a logged event is about.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub message_id: Option<i64>,
    pub user_id: Option<i64>,
    pub emoji: Option<String>,
}

/// Log an event under the room's next number, in the caller's transaction.
pub async fn record(
    db: &impl ConnectionTrait,
    room_id: i64,
    kind: Kind,
    subject: Subject,
) -> AppResult<room_event::Model> {
    let seq = take(db, room_id, 1).await?;
    record_numbered(db, room_id, seq, kind, subject, now()).await
}

/// Log an event under a number already taken with [`take`].
pub async fn record_numbered(
    db: &impl ConnectionTrait,
    room_id: i64,
    seq: i64,
    kind: Kind,
    subject: Subject,
    at: DateTime<Utc>,
) -> AppResult<room_event::Model> {
    let row = room_event::Model {
        room_id,
        seq,
        kind: kind.as_str().to_owned(),
        message_id: subject.message_id,
        user_id: subject.user_id,
        emoji: subject.emoji,
        at,
    };
    room_event::Entity::insert(room_event::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(row)
}

/// The room's newest number.
pub async fn latest(db: &impl ConnectionTrait, room_id: i64) -> AppResult<i64> {
    let seq: Option<i64> = room::Entity::find_by_id(room_id)
        .select_only()
        .column(room::Column::EventSeq)
        .into_tuple()
        .one(db)
        .await?;
    seq.ok_or(AppError::NotFound("room"))
}

/// One entry of the log as read back.
#[derive(Debug, Clone)]
pub enum Logged {
    Message(message::Model),
    Event(room_event::Model),
}

impl Logged {
    pub fn seq(&self) -> i64 {
        match self {
            Logged::Message(m) => m.seq,
            Logged::Event(e) => e.seq,
        }
    }
}

/// What [`since`] read.
#[derive(Debug, Clone)]
pub struct Read {
    /// The entries, lowest number first.
    pub entries: Vec<Logged>,
    /// Every number up to this one was read (a number that holds nothing
    /// belonged to a store that rolled back).
    pub through: i64,
    /// Numbers above `through` exist.
    pub more: bool,
}

/// The room's entries numbered above `after`, at most `limit` numbers'
/// worth. The room's newest number is read first: every number up to it
/// is committed (or never will be), so the two tables read next agree on
/// what exists, whatever commits meanwhile.
pub async fn since(
    db: &impl ConnectionTrait,
    room_id: i64,
    after: i64,
    limit: u64,
) -> AppResult<Read> {
    let newest = latest(db, room_id).await?;
    if newest <= after {
        return Ok(Read {
            entries: Vec::new(),
            through: after,
            more: false,
        });
    }
    let upto = std::cmp::min(newest, after.saturating_add(limit as i64));
    let messages = message::Entity::find()
        .filter(message::Column::RoomId.eq(room_id))
        .filter(message::Column::Seq.gt(after))
        .filter(message::Column::Seq.lte(upto))
        .all(db)
        .await?;
    let events = room_event::Entity::find()
        .filter(room_event::Column::RoomId.eq(room_id))
        .filter(room_event::Column::Seq.gt(after))
        .filter(room_event::Column::Seq.lte(upto))
        .all(db)
        .await?;
    let mut merged: Vec<Logged> = messages
        .into_iter()
        .map(Logged::Message)
        .chain(events.into_iter().map(Logged::Event))
        .collect();
    merged.sort_by_key(Logged::seq);
    Ok(Read {
        entries: merged,
        through: upto,
        more: upto < newest,
    })
}

//! A room as its readers see it: the room, its current members by name, and
//! its newest messages with their senders' names, read in two statements
//! for any number of rooms.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use entity::{message, room};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, QueryResult, Statement};

use crate::error::AppResult;

/// A user as a room shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub id: i64,
    pub username: String,
}

/// A message with its sender's name (none once the sender is deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMessage {
    pub message: message::Model,
    pub sender: Option<String>,
}

impl ViewMessage {
    /// A message without its sender's name.
    pub fn of(message: message::Model) -> Self {
        ViewMessage {
            message,
            sender: None,
        }
    }
}

/// The newest messages of a room, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    pub messages: Vec<Arc<ViewMessage>>,
    /// True when these are all of the room's messages.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    pub room: room::Model,
    /// Current members, by user id.
    pub members: Vec<Named>,
    /// `None` when the messages were not asked for.
    pub recent: Option<Recent>,
}

impl RoomView {
    pub fn is_member(&self, user: i64) -> bool {
        self.members.binary_search_by_key(&user, |m| m.id).is_ok()
    }

    pub fn member_name(&self, user: i64) -> Option<&str> {
        self.members
            .binary_search_by_key(&user, |m| m.id)
            .ok()
            .map(|at| self.members[at].username.as_str())
    }

    /// Roughly what the view holds in memory, in bytes.
    pub fn size(&self) -> usize {
        let members: usize = self.members.iter().map(|m| 48 + m.username.len()).sum();
        let messages: usize = self.recent.as_ref().map_or(0, |r| {
            r.messages
                .iter()
                .map(|m| 160 + m.message.text.len() + m.sender.as_ref().map_or(0, String::len))
                .sum()
        });
        256 + self.room.name.len() + members + messages
    }

    /// The view with one more message (the newest `window` kept). Messages
    /// already in it are not added twice. `None` if the sender is not a
    /// current member (the view cannot name them: read it again).
    pub fn with_message(&self, message: message::Model, window: usize) -> Option<RoomView> {
        let recent = self.recent.as_ref()?;
        let sender = match message.sender_id {
            Some(id) => Some(self.member_name(id)?.to_owned()),
            None => None,
        };
        let mut messages = recent.messages.clone();
        let mut complete = recent.complete;
        match messages.binary_search_by_key(&message.id, |m| m.message.id) {
            Ok(_) => {}
            Err(at) => {
                if at == 0 && !complete && messages.len() >= window {
                    // Older than everything kept: not part of the window.
                } else {
                    messages.insert(at, Arc::new(ViewMessage { message, sender }));
                }
            }
        }
        if messages.len() > window {
            let extra = messages.len() - window;
            messages.drain(..extra);
            complete = false;
        }
        Some(RoomView {
            room: self.room.clone(),
            members: self.members.clone(),
            recent: Some(Recent { messages, complete }),
        })
    }
}

#[derive(FromQueryResult)]
struct MemberRow {
    id: i64,
    name: String,
    is_direct: bool,
    direct_key: Option<String>,
    created_at: DateTime<Utc>,
    event_seq: i64,
    member_id: Option<i64>,
    member_name: Option<String>,
}

impl FromQueryResult for ViewMessage {
    /// A message's columns and its sender's name (`sender_name`).
    fn from_query_result(row: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(ViewMessage {
            message: message::Model::from_query_result(row, pre)?,
            sender: row.try_get(pre, "sender_name")?,
        })
    }
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// The views of these rooms, with the newest `window` messages of each when
/// given: one statement for the rooms and members, one for the messages.
/// Missing rooms are absent.
pub async fn load(
    db: &impl ConnectionTrait,
    ids: &[i64],
    window: Option<usize>,
) -> AppResult<HashMap<i64, RoomView>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let backend = db.get_database_backend();
    // Every interpolated value is an integer.
    let list = id_list(ids);
    let sql = format!(
        "SELECT r.id, r.name, r.is_direct, r.direct_key, r.created_at, r.event_seq, \
                u.id AS member_id, u.username AS member_name \
         FROM rooms r \
         LEFT JOIN memberships m ON m.room_id = r.id AND m.left_at IS NULL \
         LEFT JOIN users u ON u.id = m.user_id \
         WHERE r.id IN ({list}) ORDER BY r.id, u.id"
    );
    let mut views: HashMap<i64, RoomView> = HashMap::with_capacity(ids.len());
    for row in MemberRow::find_by_statement(Statement::from_string(backend, sql))
        .all(db)
        .await?
    {
        let view = views.entry(row.id).or_insert_with(|| RoomView {
            room: room::Model {
                id: row.id,
                name: row.name,
                is_direct: row.is_direct,
                direct_key: row.direct_key,
                created_at: row.created_at,
                event_seq: row.event_seq,
            },
            members: Vec::new(),
            recent: None,
        });
        if let (Some(id), Some(username)) = (row.member_id, row.member_name) {
            view.members.push(Named { id, username });
        }
    }
    let Some(window) = window else {
        return Ok(views);
    };
    let found: Vec<i64> = views.keys().copied().collect();
    if found.is_empty() {
        return Ok(views);
    }
    let columns = "m.id, m.room_id, m.sender_id, m.text, m.sent_at, m.task_id, m.seq, \
                   m.edited_at, m.deleted_at, m.reply_to_id, u.username AS sender_name";
    let limit = window + 1;
    let sql = if let [room] = found.as_slice() {
        format!(
            "SELECT * FROM (SELECT {columns} FROM messages m \
               LEFT JOIN users u ON u.id = m.sender_id \
               WHERE m.room_id = {room} ORDER BY m.id DESC LIMIT {limit}) newest \
             ORDER BY id"
        )
    } else {
        format!(
            "SELECT {}, sender_name FROM (\
               SELECT {columns}, \
                      ROW_NUMBER() OVER (PARTITION BY m.room_id ORDER BY m.id DESC) AS position \
               FROM messages m LEFT JOIN users u ON u.id = m.sender_id \
               WHERE m.room_id IN ({})) numbered \
             WHERE position <= {limit} ORDER BY room_id, id",
            super::messages::COLUMNS,
            id_list(&found)
        )
    };
    let mut by_room: HashMap<i64, Vec<Arc<ViewMessage>>> = HashMap::new();
    for row in ViewMessage::find_by_statement(Statement::from_string(backend, sql))
        .all(db)
        .await?
    {
        by_room
            .entry(row.message.room_id)
            .or_default()
            .push(Arc::new(row));
    }
    for (id, view) in views.iter_mut() {
        let mut messages = by_room.remove(id).unwrap_or_default();
        let complete = messages.len() <= window;
        if !complete {
            messages.remove(0);
        }
        view.recent = Some(Recent { messages, complete });
    }
    Ok(views)
}

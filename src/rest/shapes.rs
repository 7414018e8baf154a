//! The legacy JSON shapes, built from domain records. Field names and order
//! follow the old service exactly.

use std::collections::HashMap;

use entity::{message, room};
use sea_orm::ConnectionTrait;
use serde::Serialize;
use utoipa::ToSchema;

use super::reply::{iso, plain};
use crate::{
    domain::{
        rooms,
        users::{self, UserRecord},
        views::RoomView,
    },
    error::AppResult,
};

/// A user's profile, nested in the user object.
#[derive(Serialize, ToSchema)]
pub struct LegacyProfile {
    /// The profile's id.
    #[schema(example = 3)]
    pub id: i64,
    /// The user's id.
    #[schema(example = 3)]
    pub user: i64,
    #[schema(value_type = super::openapi::ProfileStatus)]
    pub status: &'static str,
    /// At most 255 characters, or null.
    #[schema(required = true, max_length = 255)]
    pub status_msg: Option<String>,
}

/// A user (never with its password, in any form).
#[derive(Serialize, ToSchema)]
pub struct LegacyUser {
    #[schema(example = 3)]
    pub id: i64,
    #[schema(example = "user_3")]
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    /// `YYYY-MM-DD HH:MM:SS` in UTC, or null.
    #[schema(required = true, example = "2026-11-29 10:00:00")]
    pub last_login: Option<String>,
    /// ISO 8601 in UTC with microseconds and `Z`.
    #[schema(format = DateTime, example = "2026-11-29T10:00:00.123456Z")]
    pub date_joined: String,
    pub profile: LegacyProfile,
}

impl From<&UserRecord> for LegacyUser {
    fn from(record: &UserRecord) -> Self {
        let user = &record.user;
        LegacyUser {
            id: user.id,
            username: user.username.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            email: user.email.clone(),
            is_active: user.is_active,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
            last_login: user.last_login.map(plain),
            date_joined: iso(user.date_joined),
            profile: LegacyProfile {
                id: record.profile.id,
                user: user.id,
                status: record.profile.status.as_str(),
                status_msg: record.profile.status_msg.clone(),
            },
        }
    }
}

/// A user named by username.
#[derive(Serialize, Clone, ToSchema)]
pub struct Username {
    #[schema(example = "user_7")]
    pub username: String,
}

/// A room without its members.
#[derive(Serialize, ToSchema)]
pub struct RoomSummary {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "family")]
    pub room_name: String,
}

impl From<&room::Model> for RoomSummary {
    fn from(room: &room::Model) -> Self {
        RoomSummary {
            id: room.id,
            room_name: room.name.clone(),
        }
    }
}

/// A room with its current members (joined and not left), ordered by user
/// id. A direct room is named `"<lower id's username> - <higher id's username>"`.
#[derive(Serialize, ToSchema)]
pub struct LegacyRoom {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "family")]
    pub room_name: String,
    pub room_member: Vec<Username>,
}

/// Rooms with their current members, in a fixed number of statements.
pub async fn rooms_with_members(
    db: &impl ConnectionTrait,
    list: &[room::Model],
) -> AppResult<Vec<LegacyRoom>> {
    let ids: Vec<i64> = list.iter().map(|r| r.id).collect();
    let mut members = rooms::member_names(db, &ids).await?;
    Ok(list
        .iter()
        .map(|room| LegacyRoom {
            id: room.id,
            room_name: room.name.clone(),
            room_member: members
                .remove(&room.id)
                .unwrap_or_default()
                .into_iter()
                .map(|username| Username { username })
                .collect(),
        })
        .collect())
}

/// One current membership of a message's sender.
#[derive(Serialize, Clone, ToSchema)]
pub struct SenderMembership {
    /// The membership's id.
    #[schema(example = 12)]
    pub id: i64,
    /// ISO 8601 in UTC with microseconds and `Z`.
    #[schema(format = DateTime, example = "2026-11-29T10:00:00.123456Z")]
    pub date_joined: String,
    pub user: Username,
}

/// The sender of a message (`msg_from`), with their current memberships.
#[derive(Serialize, Clone, ToSchema)]
pub struct Sender {
    #[schema(example = 9)]
    pub id: i64,
    #[schema(example = "user_9")]
    pub username: String,
    pub chat_room: Vec<SenderMembership>,
}

/// The senders of messages (`msg_from`), with their current memberships.
pub async fn senders(
    db: &impl ConnectionTrait,
    messages: &[message::Model],
) -> AppResult<HashMap<i64, Sender>> {
    let mut ids: Vec<i64> = messages.iter().filter_map(|m| m.sender_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    named_senders(db, users::usernames(db, &ids).await?).await
}

/// Senders known by name, with their current memberships: one statement.
pub async fn named_senders(
    db: &impl ConnectionTrait,
    names: HashMap<i64, String>,
) -> AppResult<HashMap<i64, Sender>> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<i64> = names.keys().copied().collect();
    let mut memberships = rooms::current_memberships_of_users(db, &ids).await?;
    Ok(names
        .into_iter()
        .map(|(id, name)| {
            let username = Username {
                username: name.clone(),
            };
            let chat_room = memberships
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(|m| SenderMembership {
                    id: m.id,
                    date_joined: iso(m.joined_at),
                    user: username.clone(),
                })
                .collect();
            (
                id,
                Sender {
                    id,
                    username: name,
                    chat_room,
                },
            )
        })
        .collect())
}

/// A room's whole history from its view (which must hold every message):
/// the statement for the senders' memberships only. Deleted messages are
/// left out, as the old service never showed them.
pub async fn history_from_view(
    db: &impl ConnectionTrait,
    view: &RoomView,
) -> AppResult<RoomWithMessages> {
    let messages: Vec<_> = view
        .recent
        .as_ref()
        .map(|r| r.messages.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.message.deleted_at.is_none())
        .collect();
    let names: HashMap<i64, String> = messages
        .iter()
        .filter_map(|m| Some((m.message.sender_id?, m.sender.clone()?)))
        .collect();
    let senders = named_senders(db, names).await?;
    Ok(RoomWithMessages {
        room: LegacyRoom {
            id: view.room.id,
            room_name: view.room.name.clone(),
            room_member: view
                .members
                .iter()
                .map(|m| Username {
                    username: m.username.clone(),
                })
                .collect(),
        },
        messages: messages
            .iter()
            .map(|m| RoomMessage {
                id: m.message.id,
                text: m.message.text.clone(),
                sent_at: iso(m.message.sent_at),
                room: m.message.room_id,
                msg_from: m.message.sender_id.and_then(|s| senders.get(&s).cloned()),
            })
            .collect(),
    })
}

/// A message as listed in a room.
#[derive(Serialize, ToSchema)]
pub struct RoomMessage {
    #[schema(example = 41)]
    pub id: i64,
    #[schema(example = "hi fam")]
    pub text: String,
    /// ISO 8601 in UTC with microseconds and `Z`.
    #[schema(format = DateTime, example = "2026-11-29T10:00:00.123456Z")]
    pub sent_at: String,
    /// The room's id.
    #[schema(example = 1)]
    pub room: i64,
    /// The sender; null once the sender's account is deleted.
    #[schema(required = true)]
    pub msg_from: Option<Sender>,
}

/// Messages as listed in a room.
pub async fn room_messages(
    db: &impl ConnectionTrait,
    messages: Vec<message::Model>,
) -> AppResult<Vec<RoomMessage>> {
    let senders = senders(db, &messages).await?;
    Ok(messages
        .into_iter()
        .map(|m| RoomMessage {
            id: m.id,
            sent_at: iso(m.sent_at),
            room: m.room_id,
            msg_from: m.sender_id.and_then(|s| senders.get(&s).cloned()),
            text: m.text,
        })
        .collect())
}

/// A room object with messages, oldest first.
#[derive(Serialize, ToSchema)]
pub struct RoomWithMessages {
    #[serde(flatten)]
    pub room: LegacyRoom,
    pub messages: Vec<RoomMessage>,
}

/// A message as a task's result: with its whole room.
#[derive(Serialize, ToSchema)]
pub struct TaskMessage {
    #[schema(example = 41)]
    pub id: i64,
    #[schema(example = "hi fam")]
    pub text: String,
    /// ISO 8601 in UTC with microseconds and `Z`.
    #[schema(format = DateTime, example = "2026-11-29T10:00:00.123456Z")]
    pub sent_at: String,
    pub room: LegacyRoom,
    /// The sender; null once the sender's account is deleted.
    #[schema(required = true)]
    pub msg_from: Option<Sender>,
}

pub async fn task_message(
    db: &impl ConnectionTrait,
    message: message::Model,
) -> AppResult<Option<TaskMessage>> {
    let Some(room) = rooms::load_many(db, &[message.room_id])
        .await?
        .remove(&message.room_id)
    else {
        return Ok(None);
    };
    let room = rooms_with_members(db, &[room])
        .await?
        .pop()
        .expect("one room in, one room out");
    let senders = senders(db, std::slice::from_ref(&message)).await?;
    Ok(Some(TaskMessage {
        id: message.id,
        sent_at: iso(message.sent_at),
        room,
        msg_from: message.sender_id.and_then(|s| senders.get(&s).cloned()),
        text: message.text,
    }))
}

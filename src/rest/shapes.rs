//! The legacy JSON shapes, built from domain records. Field names and order
//! follow the old service exactly.

use std::collections::HashMap;

use entity::{message, room};
use sea_orm::ConnectionTrait;
use serde::Serialize;

use super::reply::{iso, plain};
use crate::{
    domain::{
        rooms,
        users::{self, UserRecord},
    },
    error::AppResult,
};

#[derive(Serialize)]
pub struct LegacyProfile {
    pub id: i64,
    pub user: i64,
    pub status: &'static str,
    pub status_msg: Option<String>,
}

#[derive(Serialize)]
pub struct LegacyUser {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub last_login: Option<String>,
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

#[derive(Serialize, Clone)]
pub struct Username {
    pub username: String,
}

#[derive(Serialize)]
pub struct RoomSummary {
    pub id: i64,
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

#[derive(Serialize)]
pub struct LegacyRoom {
    pub id: i64,
    pub room_name: String,
    pub room_member: Vec<Username>,
}

/// Rooms with their current members, in a fixed number of statements.
pub async fn rooms_with_members(
    db: &impl ConnectionTrait,
    list: &[room::Model],
) -> AppResult<Vec<LegacyRoom>> {
    let ids: Vec<i64> = list.iter().map(|r| r.id).collect();
    let mut members = rooms::members_of_rooms(db, &ids).await?;
    Ok(list
        .iter()
        .map(|room| LegacyRoom {
            id: room.id,
            room_name: room.name.clone(),
            room_member: members
                .remove(&room.id)
                .unwrap_or_default()
                .iter()
                .map(|u| Username {
                    username: u.user.username.clone(),
                })
                .collect(),
        })
        .collect())
}

#[derive(Serialize, Clone)]
pub struct SenderMembership {
    pub id: i64,
    pub date_joined: String,
    pub user: Username,
}

#[derive(Serialize, Clone)]
pub struct Sender {
    pub id: i64,
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
    let users = users::load_many(db, &ids).await?;
    let mut memberships = rooms::current_memberships_of_users(db, &ids).await?;
    Ok(users
        .into_iter()
        .map(|(id, record)| {
            let username = Username {
                username: record.user.username.clone(),
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
                    username: record.user.username,
                    chat_room,
                },
            )
        })
        .collect())
}

#[derive(Serialize)]
pub struct RoomMessage {
    pub id: i64,
    pub text: String,
    pub sent_at: String,
    pub room: i64,
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

#[derive(Serialize)]
pub struct RoomWithMessages {
    #[serde(flatten)]
    pub room: LegacyRoom,
    pub messages: Vec<RoomMessage>,
}

/// A message as a task's result: with its whole room.
#[derive(Serialize)]
pub struct TaskMessage {
    pub id: i64,
    pub text: String,
    pub sent_at: String,
    pub room: LegacyRoom,
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

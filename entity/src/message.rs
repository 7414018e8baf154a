//! `messages`: chat messages. `sender_id` becomes null when the sender's
//! account is deleted (the message stays). `task_id` is the idempotency key of
//! the job that stored the message: unique, so a retried job never stores a
//! message twice. `seq` is the message's number among its room's events
//! (unique per room). A deleted message stays as a tombstone: `deleted_at`
//! set and the text emptied.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub room_id: i64,
    pub sender_id: Option<i64>,
    pub text: String,
    pub sent_at: DateTimeUtc,
    #[sea_orm(unique)]
    pub task_id: Option<Uuid>,
    pub seq: i64,
    pub edited_at: Option<DateTimeUtc>,
    pub deleted_at: Option<DateTimeUtc>,
    /// The message this one replies to (same room).
    pub reply_to_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::room::Entity",
        from = "Column::RoomId",
        to = "super::room::Column::Id",
        on_delete = "Cascade"
    )]
    Room,
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::SenderId",
        to = "super::user::Column::Id",
        on_delete = "SetNull"
    )]
    Sender,
    #[sea_orm(has_many = "super::message_seen::Entity")]
    MessageSeen,
}

impl Related<super::room::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Room.def()
    }
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Sender.def()
    }
}

impl Related<super::message_seen::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MessageSeen.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

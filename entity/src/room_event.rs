//! `room_events`: what happened in a room besides new messages (edits,
//! deletes, reactions, joins, leaves), numbered with the room's messages by
//! `seq`, so a subscriber resumes after any number and misses nothing.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "room_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub room_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// `message_edited`, `message_deleted`, `reaction_added`,
    /// `reaction_removed`, `member_joined` or `member_left`.
    pub kind: String,
    pub message_id: Option<i64>,
    /// Who acted (null once their account is deleted).
    pub user_id: Option<i64>,
    pub emoji: Option<String>,
    pub at: DateTimeUtc,
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
}

impl Related<super::room::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Room.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

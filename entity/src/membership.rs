//! `memberships`: one row per stay of a user in a room. Leaving sets
//! `left_at`; re-joining starts a new row, so the history is kept. At most one
//! row per (room, user) has `left_at` unset (a partial unique index).
//! `chosen` tells whether the user chose to be in the room.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub room_id: i64,
    pub user_id: i64,
    pub joined_at: DateTimeUtc,
    pub left_at: Option<DateTimeUtc>,
    /// The user chose to be in the room (created or joined it, or sent a
    /// message in it), rather than being put in it by someone else; their
    /// presence shows only through rooms they chose.
    pub chosen: bool,
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
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::room::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Room.def()
    }
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

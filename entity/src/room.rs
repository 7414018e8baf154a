//! `rooms`: group rooms and direct rooms. A direct room carries the key of
//! its user pair (`"<lower id>:<higher id>"`), unique, so a pair has at most
//! one direct room however many first messages race. `event_seq` counts the
//! room's stored events; it is taken under the row's lock, so the numbers
//! commit in order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rooms")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    pub is_direct: bool,
    #[sea_orm(unique)]
    pub direct_key: Option<String>,
    pub created_at: DateTimeUtc,
    /// The number of the room's newest stored event (messages included).
    pub event_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::membership::Entity")]
    Membership,
    #[sea_orm(has_many = "super::message::Entity")]
    Message,
}

impl Related<super::membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Membership.def()
    }
}

impl Related<super::message::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Message.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

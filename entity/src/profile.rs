//! `profiles`: one per user, holding the presence status and status message.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Presence status of a user. Stored as its name, which is also the name the
/// legacy REST contract uses.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    #[sea_orm(string_value = "Online")]
    Online,
    #[sea_orm(string_value = "Busy")]
    Busy,
    #[default]
    #[sea_orm(string_value = "Offline")]
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "Online",
            Status::Busy => "Busy",
            Status::Offline => "Offline",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Online" => Some(Status::Online),
            "Busy" => Some(Status::Busy),
            "Offline" => Some(Status::Offline),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "profiles")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub user_id: i64,
    pub status: Status,
    pub status_msg: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

//! Whether a member chose to be in a room (`memberships.chosen`).
//!
//! A user's presence shows through the rooms they chose to be in: the ones
//! they created or joined themselves, or took part in by sending a
//! message. Being named in someone else's `createRoom`, or receiving a
//! first direct message, puts a user in a room without asking them.
//!
//! Existing memberships are judged by what the data shows: a member who
//! sent a message in the room chose it, and so did one who joined after the
//! room's first members (everyone a room was created with shares its first
//! join time, the creator included, so a creator who never wrote counts as
//! not having chosen: the safe side).

use crate::run_all;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 2] = [
    "ALTER TABLE memberships ADD COLUMN chosen BOOLEAN NOT NULL DEFAULT TRUE",
    "UPDATE memberships SET chosen = FALSE \
     WHERE joined_at = (SELECT MIN(first.joined_at) FROM memberships first \
                        WHERE first.room_id = memberships.room_id) \
       AND NOT EXISTS (SELECT 1 FROM messages m \
                       WHERE m.room_id = memberships.room_id \
                         AND m.sender_id = memberships.user_id)",
];

const DOWN: [&str; 1] = ["ALTER TABLE memberships DROP COLUMN chosen"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_all(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_all(manager, &DOWN).await
    }
}

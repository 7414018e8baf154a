//! Indexes that leave the hot writes alone: tasks and replies.
//!
//! Every send writes its task row several times (STARTED, then SUCCESS or
//! FAILURE). An index on `state` gave each of those writes an entry in it,
//! and left the entries of the old states behind until a vacuum; the
//! planner, seeing few unfinished tasks, then read that index for the
//! by-id updates and walked every dead entry.
//!
//! Now no index names `state`, `updated_at` or `dispatched_at`:
//! - unfinished tasks (what the outbox sweeps look for) by creation time,
//!   a partial index that holds only them;
//! - finished tasks (what the purge deletes) by finish time, likewise.
//!
//! On PostgreSQL the table also leaves a quarter of each page it fills from
//! now on free, so a task's STARTED write can stay on its page without
//! touching any index (pages written before keep their fill).
//!
//! Replies are found by their parent; most messages answer none, so the
//! index of replies holds only the messages that do.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The new indexes are built before the old ones are dropped: a build
/// holds off writes to its table (not reads) until the migration commits,
/// and only the drops at the end lock the tables for reads too.
const UP: [&str; 6] = [
    "CREATE INDEX idx_tasks_unfinished ON tasks (created_at) WHERE finished_at IS NULL",
    "CREATE INDEX idx_tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL",
    "CREATE INDEX idx_messages_replies ON messages (reply_to_id, id) \
       WHERE reply_to_id IS NOT NULL",
    "DROP INDEX IF EXISTS idx_tasks_state_created",
    "DROP INDEX IF EXISTS idx_tasks_finished_at",
    "DROP INDEX IF EXISTS idx_messages_reply_to",
];

const DOWN: [&str; 6] = [
    "CREATE INDEX idx_messages_reply_to ON messages (reply_to_id, id)",
    "CREATE INDEX idx_tasks_state_created ON tasks (state, created_at)",
    "CREATE INDEX idx_tasks_finished_at ON tasks (finished_at)",
    "DROP INDEX IF EXISTS idx_messages_replies",
    "DROP INDEX IF EXISTS idx_tasks_finished",
    "DROP INDEX IF EXISTS idx_tasks_unfinished",
];

async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for statement in statements {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_all(manager, &UP).await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            run_all(manager, &["ALTER TABLE tasks SET (fillfactor = 75)"]).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            run_all(manager, &["ALTER TABLE tasks RESET (fillfactor)"]).await?;
        }
        run_all(manager, &DOWN).await
    }
}

//! Task indexes that leave the hot writes alone.
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
//! The old indexes are dropped first: the migration takes the strongest
//! lock it needs on `tasks` at once (a table kept small by the purge)
//! rather than upgrading a weaker one later, which a running instance's
//! transaction could deadlock against.

use crate::run_all;
use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 4] = [
    "DROP INDEX IF EXISTS idx_tasks_state_created",
    "DROP INDEX IF EXISTS idx_tasks_finished_at",
    "CREATE INDEX IF NOT EXISTS idx_tasks_unfinished ON tasks (created_at) \
       WHERE finished_at IS NULL",
    "CREATE INDEX IF NOT EXISTS idx_tasks_finished ON tasks (finished_at) \
       WHERE finished_at IS NOT NULL",
];

const DOWN: [&str; 4] = [
    "DROP INDEX IF EXISTS idx_tasks_finished",
    "DROP INDEX IF EXISTS idx_tasks_unfinished",
    "CREATE INDEX IF NOT EXISTS idx_tasks_state_created ON tasks (state, created_at)",
    "CREATE INDEX IF NOT EXISTS idx_tasks_finished_at ON tasks (finished_at)",
];

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

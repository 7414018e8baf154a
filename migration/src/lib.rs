//! Schema migrations of the chat service. They run unchanged on SQLite and
//! PostgreSQL, up and down.

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_create_schema;
mod m20261129_000002_create_auth_tokens;
mod m20261129_000003_create_cache_versions;
mod m20261206_000004_chat_features;
mod m20261207_000005_task_indexes;
mod m20261208_000006_membership_choice;

/// Run raw SQL statements in order (what the schema builder cannot say:
/// partial indexes, backend-only features).
pub(crate) async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for statement in statements {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_schema::Migration),
            Box::new(m20261129_000002_create_auth_tokens::Migration),
            Box::new(m20261129_000003_create_cache_versions::Migration),
            Box::new(m20261206_000004_chat_features::Migration),
            Box::new(m20261207_000005_task_indexes::Migration),
            Box::new(m20261208_000006_membership_choice::Migration),
        ]
    }
}

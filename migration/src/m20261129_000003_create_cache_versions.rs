//! Version counters of cached data, shared by every instance on the same
//! database (the embedded mode's stand-in for a version key in Redis).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheVersions {
    Table,
    Name,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CacheVersions::Table)
                    .col(string_len(CacheVersions::Name, 64).primary_key())
                    .col(big_integer(CacheVersions::Version).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(CacheVersions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

//! Business rules, once, for every adapter.
//!
//! GraphQL resolvers, REST handlers and job handlers extract their input, call
//! a function here and map the answer. Nothing in this module knows about
//! HTTP or GraphQL; functions take a database connection and plain values and
//! return [`crate::error::AppResult`].

pub mod auth;
pub mod edits;
pub mod log;
pub mod mentions;
pub mod messages;
pub mod pagination;
pub mod passwords;
pub mod presence;
pub mod reactions;
pub mod rooms;
pub mod search;
pub mod tasks;
pub mod users;
pub mod views;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    PrimaryKeyTrait, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sea_query::{IntoIden, OnConflict},
};

use crate::error::AppResult;

/// The current time at the precision every timestamp is stored and shown
/// with (microseconds), so a value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Begin a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`): a deferred transaction that reads first
/// and writes later fails with "database is locked" when another writer
/// committed in between, whatever the busy timeout; waiting for the lock
/// up front is what the busy timeout handles. PostgreSQL ignores the mode.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Insert a row unless it would clash with an existing one on `unique`:
/// the primary key of the new row, or `None` when a row with the same
/// unique value already exists (concurrent writers included).
pub(crate) async fn insert_unless_exists<A>(
    db: &impl ConnectionTrait,
    row: A,
    unique: impl IntoIden,
) -> AppResult<Option<<<A::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType>>
where
    A: ActiveModelTrait + Send,
{
    let inserted = <A::Entity as EntityTrait>::insert(row)
        .on_conflict(OnConflict::column(unique).do_nothing().to_owned())
        .exec(db)
        .await;
    match inserted {
        Ok(result) => Ok(Some(result.last_insert_id)),
        Err(DbErr::RecordNotInserted) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

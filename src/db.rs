//! Database connection: pool settings, SQLite pragmas, statement counting.
//!
//! Both backends go through sea-orm; nothing outside this module cares which
//! one is in use, except the rare statement that needs a dialect switch.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

use crate::config::Config;

/// Counts the SQL statements the process has run. Tests read it to prove
/// that a query's statement count does not grow with the rows it returns.
#[derive(Debug, Default)]
pub struct StatementCounter(AtomicU64);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the database could not be reached. Each message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "DATABASE_URL: unsupported URL {0:?}; use sqlite://PATH?mode=rwc or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl(String),
    #[error("DATABASE_URL: cannot open the database at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("DATABASE_URL: migrations failed on {url}: {reason}")]
    Migration { url: String, reason: String },
}

/// Open the pool described by the configuration and check that it answers.
pub async fn connect(
    config: &Config,
) -> Result<(DatabaseConnection, Arc<StatementCounter>), ConnectError> {
    let url = config.database_url.trim();
    let shown = redact(url);
    let is_sqlite = url.starts_with("sqlite:");
    let is_postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_sqlite && !is_postgres {
        return Err(ConnectError::UnsupportedUrl(shown));
    }
    if is_sqlite {
        // Parse early so a malformed URL is reported as such, not as a
        // connection failure.
        SqliteConnectOptions::from_str(url).map_err(|e| ConnectError::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    } else {
        url::Url::parse(url).map_err(|e| ConnectError::Unreachable {
            url: shown.clone(),
            reason: format!("malformed URL ({e})"),
        })?;
    }

    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.db_max_connections.max(1))
        .min_connections(config.db_min_connections.min(config.db_max_connections))
        .connect_timeout(config.db_connect_timeout())
        .acquire_timeout(config.db_connect_timeout())
        .sqlx_logging(false);
    let busy_timeout = config.sqlite_busy_timeout();
    options.map_sqlx_sqlite_opts(move |opts| {
        opts.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true)
    });

    let mut db = Database::connect(options)
        .await
        .map_err(|e| ConnectError::Unreachable {
            url: shown.clone(),
            reason: crate::error::db_error_reason(&e),
        })?;
    db.ping().await.map_err(|e| ConnectError::Unreachable {
        url: shown.clone(),
        reason: crate::error::db_error_reason(&e),
    })?;

    let counter = Arc::new(StatementCounter::default());
    let count = counter.clone();
    db.set_metric_callback(move |_info| {
        count.0.fetch_add(1, Ordering::Relaxed);
    });
    Ok((db, counter))
}

/// Apply pending migrations. On PostgreSQL an advisory lock serialises
/// instances that start at the same moment.
pub async fn migrate(db: &DatabaseConnection, config: &Config) -> Result<(), ConnectError> {
    let fail = |e: sea_orm::DbErr| ConnectError::Migration {
        url: redact(&config.database_url),
        reason: crate::error::db_error_reason(&e),
    };
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await.map_err(fail)?;
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(747001)")
                .await
                .map_err(fail)?;
            Migrator::up(&txn, None).await.map_err(fail)?;
            txn.commit().await.map_err(fail)
        }
        _ => {
            // SQLite has no advisory lock. Two processes migrating one file
            // at once: the loser's transaction fails once the winner's
            // commits, and a second attempt finds nothing left to apply.
            let mut attempt = 0;
            loop {
                match Migrator::up(db, None).await {
                    Ok(()) => return Ok(()),
                    Err(_) if attempt < 3 => {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
        }
    }
}

/// The URL with any password replaced, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/chat"),
            "postgres://app:***@db:5432/chat"
        );
        assert_eq!(
            redact("sqlite://chat.db?mode=rwc"),
            "sqlite://chat.db?mode=rwc"
        );
    }
}

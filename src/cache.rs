//! The user-list cache: Redis when configured, in-process otherwise.
//!
//! Every cached list belongs to a version; any user or profile write bumps
//! the version (an `INCR` in Redis, seen by every instance at once), so a
//! list is never staler than the last completed write. A reader asks Redis
//! for the current version (one round trip), then serves the list from this
//! instance's memory, or from Redis, or builds it from the database. If
//! Redis fails, lists are built from the database: slower, never wrong.
//! Without Redis the version is a counter row in the database, so several
//! instances on one database stay right too.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::body::Bytes;
use entity::cache_version;
use redis::{AsyncCommands, aio::ConnectionManager};
use sea_orm::{
    ActiveValue::Set,
    DatabaseConnection, EntityTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use crate::error::AppResult;

/// The counter of the user lists.
const USERS: &str = "users";
/// Lists kept in memory per version at most.
const LOCAL_MAX: usize = 1024;
/// How long a list stays in Redis.
const REDIS_TTL: Duration = Duration::from_secs(300);
/// Longest wait for Redis before building the list from the database.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

enum Versions {
    /// This process only (tests, tools).
    Memory(AtomicU64),
    /// A counter row in the database: every instance on the same database
    /// sees every write, with no Redis.
    Database(DatabaseConnection),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

pub struct UserListCache {
    versions: Versions,
    /// (version, list key) -> serialized list.
    local: Mutex<HashMap<String, (u64, Bytes)>>,
}

impl UserListCache {
    /// Versions in this process only: right for a single instance.
    pub fn in_process() -> Self {
        UserListCache {
            versions: Versions::Memory(AtomicU64::new(0)),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Lists in this process, versions in the database: right for any
    /// number of instances sharing the database, without Redis.
    pub fn in_process_shared(db: DatabaseConnection) -> Self {
        UserListCache {
            versions: Versions::Database(db),
            local: Mutex::new(HashMap::new()),
        }
    }

    pub fn redis(connection: ConnectionManager, prefix: &str) -> Self {
        UserListCache {
            versions: Versions::Redis {
                connection,
                prefix: format!("{prefix}users:"),
            },
            local: Mutex::new(HashMap::new()),
        }
    }

    /// The current version, or `None` when it cannot be known (Redis down).
    async fn version(&self) -> Option<u64> {
        match &self.versions {
            Versions::Memory(version) => Some(version.load(Ordering::Acquire)),
            Versions::Database(db) => {
                match cache_version::Entity::find_by_id(USERS).one(db).await {
                    Ok(row) => Some(row.map(|r| r.version as u64).unwrap_or(0)),
                    Err(e) => {
                        tracing::warn!(error = %e, "user-list cache version unavailable");
                        None
                    }
                }
            }
            Versions::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let key = format!("{prefix}version");
                match tokio::time::timeout(REDIS_TIMEOUT, connection.get::<_, Option<u64>>(key))
                    .await
                {
                    Ok(Ok(version)) => Some(version.unwrap_or(0)),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "user-list cache unavailable");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("user-list cache timed out");
                        None
                    }
                }
            }
        }
    }

    fn local_get(&self, key: &str, version: u64) -> Option<Bytes> {
        let local = self.local.lock().ok()?;
        local
            .get(key)
            .filter(|(v, _)| *v == version)
            .map(|(_, bytes)| bytes.clone())
    }

    fn local_put(&self, key: &str, version: u64, bytes: Bytes) {
        if let Ok(mut local) = self.local.lock() {
            if local.len() >= LOCAL_MAX {
                local.retain(|_, (v, _)| *v == version);
                if local.len() >= LOCAL_MAX {
                    local.clear();
                }
            }
            local.insert(key.to_owned(), (version, bytes));
        }
    }

    /// The list under `key`, from the cache or built by `load`.
    pub async fn get_or_load<F>(&self, key: &str, load: F) -> AppResult<Bytes>
    where
        F: Future<Output = AppResult<Bytes>>,
    {
        let Some(version) = self.version().await else {
            return load.await;
        };
        if let Some(bytes) = self.local_get(key, version) {
            return Ok(bytes);
        }
        if let Versions::Redis { connection, prefix } = &self.versions {
            let mut connection = connection.clone();
            let redis_key = format!("{prefix}v{version}:{key}");
            if let Ok(Ok(Some(bytes))) = tokio::time::timeout(
                REDIS_TIMEOUT,
                connection.get::<_, Option<Vec<u8>>>(&redis_key),
            )
            .await
            {
                let bytes = Bytes::from(bytes);
                self.local_put(key, version, bytes.clone());
                return Ok(bytes);
            }
            let bytes = load.await?;
            let _ = tokio::time::timeout(
                REDIS_TIMEOUT,
                connection.set_ex::<_, _, ()>(&redis_key, bytes.as_ref(), REDIS_TTL.as_secs()),
            )
            .await;
            self.local_put(key, version, bytes.clone());
            return Ok(bytes);
        }
        let bytes = load.await?;
        self.local_put(key, version, bytes.clone());
        Ok(bytes)
    }

    /// Invalidate every cached list, on every instance. Called after a user
    /// or profile write commits and before it answers.
    pub async fn invalidate(&self) {
        if let Ok(mut local) = self.local.lock() {
            local.clear();
        }
        match &self.versions {
            Versions::Memory(version) => {
                version.fetch_add(1, Ordering::AcqRel);
            }
            Versions::Database(db) => {
                let bump = cache_version::Entity::insert(cache_version::ActiveModel {
                    name: Set(USERS.to_owned()),
                    version: Set(1),
                })
                .on_conflict(
                    OnConflict::column(cache_version::Column::Name)
                        .value(
                            cache_version::Column::Version,
                            Expr::col((cache_version::Entity, cache_version::Column::Version))
                                .add(1),
                        )
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await;
                if let Err(e) = bump {
                    tracing::error!(error = %e, "could not invalidate the user-list cache");
                }
            }
            Versions::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let key = format!("{prefix}version");
                match tokio::time::timeout(REDIS_TIMEOUT * 4, connection.incr::<_, _, u64>(key, 1))
                    .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "could not invalidate the user-list cache")
                    }
                    Err(_) => tracing::error!("invalidating the user-list cache timed out"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_lists_are_dropped_on_every_write() {
        let cache = UserListCache::in_process();
        let first = cache
            .get_or_load("all", async { Ok(Bytes::from_static(b"[1]")) })
            .await
            .unwrap();
        assert_eq!(first.as_ref(), b"[1]");
        let cached = cache
            .get_or_load("all", async { Ok(Bytes::from_static(b"[2]")) })
            .await
            .unwrap();
        assert_eq!(cached.as_ref(), b"[1]", "served from the cache");
        cache.invalidate().await;
        let fresh = cache
            .get_or_load("all", async { Ok(Bytes::from_static(b"[2]")) })
            .await
            .unwrap();
        assert_eq!(fresh.as_ref(), b"[2]");
    }
}

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
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;

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
        /// The version as last heard over pub/sub.
        heard: Arc<AtomicU64>,
        /// The pub/sub subscription is up: `heard` is current.
        listening: Arc<AtomicBool>,
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

    /// Versions in Redis. Every bump is also published; while this
    /// instance's subscription is up, it knows the version without asking
    /// (a list costs no round trip), and asks Redis on every read otherwise.
    pub fn redis(client: redis::Client, connection: ConnectionManager, prefix: &str) -> Self {
        let prefix = format!("{prefix}users:");
        let heard = Arc::new(AtomicU64::new(0));
        let listening = Arc::new(AtomicBool::new(false));
        tokio::spawn(listen(
            client,
            connection.clone(),
            prefix.clone(),
            heard.clone(),
            listening.clone(),
        ));
        UserListCache {
            versions: Versions::Redis {
                connection,
                prefix,
                heard,
                listening,
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
            Versions::Redis {
                connection,
                prefix,
                heard,
                listening,
            } => {
                if listening.load(Ordering::Acquire) {
                    return Some(heard.load(Ordering::Acquire));
                }
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
        if let Versions::Redis {
            connection, prefix, ..
        } = &self.versions
        {
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
            Versions::Redis {
                connection,
                prefix,
                heard,
                ..
            } => {
                let mut connection = connection.clone();
                let key = format!("{prefix}version");
                let bump = async {
                    seed_version(&mut connection, &key).await?;
                    connection.incr::<_, _, u64>(&key, 1).await
                };
                match tokio::time::timeout(REDIS_TIMEOUT * 4, bump).await {
                    Ok(Ok(version)) => {
                        heard.fetch_max(version, Ordering::AcqRel);
                        // Redis hands the message to every subscriber before
                        // it answers us; the write answers after that.
                        let _ = tokio::time::timeout(
                            REDIS_TIMEOUT * 4,
                            connection.publish::<_, _, ()>(format!("{prefix}bumps"), version),
                        )
                        .await;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "could not invalidate the user-list cache")
                    }
                    Err(_) => tracing::error!("invalidating the user-list cache timed out"),
                }
            }
        }
    }
}

/// Give a missing version counter a random start, so that versions after a
/// Redis restart never repeat ones cached before it.
async fn seed_version(connection: &mut ConnectionManager, key: &str) -> redis::RedisResult<()> {
    let base = u64::from(rand::random::<u32>()) << 16;
    redis::cmd("SET")
        .arg(key)
        .arg(base)
        .arg("NX")
        .query_async::<Option<String>>(connection)
        .await
        .map(|_| ())
}

/// Follow version bumps published by every instance.
async fn listen(
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    heard: Arc<AtomicU64>,
    listening: Arc<AtomicBool>,
) {
    let channel = format!("{prefix}bumps");
    let key = format!("{prefix}version");
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            // Subscribed first, then read: no bump can fall in between.
            let mut reader = connection.clone();
            let current = async {
                seed_version(&mut reader, &key).await?;
                reader.get::<_, u64>(&key).await
            };
            if let Ok(Ok(current)) = tokio::time::timeout(REDIS_TIMEOUT, current).await {
                // `store`, not `max`: after a Redis restart the counter
                // starts again, from a new random base.
                heard.store(current, Ordering::Release);
                listening.store(true, Ordering::Release);
                let mut bumps = pubsub.into_on_message();
                while let Some(message) = bumps.next().await {
                    if let Ok(version) = message.get_payload::<u64>() {
                        heard.fetch_max(version, Ordering::AcqRel);
                    }
                }
            }
        }
        // Lost (or never had) the subscription: ask Redis on every read
        // until it is back.
        listening.store(false, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(500)).await;
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

//! The user-list cache: Redis when configured, in-process otherwise.
//!
//! Every cached list belongs to a version of the `users` counter
//! ([`crate::versions`]); any user or profile write bumps it, so a list is
//! never staler than the last completed write. A reader learns the current
//! version (the one this instance heard under its lease, else from Redis
//! or the database), then serves the list from this instance's memory, or
//! from Redis, or builds it from the database. When the version cannot be
//! known, lists are built from the database: slower, never wrong.

use std::{
    any::Any,
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::body::Bytes;
use redis::{AsyncCommands, aio::ConnectionManager};

use crate::{
    error::AppResult,
    versions::{Key, Versions},
};

/// Lists kept in memory per version at most.
const LOCAL_MAX: usize = 1024;
/// How long a list stays in Redis.
const REDIS_TTL: Duration = Duration::from_secs(300);
/// Longest wait for Redis before building the list from the database.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

type AnyValue = Arc<dyn Any + Send + Sync>;

pub struct UserListCache {
    versions: Arc<Versions>,
    /// Lists shared through Redis too, when there is one.
    shared: Option<(ConnectionManager, String)>,
    /// (version, list key) -> serialized list.
    local: Mutex<HashMap<String, (u64, Bytes)>>,
    /// (version, key) -> a value not serialized (pages GraphQL renders).
    values: Mutex<HashMap<String, (u64, AnyValue)>>,
}

impl UserListCache {
    /// Lists in this process, at the given versions.
    pub fn new(versions: Arc<Versions>) -> Self {
        UserListCache {
            versions,
            shared: None,
            local: Mutex::new(HashMap::new()),
            values: Mutex::new(HashMap::new()),
        }
    }

    /// Lists in this process and in Redis, at the given versions (which
    /// should be in the same Redis).
    pub fn redis(versions: Arc<Versions>, connection: ConnectionManager, prefix: &str) -> Self {
        UserListCache {
            shared: Some((connection, format!("{prefix}users:"))),
            ..UserListCache::new(versions)
        }
    }

    /// The current version, or `None` when it cannot be known (Redis down).
    async fn version(&self) -> Option<u64> {
        Some(self.versions.current(&[Key::Users]).await?[0])
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

    /// A value under `key`, kept in this instance at the current version,
    /// or built by `load`.
    pub async fn value_or_load<T, F>(&self, key: &str, load: F) -> AppResult<Arc<T>>
    where
        T: Send + Sync + 'static,
        F: Future<Output = AppResult<T>>,
    {
        let Some(version) = self.version().await else {
            return load.await.map(Arc::new);
        };
        if let Ok(values) = self.values.lock()
            && let Some((at, value)) = values.get(key)
            && *at == version
            && let Ok(value) = value.clone().downcast::<T>()
        {
            return Ok(value);
        }
        let value = Arc::new(load.await?);
        if let Ok(mut values) = self.values.lock() {
            if values.len() >= LOCAL_MAX {
                values.retain(|_, (at, _)| *at == version);
                if values.len() >= LOCAL_MAX {
                    values.clear();
                }
            }
            values.insert(key.to_owned(), (version, value.clone()));
        }
        Ok(value)
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
        if let Some((connection, prefix)) = &self.shared {
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
    /// or profile write commits and before it answers; `also` are the other
    /// data sets the write changed.
    pub async fn invalidate(&self, also: &[Key]) {
        if let Ok(mut local) = self.local.lock() {
            local.clear();
        }
        if let Ok(mut values) = self.values.lock() {
            values.clear();
        }
        let mut keys = vec![(Key::Users, 1)];
        keys.extend(also.iter().map(|k| (*k, 1)));
        self.versions.bump(&keys).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_lists_are_dropped_on_every_write() {
        let cache = UserListCache::new(Versions::in_process());
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
        cache.invalidate(&[]).await;
        let fresh = cache
            .get_or_load("all", async { Ok(Bytes::from_static(b"[2]")) })
            .await
            .unwrap();
        assert_eq!(fresh.as_ref(), b"[2]");
    }
}

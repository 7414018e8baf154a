//! Versions of cached data: one counter per data set, bumped by every write
//! to it, so every cache on every instance knows when its copy is stale.
//!
//! A cache remembers the versions its copy was built at and serves it only
//! while they are current. Writers bump after the write commits and before
//! it answers (or before its task is marked done), so a read that starts
//! after a write has completed never sees an older version.
//!
//! Where the counters live decides who sees them:
//! - **Redis** (scaled out): a bump is one `INCRBY` per counter in one
//!   script. The watched counters (users, names, memberships, sessions) are heard
//!   over pub/sub and trusted under a lease whose holders every writer
//!   waits for (`trust`), so a user-list read asks Redis nothing; a
//!   room's counters are asked for with one `MGET` (batched across
//!   readers). A bump that fails is owed: it is retried until it lands, and
//!   until then this instance serves nothing it touches from a cache. A
//!   counter lost with a Redis restart starts again from a random base, so
//!   it never repeats a version cached before.
//! - **The database** (several instances, no Redis): a counter row per data
//!   set; a reader reads its rows in one statement.
//! - **This process** (tests, tools).

mod redis_store;
mod trust;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::aio::ConnectionManager;
use redis_store::RedisVersions;
use sea_orm::{DatabaseConnection, FromQueryResult, Statement};
use tokio::sync::{mpsc, oneshot};

/// One versioned data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// Every user and profile field (the user lists).
    Users,
    /// Usernames and the set of users (renames, deletions).
    Names,
    /// Every membership of every room.
    Memberships,
    /// Sign-in sessions: bumped when tokens are revoked or accounts
    /// deleted, so every instance checks its live connections again.
    Sessions,
    /// One room: its name, members and messages.
    Room(i64),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Users => f.write_str("users"),
            Key::Names => f.write_str("names"),
            Key::Memberships => f.write_str("memberships"),
            Key::Sessions => f.write_str("sessions"),
            Key::Room(id) => write!(f, "room:{id}"),
        }
    }
}

impl Key {
    /// Counters every instance keeps current from the bumps it hears (see
    /// `trust`); a room's are asked for.
    fn is_watched(self) -> bool {
        !matches!(self, Key::Room(_))
    }

    fn parse(name: &str) -> Option<Key> {
        match name {
            "users" => Some(Key::Users),
            "names" => Some(Key::Names),
            "memberships" => Some(Key::Memberships),
            "sessions" => Some(Key::Sessions),
            other => other.strip_prefix("room:")?.parse().ok().map(Key::Room),
        }
    }
}

/// Longest wait for Redis before a read falls back to the database.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

pub struct Versions {
    store: Arc<Store>,
    /// Reads of a shared store, batched (see [`answer`]).
    asks: Option<mpsc::UnboundedSender<Ask>>,
}

/// One reader's question to the batcher.
struct Ask {
    keys: Vec<Key>,
    reply: oneshot::Sender<Option<Arc<HashMap<Key, u64>>>>,
}

/// Most reads answered by one round trip.
const BATCH_MAX: usize = 512;

enum Store {
    Memory(Mutex<HashMap<Key, u64>>),
    Database(DatabaseConnection),
    Redis(Arc<RedisVersions>),
}

#[derive(FromQueryResult)]
struct Row {
    name: String,
    version: i64,
}

impl Versions {
    pub fn in_process() -> Arc<Self> {
        Arc::new(Versions {
            store: Arc::new(Store::Memory(Mutex::new(HashMap::new()))),
            asks: None,
        })
    }

    pub fn database(db: DatabaseConnection) -> Arc<Self> {
        Versions::shared(Store::Database(db))
    }

    /// Counters in Redis; with a client to listen with, the watched ones
    /// are also heard and trusted under a lease of the given length (see
    /// `trust`).
    pub fn redis(
        connection: ConnectionManager,
        listen: Option<(redis::Client, Duration)>,
        prefix: &str,
    ) -> Arc<Self> {
        let prefix = format!("{prefix}v:");
        let lease = listen.as_ref().map_or(trust::DEFAULT_LEASE, |l| l.1);
        let mut redis = RedisVersions::new(connection.clone(), prefix.clone(), lease);
        redis.trust =
            listen.map(|(client, lease)| trust::Trust::start(connection, prefix, client, lease));
        Versions::shared(Store::Redis(Arc::new(redis)))
    }

    fn shared(store: Store) -> Arc<Self> {
        let store = Arc::new(store);
        let (asks, receiver) = mpsc::unbounded_channel();
        tokio::spawn(answer(store.clone(), receiver));
        Arc::new(Versions {
            store,
            asks: Some(asks),
        })
    }

    /// The current versions of `keys`, in order; `None` when they cannot be
    /// known (Redis down, a bump of this instance still owed): then nothing
    /// may be served from a cache.
    pub async fn current(&self, keys: &[Key]) -> Option<Vec<u64>> {
        if matches!(self.store.as_ref(), Store::Memory(_)) {
            return self.store.fetch(keys).await;
        }
        if let Store::Redis(redis) = self.store.as_ref() {
            if redis.owes_any(keys) {
                return None;
            }
            if let Some(trusted) = redis.trust.as_ref().and_then(|t| t.get(keys)) {
                return Some(trusted);
            }
        }
        let (reply, answer) = oneshot::channel();
        self.asks
            .as_ref()?
            .send(Ask {
                keys: keys.to_vec(),
                reply,
            })
            .ok()?;
        let found = answer.await.ok()??;
        keys.iter().map(|k| found.get(k).copied()).collect()
    }

    /// Bump every key by its count, on every instance; the new versions in
    /// order (0 where unknown). Never fails: a bump that cannot be recorded
    /// now is retried, and caches are bypassed until it lands.
    pub async fn bump(&self, changes: &[(Key, u64)]) -> Vec<u64> {
        let mut changes: Vec<(Key, u64)> = changes.to_vec();
        if changes.is_empty() {
            return Vec::new();
        }
        // A fixed order: concurrent bumps of the same rows never deadlock.
        let order: Vec<Key> = changes.iter().map(|c| c.0).collect();
        changes.sort_unstable();
        changes.dedup_by(|a, b| {
            if a.0 == b.0 {
                b.1 += a.1;
                true
            } else {
                false
            }
        });
        let bumped: HashMap<Key, u64> = match self.store.as_ref() {
            Store::Memory(map) => match map.lock() {
                Ok(mut map) => changes
                    .iter()
                    .map(|(k, by)| {
                        let v = map.entry(*k).or_insert(0);
                        *v += by;
                        (*k, *v)
                    })
                    .collect(),
                Err(_) => HashMap::new(),
            },
            Store::Database(db) => bump_rows(db, &changes).await,
            Store::Redis(redis) => redis.bump(&changes).await,
        };
        order
            .iter()
            .map(|k| bumped.get(k).copied().unwrap_or(0))
            .collect()
    }
}

impl Store {
    /// The versions of `keys`, in order, read in one round trip.
    async fn fetch(&self, keys: &[Key]) -> Option<Vec<u64>> {
        match self {
            Store::Memory(map) => {
                let map = map.lock().ok()?;
                Some(
                    keys.iter()
                        .map(|k| map.get(k).copied().unwrap_or(0))
                        .collect(),
                )
            }
            Store::Database(db) => {
                let names = keys
                    .iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(",");
                // Every name is built from constants and integers.
                let sql =
                    format!("SELECT name, version FROM cache_versions WHERE name IN ({names})");
                let rows =
                    Row::find_by_statement(Statement::from_string(db.get_database_backend(), sql))
                        .all(db)
                        .await;
                match rows {
                    Ok(rows) => {
                        let found: HashMap<String, i64> =
                            rows.into_iter().map(|r| (r.name, r.version)).collect();
                        Some(
                            keys.iter()
                                .map(|k| found.get(&k.to_string()).copied().unwrap_or(0) as u64)
                                .collect(),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cache versions unavailable");
                        None
                    }
                }
            }
            Store::Redis(redis) => redis.fetch(keys).await,
        }
    }
}

/// Answer readers in batches: every reader waiting while one round trip is
/// out shares the next. Each reader's answer comes from a read sent after
/// it asked, so it is as current as a read of its own.
async fn answer(store: Arc<Store>, mut asks: mpsc::UnboundedReceiver<Ask>) {
    while let Some(first) = asks.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match asks.try_recv() {
                Ok(ask) => batch.push(ask),
                Err(_) => break,
            }
        }
        let mut keys: Vec<Key> = batch.iter().flat_map(|a| a.keys.iter().copied()).collect();
        keys.sort_unstable();
        keys.dedup();
        let found = store
            .fetch(&keys)
            .await
            .map(|values| Arc::new(keys.into_iter().zip(values).collect::<HashMap<_, _>>()));
        for ask in batch {
            let _ = ask.reply.send(found.clone());
        }
    }
}

async fn bump_rows(db: &DatabaseConnection, changes: &[(Key, u64)]) -> HashMap<Key, u64> {
    let values = changes
        .iter()
        .map(|(k, by)| format!("('{k}', {by})"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "INSERT INTO cache_versions (name, version) VALUES {values} \
         ON CONFLICT (name) DO UPDATE SET version = cache_versions.version + excluded.version \
         RETURNING name, version"
    );
    let backend = db.get_database_backend();
    for attempt in 0..5u32 {
        match Row::find_by_statement(Statement::from_string(backend, sql.clone()))
            .all(db)
            .await
        {
            Ok(rows) => {
                return rows
                    .into_iter()
                    .filter_map(|r| Some((Key::parse(&r.name)?, r.version as u64)))
                    .collect();
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, "could not bump cache versions");
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
        }
    }
    HashMap::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_versions_count_bumps() {
        let versions = Versions::in_process();
        assert_eq!(
            versions.current(&[Key::Users, Key::Room(3)]).await,
            Some(vec![0, 0])
        );
        let bumped = versions
            .bump(&[(Key::Room(3), 2), (Key::Users, 1), (Key::Room(3), 1)])
            .await;
        assert_eq!(bumped, vec![3, 1, 3]);
        assert_eq!(
            versions.current(&[Key::Room(3), Key::Room(4)]).await,
            Some(vec![3, 0])
        );
    }

    #[test]
    fn keys_read_back() {
        for key in [
            Key::Users,
            Key::Names,
            Key::Memberships,
            Key::Sessions,
            Key::Room(42),
        ] {
            assert_eq!(Key::parse(&key.to_string()), Some(key));
        }
        assert_eq!(Key::parse("room:x"), None);
    }
}

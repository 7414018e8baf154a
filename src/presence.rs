//! Presence: a user with at least one live websocket connection, on any
//! instance, is online. When the last one closes they go offline and their
//! `last_seen_at` is stored. Coming online and going offline are published
//! as [`Event::PresenceChanged`].
//!
//! Embedded mode counts connections in this process. In Redis mode each
//! instance beats for its connected users (`presence:<user>`, a sorted set
//! of instance -> last beat) and keeps `presence:online` (user -> newest
//! beat); a user is online while some instance beat for them within
//! `PRESENCE_TTL_SECS`. An instance that dies stops beating: another
//! instance's sweep sees the beats lapse, takes the user out of
//! `presence:online` (exactly one sweeper wins) and reports them offline,
//! last seen at their last beat. This is separate from the status a user
//! sets on their profile (Online, Busy, ...), which stays as they set it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    domain::presence,
    events::{Event, EventBus},
};

/// Longest wait for Redis on any presence operation.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Lapsed users one sweep looks at.
const SWEEP_BATCH: isize = 200;

/// Adds this instance's beat; answers how many other instances beat
/// within the TTL before it.
const CONNECT: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
local live = redis.call('ZCOUNT', KEYS[1], ARGV[1] - ARGV[3], '+inf')
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3] * 4)
redis.call('ZADD', KEYS[2], 'GT', ARGV[1], ARGV[4])
return live
";

/// Removes this instance's beat; when no other instance beats within the
/// TTL, takes the user out of the online set and answers 1.
const DISCONNECT: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
if redis.call('ZCOUNT', KEYS[1], ARGV[1] - ARGV[3], '+inf') == 0 then
  return redis.call('ZREM', KEYS[2], ARGV[4])
end
return 0
";

/// For a user whose newest beat lapsed: when no instance beats within the
/// TTL and this caller is the one to take them out of the online set,
/// answers their last beat (ms); otherwise 0.
const SWEEP: &str = r"
if redis.call('ZCOUNT', KEYS[1], ARGV[1] - ARGV[3], '+inf') > 0 then return 0 end
local last = redis.call('ZSCORE', KEYS[2], ARGV[4])
if redis.call('ZREM', KEYS[2], ARGV[4]) == 1 then return tonumber(last) or 1 end
return 0
";

enum Store {
    InProcess,
    Redis {
        connection: ConnectionManager,
        prefix: String,
        instance: String,
    },
}

pub struct Presence {
    store: Store,
    db: DatabaseConnection,
    events: Arc<dyn EventBus>,
    ttl: Duration,
    /// Live connections per user on this instance.
    local: Mutex<HashMap<i64, usize>>,
}

/// Held while a connection is live; dropping it closes the connection's
/// share of its user's presence.
pub struct PresenceGuard {
    presence: Arc<Presence>,
    user: i64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let presence = self.presence.clone();
        let user = self.user;
        let last = presence
            .local
            .lock()
            .map(|mut local| match local.get_mut(&user) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    local.remove(&user);
                    true
                }
                None => false,
            })
            .unwrap_or(false);
        if last && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { presence.went_away(user).await });
        }
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Presence {
    /// Presence in this process only.
    pub fn in_process(
        db: DatabaseConnection,
        events: Arc<dyn EventBus>,
        ttl: Duration,
    ) -> Arc<Self> {
        Arc::new(Presence {
            store: Store::InProcess,
            db,
            events,
            ttl,
            local: Mutex::new(HashMap::new()),
        })
    }

    /// Presence shared through Redis; call [`Presence::beat`] regularly.
    pub fn redis(
        connection: ConnectionManager,
        prefix: &str,
        db: DatabaseConnection,
        events: Arc<dyn EventBus>,
        ttl: Duration,
    ) -> Arc<Self> {
        Arc::new(Presence {
            store: Store::Redis {
                connection,
                prefix: prefix.to_owned(),
                instance: Uuid::new_v4().to_string(),
            },
            db,
            events,
            ttl,
            local: Mutex::new(HashMap::new()),
        })
    }

    /// How often [`Presence::beat`] must run.
    pub fn beat_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    /// A live connection of `user` opened.
    pub fn connected(self: &Arc<Self>, user: i64) -> PresenceGuard {
        let first = self
            .local
            .lock()
            .map(|mut local| {
                let n = local.entry(user).or_insert(0);
                *n += 1;
                *n == 1
            })
            .unwrap_or(false);
        if first {
            let presence = self.clone();
            tokio::spawn(async move { presence.arrived(user).await });
        }
        PresenceGuard {
            presence: self.clone(),
            user,
        }
    }

    fn keys(prefix: &str, user: i64) -> (String, String) {
        (
            format!("{prefix}presence:{user}"),
            format!("{prefix}presence:online"),
        )
    }

    async fn script(&self, source: &str, user: i64, at: i64) -> Option<i64> {
        let Store::Redis {
            connection,
            prefix,
            instance,
        } = &self.store
        else {
            return None;
        };
        let (beats, online) = Self::keys(prefix, user);
        let mut connection = connection.clone();
        let script = redis::Script::new(source);
        let mut invocation = script.key(beats);
        invocation
            .key(online)
            .arg(at)
            .arg(instance)
            .arg(self.ttl.as_millis() as i64)
            .arg(user);
        let call = invocation.invoke_async::<i64>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, user, "presence not recorded: Redis failed");
                None
            }
            Err(_) => {
                tracing::warn!(user, "presence not recorded: Redis timed out");
                None
            }
        }
    }

    /// The first local connection of `user` opened.
    async fn arrived(&self, user: i64) {
        let elsewhere = match self.store {
            Store::InProcess => 0,
            Store::Redis { .. } => self.script(CONNECT, user, now_ms()).await.unwrap_or(0),
        };
        if elsewhere == 0 {
            self.events.publish(Event::PresenceChanged {
                user_id: user,
                online: true,
                last_seen_at: None,
            });
        }
    }

    /// The last local connection of `user` closed.
    async fn went_away(&self, user: i64) {
        // A connection opened again meanwhile: still here.
        if self
            .local
            .lock()
            .map(|local| local.contains_key(&user))
            .unwrap_or(false)
        {
            return;
        }
        let gone = match self.store {
            Store::InProcess => true,
            Store::Redis { .. } => self.script(DISCONNECT, user, now_ms()).await == Some(1),
        };
        if gone {
            self.offline(user, crate::domain::now()).await;
        }
    }

    async fn offline(&self, user: i64, at: DateTime<Utc>) {
        if let Err(e) = presence::record_last_seen(&self.db, user, at).await {
            tracing::warn!(error = %e, user, "last seen time not stored");
        }
        self.events.publish(Event::PresenceChanged {
            user_id: user,
            online: false,
            last_seen_at: Some(at),
        });
    }

    /// Which of `users` are online.
    pub async fn online(&self, users: &[i64]) -> HashSet<i64> {
        let local: HashSet<i64> = self
            .local
            .lock()
            .map(|local| {
                users
                    .iter()
                    .copied()
                    .filter(|u| local.contains_key(u))
                    .collect()
            })
            .unwrap_or_default();
        let Store::Redis {
            connection, prefix, ..
        } = &self.store
        else {
            return local;
        };
        let mut pipe = redis::pipe();
        let since = now_ms() - self.ttl.as_millis() as i64;
        for &user in users {
            pipe.cmd("ZCOUNT")
                .arg(Self::keys(prefix, user).0)
                .arg(since)
                .arg("+inf");
        }
        let mut connection = connection.clone();
        match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<Vec<i64>>(&mut connection))
            .await
        {
            Ok(Ok(counts)) => users
                .iter()
                .zip(counts)
                .filter(|(user, n)| *n > 0 || local.contains(user))
                .map(|(user, _)| *user)
                .collect(),
            _ => local,
        }
    }

    /// Beat for this instance's users and report those whose beats lapsed
    /// everywhere (their instance died). Redis mode only.
    pub async fn beat(&self) {
        let Store::Redis {
            connection,
            prefix,
            instance,
        } = &self.store
        else {
            return;
        };
        let users: Vec<i64> = self
            .local
            .lock()
            .map(|local| local.keys().copied().collect())
            .unwrap_or_default();
        let at = now_ms();
        let ttl = self.ttl.as_millis() as i64;
        let mut connection = connection.clone();
        if !users.is_empty() {
            let mut pipe = redis::pipe();
            for &user in &users {
                let (beats, online) = Self::keys(prefix, user);
                pipe.zadd(&beats, instance, at)
                    .ignore()
                    .pexpire(&beats, ttl * 4)
                    .ignore()
                    .cmd("ZADD")
                    .arg(&online)
                    .arg("GT")
                    .arg(at)
                    .arg(user)
                    .ignore();
            }
            let sent = tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut connection));
            if !matches!(sent.await, Ok(Ok(()))) {
                tracing::warn!("presence beat not recorded");
            }
        }
        let mut query = redis::cmd("ZRANGEBYSCORE");
        query
            .arg(Self::keys(prefix, 0).1)
            .arg("-inf")
            .arg(at - ttl)
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH);
        let lapsed = query.query_async::<Vec<i64>>(&mut connection);
        let Ok(Ok(lapsed)) = tokio::time::timeout(REDIS_TIMEOUT, lapsed).await else {
            return;
        };
        for user in lapsed {
            if let Some(last) = self.script(SWEEP, user, at).await
                && last > 0
            {
                let at = Utc
                    .timestamp_millis_opt(last)
                    .single()
                    .unwrap_or_else(crate::domain::now);
                self.offline(user, at).await;
            }
        }
    }
}

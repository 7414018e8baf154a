//! Presence: a user with at least one live websocket connection, on any
//! instance, is online. When the last one closes they go offline and their
//! `last_seen_at` is stored. Coming online and going offline are published
//! as [`Event::PresenceChanged`].
//!
//! Embedded mode counts connections in this process. In Redis mode each
//! instance beats for its connected users (`presence:<user>`, a sorted set
//! of instance -> last beat) and keeps `presence:online` (user -> newest
//! beat); a user is online while some instance beat for them within
//! `PRESENCE_TTL_SECS`. Every time is Redis's own clock, so instances with
//! skewed clocks agree. An instance that dies stops beating: another
//! instance's sweep sees the beats lapse, takes the user out of
//! `presence:online` (exactly one sweeper wins) and reports them offline,
//! last seen at their last beat; a user swept by mistake (an instance that
//! could not reach Redis for a while) is reported online again by their
//! instance's next beat. This is separate from the status a user sets on
//! their profile (Online, Busy, ...), which stays as they set it.
//!
//! An instance handles one user's comings and goings one at a time, from
//! its current count of their connections, and publishes a change only
//! when it differs from what it last published: the last event it sent for
//! a user always matches that user's connections here.

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
/// Locks over users' comings and goings.
const TRANSITION_SHARDS: usize = 64;

/// Redis's clock, in milliseconds.
const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Adds this instance's beat; answers how many other instances beat
/// within the TTL. KEYS: beats, online. ARGV: instance, ttl, user.
const CONNECT: &str = "
redis.call('ZREM', KEYS[1], ARGV[1])
local live = redis.call('ZCOUNT', KEYS[1], now - ARGV[2], '+inf')
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2] * 4)
redis.call('ZADD', KEYS[2], 'GT', now, ARGV[3])
return live
";

/// Removes this instance's beat; when no other instance beats within the
/// TTL, takes the user out of the online set and answers 1.
const DISCONNECT: &str = "
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCOUNT', KEYS[1], now - ARGV[2], '+inf') == 0 then
  return redis.call('ZREM', KEYS[2], ARGV[3])
end
return 0
";

/// For a user whose newest beat lapsed: when no instance beats within the
/// TTL and this caller is the one to take them out of the online set,
/// answers their last beat (ms); otherwise 0.
const SWEEP: &str = "
if redis.call('ZCOUNT', KEYS[1], now - ARGV[2], '+inf') > 0 then return 0 end
local last = redis.call('ZSCORE', KEYS[2], ARGV[3])
if redis.call('ZREM', KEYS[2], ARGV[3]) == 1 then return tonumber(last) or 1 end
return 0
";

/// Beats for every user in ARGV[3..] (keys under the prefix ARGV[1]);
/// answers the users that were not in the online set (swept meanwhile)
/// and the users whose beats lapsed everywhere (for the sweep).
/// ARGV: prefix, instance, ttl, users...
const BEAT: &str = "
local prefix, instance, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local online = prefix .. 'presence:online'
local back = {}
for i = 4, #ARGV do
  local beats = prefix .. 'presence:' .. ARGV[i]
  redis.call('ZADD', beats, now, instance)
  redis.call('PEXPIRE', beats, ttl * 4)
  if redis.call('ZADD', online, 'GT', now, ARGV[i]) == 1 then table.insert(back, ARGV[i]) end
end
-- At most 200 lapsed users a sweep.
local lapsed = redis.call('ZRANGEBYSCORE', online, '-inf', now - ttl, 'LIMIT', 0, 200)
return {back, lapsed}
";

/// How many of each user's instances beat within the TTL.
/// ARGV: prefix, ttl, users...
const ONLINE: &str = "
local out = {}
for i = 3, #ARGV do
  out[#out + 1] = redis.call('ZCOUNT', ARGV[1] .. 'presence:' .. ARGV[i], now - ARGV[2], '+inf')
end
return out
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
    /// Held while one user's coming or going is handled, with what this
    /// instance last published for each user (true: online); sharded by
    /// user, so a slow Redis holds up only the users of one shard.
    transitions: Vec<tokio::sync::Mutex<HashMap<i64, bool>>>,
}

/// Held while a connection is live; dropping it closes the connection's
/// share of its user's presence.
pub struct PresenceGuard {
    presence: Arc<Presence>,
    user: i64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let last = self
            .presence
            .local
            .lock()
            .map(|mut local| match local.get_mut(&self.user) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    local.remove(&self.user);
                    true
                }
                None => false,
            })
            .unwrap_or(false);
        if last && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (presence, user) = (self.presence.clone(), self.user);
            runtime.spawn(async move { presence.settle(user).await });
        }
    }
}

fn at_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(crate::domain::now)
}

impl Presence {
    fn new(
        store: Store,
        db: DatabaseConnection,
        events: Arc<dyn EventBus>,
        ttl: Duration,
    ) -> Arc<Self> {
        Arc::new(Presence {
            store,
            db,
            events,
            ttl,
            local: Mutex::new(HashMap::new()),
            transitions: (0..TRANSITION_SHARDS)
                .map(|_| tokio::sync::Mutex::new(HashMap::new()))
                .collect(),
        })
    }

    /// Presence in this process only.
    pub fn in_process(
        db: DatabaseConnection,
        events: Arc<dyn EventBus>,
        ttl: Duration,
    ) -> Arc<Self> {
        Self::new(Store::InProcess, db, events, ttl)
    }

    /// Presence shared through Redis; call [`Presence::beat`] regularly.
    pub fn redis(
        connection: ConnectionManager,
        prefix: &str,
        db: DatabaseConnection,
        events: Arc<dyn EventBus>,
        ttl: Duration,
    ) -> Arc<Self> {
        let store = Store::Redis {
            connection,
            prefix: prefix.to_owned(),
            instance: Uuid::new_v4().to_string(),
        };
        Self::new(store, db, events, ttl)
    }

    /// How often [`Presence::beat`] must run.
    pub fn beat_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
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
            tokio::spawn(async move { presence.settle(user).await });
        }
        PresenceGuard {
            presence: self.clone(),
            user,
        }
    }

    fn transitions_of(&self, user: i64) -> &tokio::sync::Mutex<HashMap<i64, bool>> {
        &self.transitions[user.rem_euclid(TRANSITION_SHARDS as i64) as usize]
    }

    fn connected_here(&self, user: i64) -> bool {
        self.local
            .lock()
            .map(|local| local.contains_key(&user))
            .unwrap_or(false)
    }

    /// Bring what this instance says of `user` in line with their
    /// connections here: one user's changes are handled one at a time,
    /// from the count as it is when the change is handled.
    async fn settle(&self, user: i64) {
        let mut announced = self.transitions_of(user).lock().await;
        let here = self.connected_here(user);
        let said = announced.get(&user).copied();
        if here && said != Some(true) {
            // Online unless another instance already said so.
            let elsewhere = match self.store {
                Store::InProcess => 0,
                Store::Redis { .. } => self.script(CONNECT, user).await.unwrap_or(0),
            };
            announced.insert(user, true);
            if elsewhere == 0 {
                self.publish(user, true, None);
            }
        } else if !here && said == Some(true) {
            announced.remove(&user);
            let gone = match self.store {
                Store::InProcess => true,
                Store::Redis { .. } => self.script(DISCONNECT, user).await == Some(1),
            };
            if gone {
                self.offline(user, crate::domain::now()).await;
            }
        }
    }

    fn publish(&self, user: i64, online: bool, last_seen_at: Option<DateTime<Utc>>) {
        self.events.publish(Event::PresenceChanged {
            user_id: user,
            online,
            last_seen_at,
        });
    }

    async fn offline(&self, user: i64, at: DateTime<Utc>) {
        if let Err(e) = presence::record_last_seen(&self.db, user, at).await {
            tracing::warn!(error = %e, user, "last seen time not stored");
        }
        self.publish(user, false, Some(at));
    }

    /// Run a script with Redis's clock; `None` when Redis failed.
    async fn run<T: redis::FromRedisValue>(
        &self,
        source: &str,
        keys: &[String],
        args: Vec<String>,
    ) -> Option<T> {
        let Store::Redis { connection, .. } = &self.store else {
            return None;
        };
        let script = redis::Script::new(&format!("{NOW}{source}"));
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = connection.clone();
        let call = invocation.invoke_async::<T>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "presence not recorded: Redis failed");
                None
            }
            Err(_) => {
                tracing::warn!("presence not recorded: Redis timed out");
                None
            }
        }
    }

    /// One of the per-user scripts (connect, disconnect, sweep).
    async fn script(&self, source: &str, user: i64) -> Option<i64> {
        let Store::Redis {
            prefix, instance, ..
        } = &self.store
        else {
            return None;
        };
        let keys = [
            format!("{prefix}presence:{user}"),
            format!("{prefix}presence:online"),
        ];
        let args = vec![
            instance.clone(),
            self.ttl_ms().to_string(),
            user.to_string(),
        ];
        self.run(source, &keys, args).await
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
        let Store::Redis { prefix, .. } = &self.store else {
            return local;
        };
        let mut args = vec![prefix.clone(), self.ttl_ms().to_string()];
        args.extend(users.iter().map(i64::to_string));
        match self.run::<Vec<i64>>(ONLINE, &[], args).await {
            Some(counts) => users
                .iter()
                .zip(counts)
                .filter(|(user, n)| *n > 0 || local.contains(user))
                .map(|(user, _)| *user)
                .collect(),
            None => local,
        }
    }

    /// Beat for this instance's users, say again that users swept by
    /// mistake are online, and report those whose beats lapsed everywhere
    /// (their instance died). Redis mode only.
    pub async fn beat(&self) {
        let Store::Redis {
            prefix, instance, ..
        } = &self.store
        else {
            return;
        };
        let users: Vec<i64> = self
            .local
            .lock()
            .map(|local| local.keys().copied().collect())
            .unwrap_or_default();
        let mut args = vec![prefix.clone(), instance.clone(), self.ttl_ms().to_string()];
        args.extend(users.iter().map(i64::to_string));
        let Some((back, lapsed)) = self.run::<(Vec<i64>, Vec<i64>)>(BEAT, &[], args).await else {
            return;
        };
        for user in back {
            let announced = self.transitions_of(user).lock().await;
            if announced.get(&user) == Some(&true) && self.connected_here(user) {
                self.publish(user, true, None);
            }
        }
        for user in lapsed {
            if let Some(last) = self.script(SWEEP, user).await
                && last > 0
            {
                self.offline(user, at_millis(last)).await;
            }
        }
    }
}

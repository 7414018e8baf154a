//! Versions in Redis (scaled out): counters, bumped by a script, read with
//! one `MGET`, or trusted from what this instance heard (see [`super::trust`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::{
    Key, REDIS_TIMEOUT,
    trust::{self, Trust},
};

pub(super) struct RedisVersions {
    connection: ConnectionManager,
    /// The counters' prefix (`{REDIS_KEY_PREFIX}v:`).
    prefix: String,
    /// Bumps that did not reach Redis yet, by key.
    owed: Mutex<HashMap<Key, u64>>,
    bump: redis::Script,
    wait: redis::Script,
    /// The versions this instance may use without asking Redis, when it
    /// listens for bumps.
    pub(super) trust: Option<Arc<Trust>>,
}

/// `KEYS`: the counters, then the epoch and the sequence of watched bumps.
/// `ARGV`: per counter a random seed and an increment, then how many of the
/// counters (the first ones) are watched, a random epoch, the channel, and
/// the watched counters' names.
///
/// Seeds missing counters and bumps them; a bump of watched counters also
/// takes the next sequence number and is published with it, in the same
/// step, so every listener hears bumps in sequence order.
/// Returns `{versions, seq, epoch}` (`seq` 0 when nothing is watched).
const BUMP_SCRIPT: &str = r"
local n = #KEYS - 2
local out = {}
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'NX')
  out[i] = redis.call('INCRBY', KEYS[i], ARGV[2 * i])
end
local watched = tonumber(ARGV[2 * n + 1])
if watched == 0 then
  return {out, 0, ''}
end
redis.call('SET', KEYS[n + 1], ARGV[2 * n + 2], 'NX')
local epoch = redis.call('GET', KEYS[n + 1])
local seq = redis.call('INCR', KEYS[n + 2])
local message = epoch .. ' ' .. string.format('%d', seq)
for i = 1, watched do
  message = message .. ' ' .. ARGV[2 * n + 3 + i] .. '=' .. string.format('%d', out[i])
end
redis.call('PUBLISH', ARGV[2 * n + 3], message)
return {out, seq, epoch}
";

/// `KEYS`: the epoch and the leases. `ARGV`: the epoch of a bump, its
/// sequence number, and how long an expired lease is kept (ms).
/// How many live leases have not acknowledged the bump yet; -1 when the
/// epoch changed (Redis lost its data: every lease is unknown).
const WAIT_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = tonumber(ARGV[2])
local pending = 0
local leases = redis.call('HGETALL', KEYS[2])
for i = 1, #leases, 2 do
  local acked, due, expiry = string.match(leases[i + 1], '^(%d+) (%d+) (%d+)$')
  expiry = tonumber(expiry or '0')
  if expiry <= now then
    if expiry + tonumber(ARGV[3]) < now then
      redis.call('HDEL', KEYS[2], leases[i])
    end
  elseif tonumber(acked) < seq then
    pending = pending + 1
  end
end
return pending
";

/// Longest a writer waits for the listeners' acknowledgements: by then
/// every lease granted before its bump has run out.
const WAIT_MAX: Duration = Duration::from_millis(2 * trust::LEASE_MS + 250);

/// A counter's key.
pub(super) fn counter_name(prefix: &str, key: Key) -> String {
    format!("{prefix}{key}")
}

/// One of the lease protocol's keys (`@epoch`, `@seq`, `@leases`,
/// `@bumps`), apart from every counter's.
pub(super) fn meta_name(prefix: &str, name: &str) -> String {
    format!("{prefix}@{name}")
}

pub(super) fn random_base() -> u64 {
    u64::from(rand::random::<u32>()) << 16
}

impl RedisVersions {
    pub(super) fn new(connection: ConnectionManager, prefix: String) -> Self {
        RedisVersions {
            connection,
            prefix,
            owed: Mutex::new(HashMap::new()),
            bump: redis::Script::new(BUMP_SCRIPT),
            wait: redis::Script::new(WAIT_SCRIPT),
            trust: None,
        }
    }

    fn name(&self, key: Key) -> String {
        counter_name(&self.prefix, key)
    }

    fn meta(&self, name: &str) -> String {
        meta_name(&self.prefix, name)
    }

    pub(super) fn owes_any(&self, keys: &[Key]) -> bool {
        match self.owed.lock() {
            Ok(owed) => !owed.is_empty() && keys.iter().any(|k| owed.contains_key(k)),
            Err(_) => true,
        }
    }

    pub(super) async fn fetch(&self, keys: &[Key]) -> Option<Vec<u64>> {
        let names: Vec<String> = keys.iter().map(|k| self.name(*k)).collect();
        let mut connection = self.connection.clone();
        let asked = tokio::time::timeout(REDIS_TIMEOUT, async {
            redis::cmd("MGET")
                .arg(&names)
                .query_async::<Vec<Option<u64>>>(&mut connection)
                .await
        })
        .await;
        match asked {
            // A counter Redis does not have (never bumped, or lost in a
            // restart) reads as 0; a bump seeds it with a random base.
            Ok(Ok(values)) if values.len() == keys.len() => {
                Some(values.into_iter().map(|v| v.unwrap_or(0)).collect())
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cache versions unavailable");
                None
            }
            _ => None,
        }
    }

    /// Bump `changes` (sorted by key, so the watched ones come first).
    /// Answers once every instance that trusts what it heard has heard it.
    pub(super) async fn bump(self: &Arc<Self>, changes: &[(Key, u64)]) -> HashMap<Key, u64> {
        let started = Instant::now();
        let watched = changes.iter().any(|(k, _)| k.is_watched());
        match self.try_bump(changes).await {
            Ok((bumped, heard)) => {
                if let Some((epoch, seq)) = heard {
                    if let Some(trust) = &self.trust {
                        trust.saw_bump(&epoch, &bumped);
                    }
                    self.wait_heard(&epoch, seq, started).await;
                }
                bumped
            }
            Err(reason) => {
                tracing::error!(%reason, "could not bump cache versions; retrying in the background");
                let first_owed = {
                    let Ok(mut owed) = self.owed.lock() else {
                        return HashMap::new();
                    };
                    let was_empty = owed.is_empty();
                    for (key, by) in changes {
                        *owed.entry(*key).or_insert(0) += by;
                    }
                    was_empty
                };
                if first_owed {
                    tokio::spawn(pay_owed(self.clone()));
                }
                if watched {
                    // Nobody heard it: answer once every lease has run out.
                    tokio::time::sleep_until(started + WAIT_MAX).await;
                }
                HashMap::new()
            }
        }
    }

    /// The new versions, and for a watched bump its epoch and sequence.
    async fn try_bump(
        &self,
        changes: &[(Key, u64)],
    ) -> Result<(HashMap<Key, u64>, Option<(String, u64)>), String> {
        let mut invocation = self.bump.prepare_invoke();
        for (key, _) in changes {
            invocation.key(self.name(*key));
        }
        invocation.key(self.meta("epoch")).key(self.meta("seq"));
        for (_, by) in changes {
            invocation.arg(random_base()).arg(*by);
        }
        let watched: Vec<Key> = changes
            .iter()
            .map(|c| c.0)
            .take_while(|k| k.is_watched())
            .collect();
        invocation
            .arg(watched.len())
            .arg(trust::new_epoch())
            .arg(self.meta("bumps"));
        for key in &watched {
            invocation.arg(key.to_string());
        }
        let mut connection = self.connection.clone();
        let (versions, seq, epoch): (Vec<u64>, u64, String) =
            tokio::time::timeout(REDIS_TIMEOUT * 4, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let bumped = changes.iter().map(|c| c.0).zip(versions).collect();
        Ok((bumped, (seq > 0).then_some((epoch, seq))))
    }

    /// Wait until every live lease acknowledged bump `seq` of `epoch` (or
    /// ran out), at most until every lease granted before it has run out.
    async fn wait_heard(&self, epoch: &str, seq: u64, started: Instant) {
        let deadline = started + WAIT_MAX;
        let mut pause = Duration::from_millis(1);
        loop {
            let mut connection = self.connection.clone();
            let asked = tokio::time::timeout(
                REDIS_TIMEOUT,
                self.wait
                    .key(self.meta("epoch"))
                    .key(self.meta("leases"))
                    .arg(epoch)
                    .arg(seq)
                    .arg(WAIT_MAX.as_millis() as u64 * 10)
                    .invoke_async::<i64>(&mut connection),
            )
            .await;
            match asked {
                Ok(Ok(0)) => return,
                Ok(Ok(-1)) => {
                    // Redis lost the leases with its data: wait them out.
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
                _ => {}
            }
            if Instant::now() + pause >= deadline {
                tokio::time::sleep_until(deadline).await;
                tracing::warn!(
                    seq,
                    "a cache version bump was not acknowledged by every instance in time"
                );
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Retry owed bumps until Redis takes them.
async fn pay_owed(versions: Arc<RedisVersions>) {
    let mut pause = Duration::from_millis(50);
    loop {
        tokio::time::sleep(pause).await;
        let owed: Vec<(Key, u64)> = match versions.owed.lock() {
            Ok(owed) => {
                let mut owed: Vec<(Key, u64)> = owed.iter().map(|(k, v)| (*k, *v)).collect();
                owed.sort_unstable();
                owed
            }
            Err(_) => return,
        };
        if owed.is_empty() {
            return;
        }
        if versions.try_bump(&owed).await.is_ok() {
            if let Ok(mut map) = versions.owed.lock() {
                for (key, by) in owed {
                    if let Some(left) = map.get_mut(&key) {
                        *left = left.saturating_sub(by);
                        if *left == 0 {
                            map.remove(&key);
                        }
                    }
                }
                if map.is_empty() {
                    tracing::info!("owed cache version bumps recorded");
                    return;
                }
            }
            pause = Duration::from_millis(50);
        } else {
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

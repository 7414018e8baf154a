//! Versions in Redis (scaled out): counters, bumped by a script, read with
//! one `MGET`, or trusted from what this instance heard (see [`super::trust`]).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::{
    Key, REDIS_TIMEOUT,
    trust::{self, Trust},
};

/// How long a bump is tried before it is owed.
const OWE_AFTER: Duration = Duration::from_secs(1);

pub(super) struct RedisVersions {
    connection: ConnectionManager,
    /// The counters' prefix (`{REDIS_KEY_PREFIX}v:`).
    prefix: String,
    /// Bumps that did not reach Redis yet, by key.
    owed: Mutex<HashMap<Key, u64>>,
    /// Whether `owed` holds anything: every read asks, few find it so.
    owing: AtomicBool,
    bump: redis::Script,
    wait: redis::Script,
    /// The versions this instance may use without asking Redis, when it
    /// listens for bumps.
    pub(super) trust: Option<Arc<Trust>>,
    /// How long a lease lives (every instance should have the same).
    lease: Duration,
}

/// `KEYS`: the counters, then the epoch, the sequence of watched bumps and
/// the fresh-epoch marker. `ARGV`: per counter a random seed and an
/// increment, then how many of the counters (the first ones) are watched,
/// a random epoch, the channel, the watched counters' names, and the lease
/// length (ms).
///
/// Seeds missing counters and bumps them; a bump of watched counters also
/// takes the next sequence number and is published with it, in the same
/// step, so every listener hears bumps in sequence order. A new epoch is
/// marked fresh for a lease (see [`WAIT_SCRIPT`]).
/// Returns `{versions, seq, epoch}` (`seq` 0 when nothing is watched).
const BUMP_SCRIPT: &str = r"
local n = #KEYS - 3
local out = {}
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'NX')
  out[i] = redis.call('INCRBY', KEYS[i], ARGV[2 * i])
end
local watched = tonumber(ARGV[2 * n + 1])
if watched == 0 then
  return {out, 0, ''}
end
if redis.call('SET', KEYS[n + 1], ARGV[2 * n + 2], 'NX') then
  redis.call('SET', KEYS[n + 3], '1', 'PX', ARGV[#ARGV])
end
local epoch = redis.call('GET', KEYS[n + 1])
local seq = redis.call('INCR', KEYS[n + 2])
local message = epoch .. ' ' .. string.format('%d', seq)
for i = 1, watched do
  message = message .. ' ' .. ARGV[2 * n + 3 + i] .. '=' .. string.format('%d', out[i])
end
redis.call('PUBLISH', ARGV[2 * n + 3], message)
return {out, seq, epoch}
";

/// `KEYS`: the epoch, the leases, the sequence and the fresh-epoch marker.
/// `ARGV`: the epoch of a bump, its sequence number, and how long an
/// expired lease is kept (ms).
/// `{pending, fresh}`: how many live leases have not acknowledged the bump
/// yet, and for how many more ms the epoch is fresh (Redis lost its data
/// that long ago: leases granted before are not in it). Pending is -1 when
/// the leases cannot be known: the epoch changed, or a lease acknowledged
/// more than the sequence holds (Redis lost part of its data).
const WAIT_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-1, 0}
end
local fresh = math.max(redis.call('PTTL', KEYS[4]), 0)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local pending = 0
local leases = redis.call('HGETALL', KEYS[2])
for i = 1, #leases, 2 do
  local acked, due, expiry = string.match(leases[i + 1], '^(%d+) (%d+) (%d+)$')
  acked = tonumber(acked or '0')
  expiry = tonumber(expiry or '0')
  if acked > last then
    return {-1, 0}
  end
  if expiry <= now then
    if expiry + tonumber(ARGV[3]) < now then
      redis.call('HDEL', KEYS[2], leases[i])
    end
  elseif acked < seq then
    pending = pending + 1
  end
end
return {pending, fresh}
";

/// A counter's key.
pub(super) fn counter_name(prefix: &str, key: Key) -> String {
    format!("{prefix}{key}")
}

/// One of the lease protocol's keys (`@epoch`, `@seq`, `@fresh`,
/// `@leases`, `@bumps`), apart from every counter's.
pub(super) fn meta_name(prefix: &str, name: &str) -> String {
    format!("{prefix}@{name}")
}

pub(super) fn random_base() -> u64 {
    u64::from(rand::random::<u32>()) << 16
}

impl RedisVersions {
    pub(super) fn new(connection: ConnectionManager, prefix: String, lease: Duration) -> Self {
        RedisVersions {
            lease,
            connection,
            prefix,
            owed: Mutex::new(HashMap::new()),
            owing: AtomicBool::new(false),
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

    /// Longest a writer waits for the listeners' acknowledgements: by then
    /// every lease granted before its bump has run out.
    fn wait_max(&self) -> Duration {
        self.lease * 2 + Duration::from_millis(250)
    }

    pub(super) fn owes_any(&self, keys: &[Key]) -> bool {
        if !self.owing.load(Ordering::SeqCst) {
            return false;
        }
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
        let watched = changes.iter().any(|(k, _)| k.is_watched());
        match self.try_bump_for(changes, OWE_AFTER).await {
            Ok((bumped, heard)) => {
                if let Some((epoch, seq)) = heard {
                    self.heard_everywhere(&epoch, seq, &bumped).await;
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
                    self.owing.store(true, Ordering::SeqCst);
                    was_empty
                };
                if first_owed {
                    tokio::spawn(pay_owed(self.clone()));
                }
                if watched {
                    // Nobody heard it (the script may still run later):
                    // answer once every lease has run out.
                    tokio::time::sleep(self.wait_max()).await;
                }
                HashMap::new()
            }
        }
    }

    /// [`Self::try_bump`], tried again for up to `patience`: a Redis that
    /// just came back may answer other instances before this one's
    /// connection is back, and a bump owed meanwhile would let them serve
    /// what it replaced.
    async fn try_bump_for(
        &self,
        changes: &[(Key, u64)],
        patience: Duration,
    ) -> Result<(HashMap<Key, u64>, Option<(String, u64)>), String> {
        let give_up = Instant::now() + patience;
        let mut pause = Duration::from_millis(25);
        loop {
            match self.try_bump(changes).await {
                Ok(done) => return Ok(done),
                Err(reason) if Instant::now() + pause >= give_up => return Err(reason),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
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
        invocation
            .key(self.meta("epoch"))
            .key(self.meta("seq"))
            .key(self.meta("fresh"));
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
        invocation.arg(self.lease.as_millis() as u64);
        let mut connection = self.connection.clone();
        let (versions, seq, epoch): (Vec<u64>, u64, String) =
            tokio::time::timeout(REDIS_TIMEOUT * 4, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let bumped = changes.iter().map(|c| c.0).zip(versions).collect();
        Ok((bumped, (seq > 0).then_some((epoch, seq))))
    }

    /// This instance's own watched bump, seen at once, and heard by every
    /// instance that trusts what it heard.
    async fn heard_everywhere(&self, epoch: &str, seq: u64, bumped: &HashMap<Key, u64>) {
        if let Some(trust) = &self.trust {
            trust.saw_bump(epoch, bumped);
        }
        self.wait_heard(epoch, seq).await;
    }

    /// Wait until every live lease acknowledged bump `seq` of `epoch` (or
    /// ran out), at most until every lease granted before it has run out
    /// (counted from its reply: the bump ran before it).
    async fn wait_heard(&self, epoch: &str, seq: u64) {
        let deadline = Instant::now() + self.wait_max();
        let mut pause = Duration::from_millis(1);
        loop {
            let mut connection = self.connection.clone();
            let asked = tokio::time::timeout(
                REDIS_TIMEOUT,
                self.wait
                    .key(self.meta("epoch"))
                    .key(self.meta("leases"))
                    .key(self.meta("seq"))
                    .key(self.meta("fresh"))
                    .arg(epoch)
                    .arg(seq)
                    .arg(self.wait_max().as_millis() as u64 * 10)
                    .invoke_async::<(i64, i64)>(&mut connection),
            )
            .await;
            match asked {
                Ok(Ok((0, 0))) => return,
                Ok(Ok((-1, _))) => {
                    // The leases cannot be known: wait them out.
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
                Ok(Ok((_, fresh))) if fresh > 0 => {
                    // Leases of the lost data may live until it is no
                    // longer fresh.
                    let until = Instant::now() + Duration::from_millis(fresh as u64);
                    if until >= deadline {
                        tokio::time::sleep_until(deadline).await;
                        return;
                    }
                    tokio::time::sleep_until(until).await;
                    continue;
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
        if let Ok((bumped, heard)) = versions.try_bump(&owed).await {
            // Owed until every instance that trusts what it heard has heard it.
            if let Some((epoch, seq)) = heard {
                versions.heard_everywhere(&epoch, seq, &bumped).await;
            }
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
                    versions.owing.store(false, Ordering::SeqCst);
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

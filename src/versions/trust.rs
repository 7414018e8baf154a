//! Versions this instance may use without asking Redis: the watched
//! counters (users, names, memberships, sessions: written rarely, read on
//! every user-list request and by every live stream), kept current from the
//! bumps it hears, under a lease.
//!
//! Hearing is not enough by itself: a listener may read a publish after the
//! writer has answered. So every bump of a watched counter takes a sequence
//! number, and its writer answers only once every instance holding a live
//! lease has acknowledged that number (or its lease has run out). An
//! instance trusts its own copy only while its lease lives, and:
//! - starts (and restarts) by subscribing, then reading every watched
//!   counter and the sequence in one step; it hears every later bump, in
//!   order, and stops trusting at a gap, a lost subscription or a Redis
//!   that lost its data (a new epoch);
//! - renews its lease, with what it acknowledged, every fifth of it and
//!   after every bump it hears; a renewal is granted only to an instance
//!   that acknowledged everything up to its previous renewal (or, for a new
//!   or run-out lease, everything so far), so a listener that stopped
//!   hearing loses its lease within two renewals;
//! - counts its lease from before it asked, less a margin, so it stops
//!   trusting before Redis counts the lease as run out.
//!
//! Redis keys, beside the counters: `@epoch` (a random id, new when Redis
//! lost its data; `@fresh` for a lease after, while leases granted in
//! the lost data may still be trusted), `@seq`, `@leases` (a hash:
//! instance -> "acked due expiry"); channel `@bumps`.
//!
//! What it assumes of Redis: it keeps what it has until it restarts empty
//! (no eviction of these keys: `maxmemory-policy noeviction` or a
//! `volatile-*` one, no restore of an older copy; a lost sequence that an
//! instance had acknowledged is noticed and waited out), and its clock does
//! not step.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use redis::aio::ConnectionManager;
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use super::{
    Key, REDIS_TIMEOUT,
    redis_store::{counter_name, meta_name},
};

/// How long a lease lives unless configured (`CACHE_LEASE_MS`); it is
/// renewed every fifth of that (and after every bump heard), and trusted
/// until an eighth of it before Redis counts it out.
pub(super) const DEFAULT_LEASE: Duration = Duration::from_millis(1_500);

/// The watched counters, in the order the snapshot reads them.
const WATCHED: [Key; 4] = [Key::Users, Key::Names, Key::Memberships, Key::Sessions];

/// `KEYS`: the epoch, the sequence, the fresh-epoch marker, the watched
/// counters. `ARGV`: a random epoch, a random counter seed, the lease
/// length (ms). Seeds a missing epoch (marked fresh) and missing counters
/// (so a counter Redis lost never reads as a version seen before).
/// Returns `{epoch, seq, {counters}}`.
const SNAPSHOT_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
end
local counters = {}
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2], 'NX')
  counters[i - 3] = tonumber(redis.call('GET', KEYS[i]))
end
return {redis.call('GET', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), counters}
";

/// `KEYS`: the epoch, the leases, the sequence. `ARGV`: this instance, its
/// epoch, the last sequence it acknowledged, the lease length (ms).
/// Records the acknowledgement and renews the lease: granted (1) when the
/// instance acknowledged everything up to its previous renewal; a new (or
/// run-out) lease is granted only when it acknowledged everything so far,
/// else it is entered as pending (0: writers wait for it, and the next
/// renewal may be granted). -1 when the epoch changed, or the instance
/// acknowledged more than the sequence holds (Redis lost part of its data).
const RENEW_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return -1
end
local acked = tonumber(ARGV[3])
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if acked > seq then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due, expiry = seq, 0
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local _, d, e = string.match(held, '^(%d+) (%d+) (%d+)$')
  expiry = tonumber(e or '0')
  if expiry > now then
    due = tonumber(d or '0')
  end
end
local granted = 0
if acked >= due then
  granted = 1
end
if granted == 1 or expiry <= now then
  due = seq
  expiry = now + tonumber(ARGV[4])
end
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d %d %d', acked, due, expiry))
return granted
";

pub(super) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Where the background tasks reach Redis.
#[derive(Clone)]
struct Link {
    connection: ConnectionManager,
    lease: Duration,
    /// The counters' prefix.
    prefix: String,
}

impl Link {
    fn meta(&self, name: &str) -> String {
        meta_name(&self.prefix, name)
    }
}

pub(super) struct Trust {
    /// This instance, in the leases.
    id: String,
    state: Mutex<State>,
    /// The last sequence heard, for the renewer.
    heard: watch::Sender<u64>,
    /// Asks the listener to subscribe again.
    restart: Notify,
}

#[derive(Default)]
struct State {
    /// The epoch of the current subscription; `None` between them.
    epoch: Option<String>,
    acked: u64,
    versions: HashMap<Key, u64>,
    until: Option<Instant>,
}

impl Trust {
    /// Listen and renew in the background; what is trusted, meanwhile.
    pub(super) fn start(
        connection: ConnectionManager,
        prefix: String,
        client: redis::Client,
        lease: Duration,
    ) -> Arc<Trust> {
        let trust = Arc::new(Trust {
            id: uuid::Uuid::new_v4().simple().to_string(),
            state: Mutex::new(State::default()),
            heard: watch::channel(0).0,
            restart: Notify::new(),
        });
        let link = Link {
            connection,
            lease,
            prefix,
        };
        tokio::spawn(listen(trust.clone(), link.clone(), client));
        tokio::spawn(renew(trust.clone(), link));
        trust
    }

    /// The versions of `keys` while they are watched and trusted.
    pub(super) fn get(&self, keys: &[Key]) -> Option<Vec<u64>> {
        if !keys.iter().all(|k| k.is_watched()) {
            return None;
        }
        let state = self.state.lock().ok()?;
        if state.until? <= Instant::now() {
            return None;
        }
        Some(
            keys.iter()
                .map(|k| state.versions.get(k).copied().unwrap_or(0))
                .collect(),
        )
    }

    /// This instance's own bump: seen at once (it will be heard too).
    pub(super) fn saw_bump(&self, epoch: &str, bumped: &HashMap<Key, u64>) {
        if let Ok(mut state) = self.state.lock()
            && state.epoch.as_deref() == Some(epoch)
        {
            for (key, version) in bumped {
                if key.is_watched() {
                    let known = state.versions.entry(*key).or_insert(0);
                    *known = (*known).max(*version);
                }
            }
        }
    }

    fn distrust(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::default();
        }
    }

    /// A new subscription, from a snapshot.
    fn begin(&self, epoch: String, seq: u64, versions: HashMap<Key, u64>) {
        if let Ok(mut state) = self.state.lock() {
            *state = State {
                epoch: Some(epoch),
                acked: seq,
                versions,
                until: None,
            };
        }
        self.heard.send_replace(seq);
    }

    /// Apply one heard bump; false when the subscription must start over.
    fn hear(&self, message: &str) -> bool {
        let mut parts = message.split(' ');
        let (Some(epoch), Some(Ok(seq))) = (parts.next(), parts.next().map(str::parse::<u64>))
        else {
            return false;
        };
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.epoch.as_deref() != Some(epoch) {
            return false;
        }
        if seq <= state.acked {
            return true;
        }
        if seq != state.acked + 1 {
            tracing::warn!(seq, acked = state.acked, "missed a cache version bump");
            return false;
        }
        for pair in parts {
            let Some((name, Ok(version))) =
                pair.split_once('=').map(|(n, v)| (n, v.parse::<u64>()))
            else {
                return false;
            };
            if let Some(key) = Key::parse(name) {
                let known = state.versions.entry(key).or_insert(0);
                *known = (*known).max(version);
            }
        }
        state.acked = seq;
        drop(state);
        self.heard.send_replace(seq);
        true
    }

    fn session(&self) -> Option<(String, u64)> {
        let state = self.state.lock().ok()?;
        Some((state.epoch.clone()?, state.acked))
    }

    fn extend(&self, epoch: &str, until: Instant) {
        if let Ok(mut state) = self.state.lock()
            && state.epoch.as_deref() == Some(epoch)
        {
            state.until = Some(state.until.map_or(until, |u| u.max(until)));
        }
    }
}

/// Subscribe, snapshot, hear; again whenever the subscription is lost.
async fn listen(trust: Arc<Trust>, link: Link, client: redis::Client) {
    let snapshot = redis::Script::new(SNAPSHOT_SCRIPT);
    let channel = link.meta("bumps");
    let mut failures: u32 = 0;
    loop {
        trust.distrust();
        if failures > 0 {
            let wait = Duration::from_millis(100 * u64::from(failures.min(20)));
            tokio::time::sleep(wait).await;
        }
        failures = failures.saturating_add(1);
        let Ok(Ok(mut pubsub)) =
            tokio::time::timeout(REDIS_TIMEOUT * 4, client.get_async_pubsub()).await
        else {
            continue;
        };
        if !matches!(
            tokio::time::timeout(REDIS_TIMEOUT * 4, pubsub.subscribe(&channel)).await,
            Ok(Ok(()))
        ) {
            continue;
        }
        let mut invocation = snapshot.prepare_invoke();
        invocation
            .key(link.meta("epoch"))
            .key(link.meta("seq"))
            .key(link.meta("fresh"));
        for key in WATCHED {
            invocation.key(counter_name(&link.prefix, key));
        }
        invocation
            .arg(new_epoch())
            .arg(super::redis_store::random_base())
            .arg(link.lease.as_millis() as u64);
        let mut connection = link.connection.clone();
        let Ok(Ok((epoch, seq, counters))) = tokio::time::timeout(
            REDIS_TIMEOUT * 4,
            invocation.invoke_async::<(String, u64, Vec<u64>)>(&mut connection),
        )
        .await
        else {
            continue;
        };
        trust.begin(epoch, seq, WATCHED.into_iter().zip(counters).collect());
        failures = 0;
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
                            break;
                        };
                        if !trust.hear(text) {
                            break;
                        }
                    }
                    None => break,
                },
                () = trust.restart.notified() => break,
            }
        }
        tracing::info!("cache version listener subscribes again");
    }
}

/// Renew the lease every fifth of it and after every bump heard.
async fn renew(trust: Arc<Trust>, link: Link) {
    let script = redis::Script::new(RENEW_SCRIPT);
    let mut heard = trust.heard.subscribe();
    let mut tick = tokio::time::interval(link.lease / 5);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when renewals are refused, in this subscription.
    let mut refused: Option<(String, Instant)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = heard.changed() => if changed.is_err() { return },
        }
        let Some((epoch, acked)) = trust.session() else {
            continue;
        };
        let sent = Instant::now();
        let mut connection = link.connection.clone();
        let answer = tokio::time::timeout(
            REDIS_TIMEOUT,
            script
                .key(link.meta("epoch"))
                .key(link.meta("leases"))
                .key(link.meta("seq"))
                .arg(&trust.id)
                .arg(&epoch)
                .arg(acked)
                .arg(link.lease.as_millis() as u64)
                .invoke_async::<i64>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok(1)) => {
                refused = None;
                trust.extend(&epoch, sent + link.lease - link.lease / 8);
            }
            Ok(Ok(0)) => {
                // Behind the sequence for a whole lease: the subscription
                // stopped delivering.
                match &refused {
                    Some((since_epoch, since)) if *since_epoch == epoch => {
                        if since.elapsed() > link.lease {
                            refused = None;
                            trust.restart.notify_one();
                        }
                    }
                    _ => refused = Some((epoch, sent)),
                }
            }
            Ok(Ok(_)) => trust.restart.notify_one(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust() -> Trust {
        Trust {
            id: "test".into(),
            state: Mutex::new(State::default()),
            heard: watch::channel(0).0,
            restart: Notify::new(),
        }
    }

    #[tokio::test]
    async fn bumps_are_heard_in_sequence_and_trusted_under_a_lease() {
        let trust = trust();
        trust.begin("e1".into(), 7, HashMap::from([(Key::Users, 40)]));
        // No lease yet: nothing is trusted.
        assert_eq!(trust.get(&[Key::Users]), None);
        trust.extend("e1", Instant::now() + Duration::from_secs(60));
        assert_eq!(trust.get(&[Key::Users, Key::Names]), Some(vec![40, 0]));
        // A room's version is always asked for.
        assert_eq!(trust.get(&[Key::Users, Key::Room(1)]), None);
        // Already in the snapshot: skipped.
        assert!(trust.hear("e1 7 users=39"));
        assert!(trust.hear("e1 8 users=41 names=3"));
        assert_eq!(trust.get(&[Key::Users, Key::Names]), Some(vec![41, 3]));
        // A gap, another epoch or a garbled message: start over.
        assert!(!trust.hear("e1 10 users=50"));
        assert!(!trust.hear("e2 9 users=50"));
        assert!(!trust.hear("e1 9 users"));
        // A lease from another subscription extends nothing.
        trust.distrust();
        trust.begin("e3".into(), 1, HashMap::new());
        trust.extend("e1", Instant::now() + Duration::from_secs(60));
        assert_eq!(trust.get(&[Key::Users]), None);
    }

    #[tokio::test]
    async fn a_lease_runs_out() {
        let trust = trust();
        trust.begin("e".into(), 0, HashMap::new());
        trust.extend("e", Instant::now() + Duration::from_millis(30));
        assert_eq!(trust.get(&[Key::Memberships]), Some(vec![0]));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(trust.get(&[Key::Memberships]), None);
    }
}

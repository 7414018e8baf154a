//! Rate limits: how often one user or one client address may send, fail a
//! login, or start a websocket operation.
//!
//! Each [`Rule`] allows `limit` hits per fixed window of `window`. Counts
//! live in Redis when it is configured (one `INCR` per hit, so every
//! instance sees every hit) and in this process otherwise. A hit over the
//! limit is refused with the time until the window ends, which the
//! adapters turn into `429` / `RATE_LIMITED` with `Retry-After`. If Redis
//! does not answer, hits are allowed: a cache outage must not lock users
//! out.

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use std::net::IpAddr;

use redis::aio::ConnectionManager;

use crate::{
    config::Config,
    error::{AppError, AppResult},
};

/// `limit` hits per `window`; a limit of 0 turns the rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub window: Duration,
}

impl Rate {
    pub fn is_off(&self) -> bool {
        self.limit == 0
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `N/Ws`, `N/Wm` or `N/Wh` (`100/10s`: 100 per 10 seconds); `0` or
    /// `off` for no limit.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" || text.eq_ignore_ascii_case("off") {
            return Ok(Rate {
                limit: 0,
                window: Duration::from_secs(1),
            });
        }
        let usage = || format!("`{text}` is not a rate: use N/10s, N/5m or N/1h (or off)");
        let (limit, window) = text.split_once('/').ok_or_else(usage)?;
        let limit: u64 = limit.trim().parse().map_err(|_| usage())?;
        let window = window.trim();
        // The unit is the last character (which may not be one byte).
        let unit_at = window.char_indices().last().map_or(0, |(at, _)| at);
        let (number, unit) = window.split_at(unit_at);
        let number: u64 = if number.is_empty() {
            1
        } else {
            number.parse().map_err(|_| usage())?
        };
        let seconds = match unit {
            "s" => number,
            "m" => number * 60,
            "h" => number * 3600,
            _ => return Err(usage()),
        };
        if seconds == 0 {
            return Err(usage());
        }
        Ok(Rate {
            limit,
            window: Duration::from_secs(seconds),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            return write!(f, "off");
        }
        write!(f, "{}/{}s", self.limit, self.window.as_secs())
    }
}

/// A named rate, checked against keys (a user id, a client address).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The rule's name in metrics and errors (`sends_per_user`, ...).
    pub name: &'static str,
    pub rate: Rate,
}

/// A refused hit: which rule, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub rule: &'static str,
    pub retry_after: Duration,
}

/// (rule, key) -> (window number, hits in it), or in Redis mode the hits
/// this instance has taken from Redis and not used yet.
type Counts = HashMap<(&'static str, String), (u64, u64)>;

enum Store {
    Memory(Mutex<Counts>),
    Redis {
        connection: ConnectionManager,
        prefix: String,
        leases: Mutex<Counts>,
    },
}

/// How many hits an instance takes from Redis at a time: a twentieth of
/// the limit, so a busy key costs one Redis round trip per twenty hits,
/// and the instances together never pass the limit (hits taken and not
/// used by the window's end are lost to it, on the safe side).
fn lease_size(rate: Rate) -> u64 {
    (rate.limit / 20).max(1)
}

/// Entries the in-process store keeps before it drops finished windows.
const MEMORY_MAX: usize = 100_000;
/// Longest wait for Redis; past it the hit is allowed.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

pub struct RateLimiter {
    store: Store,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The window `now` falls in, and the time left until it ends.
fn window_of(rate: Rate, now: Duration) -> (u64, Duration) {
    let length = rate.window.as_millis().max(1) as u64;
    let now = now.as_millis() as u64;
    let index = now / length;
    let left = Duration::from_millis((index + 1) * length - now);
    (index, left)
}

impl RateLimiter {
    pub fn in_process() -> Self {
        RateLimiter {
            store: Store::Memory(Mutex::new(HashMap::new())),
        }
    }

    pub fn redis(connection: ConnectionManager, prefix: &str) -> Self {
        RateLimiter {
            store: Store::Redis {
                connection,
                prefix: format!("{prefix}ratelimit:"),
                leases: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Take a hit from this instance's lease of the window, if it has one.
    fn from_lease(leases: &Mutex<Counts>, rule: &Rule, key: &str, window: u64) -> bool {
        let Ok(mut leases) = leases.lock() else {
            return false;
        };
        if leases.len() >= MEMORY_MAX {
            leases.retain(|_, (w, _)| *w >= window);
        }
        match leases.get_mut(&(rule.name, key.to_owned())) {
            Some((w, left)) if *w == window && *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// The hits `key` made against `rule` in the current window, counting
    /// this one when `count` is set.
    async fn hits(&self, rule: &Rule, key: &str, window: u64, count: bool) -> u64 {
        match &self.store {
            Store::Memory(map) => {
                let Ok(mut map) = map.lock() else { return 0 };
                if map.len() >= MEMORY_MAX {
                    map.retain(|_, (w, _)| *w >= window);
                }
                let entry = map
                    .entry((rule.name, key.to_owned()))
                    .or_insert((window, 0));
                if entry.0 != window {
                    *entry = (window, 0);
                }
                if count {
                    entry.1 += 1;
                }
                entry.1
            }
            Store::Redis {
                connection,
                prefix,
                leases,
            } => {
                let name = format!("{prefix}{}:{key}:{window}", rule.name);
                let mut connection = connection.clone();
                let ttl = rule.rate.window.as_secs().max(1) * 2;
                let lease = lease_size(rule.rate);
                let query = async {
                    if count {
                        let (hits,): (u64,) = redis::pipe()
                            .incr(&name, lease)
                            .expire(&name, ttl as i64)
                            .ignore()
                            .query_async(&mut connection)
                            .await?;
                        // Of the hits just taken, those within the limit
                        // are this instance's: one now, the rest leased.
                        let granted = lease.min(rule.rate.limit.saturating_sub(hits - lease));
                        if granted > 1
                            && let Ok(mut leases) = leases.lock()
                        {
                            // Requests that found no lease at once each took
                            // one: keep what is left of all of them.
                            let lease = leases
                                .entry((rule.name, key.to_owned()))
                                .or_insert((window, 0));
                            if lease.0 != window {
                                *lease = (window, 0);
                            }
                            lease.1 += granted - 1;
                        }
                        Ok::<u64, redis::RedisError>(if granted > 0 {
                            rule.rate.limit.min(hits)
                        } else {
                            rule.rate.limit + 1
                        })
                    } else {
                        let hits: Option<u64> = redis::cmd("GET")
                            .arg(&name)
                            .query_async(&mut connection)
                            .await?;
                        Ok(hits.unwrap_or(0))
                    }
                };
                match tokio::time::timeout(REDIS_TIMEOUT, query).await {
                    Ok(Ok(hits)) => hits,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, rule = rule.name, "rate limit not checked: Redis failed");
                        0
                    }
                    Err(_) => {
                        tracing::warn!(rule = rule.name, "rate limit not checked: Redis timed out");
                        0
                    }
                }
            }
        }
    }

    async fn decide(&self, rule: &Rule, key: &str, count: bool) -> Result<(), Limited> {
        if rule.rate.is_off() {
            return Ok(());
        }
        let (window, left) = window_of(rule.rate, unix_now());
        if let Store::Redis { leases, .. } = &self.store
            && count
            && Self::from_lease(leases, rule, key, window)
        {
            return Ok(());
        }
        let hits = self.hits(rule, key, window, count).await;
        let over = if count {
            hits > rule.rate.limit
        } else {
            hits >= rule.rate.limit
        };
        // Requests running at once on this instance may have leased the
        // last hits meanwhile: use them before refusing.
        let leased_meanwhile = || match &self.store {
            Store::Redis { leases, .. } => count && Self::from_lease(leases, rule, key, window),
            Store::Memory(_) => false,
        };
        if over && !leased_meanwhile() {
            crate::metrics::count("rate_limited_total", "rule", rule.name);
            return Err(Limited {
                rule: rule.name,
                retry_after: left.max(Duration::from_secs(1)),
            });
        }
        Ok(())
    }

    /// Count a hit of `key` against `rule`; refused when it is over the limit.
    pub async fn hit(&self, rule: &Rule, key: &str) -> Result<(), Limited> {
        self.decide(rule, key, true).await
    }

    /// Would another hit be refused? (Counts nothing: for limits on
    /// failures, which are counted with [`RateLimiter::hit`] once they happen.)
    pub async fn check(&self, rule: &Rule, key: &str) -> Result<(), Limited> {
        self.decide(rule, key, false).await
    }
}

/// The service's rules, by what they protect.
pub struct Throttle {
    limiter: RateLimiter,
    sends_per_user: Rule,
    sends_per_address: Rule,
    login_failures: Rule,
    login_failures_per_address: Rule,
    ws_operations_per_user: Rule,
    ws_operations_per_address: Rule,
    typing_per_user: Rule,
    searches_per_user: Rule,
    signups_per_address: Rule,
}

fn refused(limited: Limited) -> AppError {
    AppError::RateLimited {
        rule: limited.rule,
        retry_after: limited.retry_after,
    }
}

impl Throttle {
    pub fn new(limiter: RateLimiter, config: &Config) -> Self {
        let rule = |name, rate| Rule { name, rate };
        Throttle {
            limiter,
            sends_per_user: rule("sends_per_user", config.rate_limit_sends),
            sends_per_address: rule("sends_per_address", config.rate_limit_sends_per_address),
            login_failures: rule("login_failures", config.rate_limit_login_failures),
            login_failures_per_address: rule(
                "login_failures_per_address",
                config.rate_limit_login_failures_per_address,
            ),
            ws_operations_per_user: rule("ws_operations_per_user", config.rate_limit_ws_operations),
            ws_operations_per_address: rule(
                "ws_operations_per_address",
                config.rate_limit_ws_operations_per_address,
            ),
            typing_per_user: rule("typing_per_user", config.rate_limit_typing),
            searches_per_user: rule("searches_per_user", config.rate_limit_searches),
            signups_per_address: rule("signups_per_address", config.rate_limit_signups_per_address),
        }
    }

    /// Count an account created from `client`.
    pub async fn signup(&self, client: Option<IpAddr>) -> AppResult<()> {
        match client {
            Some(client) => self
                .limiter
                .hit(&self.signups_per_address, &client.to_string())
                .await
                .map_err(refused),
            None => Ok(()),
        }
    }

    /// Count a search by `user`.
    pub async fn search(&self, user: i64) -> AppResult<()> {
        self.limiter
            .hit(&self.searches_per_user, &user.to_string())
            .await
            .map_err(refused)
    }

    /// Count a typing indicator by `user`; the address counts as a send.
    pub async fn typing(&self, user: i64, client: Option<IpAddr>) -> AppResult<()> {
        self.user_and_address(&self.typing_per_user, user, client)
            .await
    }

    /// Count a message write (a send, an edit, a delete, a reaction) by
    /// `user` from `client`.
    pub async fn send(&self, user: i64, client: Option<IpAddr>) -> AppResult<()> {
        self.user_and_address(&self.sends_per_user, user, client)
            .await
    }

    /// Count a hit of `user` against `rule`, and of `client` against the
    /// per-address limit of message writes.
    async fn user_and_address(
        &self,
        rule: &Rule,
        user: i64,
        client: Option<IpAddr>,
    ) -> AppResult<()> {
        self.limiter
            .hit(rule, &user.to_string())
            .await
            .map_err(refused)?;
        if let Some(client) = client {
            self.limiter
                .hit(&self.sends_per_address, &client.to_string())
                .await
                .map_err(refused)?;
        }
        Ok(())
    }

    fn login_keys(username: &str, client: Option<IpAddr>) -> (String, Option<String>) {
        let address = client.map(|c| c.to_string());
        let pair = format!("{}|{username}", address.as_deref().unwrap_or("-"));
        (pair, address)
    }

    /// May `client` try a password for `username` now? Refused after too
    /// many failures for that username from that address (so an attacker
    /// cannot lock the account for everyone else), or from that address
    /// for any username.
    pub async fn login_allowed(&self, username: &str, client: Option<IpAddr>) -> AppResult<()> {
        let (pair, address) = Self::login_keys(username, client);
        self.limiter
            .check(&self.login_failures, &pair)
            .await
            .map_err(refused)?;
        if let Some(address) = address {
            self.limiter
                .check(&self.login_failures_per_address, &address)
                .await
                .map_err(refused)?;
        }
        Ok(())
    }

    /// A password check for `username` from `client` failed.
    pub async fn login_failed(&self, username: &str, client: Option<IpAddr>) {
        let (pair, address) = Self::login_keys(username, client);
        let _ = self.limiter.hit(&self.login_failures, &pair).await;
        if let Some(address) = address {
            let _ = self
                .limiter
                .hit(&self.login_failures_per_address, &address)
                .await;
        }
    }

    /// Count a websocket operation (`subscribe`) by `user` from `client`.
    pub async fn ws_operation(&self, user: Option<i64>, client: Option<IpAddr>) -> AppResult<()> {
        if let Some(user) = user {
            self.limiter
                .hit(&self.ws_operations_per_user, &user.to_string())
                .await
                .map_err(refused)?;
        }
        if let Some(client) = client {
            self.limiter
                .hit(&self.ws_operations_per_address, &client.to_string())
                .await
                .map_err(refused)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            "100/10s".parse::<Rate>().unwrap(),
            Rate {
                limit: 100,
                window: Duration::from_secs(10)
            }
        );
        assert_eq!(
            "5/5m".parse::<Rate>().unwrap().window,
            Duration::from_secs(300)
        );
        assert_eq!(
            "5/h".parse::<Rate>().unwrap().window,
            Duration::from_secs(3600)
        );
        assert!("off".parse::<Rate>().unwrap().is_off());
        assert!("0".parse::<Rate>().unwrap().is_off());
        for bad in [
            "", "10", "x/10s", "10/0s", "10/10d", "10/", "10/10秒", "10/é",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!("100/10s".parse::<Rate>().unwrap().to_string(), "100/10s");
    }

    #[test]
    fn windows_end_on_their_boundary() {
        let rate = "10/10s".parse::<Rate>().unwrap();
        assert_eq!(
            window_of(rate, Duration::from_millis(25_500)),
            (2, Duration::from_millis(4_500))
        );
    }

    #[tokio::test]
    async fn hits_past_the_limit_are_refused_per_key() {
        let limiter = RateLimiter::in_process();
        let rule = Rule {
            name: "test",
            rate: "3/1h".parse().unwrap(),
        };
        for _ in 0..3 {
            limiter.hit(&rule, "a").await.unwrap();
        }
        let refused = limiter.hit(&rule, "a").await.unwrap_err();
        assert_eq!(refused.rule, "test");
        assert!(refused.retry_after >= Duration::from_secs(1));
        assert!(limiter.check(&rule, "a").await.is_err());
        limiter.hit(&rule, "b").await.unwrap();
        assert!(limiter.check(&rule, "b").await.is_ok());
        let off = Rule {
            name: "off",
            rate: "off".parse().unwrap(),
        };
        for _ in 0..10 {
            limiter.hit(&off, "a").await.unwrap();
        }
    }
}

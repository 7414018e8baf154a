//! Live sessions: the long-lived connections (websockets) of identified
//! users, and what ends them.
//!
//! A plain request checks its token when it arrives; a connection lives on,
//! so it lives only as long as what identified it: a bearer token until it
//! is revoked (`logout`), its account is deleted, or it expires; a legacy
//! user id until the user is deleted. When that happens, every connection
//! that used it ends, on every instance.
//!
//! How an instance hears of it, without a statement per connection:
//! - the writer publishes [`Event::SessionsEnded`] for the user after its
//!   commit: the registry checks that user's connections again at once;
//! - the writer also bumps [`Key::Sessions`] before it answers, which every
//!   instance hears under its lease (see [`crate::versions`]): when the
//!   registry sees the version move (it looks every second, for free while
//!   the lease holds), it checks all its connections again, a thousand per
//!   statement, so an event lost on the way changes nothing;
//! - expiry is one timer for the whole instance, set to the earliest.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, broadcast::error::RecvError, oneshot};

use crate::{
    domain::{auth, users},
    error::{AppError, AppResult},
    events::{Event, EventBus},
    identity::{Identity, KnownUsers},
    versions::{Key, Versions},
};

/// How often the registry looks at the sessions' version.
const VERSION_LOOK: Duration = Duration::from_secs(1);
/// Sessions checked per statement.
const CHECK_BATCH: usize = 1_000;

/// What identified a live connection.
struct Live {
    user: i64,
    /// The digest of its bearer token; `None` for a legacy user id.
    digest: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    /// Dropped to end the session (its connection hears it).
    _end: oneshot::Sender<()>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    live: HashMap<u64, Live>,
    by_user: HashMap<i64, HashSet<u64>>,
    expiring: BTreeSet<(DateTime<Utc>, u64)>,
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Live> {
        let live = self.live.remove(&id)?;
        if let Some(ids) = self.by_user.get_mut(&live.user) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_user.remove(&live.user);
            }
        }
        if let Some(at) = live.expires_at {
            self.expiring.remove(&(at, id));
        }
        Some(live)
    }
}

pub struct Sessions {
    db: DatabaseConnection,
    registry: Mutex<Registry>,
    /// A session with an earlier expiry than any before was added.
    sooner: Arc<Notify>,
}

/// A live session, held by its connection; dropping it leaves the registry.
pub struct Session {
    id: u64,
    user: i64,
    sessions: Weak<Sessions>,
    /// Resolves when the session ended (revoked, expired, account gone).
    pub ended: oneshot::Receiver<()>,
}

impl Session {
    pub fn user(&self) -> i64 {
        self.user
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(sessions) = self.sessions.upgrade()
            && let Ok(mut registry) = sessions.registry.lock()
        {
            registry.remove(self.id);
        }
    }
}

impl Sessions {
    /// A registry following `events` and the sessions' version.
    pub fn start(db: DatabaseConnection, events: &Arc<dyn EventBus>) -> Arc<Sessions> {
        let sessions = Arc::new(Sessions {
            db,
            registry: Mutex::new(Registry::default()),
            sooner: Arc::new(Notify::new()),
        });
        tokio::spawn(watch(
            Arc::downgrade(&sessions),
            sessions.sooner.clone(),
            events.subscribe(),
            events.versions().clone(),
        ));
        sessions
    }

    /// Check an identity and open a live session for it: the viewer's id
    /// and the session, which ends when the identity stops being valid.
    pub async fn open(
        self: &Arc<Self>,
        identity: &Identity,
        known: &KnownUsers,
    ) -> AppResult<(i64, Session)> {
        let (user, digest, expires_at) = match identity {
            Identity::Bearer(token) => {
                let session = auth::token_session(&self.db, token).await?.ok_or_else(|| {
                    AppError::Unauthenticated("The token is invalid or has expired".to_owned())
                })?;
                (
                    session.user_id,
                    Some(session.digest),
                    Some(session.expires_at),
                )
            }
            other => (other.require(&self.db, known).await?, None, None),
        };
        let (end, ended) = oneshot::channel();
        let mut registry = self
            .registry
            .lock()
            .map_err(|_| AppError::internal(anyhow::anyhow!("session registry poisoned")))?;
        registry.next += 1;
        let id = registry.next;
        let sooner = expires_at.is_some_and(|at| {
            registry
                .expiring
                .first()
                .is_none_or(|(first, _)| at < *first)
        });
        if let Some(at) = expires_at {
            registry.expiring.insert((at, id));
        }
        registry.by_user.entry(user).or_default().insert(id);
        registry.live.insert(
            id,
            Live {
                user,
                digest,
                expires_at,
                _end: end,
            },
        );
        drop(registry);
        if sooner {
            self.sooner.notify_one();
        }
        Ok((
            user,
            Session {
                id,
                user,
                sessions: Arc::downgrade(self),
                ended,
            },
        ))
    }

    /// How many sessions are live on this instance.
    pub fn count(&self) -> usize {
        self.registry.lock().map_or(0, |r| r.live.len())
    }

    /// End these sessions (their connections close).
    fn end(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        if let Ok(mut registry) = self.registry.lock() {
            for id in ids {
                // Dropping its sender wakes the connection.
                registry.remove(*id);
            }
        }
        crate::metrics::count("sessions_ended_total", "reason", "revoked");
    }

    /// End the sessions that expired by now; the next expiry, if any.
    fn expire(&self) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let mut registry = self.registry.lock().ok()?;
        while let Some(&(at, id)) = registry.expiring.first() {
            if at > now {
                return Some(at);
            }
            registry.remove(id);
            crate::metrics::count("sessions_ended_total", "reason", "expired");
        }
        None
    }

    /// Check these sessions against the database; end those no longer valid.
    async fn check(&self, ids: Vec<u64>) -> AppResult<()> {
        for chunk in ids.chunks(CHECK_BATCH) {
            // (session, token digest) and (session, legacy user).
            let mut tokens: Vec<(u64, String)> = Vec::new();
            let mut legacy: Vec<(u64, i64)> = Vec::new();
            {
                let Ok(registry) = self.registry.lock() else {
                    return Ok(());
                };
                for id in chunk {
                    if let Some(live) = registry.live.get(id) {
                        match &live.digest {
                            Some(digest) => tokens.push((*id, digest.clone())),
                            None => legacy.push((*id, live.user)),
                        }
                    }
                }
            }
            let digests: Vec<&str> = tokens.iter().map(|(_, d)| d.as_str()).collect();
            let live = auth::live_digests(&self.db, &digests).await?;
            let users: Vec<i64> = legacy.iter().map(|(_, user)| *user).collect();
            let existing = users::existing(&self.db, &users).await?;
            let ended: Vec<u64> = tokens
                .iter()
                .filter(|(_, digest)| !live.contains(digest))
                .map(|(id, _)| *id)
                .chain(
                    legacy
                        .iter()
                        .filter(|(_, user)| !existing.contains(user))
                        .map(|(id, _)| *id),
                )
                .collect();
            self.end(&ended);
        }
        Ok(())
    }

    fn of_user(&self, user: i64) -> Vec<u64> {
        self.registry
            .lock()
            .ok()
            .and_then(|r| {
                r.by_user
                    .get(&user)
                    .map(|ids| ids.iter().copied().collect())
            })
            .unwrap_or_default()
    }

    fn all(&self) -> Vec<u64> {
        self.registry
            .lock()
            .map(|r| r.live.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// Follow the bus, the sessions' version and the clock, for as long as the
/// registry lives.
async fn watch(
    sessions: Weak<Sessions>,
    sooner: Arc<Notify>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    versions: Arc<Versions>,
) {
    let mut look = tokio::time::interval(VERSION_LOOK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = versions.current(&[Key::Sessions]).await;
    // Every session is checked again after a failure (and at start, none).
    let mut unsure = false;
    loop {
        let Some(registry) = sessions.upgrade() else {
            return;
        };
        let next_expiry = registry.expire();
        let until_expiry = next_expiry
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        drop(registry);
        let check: Option<Option<i64>> = tokio::select! {
            event = events.recv() => match event {
                Ok(Event::SessionsEnded { user_id }) => Some(Some(user_id)),
                Ok(_) => None,
                // Missed some: they may have ended sessions.
                Err(RecvError::Lagged(_)) => Some(None),
                Err(RecvError::Closed) => return,
            },
            _ = look.tick() => {
                let now = versions.current(&[Key::Sessions]).await;
                // Unknown (Redis down) counts as moved: check everything.
                let moved = now.is_none() || now != seen;
                seen = now;
                (moved || unsure).then_some(None)
            },
            _ = tokio::time::sleep(until_expiry) => None,
            _ = sooner.notified() => None,
        };
        let Some(which) = check else { continue };
        let Some(registry) = sessions.upgrade() else {
            return;
        };
        let ids = match which {
            Some(user) => registry.of_user(user),
            None => registry.all(),
        };
        unsure = match registry.check(ids).await {
            Ok(()) => false,
            Err(error) => {
                tracing::warn!(%error, "live sessions could not be checked; retrying");
                true
            }
        };
    }
}

//! The hot-room read model: rooms being read keep their view (members and
//! newest messages, see [`crate::domain::views`]) in memory, shared by
//! GraphQL and the legacy REST paths.
//!
//! Correctness first: a view is served only at the versions it was built at
//! ([`crate::versions`]: the room's counter and the usernames'). Writers
//! bump them before they answer, so a read that starts after a completed
//! write, on any instance, never gets an older view. Stored-message events
//! carry the room version they make; a view one version behind takes the
//! message without a database read, and any gap (a lost or late event)
//! simply makes the next read load the room again.
//!
//! Bounded by bytes (`READ_MODEL_BYTES`), least recently read out first.

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use axum::body::Bytes;
use lru::LruCache;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    domain::views::{self, RoomView},
    error::AppResult,
    events::{Event, EventBus},
    versions::{Key, Versions},
};

/// A view and the versions it was built at.
pub struct Entry {
    pub view: RoomView,
    room_version: u64,
    names_version: u64,
    bytes: usize,
    /// An answer rendered from this view, at a memberships version
    /// (the legacy history, which names its senders' rooms).
    rendered: Mutex<Option<(u64, Bytes)>>,
}

impl Entry {
    fn new(view: RoomView, room_version: u64, names_version: u64) -> Arc<Entry> {
        let bytes = view.size();
        Arc::new(Entry {
            view,
            room_version,
            names_version,
            bytes,
            rendered: Mutex::new(None),
        })
    }

    /// What was rendered from this view at `memberships`, if anything.
    pub fn rendered(&self, memberships: u64) -> Option<Bytes> {
        let slot = self.rendered.lock().ok()?;
        slot.as_ref()
            .filter(|(at, _)| *at == memberships)
            .map(|(_, bytes)| bytes.clone())
    }

    pub fn keep_rendered(&self, memberships: u64, bytes: Bytes) {
        if let Ok(mut slot) = self.rendered.lock() {
            *slot = Some((memberships, bytes));
        }
    }
}

/// Lookups and size, for /metrics.
#[derive(Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Reads that could not use the model (versions unknown).
    pub bypasses: AtomicU64,
    /// Views brought up to date by an event, without a database read.
    pub fed: AtomicU64,
    pub bytes: AtomicUsize,
    pub rooms: AtomicUsize,
}

pub static STATS: Stats = Stats {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
    bypasses: AtomicU64::new(0),
    fed: AtomicU64::new(0),
    bytes: AtomicUsize::new(0),
    rooms: AtomicUsize::new(0),
};

/// Versions read for one lookup; `memberships` for renderers that need it.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub memberships: Option<u64>,
}

pub struct RoomViews {
    db: DatabaseConnection,
    versions: Arc<Versions>,
    window: usize,
    budget: usize,
    state: Mutex<Cache>,
    /// (user, room) -> the newest message the user's mark-seen was queued
    /// up to, by this instance.
    marks: Mutex<LruCache<(i64, i64), i64>>,
}

struct Cache {
    entries: LruCache<i64, Arc<Entry>>,
    bytes: usize,
}

impl Cache {
    fn put(&mut self, id: i64, entry: Arc<Entry>, budget: usize) {
        if entry.bytes > budget {
            return;
        }
        self.bytes += entry.bytes;
        if let Some(old) = self.entries.put(id, entry) {
            self.bytes -= old.bytes;
        }
        while self.bytes > budget {
            match self.entries.pop_lru() {
                Some((_, old)) => self.bytes -= old.bytes,
                None => break,
            }
        }
        self.publish();
    }

    fn remove(&mut self, id: i64) {
        if let Some(old) = self.entries.pop(&id) {
            self.bytes -= old.bytes;
            self.publish();
        }
    }

    fn publish(&self) {
        STATS.bytes.store(self.bytes, Ordering::Relaxed);
        STATS.rooms.store(self.entries.len(), Ordering::Relaxed);
    }
}

impl RoomViews {
    /// A read model over `db`, fed by `events`; `budget` bytes (0: off).
    pub fn start(
        db: DatabaseConnection,
        events: &Arc<dyn EventBus>,
        window: usize,
        budget: usize,
    ) -> Arc<RoomViews> {
        let views = Arc::new(RoomViews {
            db,
            versions: events.versions().clone(),
            window: window.max(1),
            budget,
            state: Mutex::new(Cache {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
            marks: Mutex::new(LruCache::new(
                NonZeroUsize::new(MARKS_MAX).expect("non-zero"),
            )),
        });
        if budget > 0 {
            tokio::spawn(follow(Arc::downgrade(&views), events.subscribe()));
        }
        views
    }

    /// The newest message of `room` this instance queued `user`'s
    /// mark-seen up to.
    pub fn marked_up_to(&self, user: i64, room: i64) -> Option<i64> {
        self.marks.lock().ok()?.get(&(user, room)).copied()
    }

    pub fn note_marked(&self, user: i64, room: i64, up_to: i64) {
        if let Ok(mut marks) = self.marks.lock() {
            marks.put((user, room), up_to);
        }
    }

    /// The views of these rooms (with messages); missing rooms are absent.
    /// `with_memberships` also reads the memberships' version, for
    /// renderers that depend on it.
    pub async fn get(
        &self,
        ids: &[i64],
        with_memberships: bool,
    ) -> AppResult<(HashMap<i64, Arc<Entry>>, Seen)> {
        let mut keys = Vec::with_capacity(ids.len() + 2);
        keys.push(Key::Names);
        if with_memberships {
            keys.push(Key::Memberships);
        }
        let first_room = keys.len();
        keys.extend(ids.iter().map(|id| Key::Room(*id)));
        let current = if self.budget > 0 {
            self.versions.current(&keys).await
        } else {
            None
        };
        let Some(current) = current else {
            if self.budget > 0 {
                STATS.bypasses.fetch_add(1, Ordering::Relaxed);
            }
            let loaded = views::load(&self.db, ids, Some(self.window)).await?;
            let entries = loaded
                .into_iter()
                .map(|(id, view)| (id, Entry::new(view, 0, 0)))
                .collect();
            return Ok((entries, Seen { memberships: None }));
        };
        let names = current[0];
        let seen = Seen {
            memberships: with_memberships.then(|| current[1]),
        };
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        if let Ok(mut cache) = self.state.lock() {
            for (id, &version) in ids.iter().zip(&current[first_room..]) {
                match cache.entries.get(id) {
                    Some(entry)
                        if entry.room_version == version && entry.names_version == names =>
                    {
                        found.insert(*id, entry.clone());
                    }
                    _ => missing.push((*id, version)),
                }
            }
        }
        STATS.hits.fetch_add(found.len() as u64, Ordering::Relaxed);
        if missing.is_empty() {
            return Ok((found, seen));
        }
        STATS
            .misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let missing_ids: Vec<i64> = missing.iter().map(|m| m.0).collect();
        // Loaded after the versions were read: at least as new as them.
        let mut loaded = views::load(&self.db, &missing_ids, Some(self.window)).await?;
        let mut cache = self.state.lock().ok();
        for (id, version) in missing {
            let Some(view) = loaded.remove(&id) else {
                continue;
            };
            let entry = Entry::new(view, version, names);
            if let Some(cache) = cache.as_mut() {
                // Never replace a newer view (an event may have fed it).
                let newer = cache
                    .entries
                    .peek(&id)
                    .is_some_and(|e| e.names_version == names && e.room_version > version);
                if !newer {
                    cache.put(id, entry.clone(), self.budget);
                }
            }
            found.insert(id, entry);
        }
        Ok((found, seen))
    }

    /// A stored message, announced at `version` of its room.
    fn feed(&self, message: entity::message::Model, version: u64) {
        let Ok(mut cache) = self.state.lock() else {
            return;
        };
        let room = message.room_id;
        let Some(entry) = cache.entries.peek(&room).cloned() else {
            return;
        };
        if version <= entry.room_version {
            return; // the view already has it
        }
        let next = (version == entry.room_version + 1)
            .then(|| entry.view.with_message(message, self.window))
            .flatten();
        match next {
            Some(view) => {
                STATS.fed.fetch_add(1, Ordering::Relaxed);
                let fed = Entry::new(view, version, entry.names_version);
                cache.put(room, fed, self.budget);
            }
            // A gap, or a sender the view cannot name: read it again.
            None => cache.remove(room),
        }
    }

    fn forget(&self, room: Option<i64>) {
        if let Ok(mut cache) = self.state.lock() {
            match room {
                Some(room) => cache.remove(room),
                None => {
                    cache.entries.clear();
                    cache.bytes = 0;
                    cache.publish();
                }
            }
        }
    }
}

/// Feed the views from the events, for as long as the model lives.
async fn follow(
    views: std::sync::Weak<RoomViews>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
    loop {
        let event = events.recv().await;
        let Some(views) = views.upgrade() else {
            return;
        };
        match event {
            Ok(Event::MessageStored {
                message,
                room_version,
            }) => {
                if room_version == 0 {
                    views.forget(Some(message.room_id));
                } else {
                    views.feed(message.into(), room_version);
                }
            }
            Ok(Event::MembershipChanged { room_id, .. }) => views.forget(Some(room_id)),
            Ok(Event::MessageChanged { message, .. }) => views.forget(Some(message.room_id)),
            Ok(
                Event::TaskUpdated { .. }
                | Event::SessionsEnded { .. }
                | Event::ReactionChanged { .. }
                | Event::Typing { .. }
                | Event::PresenceChanged { .. },
            ) => {}
            // Missed some: the versions still catch every change; drop what
            // might now be fed out of order.
            Err(RecvError::Lagged(_)) => views.forget(None),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Mark-seen positions remembered at most.
const MARKS_MAX: usize = 100_000;

type KeptList = (u64, u64, Bytes);

/// The legacy room lists (a user's rooms with their members), rendered,
/// at the memberships and usernames versions they were built at; bounded
/// by bytes, least recently read out first.
pub struct RoomLists {
    versions: Arc<Versions>,
    budget: usize,
    /// user -> (memberships version, names version, body); bytes used.
    lists: Mutex<(LruCache<i64, KeptList>, usize)>,
}

impl RoomLists {
    pub fn new(versions: Arc<Versions>, budget: usize) -> Self {
        RoomLists {
            versions,
            budget,
            lists: Mutex::new((LruCache::unbounded(), 0)),
        }
    }

    /// The user's list, from the cache or built by `load`.
    pub async fn get_or_load<F>(&self, user: i64, load: F) -> AppResult<Bytes>
    where
        F: Future<Output = AppResult<Bytes>>,
    {
        let current = if self.budget > 0 {
            self.versions.current(&[Key::Memberships, Key::Names]).await
        } else {
            None
        };
        let Some(current) = current else {
            return load.await;
        };
        let (memberships, names) = (current[0], current[1]);
        if let Ok(mut lists) = self.lists.lock()
            && let Some((m, n, bytes)) = lists.0.get(&user)
            && *m == memberships
            && *n == names
        {
            return Ok(bytes.clone());
        }
        let bytes = load.await?;
        if bytes.len() <= self.budget
            && let Ok(mut guard) = self.lists.lock()
        {
            let (lists, used) = &mut *guard;
            *used += bytes.len();
            if let Some((_, _, old)) = lists.put(user, (memberships, names, bytes.clone())) {
                *used -= old.len();
            }
            while *used > self.budget {
                match lists.pop_lru() {
                    Some((_, (_, _, old))) => *used -= old.len(),
                    None => break,
                }
            }
        }
        Ok(bytes)
    }
}

//! Who may read what, asked by every adapter and by every live stream
//! before each delivery.
//!
//! The rule: a room's content (messages and what hangs off them, members,
//! events, typing, presence) is for its current members, at the moment it
//! is delivered, not only when a stream started. A user's presence shows
//! through a room only when that user chose to be in it (see
//! [`crate::domain::rooms`]: created or joined it, or took part in it),
//! never through a room someone else put them in.
//!
//! Live streams ask per delivery, so the answer is cheap: each room's
//! members are kept here at the version of the memberships they were read
//! at ([`Key::Memberships`], bumped by every membership change before it
//! answers, on every instance), and read again, once for all the streams
//! of this instance, when that version moved. When the version cannot be
//! known (Redis down), the database is asked directly.

mod gate;

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use lru::LruCache;
use sea_orm::DatabaseConnection;

pub use gate::Gate;

use crate::{
    domain::rooms,
    error::AppResult,
    versions::{Key, Versions},
};

/// Rooms whose members are kept at most.
const ROOMS_KEPT: usize = 10_000;

/// A room's current members at one memberships version: for each, whether
/// they chose to be in the room.
struct Members {
    version: u64,
    chose: HashMap<i64, bool>,
}

/// One room's place in the cache: its members, and a lock so that one
/// stream reads them while the others wait for its answer.
#[derive(Default)]
struct Slot {
    members: Mutex<Option<Arc<Members>>>,
    reading: tokio::sync::Mutex<()>,
}

impl Slot {
    fn at(&self, version: u64) -> Option<Arc<Members>> {
        self.members
            .lock()
            .ok()?
            .as_ref()
            .filter(|m| m.version == version)
            .cloned()
    }
}

pub struct Permissions {
    db: DatabaseConnection,
    versions: Arc<Versions>,
    rooms: Mutex<LruCache<i64, Arc<Slot>>>,
}

impl Permissions {
    pub fn new(db: DatabaseConnection, versions: Arc<Versions>) -> Arc<Self> {
        Arc::new(Permissions {
            db,
            versions,
            rooms: Mutex::new(LruCache::new(
                NonZeroUsize::new(ROOMS_KEPT).expect("non-zero"),
            )),
        })
    }

    /// May `user` read `room` now (are they a current member)?
    pub async fn may_read(&self, room: i64, user: i64) -> AppResult<bool> {
        match self.members(room).await? {
            Some(members) => Ok(members.chose.contains_key(&user)),
            None => rooms::is_member(&self.db, room, user).await,
        }
    }

    /// May `viewer` see `user`'s presence through `room`: are both current
    /// members, and did `user` choose to be in it?
    pub async fn sees_presence(&self, room: i64, viewer: i64, user: i64) -> AppResult<bool> {
        match self.members(room).await? {
            Some(members) => Ok(members.chose.contains_key(&viewer)
                && members.chose.get(&user).copied().unwrap_or(false)),
            None => Ok(rooms::is_member(&self.db, room, viewer).await?
                && rooms::chose_to_be_in(&self.db, room, user).await?),
        }
    }

    /// A gate for `viewer`'s live stream: asked before each delivery.
    pub fn gate(self: &Arc<Self>, viewer: i64) -> Gate {
        Gate::new(self.clone(), viewer)
    }

    /// The room's members at the current memberships version; `None` when
    /// that version cannot be known.
    async fn members(&self, room: i64) -> AppResult<Option<Arc<Members>>> {
        let Some(version) = self
            .versions
            .current(&[Key::Memberships])
            .await
            .and_then(|v| v.first().copied())
        else {
            return Ok(None);
        };
        let slot = match self.rooms.lock() {
            Ok(mut rooms) => rooms.get_or_insert(room, Arc::default).clone(),
            Err(_) => return Ok(None),
        };
        if let Some(members) = slot.at(version) {
            return Ok(Some(members));
        }
        let _reading = slot.reading.lock().await;
        if let Some(members) = slot.at(version) {
            return Ok(Some(members));
        }
        // Read after the version: at least as new as it.
        let members = Arc::new(Members {
            version,
            chose: rooms::members_and_choice(&self.db, room).await?,
        });
        if let Ok(mut kept) = slot.members.lock() {
            *kept = Some(members.clone());
        }
        Ok(Some(members))
    }
}

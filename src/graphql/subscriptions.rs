//! Subscriptions: push instead of polling.
//!
//! Every stream reads the event bus (new messages carry the whole message,
//! so pushing costs no query) and re-reads the database periodically and
//! whenever it lagged behind the bus, so a dropped event delays a message but
//! never loses it; what was already delivered is never sent twice.
//!
//! Whatever a stream got, from the bus or a re-read, it delivers only
//! through the viewer's [`Gate`]: a message of a room goes out only while
//! the viewer may read that room, at the moment it goes out. A viewer who
//! left (or was removed) gets nothing more of the room, even from a stream
//! that lagged past the event that said so.

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    time::Duration,
};

use async_graphql::{Context, ID, Result, ResultExt, Subscription};
use entity::task::TaskState;
use futures::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{
    ContextExt,
    messages::Message,
    rooms::require_member,
    tasks::{Task, parse_task_id},
    users::parse_id,
};
use crate::{
    domain::{messages, pagination, rooms, tasks},
    error::AppError,
    events::Event,
    service::permissions::Gate,
};

/// How often live subscriptions re-read the database, and other settings.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionSettings {
    pub recheck: Duration,
}

/// Most messages one re-read delivers (the rest come with the next one).
const RECHECK_BATCH: u64 = 500;
/// Delivered ids remembered per subscription before the oldest are folded
/// into the floor.
const DELIVERED_MAX: usize = 10_000;

#[derive(Default)]
pub struct MessageSubscription;

/// What the unread stream waits for next.
enum Wake {
    Event(Event),
    Lagged,
    Tick,
    Closed,
}

async fn next_wake(
    events: &mut broadcast::Receiver<Event>,
    ticker: &mut tokio::time::Interval,
) -> Wake {
    tokio::select! {
        received = events.recv() => match received {
            Ok(event) => Wake::Event(event),
            Err(RecvError::Lagged(_)) => Wake::Lagged,
            Err(RecvError::Closed) => Wake::Closed,
        },
        _ = ticker.tick() => Wake::Tick,
    }
}

/// The messages a stream delivered: every id at or below the floor, and the
/// ids above it (at most [`DELIVERED_MAX`]; the oldest fold into the floor).
struct Delivered {
    floor: i64,
    ids: BTreeSet<i64>,
}

impl Delivered {
    fn above(floor: i64) -> Self {
        Delivered {
            floor,
            ids: BTreeSet::new(),
        }
    }

    /// Record a message unless it was delivered already; true when it is
    /// news. A message the database shows is news above the floor only; one
    /// the event bus `announced` is news even below it (ids are handed out
    /// before commit, so a message can be stored after a higher one).
    fn take(&mut self, id: i64, announced: bool) -> bool {
        if !(announced || id > self.floor) || !self.ids.insert(id) {
            return false;
        }
        while self.ids.len() > DELIVERED_MAX {
            if let Some(oldest) = self.ids.pop_first() {
                self.floor = self.floor.max(oldest);
            }
        }
        true
    }
}

/// The unread stream's memory: what it delivered, and the rooms it watches.
struct UnreadState {
    db: DatabaseConnection,
    viewer: i64,
    gate: Gate,
    delivered: Delivered,
    rooms: HashSet<i64>,
}

impl UnreadState {
    async fn refresh_rooms(&mut self) -> Result<(), AppError> {
        self.rooms = rooms::list_for_user(&self.db, self.viewer)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        Ok(())
    }

    /// Unread messages not delivered yet, from the database, page by page
    /// (delivered messages stay unread until the client marks them seen, so
    /// one page could be all old news).
    async fn recheck(&mut self) -> Result<Vec<entity::message::Model>, AppError> {
        let mut fresh = Vec::new();
        let mut after = self.delivered.floor;
        loop {
            let page = messages::unread_since(&self.db, self.viewer, after, RECHECK_BATCH).await?;
            let full = page.len() as u64 == RECHECK_BATCH;
            if let Some(last) = page.last() {
                after = last.id;
            }
            fresh.extend(
                page.into_iter()
                    .filter(|m| self.delivered.take(m.id, false)),
            );
            if !full || fresh.len() >= RECHECK_BATCH as usize {
                break;
            }
        }
        Ok(fresh)
    }
}

/// The state of an unread stream between two items.
struct UnreadStream {
    state: UnreadState,
    pending: VecDeque<entity::message::Model>,
    events: broadcast::Receiver<Event>,
    ticker: tokio::time::Interval,
    /// The last re-read stopped at its batch limit: read on at once.
    behind: bool,
}

impl UnreadStream {
    async fn next(mut self) -> Option<(Message, Self)> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                // Left its room since it was read: not for this viewer.
                if !self.state.gate.may_read(message.room_id).await {
                    continue;
                }
                return Some((Message::of(message), self));
            }
            let recheck = self.behind
                || match next_wake(&mut self.events, &mut self.ticker).await {
                    Wake::Event(Event::MessageStored { message, .. }) => {
                        let state = &mut self.state;
                        if message.sender_id != Some(state.viewer)
                            && state.rooms.contains(&message.room_id)
                            && state.delivered.take(message.id, true)
                        {
                            self.pending.push_back(message.into());
                        }
                        false
                    }
                    Wake::Event(Event::MembershipChanged { user_id, .. }) => {
                        user_id == self.state.viewer
                    }
                    Wake::Event(_) => false,
                    Wake::Lagged | Wake::Tick => true,
                    Wake::Closed => return None,
                };
            if recheck {
                // A failed re-read is retried at the next tick.
                // Boxed: a waiting stream then holds only a small future, not
                // the (large) query futures.
                self.behind = false;
                if Box::pin(self.state.refresh_rooms()).await.is_ok()
                    && let Ok(missed) = Box::pin(self.state.recheck()).await
                {
                    self.behind = missed.len() >= RECHECK_BATCH as usize;
                    self.pending.extend(missed);
                }
            }
        }
    }
}

/// A ticker that first fires one period from now.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// The state of a room stream between two items.
struct RoomStream {
    db: DatabaseConnection,
    room: i64,
    gate: Gate,
    delivered: Delivered,
    pending: VecDeque<entity::message::Model>,
    events: broadcast::Receiver<Event>,
    ticker: tokio::time::Interval,
    /// Where the next re-read of the room starts.
    checked: i64,
    /// Where an unfinished re-read goes on (it stopped at a page limit).
    resume: Option<i64>,
}

/// Messages may commit a little out of id order: each re-read looks again
/// this far (in ids) below the newest message it found.
const COMMIT_SLACK: i64 = 1_000;

impl RoomStream {
    /// Queue a message unless already delivered; `announced` messages (from
    /// the event bus) are news even below the floor.
    fn take(&mut self, message: entity::message::Model, announced: bool) {
        if self.delivered.take(message.id, announced) {
            self.pending.push_back(message);
        }
    }

    /// Read the room's messages since the last re-read, a page at a time;
    /// a page that comes back full leaves the rest for the next call.
    async fn recheck(&mut self) {
        let since = self
            .resume
            .take()
            .unwrap_or(self.checked)
            .max(self.delivered.floor);
        let Ok(page) = messages::room_since(&self.db, self.room, since, RECHECK_BATCH).await else {
            // Retried at the next tick.
            return;
        };
        let full = page.len() as u64 == RECHECK_BATCH;
        let newest = page.last().map(|m| m.id);
        for message in page {
            self.take(message, false);
        }
        match newest {
            Some(newest) if full => self.resume = Some(newest),
            Some(newest) => self.checked = self.checked.max(newest - COMMIT_SLACK),
            None => {}
        }
    }

    async fn next(mut self) -> Option<(Message, Self)> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                // The viewer left (or was removed): the stream ends, with
                // nothing of the room after that.
                if !self.gate.may_read(self.room).await {
                    return None;
                }
                return Some((Message::of(message), self));
            }
            let recheck = self.resume.is_some()
                || match next_wake(&mut self.events, &mut self.ticker).await {
                    Wake::Event(Event::MessageStored { message, .. })
                        if message.room_id == self.room =>
                    {
                        self.take(message.into(), true);
                        false
                    }
                    // An edit or a delete: the message again, as it is now.
                    Wake::Event(Event::MessageChanged { message, .. })
                        if message.room_id == self.room =>
                    {
                        self.pending.push_back(message.into());
                        false
                    }
                    Wake::Event(Event::MembershipChanged {
                        room_id, user_id, ..
                    }) if room_id == self.room && user_id == self.gate.viewer() => {
                        // Left (or the room is gone): the stream ends.
                        if !self.gate.may_read(self.room).await {
                            return None;
                        }
                        false
                    }
                    Wake::Event(_) => false,
                    // Fell behind the bus (the viewer's own leave may be
                    // among what was missed), or time for the periodic
                    // re-read (the bus may have dropped events).
                    Wake::Lagged | Wake::Tick => {
                        if !self.gate.may_read(self.room).await {
                            return None;
                        }
                        true
                    }
                    Wake::Closed => return None,
                };
            if recheck {
                // Boxed: a waiting stream then holds only a small future.
                Box::pin(self.recheck()).await;
            }
        }
    }
}

#[Subscription]
impl MessageSubscription {
    /// The viewer's new unread messages, pushed as they are stored. With
    /// `after` (the `cursor` of the last message received), first every
    /// unread message stored since then, so a reconnecting client misses
    /// nothing. Never delivers a message twice.
    async fn unread_messages(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Message> + use<>> {
        let viewer = ctx.viewer_id().await.extend()?;
        let db = ctx.db().clone();
        let settings = *ctx.data_unchecked::<SubscriptionSettings>();
        // Subscribe before reading, so nothing falls between the two.
        let events = ctx.events().subscribe();
        let floor = match after {
            Some(cursor) => pagination::decode_cursor("after", &cursor).extend()?,
            // From now on: everything stored so far counts as delivered.
            None => messages::latest_id(&db).await.extend()?.unwrap_or(0),
        };
        let mut state = UnreadState {
            db,
            viewer,
            gate: ctx.permissions().gate(viewer),
            delivered: Delivered::above(floor),
            rooms: HashSet::new(),
        };
        state.refresh_rooms().await.extend()?;
        let pending: VecDeque<_> = state.recheck().await.extend()?.into();
        let stream = UnreadStream {
            state,
            behind: pending.len() >= RECHECK_BATCH as usize,
            pending,
            events,
            ticker: ticker(settings.recheck),
        };
        Ok(futures::stream::unfold(stream, UnreadStream::next))
    }

    /// Messages stored in a room (the viewer's own included). Members only;
    /// ends when the viewer leaves the room.
    async fn room_messages(
        &self,
        ctx: &Context<'_>,
        room_id: ID,
    ) -> Result<impl Stream<Item = Message> + use<>> {
        let room = parse_id("roomId", &room_id).extend()?;
        rooms::get(ctx.db(), room).await.extend()?;
        let viewer = require_member(ctx, room).await?;
        let events = ctx.events().subscribe();
        let db = ctx.db().clone();
        let floor = messages::latest_id(&db).await.extend()?.unwrap_or(0);
        let settings = *ctx.data_unchecked::<SubscriptionSettings>();
        let stream = RoomStream {
            db,
            room,
            gate: ctx.permissions().gate(viewer),
            delivered: Delivered::above(floor),
            pending: VecDeque::new(),
            events,
            ticker: ticker(settings.recheck),
            checked: floor,
            resume: None,
        };
        Ok(futures::stream::unfold(stream, RoomStream::next))
    }

    /// State changes of one of the viewer's tasks, starting with its
    /// current state; ends after SUCCESS or FAILURE.
    async fn task_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<impl Stream<Item = Task> + use<>> {
        let viewer = ctx.viewer_id().await.extend()?;
        let task_id = parse_task_id(&id).extend()?;
        let db = ctx.db().clone();
        let settings = *ctx.data_unchecked::<SubscriptionSettings>();
        let events = ctx.events().subscribe();
        let current = tasks::get_for(&db, task_id, viewer).await.extend()?;
        let stream = TaskStream {
            db,
            task_id,
            next: Some(current),
            last: None,
            done: false,
            events,
            // Task updates are short-lived: re-read often.
            ticker: ticker(settings.recheck.min(Duration::from_secs(1))),
        };
        Ok(futures::stream::unfold(stream, TaskStream::next))
    }
}

struct TaskStream {
    db: DatabaseConnection,
    task_id: uuid::Uuid,
    next: Option<entity::task::Model>,
    last: Option<TaskState>,
    done: bool,
    events: broadcast::Receiver<Event>,
    ticker: tokio::time::Interval,
}

impl TaskStream {
    async fn next(mut self) -> Option<(Task, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(task) = self.next.take()
                && self.last != Some(task.state)
            {
                self.last = Some(task.state);
                self.done = task.state.is_finished();
                return Some((Task(task), self));
            }
            let reread = match next_wake(&mut self.events, &mut self.ticker).await {
                Wake::Event(Event::TaskUpdated { task_id, .. }) => task_id == self.task_id,
                Wake::Event(_) => false,
                Wake::Lagged | Wake::Tick => true,
                Wake::Closed => return None,
            };
            if reread {
                match Box::pin(tasks::get(&self.db, self.task_id)).await {
                    Ok(task) => self.next = Some(task),
                    // Purged: nothing more to report.
                    Err(AppError::NotFound(_)) => return None,
                    Err(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_ids_are_taken_once_and_fold_into_the_floor() {
        let mut delivered = Delivered::above(10);
        // The database's rows at or below the floor are old news; the bus's
        // announcements are not (a late commit).
        assert!(!delivered.take(10, false));
        assert!(delivered.take(9, true));
        assert!(!delivered.take(9, true));
        assert!(delivered.take(11, false));
        assert!(!delivered.take(11, true));

        for id in 100..(100 + DELIVERED_MAX as i64) {
            assert!(delivered.take(id, false));
        }
        assert_eq!(delivered.ids.len(), DELIVERED_MAX);
        // The two oldest (9 and 11) folded into the floor: the database's
        // rows up to 11 count as delivered.
        assert_eq!(delivered.floor, 11);
        assert!(!delivered.take(11, false));
        assert!(!delivered.take(100, false));
        assert!(delivered.take(12, false));
    }
}

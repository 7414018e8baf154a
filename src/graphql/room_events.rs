//! `roomEvents`: one live stream of everything that happens in a room.
//!
//! Stored kinds (messages stored, edited, deleted; reactions; members
//! joining and leaving) carry the room's event number as their `cursor`.
//! Numbers commit in order (see [`crate::domain::log`]), so the stream
//! delivers each number once, in order: from the bus while it is
//! contiguous, from the database whenever a number is missing (a lost
//! Redis event, a lag), and after `after` when a client resumes. Typing
//! and presence are live only: they are not numbered and not replayed.
//!
//! Who gets what: numbered events go out in order, so the viewer's own
//! leave is delivered before anything numbered after it, and ends the
//! stream (a leave followed by a re-join, met in a replay, is history and
//! does not). Typing and presence pass the viewer's [`Gate`] when they go
//! out: only while the viewer is a member, and presence only of members who
//! chose to be in the room.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::Duration,
};

use async_graphql::{
    ComplexObject, Context, ID, Result, ResultExt, SimpleObject, Subscription, Union,
};
use chrono::{DateTime, Utc};
use futures::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{
    ContextExt, load,
    loaders::{MessageById, UserById},
    messages::Message,
    rooms::require_member,
    subscriptions::SubscriptionSettings,
    users::{User, UserPresence, parse_id},
};
use crate::{
    domain::{
        log::{self, Kind, Logged},
        messages, pagination, rooms,
    },
    error::{AppError, AppResult},
    events::Event,
    service::permissions::Gate,
};

/// Most stored events one database read delivers.
const CATCH_UP_BATCH: u64 = 500;
/// How long an event waits for a missing lower number to arrive from the
/// bus before the database is read.
const GAP_WAIT: Duration = Duration::from_millis(250);
/// Most events kept waiting for a missing number.
const EARLY_MAX: usize = 256;

/// A message was stored in the room.
#[derive(SimpleObject)]
pub struct MessageStoredEvent {
    /// This event's position, for `roomEvents(after:)`.
    pub cursor: String,
    pub message: Message,
}

/// A message was edited; `message` is as it is now.
#[derive(SimpleObject)]
pub struct MessageEditedEvent {
    pub cursor: String,
    pub message: Message,
}

/// A message was deleted; `message` is its tombstone.
#[derive(SimpleObject)]
pub struct MessageDeletedEvent {
    pub cursor: String,
    pub message: Message,
}

/// A member put an emoji on a message, or took it off.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ReactionChangedEvent {
    pub cursor: String,
    pub message_id: ID,
    pub emoji: String,
    /// True when the emoji was added, false when it was taken off.
    pub added: bool,
    #[graphql(skip)]
    pub user_id: Option<i64>,
}

#[ComplexObject]
impl ReactionChangedEvent {
    /// The message as it is now (its `reactions` included).
    async fn message(&self, ctx: &Context<'_>) -> Result<Option<Message>> {
        let id = parse_id("messageId", &self.message_id).extend()?;
        Ok(load(ctx, MessageById(id)).await?.map(Message::of))
    }
    /// Who reacted (null once their account is deleted).
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        user(ctx, self.user_id).await
    }
}

/// A user joined the room.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct MemberJoinedEvent {
    pub cursor: String,
    #[graphql(skip)]
    pub user_id: Option<i64>,
}

#[ComplexObject]
impl MemberJoinedEvent {
    /// Who joined (null once their account is deleted).
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        user(ctx, self.user_id).await
    }
}

/// A user left the room. When it is the viewer, this is the stream's last
/// event.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct MemberLeftEvent {
    pub cursor: String,
    #[graphql(skip)]
    pub user_id: Option<i64>,
}

#[ComplexObject]
impl MemberLeftEvent {
    /// Who left (null once their account is deleted).
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        user(ctx, self.user_id).await
    }
}

/// Another member started typing (again), or stopped: they said so, sent
/// a message, or let the indicator lapse. Live only.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct TypingEvent {
    pub typing: bool,
    /// When the indicator lapses unless renewed (when it ended, for a stop).
    pub expires_at: DateTime<Utc>,
    #[graphql(skip)]
    pub user_id: i64,
}

#[ComplexObject]
impl TypingEvent {
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        user(ctx, Some(self.user_id)).await
    }
}

/// Another member came online or went offline. Live only.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct PresenceChangedEvent {
    pub presence: UserPresence,
    #[graphql(skip)]
    pub user_id: i64,
}

#[ComplexObject]
impl PresenceChangedEvent {
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        user(ctx, Some(self.user_id)).await
    }
}

async fn user(ctx: &Context<'_>, id: Option<i64>) -> Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    Ok(load(ctx, UserById(id)).await?.map(User::public))
}

/// Anything that happens in a room.
#[derive(Union)]
pub enum RoomEvent {
    MessageStored(MessageStoredEvent),
    MessageEdited(MessageEditedEvent),
    MessageDeleted(MessageDeletedEvent),
    ReactionChanged(ReactionChangedEvent),
    MemberJoined(MemberJoinedEvent),
    MemberLeft(MemberLeftEvent),
    Typing(TypingEvent),
    PresenceChanged(PresenceChangedEvent),
}

fn cursor(seq: i64) -> String {
    pagination::encode_cursor(seq)
}

/// What the stream waits for next.
enum Wake {
    Event(Event),
    Lagged,
    Tick,
    /// The earliest typing indicator may have lapsed.
    Lapse,
    /// A number has been missing for [`GAP_WAIT`].
    Gap,
    Closed,
}

struct RoomEventStream {
    db: DatabaseConnection,
    room: i64,
    viewer: i64,
    gate: Gate,
    /// Every stored event numbered up to here was delivered.
    delivered: i64,
    pending: VecDeque<RoomEvent>,
    events: broadcast::Receiver<Event>,
    ticker: tokio::time::Interval,
    /// The viewer's own leaves (by number) met in a replay and followed by
    /// a re-join: history, not the end of the stream.
    rejoined_after: HashSet<i64>,
    /// Numbered events that arrived before a lower number, waiting a
    /// moment for it (publishers announce in their own time) before the
    /// database is read.
    early: BTreeMap<i64, RoomEvent>,
    /// Since when a number has been missing.
    gap_since: Option<tokio::time::Instant>,
    /// Other members typing, and when their indicator lapses.
    typing: HashMap<i64, DateTime<Utc>>,
    /// The viewer left: end after what is pending.
    ended: bool,
    /// The last read from the database was a full batch: read on once
    /// what it gave was delivered (so a far resume holds one batch at a
    /// time, not the whole backlog).
    behind: bool,
}

impl RoomEventStream {
    async fn next(mut self) -> Option<(RoomEvent, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if self.passes(&event).await {
                    return Some((event, self));
                }
                continue;
            }
            if self.ended {
                return None;
            }
            let catch_up = self.behind
                || match self.wake().await {
                    Wake::Event(event) => self.live(event),
                    Wake::Lapse => {
                        self.lapse();
                        false
                    }
                    Wake::Lagged | Wake::Tick | Wake::Gap => true,
                    Wake::Closed => return None,
                };
            if catch_up {
                // Boxed: a waiting stream then holds only a small future.
                if Box::pin(self.catch_up()).await.is_err() {
                    // Retried at the next tick.
                    self.behind = false;
                }
            }
        }
    }

    /// May this event go out now? Numbered events are the room's history
    /// up to the viewer's leave (the order sees to that); live-only ones
    /// pass the gate when they go out.
    async fn passes(&self, event: &RoomEvent) -> bool {
        match event {
            RoomEvent::Typing(_) => self.gate.may_read(self.room).await,
            RoomEvent::PresenceChanged(changed) => {
                self.gate.sees_presence_in(self.room, changed.user_id).await
            }
            _ => true,
        }
    }

    async fn wake(&mut self) -> Wake {
        let lapse = self
            .typing
            .values()
            .min()
            .map(|at| (*at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        let gap = self.gap_since.map(|since| since + GAP_WAIT);
        tokio::select! {
            received = self.events.recv() => match received {
                Ok(event) => Wake::Event(event),
                Err(RecvError::Lagged(_)) => Wake::Lagged,
                Err(RecvError::Closed) => Wake::Closed,
            },
            _ = self.ticker.tick() => Wake::Tick,
            _ = tokio::time::sleep(lapse.unwrap_or(Duration::from_secs(3600))), if lapse.is_some() => Wake::Lapse,
            _ = tokio::time::sleep_until(gap.unwrap_or_else(tokio::time::Instant::now)), if gap.is_some() => Wake::Gap,
        }
    }

    /// Take a live event; true when the database must be read (a number
    /// is missing).
    fn live(&mut self, event: Event) -> bool {
        if event.room_id() != Some(self.room) && !matches!(event, Event::PresenceChanged { .. }) {
            return false;
        }
        match event {
            Event::Typing {
                user_id,
                typing,
                expires_at,
                ..
            } => {
                if user_id != self.viewer {
                    self.typed(user_id, typing, expires_at);
                }
                false
            }
            Event::PresenceChanged {
                user_id,
                online,
                last_seen_at,
            } => {
                // Whether it concerns this room is asked when it goes out.
                if user_id != self.viewer {
                    self.pending
                        .push_back(RoomEvent::PresenceChanged(PresenceChangedEvent {
                            presence: UserPresence {
                                online,
                                last_seen_at,
                            },
                            user_id,
                        }));
                }
                false
            }
            Event::MessageStored { message, .. } => {
                let seq = message.seq;
                self.numbered(seq, || {
                    RoomEvent::MessageStored(MessageStoredEvent {
                        cursor: cursor(seq),
                        message: Message::of(message.into()),
                    })
                })
            }
            Event::MessageChanged { message, seq, .. } => {
                self.numbered(seq, || changed(seq, Message::of(message.into())))
            }
            Event::ReactionChanged {
                message_id,
                user_id,
                emoji,
                added,
                seq,
                ..
            } => self.numbered(seq, || {
                RoomEvent::ReactionChanged(ReactionChangedEvent {
                    cursor: cursor(seq),
                    message_id: ID(message_id.to_string()),
                    emoji,
                    added,
                    user_id: Some(user_id),
                })
            }),
            Event::MembershipChanged {
                user_id,
                joined,
                seq,
                ..
            } => self.numbered(seq, || member(seq, Some(user_id), joined)),
            Event::TaskUpdated { .. } | Event::SessionsEnded { .. } => false,
        }
    }

    /// Deliver a numbered event if it is the next one, with the early ones
    /// it lets through; an event after a missing number waits (for at most
    /// [`GAP_WAIT`]). True when the database must be read now.
    fn numbered(&mut self, seq: i64, event: impl FnOnce() -> RoomEvent) -> bool {
        if seq <= self.delivered || self.early.contains_key(&seq) {
            return false;
        }
        if seq != self.delivered + 1 {
            if self.early.len() >= EARLY_MAX {
                return true;
            }
            self.early.insert(seq, event());
            self.gap_since.get_or_insert_with(tokio::time::Instant::now);
            return false;
        }
        let event = event();
        self.take(seq, event);
        while let Some(next) = self.early.remove(&(self.delivered + 1)) {
            self.take(self.delivered + 1, next);
        }
        if self.early.is_empty() {
            self.gap_since = None;
        }
        false
    }

    /// Deliver the next numbered event, keeping the stream's own state.
    /// Nothing after the viewer's own leave is delivered.
    fn take(&mut self, seq: i64, event: RoomEvent) {
        if self.ended {
            return;
        }
        self.delivered = seq;
        match &event {
            RoomEvent::MessageStored(stored) => {
                if let Some(sender) = stored.message.0.message.sender_id
                    && self.typing.remove(&sender).is_some()
                {
                    self.pending.push_back(stop(sender));
                }
            }
            RoomEvent::MemberLeft(left) => {
                if let Some(user) = left.user_id {
                    if self.typing.remove(&user).is_some() {
                        self.pending.push_back(stop(user));
                    }
                    if user == self.viewer && !self.rejoined_after.remove(&seq) {
                        self.ended = true;
                    }
                }
            }
            _ => {}
        }
        self.pending.push_back(event);
    }

    fn typed(&mut self, user: i64, typing: bool, expires_at: DateTime<Utc>) {
        if typing && expires_at > Utc::now() {
            self.typing.insert(user, expires_at);
        } else if self.typing.remove(&user).is_none() {
            return; // was not typing: nothing to tell
        }
        self.pending.push_back(RoomEvent::Typing(TypingEvent {
            typing,
            expires_at,
            user_id: user,
        }));
    }

    /// Indicators that lapsed end with a stop.
    fn lapse(&mut self) {
        let now = Utc::now();
        let lapsed: Vec<i64> = self
            .typing
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(user, _)| *user)
            .collect();
        for user in lapsed {
            self.typing.remove(&user);
            self.pending.push_back(stop(user));
        }
    }

    /// Read what was missed from the database, in order, one batch (the
    /// next call reads on when this one was full).
    async fn catch_up(&mut self) -> AppResult<()> {
        let read = log::since(&self.db, self.room, self.delivered, CATCH_UP_BATCH).await?;
        self.behind = read.more;
        let logged = read.entries;
        self.note_rejoins(&logged).await;
        let changed: Vec<i64> = logged
            .iter()
            .filter_map(|entry| match entry {
                Logged::Event(e) => e.message_id,
                Logged::Message(_) => None,
            })
            .collect();
        let mut current = messages::load_many(&self.db, &changed).await?;
        for entry in logged {
            let seq = entry.seq();
            let event = match entry {
                Logged::Message(message) => RoomEvent::MessageStored(MessageStoredEvent {
                    cursor: cursor(seq),
                    message: Message::of(message),
                }),
                Logged::Event(event) => match logged_event(event, &mut current) {
                    Some(event) => event,
                    None => {
                        self.delivered = seq;
                        continue;
                    }
                },
            };
            self.take(seq, event);
        }
        // Numbers that hold nothing (a store that rolled back) are passed;
        // what waited for a missing number came with this read.
        self.delivered = self.delivered.max(read.through);
        let delivered = self.delivered;
        self.early.retain(|seq, _| *seq > delivered);
        if self.early.is_empty() {
            self.gap_since = None;
        }
        // Left without an event reaching us (the room is gone, say).
        if !self.behind && !self.ended && !self.gate.may_read(self.room).await {
            self.ended = true;
        }
        Ok(())
    }

    /// Which of the viewer's leaves in a replayed batch were followed by a
    /// re-join: one later in the batch, or (for the last leave) one the
    /// viewer's current membership shows.
    async fn note_rejoins(&mut self, logged: &[Logged]) {
        let mine = |entry: &Logged, kind: Kind| match entry {
            Logged::Event(e) => {
                e.user_id == Some(self.viewer) && Kind::parse(&e.kind) == Some(kind)
            }
            Logged::Message(_) => false,
        };
        let leaves: Vec<i64> = logged
            .iter()
            .filter(|e| mine(e, Kind::MemberLeft))
            .map(Logged::seq)
            .collect();
        let Some(&last_leave) = leaves.last() else {
            return;
        };
        let last_join = logged
            .iter()
            .filter(|e| mine(e, Kind::MemberJoined))
            .map(Logged::seq)
            .max();
        for &leave in &leaves {
            if last_join.is_some_and(|join| join > leave) {
                self.rejoined_after.insert(leave);
            }
        }
        if !self.rejoined_after.contains(&last_leave) && self.gate.may_read(self.room).await {
            self.rejoined_after.insert(last_leave);
        }
    }
}

/// A logged event as the stream shows it; `None` for what it cannot show
/// (a kind this build does not know).
fn logged_event(
    event: entity::room_event::Model,
    current: &mut HashMap<i64, entity::message::Model>,
) -> Option<RoomEvent> {
    let seq = event.seq;
    let kind = Kind::parse(&event.kind)?;
    let message = || {
        event
            .message_id
            .and_then(|id| current.get(&id).cloned())
            .map(Message::of)
    };
    Some(match kind {
        Kind::MessageEdited => RoomEvent::MessageEdited(MessageEditedEvent {
            cursor: cursor(seq),
            message: message()?,
        }),
        Kind::MessageDeleted => RoomEvent::MessageDeleted(MessageDeletedEvent {
            cursor: cursor(seq),
            message: message()?,
        }),
        Kind::ReactionAdded | Kind::ReactionRemoved => {
            RoomEvent::ReactionChanged(ReactionChangedEvent {
                cursor: cursor(seq),
                message_id: ID(event.message_id?.to_string()),
                emoji: event.emoji.clone().unwrap_or_default(),
                added: kind == Kind::ReactionAdded,
                user_id: event.user_id,
            })
        }
        Kind::MemberJoined => member(seq, event.user_id, true),
        Kind::MemberLeft => member(seq, event.user_id, false),
    })
}

fn changed(seq: i64, message: Message) -> RoomEvent {
    if message.0.message.deleted_at.is_some() {
        RoomEvent::MessageDeleted(MessageDeletedEvent {
            cursor: cursor(seq),
            message,
        })
    } else {
        RoomEvent::MessageEdited(MessageEditedEvent {
            cursor: cursor(seq),
            message,
        })
    }
}

fn member(seq: i64, user_id: Option<i64>, joined: bool) -> RoomEvent {
    if joined {
        RoomEvent::MemberJoined(MemberJoinedEvent {
            cursor: cursor(seq),
            user_id,
        })
    } else {
        RoomEvent::MemberLeft(MemberLeftEvent {
            cursor: cursor(seq),
            user_id,
        })
    }
}

fn stop(user: i64) -> RoomEvent {
    RoomEvent::Typing(TypingEvent {
        typing: false,
        expires_at: Utc::now(),
        user_id: user,
    })
}

#[derive(Default)]
pub struct RoomEventSubscription;

#[Subscription]
impl RoomEventSubscription {
    /// Everything that happens in a room, as it happens: messages stored,
    /// edited and deleted, reactions, members joining and leaving, typing,
    /// and members coming online or going offline. Members only; ends
    /// after the viewer's own `MemberLeftEvent`. With `after` (the `cursor`
    /// of the last stored event received), first every stored event since
    /// then, in order; each stored event is delivered exactly once.
    async fn room_events(
        &self,
        ctx: &Context<'_>,
        room_id: ID,
        after: Option<String>,
    ) -> Result<impl Stream<Item = RoomEvent> + use<>> {
        let room = parse_id("roomId", &room_id).extend()?;
        rooms::get(ctx.db(), room).await.extend()?;
        let viewer = require_member(ctx, room).await?;
        // Subscribe before reading, so nothing falls between the two.
        let events = ctx.events().subscribe();
        let db = ctx.db().clone();
        let latest = log::latest(&db, room).await.extend()?;
        let delivered = match after {
            Some(cursor) => {
                let after = pagination::decode_cursor("after", &cursor).extend()?;
                if !(0..=latest).contains(&after) {
                    return Err(AppError::field(
                        "after",
                        format!("`{cursor}` is not a position in this room"),
                    ))
                    .extend();
                }
                after
            }
            None => latest,
        };
        let settings = *ctx.data_unchecked::<SubscriptionSettings>();
        let mut ticker = tokio::time::interval(settings.recheck);
        ticker.reset();
        let mut stream = RoomEventStream {
            db,
            room,
            viewer,
            delivered,
            pending: VecDeque::new(),
            events,
            ticker,
            gate: ctx.permissions().gate(viewer),
            rejoined_after: HashSet::new(),
            early: BTreeMap::new(),
            gap_since: None,
            typing: ctx
                .typing()
                .typing_in(room)
                .into_iter()
                .filter(|(user, _)| *user != viewer)
                .collect(),
            ended: false,
            behind: false,
        };
        if delivered < latest {
            stream.catch_up().await.extend()?;
        }
        Ok(futures::stream::unfold(stream, RoomEventStream::next))
    }
}

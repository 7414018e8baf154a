//! DataLoaders: every relation a resolver follows is batched here, so a
//! query's statement count does not grow with the rows it returns.
//!
//! One [`DbLoader`] per request answers every key type; each key type is
//! one batched query (or a fixed few). Keys that depend on the viewer carry
//! the viewer's id.
//!
//! Batches are cut by execution rounds, not by a timer: a batch is loaded
//! once the request's execution has polled every resolver it can and is
//! waiting ([`Rounds`]). So all the keys one level of a query asks for land
//! in one batch however slow the machine, and the statement count of a
//! query depends on its shape only, never on timing or row counts.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{membership, message, message_seen, profile, room};
use futures::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use crate::{
    domain::{
        messages,
        pagination::{Page, PageRequest},
        rooms,
        users::{self, PublicUser},
        views::{self, Named},
    },
    error::AppError,
    presence::Presence,
    readmodel::{Entry, RoomViews},
};

mod chat;

pub use chat::{
    LastSeenOf, MentionsOf, OnlineOf, ReactionsOf, ReplyCountOf, SharesRoom, UnreadMentionsIn,
};

pub type LoadError = Arc<AppError>;

pub struct DbLoader {
    pub(super) db: DatabaseConnection,
    pub(super) views: Arc<RoomViews>,
    pub(super) presence: Arc<Presence>,
}

/// The per-request loader.
pub type Loaders = DataLoader<DbLoader>;

/// Counts the execution rounds of one request; a batch waits for the end of
/// the round in which its first key was asked for.
pub struct Rounds {
    ended: watch::Sender<u64>,
}

/// A loader for one request (or one subscription event), and the round
/// counter that decides when its batches run.
pub fn per_request(
    db: DatabaseConnection,
    views: Arc<RoomViews>,
    presence: Arc<Presence>,
) -> (Loaders, Rounds) {
    let (ended, watcher) = watch::channel(0u64);
    let spawner = move |batch: futures::future::BoxFuture<'static, ()>| {
        let mut watcher = watcher.clone();
        let round = *watcher.borrow();
        tokio::spawn(async move {
            // Err: the request is over (nobody waits for this batch), or
            // the counter was dropped; either way, run the batch.
            let _ = watcher.wait_for(|ended| *ended > round).await;
            batch.await;
        });
    };
    let loaders = DataLoader::new(
        DbLoader {
            db,
            views,
            presence,
        },
        spawner,
    )
    .delay(Duration::ZERO);
    (loaders, Rounds { ended })
}

impl Rounds {
    /// Run `execution`, ending a round each time it has to wait.
    pub fn drive<F: Future>(self, execution: F) -> InRounds<F> {
        InRounds {
            execution: Box::pin(execution),
            rounds: self,
        }
    }

    /// Run a stream of results (a subscription), ending a round each time
    /// it has to wait.
    pub fn drive_stream<S: Stream>(self, stream: S) -> InRoundsStream<S> {
        InRoundsStream {
            stream: Box::pin(stream),
            rounds: self,
        }
    }

    fn end_round(&self) {
        self.ended.send_modify(|n| *n += 1);
    }
}

/// A future that ends a loader round whenever its inner future is pending.
pub struct InRounds<F: Future> {
    execution: Pin<Box<F>>,
    rounds: Rounds,
}

/// A stream that ends a loader round whenever its inner stream is pending.
pub struct InRoundsStream<S: Stream> {
    stream: Pin<Box<S>>,
    rounds: Rounds,
}

impl<S: Stream> Stream for InRoundsStream<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let (waker, noting) = noting_waker(cx);
        match self
            .stream
            .as_mut()
            .poll_next(&mut Context::from_waker(&waker))
        {
            Poll::Pending => {
                if !noting.woken.load(Ordering::Acquire) {
                    self.rounds.end_round();
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

fn noting_waker(cx: &Context<'_>) -> (Waker, Arc<NotingWaker>) {
    let noting = Arc::new(NotingWaker {
        waker: cx.waker().clone(),
        woken: AtomicBool::new(false),
    });
    (Waker::from(noting.clone()), noting)
}

/// Forwards wake-ups and notes whether one happened during a poll.
struct NotingWaker {
    waker: Waker,
    woken: AtomicBool,
}

impl Wake for NotingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake_by_ref();
    }
}

impl<F: Future> Future for InRounds<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let noting = Arc::new(NotingWaker {
            waker: cx.waker().clone(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(noting.clone());
        match self
            .execution
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
        {
            Poll::Ready(output) => Poll::Ready(output),
            Poll::Pending => {
                // A future that woke itself during the poll (a cooperative
                // yield, a budget running out) has more to do at once: the
                // round is not over until everything waits on something else.
                if !noting.woken.load(Ordering::Acquire) {
                    self.rounds.end_round();
                }
                Poll::Pending
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserById(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileOf(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoomById(pub i64);
/// A room's view (members, newest messages), from the read model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ViewOf(pub i64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageById(pub i64);
/// Current members of a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MembersOf(pub i64);
/// Membership history of a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HistoryOf(pub i64);
/// Current memberships of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MembershipsOfUser(pub i64);
/// A page of a room's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessagesOf(pub i64, pub PageRequest);
/// Number of messages in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageCountOf(pub i64);
/// Receipts of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceiptsOf(pub i64);
/// Has (viewer) seen (message)?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeenBy {
    pub viewer: i64,
    pub message: i64,
}
/// Unread count of (viewer) in (room).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnreadIn {
    pub viewer: i64,
    pub room: i64,
}
/// Is (viewer) a current member of (room)?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberOf {
    pub viewer: i64,
    pub room: i64,
}

pub(super) fn group_by_viewer<K: Copy>(
    keys: &[K],
    split: impl Fn(K) -> (i64, i64),
) -> HashMap<i64, Vec<i64>> {
    let mut groups: HashMap<i64, Vec<i64>> = HashMap::new();
    for &key in keys {
        let (viewer, id) = split(key);
        groups.entry(viewer).or_default().push(id);
    }
    groups
}

impl Loader<UserById> for DbLoader {
    type Value = PublicUser;
    type Error = LoadError;

    async fn load(&self, keys: &[UserById]) -> Result<HashMap<UserById, PublicUser>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(users::load_public(&self.db, &ids)
            .await?
            .into_iter()
            .map(|(id, user)| (UserById(id), user))
            .collect())
    }
}

impl Loader<ProfileOf> for DbLoader {
    type Value = profile::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProfileOf],
    ) -> Result<HashMap<ProfileOf, profile::Model>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(users::profiles(&self.db, &ids)
            .await?
            .into_iter()
            .map(|(id, profile)| (ProfileOf(id), profile))
            .collect())
    }
}

impl Loader<ViewOf> for DbLoader {
    type Value = Arc<Entry>;
    type Error = LoadError;

    async fn load(&self, keys: &[ViewOf]) -> Result<HashMap<ViewOf, Arc<Entry>>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let (entries, _) = self.views.get(&ids, false).await?;
        Ok(entries
            .into_iter()
            .map(|(id, entry)| (ViewOf(id), entry))
            .collect())
    }
}

impl Loader<RoomById> for DbLoader {
    type Value = room::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[RoomById]) -> Result<HashMap<RoomById, room::Model>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(rooms::load_many(&self.db, &ids)
            .await?
            .into_iter()
            .map(|(id, room)| (RoomById(id), room))
            .collect())
    }
}

impl Loader<MessageById> for DbLoader {
    type Value = message::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[MessageById],
    ) -> Result<HashMap<MessageById, message::Model>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(messages::load_many(&self.db, &ids)
            .await?
            .into_iter()
            .map(|(id, m)| (MessageById(id), m))
            .collect())
    }
}

impl Loader<MembersOf> for DbLoader {
    type Value = Vec<Named>;
    type Error = LoadError;

    async fn load(&self, keys: &[MembersOf]) -> Result<HashMap<MembersOf, Vec<Named>>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut found = views::load(&self.db, &ids, None).await?;
        Ok(ids
            .into_iter()
            .map(|id| {
                let members = found.remove(&id).map(|v| v.members).unwrap_or_default();
                (MembersOf(id), members)
            })
            .collect())
    }
}

impl Loader<HistoryOf> for DbLoader {
    type Value = Vec<membership::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[HistoryOf],
    ) -> Result<HashMap<HistoryOf, Vec<membership::Model>>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut history = rooms::memberships_of_rooms(&self.db, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| (HistoryOf(id), history.remove(&id).unwrap_or_default()))
            .collect())
    }
}

impl Loader<MembershipsOfUser> for DbLoader {
    type Value = Vec<membership::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[MembershipsOfUser],
    ) -> Result<HashMap<MembershipsOfUser, Vec<membership::Model>>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut by_user = rooms::current_memberships_of_users(&self.db, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| {
                (
                    MembershipsOfUser(id),
                    by_user.remove(&id).unwrap_or_default(),
                )
            })
            .collect())
    }
}

impl Loader<MessagesOf> for DbLoader {
    type Value = Page<message::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[MessagesOf],
    ) -> Result<HashMap<MessagesOf, Page<message::Model>>, LoadError> {
        // One statement per distinct page request (normally exactly one).
        let mut by_request: HashMap<PageRequest, Vec<i64>> = HashMap::new();
        for key in keys {
            by_request.entry(key.1).or_default().push(key.0);
        }
        let mut pages = HashMap::new();
        for (request, room_ids) in by_request {
            for (room_id, page) in messages::room_pages(&self.db, &room_ids, request).await? {
                pages.insert(MessagesOf(room_id, request), page);
            }
        }
        Ok(pages)
    }
}

impl Loader<MessageCountOf> for DbLoader {
    type Value = u64;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[MessageCountOf],
    ) -> Result<HashMap<MessageCountOf, u64>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let counts = messages::counts_by_room(&self.db, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| (MessageCountOf(id), counts.get(&id).copied().unwrap_or(0)))
            .collect())
    }
}

impl Loader<ReceiptsOf> for DbLoader {
    type Value = Vec<message_seen::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ReceiptsOf],
    ) -> Result<HashMap<ReceiptsOf, Vec<message_seen::Model>>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut receipts = messages::receipts(&self.db, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| (ReceiptsOf(id), receipts.remove(&id).unwrap_or_default()))
            .collect())
    }
}

impl Loader<SeenBy> for DbLoader {
    type Value = bool;
    type Error = LoadError;

    async fn load(&self, keys: &[SeenBy]) -> Result<HashMap<SeenBy, bool>, LoadError> {
        let mut answers = HashMap::new();
        for (viewer, ids) in group_by_viewer(keys, |k| (k.viewer, k.message)) {
            let seen = messages::seen_by_user(&self.db, viewer, &ids).await?;
            for message in ids {
                answers.insert(SeenBy { viewer, message }, seen.contains(&message));
            }
        }
        Ok(answers)
    }
}

impl Loader<UnreadIn> for DbLoader {
    type Value = u64;
    type Error = LoadError;

    async fn load(&self, keys: &[UnreadIn]) -> Result<HashMap<UnreadIn, u64>, LoadError> {
        let mut answers = HashMap::new();
        for (viewer, ids) in group_by_viewer(keys, |k| (k.viewer, k.room)) {
            let counts = messages::unread_counts(&self.db, viewer, &ids).await?;
            for room in ids {
                answers.insert(
                    UnreadIn { viewer, room },
                    counts.get(&room).copied().unwrap_or(0),
                );
            }
        }
        Ok(answers)
    }
}

impl Loader<MemberOf> for DbLoader {
    type Value = bool;
    type Error = LoadError;

    async fn load(&self, keys: &[MemberOf]) -> Result<HashMap<MemberOf, bool>, LoadError> {
        let mut answers = HashMap::new();
        for (viewer, ids) in group_by_viewer(keys, |k| (k.viewer, k.room)) {
            let member_of = rooms::member_of(&self.db, viewer, &ids).await?;
            for room in ids {
                answers.insert(MemberOf { viewer, room }, member_of.contains(&room));
            }
        }
        Ok(answers)
    }
}

//! Rooms and memberships in GraphQL.
//!
//! Group rooms (name, id) are public; a room's members, history, messages
//! and unread count are for its current members only, and a direct room is
//! visible only to its two users.

use async_graphql::{
    Context, Enum, ErrorExtensions, ID, Object, Result, ResultExt, SimpleObject,
    connection::Connection,
};
use chrono::{DateTime, Utc};
use entity::{membership, room};

use super::{
    ContextExt, TotalCount,
    connection::{connection, page_cost, page_request, wants_total},
    load,
    loaders::{
        HistoryOf, MemberOf, MembersOf, MessageCountOf, MessagesOf, RoomById, UnreadIn,
        UnreadMentionsIn, UserById, ViewOf,
    },
    messages::Message,
    users::{User, parse_id},
};
use std::sync::Arc;

use crate::{
    domain::{
        messages,
        pagination::{Page, page_in_memory},
        rooms::{self, RoomScope},
        views::RoomView,
    },
    error::{AppError, AppResult},
    readmodel::Entry,
};

/// Is the viewer a current member of the room?
pub(crate) async fn viewer_is_member(ctx: &Context<'_>, viewer: i64, room: i64) -> Result<bool> {
    Ok(load(ctx, MemberOf { viewer, room }).await?.unwrap_or(false))
}

/// The viewer's id, if they are a current member of the room; else an error.
pub(crate) async fn require_member(ctx: &Context<'_>, room: i64) -> Result<i64> {
    let viewer = ctx.viewer_id().await.extend()?;
    if viewer_is_member(ctx, viewer, room).await? {
        Ok(viewer)
    } else {
        Err(not_a_member())
    }
}

/// May the viewer see this room at all? Group rooms are public; a direct
/// room only to its members.
pub(crate) async fn can_see(ctx: &Context<'_>, room: &room::Model) -> Result<bool> {
    if !room.is_direct {
        return Ok(true);
    }
    match ctx.optional_viewer_id().await.extend()? {
        Some(viewer) => viewer_is_member(ctx, viewer, room.id).await,
        None => Ok(false),
    }
}

/// A chat room: a named group room, or the direct room of two users;
/// with its view when the read model had it at hand (one room asked for by
/// id), so members and recent messages need no further reads.
#[derive(Clone)]
pub struct Room(pub room::Model, pub Option<Arc<Entry>>);

impl Room {
    pub fn of(room: room::Model) -> Self {
        Room(room, None)
    }

    fn view(&self) -> Option<&RoomView> {
        self.1.as_ref().map(|entry| &entry.view)
    }

    /// The viewer's id, if they are a current member; else an error.
    async fn require_member(&self, ctx: &Context<'_>) -> Result<i64> {
        match self.view() {
            Some(view) => {
                let viewer = ctx.viewer_id().await.extend()?;
                if view.is_member(viewer) {
                    Ok(viewer)
                } else {
                    Err(not_a_member())
                }
            }
            None => require_member(ctx, self.0.id).await,
        }
    }
}

fn not_a_member() -> async_graphql::Error {
    AppError::Forbidden("You are not a member of this room".to_owned()).extend()
}

#[Object]
impl Room {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// True for the direct room of two users (it cannot be joined).
    async fn is_direct(&self) -> bool {
        self.0.is_direct
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// Is the viewer a current member? False for anonymous requests.
    async fn viewer_is_member(&self, ctx: &Context<'_>) -> Result<bool> {
        match (ctx.optional_viewer_id().await.extend()?, self.view()) {
            (Some(viewer), Some(view)) => Ok(view.is_member(viewer)),
            (Some(viewer), None) => viewer_is_member(ctx, viewer, self.0.id).await,
            (None, _) => Ok(false),
        }
    }

    /// Current members, ordered by user id. Members only.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        self.require_member(ctx).await?;
        if let Some(view) = self.view() {
            return Ok(view.members.iter().map(User::named).collect());
        }
        let members = load(ctx, MembersOf(self.0.id)).await?.unwrap_or_default();
        Ok(members.iter().map(User::named).collect())
    }

    /// Every membership, past and current, oldest first. Members only.
    async fn memberships(&self, ctx: &Context<'_>) -> Result<Vec<Membership>> {
        self.require_member(ctx).await?;
        let history = load(ctx, HistoryOf(self.0.id)).await?.unwrap_or_default();
        Ok(history.into_iter().map(Membership).collect())
    }

    /// The room's messages, oldest first (`last: N` for the newest N). Members only.
    #[graphql(complexity = "page_cost(first, last, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<String, Message, TotalCount>> {
        self.require_member(ctx).await?;
        let request = page_request(ctx, first, after, last, before).extend()?;
        let recent = self.view().and_then(|view| view.recent.as_ref());
        let from_view = recent.and_then(|recent| {
            page_in_memory(&recent.messages, |m| m.message.id, recent.complete, request)
        });
        let page = match from_view {
            Some(page) => page.map(Message::viewed),
            None => load(ctx, MessagesOf(self.0.id, request))
                .await?
                .map(|page| page.map(Message::of))
                .unwrap_or_else(|| Page {
                    items: Vec::new(),
                    has_previous_page: false,
                    has_next_page: false,
                }),
        };
        let total = match recent {
            _ if !wants_total(ctx) => 0,
            Some(recent) if recent.complete => recent.messages.len() as u64,
            _ => load(ctx, MessageCountOf(self.0.id)).await?.unwrap_or(0),
        };
        Ok(connection(page, total, |m| m.0.message.id, |m| m))
    }

    /// The replies to one of the room's messages, oldest first (`last: N`
    /// for the newest N). Members only.
    #[graphql(complexity = "page_cost(first, last, child_complexity)")]
    async fn thread(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<String, Message, TotalCount>> {
        self.require_member(ctx).await?;
        let parent = parse_id("messageId", &message_id).extend()?;
        let request = page_request(ctx, first, after, last, before).extend()?;
        let db = ctx.db();
        let page = messages::replies_page(db, self.0.id, parent, request)
            .await
            .extend()?;
        let total = if wants_total(ctx) {
            // Counted in this room only: a message of another room has no
            // thread here, and its count is not this room's to tell.
            messages::reply_count_in(db, self.0.id, parent)
                .await
                .extend()?
        } else {
            0
        };
        Ok(connection(page, total, |m| m.id, Message::of))
    }

    /// Members typing in this room now, by user id (indicators lapse
    /// after a few seconds without renewal). Members only.
    async fn typing(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        self.require_member(ctx).await?;
        let mut users = Vec::new();
        for (id, _) in ctx.typing().typing_in(self.0.id) {
            if let Some(user) = load(ctx, UserById(id)).await? {
                users.push(User::public(user));
            }
        }
        Ok(users)
    }

    /// How many unseen messages of this room mention the viewer. Members only.
    async fn unread_mention_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let viewer = self.require_member(ctx).await?;
        let key = UnreadMentionsIn {
            viewer,
            room: self.0.id,
        };
        let count = load(ctx, key).await?.unwrap_or(0);
        Ok(count.min(i32::MAX as u64) as i32)
    }

    /// How many messages in this room the viewer has not seen. Members only.
    async fn unread_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let viewer = self.require_member(ctx).await?;
        let count = load(
            ctx,
            UnreadIn {
                viewer,
                room: self.0.id,
            },
        )
        .await?
        .unwrap_or(0);
        Ok(count.min(i32::MAX as u64) as i32)
    }
}

/// One stay of a user in a room.
#[derive(Clone, Debug)]
pub struct Membership(pub membership::Model);

#[Object]
impl Membership {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn joined_at(&self) -> DateTime<Utc> {
        self.0.joined_at
    }
    /// When the user left; null while they are still a member.
    async fn left_at(&self) -> Option<DateTime<Utc>> {
        self.0.left_at
    }
    async fn is_current(&self) -> bool {
        self.0.left_at.is_none()
    }
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load(ctx, UserById(self.0.user_id)).await?.map(User::public))
    }
    async fn room(&self, ctx: &Context<'_>) -> Result<Option<Room>> {
        Ok(load(ctx, RoomById(self.0.room_id)).await?.map(Room::of))
    }
}

/// Which rooms `rooms` lists.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum RoomListScope {
    /// The rooms (group and direct) the viewer is a current member of.
    #[default]
    Joined,
    /// Every group room.
    AllGroups,
}

/// The result of `leaveRoom`.
#[derive(SimpleObject)]
pub struct LeaveRoomPayload {
    pub room_id: ID,
    /// True when the viewer was the last member, so the room was deleted.
    pub room_deleted: bool,
}

#[derive(Default)]
pub struct RoomQuery;

#[Object]
impl RoomQuery {
    /// One room by id: any group room, or a direct room of the viewer.
    async fn room(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Room>> {
        let id = parse_id("id", &id).extend()?;
        let entry = load(ctx, ViewOf(id))
            .await?
            .ok_or_else(|| AppError::NotFound("room").extend())?;
        let visible = match ctx.optional_viewer_id().await.extend()? {
            _ if !entry.view.room.is_direct => true,
            Some(viewer) => entry.view.is_member(viewer),
            None => false,
        };
        if visible {
            Ok(Some(Room(entry.view.room.clone(), Some(entry))))
        } else {
            Err(AppError::Forbidden("This direct room is not yours".to_owned()).extend())
        }
    }

    /// Rooms ordered by id: the viewer's rooms (default) or every group room.
    #[graphql(complexity = "page_cost(first, last, child_complexity)")]
    async fn rooms(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] scope: RoomListScope,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<String, Room, TotalCount>> {
        let request = page_request(ctx, first, after, last, before).extend()?;
        let scope = match scope {
            RoomListScope::Joined => RoomScope::MemberOf(ctx.viewer_id().await.extend()?),
            RoomListScope::AllGroups => RoomScope::Groups,
        };
        let db = ctx.db();
        let page = rooms::page(db, scope, request).await.extend()?;
        let total = if wants_total(ctx) {
            rooms::count(db, scope).await.extend()?
        } else {
            0
        };
        Ok(connection(page, total, |r| r.id, Room::of))
    }

    /// The viewer's direct room with another user; null until one of them
    /// sends the first direct message.
    async fn direct_room(&self, ctx: &Context<'_>, with_user_id: ID) -> Result<Option<Room>> {
        let viewer = ctx.viewer_id().await.extend()?;
        let other = parse_id("withUserId", &with_user_id).extend()?;
        let db = ctx.db();
        if !crate::domain::users::exists(db, other).await.extend()? {
            return Err(AppError::NotFound("user").extend());
        }
        Ok(rooms::direct_room(db, viewer, other)
            .await
            .extend()?
            .map(Room::of))
    }
}

#[derive(Default)]
pub struct RoomMutation;

fn room_id(id: &ID) -> AppResult<i64> {
    parse_id("roomId", id)
}

#[Object]
impl RoomMutation {
    /// Create a group room with the viewer and the named users as members
    /// (unknown usernames are ignored). Names are unique.
    async fn create_room(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default)] member_usernames: Vec<String>,
    ) -> Result<Room> {
        let viewer = ctx.viewer_id().await.extend()?;
        let room = rooms::create(
            ctx.db(),
            ctx.events().as_ref(),
            &name,
            &member_usernames,
            Some(viewer),
        )
        .await
        .extend()?;
        Ok(Room::of(room))
    }

    /// Join a group room. Direct rooms cannot be joined.
    async fn join_room(&self, ctx: &Context<'_>, room_id: ID) -> Result<Room> {
        let viewer = ctx.viewer_id().await.extend()?;
        let id = self::room_id(&room_id).extend()?;
        rooms::join(ctx.db(), ctx.events().as_ref(), id, viewer)
            .await
            .extend()?;
        Ok(Room::of(rooms::get(ctx.db(), id).await.extend()?))
    }

    /// Leave a room. When the last member leaves, the room is deleted.
    async fn leave_room(&self, ctx: &Context<'_>, room_id: ID) -> Result<LeaveRoomPayload> {
        let viewer = ctx.viewer_id().await.extend()?;
        let id = self::room_id(&room_id).extend()?;
        let left = rooms::leave(ctx.db(), ctx.events().as_ref(), id, viewer)
            .await
            .extend()?;
        Ok(LeaveRoomPayload {
            room_id,
            room_deleted: left.room_deleted,
        })
    }
}

//! Messages, read receipts and unread messages in GraphQL.

use async_graphql::{Context, ID, Object, Result, ResultExt, SimpleObject, connection::Connection};
use chrono::{DateTime, Utc};
use entity::{message, message_seen};

use super::{
    ContextExt, TotalCount,
    connection::{connection, page_cost, page_request, wants_total},
    load,
    loaders::{
        MentionsOf, MessageById, ReactionsOf, ReceiptsOf, ReplyCountOf, RoomById, SeenBy, UserById,
    },
    rooms::{Room, require_member, viewer_is_member},
    tasks::Task,
    users::{User, parse_id},
};
use std::sync::Arc;

use crate::domain::{messages, rooms, views::ViewMessage};

/// A chat message (with its sender's name, when the room's view knew it),
/// and how the viewer reached it.
///
/// What a message shows, whichever way it was reached: its own fields
/// always (whoever reached it may see it); what hangs off its room (the
/// message it replies to and its replies, reactions, mentions, receipts)
/// only to a current member of that room. A message reached through its
/// room (a history, a search, a thread, a live stream past its gate, a
/// write the viewer just made) was reached by a member; one reached
/// otherwise (the result of one's own task, which outlives a leave) asks.
#[derive(Clone, Debug)]
pub struct Message(pub Arc<ViewMessage>, pub(crate) Reach);

/// How the viewer reached a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Through its room, as a current member.
    Member,
    /// Another way: its room's data shows only if the viewer is a member now.
    Other,
}

impl Message {
    /// A message reached through its room, by a current member.
    pub fn of(message: message::Model) -> Self {
        Message::viewed(Arc::new(ViewMessage::of(message)))
    }

    /// A message of a room's view, reached by a current member.
    pub fn viewed(view: Arc<ViewMessage>) -> Self {
        Message(view, Reach::Member)
    }

    /// A message reached another way than through its room.
    pub fn reached_otherwise(message: message::Model) -> Self {
        Message(Arc::new(ViewMessage::of(message)), Reach::Other)
    }

    /// May the viewer see what hangs off this message's room?
    async fn room_readable(&self, ctx: &Context<'_>) -> Result<bool> {
        if self.1 == Reach::Member {
            return Ok(true);
        }
        match ctx.optional_viewer_id().await.extend()? {
            Some(viewer) => viewer_is_member(ctx, viewer, self.0.message.room_id).await,
            None => Ok(false),
        }
    }
}

#[Object]
impl Message {
    async fn id(&self) -> ID {
        ID(self.0.message.id.to_string())
    }
    async fn text(&self) -> &str {
        &self.0.message.text
    }
    /// This message's position, for `after` arguments (e.g. resuming
    /// `unreadMessages`).
    async fn cursor(&self) -> String {
        crate::domain::pagination::encode_cursor(self.0.message.id)
    }
    async fn sent_at(&self) -> DateTime<Utc> {
        self.0.message.sent_at
    }
    /// The id of the task that stored this message, if it was sent through one.
    async fn task_id(&self) -> Option<ID> {
        self.0.message.task_id.map(|id| ID(id.to_string()))
    }
    async fn room(&self, ctx: &Context<'_>) -> Result<Option<Room>> {
        Ok(load(ctx, RoomById(self.0.message.room_id))
            .await?
            .map(Room::of))
    }
    /// The sender; null once the sender's account is deleted.
    async fn sender(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let Some(sender) = self.0.message.sender_id else {
            return Ok(None);
        };
        if let Some(name) = &self.0.sender {
            return Ok(Some(User::with_name(sender, name)));
        }
        Ok(load(ctx, UserById(sender)).await?.map(User::public))
    }
    /// Who has seen this message, and when (first time), oldest first.
    async fn seen_by(&self, ctx: &Context<'_>) -> Result<Vec<SeenReceipt>> {
        if !self.room_readable(ctx).await? {
            return Ok(Vec::new());
        }
        Ok(load(ctx, ReceiptsOf(self.0.message.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(SeenReceipt)
            .collect())
    }
    /// When the sender last edited the text; null if never.
    async fn edited_at(&self) -> Option<DateTime<Utc>> {
        self.0.message.edited_at
    }
    /// When the sender deleted the message, which stays as a tombstone:
    /// its text is empty, its reactions and mentions are gone.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.message.deleted_at
    }
    /// The message this one replies to (a tombstone once deleted); null
    /// for a message that replies to none.
    async fn reply_to(&self, ctx: &Context<'_>) -> Result<Option<Message>> {
        let Some(parent) = self.0.message.reply_to_id else {
            return Ok(None);
        };
        if !self.room_readable(ctx).await? {
            return Ok(None);
        }
        Ok(load(ctx, MessageById(parent))
            .await?
            .map(|parent| Message(Arc::new(ViewMessage::of(parent)), self.1)))
    }
    /// How many messages reply to this one (`Room.thread` lists them).
    async fn reply_count(&self, ctx: &Context<'_>) -> Result<i32> {
        if !self.room_readable(ctx).await? {
            return Ok(0);
        }
        let count = load(ctx, ReplyCountOf(self.0.message.id))
            .await?
            .unwrap_or(0);
        Ok(count.min(i32::MAX as u64) as i32)
    }
    /// The reactions: one entry per emoji, the earliest first.
    async fn reactions(&self, ctx: &Context<'_>) -> Result<Vec<Reaction>> {
        if !self.room_readable(ctx).await? {
            return Ok(Vec::new());
        }
        let viewer = ctx.optional_viewer_id().await.extend()?.unwrap_or(0);
        let key = ReactionsOf {
            viewer,
            message: self.0.message.id,
        };
        Ok(load(ctx, key)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|r| Reaction {
                emoji: r.emoji,
                count: r.count.min(i32::MAX as u64) as i32,
                viewer_reacted: r.viewer_reacted,
            })
            .collect())
    }
    /// The room's members this message mentions (`@username`), by id.
    async fn mentions(&self, ctx: &Context<'_>) -> Result<Vec<User>> {
        if !self.room_readable(ctx).await? {
            return Ok(Vec::new());
        }
        let ids = load(ctx, MentionsOf(self.0.message.id))
            .await?
            .unwrap_or_default();
        let mut users = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(user) = load(ctx, UserById(id)).await? {
                users.push(User::public(user));
            }
        }
        Ok(users)
    }
    /// Does this message mention the viewer?
    async fn mentioned(&self, ctx: &Context<'_>) -> Result<bool> {
        let Some(viewer) = ctx.optional_viewer_id().await.extend()? else {
            return Ok(false);
        };
        if !self.room_readable(ctx).await? {
            return Ok(false);
        }
        let ids = load(ctx, MentionsOf(self.0.message.id))
            .await?
            .unwrap_or_default();
        Ok(ids.contains(&viewer))
    }
    /// Has the viewer seen this message? True for the viewer's own messages.
    async fn seen_by_viewer(&self, ctx: &Context<'_>) -> Result<bool> {
        let viewer = ctx.viewer_id().await.extend()?;
        if self.0.message.sender_id == Some(viewer) {
            return Ok(true);
        }
        Ok(load(
            ctx,
            SeenBy {
                viewer,
                message: self.0.message.id,
            },
        )
        .await?
        .unwrap_or(false))
    }
}

/// One emoji on a message.
#[derive(SimpleObject)]
pub struct Reaction {
    pub emoji: String,
    /// How many users put it there.
    pub count: i32,
    /// Did the viewer put it there?
    pub viewer_reacted: bool,
}

/// A user's first sighting of a message.
#[derive(Clone, Debug)]
pub struct SeenReceipt(pub message_seen::Model);

#[Object]
impl SeenReceipt {
    async fn seen_at(&self) -> DateTime<Utc> {
        self.0.seen_at
    }
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load(ctx, UserById(self.0.user_id)).await?.map(User::public))
    }
}

/// The result of `markRoomSeen`.
#[derive(SimpleObject)]
pub struct MarkRoomSeenPayload {
    pub room: Room,
    /// How many messages became seen by this call.
    pub marked_count: i32,
}

#[derive(Default)]
pub struct MessageQuery;

#[Object]
impl MessageQuery {
    /// The viewer's unread messages across their rooms, oldest first.
    #[graphql(complexity = "page_cost(first, last, child_complexity)")]
    async fn unread_messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<String, Message, TotalCount>> {
        let viewer = ctx.viewer_id().await.extend()?;
        let request = page_request(ctx, first, after, last, before).extend()?;
        let db = ctx.db();
        let page = messages::unread_page(db, viewer, request).await.extend()?;
        let total = if wants_total(ctx) {
            messages::unread_count(db, viewer).await.extend()?
        } else {
            0
        };
        Ok(connection(page, total, |m| m.id, Message::of))
    }
}

fn optional_id(field: &str, id: Option<&ID>) -> crate::error::AppResult<Option<i64>> {
    id.map(|id| parse_id(field, id)).transpose()
}

#[derive(Default)]
pub struct MessageMutation;

#[Object]
impl MessageMutation {
    /// Send a direct message to a user. Answers at once with the task that
    /// stores it; the pair's direct room is created with the first message.
    /// `replyToId` names a message of that room to answer (else the task
    /// fails).
    async fn send_direct_message(
        &self,
        ctx: &Context<'_>,
        to_user_id: ID,
        text: String,
        reply_to_id: Option<ID>,
    ) -> Result<Task> {
        let from = ctx.viewer_id().await.extend()?;
        let to = parse_id("toUserId", &to_user_id).extend()?;
        let reply_to = optional_id("replyToId", reply_to_id.as_ref()).extend()?;
        let task = ctx
            .sends()
            .direct(from, to, text, reply_to, ctx.client_ip())
            .await
            .extend()?;
        Ok(Task(task))
    }

    /// Send a message to a room. Answers at once with the task that stores
    /// it; the task fails if the viewer is not a member of the room, or if
    /// `replyToId` is not a message of the room.
    async fn send_group_message(
        &self,
        ctx: &Context<'_>,
        room_id: ID,
        text: String,
        reply_to_id: Option<ID>,
    ) -> Result<Task> {
        let from = ctx.viewer_id().await.extend()?;
        let room_id = parse_id("roomId", &room_id).extend()?;
        let reply_to = optional_id("replyToId", reply_to_id.as_ref()).extend()?;
        let task = ctx
            .sends()
            .group(from, room_id, text, reply_to, ctx.client_ip())
            .await
            .extend()?;
        Ok(Task(task))
    }

    /// Mark the room's messages as seen by the viewer (all of them, or those
    /// up to and including `upToMessageId`).
    async fn mark_room_seen(
        &self,
        ctx: &Context<'_>,
        room_id: ID,
        up_to_message_id: Option<ID>,
    ) -> Result<MarkRoomSeenPayload> {
        let id = parse_id("roomId", &room_id).extend()?;
        let up_to = optional_id("upToMessageId", up_to_message_id.as_ref()).extend()?;
        let db = ctx.db();
        let room = rooms::get(db, id).await.extend()?;
        let viewer = require_member(ctx, id).await?;
        let marked = messages::mark_seen(db, id, viewer, up_to).await.extend()?;
        Ok(MarkRoomSeenPayload {
            room: Room::of(room),
            marked_count: marked.min(i32::MAX as u64) as i32,
        })
    }
}

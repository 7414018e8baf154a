//! Changing messages after they are sent (edit, delete, reactions) and
//! typing indicators, in GraphQL. The rules live in the domain and in
//! [`crate::sends`] / [`crate::typing`]; this only translates.

use async_graphql::{Context, ID, Object, Result, ResultExt, SimpleObject};
use chrono::{DateTime, Utc};

use super::{ContextExt, messages::Message, users::parse_id};

/// The result of `setTyping`.
#[derive(SimpleObject)]
pub struct SetTypingPayload {
    pub room_id: ID,
    pub typing: bool,
    /// When the indicator lapses unless `setTyping` is called again.
    pub expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct ChatMutation;

#[Object]
impl ChatMutation {
    /// Replace the text of one of the viewer's messages (1 to 1024
    /// characters); `editedAt` shows it. Sender only, while a member.
    async fn edit_message(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        text: String,
    ) -> Result<Message> {
        let viewer = ctx.viewer_id().await.extend()?;
        let id = parse_id("messageId", &message_id).extend()?;
        let message = ctx
            .sends()
            .edit(viewer, id, &text, ctx.client_ip())
            .await
            .extend()?;
        Ok(Message::of(message))
    }

    /// Delete one of the viewer's messages: a tombstone stays (`deletedAt`
    /// set, empty text), so replies keep their place. Sender only, while a
    /// member. Deleting a tombstone again changes nothing.
    async fn delete_message(&self, ctx: &Context<'_>, message_id: ID) -> Result<Message> {
        let viewer = ctx.viewer_id().await.extend()?;
        let id = parse_id("messageId", &message_id).extend()?;
        let message = ctx
            .sends()
            .delete(viewer, id, ctx.client_ip())
            .await
            .extend()?;
        Ok(Message::of(message))
    }

    /// Put an emoji (one emoji, e.g. "👍") on a message of a room the viewer
    /// is in; once per emoji per user, so adding it again changes nothing.
    async fn add_reaction(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        emoji: String,
    ) -> Result<Message> {
        react(ctx, &message_id, &emoji, true).await
    }

    /// Take the viewer's emoji off a message (nothing happens if it is not there).
    async fn remove_reaction(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        emoji: String,
    ) -> Result<Message> {
        react(ctx, &message_id, &emoji, false).await
    }

    /// Tell the room's other members that the viewer is typing (or, with
    /// `typing: false`, stopped). The indicator lapses after a few seconds
    /// unless renewed, and ends when the viewer sends. Never stored.
    async fn set_typing(
        &self,
        ctx: &Context<'_>,
        room_id: ID,
        #[graphql(default = true)] typing: bool,
    ) -> Result<SetTypingPayload> {
        let viewer = ctx.viewer_id().await.extend()?;
        let room = parse_id("roomId", &room_id).extend()?;
        let expires_at = ctx
            .typing()
            .set(viewer, room, typing, ctx.client_ip())
            .await
            .extend()?;
        Ok(SetTypingPayload {
            room_id,
            typing,
            expires_at,
        })
    }
}

async fn react(ctx: &Context<'_>, message_id: &ID, emoji: &str, add: bool) -> Result<Message> {
    let viewer = ctx.viewer_id().await.extend()?;
    let id = parse_id("messageId", message_id).extend()?;
    let message = ctx
        .sends()
        .react(viewer, id, emoji, add, ctx.client_ip())
        .await
        .extend()?;
    Ok(Message::of(message))
}

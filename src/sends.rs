//! Writing messages, for every adapter: sends, edits, deletes and
//! reactions. Texts are checked and the rate limits of the writer and of
//! their address (`RATE_LIMIT_SENDS*`, shared by every kind of message
//! write) are taken before anything is written, so a send that can never
//! be stored gets no task, and a flood is refused with `RATE_LIMITED`
//! before it reaches the outbox or the database.

use std::{net::IpAddr, sync::Arc};

use entity::{message, task};
use sea_orm::DatabaseConnection;

use crate::{
    domain::{edits, messages, reactions},
    error::AppResult,
    events::EventBus,
    jobs::{Job, Jobs},
    ratelimit::Throttle,
};

#[derive(Clone)]
pub struct Sends {
    db: DatabaseConnection,
    events: Arc<dyn EventBus>,
    jobs: Jobs,
    throttle: Arc<Throttle>,
}

impl Sends {
    pub fn new(
        db: DatabaseConnection,
        events: Arc<dyn EventBus>,
        jobs: Jobs,
        throttle: Arc<Throttle>,
    ) -> Self {
        Sends {
            db,
            events,
            jobs,
            throttle,
        }
    }

    async fn submit(&self, from: i64, job: Job, client: Option<IpAddr>) -> AppResult<task::Model> {
        self.throttle.send(from, client).await?;
        self.jobs.submit(job).await
    }

    /// A direct message from `from` to `to`; answers with its task.
    pub async fn direct(
        &self,
        from: i64,
        to: i64,
        text: String,
        reply_to: Option<i64>,
        client: Option<IpAddr>,
    ) -> AppResult<task::Model> {
        messages::validate_text(&text)?;
        let job = Job::SendDirectMessage {
            from,
            to,
            text,
            reply_to,
        };
        self.submit(from, job, client).await
    }

    /// A message from `from` to a room; answers with its task (which fails
    /// if `from` is not a member when it runs, or if `reply_to` is not a
    /// message of that room).
    pub async fn group(
        &self,
        from: i64,
        room_id: i64,
        text: String,
        reply_to: Option<i64>,
        client: Option<IpAddr>,
    ) -> AppResult<task::Model> {
        messages::validate_text(&text)?;
        let job = Job::SendGroupMessage {
            from,
            room_id,
            text,
            reply_to,
        };
        self.submit(from, job, client).await
    }

    /// Replace the text of the viewer's own message.
    pub async fn edit(
        &self,
        viewer: i64,
        message_id: i64,
        text: &str,
        client: Option<IpAddr>,
    ) -> AppResult<message::Model> {
        messages::validate_text(text)?;
        self.throttle.send(viewer, client).await?;
        edits::edit(&self.db, self.events.as_ref(), viewer, message_id, text).await
    }

    /// Delete the viewer's own message (a tombstone stays).
    pub async fn delete(
        &self,
        viewer: i64,
        message_id: i64,
        client: Option<IpAddr>,
    ) -> AppResult<message::Model> {
        self.throttle.send(viewer, client).await?;
        edits::delete(&self.db, self.events.as_ref(), viewer, message_id).await
    }

    /// Put an emoji on a message (`add`), or take it off; answers with the
    /// message.
    pub async fn react(
        &self,
        viewer: i64,
        message_id: i64,
        emoji: &str,
        add: bool,
        client: Option<IpAddr>,
    ) -> AppResult<message::Model> {
        let emoji = reactions::validate_emoji(emoji)?;
        self.throttle.send(viewer, client).await?;
        let events = self.events.as_ref();
        if add {
            reactions::add(&self.db, events, viewer, message_id, emoji).await?;
        } else {
            reactions::remove(&self.db, events, viewer, message_id, emoji).await?;
        }
        messages::get(&self.db, message_id).await
    }
}

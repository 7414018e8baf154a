//! Loaders of the chat features: reactions, mentions, reply counts,
//! presence and unread mentions, each one batched query per round.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use chrono::{DateTime, Utc};

use super::{DbLoader, LoadError, group_by_viewer};
use crate::domain::{mentions, messages, presence, reactions, rooms};

/// Reactions of (message) as (viewer) sees them (0: anonymous).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReactionsOf {
    pub viewer: i64,
    pub message: i64,
}
/// Users a message mentions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MentionsOf(pub i64);
/// Number of replies to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyCountOf(pub i64);
/// Is the user online (a live connection on any instance)?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OnlineOf(pub i64);
/// When the user's last live connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LastSeenOf(pub i64);
/// Does (user) share a current room with (viewer)?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharesRoom {
    pub viewer: i64,
    pub user: i64,
}
/// Unread mentions of (viewer) in (room).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnreadMentionsIn {
    pub viewer: i64,
    pub room: i64,
}

impl Loader<ReactionsOf> for DbLoader {
    type Value = Vec<reactions::Summary>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ReactionsOf],
    ) -> Result<HashMap<ReactionsOf, Vec<reactions::Summary>>, LoadError> {
        let mut answers = HashMap::new();
        for (viewer, ids) in group_by_viewer(keys, |k| (k.viewer, k.message)) {
            let mut found =
                reactions::summaries(&self.db, Some(viewer).filter(|v| *v > 0), &ids).await?;
            for message in ids {
                let value = found.remove(&message).unwrap_or_default();
                answers.insert(ReactionsOf { viewer, message }, value);
            }
        }
        Ok(answers)
    }
}

impl Loader<MentionsOf> for DbLoader {
    type Value = Vec<i64>;
    type Error = LoadError;

    async fn load(&self, keys: &[MentionsOf]) -> Result<HashMap<MentionsOf, Vec<i64>>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut found = mentions::of_messages(&self.db, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| (MentionsOf(id), found.remove(&id).unwrap_or_default()))
            .collect())
    }
}

impl Loader<ReplyCountOf> for DbLoader {
    type Value = u64;
    type Error = LoadError;

    async fn load(&self, keys: &[ReplyCountOf]) -> Result<HashMap<ReplyCountOf, u64>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let counts = messages::reply_counts(&self.db, &ids).await?;
        Ok(ids
            .into_iter()
            .map(|id| (ReplyCountOf(id), counts.get(&id).copied().unwrap_or(0)))
            .collect())
    }
}

impl Loader<OnlineOf> for DbLoader {
    type Value = bool;
    type Error = LoadError;

    async fn load(&self, keys: &[OnlineOf]) -> Result<HashMap<OnlineOf, bool>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let online = self.presence.online(&ids).await;
        Ok(ids
            .into_iter()
            .map(|id| (OnlineOf(id), online.contains(&id)))
            .collect())
    }
}

impl Loader<LastSeenOf> for DbLoader {
    type Value = DateTime<Utc>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[LastSeenOf],
    ) -> Result<HashMap<LastSeenOf, DateTime<Utc>>, LoadError> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        Ok(presence::last_seen(&self.db, &ids)
            .await?
            .into_iter()
            .map(|(id, at)| (LastSeenOf(id), at))
            .collect())
    }
}

impl Loader<UnreadMentionsIn> for DbLoader {
    type Value = u64;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[UnreadMentionsIn],
    ) -> Result<HashMap<UnreadMentionsIn, u64>, LoadError> {
        let mut answers = HashMap::new();
        for (viewer, ids) in group_by_viewer(keys, |k| (k.viewer, k.room)) {
            let counts = mentions::unread_counts(&self.db, viewer, &ids).await?;
            for room in ids {
                let count = counts.get(&room).copied().unwrap_or(0);
                answers.insert(UnreadMentionsIn { viewer, room }, count);
            }
        }
        Ok(answers)
    }
}

impl Loader<SharesRoom> for DbLoader {
    type Value = bool;
    type Error = LoadError;

    async fn load(&self, keys: &[SharesRoom]) -> Result<HashMap<SharesRoom, bool>, LoadError> {
        let mut answers = HashMap::new();
        for (viewer, users) in group_by_viewer(keys, |k| (k.viewer, k.user)) {
            let shared = rooms::sharing(&self.db, viewer, &users).await?;
            for user in users {
                answers.insert(SharesRoom { viewer, user }, shared.contains(&user));
            }
        }
        Ok(answers)
    }
}

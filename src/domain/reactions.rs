//! Reactions: a member puts an emoji on a message of their room, at most
//! once per emoji, and takes it off again. An emoji is one emoji of
//! Unicode's recommended set (with its skin tone, keycap or flag), stored in
//! its fully qualified form; anything else is refused.
//!
//! Adding or removing is a numbered room event (see [`super::log`]);
//! adding what is already there, or removing what is not, changes nothing
//! and logs nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::reaction;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QuerySelect,
    sea_query::{Expr, OnConflict},
};

use super::{
    log::{self, Kind, Subject},
    messages, now, rooms,
};
use crate::{
    error::{AppError, AppResult},
    events::{Event, EventBus},
};

/// Most different emoji one user may put on one message.
pub const MAX_PER_USER: u64 = 20;
/// Most different emoji one message may carry.
pub const MAX_PER_MESSAGE: u64 = 50;

/// Check an emoji: exactly one emoji of Unicode's recommended (RGI) set,
/// skin tones, keycaps, flags and ZWJ sequences included. Returns its
/// fully qualified form, the one stored: "❤" and "❤️" are one reaction.
/// Two emoji, a lone joiner or regional indicator, text presentation
/// selectors, repeated keycaps and arrows in a row are all refused.
pub fn validate_emoji(emoji: &str) -> AppResult<&'static str> {
    emojis::get(emoji).map(|e| e.as_str()).ok_or_else(|| {
        AppError::field(
            "emoji",
            "emoji must be exactly one emoji (one of Unicode's recommended emoji, e.g. 👍)",
        )
    })
}

/// Put `emoji` on a message as `viewer`, a member of its room. Returns
/// whether it was added (false: it was there already).
#[tracing::instrument(skip(db, events))]
pub async fn add(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    viewer: i64,
    message_id: i64,
    emoji: &str,
) -> AppResult<bool> {
    let emoji = validate_emoji(emoji)?;
    change(db, events, viewer, message_id, emoji, true).await
}

/// Take `emoji` off a message. Returns whether it was removed.
#[tracing::instrument(skip(db, events))]
pub async fn remove(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    viewer: i64,
    message_id: i64,
    emoji: &str,
) -> AppResult<bool> {
    let emoji = validate_emoji(emoji)?;
    change(db, events, viewer, message_id, emoji, false).await
}

/// May `viewer` react to this message? A member of its room, on a message
/// not deleted. Returns the room.
async fn check(
    db: &impl ConnectionTrait,
    viewer: i64,
    message: &entity::message::Model,
) -> AppResult<i64> {
    if !rooms::is_member(db, message.room_id, viewer).await? {
        return Err(AppError::NotFound("message"));
    }
    if message.deleted_at.is_some() {
        return Err(AppError::BadInput(
            "A deleted message has no reactions".to_owned(),
        ));
    }
    Ok(message.room_id)
}

async fn change(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    viewer: i64,
    message_id: i64,
    emoji: &str,
    adding: bool,
) -> AppResult<bool> {
    // Checked before any lock, so a request that may not react never
    // holds up the room's writers; checked again under the lock.
    let room_id = check(db, viewer, &messages::get(db, message_id).await?).await?;
    let txn = super::begin_write(db).await?;
    // The number first: it locks the room, so a delete cannot pass between
    // the checks and the change.
    let seq = log::take(&txn, room_id, 1).await?;
    check(&txn, viewer, &messages::get(&txn, message_id).await?).await?;
    let mine = reaction::Entity::find()
        .filter(reaction::Column::MessageId.eq(message_id))
        .filter(reaction::Column::UserId.eq(viewer));
    let changed = if adding {
        if mine.clone().count(&txn).await? >= MAX_PER_USER {
            return Err(AppError::BadInput(format!(
                "A user can put at most {MAX_PER_USER} different reactions on a message"
            )));
        }
        let on_message = reaction::Entity::find()
            .select_only()
            .column(reaction::Column::Emoji)
            .distinct()
            .filter(reaction::Column::MessageId.eq(message_id));
        let emoji_there: Vec<String> = on_message.into_tuple().all(&txn).await?;
        if !emoji_there.iter().any(|e| e == emoji) && emoji_there.len() as u64 >= MAX_PER_MESSAGE {
            return Err(AppError::BadInput(format!(
                "A message can carry at most {MAX_PER_MESSAGE} different reactions"
            )));
        }
        let row = reaction::ActiveModel::from(reaction::Model {
            message_id,
            user_id: viewer,
            emoji: emoji.to_owned(),
            created_at: now(),
        });
        reaction::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    reaction::Column::MessageId,
                    reaction::Column::UserId,
                    reaction::Column::Emoji,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?
            > 0
    } else {
        reaction::Entity::delete_many()
            .filter(reaction::Column::MessageId.eq(message_id))
            .filter(reaction::Column::UserId.eq(viewer))
            .filter(reaction::Column::Emoji.eq(emoji))
            .exec(&txn)
            .await?
            .rows_affected
            > 0
    };
    if !changed {
        txn.rollback().await?;
        return Ok(false);
    }
    let kind = if adding {
        Kind::ReactionAdded
    } else {
        Kind::ReactionRemoved
    };
    log::record_numbered(
        &txn,
        room_id,
        seq,
        kind,
        Subject {
            message_id: Some(message_id),
            user_id: Some(viewer),
            emoji: Some(emoji.to_owned()),
        },
        now(),
    )
    .await?;
    txn.commit().await?;
    events.publish(Event::ReactionChanged {
        room_id,
        message_id,
        user_id: viewer,
        emoji: emoji.to_owned(),
        added: adding,
        seq,
    });
    Ok(true)
}

/// One emoji on a message: how many put it there, whether the viewer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub emoji: String,
    pub count: u64,
    pub viewer_reacted: bool,
    first_at: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct SummaryRow {
    message_id: i64,
    emoji: String,
    count: i64,
    mine: i64,
    first_at: DateTime<Utc>,
}

/// The reactions of each message, oldest emoji first, as `viewer` (if
/// any) sees them; one statement.
pub async fn summaries(
    db: &impl ConnectionTrait,
    viewer: Option<i64>,
    message_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<Summary>>> {
    let viewer = viewer.unwrap_or(0);
    let rows = reaction::Entity::find()
        .select_only()
        .column(reaction::Column::MessageId)
        .column(reaction::Column::Emoji)
        .column_as(reaction::Column::UserId.count(), "count")
        .column_as(
            // An integer, so writing it into the text is safe.
            Expr::cust(format!(
                "SUM(CASE WHEN user_id = {viewer} THEN 1 ELSE 0 END)"
            )),
            "mine",
        )
        .column_as(reaction::Column::CreatedAt.min(), "first_at")
        .filter(reaction::Column::MessageId.is_in(message_ids.iter().copied()))
        .group_by(reaction::Column::MessageId)
        .group_by(reaction::Column::Emoji)
        .into_model::<SummaryRow>()
        .all(db)
        .await?;
    let mut by_message: HashMap<i64, Vec<Summary>> = HashMap::new();
    for row in rows {
        by_message.entry(row.message_id).or_default().push(Summary {
            emoji: row.emoji,
            count: row.count as u64,
            viewer_reacted: row.mine > 0,
            first_at: row.first_at,
        });
    }
    for summaries in by_message.values_mut() {
        summaries.sort_by(|a, b| a.first_at.cmp(&b.first_at).then(a.emoji.cmp(&b.emoji)));
    }
    Ok(by_message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_checked() {
        for good in [
            "👍",
            "❤️",
            "🇫🇷",
            "👩‍👩‍👧‍👦",
            "👍🏽",
            "1️⃣",
            "#️⃣",
            "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
            "☕",
            "⭐",
            "🧑🏽‍💻",
        ] {
            assert_eq!(validate_emoji(good).unwrap(), good);
        }
        // Unqualified forms are the same emoji, stored qualified.
        assert_eq!(validate_emoji("❤").unwrap(), "❤️");
        assert_eq!(validate_emoji("↔").unwrap(), "↔️");
        for bad in [
            "",
            "a",
            "ok",
            "👍 ",
            "<b>",
            "\u{200D}",
            "\u{FE0F}",
            "1",
            "👍\0",
            "👍👎",
            &"👍".repeat(16),
            "↔↔↔",
            "\u{200d}👍",
            "🇦",
            "🇦🇧🇨",
            "👍\u{FE0E}\u{FE0E}\u{FE0E}\u{FE0E}",
            "1\u{FE0F}\u{20E3}\u{20E3}\u{20E3}",
            // Invisible tag letters riding on an emoji, or alone.
            "👍\u{E0068}\u{E0069}",
            "\u{E0068}\u{E0069}\u{E007F}",
        ] {
            assert!(validate_emoji(bad).is_err(), "{bad:?}");
        }
    }
}

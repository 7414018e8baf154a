//! Reactions: a member puts an emoji on a message of their room, at most
//! once per emoji, and takes it off again. An emoji is one short sequence
//! of emoji characters (with the joiners, variation selectors, skin tones
//! and keycaps that compose them); anything else is refused.
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

/// Longest emoji, in characters (a family with skin tones is about 10).
pub const EMOJI_MAX_CHARS: usize = 16;
/// Most different emoji one user may put on one message.
pub const MAX_PER_USER: u64 = 20;
/// Most different emoji one message may carry.
pub const MAX_PER_MESSAGE: u64 = 50;

/// Characters an emoji is made of.
fn is_emoji_part(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF   // pictographs, emoticons, transport, flags' letters, skin tones
        | 0x2190..=0x21FF   // arrows
        | 0x2300..=0x23FF   // technical (watch, hourglass, ...)
        | 0x2460..=0x24FF   // enclosed alphanumerics (Ⓜ)
        | 0x25A0..=0x27BF   // shapes, miscellaneous symbols, dingbats
        | 0x2900..=0x297F   // supplemental arrows
        | 0x2B00..=0x2BFF   // stars, squares
        | 0x3030 | 0x303D | 0x3297 | 0x3299
        | 0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139
        | 0x200D            // zero width joiner
        | 0xFE0E | 0xFE0F   // variation selectors
        | 0x20E3            // combining keycap
        | 0xE0020..=0xE007F // tags (subdivision flags)
    )
}

/// Check an emoji: 1 to [`EMOJI_MAX_CHARS`] characters, all emoji parts,
/// with at least one pictograph (a keycap's digit is allowed before its
/// `U+20E3`).
pub fn validate_emoji(emoji: &str) -> AppResult<()> {
    let chars: Vec<char> = emoji.chars().collect();
    let keycap = chars.len() >= 2
        && matches!(chars[0], '0'..='9' | '#' | '*')
        && chars[1..]
            .iter()
            .all(|&c| c == '\u{FE0F}' || c == '\u{20E3}')
        && chars.contains(&'\u{20E3}');
    let is_tag = |c: &char| matches!(*c as u32, 0xE0020..=0xE007F);
    let pictograph = chars.iter().any(|&c| {
        is_emoji_part(c) && !is_tag(&c) && !matches!(c as u32, 0x200D | 0xFE0E | 0xFE0F | 0x20E3)
    });
    // Tags spell a subdivision flag after a black flag, ended by CANCEL
    // TAG (🏴 g b s c t ␡); anywhere else they are invisible text.
    let tags_fit = !chars.iter().any(is_tag)
        || (chars.first() == Some(&'\u{1F3F4}') && chars.last() == Some(&'\u{E007F}'));
    let valid = !chars.is_empty()
        && chars.len() <= EMOJI_MAX_CHARS
        && tags_fit
        && (keycap || (pictograph && chars.iter().all(|&c| is_emoji_part(c))));
    if valid {
        Ok(())
    } else {
        Err(AppError::field(
            "emoji",
            format!("emoji must be a single emoji (at most {EMOJI_MAX_CHARS} characters)"),
        ))
    }
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
    validate_emoji(emoji)?;
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
    validate_emoji(emoji)?;
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
        for good in ["👍", "❤️", "🇫🇷", "👩‍👩‍👧‍👦", "👍🏽", "1️⃣", "#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "☕", "⭐"]
        {
            assert!(validate_emoji(good).is_ok(), "{good}");
        }
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
            &"👍".repeat(17),
            // Invisible tag letters riding on an emoji, or alone.
            "👍\u{E0068}\u{E0069}",
            "\u{E0068}\u{E0069}\u{E007F}",
        ] {
            assert!(validate_emoji(bad).is_err(), "{bad:?}");
        }
    }
}

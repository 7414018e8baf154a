//! Mentions: `@username` in a message's text names a member of its room.
//!
//! A mention is recorded when the message is stored (and again when it is
//! edited) for every named user who is a current member of the room at
//! that moment; a name that matches nobody is plain text. The viewer's
//! unread mentions per room are those mentions of messages they have not
//! seen (deleted messages never count).

use std::collections::{HashMap, HashSet};

use entity::{membership, mention, message, message_seen, user};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QuerySelect, RelationTrait,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};

use crate::error::AppResult;

/// Most distinct names one message can mention.
pub const MAX_PER_MESSAGE: usize = 20;

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_')
}

/// The names a text may mention, in order of appearance, without repeats:
/// each `@` that starts a word, followed by username characters. A name
/// ending in `.`, `-` or `+` is also tried without them ("hi @ann." names
/// `ann` unless a user is called `ann.`).
pub fn candidates(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut seen = HashSet::new();
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts_word = previous.is_none_or(|p| !is_name_char(p));
        previous = Some(c);
        if c != '@' || !starts_word {
            continue;
        }
        let start = at + 1;
        let mut end = start;
        while let Some(&(next_at, next)) = chars.peek() {
            if !is_name_char(next) {
                break;
            }
            end = next_at + next.len_utf8();
            previous = Some(next);
            chars.next();
        }
        let name = &text[start..end];
        let trimmed = name.trim_end_matches(['.', '-', '+']);
        for candidate in [name, trimmed] {
            if !candidate.is_empty()
                && candidate.chars().count() <= 150
                && names.len() < MAX_PER_MESSAGE * 2
                && seen.insert(candidate)
            {
                names.push(candidate.to_owned());
            }
        }
    }
    names
}

/// Who each text mentions: `(room, text)` pairs in, for each the ids of the
/// room's current members it names (at most [`MAX_PER_MESSAGE`]). One
/// statement for all of them, none when no text has an `@`.
pub async fn resolve(db: &impl ConnectionTrait, texts: &[(i64, &str)]) -> AppResult<Vec<Vec<i64>>> {
    let wanted: Vec<Vec<String>> = texts.iter().map(|(_, text)| candidates(text)).collect();
    let names: HashSet<&str> = wanted.iter().flatten().map(String::as_str).collect();
    if names.is_empty() {
        return Ok(vec![Vec::new(); texts.len()]);
    }
    let rooms: HashSet<i64> = texts.iter().map(|(room, _)| *room).collect();
    let rows: Vec<(i64, i64, String)> = membership::Entity::find()
        .select_only()
        .column(membership::Column::RoomId)
        .column(membership::Column::UserId)
        .column(user::Column::Username)
        .join(JoinType::InnerJoin, membership::Relation::User.def())
        .filter(membership::Column::LeftAt.is_null())
        .filter(membership::Column::RoomId.is_in(rooms))
        .filter(user::Column::Username.is_in(names))
        .into_tuple()
        .all(db)
        .await?;
    let members: HashMap<(i64, &str), i64> = rows
        .iter()
        .map(|(room, user, name)| ((*room, name.as_str()), *user))
        .collect();
    Ok(texts
        .iter()
        .zip(&wanted)
        .map(|((room, _), names)| {
            let mut ids: Vec<i64> = Vec::new();
            for name in names {
                if let Some(&id) = members.get(&(*room, name.as_str()))
                    && !ids.contains(&id)
                    && ids.len() < MAX_PER_MESSAGE
                {
                    ids.push(id);
                }
            }
            ids
        })
        .collect())
}

/// Record mentions `(message, room, users)`, in one statement; existing
/// ones are kept.
pub async fn record(db: &impl ConnectionTrait, mentions: &[(i64, i64, Vec<i64>)]) -> AppResult<()> {
    let rows: Vec<mention::ActiveModel> = mentions
        .iter()
        .flat_map(|(message_id, room_id, users)| {
            users.iter().map(move |&user_id| {
                mention::ActiveModel::from(mention::Model {
                    message_id: *message_id,
                    user_id,
                    room_id: *room_id,
                })
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    mention::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([mention::Column::MessageId, mention::Column::UserId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Forget a message's mentions (it was edited or deleted).
pub async fn clear(db: &impl ConnectionTrait, message_id: i64) -> AppResult<()> {
    mention::Entity::delete_many()
        .filter(mention::Column::MessageId.eq(message_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The users each message mentions, in one statement.
pub async fn of_messages(
    db: &impl ConnectionTrait,
    message_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<i64>>> {
    let rows: Vec<(i64, i64)> = mention::Entity::find()
        .select_only()
        .column(mention::Column::MessageId)
        .column(mention::Column::UserId)
        .filter(mention::Column::MessageId.is_in(message_ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    let mut by_message: HashMap<i64, Vec<i64>> = HashMap::new();
    for (message, user) in rows {
        by_message.entry(message).or_default().push(user);
    }
    for users in by_message.values_mut() {
        users.sort_unstable();
    }
    Ok(by_message)
}

/// The user's unread mentions in each of the rooms: mentions of messages
/// not deleted and without the user's receipt.
pub async fn unread_counts(
    db: &impl ConnectionTrait,
    user_id: i64,
    room_ids: &[i64],
) -> AppResult<HashMap<i64, u64>> {
    let receipt = Query::select()
        .expr(Expr::val(1))
        .from(message_seen::Entity)
        .and_where(
            Expr::col((message_seen::Entity, message_seen::Column::MessageId))
                .equals((mention::Entity, mention::Column::MessageId)),
        )
        .and_where(Expr::col((message_seen::Entity, message_seen::Column::UserId)).eq(user_id))
        .to_owned();
    let rows: Vec<(i64, i64)> = mention::Entity::find()
        .select_only()
        .column(mention::Column::RoomId)
        .column_as(mention::Column::MessageId.count(), "n")
        .join(JoinType::InnerJoin, mention::Relation::Message.def())
        .filter(mention::Column::UserId.eq(user_id))
        .filter(mention::Column::RoomId.is_in(room_ids.iter().copied()))
        .filter(message::Column::DeletedAt.is_null())
        .filter(Expr::exists(receipt).not())
        .group_by(mention::Column::RoomId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(r, n)| (r, n as u64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_start_words_and_lose_trailing_punctuation() {
        assert_eq!(
            candidates("hi @ann and @bob.smith, mail a@b.c @ann @carl. @"),
            vec!["ann", "bob.smith", "carl.", "carl"]
        );
        assert_eq!(candidates("@user_2!"), vec!["user_2"]);
        assert!(candidates("no mentions here").is_empty());
        let many: String = (0..100).map(|n| format!("@u{n} ")).collect();
        assert_eq!(candidates(&many).len(), MAX_PER_MESSAGE * 2);
    }
}

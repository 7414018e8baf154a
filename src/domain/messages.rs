//! Messages and read receipts: storing (idempotently), room history, unread
//! messages and counts, marking seen.
//!
//! "Unread" for a user means: in a room the user is a current member of, not
//! sent by the user, and without the user's receipt. A message is seen by a
//! user at most once; the first receipt wins.

use std::collections::{HashMap, HashSet};

use entity::{membership, message, message_seen};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Statement,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use uuid::Uuid;

use super::{
    log, mentions, now,
    pagination::{self, Page, PageRequest},
    rooms,
};
use crate::error::{AppError, AppResult, is_foreign_key_violation};

pub const TEXT_MAX: usize = 1024;

/// Every column of `messages`, for statements written as text.
pub const COLUMNS: &str =
    "id, room_id, sender_id, text, sent_at, task_id, seq, edited_at, deleted_at, reply_to_id";

/// Check a message text: 1 to 1024 characters.
pub fn validate_text(text: &str) -> AppResult<()> {
    if text.is_empty() || (text.len() > TEXT_MAX && text.chars().count() > TEXT_MAX) {
        return Err(AppError::field(
            "text",
            format!("text must be 1 to {TEXT_MAX} characters"),
        ));
    }
    Ok(())
}

/// Store a message (not through a task), and announce it (its room's
/// version first). Returns the message.
pub async fn store(
    db: &DatabaseConnection,
    events: &dyn crate::events::EventBus,
    room_id: i64,
    sender_id: Option<i64>,
    text: &str,
    reply_to: Option<i64>,
) -> AppResult<message::Model> {
    validate_text(text)?;
    check_reply(db, room_id, reply_to).await?;
    let txn = super::begin_write(db).await?;
    let seq = log::take(&txn, room_id, 1).await?;
    let row = message::ActiveModel {
        room_id: Set(room_id),
        sender_id: Set(sender_id),
        text: Set(text.to_owned()),
        sent_at: Set(now()),
        seq: Set(seq),
        reply_to_id: Set(reply_to),
        ..Default::default()
    };
    let id = message::Entity::insert(row)
        .exec(&txn)
        .await?
        .last_insert_id;
    let mentioned = mentions::resolve(&txn, &[(room_id, text)]).await?;
    mentions::record(&txn, &[(id, room_id, mentioned.concat())]).await?;
    let message = get(&txn, id).await?;
    txn.commit().await?;
    let room_version = events
        .versions()
        .bump(&[(crate::versions::Key::Room(room_id), 1)])
        .await[0];
    events.publish(crate::events::Event::MessageStored {
        message: crate::events::StoredMessage::from(&message),
        room_version,
    });
    Ok(message)
}

/// A reply must answer a message of the same room.
async fn check_reply(
    db: &impl ConnectionTrait,
    room_id: i64,
    reply_to: Option<i64>,
) -> AppResult<()> {
    let Some(parent) = reply_to else {
        return Ok(());
    };
    let parents = load_many(db, &[parent]).await?;
    match parents.get(&parent) {
        Some(p) if p.room_id == room_id => Ok(()),
        _ => Err(reply_elsewhere()),
    }
}

fn not_a_member() -> AppError {
    AppError::Forbidden("User doesn't belong to chatroom".to_owned())
}

fn reply_elsewhere() -> AppError {
    AppError::field("replyToId", "The message replied to is not in this room")
}

/// The message a task stored, if it stored one.
pub async fn stored_by_task(
    db: &impl ConnectionTrait,
    task_id: Uuid,
) -> AppResult<Option<message::Model>> {
    Ok(message::Entity::find()
        .filter(message::Column::TaskId.eq(task_id))
        .one(db)
        .await?)
}

/// Who a send goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// A room the sender must be a current member of.
    Room(i64),
    /// A user: the message goes to the pair's direct room, created on the
    /// first message.
    User(i64),
}

/// One message to store on behalf of a send task.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub task_id: Uuid,
    pub from: i64,
    pub to: Recipient,
    pub text: String,
    /// The message this one replies to; it must be in the same room.
    pub reply_to: Option<i64>,
}

/// Store many messages at once, in a fixed number of statements (plus one
/// per direct room created). Each delivery gets its own outcome, in order:
/// a domain error (unknown room or user, not a member, bad text) or the
/// stored message. A delivery whose task already stored a message (a
/// retried or duplicate job) gets that message back, whatever changed since.
/// The outer error is an infrastructure failure of the whole batch.
pub async fn deliver_many(
    db: &DatabaseConnection,
    events: &dyn crate::events::EventBus,
    deliveries: &[Delivery],
) -> AppResult<Vec<AppResult<message::Model>>> {
    let task_ids: Vec<Uuid> = deliveries.iter().map(|d| d.task_id).collect();
    let mut stored: HashMap<Uuid, message::Model> = stored_by_tasks(db, &task_ids).await?;

    // Where each new message goes, or why it cannot.
    let mut targets: Vec<Option<AppResult<i64>>> = deliveries
        .iter()
        .map(|d| {
            if stored.contains_key(&d.task_id) {
                None
            } else {
                Some(validate_text(&d.text).map(|_| 0))
            }
        })
        .collect();

    // Direct rooms: look all pairs up at once, create the missing ones.
    let keys: Vec<String> = deliveries
        .iter()
        .zip(&targets)
        .filter_map(|(d, t)| match (d.to, t) {
            (Recipient::User(to), Some(Ok(_))) => Some(rooms::direct_key(d.from, to)),
            _ => None,
        })
        .collect();
    let mut direct: HashMap<String, i64> = rooms::direct_rooms_by_key(db, &keys).await?;
    // Group rooms: which exist, and who is in them.
    let room_ids: Vec<i64> = deliveries
        .iter()
        .filter_map(|d| match d.to {
            Recipient::Room(room) => Some(room),
            Recipient::User(_) => None,
        })
        .collect();
    let senders: Vec<i64> = deliveries.iter().map(|d| d.from).collect();
    let existing_rooms = rooms::existing(db, &room_ids).await?;
    let memberships = rooms::current_pairs(db, &room_ids, &senders).await?;

    for (delivery, target) in deliveries.iter().zip(targets.iter_mut()) {
        let Some(Ok(_)) = target else { continue };
        *target = Some(match delivery.to {
            Recipient::Room(room) if !existing_rooms.contains(&room) => {
                Err(AppError::NotFound("room"))
            }
            Recipient::Room(room) if !memberships.contains_key(&(room, delivery.from)) => {
                Err(not_a_member())
            }
            Recipient::Room(room) => Ok(room),
            Recipient::User(to) => {
                let key = rooms::direct_key(delivery.from, to);
                match direct.get(&key) {
                    Some(&room) => Ok(room),
                    None => match rooms::find_or_create_direct(db, events, delivery.from, to).await
                    {
                        Ok(room) => {
                            direct.insert(key, room.id);
                            Ok(room.id)
                        }
                        Err(AppError::Internal(e)) => return Err(AppError::Internal(e)),
                        Err(domain) => Err(domain),
                    },
                }
            }
        });
    }

    // Replies must answer a message of their own room.
    let parent_ids: Vec<i64> = deliveries.iter().filter_map(|d| d.reply_to).collect();
    if !parent_ids.is_empty() {
        let parents = load_many(db, &parent_ids).await?;
        for (delivery, target) in deliveries.iter().zip(targets.iter_mut()) {
            if let (Some(parent), Some(Ok(room))) = (delivery.reply_to, &target)
                && parents.get(&parent).is_none_or(|p| p.room_id != *room)
            {
                *target = Some(Err(reply_elsewhere()));
            }
        }
    }

    let slots: Vec<usize> = (0..deliveries.len())
        .filter(|&slot| matches!(targets[slot], Some(Ok(_))))
        .collect();
    if !slots.is_empty() {
        let texts: Vec<(i64, &str)> = slots
            .iter()
            .map(|&slot| (room_of(&targets[slot]), deliveries[slot].text.as_str()))
            .collect();
        let mentioned = mentions::resolve(db, &texts).await?;
        let new: Vec<New> = slots
            .iter()
            .zip(mentioned)
            .map(|(&slot, mentions)| New {
                slot,
                room: room_of(&targets[slot]),
                mentions,
            })
            .collect();
        let sent_at = now();
        let row = |n: &New, seq: i64| {
            let d = &deliveries[n.slot];
            message::ActiveModel {
                room_id: Set(n.room),
                sender_id: Set(Some(d.from)),
                text: Set(d.text.clone()),
                sent_at: Set(sent_at),
                task_id: Set(Some(d.task_id)),
                seq: Set(seq),
                reply_to_id: Set(d.reply_to),
                ..Default::default()
            }
        };
        let mut chose = false;
        match insert_numbered(db, &new, &row, deliveries).await {
            Ok(inserted) => {
                chose = inserted.chose;
                for slot in inserted.gone {
                    targets[slot] = Some(Err(AppError::NotFound("room")));
                }
                for slot in inserted.left {
                    targets[slot] = Some(Err(not_a_member()));
                }
                stored.extend(inserted.found);
            }
            Err(_) => {
                // One row broke the statement (a sender or room that
                // vanished since the checks, a value the database refuses):
                // store the others one by one, and fail only those that fail.
                for one in &new {
                    match insert_numbered(db, std::slice::from_ref(one), &row, deliveries).await {
                        Ok(inserted) => {
                            chose |= inserted.chose;
                            if !inserted.gone.is_empty() {
                                targets[one.slot] = Some(Err(AppError::NotFound("room")));
                            }
                            if !inserted.left.is_empty() {
                                targets[one.slot] = Some(Err(not_a_member()));
                            }
                            stored.extend(inserted.found);
                        }
                        Err(AppError::Internal(e))
                            if e.downcast_ref::<sea_orm::DbErr>()
                                .is_some_and(is_foreign_key_violation) =>
                        {
                            targets[one.slot] = Some(Err(AppError::NotFound("sender or room")));
                        }
                        Err(other) => targets[one.slot] = Some(Err(other)),
                    }
                }
            }
        }
        if chose {
            // Whose presence shows where changed: before the sends answer.
            events
                .versions()
                .bump(&[(crate::versions::Key::Memberships, 1)])
                .await;
        }
    }

    Ok(deliveries
        .iter()
        .zip(targets)
        .map(|(d, target)| match target {
            Some(Err(error)) => Err(error),
            _ => stored.get(&d.task_id).cloned().ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("message of task {} vanished", d.task_id))
            }),
        })
        .collect())
}

/// A message about to be stored: its delivery, room and mentions.
struct New {
    slot: usize,
    room: i64,
    mentions: Vec<i64>,
}

fn room_of(target: &Option<AppResult<i64>>) -> i64 {
    match target {
        Some(Ok(room)) => *room,
        _ => 0,
    }
}

/// What one numbered insert came to.
struct Inserted {
    /// The stored messages, by task.
    found: HashMap<Uuid, message::Model>,
    /// Deliveries whose room is gone.
    gone: Vec<usize>,
    /// Group deliveries whose sender left the room before it was locked.
    left: Vec<usize>,
    /// Some sender chose their room by writing in it: the memberships
    /// changed.
    chose: bool,
}

/// Store new messages in one transaction: each room's numbers taken (rooms
/// in id order, so concurrent batches never wait on each other in a
/// circle), the group senders' membership checked again under those locks
/// (a leave that committed since the first check wins), one insert, their
/// mentions. A delivery whose task stored its message meanwhile (a
/// duplicate running at once) keeps that message.
async fn insert_numbered(
    db: &DatabaseConnection,
    new: &[New],
    row: &impl Fn(&New, i64) -> message::ActiveModel,
    deliveries: &[Delivery],
) -> AppResult<Inserted> {
    let mut per_room: std::collections::BTreeMap<i64, i64> = Default::default();
    for n in new {
        *per_room.entry(n.room).or_default() += 1;
    }
    let txn = super::begin_write(db).await?;
    let mut next: HashMap<i64, i64> = HashMap::new();
    for (&room, &count) in &per_room {
        match log::take(&txn, room, count).await {
            Ok(first) => {
                next.insert(room, first);
            }
            Err(AppError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let group = |n: &&New| matches!(deliveries[n.slot].to, Recipient::Room(_));
    let all_rooms: Vec<i64> = per_room.keys().copied().collect();
    let senders: Vec<i64> = new.iter().map(|n| deliveries[n.slot].from).collect();
    let members = rooms::current_pairs(&txn, &all_rooms, &senders).await?;
    let mut stored = Inserted {
        found: HashMap::new(),
        gone: Vec::new(),
        left: Vec::new(),
        chose: false,
    };
    // Senders who had not chosen their room (put in it by someone else, or
    // the other side of a direct room) choose it by writing in it.
    let mut choosing: Vec<(i64, i64)> = Vec::new();
    let mut rows = Vec::with_capacity(new.len());
    let mut inserted = Vec::with_capacity(new.len());
    for n in new {
        let delivery = &deliveries[n.slot];
        match next.get_mut(&n.room) {
            None => stored.gone.push(n.slot),
            Some(_) if group(&n) && !members.contains_key(&(n.room, delivery.from)) => {
                stored.left.push(n.slot)
            }
            Some(seq) => {
                if members.get(&(n.room, delivery.from)) == Some(&false) {
                    choosing.push((n.room, delivery.from));
                }
                rows.push(row(n, *seq));
                inserted.push(delivery.task_id);
                *seq += 1;
            }
        }
    }
    if rows.is_empty() {
        txn.rollback().await?;
        return Ok(stored);
    }
    // The rows come back from the insert itself. A task whose message was
    // stored by a racing delivery of the same job inserts nothing (the
    // conflict on its task id): those few are read back.
    let mut found: HashMap<Uuid, message::Model> = message::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(message::Column::TaskId)
                .do_nothing()
                .to_owned(),
        )
        .exec_with_returning(&txn)
        .await?
        .into_iter()
        .filter_map(|m| m.task_id.map(|t| (t, m)))
        .collect();
    let raced: Vec<Uuid> = inserted
        .iter()
        .filter(|t| !found.contains_key(t))
        .copied()
        .collect();
    found.extend(stored_by_tasks(&txn, &raced).await?);
    stored.found = found;
    let mentioned: Vec<(i64, i64, Vec<i64>)> = new
        .iter()
        .filter(|n| !n.mentions.is_empty())
        .filter_map(|n| {
            let message = stored.found.get(&deliveries[n.slot].task_id)?;
            Some((message.id, message.room_id, n.mentions.clone()))
        })
        .collect();
    mentions::record(&txn, &mentioned).await?;
    choosing.sort_unstable();
    choosing.dedup();
    rooms::mark_chosen(&txn, &choosing).await?;
    txn.commit().await?;
    stored.chose = !choosing.is_empty();
    Ok(stored)
}

/// Messages stored by these tasks, by task id.
async fn stored_by_tasks(
    db: &impl ConnectionTrait,
    task_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, message::Model>> {
    if task_ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(message::Entity::find()
        .filter(message::Column::TaskId.is_in(task_ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|m| m.task_id.map(|t| (t, m)))
        .collect())
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> AppResult<message::Model> {
    message::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound("message"))
}

/// Messages by id, in one statement.
pub async fn load_many(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<HashMap<i64, message::Model>> {
    Ok(message::Entity::find()
        .filter(message::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect())
}

fn in_room(room_id: i64) -> Select<message::Entity> {
    message::Entity::find().filter(message::Column::RoomId.eq(room_id))
}

/// Every message of a room, oldest first.
pub async fn list_room(db: &impl ConnectionTrait, room_id: i64) -> AppResult<Vec<message::Model>> {
    Ok(in_room(room_id)
        .order_by_asc(message::Column::Id)
        .all(db)
        .await?)
}

/// One page of a room's history, oldest first.
pub async fn room_page(
    db: &impl ConnectionTrait,
    room_id: i64,
    request: PageRequest,
) -> AppResult<Page<message::Model>> {
    pagination::fetch_page(db, in_room(room_id), message::Column::Id, request).await
}

/// The same page of history for many rooms, in one statement (a window
/// function numbers each room's rows), so a list of rooms with their
/// messages costs a fixed number of statements.
pub async fn room_pages(
    db: &impl ConnectionTrait,
    room_ids: &[i64],
    request: PageRequest,
) -> AppResult<HashMap<i64, Page<message::Model>>> {
    if room_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let (limit, backwards) = match (request.first, request.last) {
        (_, Some(last)) => (last, true),
        (first, None) => (first.unwrap_or(0), false),
    };
    // Every interpolated value is an integer, so building the text is safe.
    let ids = room_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut filters = format!("room_id IN ({ids})");
    if let Some(after) = request.after {
        filters.push_str(&format!(" AND id > {after}"));
    }
    if let Some(before) = request.before {
        filters.push_str(&format!(" AND id < {before}"));
    }
    let direction = if backwards { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM (\
           SELECT {COLUMNS}, \
                  ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY id {direction}) AS position \
           FROM messages WHERE {filters}\
         ) numbered WHERE position <= {} ORDER BY room_id, id",
        limit + 1
    );
    let backend = db.get_database_backend();
    let rows = message::Model::find_by_statement(Statement::from_string(backend, sql))
        .all(db)
        .await?;
    let mut grouped: HashMap<i64, Vec<message::Model>> = HashMap::new();
    for row in rows {
        grouped.entry(row.room_id).or_default().push(row);
    }
    Ok(room_ids
        .iter()
        .map(|&room_id| {
            let mut items = grouped.remove(&room_id).unwrap_or_default();
            let more = items.len() > limit;
            let page = if backwards {
                // Rows are ascending; the extra row, if any, is the oldest.
                if more {
                    items.remove(0);
                }
                Page {
                    items,
                    has_previous_page: more,
                    has_next_page: request.before.is_some(),
                }
            } else {
                items.truncate(limit);
                Page {
                    items,
                    has_previous_page: request.after.is_some(),
                    has_next_page: more,
                }
            };
            (room_id, page)
        })
        .collect())
}

/// One page of the replies to a message of a room, oldest first.
pub async fn replies_page(
    db: &impl ConnectionTrait,
    room_id: i64,
    parent_id: i64,
    request: PageRequest,
) -> AppResult<Page<message::Model>> {
    let replies = in_room(room_id).filter(message::Column::ReplyToId.eq(parent_id));
    pagination::fetch_page(db, replies, message::Column::Id, request).await
}

/// Number of replies, in `room_id`, to one message.
pub async fn reply_count_in(
    db: &impl ConnectionTrait,
    room_id: i64,
    parent_id: i64,
) -> AppResult<u64> {
    let replies = in_room(room_id).filter(message::Column::ReplyToId.eq(parent_id));
    pagination::count(db, replies).await
}

/// Number of replies to each message.
pub async fn reply_counts(
    db: &impl ConnectionTrait,
    message_ids: &[i64],
) -> AppResult<HashMap<i64, u64>> {
    let rows: Vec<(Option<i64>, i64)> = message::Entity::find()
        .select_only()
        .column(message::Column::ReplyToId)
        .column_as(message::Column::Id.count(), "n")
        .filter(message::Column::ReplyToId.is_in(message_ids.iter().copied()))
        .group_by(message::Column::ReplyToId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(parent, n)| Some((parent?, n as u64)))
        .collect())
}

/// Number of messages in each room.
pub async fn counts_by_room(
    db: &impl ConnectionTrait,
    room_ids: &[i64],
) -> AppResult<HashMap<i64, u64>> {
    let rows: Vec<(i64, i64)> = message::Entity::find()
        .select_only()
        .column(message::Column::RoomId)
        .column_as(message::Column::Id.count(), "n")
        .filter(message::Column::RoomId.is_in(room_ids.iter().copied()))
        .group_by(message::Column::RoomId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(r, n)| (r, n as u64)).collect())
}

/// Messages not sent by `user_id`, not deleted, and without their receipt.
fn unseen_by(select: Select<message::Entity>, user_id: i64) -> Select<message::Entity> {
    let receipt = Query::select()
        .expr(Expr::val(1))
        .from(message_seen::Entity)
        .and_where(
            Expr::col((message_seen::Entity, message_seen::Column::MessageId))
                .equals((message::Entity, message::Column::Id)),
        )
        .and_where(Expr::col((message_seen::Entity, message_seen::Column::UserId)).eq(user_id))
        .to_owned();
    select
        .filter(
            Condition::any()
                .add(message::Column::SenderId.is_null())
                .add(message::Column::SenderId.ne(user_id)),
        )
        .filter(message::Column::DeletedAt.is_null())
        .filter(Expr::exists(receipt).not())
}

/// The user's unread messages across the rooms they are in.
fn unread(user_id: i64) -> Select<message::Entity> {
    let rooms = membership::Entity::find()
        .select_only()
        .column(membership::Column::RoomId)
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::LeftAt.is_null())
        .into_query();
    unseen_by(
        message::Entity::find().filter(message::Column::RoomId.in_subquery(rooms)),
        user_id,
    )
}

/// One page of the user's unread messages, oldest first.
pub async fn unread_page(
    db: &impl ConnectionTrait,
    user_id: i64,
    request: PageRequest,
) -> AppResult<Page<message::Model>> {
    pagination::fetch_page(db, unread(user_id), message::Column::Id, request).await
}

pub async fn unread_count(db: &impl ConnectionTrait, user_id: i64) -> AppResult<u64> {
    pagination::count(db, unread(user_id)).await
}

/// All the user's unread messages, oldest first (the legacy long-poll).
pub async fn unread_list(
    db: &impl ConnectionTrait,
    user_id: i64,
) -> AppResult<Vec<message::Model>> {
    Ok(unread(user_id)
        .order_by_asc(message::Column::Id)
        .all(db)
        .await?)
}

/// Unread messages newer than `after_id`, oldest first, at most `limit`.
pub async fn unread_since(
    db: &impl ConnectionTrait,
    user_id: i64,
    after_id: i64,
    limit: u64,
) -> AppResult<Vec<message::Model>> {
    Ok(unread(user_id)
        .filter(message::Column::Id.gt(after_id))
        .order_by_asc(message::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The id of the newest message, if any.
pub async fn latest_id(db: &impl ConnectionTrait) -> AppResult<Option<i64>> {
    let latest: Option<Option<i64>> = message::Entity::find()
        .select_only()
        .column_as(message::Column::Id.max(), "latest")
        .into_tuple()
        .one(db)
        .await?;
    Ok(latest.flatten())
}

/// A room's messages newer than `after_id`, oldest first, at most `limit`.
pub async fn room_since(
    db: &impl ConnectionTrait,
    room_id: i64,
    after_id: i64,
    limit: u64,
) -> AppResult<Vec<message::Model>> {
    Ok(in_room(room_id)
        .filter(message::Column::Id.gt(after_id))
        .order_by_asc(message::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The user's unread count in each of the rooms.
pub async fn unread_counts(
    db: &impl ConnectionTrait,
    user_id: i64,
    room_ids: &[i64],
) -> AppResult<HashMap<i64, u64>> {
    let select = unseen_by(
        message::Entity::find().filter(message::Column::RoomId.is_in(room_ids.iter().copied())),
        user_id,
    );
    let rows: Vec<(i64, i64)> = select
        .select_only()
        .column(message::Column::RoomId)
        .column_as(message::Column::Id.count(), "n")
        .group_by(message::Column::RoomId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(r, n)| (r, n as u64)).collect())
}

/// Mark the room's messages not sent by the user as seen by them, up to
/// `up_to` (a message id) when given. Existing receipts are kept (first time
/// wins). Returns how many receipts were added.
pub async fn mark_seen(
    db: &impl ConnectionTrait,
    room_id: i64,
    user_id: i64,
    up_to: Option<i64>,
) -> AppResult<u64> {
    let mut pending = unseen_by(in_room(room_id), user_id)
        .select_only()
        .column(message::Column::Id);
    if let Some(up_to) = up_to {
        pending = pending.filter(message::Column::Id.lte(up_to));
    }
    let mut select = pending.into_query();
    select.expr(Expr::val(user_id)).expr(Expr::val(now()));
    let mut insert = Query::insert();
    insert
        .into_table(message_seen::Entity)
        .columns([
            message_seen::Column::MessageId,
            message_seen::Column::UserId,
            message_seen::Column::SeenAt,
        ])
        .select_from(select)
        .map_err(|e| AppError::internal(anyhow::anyhow!("mark seen query: {e}")))?
        .on_conflict(
            OnConflict::columns([
                message_seen::Column::UserId,
                message_seen::Column::MessageId,
            ])
            .do_nothing()
            .to_owned(),
        );
    let backend = db.get_database_backend();
    let statement = backend.build(&insert);
    let result = db.execute_raw(statement).await?;
    Ok(result.rows_affected())
}

/// Receipts of each message, oldest first.
pub async fn receipts(
    db: &impl ConnectionTrait,
    message_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<message_seen::Model>>> {
    let mut by_message: HashMap<i64, Vec<message_seen::Model>> = HashMap::new();
    for r in message_seen::Entity::find()
        .filter(message_seen::Column::MessageId.is_in(message_ids.iter().copied()))
        .order_by_asc(message_seen::Column::Id)
        .all(db)
        .await?
    {
        by_message.entry(r.message_id).or_default().push(r);
    }
    Ok(by_message)
}

/// Which of the messages the user has seen.
pub async fn seen_by_user(
    db: &impl ConnectionTrait,
    user_id: i64,
    message_ids: &[i64],
) -> AppResult<HashSet<i64>> {
    let ids: Vec<i64> = message_seen::Entity::find()
        .select_only()
        .column(message_seen::Column::MessageId)
        .filter(message_seen::Column::UserId.eq(user_id))
        .filter(message_seen::Column::MessageId.is_in(message_ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(ids.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_checked() {
        assert!(validate_text("").is_err());
        assert!(validate_text(&"x".repeat(1025)).is_err());
        assert!(validate_text(&"é".repeat(1024)).is_ok());
    }
}

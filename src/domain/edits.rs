//! Editing and deleting messages: only the sender, while a member of the
//! room. An edit replaces the text (same 1 to 1024 rule) and sets
//! `edited_at`; a delete leaves a tombstone (`deleted_at` set, text emptied,
//! reactions and mentions gone), so the message's place in the history,
//! its replies and its receipts stay.
//!
//! Each change is a numbered room event, written in the transaction that
//! makes it (see [`super::log`]); the room's version is bumped before the
//! answer, so every cache reads the new text.

use entity::{message, reaction};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, IntoActiveModel, QueryFilter,
};

use super::{
    log::{self, Kind, Subject},
    mentions, messages, now, rooms,
};
use crate::{
    error::{AppError, AppResult},
    events::{Event, EventBus, StoredMessage},
    versions::Key,
};

/// May `viewer` change this message? Only its sender, while a member of
/// its room; anyone else outside the room is told it does not exist.
async fn check(db: &impl ConnectionTrait, viewer: i64, message: &message::Model) -> AppResult<()> {
    if !rooms::is_member(db, message.room_id, viewer).await? {
        return Err(AppError::NotFound("message"));
    }
    if message.sender_id != Some(viewer) {
        return Err(AppError::Forbidden(
            "Only the sender can change a message".to_owned(),
        ));
    }
    Ok(())
}

/// The message, checked for a change by `viewer`, then read again under
/// the room's lock with the number its change will take. The first check
/// runs before any lock, so a request that may not change the message
/// never holds up the room's writers.
async fn locked_for_change(
    db: &DatabaseConnection,
    viewer: i64,
    message_id: i64,
) -> AppResult<(DatabaseTransaction, message::Model, i64)> {
    check(db, viewer, &messages::get(db, message_id).await?).await?;
    let txn = super::begin_write(db).await?;
    let room_id = messages::get(&txn, message_id).await?.room_id;
    // The number first: it locks the room, so the message read next
    // cannot change under this transaction.
    let seq = log::take(&txn, room_id, 1).await?;
    let message = messages::get(&txn, message_id).await?;
    check(&txn, viewer, &message).await?;
    Ok((txn, message, seq))
}

/// Log the change under its number and commit; then bump the room's
/// version and tell every instance.
async fn finish(
    txn: DatabaseTransaction,
    events: &dyn EventBus,
    message: message::Model,
    seq: i64,
    kind: Kind,
    viewer: i64,
) -> AppResult<message::Model> {
    let subject = Subject {
        message_id: Some(message.id),
        user_id: Some(viewer),
        emoji: None,
    };
    log::record_numbered(&txn, message.room_id, seq, kind, subject, now()).await?;
    txn.commit().await?;
    let room_version = events
        .versions()
        .bump(&[(Key::Room(message.room_id), 1)])
        .await[0];
    events.publish(Event::MessageChanged {
        message: StoredMessage::from(&message),
        seq,
        room_version,
    });
    Ok(message)
}

/// Replace the text of the viewer's own message.
#[tracing::instrument(skip(db, events, text))]
pub async fn edit(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    viewer: i64,
    message_id: i64,
    text: &str,
) -> AppResult<message::Model> {
    messages::validate_text(text)?;
    let (txn, message, seq) = locked_for_change(db, viewer, message_id).await?;
    if message.deleted_at.is_some() {
        return Err(AppError::BadInput(
            "A deleted message cannot be edited".to_owned(),
        ));
    }
    if message.text == text {
        txn.rollback().await?;
        return Ok(message);
    }
    let room_id = message.room_id;
    let mut row = message.into_active_model();
    row.text = Set(text.to_owned());
    row.edited_at = Set(Some(now()));
    let message = message::Entity::update(row).exec(&txn).await?;
    mentions::clear(&txn, message_id).await?;
    let mentioned = mentions::resolve(&txn, &[(room_id, text)]).await?;
    mentions::record(&txn, &[(message_id, room_id, mentioned.concat())]).await?;
    finish(txn, events, message, seq, Kind::MessageEdited, viewer).await
}

/// Delete the viewer's own message, leaving a tombstone. Deleting a
/// tombstone again changes nothing.
#[tracing::instrument(skip(db, events))]
pub async fn delete(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    viewer: i64,
    message_id: i64,
) -> AppResult<message::Model> {
    let (txn, message, seq) = locked_for_change(db, viewer, message_id).await?;
    if message.deleted_at.is_some() {
        txn.rollback().await?;
        return Ok(message);
    }
    let mut row = message.into_active_model();
    row.text = Set(String::new());
    row.deleted_at = Set(Some(now()));
    let message = message::Entity::update(row).exec(&txn).await?;
    mentions::clear(&txn, message_id).await?;
    reaction::Entity::delete_many()
        .filter(reaction::Column::MessageId.eq(message_id))
        .exec(&txn)
        .await?;
    finish(txn, events, message, seq, Kind::MessageDeleted, viewer).await
}

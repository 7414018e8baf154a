//! When users were last seen: the moment their last live connection
//! closed (see [`crate::presence`] for who is online now).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::user_presence;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::OnConflict};

use crate::error::{AppError, AppResult, is_foreign_key_violation};

/// Store `at` as the user's last sighting (a deleted user is ignored).
pub async fn record_last_seen(
    db: &impl ConnectionTrait,
    user_id: i64,
    at: DateTime<Utc>,
) -> AppResult<()> {
    let row = user_presence::ActiveModel::from(user_presence::Model {
        user_id,
        last_seen_at: at,
    });
    let written = user_presence::Entity::insert(row)
        .on_conflict(
            OnConflict::column(user_presence::Column::UserId)
                .update_column(user_presence::Column::LastSeenAt)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await;
    match written {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => Ok(()),
        Err(e) => Err(AppError::from(e)),
    }
}

/// The last sightings of these users, in one statement.
pub async fn last_seen(
    db: &impl ConnectionTrait,
    user_ids: &[i64],
) -> AppResult<HashMap<i64, DateTime<Utc>>> {
    Ok(user_presence::Entity::find()
        .filter(user_presence::Column::UserId.is_in(user_ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p.last_seen_at))
        .collect())
}

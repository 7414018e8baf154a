//! Background tasks as clients see them: state, result, error.
//!
//! A finished send stores `{"message_id": N}` as its result; a failed task
//! stores `{"exc_type": KIND, "exc_message": [MESSAGE]}`, the shape the
//! legacy clients read.

use entity::task;
use sea_orm::{ConnectionTrait, EntityTrait};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<task::Model> {
    task::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound("task"))
}

/// The id of the message a successful send stored.
pub fn result_message_id(task: &task::Model) -> Option<i64> {
    task.result.as_ref()?.get("message_id")?.as_i64()
}

/// The kind and message of a failed task.
pub fn failure(task: &task::Model) -> Option<(String, String)> {
    let error = task.error.as_ref()?;
    let kind = error.get("exc_type")?.as_str()?.to_owned();
    let message = match error.get("exc_message") {
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| p.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(serde_json::Value::String(text)) => text.clone(),
        _ => String::new(),
    };
    Some((kind, message))
}

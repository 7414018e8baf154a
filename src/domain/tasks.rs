//! Background tasks: the outbox rows behind every send, and their states.
//!
//! A task is written (PENDING, with its arguments) before a send answers, so
//! an accepted send survives any crash. A worker moves it to STARTED, then to
//! SUCCESS (result: `{"message_id": N}`) or FAILURE (error:
//! `{"exc_type": KIND, "exc_message": [MESSAGE]}`, the shape legacy clients
//! read). Infrastructure failures put it back to PENDING for a retry.

use chrono::{DateTime, Utc};
use entity::task::{self, TaskState};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{CaseStatement, Expr, ExprTrait},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::now;
use crate::error::{AppError, AppResult};

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<task::Model> {
    task::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound("task"))
}

/// The user a task belongs to: the sender of a message (`from` in its
/// payload), or the user whose receipts it records (`user_id`).
pub fn owner(task: &task::Model) -> Option<i64> {
    task.args
        .get("from")
        .or_else(|| task.args.get("user_id"))
        .and_then(Value::as_i64)
}

/// A task, for its owner only. Anyone else is told it does not exist:
/// task ids are time-ordered, so an id is no secret, and a task's result
/// holds its message.
pub async fn get_for(db: &impl ConnectionTrait, id: Uuid, viewer: i64) -> AppResult<task::Model> {
    let task = get(db, id).await?;
    if owner(&task) == Some(viewer) {
        Ok(task)
    } else {
        Err(AppError::NotFound("task"))
    }
}

/// Write a new PENDING task.
pub async fn create_with_id(
    db: &impl ConnectionTrait,
    id: Uuid,
    kind: &str,
    args: Value,
) -> AppResult<task::Model> {
    let row = pending(id, kind, args);
    create_many(db, vec![row.clone()]).await?;
    Ok(row)
}

/// Write new PENDING tasks in one statement (a group commit of concurrent
/// sends).
pub async fn create_many(db: &impl ConnectionTrait, rows: Vec<task::Model>) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    task::Entity::insert_many(rows.into_iter().map(task::ActiveModel::from))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A new PENDING task row, not yet written.
pub fn pending(id: Uuid, kind: &str, args: Value) -> task::Model {
    let at = now();
    task::Model {
        id,
        kind: kind.to_owned(),
        args,
        state: TaskState::Pending,
        result: None,
        error: None,
        attempts: 0,
        dispatched_at: None,
        created_at: at,
        updated_at: at,
        finished_at: None,
    }
}

/// Move the unfinished ones among `ids` to STARTED, counting the attempt;
/// returns them. Finished (duplicate deliveries) and unknown ids are left out.
/// One statement (`UPDATE .. RETURNING`), so a delivery racing another that
/// just finished the task cannot move it back.
pub async fn start_many(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut update = task::Entity::update_many()
        .col_expr(task::Column::State, Expr::value(TaskState::Started))
        .col_expr(
            task::Column::Attempts,
            Expr::col(task::Column::Attempts).add(1),
        )
        .col_expr(task::Column::UpdatedAt, Expr::value(now()))
        .filter(task::Column::Id.is_in(ids.iter().copied()))
        .filter(task::Column::State.is_in([TaskState::Pending, TaskState::Started]))
        .into_query();
    // Only the ids come back, not the whole rows with their payloads.
    update.returning_col(task::Column::Id);
    let statement = db.get_database_backend().build(&update);
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| row.try_get::<Uuid>("", "id").map_err(AppError::from))
        .collect()
}

/// Record many successes at once, each with its own result.
pub async fn succeed_many(db: &impl ConnectionTrait, results: &[(Uuid, Value)]) -> AppResult<()> {
    let Some((first_id, first_result)) = results.first() else {
        return Ok(());
    };
    let mut result = CaseStatement::new().case(
        task::Column::Id.eq(*first_id),
        Expr::value(first_result.clone()),
    );
    for (id, value) in &results[1..] {
        result = result.case(task::Column::Id.eq(*id), Expr::value(value.clone()));
    }
    let at = now();
    task::Entity::update_many()
        .col_expr(task::Column::State, Expr::value(TaskState::Success))
        .col_expr(task::Column::Result, result.into())
        .col_expr(task::Column::UpdatedAt, Expr::value(at))
        .col_expr(task::Column::FinishedAt, Expr::value(at))
        .filter(task::Column::Id.is_in(results.iter().map(|(id, _)| *id)))
        .filter(task::Column::State.is_in([TaskState::Pending, TaskState::Started]))
        .exec(db)
        .await?;
    Ok(())
}

/// Record that tasks were handed to the job queue.
pub async fn mark_dispatched(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    task::Entity::update_many()
        .col_expr(task::Column::DispatchedAt, Expr::value(now()))
        .filter(task::Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Take back the dispatched mark the writer put on tasks whose push
/// failed, so the outbox sweep pushes them. Only that mark (the task's
/// creation time) on a task never started: one pushed again since (a newer
/// mark) or already running keeps its state.
pub async fn unmark_dispatched(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    task::Entity::update_many()
        .col_expr(
            task::Column::DispatchedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(task::Column::Id.is_in(ids.iter().copied()))
        .filter(Expr::col(task::Column::DispatchedAt).eq(Expr::col(task::Column::CreatedAt)))
        .filter(task::Column::FinishedAt.is_null())
        .filter(task::Column::State.eq(TaskState::Pending))
        .filter(task::Column::Attempts.eq(0))
        .exec(db)
        .await?;
    Ok(())
}

/// Unfinished tasks, in the terms of their index (`idx_tasks_unfinished`,
/// partial on `finished_at IS NULL`): every way a task finishes sets
/// `finished_at`. The state is checked too, so no path can disagree.
fn unfinished() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(task::Column::FinishedAt.is_null())
        .add(task::Column::State.is_in([TaskState::Pending, TaskState::Started]))
}

/// Unfinished tasks never handed to the queue and created before `before`.
pub async fn undispatched(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> AppResult<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::DispatchedAt.is_null())
        .filter(unfinished())
        .filter(task::Column::CreatedAt.lt(before))
        .order_by_asc(task::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Unfinished tasks that were queued but have not moved since `before`: a
/// queue lost them (a Faktory job dead after its last retry, a worker that
/// died on its last attempt). Pushing them again is safe; the worker is
/// idempotent.
pub async fn stalled(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> AppResult<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::DispatchedAt.is_not_null())
        .filter(unfinished())
        .filter(task::Column::UpdatedAt.lt(before))
        .order_by_asc(task::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Tasks handed to the queue before `before` that never started (first
/// attempt still to come): a queue that lost them will not run them.
pub async fn unstarted(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> AppResult<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::DispatchedAt.lt(before))
        .filter(task::Column::FinishedAt.is_null())
        .filter(task::Column::State.eq(TaskState::Pending))
        .filter(task::Column::Attempts.eq(0))
        .order_by_asc(task::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Note that tasks were just pushed again (their lease starts over).
pub async fn touch(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    task::Entity::update_many()
        .col_expr(task::Column::UpdatedAt, Expr::value(now()))
        .filter(task::Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// After a restart of the in-process queue (whose jobs lived in memory),
/// every unfinished task must be dispatched again. Returns how many.
pub async fn requeue_unfinished(db: &impl ConnectionTrait) -> AppResult<u64> {
    let result = task::Entity::update_many()
        .col_expr(
            task::Column::DispatchedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::State, Expr::value(TaskState::Pending))
        .filter(unfinished())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Move a task to STARTED and count the attempt. False when the task is
/// already finished (a duplicate delivery) or unknown: nothing to do.
pub async fn start(db: &impl ConnectionTrait, id: Uuid) -> AppResult<bool> {
    Ok(!start_many(db, &[id]).await?.is_empty())
}

async fn finish(
    db: &impl ConnectionTrait,
    id: Uuid,
    state: TaskState,
    result: Option<Value>,
    error: Option<Value>,
) -> AppResult<()> {
    let at = now();
    task::Entity::update_many()
        .set(task::ActiveModel {
            state: Set(state),
            result: Set(result),
            error: Set(error),
            updated_at: Set(at),
            finished_at: Set(Some(at)),
            ..Default::default()
        })
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::State.is_in([TaskState::Pending, TaskState::Started]))
        .exec(db)
        .await?;
    Ok(())
}

/// The failure kind legacy clients see for a domain error.
pub fn failure_kind(error: &AppError) -> &'static str {
    match error {
        AppError::NotFound(_) => "DoesNotExist",
        AppError::Forbidden(_) | AppError::Unauthenticated(_) => "PermissionDenied",
        AppError::Validation(_) | AppError::BadInput(_) => "ValidationError",
        AppError::Conflict(_) => "IntegrityError",
        AppError::RateLimited { .. } => "Throttled",
        AppError::Internal(_) => "InternalError",
    }
}

/// End a task in FAILURE; it will not be retried.
pub async fn fail(db: &impl ConnectionTrait, id: Uuid, kind: &str, message: &str) -> AppResult<()> {
    finish(
        db,
        id,
        TaskState::Failure,
        None,
        Some(json!({"exc_type": kind, "exc_message": [message]})),
    )
    .await
}

/// An attempt failed for a reason that may pass (database down): the task
/// waits for its retry as PENDING.
pub async fn release_for_retry(db: &impl ConnectionTrait, id: Uuid) -> AppResult<()> {
    task::Entity::update_many()
        .col_expr(task::Column::State, Expr::value(TaskState::Pending))
        .col_expr(task::Column::UpdatedAt, Expr::value(now()))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::State.eq(TaskState::Started))
        .exec(db)
        .await?;
    Ok(())
}

/// Delete tasks finished before `before`. Returns how many.
pub async fn purge_finished(db: &impl ConnectionTrait, before: DateTime<Utc>) -> AppResult<u64> {
    let result = task::Entity::delete_many()
        .filter(task::Column::FinishedAt.lt(before))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
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
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| p.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    };
    Some((kind, message))
}

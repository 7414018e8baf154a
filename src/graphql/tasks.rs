//! Background tasks in GraphQL: what a send returns and `task(id)` reads.

use async_graphql::{Context, Enum, ID, Object, Result, ResultExt, SimpleObject};
use chrono::{DateTime, Utc};
use entity::task::{self, TaskState as State};

use super::{ContextExt, load, loaders::MessageById, messages::Message};
use crate::{
    domain::tasks,
    error::{AppError, AppResult},
};

/// Where a task is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Accepted, waiting for a worker.
    Pending,
    /// A worker is running it.
    Started,
    /// Done; `result` holds the outcome.
    Success,
    /// Gave up; `error` says why.
    Failure,
}

impl From<State> for TaskState {
    fn from(state: State) -> Self {
        match state {
            State::Pending => TaskState::Pending,
            State::Started => TaskState::Started,
            State::Success => TaskState::Success,
            State::Failure => TaskState::Failure,
        }
    }
}

/// Why a task failed.
#[derive(SimpleObject, Clone, Debug)]
pub struct TaskError {
    /// The kind of failure, e.g. `PermissionDenied`, `NotFound`, `ValidationError`.
    pub kind: String,
    /// A human-readable explanation.
    pub message: String,
}

/// A background job, e.g. a message send.
#[derive(Clone, Debug)]
pub struct Task(pub task::Model);

#[Object]
impl Task {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// What the task does, e.g. `send_direct_message`.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    async fn state(&self) -> TaskState {
        self.0.state.into()
    }
    /// How many times a worker has started it.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// The stored message, once a send task has succeeded. It is the
    /// viewer's own, so it shows even after they left its room; what hangs
    /// off the room (replies, reactions, receipts) shows only while they
    /// are a member.
    async fn result(&self, ctx: &Context<'_>) -> Result<Option<Message>> {
        let Some(id) = tasks::result_message_id(&self.0) else {
            return Ok(None);
        };
        Ok(load(ctx, MessageById(id))
            .await?
            .map(Message::reached_otherwise))
    }
    async fn error(&self) -> Option<TaskError> {
        tasks::failure(&self.0).map(|(kind, message)| TaskError { kind, message })
    }
}

/// Parse a task id argument.
pub(crate) fn parse_task_id(id: &ID) -> AppResult<uuid::Uuid> {
    uuid::Uuid::parse_str(id.as_str())
        .map_err(|_| AppError::field("id", format!("`{}` is not a task id", id.as_str())))
}

#[derive(Default)]
pub struct TaskQuery;

#[Object]
impl TaskQuery {
    /// One of the viewer's tasks, by the id a send returned. Another
    /// user's task is NOT_FOUND.
    async fn task(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Task>> {
        let viewer = ctx.viewer_id().await.extend()?;
        let id = parse_task_id(&id).extend()?;
        Ok(Some(Task(
            tasks::get_for(ctx.db(), id, viewer).await.extend()?,
        )))
    }
}

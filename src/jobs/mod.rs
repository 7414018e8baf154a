//! Background jobs: message sends and mark-seen, run by a worker.
//!
//! The flow is a transactional outbox:
//! 1. [`Jobs::submit`] writes the task row (PENDING, with its arguments) and
//!    answers at once with the task; the send can no longer be lost.
//! 2. The [`dispatcher`] pushes the job to the queue (the in-process queue, or
//!    Faktory). A task is written as dispatched when the dispatcher's
//!    hand-off has room for it, so a push writes nothing; a push that fails
//!    takes the mark back, and the dispatcher's periodic sweep of the tasks
//!    table pushes the task later (Faktory down). A process that dies
//!    between the write and the push leaves its tasks marked but unqueued:
//!    they go out again at the next start (in-process queue), when they
//!    have not started within `JOB_START_TIMEOUT_SECS` (Faktory), or when
//!    they have not moved for the lease (any instance).
//! 3. A worker ([`worker::execute`]) runs the job: the message is stored with
//!    the task id as idempotency key, so a job delivered twice stores it once.
//!
//! Job payloads are versioned ([`Envelope::v`]) and carry everything a worker
//! needs; the task row holds the same payload as the source of truth.

pub mod dispatcher;
pub mod faktory;
pub mod queue;
pub mod worker;

use entity::task;
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    domain::tasks,
    error::{AppError, AppResult},
    events::{Event, EventBus},
};

/// The version of the job payload this build writes and reads.
pub const PAYLOAD_VERSION: u32 = 1;

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Store a direct message, creating the pair's room on the first one.
    SendDirectMessage {
        from: i64,
        to: i64,
        text: String,
        /// The message this one replies to (absent in older payloads).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
    },
    /// Store a message in a room the sender is a member of.
    SendGroupMessage {
        from: i64,
        room_id: i64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
    },
    /// Mark a room's messages seen by a user (up to a message id, if given).
    MarkSeen {
        user_id: i64,
        room_id: i64,
        up_to: Option<i64>,
    },
}

impl Job {
    /// The job's kind: its Faktory job type and the task's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::SendDirectMessage { .. } => "send_direct_message",
            Job::SendGroupMessage { .. } => "send_group_message",
            Job::MarkSeen { .. } => "mark_seen",
        }
    }

    /// Every kind, for worker registration.
    pub const KINDS: [&'static str; 3] = ["send_direct_message", "send_group_message", "mark_seen"];
}

/// A job as it travels through a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub task_id: Uuid,
    #[serde(flatten)]
    pub job: Job,
}

impl Envelope {
    /// Read a payload, refusing versions this build does not know.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        let envelope: Envelope =
            serde_json::from_value(value.clone()).map_err(|e| format!("unreadable job: {e}"))?;
        if envelope.v != PAYLOAD_VERSION {
            return Err(format!("unsupported job payload version {}", envelope.v));
        }
        Ok(envelope)
    }

    pub fn from_task(task: &task::Model) -> Result<Self, String> {
        Self::parse(&task.args)
    }
}

/// A task waiting to be written, and who waits for it.
struct Submission {
    row: task::Model,
    envelope: Envelope,
    written: oneshot::Sender<Result<(), String>>,
}

/// Most tasks written in one statement.
const WRITE_BATCH: usize = 256;

/// Submits jobs: the handle the APIs use.
///
/// Concurrent submissions are written together (a group commit): a writer
/// takes every submission waiting and inserts them in one statement, and
/// each send answers once its row is committed. If that statement fails,
/// each row is written on its own, so one bad submission fails alone.
#[derive(Clone)]
pub struct Jobs {
    events: std::sync::Arc<dyn EventBus>,
    writer: mpsc::Sender<Submission>,
}

/// Write one task row. A row that is there already counts as written: the
/// batch statement that failed may have committed before its connection
/// broke, and the row it wrote (marked dispatched) must still be pushed.
async fn write_alone(db: &DatabaseConnection, row: &task::Model) -> Result<(), String> {
    match tasks::create_many(db, vec![row.clone()]).await {
        Ok(()) => Ok(()),
        Err(error) => match tasks::get(db, row.id).await {
            Ok(_) => Ok(()),
            Err(_) => Err(error.to_string()),
        },
    }
}

impl Jobs {
    /// Start the task writers; written tasks go to `handoff` (the dispatcher).
    pub fn new(
        db: DatabaseConnection,
        events: std::sync::Arc<dyn EventBus>,
        handoff: mpsc::Sender<Envelope>,
    ) -> Self {
        let (writer, submissions) = mpsc::channel::<Submission>(WRITE_BATCH * 8);
        let submissions = std::sync::Arc::new(tokio::sync::Mutex::new(submissions));
        // Two writers, so one batch is written while the next gathers.
        for _ in 0..2 {
            let db = db.clone();
            let handoff = handoff.clone();
            let submissions = submissions.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut submissions = submissions.lock().await;
                        let Some(first) = submissions.recv().await else {
                            break;
                        };
                        let mut batch = vec![first];
                        while batch.len() < WRITE_BATCH {
                            match submissions.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    // A task with a place in the hand-off is written as
                    // dispatched: the dispatcher will have it, so nothing
                    // needs writing when it is pushed. One without (a full
                    // hand-off) is left to the dispatcher's sweep.
                    let mut batch: Vec<_> = batch
                        .into_iter()
                        .map(|mut submission| {
                            let permit = handoff.try_reserve().ok();
                            if permit.is_some() {
                                submission.row.dispatched_at = Some(submission.row.created_at);
                            }
                            (submission, permit)
                        })
                        .collect();
                    let rows = batch.iter().map(|(s, _)| s.row.clone()).collect();
                    let all_at_once = tasks::create_many(&db, rows).await;
                    for (submission, permit) in batch.drain(..) {
                        let written = match &all_at_once {
                            Ok(()) => Ok(()),
                            // One bad row fails the whole statement: write
                            // each on its own, so only the bad one fails.
                            Err(_) => write_alone(&db, &submission.row).await,
                        };
                        if let (Ok(()), Some(permit)) = (&written, permit) {
                            permit.send(submission.envelope);
                        }
                        let _ = submission.written.send(written);
                    }
                }
            });
        }
        Jobs { events, writer }
    }

    /// Record a job as a PENDING task and hand it to the dispatcher. Once
    /// this returns, the job will run, whatever process dies.
    #[tracing::instrument(skip(self, job), fields(kind = job.kind()))]
    pub async fn submit(&self, job: Job) -> AppResult<task::Model> {
        let id = Uuid::now_v7();
        let envelope = Envelope {
            v: PAYLOAD_VERSION,
            task_id: id,
            job,
        };
        let args = serde_json::to_value(&envelope).map_err(AppError::internal)?;
        let row = tasks::pending(id, envelope.job.kind(), args);
        let (written, answer) = oneshot::channel();
        let stopped = || AppError::internal(anyhow::anyhow!("the task writer has stopped"));
        self.writer
            .send(Submission {
                row: row.clone(),
                envelope,
                written,
            })
            .await
            .map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|e| AppError::internal(anyhow::anyhow!("writing the task failed: {e}")))?;
        self.events.publish(Event::TaskUpdated {
            task_id: row.id,
            state: row.state.as_str().to_owned(),
        });
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_are_versioned_and_tagged() {
        let envelope = Envelope {
            v: PAYLOAD_VERSION,
            task_id: Uuid::nil(),
            job: Job::SendGroupMessage {
                from: 9,
                room_id: 1,
                text: "hi fam".into(),
                reply_to: None,
            },
        };
        let value = serde_json::to_value(&envelope).unwrap();
        assert_eq!(value["kind"], "send_group_message");
        assert_eq!(value["v"], 1);
        assert_eq!(Envelope::parse(&value).unwrap(), envelope);
        let mut future = value.clone();
        future["v"] = json!(2);
        assert!(Envelope::parse(&future).is_err());
        assert!(Envelope::parse(&json!({"v": 1})).is_err());
    }
}

//! Running jobs: the one handler both queues use, and the in-process pool.
//!
//! [`execute`] moves the task to STARTED, runs the domain operation and
//! records the outcome. Domain failures (not a member, unknown user, bad
//! text) end the task in FAILURE and are not retried; infrastructure failures
//! (database down) ask for a retry, until the attempts run out.

use std::{sync::Arc, time::Duration};

use entity::task::TaskState;
use sea_orm::DatabaseConnection;
use tokio::{sync::watch, task::JoinSet};

use super::{
    Envelope, Job,
    queue::{InProcessQueue, InProcessReceiver},
};
use crate::{
    domain::{messages, tasks},
    error::AppError,
    events::{Event, EventBus},
};

/// What running a job came to.
#[derive(Debug)]
pub enum Outcome {
    /// The task succeeded (now or in an earlier delivery).
    Done,
    /// The task ended in FAILURE; retrying would not help.
    Failed,
    /// Something that may pass went wrong: run the job again later.
    Retry(String),
}

/// What a worker needs to run jobs.
#[derive(Clone)]
pub struct JobContext {
    pub db: DatabaseConnection,
    pub events: Arc<dyn EventBus>,
}

impl JobContext {
    fn task_updated(&self, task_id: uuid::Uuid, state: TaskState) {
        self.events.publish(Event::TaskUpdated {
            task_id,
            state: state.as_str().to_owned(),
        });
    }
}

/// Run one delivery of a job. `last_attempt` says whether a retry would
/// still follow an infrastructure failure.
#[tracing::instrument(skip_all, fields(task_id = %envelope.task_id, kind = envelope.job.kind()))]
pub async fn execute(ctx: &JobContext, envelope: &Envelope, last_attempt: bool) -> Outcome {
    let db = &ctx.db;
    let task_id = envelope.task_id;
    match tasks::start(db, task_id).await {
        Ok(true) => ctx.task_updated(task_id, TaskState::Started),
        // Finished already (a duplicate delivery) or purged: nothing to do.
        Ok(false) => return Outcome::Done,
        Err(e) => return Outcome::Retry(e.to_string()),
    }

    let result = match &envelope.job {
        Job::SendDirectMessage { from, to, text } => {
            messages::deliver_direct(db, task_id, *from, *to, text)
                .await
                .map(Some)
        }
        Job::SendGroupMessage {
            from,
            room_id,
            text,
        } => messages::deliver_to_room(db, task_id, *from, *room_id, text)
            .await
            .map(Some),
        Job::MarkSeen {
            user_id,
            room_id,
            up_to,
        } => messages::mark_seen(db, *room_id, *user_id, *up_to)
            .await
            .map(|_| None),
    };

    match result {
        Ok(stored) => {
            let recorded = match &stored {
                Some((message, _)) => tasks::succeed_with_message(db, task_id, message.id).await,
                None => tasks::succeed(db, task_id, serde_json::json!({})).await,
            };
            if let Err(e) = recorded {
                // The work is done (idempotently); the next delivery will
                // find it and record the success.
                return Outcome::Retry(e.to_string());
            }
            if let Some((message, _)) = stored {
                ctx.events.publish(Event::MessageStored {
                    message_id: message.id,
                    room_id: message.room_id,
                    sender_id: message.sender_id,
                });
            }
            ctx.task_updated(task_id, TaskState::Success);
            Outcome::Done
        }
        Err(AppError::Internal(source)) if !last_attempt => {
            tracing::warn!(error = ?source, "job failed; it will be retried");
            let _ = tasks::release_for_retry(db, task_id).await;
            Outcome::Retry(source.to_string())
        }
        Err(error) => {
            let kind = tasks::failure_kind(&error);
            let message = match &error {
                AppError::Internal(source) => {
                    tracing::error!(error = ?source, "job failed on its last attempt");
                    "The task failed repeatedly and was abandoned".to_owned()
                }
                other => other.to_string(),
            };
            if let Err(e) = tasks::fail(db, task_id, kind, &message).await {
                return Outcome::Retry(e.to_string());
            }
            tracing::info!(kind, %message, "task failed");
            ctx.task_updated(task_id, TaskState::Failure);
            Outcome::Failed
        }
    }
}

/// Delay before retry number `attempt` (1-based): 0.1 s, 0.2 s, 0.4 s ... 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.saturating_sub(1).min(9)))
        .min(Duration::from_secs(30))
}

/// The embedded worker pool: `workers` tasks taking jobs from the in-process
/// queue. On shutdown, running jobs finish; queued ones stay unfinished in
/// the database and are queued again at the next start.
pub struct WorkerPool {
    pub ctx: JobContext,
    pub queue: InProcessQueue,
    pub receiver: InProcessReceiver,
    pub workers: usize,
    pub max_attempts: u32,
}

impl WorkerPool {
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut pool = JoinSet::new();
        for _ in 0..self.workers.max(1) {
            let ctx = self.ctx.clone();
            let queue = self.queue.clone();
            let receiver = self.receiver.clone();
            let mut shutdown = shutdown.clone();
            let max_attempts = self.max_attempts.max(1);
            pool.spawn(async move {
                loop {
                    let next = {
                        let mut receiver = receiver.lock().await;
                        tokio::select! {
                            biased;
                            _ = crate::shutdown::requested(&mut shutdown) => None,
                            job = receiver.recv() => job,
                        }
                    };
                    let Some((envelope, attempt)) = next else { break };
                    let last = attempt >= max_attempts;
                    if let Outcome::Retry(reason) = execute(&ctx, &envelope, last).await {
                        let delay = backoff(attempt);
                        tracing::debug!(task_id = %envelope.task_id, ?delay, %reason, "retrying job");
                        let queue = queue.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = queue.requeue(envelope, attempt + 1).await;
                        });
                    }
                }
            });
        }
        while pool.join_next().await.is_some() {}
        tracing::debug!("worker pool stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}

//! Running jobs: the one handler both queues use, and the in-process pool.
//!
//! [`execute`] moves the task to STARTED, runs the domain operation and
//! records the outcome. Domain failures (not a member, unknown user, bad
//! text) end the task in FAILURE and are not retried; infrastructure failures
//! (database down) ask for a retry, until the attempts run out.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use entity::{message, task::TaskState};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
use uuid::Uuid;

use super::{
    Envelope, Job,
    queue::{InProcessQueue, InProcessReceiver},
};
use crate::{
    domain::{
        messages::{self, Delivery, Recipient},
        tasks,
    },
    error::{AppError, AppResult},
    events::{Event, EventBus, StoredMessage},
    versions::Key,
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

/// Most jobs run together in one batch.
pub const BATCH: usize = 128;

/// Run one delivery of a job. `last_attempt` says whether a retry would
/// still follow an infrastructure failure.
pub async fn execute(ctx: &JobContext, envelope: &Envelope, last_attempt: bool) -> Outcome {
    execute_batch(ctx, &[(envelope.clone(), last_attempt)])
        .await
        .pop()
        .unwrap_or(Outcome::Retry("no outcome".to_owned()))
}

/// Run many job deliveries together, in a fixed number of statements for
/// the whole batch: one outcome per job, in order.
#[tracing::instrument(skip_all, fields(jobs = jobs.len()))]
pub async fn execute_batch(ctx: &JobContext, jobs: &[(Envelope, bool)]) -> Vec<Outcome> {
    let started = std::time::Instant::now();
    let outcomes = run_batch(ctx, jobs).await;
    let elapsed = started.elapsed();
    for ((envelope, _), outcome) in jobs.iter().zip(&outcomes) {
        let outcome = match outcome {
            Outcome::Done => "success",
            Outcome::Failed => "failure",
            Outcome::Retry(_) => "retry",
        };
        crate::metrics::job(envelope.job.kind(), outcome, elapsed);
    }
    outcomes
}

async fn run_batch(ctx: &JobContext, jobs: &[(Envelope, bool)]) -> Vec<Outcome> {
    let db = &ctx.db;
    let ids: Vec<Uuid> = jobs.iter().map(|(e, _)| e.task_id).collect();
    let runnable: HashSet<Uuid> = match tasks::start_many(db, &ids).await {
        Ok(started) => started.into_iter().collect(),
        Err(e) => return jobs.iter().map(|_| Outcome::Retry(e.to_string())).collect(),
    };
    for id in &runnable {
        ctx.task_updated(*id, TaskState::Started);
    }

    // What each runnable job came to, before recording it.
    let mut results: Vec<Option<AppResult<Option<message::Model>>>> =
        std::iter::repeat_with(|| None).take(jobs.len()).collect();
    let mut deliveries = Vec::new();
    let mut delivery_slots = Vec::new();
    for (slot, (envelope, _)) in jobs.iter().enumerate() {
        if !runnable.contains(&envelope.task_id) {
            continue; // finished already (a duplicate delivery) or purged
        }
        let task_id = envelope.task_id;
        match &envelope.job {
            Job::SendDirectMessage {
                from,
                to,
                text,
                reply_to,
            } => {
                delivery_slots.push(slot);
                deliveries.push(Delivery {
                    task_id,
                    from: *from,
                    to: Recipient::User(*to),
                    text: text.clone(),
                    reply_to: *reply_to,
                });
            }
            Job::SendGroupMessage {
                from,
                room_id,
                text,
                reply_to,
            } => {
                delivery_slots.push(slot);
                deliveries.push(Delivery {
                    task_id,
                    from: *from,
                    to: Recipient::Room(*room_id),
                    text: text.clone(),
                    reply_to: *reply_to,
                });
            }
            Job::MarkSeen {
                user_id,
                room_id,
                up_to,
            } => {
                results[slot] = Some(
                    messages::mark_seen(db, *room_id, *user_id, *up_to)
                        .await
                        .map(|_| None),
                );
            }
        }
    }
    if !deliveries.is_empty() {
        match messages::deliver_many(db, ctx.events.as_ref(), &deliveries).await {
            Ok(outcomes) => {
                for (slot, outcome) in delivery_slots.into_iter().zip(outcomes) {
                    results[slot] = Some(outcome.map(Some));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for slot in delivery_slots {
                    results[slot] = Some(Err(AppError::internal(anyhow::anyhow!("{reason}"))));
                }
            }
        }
    }

    let versions = bump_rooms(ctx, &results).await;

    // Record successes in one statement; failures and retries one by one
    // (they are rare).
    let successes: Vec<(Uuid, serde_json::Value)> = jobs
        .iter()
        .zip(&results)
        .filter_map(|((envelope, _), result)| match result {
            Some(Ok(Some(message))) => Some((envelope.task_id, json!({"message_id": message.id}))),
            Some(Ok(None)) => Some((envelope.task_id, json!({}))),
            _ => None,
        })
        .collect();
    let recorded = match tasks::succeed_many(db, &successes).await {
        Ok(()) => Ok(()),
        // Record each on its own; only those that still fail are retried.
        Err(_) => {
            let mut failed = std::collections::HashSet::new();
            for success in &successes {
                if tasks::succeed_many(db, std::slice::from_ref(success))
                    .await
                    .is_err()
                {
                    failed.insert(success.0);
                }
            }
            Err(failed)
        }
    };

    let mut outcomes = Vec::with_capacity(jobs.len());
    for ((envelope, last_attempt), result) in jobs.iter().zip(results) {
        let task_id = envelope.task_id;
        let outcome = match result {
            None => Outcome::Done,
            Some(Ok(stored)) => match &recorded {
                // The work is done (idempotently); the next delivery will
                // find it and record the success.
                Err(failed) if failed.contains(&task_id) => {
                    Outcome::Retry("recording the success failed".to_owned())
                }
                _ => {
                    if let Some(message) = stored {
                        ctx.events.publish(Event::MessageStored {
                            room_version: versions.get(&message.id).copied().unwrap_or(0),
                            message: StoredMessage::from(&message),
                        });
                    }
                    ctx.task_updated(task_id, TaskState::Success);
                    Outcome::Done
                }
            },
            Some(Err(AppError::Internal(source))) if !last_attempt => {
                tracing::warn!(%task_id, error = ?source, "job failed; it will be retried");
                let _ = tasks::release_for_retry(db, task_id).await;
                Outcome::Retry(source.to_string())
            }
            Some(Err(error)) => fail(ctx, task_id, error).await,
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// End a task in FAILURE.
/// Stored messages change their rooms: bump each room's version by its
/// messages before any of their tasks reads SUCCESS, so a read that starts
/// after that sees them. Each message's room version, by message id (0 where
/// it is not known), for readers that follow the events.
async fn bump_rooms(
    ctx: &JobContext,
    results: &[Option<AppResult<Option<message::Model>>>],
) -> HashMap<i64, u64> {
    let mut by_room: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for message in results.iter().flatten().flatten().flatten() {
        by_room.entry(message.room_id).or_default().push(message.id);
    }
    if by_room.is_empty() {
        return HashMap::new();
    }
    let changes: Vec<(Key, u64)> = by_room
        .iter()
        .map(|(room, ids)| (Key::Room(*room), ids.len() as u64))
        .collect();
    let bumped = ctx.events.versions().bump(&changes).await;
    let mut versions = HashMap::new();
    for ((_, mut ids), last) in by_room.into_iter().zip(bumped) {
        ids.sort_unstable();
        let first = (last + 1).saturating_sub(ids.len() as u64);
        for (n, id) in ids.into_iter().enumerate() {
            versions.insert(id, if last == 0 { 0 } else { first + n as u64 });
        }
    }
    versions
}

async fn fail(ctx: &JobContext, task_id: Uuid, error: AppError) -> Outcome {
    let kind = tasks::failure_kind(&error);
    let message = match &error {
        AppError::Internal(source) => {
            tracing::error!(%task_id, error = ?source, "job failed on its last attempt");
            "The task failed repeatedly and was abandoned".to_owned()
        }
        other => other.to_string(),
    };
    if let Err(e) = tasks::fail(&ctx.db, task_id, kind, &message).await {
        return Outcome::Retry(e.to_string());
    }
    tracing::info!(%task_id, kind, %message, "task failed");
    ctx.task_updated(task_id, TaskState::Failure);
    Outcome::Failed
}

/// Delay before retry number `attempt` (1-based): 0.1 s, 0.2 s, 0.4 s ... 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.saturating_sub(1).min(9)))
        .min(Duration::from_secs(30))
}

/// `first` and whatever else is already waiting, up to [`BATCH`] jobs.
fn batch_from<T>(first: T, receiver: &mut mpsc::Receiver<T>) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match receiver.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch
}

/// The embedded worker pool: `workers` tasks taking jobs from the in-process
/// queue. On shutdown, running jobs finish; queued ones stay unfinished in
/// the database and are queued again at the next start.
#[derive(Clone)]
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
                    let batch = {
                        let mut receiver = receiver.lock().await;
                        let first = tokio::select! {
                            biased;
                            _ = crate::shutdown::requested(&mut shutdown) => None,
                            job = receiver.recv() => job,
                        };
                        let Some(first) = first else { break };
                        batch_from(first, &mut receiver)
                    };
                    let jobs: Vec<(Envelope, bool)> = batch
                        .iter()
                        .map(|(envelope, attempt)| (envelope.clone(), *attempt >= max_attempts))
                        .collect();
                    let outcomes = execute_batch(&ctx, &jobs).await;
                    for ((envelope, attempt), outcome) in batch.into_iter().zip(outcomes) {
                        if let Outcome::Retry(reason) = outcome {
                            let delay = backoff(attempt);
                            tracing::debug!(task_id = %envelope.task_id, ?delay, %reason, "retrying job");
                            let queue = queue.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = queue.requeue(envelope, attempt + 1).await;
                            });
                        }
                    }
                }
            });
        }
        while pool.join_next().await.is_some() {}
        tracing::debug!("worker pool stopped");
    }
}

/// Gathers jobs from concurrent callers (Faktory handlers, one job each)
/// into batches for [`execute_batch`].
#[derive(Clone)]
pub struct Batcher {
    sender: mpsc::Sender<(Envelope, bool, oneshot::Sender<Outcome>)>,
}

impl Batcher {
    /// Start `runners` batch loops.
    pub fn start(ctx: JobContext, runners: usize) -> Self {
        let (sender, receiver) =
            mpsc::channel::<(Envelope, bool, oneshot::Sender<Outcome>)>(BATCH * 4);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..runners.max(1) {
            let ctx = ctx.clone();
            let receiver = receiver.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut receiver = receiver.lock().await;
                        let Some(first) = receiver.recv().await else {
                            break;
                        };
                        batch_from(first, &mut receiver)
                    };
                    let jobs: Vec<(Envelope, bool)> = batch
                        .iter()
                        .map(|(e, last, _)| (e.clone(), *last))
                        .collect();
                    let outcomes = execute_batch(&ctx, &jobs).await;
                    for ((_, _, reply), outcome) in batch.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
            });
        }
        Batcher { sender }
    }

    /// Run one job as part of the next batch.
    pub async fn run(&self, envelope: Envelope, last_attempt: bool) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        if self
            .sender
            .send((envelope, last_attempt, reply))
            .await
            .is_err()
        {
            return Outcome::Retry("the job runner has stopped".to_owned());
        }
        outcome
            .await
            .unwrap_or_else(|_| Outcome::Retry("the job runner has stopped".to_owned()))
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

//! The outbox dispatcher: moves submitted tasks into the job queue.
//!
//! Fresh tasks arrive through an in-memory hand-off and are pushed at once,
//! in batches; they were written as dispatched, so a push writes nothing.
//! Anything that did not make it (the queue was down, the hand-off was
//! full) is undispatched in the tasks table, where a periodic sweep finds
//! and pushes it. What a dead process held in its hand-off is pushed again
//! by the checks below, or at its next start. A task a queue took
//! but lost (a Faktory restarted without its data) is pushed again when it
//! has not started within `JOB_START_TIMEOUT_SECS`. A task may thus be
//! pushed twice in rare cases, never zero times; the worker is idempotent.

use std::{sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, mpsc, watch};

use super::{Envelope, queue::JobQueue};
use crate::domain::{now, tasks};

/// Largest batch pushed at once.
const BATCH: usize = 256;
/// A task younger than this is left to the hand-off, not the sweep.
const SWEEP_GRACE: Duration = Duration::from_secs(2);
/// Longest wait between retries of a failing queue.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wait before retrying a failing queue: 0.5, 1, 2, 4, then every 5 s.
/// False when shutdown came first.
async fn backed_off(failures: u32, shutdown: &mut watch::Receiver<bool>) -> bool {
    let wait = (Duration::from_millis(250) * (1 << failures.min(5))).min(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = crate::shutdown::requested(shutdown) => false,
    }
}

pub struct Dispatcher {
    pub db: DatabaseConnection,
    pub queue: Arc<dyn JobQueue>,
    /// Tasks just written; behind a lock so a restarted loop takes it over.
    pub handoff: Mutex<mpsc::Receiver<Envelope>>,
    pub sweep_every: Duration,
    /// A task handed to a queue that can lose jobs and not started within
    /// this is pushed again (`JOB_START_TIMEOUT_SECS`).
    pub start_timeout: Duration,
    /// A queued task that has not moved for this long is pushed again.
    pub lease: Duration,
}

impl Dispatcher {
    /// Run until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut handoff = self.handoff.lock().await;
        let mut sweep = tokio::time::interval_at(
            tokio::time::Instant::now() + self.sweep_every,
            self.sweep_every,
        );
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures: u32 = 0;
        let mut stop = shutdown.clone();
        // The hand-off closes when the last sender goes (the HTTP server
        // drained at shutdown): the sweep goes on until shutdown is asked.
        let mut handing_off = true;
        loop {
            // The sweep comes before the hand-off: under steady sending the
            // hand-off is never empty, and the sweep (what failed pushes
            // and a full hand-off left behind) must still get its turn.
            tokio::select! {
                biased;
                _ = crate::shutdown::requested(&mut shutdown) => break,
                _ = sweep.tick() => {
                    if failures > 0 && !backed_off(failures, &mut stop).await {
                        break;
                    }
                    match self.sweep().await {
                        Ok(_) => failures = 0,
                        Err(()) => failures = failures.saturating_add(1),
                    }
                    if failures == 0 {
                        if self.queue.loses_jobs() {
                            self.revive_unstarted().await;
                        }
                        self.revive_stalled().await;
                    }
                }
                received = handoff.recv(), if handing_off => {
                    let Some(first) = received else {
                        handing_off = false;
                        continue;
                    };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match handoff.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    // These were written as dispatched. On failure the
                    // mark is taken back, so the sweep retries them with
                    // back-off.
                    if self.push_claimed(&batch).await {
                        failures = 0;
                    } else {
                        failures = failures.saturating_add(1);
                    }
                }
            }
        }
        tracing::debug!("dispatcher stopped");
    }

    /// Push a batch. True on success.
    async fn push_only(&self, batch: &[Envelope]) -> bool {
        match self.queue.push(batch).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(queue = self.queue.name(), error = %e, jobs = batch.len(),
                    "could not push jobs; they will be retried");
                false
            }
        }
    }

    /// Push tasks written as dispatched (from the hand-off). On failure
    /// they are marked undispatched again, for the sweep (if even that
    /// fails, the start timeout or the lease brings them back). True on
    /// success.
    async fn push_claimed(&self, batch: &[Envelope]) -> bool {
        if self.push_only(batch).await {
            return true;
        }
        let ids: Vec<_> = batch.iter().map(|j| j.task_id).collect();
        if let Err(e) = tasks::unmark_dispatched(&self.db, &ids).await {
            // Still marked: they are pushed again once they have not
            // started in time, or have not moved for the lease.
            tracing::warn!(error = %e, "could not return unpushed tasks to the outbox");
        }
        false
    }

    /// Push a batch and record it as dispatched. True on success.
    async fn push(&self, batch: &[Envelope]) -> bool {
        if !self.push_only(batch).await {
            return false;
        }
        let ids: Vec<_> = batch.iter().map(|j| j.task_id).collect();
        if let Err(e) = tasks::mark_dispatched(&self.db, &ids).await {
            // Pushed but not recorded: the sweep may push them again, which
            // the idempotent worker tolerates.
            tracing::warn!(error = %e, "could not record dispatched tasks");
        }
        true
    }

    /// Push again the tasks handed to the queue that never started: the
    /// broker lost them (restarted without its data). The task id keeps
    /// the message stored once even if the broker had them after all.
    async fn revive_unstarted(&self) {
        let before = now() - chrono::Duration::from_std(self.start_timeout).unwrap_or_default();
        let unstarted = match tasks::unstarted(&self.db, before, BATCH as u64).await {
            Ok(unstarted) => unstarted,
            Err(e) => {
                tracing::warn!(error = %e, "unstarted-task sweep failed");
                return;
            }
        };
        let batch: Vec<Envelope> = unstarted
            .iter()
            .filter_map(|task| Envelope::from_task(task).ok())
            .collect();
        if !batch.is_empty() && self.push(&batch).await {
            tracing::warn!(
                count = batch.len(),
                timeout = ?self.start_timeout,
                "tasks handed to the queue did not start in time; pushed them again"
            );
        }
    }

    /// Push again the queued tasks that stopped moving (their queue lost
    /// them), at most once per lease each.
    async fn revive_stalled(&self) {
        let before = now() - chrono::Duration::from_std(self.lease).unwrap_or_default();
        let stalled = match tasks::stalled(&self.db, before, BATCH as u64).await {
            Ok(stalled) => stalled,
            Err(e) => {
                tracing::warn!(error = %e, "stalled-task sweep failed");
                return;
            }
        };
        let batch: Vec<Envelope> = stalled
            .iter()
            .filter_map(|task| Envelope::from_task(task).ok())
            .collect();
        if batch.is_empty() {
            return;
        }
        if self.queue.push(&batch).await.is_ok() {
            let ids: Vec<_> = batch.iter().map(|e| e.task_id).collect();
            let _ = tasks::touch(&self.db, &ids).await;
            tracing::warn!(count = ids.len(), "pushed stalled tasks again");
        }
    }

    /// Push every undispatched task old enough to have missed the hand-off.
    async fn sweep(&self) -> Result<usize, ()> {
        let mut pushed = 0;
        loop {
            let before = now() - chrono::Duration::from_std(SWEEP_GRACE).unwrap_or_default();
            let stale = tasks::undispatched(&self.db, before, BATCH as u64)
                .await
                .map_err(|e| tracing::warn!(error = %e, "outbox sweep failed"))?;
            if stale.is_empty() {
                return Ok(pushed);
            }
            let mut batch = Vec::with_capacity(stale.len());
            for task in &stale {
                match Envelope::from_task(task) {
                    Ok(envelope) => batch.push(envelope),
                    Err(reason) => {
                        tracing::error!(task_id = %task.id, %reason, "task cannot be dispatched");
                        let _ = tasks::fail(&self.db, task.id, "InvalidTask", &reason).await;
                    }
                }
            }
            let full = stale.len() == BATCH;
            if !batch.is_empty() {
                if !self.push(&batch).await {
                    return Err(());
                }
                pushed += batch.len();
                tracing::info!(count = batch.len(), "dispatched tasks from the outbox");
            }
            if !full {
                return Ok(pushed);
            }
        }
    }
}

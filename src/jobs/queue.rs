//! Where dispatched jobs go: the in-process queue or a Faktory server.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use super::Envelope;

/// A queue the dispatcher pushes jobs into.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
    /// Push jobs. An error means none of them may be assumed queued.
    async fn push(&self, jobs: &[Envelope]) -> Result<(), String>;
    /// Is the queue reachable? For readiness probes.
    async fn check(&self) -> Result<(), String>;
    /// A short name for logs and probes.
    fn name(&self) -> &'static str;
    /// Can a job the queue accepted vanish (a broker restarted without its
    /// data)? Then a task that does not start in time is pushed again.
    fn loses_jobs(&self) -> bool {
        false
    }
}

/// A job in the in-process queue, with the number of its next attempt.
pub type Queued = (Envelope, u32);

/// A bounded in-process queue; its receiving end feeds the worker pool.
#[derive(Clone)]
pub struct InProcessQueue {
    sender: mpsc::Sender<Queued>,
}

/// The worker pool's end of an [`InProcessQueue`].
pub type InProcessReceiver = Arc<Mutex<mpsc::Receiver<Queued>>>;

impl InProcessQueue {
    pub fn new(capacity: usize) -> (Self, InProcessReceiver) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (InProcessQueue { sender }, Arc::new(Mutex::new(receiver)))
    }

    /// Queue a job for its `attempt`-th run.
    pub async fn requeue(&self, job: Envelope, attempt: u32) -> Result<(), String> {
        self.sender
            .send((job, attempt))
            .await
            .map_err(|_| "the worker pool has stopped".to_owned())
    }
}

#[async_trait::async_trait]
impl JobQueue for InProcessQueue {
    async fn push(&self, jobs: &[Envelope]) -> Result<(), String> {
        for job in jobs {
            // Waits while the queue is full: back-pressure on the dispatcher.
            self.requeue(job.clone(), 1).await?;
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), String> {
        if self.sender.is_closed() {
            Err("the worker pool has stopped".to_owned())
        } else {
            Ok(())
        }
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}

//! Background loops that may not die silently.
//!
//! Each loop (the outbox dispatcher, the embedded worker pool, the task
//! purge) runs in a task of its own under [`Supervisor::spawn`]. If it
//! returns or panics before shutdown, the supervisor logs it, reports it in
//! `/readyz` (503) and `/metrics`, and starts it again after a back-off;
//! once it runs again the service is ready again.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

/// The state of every supervised loop.
#[derive(Default)]
pub struct Supervisor {
    /// Loop name -> why it is down (absent while it runs).
    down: Mutex<BTreeMap<&'static str, String>>,
}

impl Supervisor {
    /// Loops that stopped unexpectedly and are waiting to restart, with why.
    pub fn down(&self) -> Vec<(&'static str, String)> {
        self.down
            .lock()
            .map(|down| down.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    fn set(&self, name: &'static str, problem: Option<String>) {
        if let Ok(mut down) = self.down.lock() {
            match problem {
                Some(reason) => down.insert(name, reason),
                None => down.remove(name),
            };
        }
        crate::metrics::gauge(
            "background_loop_healthy",
            "loop",
            name,
            i64::from(!self.down().iter().any(|(n, _)| *n == name)),
        );
    }

    /// Run `make()`'s future until shutdown, starting it again whenever it
    /// ends early.
    pub fn spawn<F, Fut>(
        self: &Arc<Self>,
        name: &'static str,
        shutdown: watch::Receiver<bool>,
        mut make: F,
    ) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let supervisor = self.clone();
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                supervisor.set(name, None);
                let ended = tokio::spawn(make()).await;
                if *shutdown.borrow() {
                    return;
                }
                let reason = match ended {
                    Ok(()) => "stopped".to_owned(),
                    // The panic hook logged where; the message may quote
                    // data, and this reason shows in /readyz.
                    Err(e) if e.is_panic() => "panicked".to_owned(),
                    Err(e) => e.to_string(),
                };
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(100 * (1u64 << failures.min(7)))
                    .min(Duration::from_secs(10));
                tracing::error!(loop_name = name, %reason, ?wait,
                    "background loop stopped unexpectedly; restarting it");
                crate::metrics::count("background_restarts_total", "loop", name);
                supervisor.set(name, Some(reason));
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = crate::shutdown::requested(&mut stop) => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_loop_that_dies_is_reported_and_restarted() {
        let supervisor = Arc::new(Supervisor::default());
        let (stop, stopping) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = supervisor.spawn("flaky", stopping, move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run == 0 {
                    panic!("first run fails");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(supervisor.down()[0].0, "flaky");
        assert_eq!(supervisor.down()[0].1, "panicked");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(supervisor.down().is_empty());
        stop.send(true).unwrap();
        handle.abort();
    }
}

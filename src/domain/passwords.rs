//! Password hashing (argon2id), bounded.
//!
//! One hash costs about 19 MiB and a core for tens of milliseconds, and
//! anyone can start one (sign-up, login), so hashes run at most
//! [`Limits::concurrency`] at once in this process (the cores, by default),
//! the next [`Limits::queue`] wait their turn for at most
//! [`Limits::wait`], and anything beyond is refused at once with
//! `RATE_LIMITED` and a time to retry (HTTP 503 on the legacy paths). A
//! flood of sign-ups costs a bounded amount of memory and leaves the rest
//! of the service its cores.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{AppError, AppResult};

/// How much hashing may run and wait at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Hashes computed at once.
    pub concurrency: usize,
    /// Hashes waiting for a turn; more are refused at once.
    pub queue: usize,
    /// Longest a hash waits for its turn before it is refused.
    pub wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: 64,
            wait: Duration::from_secs(5),
        }
    }
}

struct Gate {
    limits: Limits,
    running: Semaphore,
    waiting: AtomicUsize,
}

static GATE: OnceLock<Gate> = OnceLock::new();

/// Set the limits, once per process, before the first hash (start-up);
/// later calls keep the first limits.
pub fn limit(limits: Limits) {
    let _ = GATE.set(Gate::new(limits));
}

impl Gate {
    fn new(limits: Limits) -> Self {
        let limits = Limits {
            concurrency: limits.concurrency.max(1),
            ..limits
        };
        Gate {
            running: Semaphore::new(limits.concurrency),
            waiting: AtomicUsize::new(0),
            limits,
        }
    }

    fn get() -> &'static Gate {
        GATE.get_or_init(|| Gate::new(Limits::default()))
    }

    /// A turn to hash, or `RATE_LIMITED` when too many wait already or
    /// the wait would be too long.
    async fn turn(&self) -> AppResult<SemaphorePermit<'_>> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        let busy = || {
            crate::metrics::count("rate_limited_total", "rule", "password_hashing");
            AppError::RateLimited {
                rule: "password_hashing",
                retry_after: Duration::from_secs(1),
            }
        };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy());
        }
        let turn = tokio::time::timeout(self.limits.wait, self.running.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match turn {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy()),
        }
    }
}

/// Run one hash on a blocking thread, in turn. The thread's allocator
/// keeps what a hash freed (19 MiB) for its next allocation, which on a
/// blocking thread may never come: it is handed back at once.
async fn in_turn<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
    let _turn = Gate::get().turn().await?;
    tokio::task::spawn_blocking(move || {
        let done = work();
        // SAFETY: `mi_collect` takes no pointer and only returns free
        // memory of this thread's heap to the system; it is harmless when
        // mimalloc is not the global allocator (its heap is then empty).
        unsafe { libmimalloc_sys::mi_collect(true) };
        done
    })
    .await
    .map_err(AppError::internal)
}

/// Hash a password with argon2id and a random salt, off the async runtime.
pub async fn hash(password: String) -> AppResult<String> {
    in_turn(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| AppError::internal(anyhow::anyhow!("password hashing failed: {e}")))
    })
    .await?
}

/// Check a password against a stored hash, off the async runtime. An
/// unreadable hash is a wrong password.
pub async fn verify(password: String, hash: String) -> AppResult<bool> {
    in_turn(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let hash = hash("s3cret".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("s3cret".into(), hash.clone()).await.unwrap());
        assert!(!verify("wrong".into(), hash).await.unwrap());
        assert!(!verify("s3cret".into(), "garbage".into()).await.unwrap());
    }

    #[tokio::test]
    async fn past_the_queue_hashing_is_refused_at_once() {
        let gate = Gate::new(Limits {
            concurrency: 1,
            queue: 1,
            wait: Duration::from_secs(60),
        });
        let running = gate.turn().await.unwrap();
        // One may wait; the next is refused without waiting.
        let waiting = gate.turn();
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        let refused = gate.turn().await.unwrap_err();
        assert_eq!(refused.code(), "RATE_LIMITED");
        drop(running);
        assert!(waiting.await.is_ok());
    }

    #[tokio::test]
    async fn a_turn_waits_at_most_the_deadline() {
        let gate = Gate::new(Limits {
            concurrency: 1,
            queue: 8,
            wait: Duration::from_millis(20),
        });
        let _running = gate.turn().await.unwrap();
        assert_eq!(gate.turn().await.unwrap_err().code(), "RATE_LIMITED");
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }
}

//! The gate a live stream passes before each delivery.

use std::{sync::Arc, time::Duration};

use super::Permissions;

/// Longest pause between two tries of a check that failed.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One viewer's gate: asked before every delivery of a live stream,
/// whether it comes from the event bus or from a re-read of the database,
/// after a lag or not. A check that fails (database down) is tried again
/// until it answers: a stream waits rather than deliver what it could not
/// check.
pub struct Gate {
    permissions: Arc<Permissions>,
    viewer: i64,
}

impl Gate {
    pub(super) fn new(permissions: Arc<Permissions>, viewer: i64) -> Self {
        Gate {
            permissions,
            viewer,
        }
    }

    pub fn viewer(&self) -> i64 {
        self.viewer
    }

    /// May the viewer read `room` now?
    pub async fn may_read(&self, room: i64) -> bool {
        let permissions = &self.permissions;
        // Boxed, here and below: a stream that awaits the gate then keeps
        // a pointer in its (long-lived) waiting future, not the database
        // read a check may need.
        Box::pin(retrying(|| permissions.may_read(room, self.viewer))).await
    }

    /// May the viewer see `user`'s presence through `room` now (both are
    /// current members, and `user` chose to be in it)?
    pub async fn sees_presence_in(&self, room: i64, user: i64) -> bool {
        let permissions = &self.permissions;
        Box::pin(retrying(|| {
            permissions.sees_presence(room, self.viewer, user)
        }))
        .await
    }
}

async fn retrying<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::error::AppResult<bool>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match check().await {
            Ok(answer) => return answer,
            Err(error) => {
                tracing::warn!(%error, "a live stream could not check a permission; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

//! Shutdown signalling shared by the server and the background services.
//!
//! A `watch::Receiver<bool>` turns true once, when the process should stop;
//! every long-running loop selects on [`requested`].

use tokio::sync::watch;

/// Resolves once shutdown is requested (or the sender is gone).
pub async fn requested(receiver: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it right here.
    let _ = receiver.wait_for(|stop| *stop).await.map(|_| ());
}

//! One connected life of a client: the token every loop watches, the tracker `disconnect()`
//! waits on, and the only way tasks are started.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The tasks of one `connect()` … `disconnect()` span.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Cancelled by `disconnect()`; subscriptions hold child tokens.
    pub token: CancellationToken,
    tracker: TaskTracker,
}

impl Lifecycle {
    /// Starts `fut` as a tracked task; a panic inside it is logged, never propagated.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(task = name, error = %reason, "a background task panicked; it has stopped");
            }
        });
    }

    /// Cancels every loop and waits up to `deadline` for the tasks to finish.
    ///
    /// Returns `false` when some task was still running at the deadline.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_are_contained_and_shutdown_waits() {
        let life = Lifecycle::default();
        life.spawn("boom", async { panic!("boom") });
        let token = life.token.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        life.spawn("waiter", async move {
            token.cancelled().await;
            let _ = tx.send(());
        });
        assert!(life.shutdown(Duration::from_secs(5)).await);
        rx.await.unwrap();
    }
}

//! One connected life of a client: the token every loop watches, the tracker `disconnect()`
//! waits on, and the only way tasks are started.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The tasks of one `connect()` … `disconnect()` span.
///
/// Connection tasks have a token and tracker of their own: they stop only after every
/// loop has stopped, because stopping a loop needs the command connection (it sends
/// `CLIENT UNBLOCK`, and running callbacks still publish and acknowledge).
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Cancelled by `disconnect()`; subscriptions and consumers hold child tokens.
    pub token: CancellationToken,
    tracker: TaskTracker,
    /// Cancelled last, for the tasks that keep connections up.
    pub conn_token: CancellationToken,
    conn_tracker: TaskTracker,
}

impl Lifecycle {
    /// Starts `fut` as a tracked task; a panic inside it is logged, never propagated.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        spawn_on(&self.tracker, name, fut);
    }

    /// Starts a connection task: it runs until [`Lifecycle::conn_token`] is cancelled, which
    /// happens after every other task has finished.
    pub fn spawn_connection<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        spawn_on(&self.conn_tracker, name, fut);
    }

    /// Cancels every loop, waits up to `deadline` for them, then stops the connections.
    ///
    /// Returns `false` when some loop was still running at the deadline.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        self.conn_token.cancel();
        self.conn_tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.conn_tracker.wait()).await;
        finished
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn spawn_on<F>(tracker: &TaskTracker, name: &'static str, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tracker.spawn(async move {
        if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
            tracing::error!(task = name, error = %panic_message(&*panic), "a background task panicked; it has stopped");
        }
    });
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

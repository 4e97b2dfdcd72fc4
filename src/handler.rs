//! How the core hands messages to user code: a trait that JavaScript implements with a
//! ThreadsafeFunction and cargo tests implement with a channel.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::codec::Entry;

/// The entries one read returned for one stream, shared by every subscription that gets them.
///
/// A read is decoded once however many subscriptions of the stream receive it: each gets a
/// [`Batch`] that points into the same `Read` (from its own position on), so a thousand
/// subscriptions of one stream cost one read and one decode per message, not a thousand.
#[derive(Debug)]
pub struct Read {
    /// Unique in the process: lets a handler cache what it made of this read (the binding
    /// parses the JSON once per read, not once per subscription).
    pub seq: u64,
    /// The stream they were read from.
    pub stream: Arc<str>,
    /// The entries, oldest first.
    pub entries: Vec<Entry>,
}

static NEXT_READ: AtomicU64 = AtomicU64::new(1);

impl Read {
    /// Wraps the entries of one read with a fresh sequence number.
    pub fn new(stream: Arc<str>, entries: Vec<Entry>) -> Arc<Read> {
        Arc::new(Read {
            seq: NEXT_READ.fetch_add(1, Ordering::Relaxed),
            stream,
            entries,
        })
    }
}

/// Entries of one stream, in id order, delivered in one call: the tail of a [`Read`] from
/// the first entry this receiver has not seen.
#[derive(Debug, Clone)]
pub struct Batch {
    read: Arc<Read>,
    from: usize,
}

impl Batch {
    /// A batch of every entry of a new read (one receiver: consumers, tests).
    pub fn new(stream: Arc<str>, entries: Vec<Entry>) -> Self {
        Batch {
            read: Read::new(stream, entries),
            from: 0,
        }
    }

    /// The entries of `read` from index `from` on (clamped to its length).
    pub fn shared(read: Arc<Read>, from: usize) -> Self {
        let from = from.min(read.entries.len());
        Batch { read, from }
    }

    /// The stream the entries were read from.
    pub fn stream(&self) -> &Arc<str> {
        &self.read.stream
    }

    /// The entries of this batch, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.read.entries[self.from..]
    }

    /// The whole read this batch is part of.
    pub fn read(&self) -> &Arc<Read> {
        &self.read
    }

    /// Where this batch starts in [`Batch::read`]'s entries.
    pub fn offset(&self) -> usize {
        self.from
    }

    /// Number of entries in this batch.
    pub fn len(&self) -> usize {
        self.read.entries.len() - self.from
    }

    /// Whether the batch has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One message whose callback threw or rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackFailure {
    /// The entry id.
    pub id: String,
    /// What the callback threw.
    pub error: String,
}

/// The handler can never be called again (its JavaScript environment is gone).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the callback can no longer be called: {0}")]
pub struct HandlerGone(pub String);

/// What happened to one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// How many messages, from the start of the batch, were handed to the callback; fewer
    /// than the batch when the subscription or consumer was stopped part-way.
    pub handled: usize,
    /// The handled messages whose callback threw or rejected.
    pub failures: Vec<CallbackFailure>,
}

impl Outcome {
    /// The outcome with `handled` clamped to `n`: a handler that reports more messages than
    /// it was given cannot make the caller index past the batch.
    pub fn clamped(mut self, n: usize) -> Self {
        self.handled = self.handled.min(n);
        self
    }

    /// Every one of `n` messages was handled without failure.
    pub fn all_ok(n: usize) -> Self {
        Outcome {
            handled: n,
            failures: Vec::new(),
        }
    }
}

/// The outcome of one batch, or a handler that is gone.
pub type HandleResult = Result<Outcome, HandlerGone>;

/// Where a batch's result goes when the handler reports it itself ([`Handler::handle_then`]).
///
/// Dropped without being called, it reports the handler gone: the subscription ends.
pub trait Report: Send + 'static {
    /// Takes the batch's result; called once, on whatever thread learned it (the
    /// JavaScript thread included), so it only counts and wakes, never blocks.
    fn report(self: Box<Self>, result: HandleResult);
}

/// User code that receives batches.
///
/// An implementation processes the messages of a batch one at a time, in order, and
/// resolves once every message was handled. By default the core never calls it again
/// before that; see [`Handler::max_in_flight`].
pub trait Handler: Send + Sync + 'static {
    /// Handles every message of `batch`, reporting those that failed.
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult>;

    /// Handles `batch` as [`Handler::handle`] does, and gives its result to `report`
    /// instead of returning a future for the caller to poll. A handler whose results are
    /// known on another thread (JavaScript's) reports from there, so the task that handed
    /// the batch over is not woken once per batch just to learn it.
    ///
    /// It is called on the delivery task and must not block: an override queues the batch
    /// and returns. Dropping `report` without calling it means the handler is gone, and the
    /// subscription ends. By default a task of its own awaits [`Handler::handle`]'s future (so
    /// the futures of the batches in flight are polled concurrently) and reports a panic in
    /// that future as the handler gone, with the panic's message (a panic in `handle` itself
    /// unwinds the caller, the delivery task); must be called within a tokio runtime.
    fn handle_then(&self, batch: Batch, report: Box<dyn Report>) {
        let handled = AssertUnwindSafe(self.handle(batch)).catch_unwind();
        tokio::spawn(async move {
            let result = handled.await.unwrap_or_else(|panic| {
                Err(HandlerGone(format!(
                    "the handler panicked: {}",
                    crate::lifecycle::panic_message(&*panic)
                )))
            });
            report.report(result);
        });
    }

    /// How many batches of one subscription may be handed over before the first resolved.
    ///
    /// An implementation that returns more than 1 takes each batch when `handle` is called
    /// (not when its future is first polled) and processes batches strictly in call order;
    /// handing the next batch over early saves a round trip per batch. With the default
    /// [`Handler::handle_then`], each batch's future is polled in a task of its own, so the
    /// order is the implementation's to keep, not the polling's. Consumers always
    /// hand over one batch at a time (each is acknowledged before the next is read).
    fn max_in_flight(&self) -> usize {
        1
    }

    /// Called once when the core ends a subscription on its own (its `"$"` could not be
    /// resolved, its delivery stopped: a handler that panicked or whose callback is gone),
    /// never after `unsubscribe` or `disconnect`. The binding stops its side here: nothing
    /// more will be handed over.
    fn ended(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PanicsWhenPolled;

    impl Handler for PanicsWhenPolled {
        fn handle(&self, _batch: Batch) -> BoxFuture<'static, HandleResult> {
            Box::pin(async { panic!("polled into a wall") })
        }
    }

    struct ToChannel(tokio::sync::oneshot::Sender<HandleResult>);

    impl Report for ToChannel {
        fn report(self: Box<Self>, result: HandleResult) {
            let _ = self.0.send(result);
        }
    }

    /// The default `handle_then` reports a handler whose future panics as gone, with the
    /// panic's message (it used to drop the report, which says only that it was dropped).
    #[tokio::test]
    async fn a_panic_in_the_default_handle_then_is_reported_with_its_message() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        PanicsWhenPolled.handle_then(Batch::new("s".into(), Vec::new()), Box::new(ToChannel(tx)));
        let reported = rx.await.expect("the result is reported, not dropped");
        let gone = reported.expect_err("a panic is the handler gone");
        assert_eq!(gone.0, "the handler panicked: polled into a wall");
    }
}

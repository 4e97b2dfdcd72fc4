//! How the core hands messages to user code: a trait that JavaScript implements with a
//! ThreadsafeFunction and cargo tests implement with a channel.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::codec::Entry;

/// Entries of one stream, in id order, delivered in one call.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream they were read from.
    pub stream: Arc<str>,
    /// The entries, oldest first.
    pub entries: Vec<Entry>,
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

/// User code that receives batches.
///
/// An implementation processes the messages of a batch one at a time, in order, and
/// resolves once every message was handled. By default the core never calls it again
/// before that; see [`Handler::max_in_flight`].
pub trait Handler: Send + Sync + 'static {
    /// Handles every message of `batch`, reporting those that failed.
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult>;

    /// How many batches of one subscription may be handed over before the first resolved.
    ///
    /// An implementation that returns more than 1 takes each batch when `handle` is called
    /// (not when its future is first polled) and processes batches strictly in call order;
    /// handing the next batch over early saves a round trip per batch. Consumers always
    /// hand over one batch at a time (each is acknowledged before the next is read).
    fn max_in_flight(&self) -> usize {
        1
    }
}

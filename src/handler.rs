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
/// resolves once every message was handled; the core never calls it again before that.
pub trait Handler: Send + Sync + 'static {
    /// Handles every message of `batch`, reporting those that failed.
    fn handle(&self, batch: Batch) -> BoxFuture<'static, HandleResult>;
}

//! Where the reply of a queued command goes: to its caller, exactly once.

use redis::{RedisError, Value};

/// What a queued command resolves to.
pub type Reply = std::result::Result<Option<Value>, RedisError>;

/// Where the reply of a queued command goes: called exactly once, from whichever task
/// finishes the command. Dropped unanswered (a task cancelled, the runtime shutting down),
/// it is called with `Ok(None)`: Redis unavailable. No caller is ever left waiting.
pub struct ReplyTo(Option<Box<dyn FnOnce(Reply) + Send>>);

impl ReplyTo {
    /// Sends the reply to `f`.
    pub fn new(f: impl FnOnce(Reply) + Send + 'static) -> Self {
        ReplyTo(Some(Box::new(f)))
    }

    /// Delivers `reply`.
    pub fn send(mut self, reply: Reply) {
        if let Some(f) = self.0.take() {
            f(reply);
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Ok(None));
        }
    }
}

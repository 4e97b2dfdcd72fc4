//! Broadcast subscriptions: subscribe, unsubscribe, and whether one is active.

use std::future::Future;
use std::sync::Arc;

use super::Client;
use crate::error::Result;
use crate::handler::Handler;
use crate::subscribe::{SubscribeOptions, SubscriptionId};

impl Client {
    /// Registers a subscription of `handler` to `stream` at once (so that `unsubscribe`
    /// reaches it from now on) and returns its id with a future that resolves once `"$"`
    /// is resolved (see [`Subscriptions::start_subscribe`](crate::subscribe::Subscriptions::start_subscribe)). Needs a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name (the future: [`Error::Refused`] for a key
    /// that is not a stream); [`Error::Closed`] after `disconnect()`.
    pub fn start_subscribe(
        &self,
        stream: &str,
        handler: Arc<dyn Handler>,
        opts: SubscribeOptions,
    ) -> Result<(
        SubscriptionId,
        impl Future<Output = Result<()>> + Send + 'static,
    )> {
        let s = self.session_for_reading()?;
        let started = s.hub.start_subscribe(&s.life, stream, handler, opts)?;
        self.read_from(&s, stream);
        Ok(started)
    }

    /// Subscribes `handler` to `stream`; resolves once every entry added afterwards is
    /// sure to be delivered.
    ///
    /// # Errors
    /// As [`Client::start_subscribe`].
    pub async fn subscribe(
        &self,
        stream: &str,
        handler: Arc<dyn Handler>,
        opts: SubscribeOptions,
    ) -> Result<SubscriptionId> {
        let (id, resolved) = self.start_subscribe(stream, handler, opts)?;
        resolved.await?;
        Ok(id)
    }

    /// Removes every subscription of `stream`; returns how many there were.
    pub fn unsubscribe(&self, stream: &str) -> usize {
        self.current().map_or(0, |s| s.hub.unsubscribe(stream))
    }

    /// Removes one subscription; returns whether it was active.
    pub fn unsubscribe_id(&self, id: SubscriptionId) -> bool {
        self.current().is_some_and(|s| s.hub.unsubscribe_one(id))
    }

    /// Whether subscription `id` is active.
    pub fn is_subscribed(&self, id: SubscriptionId) -> bool {
        self.current().is_some_and(|s| s.hub.contains(id))
    }
}

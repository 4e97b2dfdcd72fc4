//! Consumer groups: create a group, start and stop a consumer, acknowledge entries.

use std::future::Future;
use std::sync::Arc;

use super::session::Found;
use super::{Client, DISCONNECT_DEADLINE};
use crate::codec::{check_stream_name, StartId, StreamId};
use crate::error::Result;
use crate::group::ConsumeOptions;
use crate::handler::Handler;
use crate::status::Counters;

impl Client {
    /// Creates a consumer group (and the stream when missing); `Ok(true)` also when it
    /// existed, `Ok(false)` when Redis is unavailable or the client is closed.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names; [`Error::Refused`] when Redis refuses it (a key
    /// that is not a stream, a missing permission).
    pub async fn create_consumer_group(
        &self,
        stream: &str,
        group: &str,
        start: StartId,
    ) -> Result<bool> {
        match self.session()? {
            Found::Open(s) => s.groups.create_group(stream, group, start).await,
            Found::Closed => {
                check_stream_name(stream)?;
                self.closed("createConsumerGroup");
                Ok(false)
            }
        }
    }

    /// Registers a consumer of `group` on `stream` named `consumer` at once (so that
    /// `stop_consumer` reaches it from now on) and returns a future that resolves once the
    /// group is known to exist (see [`Groups::start_consume`](crate::group::Groups::start_consume)). Needs a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names or a consumer already running on this client
    /// (the future: [`Error::NoGroup`]); [`Error::Closed`] after `disconnect()`.
    pub fn start_consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let s = self.session_for_reading()?;
        let started = s
            .groups
            .start_consume(&s.life, stream, group, consumer, handler, opts)?;
        self.read_from(&s, stream);
        Ok(started)
    }

    /// Starts a consumer of `group` on `stream` named `consumer`.
    ///
    /// # Errors
    /// As [`Client::start_consume`].
    pub async fn consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<()> {
        self.start_consume(stream, group, consumer, handler, opts)?
            .await
    }

    /// Stops a consumer; waits (bounded) for its running callback and its ack. Returns
    /// whether it was running.
    pub async fn stop_consumer(&self, stream: &str, group: &str, consumer: &str) -> bool {
        match self.current() {
            Some(s) => {
                s.groups
                    .stop(stream, group, consumer, DISCONNECT_DEADLINE)
                    .await
            }
            None => false,
        }
    }

    /// Acknowledges `ids` in one XACK; the number acknowledged, `0` when unavailable or
    /// the client is closed.
    ///
    /// # Errors
    /// [`Error::InvalidArg`], [`Error::NoGroup`].
    pub async fn acknowledge(&self, stream: &str, group: &str, ids: &[StreamId]) -> Result<u64> {
        match self.session()? {
            Found::Open(s) => {
                let n = s.groups.ack(stream, group, ids).await?;
                Counters::add(&self.counters.acked, n);
                Ok(n)
            }
            Found::Closed => {
                check_stream_name(stream)?;
                self.closed("acknowledgeMessages");
                Ok(0)
            }
        }
    }
}

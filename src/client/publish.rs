//! Publishing: one entry or a batch, queued in call order; fail open.

use tokio::sync::oneshot;

use super::session::Found;
use super::Client;
use crate::codec::{check_stream_name, PublishId, StreamId};
use crate::error::Result;
use crate::publish;
use crate::status::Counters;
use crate::trim::Trim;

impl Client {
    /// Queues one entry whose `data` is the JSON text `json` (trimming the stream in the
    /// same command when `trim` is given); `done` receives the result, exactly once, from a
    /// runtime thread (see [`publish::enqueue`]). Never blocks: the order of calls is the
    /// order of the entries. Connects a client that was never connected; after
    /// `disconnect()`, `done` receives `Ok(None)` (fail open). `trace`: the W3C trace context
    /// (`traceparent[;tracestate]`) stored with the entry, when the caller is inside a trace.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name or an oversized payload (`done` is then
    /// dropped uncalled).
    pub fn start_publish(
        &self,
        stream: &str,
        json: &str,
        id: PublishId,
        trim: Option<Trim>,
        trace: Option<&str>,
        done: impl FnOnce(Result<Option<StreamId>>) + Send + 'static,
    ) -> Result<()> {
        check_stream_name(stream)?;
        publish::check_payload("data", json, self.config.max_payload_bytes)?;
        match self.session()? {
            Found::Open(s) => {
                s.touched.add(stream);
                let (payload, counters) = (publish::Payload { json, trace }, self.counters.clone());
                publish::enqueue(&s.cmd, counters, stream, payload, id, trim, done);
            }
            Found::Closed => {
                self.closed("publishMessage");
                Counters::add(&self.counters.publish_failed, 1);
                Counters::add(&self.counters.publish_closed, 1);
                done(Ok(None));
            }
        }
        Ok(())
    }

    /// Publishes one entry; `Ok(None)` when Redis is unavailable or the client is closed
    /// (fail open).
    ///
    /// # Errors
    /// As [`Client::start_publish`], [`Error::InvalidArg`] when Redis refuses the id, and
    /// [`Error::Refused`] when Redis refuses the entry otherwise (`NOPERM`, `WRONGTYPE`).
    pub async fn publish(
        &self,
        stream: &str,
        json: &str,
        id: PublishId,
        trim: Option<Trim>,
    ) -> Result<Option<StreamId>> {
        let (tx, rx) = oneshot::channel();
        self.start_publish(stream, json, id, trim, None, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.unwrap_or(Ok(None))
    }

    /// Queues many entries back to back, order kept; `done` receives one id (or `None`)
    /// per item, exactly once, from a runtime thread (see [`publish::enqueue_batch`]); `trace`
    /// as for [`Client::start_publish`], stored with every entry.
    ///
    /// # Errors
    /// As [`Client::start_publish`].
    pub fn start_publish_batch(
        &self,
        stream: &str,
        items: &[String],
        trace: Option<&str>,
        done: impl FnOnce(Result<Vec<Option<StreamId>>>) + Send + 'static,
    ) -> Result<()> {
        check_stream_name(stream)?;
        for (i, json) in items.iter().enumerate() {
            publish::check_payload(&format!("items[{i}]"), json, self.config.max_payload_bytes)?;
        }
        match self.session()? {
            Found::Open(s) => {
                s.touched.add(stream);
                publish::enqueue_batch(&s.cmd, self.counters.clone(), stream, items, trace, done);
            }
            Found::Closed => {
                self.closed("publishBatch");
                Counters::add(&self.counters.publish_failed, items.len() as u64);
                Counters::add(&self.counters.publish_closed, items.len() as u64);
                done(Ok(vec![None; items.len()]));
            }
        }
        Ok(())
    }

    /// Publishes many entries, order kept; one id (or `None`) per item.
    ///
    /// # Errors
    /// As [`Client::start_publish`].
    pub async fn publish_batch(
        &self,
        stream: &str,
        items: &[String],
    ) -> Result<Vec<Option<StreamId>>> {
        let (tx, rx) = oneshot::channel();
        self.start_publish_batch(stream, items, None, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.unwrap_or_else(|_| Ok(vec![None; items.len()]))
    }
}

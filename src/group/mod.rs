//! Consumer groups: the work-queue half.
//!
//! - this module: the API (`createConsumerGroup`, starting and stopping consumers, XACK);
//! - [`options`]: a consumer's options and their validation;
//! - [`registry`]: the running consumers of a client ([`Groups`], [`ConsumerKey`]);
//! - [`consumer`]: one consumer's loop, on a [`BlockingReader`] of its own (a blocking
//!   XREADGROUP can never share the command connection): its own pending entries first (what
//!   a crash left behind), then new ones, one XACK per batch, claims of entries abandoned by
//!   dead consumers;
//! - [`dead_letter`]: moving poison messages to a dead-letter stream;
//! - [`step`]: what a step of that loop can fail with;
//! - [`commands`]: the XACK, XREADGROUP, XAUTOCLAIM and XPENDING commands they send.
//!
//! A blocked XREADGROUP is never dropped: it may already have put entries in this
//! consumer's pending list. Stopping wakes it with `CLIENT UNBLOCK` and lets it return.

mod commands;
mod consumer;
mod dead_letter;
mod options;
mod registry;
mod step;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::codec::{check_stream_name, parse_groups_info, StartId, StreamId};
use crate::connection::{BlockingReader, CommandConn, Placement, Unblocker};
use crate::error::{classify, refusal, Error, Failure, Result};
use crate::handler::Handler;
use crate::lifecycle::Lifecycle;
use crate::status::GroupInfo;

pub use dead_letter::DEAD_LETTER_SUFFIX;
pub use options::{
    check_name, concurrency, ConsumeInput, ConsumeOptions, DEFAULT_RETRY_DELAY, MAX_CONCURRENCY,
};
pub use registry::{ConsumerKey, Groups};

use commands::{xpending_summary, AckQuery};
use registry::{Acks, Consumer, Finished};

fn nogroup(stream: &str, group: &str) -> Error {
    Error::NoGroup {
        stream: stream.to_owned(),
        group: group.to_owned(),
    }
}

impl Groups {
    /// Each consumer group this client consumes, as `XINFO GROUPS` says now (one command per
    /// consumed stream, sent together); groups Redis cannot tell about now are left out.
    pub async fn infos(&self) -> Vec<GroupInfo> {
        let mut wanted: BTreeMap<Arc<str>, Vec<String>> = BTreeMap::new();
        for c in self.consumers().values() {
            let groups = wanted.entry(c.stream.clone()).or_default();
            if !groups.contains(&c.group) {
                groups.push(c.group.clone());
            }
        }
        let asks = wanted.into_iter().map(|(stream, groups)| async move {
            let mut cmd = redis::cmd("XINFO");
            cmd.arg("GROUPS").arg(&*stream);
            let reply = self.cmd.query::<Value, _>(&cmd).await;
            let checked_at_ms = crate::codec::now_ms();
            match reply.map(|v| v.map(|v| parse_groups_info(&v))) {
                Ok(Some(Ok(facts))) => {
                    let stream = &stream;
                    let infos = facts.into_iter().filter(|f| groups.contains(&f.name)).map(
                        |f| async move {
                            let oldest_pending_ms = if f.pending > 0 {
                                self.oldest_pending_ms(stream, &f.name).await
                            } else {
                                None
                            };
                            GroupInfo {
                                stream: stream.to_string(),
                                group: f.name,
                                lag: f.lag,
                                pending: f.pending,
                                last_delivered_id: f.last_delivered,
                                consumers: f.consumers,
                                checked_at_ms,
                                oldest_pending_ms,
                            }
                        },
                    );
                    futures_util::future::join_all(infos).await
                }
                Ok(Some(Err(e))) => {
                    warn!(stream = %stream, error = %e, "cannot read XINFO GROUPS for the status");
                    Vec::new()
                }
                // Unavailable, or the stream is gone: nothing to report now.
                Ok(None) | Err(_) => Vec::new(),
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The millisecond part of the oldest pending entry's id of `group` (XPENDING's summary);
    /// `None` when nothing is pending or Redis cannot tell now.
    async fn oldest_pending_ms(&self, stream: &str, group: &str) -> Option<u64> {
        let reply = self
            .cmd
            .query::<Value, _>(&xpending_summary(stream, group))
            .await
            .ok()??;
        let Value::Array(parts) = reply else {
            return None;
        };
        let first: String = redis::FromRedisValue::from_redis_value_ref(parts.get(1)?).ok()?;
        first.parse::<StreamId>().ok().map(|id| id.ms)
    }

    /// Creates `group` on `stream` (and the stream, if missing).
    ///
    /// `Ok(true)` when the group exists afterwards (including when it existed before),
    /// `Ok(false)` when Redis is unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names; [`Error::Refused`] when Redis refuses it (a key that
    /// is not a stream, a missing permission).
    pub async fn create_group(&self, stream: &str, group: &str, start: StartId) -> Result<bool> {
        check_stream_name(stream)?;
        check_name("group", group)?;
        let start = match start {
            StartId::Latest => "$".to_owned(),
            StartId::After(id) => id.to_string(),
        };
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg(&start)
            .arg("MKSTREAM");
        match self.cmd.query::<Value, _>(&cmd).await {
            Ok(Some(_)) => {
                info!(stream, group, start = %start, "consumer group created");
                Ok(true)
            }
            Ok(None) => {
                warn!(
                    stream,
                    group, "Redis unavailable; consumer group not created"
                );
                Ok(false)
            }
            Err(e) => match classify(&e) {
                Failure::AlreadyExists => Ok(true),
                _ => Err(refusal(stream, &e)),
            },
        }
    }

    /// Registers a consumer and starts its loop: the consumer exists (and `stop` reaches it)
    /// when this returns, before anything is awaited.
    ///
    /// The returned future resolves once the group is known to exist (or Redis is
    /// unavailable: the loop then runs anyway and waits for it).
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names, or when this client already runs that consumer
    /// (at once); from the future, [`Error::NoGroup`] when the group or stream does not exist
    /// (the consumer is then removed again).
    pub fn start_consume(
        self: &Arc<Self>,
        life: &Lifecycle,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        check_stream_name(stream)?;
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        let k = ConsumerKey::new(stream, group, consumer);
        let reader =
            BlockingReader::new("consumer", &self.cmd, consumer_placement(&self.cmd, stream));
        let c = Arc::new(Consumer {
            stream: Arc::from(stream),
            group: group.to_owned(),
            name: consumer.to_owned(),
            count: opts.count.unwrap_or(self.cfg.default_count),
            block: opts.block.unwrap_or(self.cfg.default_block),
            dead_letter: opts
                .dead_letter_stream
                .clone()
                .unwrap_or_else(|| format!("{stream}{DEAD_LETTER_SUFFIX}")),
            opts,
            token: life.token.child_token(),
            slot: reader.slot(),
            finished: watch::Sender::new(false),
            state: reader.state(),
            acks: Acks::default(),
        });
        {
            let mut consumers = self.consumers();
            if consumers.contains_key(&k) {
                return Err(Error::invalid(
                    "consumer",
                    format!("{k} is already consuming on this client; call stopConsumer first"),
                ));
            }
            consumers.insert(k.clone(), c.clone());
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let groups = self.clone();
        life.spawn("consumer", async move {
            // Runs however this task ends (a panic included): the consumer leaves the
            // registry, so it can be started again, and `stop` stops waiting for it.
            let finished = Finished {
                groups: groups.clone(),
                key: k,
                c: c.clone(),
            };
            if let Err(e) = groups.probe(&c).await {
                // Out of the registry before the caller hears of it: a start that failed
                // leaves nothing behind, and the same consumer can be started at once.
                drop(finished);
                let _ = ready_tx.send(Err(e));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            info!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer started");
            consumer::ConsumerLoop::new(groups, c, handler, reader)
                .run()
                .await;
        });
        Ok(async move {
            ready_rx.await.unwrap_or_else(|_| {
                Err(Error::Protocol(
                    "the consumer task ended before it started".into(),
                ))
            })
        })
    }

    /// Registers a consumer and waits until its group is known to exist; see
    /// [`Groups::start_consume`].
    ///
    /// # Errors
    /// As [`Groups::start_consume`].
    pub async fn consume(
        self: &Arc<Self>,
        life: &Lifecycle,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<()> {
        self.start_consume(life, stream, group, consumer, handler, opts)?
            .await
    }

    /// Checks that the consumer's group exists (creating it with `createIfMissing`).
    async fn probe(&self, c: &Consumer) -> Result<()> {
        let (stream, group) = (&*c.stream, c.group.as_str());
        match self
            .cmd
            .query::<Value, _>(&xpending_summary(stream, group))
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                warn!(
                    stream,
                    group,
                    consumer = %c.name,
                    "Redis unavailable; the consumer starts and waits for it"
                );
                Ok(())
            }
            Err(e) => match classify(&e) {
                Failure::NoGroup if c.opts.create_if_missing => self
                    .create_group(stream, group, StartId::After(StreamId::ZERO))
                    .await
                    .map(|_| ()),
                Failure::NoGroup => Err(nogroup(stream, group)),
                _ => Err(refusal(stream, &e)),
            },
        }
    }

    /// Stops a consumer: no new reads; a running callback finishes and is acknowledged.
    /// Waits up to `deadline` for that; returns whether such a consumer was running.
    pub async fn stop(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        deadline: Duration,
    ) -> bool {
        let found = self
            .consumers()
            .get(&ConsumerKey::new(stream, group, consumer))
            .cloned();
        let Some(c) = found else {
            return false;
        };
        c.token.cancel();
        self.wake(&c).await;
        let mut done = c.finished.subscribe();
        if tokio::time::timeout(deadline, done.wait_for(|f| *f))
            .await
            .is_err()
        {
            warn!(
                stream,
                group,
                consumer,
                deadline_ms = deadline.as_millis() as u64,
                "stopConsumer: the callback was still running at the deadline"
            );
        }
        true
    }

    /// Wakes every consumer's blocked read (used by `disconnect()` after cancelling).
    pub async fn interrupt_all(&self) {
        let all: Vec<Arc<Consumer>> = self.consumers().values().cloned().collect();
        for c in &all {
            self.wake(c).await;
        }
    }

    async fn wake(&self, c: &Consumer) {
        Unblocker {
            cmd: &self.cmd,
            slot: &c.slot,
        }
        .unblock(|_| true, None)
        .await;
    }

    /// XACK of `ids` in one command; the number acknowledged, `0` when unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names; [`Error::NoGroup`] for a missing group.
    pub async fn ack(&self, stream: &str, group: &str, ids: &[StreamId]) -> Result<u64> {
        check_stream_name(stream)?;
        check_name("group", group)?;
        if ids.is_empty() {
            return Ok(0);
        }
        // A consumer of this client with deleteOnAck owns the group's entries: they go when
        // acknowledged, by it or by the caller (autoAck: false, or `consume()`'s ack()).
        let delete = self
            .consumers()
            .values()
            .any(|c| &*c.stream == stream && c.group == group && c.opts.delete_on_ack);
        let q = AckQuery::new(stream, group, ids, delete, &self.cmd);
        match self.cmd.query::<Vec<Value>, _>(&q.pipe).await {
            Ok(Some(reply)) => Ok(q.acked(&reply)),
            Ok(None) => {
                // A consumer of the group in this client sends them with its next read: its
                // own connection may be up while this one is not, and it re-reads its pending
                // entries only after a reconnect, so an ack dropped here would leave an entry
                // that was handled pending for good.
                let running = self
                    .consumers()
                    .values()
                    .find(|c| &*c.stream == stream && c.group == group)
                    .cloned();
                match running {
                    Some(c) => {
                        warn!(stream, group, consumer = %c.name, count = ids.len(), "Redis unavailable; the running consumer acknowledges them when it can");
                        c.acks.extend(ids.to_vec());
                    }
                    None => warn!(
                        stream,
                        group,
                        count = ids.len(),
                        "Redis unavailable; nothing acknowledged"
                    ),
                }
                Ok(0)
            }
            Err(e) => match classify(&e) {
                Failure::NoGroup => Err(nogroup(stream, group)),
                _ => Err(refusal(stream, &e)),
            },
        }
    }
}

/// Where a consumer reads: the master of its stream's slot in a cluster, else the primary.
fn consumer_placement(cmd: &CommandConn, stream: &str) -> Placement {
    if cmd.target().is_cluster() {
        Placement::KeyOwner(Arc::from(stream))
    } else {
        Placement::Primary
    }
}

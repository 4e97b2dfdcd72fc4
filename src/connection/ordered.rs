//! Commands whose order matters (an XADD stream's order is what its publishers called, not
//! what a scheduler picked): queued without blocking, sent in exactly the order of the calls
//! as automatic pipelines, and kept in an offline buffer while Redis is away.
//!
//! Every decision "send now or park" is taken under the offline buffer's lock, and the
//! connection is handed out under the same lock once the buffer is empty: a publish either
//! parks before the new connection is installed (and is flushed first) or is sent on it
//! after everything parked before it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use redis::{RedisError, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;

use super::slot::{ConnEpoch, ConnSlot, Installed};
use super::topology::{key_slot, AnyConn};
use crate::error::{classify, Failure};

/// Most commands sent in one pipeline (automatic or from the offline buffer).
const MAX_PIPELINE: usize = 1024;

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

/// A command waiting its turn in the queue.
struct Queued {
    cmd: redis::Cmd,
    /// The hash slot of its key, in a cluster.
    slot: Option<u16>,
    /// After this the caller has been told "unavailable", so it is not sent any more.
    deadline: Instant,
    reply: ReplyTo,
}

/// Why a flush stopped when the client is closing.
fn closing() -> RedisError {
    RedisError::from(std::io::Error::other("the client is closing"))
}

/// Queued commands of one hash slot, sent as one pipeline.
struct Group {
    slot: Option<u16>,
    pipe: redis::Pipeline,
    replies: Vec<ReplyTo>,
    /// The earliest deadline among them.
    deadline: Instant,
}

/// A command waiting for the connection to come back.
struct Parked {
    cmd: redis::Cmd,
    reply: ReplyTo,
    /// The hash slot of its key in a cluster (a pipeline holds one slot's keys only).
    slot: Option<u16>,
}

/// The queue of ordered commands and the offline buffer.
pub(super) struct Ordered {
    link: Arc<ConnSlot>,
    cfg: Arc<Config>,
    /// In a cluster, commands are grouped by hash slot.
    cluster: bool,
    tx: mpsc::UnboundedSender<Queued>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    parked: Mutex<VecDeque<Parked>>,
}

impl Ordered {
    pub(super) fn new(link: Arc<ConnSlot>, cfg: Arc<Config>, cluster: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Ordered {
            link,
            cfg,
            cluster,
            tx,
            rx: Mutex::new(Some(rx)),
            parked: Mutex::new(VecDeque::new()),
        }
    }

    fn parked(&self) -> MutexGuard<'_, VecDeque<Parked>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Queues a command to be sent in exactly the order of the calls. Never blocks.
    ///
    /// The reply goes to `reply`: `Ok(Some(reply))`, `Ok(None)` when Redis is unavailable
    /// (within the command timeout, or later from the offline buffer), or the server's
    /// refusal.
    pub(super) fn submit(&self, cmd: redis::Cmd, reply: ReplyTo) {
        let slot = if self.cluster {
            match cmd.args_iter().nth(1) {
                Some(redis::Arg::Simple(key)) => Some(key_slot(key)),
                _ => None,
            }
        } else {
            None
        };
        let q = Queued {
            cmd,
            slot,
            deadline: Instant::now() + self.cfg.command_timeout,
            reply,
        };
        if let Err(mpsc::error::SendError(q)) = self.tx.send(q) {
            q.reply.send(Ok(None));
        }
    }

    /// Sends the queued commands, in order, as pipelines: everything queued while the
    /// previous pipeline was on the wire goes out in the next one (automatic pipelining).
    /// Runs until `token` is cancelled; what is still queued then resolves `None`.
    pub(super) async fn run(&self, token: CancellationToken) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        loop {
            let first = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                q = rx.recv() => match q { Some(q) => q, None => break },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_PIPELINE {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            self.send_ordered(batch).await;
        }
        rx.close();
        while let Ok(q) = rx.try_recv() {
            q.reply.send(Ok(None));
        }
    }

    async fn send_ordered(&self, mut batch: Vec<Queued>) {
        // A client that connects on its first call: its first commands wait (each until its
        // own deadline) for the first connection attempt instead of failing at once.
        loop {
            let now = Instant::now();
            let (live, expired): (Vec<Queued>, Vec<Queued>) =
                batch.into_iter().partition(|q| q.deadline > now);
            for q in expired {
                q.reply.send(Ok(None));
            }
            batch = live;
            let Some(first) = batch.first().map(|q| q.deadline) else {
                return;
            };
            if self.link.conn_or_first(first).await.is_some() || !self.link.is_first_attempt() {
                break;
            }
        }
        // In a cluster a pipeline can only hold keys of one slot: one pipeline per slot, each
        // in call order (the order of entries of one stream is all that call order means).
        let mut groups: Vec<Group> = Vec::new();
        for q in batch {
            let i = match groups.iter().position(|g| g.slot == q.slot) {
                Some(i) => i,
                None => {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    groups.push(Group {
                        slot: q.slot,
                        pipe,
                        replies: Vec::new(),
                        deadline: q.deadline,
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[i];
            g.pipe.add_command(q.cmd);
            g.replies.push(q.reply);
            g.deadline = g.deadline.min(q.deadline);
        }
        // Send or park, decided under the buffer's lock (see the module doc).
        let installed = {
            let mut parked = self.parked();
            match self.link.get() {
                Some(i) if parked.is_empty() => i,
                _ => {
                    for g in groups {
                        self.park_or_fail(&mut parked, g.slot, &g.pipe, g.replies);
                    }
                    return;
                }
            }
        };
        let sends = groups.into_iter().map(|g| {
            let conn = installed.conn.clone();
            self.send_pipeline(installed.epoch, conn, g)
        });
        futures_util::future::join_all(sends).await;
    }

    /// Sends one pipeline of ordered commands and settles its replies, by the earliest
    /// deadline among them: a command that waited its turn behind a slow pipeline has used
    /// part of its `commandTimeoutMs` already.
    async fn send_pipeline(&self, epoch: ConnEpoch, mut conn: AnyConn, group: Group) {
        let Group {
            slot,
            pipe,
            replies,
            deadline,
        } = group;
        let sent =
            tokio::time::timeout_at(deadline, pipe.query_async::<Vec<Value>>(&mut conn)).await;
        match sent {
            Ok(Ok(values)) if values.len() == replies.len() => {
                self.link.answered();
                self.settle(epoch, replies, values);
            }
            Ok(Ok(_)) => {
                warn!("pipeline reply count did not match; resolving the batch as unavailable");
                for reply in replies {
                    reply.send(Ok(None));
                }
            }
            Ok(Err(e)) => {
                self.link.broken(epoch, &e.to_string());
                // Whether Redis wrote them is unknown: with an offline buffer they are sent
                // again after the reconnect (at least once), else they resolve null.
                self.park_or_fail(&mut self.parked(), slot, &pipe, replies);
                // A newer connection may have been installed while this pipeline failed on
                // the old one. The parked commands must not wait behind it for a reconnect
                // that may never come, nor be overtaken on it: replace it, so that the one
                // task that flushes the buffer (`run`) writes them first on the next one.
                if let Some(newer) = self.link.get().map(|i| i.epoch) {
                    if newer != epoch && !self.parked().is_empty() {
                        self.link
                            .broken(newer, "parked publishes must go out before newer ones");
                    }
                }
            }
            Err(_) => {
                self.link.timed_out(epoch);
                for reply in replies {
                    reply.send(Ok(None));
                }
            }
        }
    }

    /// Hands each reply of a pipeline to its caller; a refusal goes through [`ConnSlot::judge`].
    fn settle(&self, epoch: ConnEpoch, replies: Vec<ReplyTo>, values: Vec<Value>) {
        for (reply, v) in replies.into_iter().zip(values) {
            let r = match v {
                Value::ServerError(e) => self.link.judge(epoch, RedisError::from(e)),
                v => Ok(Some(v)),
            };
            reply.send(r);
        }
    }

    /// Settles the replies to a chunk of parked commands, up to the first one the server
    /// refused for its state (`READONLY` from a replica, `OOM`) or the connection failed:
    /// that one and every later one go back to the front of the buffer (a later one may
    /// have been stored: at least once), because the buffer exists to wait out exactly
    /// such a server; a `null` would drop what the caller was promised to get written.
    ///
    /// # Errors
    /// The reply that stopped the flush.
    fn settle_flushed(
        &self,
        epoch: ConnEpoch,
        chunk: Vec<Parked>,
        values: Vec<Value>,
    ) -> std::result::Result<(), RedisError> {
        let stop = values.iter().enumerate().find_map(|(i, v)| match v {
            Value::ServerError(e) => {
                let e = RedisError::from(e.clone());
                match classify(&e) {
                    Failure::Connection => Some((i, e)),
                    Failure::ServerState { reconnect } => {
                        self.link.server_state(&e, reconnect);
                        Some((i, e))
                    }
                    _ => None,
                }
            }
            _ => None,
        });
        let Some((at, e)) = stop else {
            let replies = chunk.into_iter().map(|p| p.reply).collect();
            self.settle(epoch, replies, values);
            return Ok(());
        };
        let mut chunk = chunk;
        let back = chunk.split_off(at);
        let mut values = values;
        values.truncate(at);
        let replies = chunk.into_iter().map(|p| p.reply).collect();
        self.settle(epoch, replies, values);
        let mut parked = self.parked();
        for p in back.into_iter().rev() {
            parked.push_front(p);
        }
        Err(e)
    }

    /// Keeps what fits in the offline buffer (in order); the rest resolves `None`.
    /// `pipe` holds the commands of `replies`, one each, in the same order, all for keys
    /// of hash slot `slot` (in a cluster).
    fn park_or_fail(
        &self,
        parked: &mut VecDeque<Parked>,
        slot: Option<u16>,
        pipe: &redis::Pipeline,
        replies: Vec<ReplyTo>,
    ) {
        let mut dropped = 0;
        for (cmd, reply) in pipe.cmd_iter().zip(replies) {
            if parked.len() < self.cfg.offline_buffer {
                parked.push_back(Parked {
                    cmd: cmd.clone(),
                    reply,
                    slot,
                });
            } else {
                dropped += 1;
                reply.send(Ok(None));
            }
        }
        if dropped > 0 && self.cfg.offline_buffer > 0 {
            warn!(
                capacity = self.cfg.offline_buffer,
                dropped, "offline buffer full; publishes not kept"
            );
        }
    }

    /// Writes the parked commands in order, in pipelines of at most [`MAX_PIPELINE`], then
    /// hands out `conn` (under the buffer's lock, once it is empty).
    ///
    /// # Errors
    /// The failure of a pipeline; its commands go back to the front of the buffer (they may
    /// have been stored: at least once), the ones already answered are settled.
    pub(super) async fn flush_parked(
        &self,
        conn: &mut AnyConn,
        epoch: ConnEpoch,
        token: &CancellationToken,
    ) -> std::result::Result<(), RedisError> {
        let mut announced = false;
        loop {
            // `disconnect()` resolves what is still parked `null` (see `fail_parked`): nothing
            // is written after it returned.
            if token.is_cancelled() {
                return Err(closing());
            }
            let chunk: Vec<Parked> = {
                let mut parked = self.parked();
                if parked.is_empty() {
                    self.link.install(Installed {
                        epoch,
                        conn: conn.clone(),
                    });
                    return Ok(());
                }
                // One slot per pipeline (a cluster refuses a pipeline across slots; on one
                // server every slot is `None`): the first entry's, from the next
                // MAX_PIPELINE. The others keep their place, so each stream stays in order.
                let slot = parked[0].slot;
                let n = parked.len().min(MAX_PIPELINE);
                let (chunk, others): (Vec<Parked>, Vec<Parked>) =
                    parked.drain(..n).partition(|p| p.slot == slot);
                for p in others.into_iter().rev() {
                    parked.push_front(p);
                }
                chunk
            };
            if !announced {
                announced = true;
                info!(
                    count = chunk.len(),
                    "writing publishes parked while disconnected"
                );
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for p in &chunk {
                pipe.add_command(p.cmd.clone());
            }
            // Parked commands have no deadline of their own (they wait for Redis); this
            // only tells a dead connection from a slow one.
            let sent = tokio::select! {
                biased;
                _ = token.cancelled() => Ok(Err(closing())),
                sent = tokio::time::timeout(
                    self.cfg.command_timeout,
                    pipe.query_async::<Vec<Value>>(conn),
                ) => sent,
            };
            match sent {
                Ok(Ok(values)) if values.len() == chunk.len() => {
                    self.settle_flushed(epoch, chunk, values)?;
                }
                other => {
                    let mut parked = self.parked();
                    for p in chunk.into_iter().rev() {
                        parked.push_front(p);
                    }
                    return Err(match other {
                        Ok(Err(e)) => e,
                        Ok(Ok(_)) => RedisError::from(std::io::Error::other(
                            "the reply count of parked publishes did not match",
                        )),
                        Err(_) => RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "writing parked publishes timed out",
                        )),
                    });
                }
            }
        }
    }

    /// Resolves every parked command `None` (the client is closing).
    pub(super) fn fail_parked(&self) {
        let left: Vec<Parked> = self.parked().drain(..).collect();
        if !left.is_empty() {
            warn!(count = left.len(), "closing: parked publishes resolve null");
        }
        for p in left {
            p.reply.send(Ok(None));
        }
    }
}

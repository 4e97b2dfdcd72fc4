//! Commands whose order matters (an XADD stream's order is what its publishers called, not
//! what a scheduler picked): queued without blocking, sent in exactly the order of the calls
//! as automatic pipelines, and kept in an offline buffer while Redis is away.
//!
//! Every decision "send now or park" is taken under the offline buffer's lock, and the
//! connection is handed out under the same lock once the buffer is empty: a publish either
//! parks before the new connection is installed (and is flushed first) or is sent on it
//! after everything parked before it.
//!
//! [`flush`] writes the offline buffer back once a connection is installed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redis::{RedisError, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::status::Throttle;

use super::buffer::{size_of, Buffer, Parked, BYTE_BUDGET, PAYLOADS_IN_BUDGET};
use super::cluster::key_slot;
use super::node::AnyConn;
use super::reply::ReplyTo;
use super::slot::{ConnEpoch, ConnSlot};

mod flush;

/// Most commands sent in one pipeline (automatic or from the offline buffer).
const MAX_PIPELINE: usize = 1024;

/// A command waiting its turn in the queue.
struct Queued {
    cmd: redis::Cmd,
    /// [`size_of`] the command.
    bytes: usize,
    /// The hash slot of its key, in a cluster.
    slot: Option<u16>,
    /// After this the caller has been told "unavailable", so it is not sent any more.
    deadline: Instant,
    reply: ReplyTo,
}

/// Queued commands of one hash slot, sent as one pipeline.
struct Group {
    slot: Option<u16>,
    pipe: redis::Pipeline,
    replies: Vec<ReplyTo>,
    /// The earliest deadline among them.
    deadline: Instant,
}

/// The queue of ordered commands and the offline buffer.
pub(super) struct Ordered {
    link: Arc<ConnSlot>,
    cfg: Arc<Config>,
    /// In a cluster, commands are grouped by hash slot.
    cluster: bool,
    tx: mpsc::UnboundedSender<Queued>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    parked: Mutex<Buffer>,
    /// Bytes of the commands in the queue now.
    queued_bytes: AtomicUsize,
    /// Bytes the queue may hold, and the buffer may hold (see [`BYTE_BUDGET`]).
    budget: usize,
    over_budget_log: Throttle,
}

impl Ordered {
    pub(super) fn new(link: Arc<ConnSlot>, cfg: Arc<Config>, cluster: bool) -> Self {
        let budget = BYTE_BUDGET.max(PAYLOADS_IN_BUDGET.saturating_mul(cfg.max_payload_bytes));
        let (tx, rx) = mpsc::unbounded_channel();
        Ordered {
            budget,
            link,
            cfg,
            cluster,
            tx,
            rx: Mutex::new(Some(rx)),
            parked: Mutex::new(Buffer::default()),
            queued_bytes: AtomicUsize::new(0),
            over_budget_log: Throttle::default(),
        }
    }

    fn parked(&self) -> MutexGuard<'_, Buffer> {
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
        let bytes = size_of(&cmd);
        if self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.budget {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.over_budget("queue");
            reply.send(Ok(None));
            return;
        }
        let q = Queued {
            cmd,
            bytes,
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
            let bytes: usize = batch.iter().map(|q| q.bytes).sum();
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
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

    /// Keeps what fits in the offline buffer (in order); the rest resolves `None`.
    /// `pipe` holds the commands of `replies`, one each, in the same order, all for keys
    /// of hash slot `slot` (in a cluster).
    fn park_or_fail(
        &self,
        parked: &mut Buffer,
        slot: Option<u16>,
        pipe: &redis::Pipeline,
        replies: Vec<ReplyTo>,
    ) {
        let mut dropped = 0;
        for (cmd, reply) in pipe.cmd_iter().zip(replies) {
            if parked.items.len() < self.cfg.offline_buffer
                && parked.bytes + size_of(cmd) <= self.budget
            {
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
                budget_bytes = self.budget,
                dropped,
                "offline buffer full (entries or bytes); publishes not kept"
            );
        }
    }

    /// Logs (throttled) a command refused because `what` holds its byte budget already.
    fn over_budget(&self, what: &'static str) {
        if let Some(held_back) = self.over_budget_log.allow() {
            warn!(
                budget_bytes = self.budget,
                similar_since_last = held_back,
                "the {what} of ordered commands holds its byte budget; publish resolves null"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::target::Target;

    /// An ordered queue that nothing sends (no task runs it), with a small byte budget.
    fn ordered(budget: usize) -> Ordered {
        let cfg = Arc::new(
            Config::from_input(crate::config::ConfigInput {
                redis_url: Some("redis://127.0.0.1:1".into()),
                offline_buffer: Some(100.0),
                ..Default::default()
            })
            .unwrap(),
        );
        let target = Arc::new(Target::new(&cfg).unwrap());
        let link = Arc::new(ConnSlot::new(target, cfg.clone(), Arc::default()));
        let mut o = Ordered::new(link, cfg, false);
        o.budget = budget;
        o
    }

    fn xadd(payload: usize) -> redis::Cmd {
        let mut c = redis::cmd("XADD");
        c.arg("s").arg("*").arg("data").arg("x".repeat(payload));
        c
    }

    /// A reply that records whether (and how) it was answered.
    fn reply() -> (ReplyTo, Arc<Mutex<Option<bool>>>) {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        let r = ReplyTo::new(move |r| {
            *g.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(matches!(r, Ok(None)))
        });
        (r, got)
    }

    #[test]
    fn the_queue_resolves_null_what_exceeds_its_byte_budget() {
        let o = ordered(1000);
        let answers: Vec<_> = (0..3)
            .map(|_| {
                let (r, got) = reply();
                o.submit(xadd(400), r);
                got
            })
            .collect();
        // Two fit and wait their turn; the third would pass the budget.
        assert_eq!(*answers[0].lock().unwrap(), None);
        assert_eq!(*answers[1].lock().unwrap(), None);
        assert_eq!(
            *answers[2].lock().unwrap(),
            Some(true),
            "resolved null at once"
        );
    }

    #[test]
    fn the_offline_buffer_keeps_only_what_fits_its_byte_budget() {
        let o = ordered(1000);
        let mut pipe = redis::pipe();
        let mut answers = Vec::new();
        let mut replies = Vec::new();
        for _ in 0..3 {
            pipe.add_command(xadd(400));
            let (r, got) = reply();
            replies.push(r);
            answers.push(got);
        }
        o.park_or_fail(&mut o.parked(), None, &pipe, replies);
        assert_eq!(o.parked().items.len(), 2);
        assert_eq!(*answers[0].lock().unwrap(), None);
        assert_eq!(
            *answers[2].lock().unwrap(),
            Some(true),
            "resolved null at once"
        );
        // Taking the buffer gives its bytes back.
        let chunk = o.parked().take_one_slot(MAX_PIPELINE);
        assert_eq!((chunk.len(), o.parked().bytes), (2, 0));
    }
}

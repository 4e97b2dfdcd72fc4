//! One consumer's loop: a small state machine over [`Step`]s, on a [`BlockingReader`] of
//! its own. Its decisions (which step next, which entries are poison) are pure functions in
//! `step.rs`; this file carries them out.
//!
//! After every (re)connect it reads its own pending entries first (what a crash or a lost
//! connection left behind), then new ones; every `claimIdleMs / 2` it scans for entries
//! other consumers left pending too long. Handled entries are acknowledged with one XACK per
//! batch, written right before the next read of new entries on the same connection (one
//! round trip less per batch); any other step sends it on its own first, and so does
//! stopping: callbacks that finished are always acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::streams::StreamAutoClaimReply;
use redis::Value;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::commands::{xack, xautoclaim, xreadgroup, AckQuery};
use super::dead_letter::{dead_letter, deliveries};
use super::registry::{Acks, Consumer, Groups};
use super::step::{next_step, split_poison, Progress, Source, Step, StepError};
use crate::codec::{parse_read_reply, Entry, StartId, StreamId};
use crate::connection::{AnyConn, BlockingReader, Queryable, ReadError};
use crate::handler::{Batch, Handler, Outcome};
use crate::status::Counters;

impl Acks {
    /// Sends the XACK of `ids` on `conn` (with deleteOnAck, the XACKDEL or XACK + XDEL) and
    /// counts it; on failure the ids are kept.
    async fn send(
        &self,
        c: &Consumer,
        groups: &Groups,
        timeout: Duration,
        conn: &mut AnyConn,
        ids: Vec<StreamId>,
    ) -> Result<(), StepError> {
        if ids.is_empty() {
            return Ok(());
        }
        let q = AckQuery::new(&c.stream, &c.group, &ids, c.opts.delete_on_ack, &groups.cmd);
        let r = tokio::time::timeout(timeout, q.pipe.send::<Vec<Value>>(conn)).await;
        let e = match r {
            Ok(Ok(reply)) => {
                Counters::add(&groups.counters.acked, q.acked(&reply));
                return Ok(());
            }
            Ok(Err(e)) => StepError::from(ReadError::Redis(e)),
            Err(_) => StepError::Connection(format!(
                "XACK did not answer within {} ms",
                timeout.as_millis()
            )),
        };
        warn!(stream = %c.stream, group = %c.group, count = ids.len(), error = ?e, "XACK failed; will try again (the entries stay pending until then)");
        self.keep(ids);
        Err(e)
    }
}

/// One consumer's loop.
pub(super) struct ConsumerLoop {
    groups: Arc<Groups>,
    c: Arc<Consumer>,
    handler: Arc<dyn Handler>,
    reader: BlockingReader,
}

impl ConsumerLoop {
    pub(super) fn new(
        groups: Arc<Groups>,
        c: Arc<Consumer>,
        handler: Arc<dyn Handler>,
        reader: BlockingReader,
    ) -> Self {
        ConsumerLoop {
            groups,
            c,
            handler,
            reader,
        }
    }

    pub(super) async fn run(mut self) {
        let mut p = Progress {
            pending_from: Some(StreamId::ZERO),
            claim_from: StreamId::ZERO,
            claim_due: Instant::now(),
            retry_due: None,
            missing_group: false,
        };
        while !self.c.token.is_cancelled() {
            let step = next_step(
                &mut p,
                self.reader.is_connected(),
                Instant::now(),
                self.c.opts.claim_idle,
                self.c.block,
            );
            let result = match step {
                Step::Connect => {
                    match self.reader.connect(&self.c.token).await {
                        // After any reconnect: own pending entries first, then new ones.
                        Some(true) => p.pending_from = Some(StreamId::ZERO),
                        Some(false) => {}
                        // In a cluster, the stream's master may have failed over: the next
                        // attempt goes to the owner the refreshed slot map names.
                        None if !self.c.token.is_cancelled() => {
                            self.groups.cmd.refresh_slots().await;
                        }
                        None => {}
                    }
                    continue;
                }
                Step::OwnPending(from) => self.own_pending(&mut p, from).await,
                Step::Claim(from) => self.claim(&mut p, from).await,
                Step::New(block) => self.new_entries(&mut p, block).await,
            };
            match result {
                Ok(()) => {
                    if p.missing_group {
                        let c = &self.c;
                        info!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer group is back; consuming again");
                        p.missing_group = false;
                    }
                }
                Err(e) => {
                    if self.recover(&mut p, e).await {
                        break;
                    }
                }
            }
        }
        // Callbacks that finished are always acknowledged, also when stopping.
        let _ = self.flush_acks().await;
        let left = self.c.acks.take();
        let c = &self.c;
        if !left.is_empty() {
            warn!(stream = %c.stream, group = %c.group, consumer = %c.name, count = left.len(), "stopped without a connection; handled entries stay pending and will be redelivered");
        }
        self.reader.close();
        info!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer stopped");
    }

    /// Reacts to a failed step; returns whether the loop must stop (cancelled meanwhile).
    async fn recover(&mut self, p: &mut Progress, e: StepError) -> bool {
        let c = self.c.clone();
        let wait = match e {
            StepError::Connection(why) => {
                self.groups.cmd.probe_soon();
                warn!(stream = %c.stream, group = %c.group, consumer = %c.name, error = %why, "consumer connection lost; reconnecting");
                self.reader.disconnect();
                // In a cluster the slot may have moved (a failover, a reshard): look again.
                self.groups.cmd.refresh_slots().await;
                return false;
            }
            StepError::NoGroup if c.opts.create_if_missing => {
                warn!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer group or stream vanished; recreating it from 0 (createIfMissing)");
                p.pending_from = Some(StreamId::ZERO);
                match self
                    .groups
                    .create_group(&c.stream, &c.group, StartId::After(StreamId::ZERO))
                    .await
                {
                    Ok(true) => return false,
                    Ok(false) | Err(_) => self.reader.next_delay(),
                }
            }
            StepError::NoGroup => {
                if !p.missing_group {
                    warn!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer group or stream is missing; waiting for it to exist again (call createConsumerGroup)");
                }
                p.missing_group = true;
                p.pending_from = Some(StreamId::ZERO);
                self.reader.next_delay()
            }
            StepError::ServerState { reconnect, why } => {
                Counters::add(&self.groups.counters.server_state_errors, 1);
                warn!(stream = %c.stream, group = %c.group, consumer = %c.name, error = %why, reconnect, "Redis cannot serve the consumer now (failover, loading, memory); retrying");
                if reconnect {
                    self.reader.disconnect();
                }
                self.reader.next_delay()
            }
            StepError::Refused(why) => {
                let delay = self.reader.next_delay();
                error!(stream = %c.stream, group = %c.group, consumer = %c.name, error = %why, retry_in_ms = delay.as_millis() as u64, "Redis refused a consumer read; retrying");
                delay
            }
        };
        tokio::select! {
            _ = c.token.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }

    /// Sends the outstanding XACK on its own and waits for it.
    async fn flush_acks(&mut self) -> Result<(), StepError> {
        let ids = self.c.acks.take();
        let Some(mut conn) = self.reader.conn_clone() else {
            self.c.acks.keep(ids);
            return Ok(());
        };
        let timeout = self.reader.config().command_timeout;
        self.c
            .acks
            .send(&self.c, &self.groups, timeout, &mut conn, ids)
            .await
    }

    fn entries_of(v: &Value) -> Result<Vec<Entry>, StepError> {
        Ok(parse_read_reply(v)?
            .into_iter()
            .flat_map(|(_, entries)| entries)
            .collect())
    }

    async fn own_pending(&mut self, p: &mut Progress, from: StreamId) -> Result<(), StepError> {
        self.flush_acks().await?;
        let v: Value = self
            .reader
            .command(&xreadgroup(&self.c, None, &from.to_string()))
            .await?;
        let entries = Self::entries_of(&v)?;
        p.own_pending_read(entries.last().map(|e| e.id));
        if entries.is_empty() {
            return Ok(());
        }
        self.process(p, entries, Source::OwnPending).await
    }

    async fn claim(&mut self, p: &mut Progress, from: StreamId) -> Result<(), StepError> {
        self.flush_acks().await?;
        let c = self.c.clone();
        let idle = c.opts.claim_idle.unwrap_or_default();
        let v: Value = self.reader.command(&xautoclaim(&c, idle, from)).await?;
        // The crate's reply type gives the cursor; entries keep our own decoding, which never
        // drops a foreign field or a deleted entry.
        let next = redis::from_redis_value_ref::<StreamAutoClaimReply>(&v)
            .ok()
            .and_then(|r| r.next_stream_id.parse().ok())
            .unwrap_or(StreamId::ZERO);
        let entries = match &v {
            Value::Array(parts) => match parts.get(1) {
                Some(list) => crate::codec::parse_entries(list)?,
                None => Vec::new(),
            },
            other => return Err(StepError::Refused(format!("XAUTOCLAIM replied {other:?}"))),
        };
        p.claim_scanned(next, Instant::now(), idle);
        if !entries.is_empty() {
            Counters::add(&self.groups.counters.claimed, entries.len() as u64);
            info!(stream = %c.stream, group = %c.group, consumer = %c.name, count = entries.len(), idle_ms = idle.as_millis() as u64, "claimed idle pending entries");
        }
        self.process(p, entries, Source::Claimed).await
    }

    async fn new_entries(&mut self, p: &mut Progress, block: Duration) -> Result<(), StepError> {
        let cmd = xreadgroup(&self.c, Some(block), ">");
        // The previous batch's XACK goes first on the same connection (a biased join polls
        // it first, and the connection writes in that order); its reply comes back before
        // the read blocks.
        let ids = self.c.acks.take();
        let mut ack_conn = self.reader.conn_clone();
        let timeout = self.reader.config().command_timeout;
        let (c, groups, acks, reader) = (&self.c, &*self.groups, &self.c.acks, &mut self.reader);
        let token = c.token.clone();
        let ack = async {
            match ack_conn.as_mut() {
                Some(conn) => acks.send(c, groups, timeout, conn, ids).await,
                None => {
                    acks.keep(ids);
                    Ok(())
                }
            }
        };
        // Not raced against cancellation: stopping unblocks this read instead of dropping it.
        let read = reader.read::<Value>(&cmd, block, 0, || token.is_cancelled());
        let (_, read) = tokio::join!(biased; ack, read);
        match read? {
            // Stopping before the read went out.
            None => Ok(()),
            Some(v) => {
                let entries = Self::entries_of(&v)?;
                self.process(p, entries, Source::New).await
            }
        }
    }

    async fn process(
        &mut self,
        p: &mut Progress,
        entries: Vec<Entry>,
        source: Source,
    ) -> Result<(), StepError> {
        let c = self.c.clone();
        if entries.is_empty() {
            return Ok(());
        }
        // Entries deleted from the stream while pending carry no fields: nothing to deliver.
        let (deleted, mut entries): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.fields.is_none());
        if !deleted.is_empty() {
            let ids: Vec<StreamId> = deleted.iter().map(|e| e.id).collect();
            warn!(stream = %c.stream, group = %c.group, count = ids.len(), "pending entries were deleted from the stream; acknowledging them");
            self.reader
                .command::<u64>(&xack(&c.stream, &c.group, &ids))
                .await?;
        }
        if let (Some(max), true) = (c.opts.max_deliveries, source.may_redeliver()) {
            let counts: HashMap<StreamId, u64> = deliveries(&mut self.reader, &c, &entries).await?;
            let with_counts;
            (entries, with_counts) = split_poison(entries, &counts, max);
            if !with_counts.is_empty() {
                dead_letter(&self.groups, &mut self.reader, &c, &with_counts).await?;
                Counters::add(
                    &self.groups.counters.dead_lettered,
                    with_counts.len() as u64,
                );
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        debug!(stream = %c.stream, group = %c.group, consumer = %c.name, count = entries.len(), source = ?source, "delivering");
        let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
        let outcome = match self
            .handler
            .handle(Batch::new(c.stream.clone(), entries))
            .await
        {
            Ok(o) => o.clamped(ids.len()),
            Err(gone) => {
                warn!(stream = %c.stream, group = %c.group, consumer = %c.name, error = %gone, "consumer callback is gone; stopping the consumer");
                c.token.cancel();
                Outcome::default()
            }
        };
        let counters = &self.groups.counters;
        counters.delivered_to(&c.stream, outcome.handled as u64);
        Counters::add(&counters.callback_errors, outcome.failures.len() as u64);
        for f in &outcome.failures {
            warn!(stream = %c.stream, group = %c.group, consumer = %c.name, id = %f.id, error = %f.error, "consumer callback failed; the entry stays pending");
        }
        if !c.opts.auto_ack {
            return Ok(());
        }
        let failed: HashSet<&str> = outcome.failures.iter().map(|f| f.id.as_str()).collect();
        let done: Vec<StreamId> = ids[..outcome.handled]
            .iter()
            .filter(|id| !failed.contains(id.to_string().as_str()))
            .copied()
            .collect();
        if !failed.is_empty() && c.opts.max_deliveries.is_some() {
            p.retry_due = Some(Instant::now() + c.opts.retry_delay);
        }
        // Sent with the next read, or on its own before any other step and when stopping:
        // callbacks that finished are always acknowledged.
        self.c.acks.extend(done);
        Ok(())
    }
}
